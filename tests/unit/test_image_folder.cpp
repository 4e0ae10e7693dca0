// Image folders: scanning (torchvision's ImageFolder order, hidden entries, ignored files), list
// files, train/val class checks, verify_images, image writing, and folder_source through the
// loader (the same bits for any worker count; evaluation exactly the decode + eval transform).
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tricks/data/image_folder.hpp"
#include "tricks/data/image_write.hpp"
#include "tricks/data/loader.hpp"
#include "helpers.hpp"

namespace {

namespace fs = std::filesystem;
using namespace tricks::data;
using tricks_test::contains;
using tricks_test::error_of;
using tricks_test::temp_dir;

/// An h x w RGB image whose pixels depend on (seed, y, x): smooth enough for JPEG, distinct per seed.
image_u8 test_image(int h, int w, int seed) {
    image_u8 img;
    img.h = h;
    img.w = w;
    img.c = 3;
    img.pixels.resize(img.size());
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < 3; ++ch)
                img.pixels[(static_cast<std::size_t>(y) * w + x) * 3 + ch] =
                    static_cast<std::uint8_t>((seed * 37 + y * 5 + x * 3 + ch * 60) % 256);
    return img;
}

void touch(const fs::path& p, const std::string& text = "x") {
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
}

void put_png(const fs::path& p, int seed, int h = 12, int w = 16) {
    fs::create_directories(p.parent_path());
    write_png(p, test_image(h, w, seed));
}

std::vector<std::string> relative(const image_folder& f) {
    std::vector<std::string> v;
    for (const auto& p : f.files) v.push_back(fs::relative(p, f.root).generic_string());
    return v;
}

}  // namespace

TEST_CASE("scan_image_folder: classes sorted, files in ImageFolder's order, hidden and other files reported") {
    temp_dir d;
    const fs::path root = d / "train";
    put_png(root / "b_dog" / "2.png", 1);
    put_png(root / "b_dog" / "10.PNG", 2);         // extension in any case; "10" < "2" as text
    put_png(root / "b_dog" / "sub" / "0.png", 3);  // sub-directory after the directory's own files
    put_png(root / "b_dog" / "a.png", 4);
    put_png(root / "a_cat" / "x.jpeg", 5);  // a PNG under a .jpeg name: the name decides here
    touch(root / "a_cat" / "notes.txt");
    touch(root / "a_cat" / ".DS_Store");
    put_png(root / ".ipynb_checkpoints" / "z.png", 6);  // a hidden folder is no class
    touch(root / "README");                             // a file beside the classes

    const image_folder f = scan_image_folder(root);
    CHECK(f.class_names == std::vector<std::string>{"a_cat", "b_dog"});
    CHECK(relative(f) ==
          std::vector<std::string>{"a_cat/x.jpeg", "b_dog/10.PNG", "b_dog/2.png", "b_dog/a.png", "b_dog/sub/0.png"});
    CHECK(f.labels == std::vector<int>{0, 1, 1, 1, 1});
    std::vector<std::string> ignored;
    for (const auto& p : f.ignored) ignored.push_back(fs::relative(p, root).generic_string());
    CHECK(ignored == std::vector<std::string>{"README", "a_cat/.DS_Store", "a_cat/notes.txt"});
    CHECK(f.size() == 5);
    CHECK(f.classes() == 2);
}

TEST_CASE("scan_image_folder and load_image_folders: errors name the folder") {
    temp_dir d;
    CHECK(contains(error_of([&] { scan_image_folder(d / "missing"); }), "missing is not a directory"));
    fs::create_directories(d / "flat");
    put_png(d / "flat" / "1.png", 1);
    CHECK(contains(error_of([&] { scan_image_folder(d / "flat"); }), "has no class folders"));
    put_png(d / "t" / "cat" / "1.png", 1);
    touch(d / "t" / "dog" / "readme.txt");
    CHECK(contains(error_of([&] { scan_image_folder(d / "t"); }),
                   "class folder " + (d / "t" / "dog").string() + " holds no .jpg/.jpeg/.png file"));
    CHECK(contains(error_of([&] { load_image_folders(d / "t"); }), "needs a train/ and a val/ sub-directory"));

    put_png(d / "r" / "train" / "cat" / "1.png", 1);
    put_png(d / "r" / "train" / "dog" / "1.png", 2);
    put_png(d / "r" / "val" / "cat" / "1.png", 3);
    put_png(d / "r" / "val" / "cow" / "1.png", 4);
    CHECK(is_image_folder_root(d / "r"));
    CHECK_FALSE(is_image_folder_root(d / "t"));
    CHECK(contains(error_of([&] { load_image_folders(d / "r"); }), "class 1 is 'dog' in"));
    put_png(d / "r" / "train" / "cow" / "1.png", 5);
    CHECK(contains(error_of([&] { load_image_folders(d / "r"); }), "first missing in validation: 'dog'"));
    put_png(d / "r" / "val" / "dog" / "1.png", 6);
    const image_folder_split s = load_image_folders(d / "r");
    CHECK(s.train.class_names == s.val.class_names);
    CHECK(s.val.size() == 3);
}

