// Fuzz target: tricks::data::read_image_list on any list-file contents. The list file lies in a
// temporary folder holding two real PNGs, a.png and "sub dir/b b.png", so relative paths in the
// input can name files that exist (the seeds in corpus/fuzz_image_list do). Each input is read
// with the class count inferred (0) and fixed (3). See fuzz_common.hpp for the rule.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "fuzz_common.hpp"
#include "tricks/data/image_folder.hpp"
#include "tricks/data/image_write.hpp"

namespace {

namespace fs = std::filesystem;

struct list_folder {
    fs::path dir, list;
    list_folder() {
        std::string templ = (fs::temp_directory_path() / "tricks_fuzz_list_XXXXXX").string();  // $TMPDIR
        if (::mkdtemp(templ.data()) == nullptr) std::abort();
        dir = templ;
        list = dir / "list.txt";
        tricks::data::image_u8 img{.h = 2, .w = 3, .c = 3, .pixels = std::vector<std::uint8_t>(18, 128)};
        fs::create_directories(dir / "sub dir");
        tricks::data::write_png(dir / "a.png", img);
        tricks::data::write_png(dir / "sub dir" / "b b.png", img);
    }
    ~list_folder() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static list_folder folder;
    {
        std::ofstream out(folder.list, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
        if (!out) std::abort();
    }
    for (int classes : {0, 3}) {
        tricks_fuzz::expect_only_tricks_errors([&] {
            const tricks::data::image_folder f = tricks::data::read_image_list(folder.list, {}, classes);
            // What a successful read promises: one label per file, each a class, no empty list.
            if (f.files.empty() || f.files.size() != f.labels.size()) std::abort();
            for (int label : f.labels)
                if (label < 0 || label >= f.classes()) std::abort();
        });
    }
    return 0;
}