TEST_CASE("read_image_list: paths with spaces, comments, CRLF, fixed class count; errors name file and line") {
    temp_dir d;
    put_png(d / "imgs" / "a b.png", 1);
    put_png(d / "imgs" / "c.png", 2);
    std::ofstream(d / "list.txt") << "# comment\n\nimgs/a b.png 2\r\n  imgs/c.png\t0  \n"
                                  << (d / "imgs" / "c.png").string() << " 1\n";
    const image_folder f = read_image_list(d / "list.txt");
    REQUIRE(f.size() == 3);
    CHECK(f.files[0] == d / "imgs" / "a b.png");
    CHECK(f.files[2] == d / "imgs" / "c.png");
    CHECK(f.labels == std::vector<int>{2, 0, 1});
    CHECK(f.classes() == 3);
    CHECK(read_image_list(d / "list.txt", {}, 5).classes() == 5);
    CHECK(contains(error_of([&] { read_image_list(d / "list.txt", {}, 2); }),
                   "list.txt:3: 'imgs/a b.png 2': label 2 is not below the 2 classes"));

    std::ofstream(d / "bad1.txt") << "imgs/c.png\n";
    CHECK(contains(error_of([&] { read_image_list(d / "bad1.txt"); }),
                   "bad1.txt:1: 'imgs/c.png': expected 'path label'"));
    std::ofstream(d / "bad2.txt") << "imgs/c.png 1\nimgs/c.png cat\n";
    CHECK(contains(error_of([&] { read_image_list(d / "bad2.txt"); }),
                   "bad2.txt:2: 'imgs/c.png cat': label 'cat' is not a class index"));
    std::ofstream(d / "bad3.txt") << "imgs/none.png 0\n";
    CHECK(contains(error_of([&] { read_image_list(d / "bad3.txt"); }), "none.png is not a file"));
    std::ofstream(d / "empty.txt") << "# nothing\n";
    CHECK(contains(error_of([&] { read_image_list(d / "empty.txt"); }), "lists no image"));
    CHECK(contains(error_of([&] { read_image_list(d / "nope.txt"); }), "cannot open"));
}

TEST_CASE("verify_images: the first bad file throws, or bad files are skipped and listed, for any thread count") {
    temp_dir d;
    for (int i = 0; i < 12; ++i) put_png(d / "f" / (i % 2 ? "b" : "a") / (std::to_string(10 + i) + ".png"), i);
    touch(d / "f" / "a" / "13.png", "not a png");  // bad, in class a
    {
        std::ofstream o(d / "f" / "b" / "99.jpg", std::ios::binary);  // truncated JPEG, in class b
        std::vector<std::uint8_t> bytes;
        const fs::path tmp = d / "tmp.jpg";
        write_jpeg(tmp, test_image(40, 40, 9), 90);
        std::ifstream in(tmp, std::ios::binary);
        bytes.assign(std::istreambuf_iterator<char>(in), {});
        o.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size() / 2));
    }
    const image_folder clean = scan_image_folder(d / "f");
    REQUIRE(clean.size() == 14);
    for (int threads : {1, 2, 3}) {
        image_folder f = clean;
        const std::string e = error_of([&] { verify_images(f, false, threads); });
        CHECK(contains(e, "13.png"));  // the first bad one in order, whatever thread found it first
        CHECK(f.size() == 14);         // unchanged
        CHECK(verify_images(f, true, threads) == 2);
        CHECK(f.size() == 12);
        REQUIRE(f.skipped.size() == 2);
        CHECK(contains(f.skipped[0], "13.png"));
        CHECK(contains(f.skipped[1], "99.jpg"));
        CHECK(verify_images(f, false, threads) == 0);  // what is left is good
    }
}

TEST_CASE("write_png / write_jpeg: round trip, errors name the file") {
    temp_dir d;
    const image_u8 img = test_image(9, 13, 4);
    write_png(d / "a.png", img);
    const auto bytes = read_file(d / "a.png");
    const image_u8 back = decode_image(bytes, "a.png");
    CHECK(back.h == 9);
    CHECK(back.w == 13);
    CHECK(back.pixels == img.pixels);
    image_u8 grey;
    grey.h = 3;
    grey.w = 2;
    grey.c = 1;
    grey.pixels = {0, 50, 100, 150, 200, 250};
    write_png(d / "g.png", grey);
    const image_u8 g = decode_image(read_file(d / "g.png"), "g.png");
    REQUIRE(g.c == 3);
    for (int i = 0; i < 6; ++i)
        for (int ch = 0; ch < 3; ++ch)
            CHECK(g.pixels[static_cast<std::size_t>(i * 3 + ch)] == grey.pixels[static_cast<std::size_t>(i)]);
    write_jpeg(d / "a.jpg", test_image(32, 32, 0), 100);
    const image_u8 j = decode_image(read_file(d / "a.jpg"), "a.jpg");
    CHECK(j.h == 32);
    CHECK(!fs::exists(d / "a.jpg.tmp"));
    image_u8 wrong = img;
    wrong.c = 2;
    CHECK(contains(error_of([&] { write_png(d / "w.png", wrong); }), "w.png: image is 9x13x2"));
    CHECK(contains(error_of([&] { write_jpeg(d / "q.jpg", img, 0); }), "quality 0"));
    CHECK(contains(error_of([&] { write_png(d / "no" / "dir.png", img); }), "cannot create"));
}

TEST_CASE("folder_source: batches are the same bits for any worker count; evaluation is decode + eval transform") {
    temp_dir d;
    for (int i = 0; i < 23; ++i) {
        const fs::path p = d / "f" / ("c" + std::to_string(i % 3)) / (std::to_string(i) + (i % 2 ? ".png" : ".jpg"));
        fs::create_directories(p.parent_path());
        const image_u8 img = test_image(40 + i, 56 - i, i);
        if (i % 2)
            write_png(p, img);
        else
            write_jpeg(p, img, 92);
    }
    const image_folder f = scan_image_folder(d / "f");
    image_transform_options o;
    o.size = 16;
    o.resize = 18;
    const folder_source<> src{&f, o};
    static_assert(batch_source<folder_source<>>);
    CHECK(src.channels() == 3);
    CHECK(src.height() == 16);
    CHECK(contains(src.describe(), "16 px"));
    for (bool train : {true, false}) {
        auto drain = [&](int workers) {
            batch_loader<folder_source<>> l(src, 5, train, 3, train, workers);
            l.start_epoch(1);
            std::vector<float> all;
            std::vector<int> labels;
            tricks::tensor<float> x;
            std::vector<int> y;
            while (l.next(x, y)) {
                all.insert(all.end(), x.data(), x.data() + x.size());
                labels.insert(labels.end(), y.begin(), y.end());
            }
            return std::pair{all, labels};
        };
        const auto ref = drain(0);
        CHECK(ref.first.size() == (train ? 20u : 23u) * 16 * 16 * 3);
        for (int workers : {1, 2, 4}) {
            const auto got = drain(workers);
            CHECK(got.second == ref.second);
            CHECK((got.first.size() == ref.first.size() &&
                   std::memcmp(got.first.data(), ref.first.data(), ref.first.size() * sizeof(float)) == 0));
        }
        if (!train) {  // evaluation keeps the order: image 7 is file 7, decoded and transformed by hand
            const auto bytes = read_file(f.files[7]);
            const image_header h = read_header(bytes, "x");
            std::vector<float> want(16 * 16 * 3);
            apply_eval(decode_region(bytes, "x", eval_crop_box(h.width, h.height, o), 16, 16), h.width, h.height, o,
                       want.data());
            CHECK(std::memcmp(want.data(), ref.first.data() + 7 * want.size(), want.size() * sizeof(float)) == 0);
            CHECK(ref.second[7] == f.labels[7]);
        }
    }
    // A file that turns bad after the scan: the loader's error names it.
    image_folder broken = f;
    touch(d / "bad.png", "garbage");
    broken.files[4] = d / "bad.png";
    const folder_source<> bad{&broken, o};
    batch_loader<folder_source<>> l(bad, 5, false, 3, false, 2);
    l.start_epoch(0);
    tricks::tensor<float> x;
    std::vector<int> y;
    CHECK(contains(error_of([&] {
                       while (l.next(x, y)) {}
                   }),
                   "bad.png"));
}
