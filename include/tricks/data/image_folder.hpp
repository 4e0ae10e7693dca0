#pragma once
// Image folders: labelled JPEG/PNG files on disk, the layout of the paper's ImageNet and of most
// users' own data, and the loader source that decodes and augments them on the fly.
//
//   auto [train, val] = data::load_image_folders("photos");          // photos/train, photos/val
//   trainer.fit(data::folder_source<>{&train, {}}, data::folder_source<>{&val, {}});
//
// Layout (torchvision's ImageFolder convention): one sub-directory per class directly under the
// root, classes sorted by name (byte order, which is code-point order for UTF-8), the files of a
// class found recursively (symbolic links followed), directories visited in sorted order and the
// files of each directory sorted; extensions .jpg, .jpeg, .png in any case. Unlike torchvision,
// hidden entries (names starting with '.', e.g. .ipynb_checkpoints or .DS_Store) are not classes
// or images, and every file that is skipped is listed in `ignored` so that a report can say so:
// nothing is dropped silently. A list file (`path label` per line) describes data laid out in
// any other way.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/core/rng.hpp"
#include "tricks/data/image.hpp"
#include "tricks/data/image_io.hpp"
#include "tricks/data/image_transform.hpp"

namespace tricks::data {

/// The labelled files of one split (e.g. train/ or val/).
struct image_folder {
    std::string name;                            ///< for messages and reports (the root's path)
    std::filesystem::path root;                  ///< the directory scanned, or the list file's
    std::vector<std::string> class_names;        ///< label i names class_names[i]
    std::vector<std::filesystem::path> files;    ///< one per image
    std::vector<int> labels;                     ///< labels[i] is files[i]'s class
    std::vector<std::filesystem::path> ignored;  ///< files under the class folders that are not images
    std::vector<std::string> skipped;            ///< bad images dropped by verify_images(skip_bad): "file: reason"

    [[nodiscard]] std::size_t size() const noexcept { return files.size(); }
    [[nodiscard]] int classes() const noexcept { return static_cast<int>(class_names.size()); }
};

namespace detail {

inline bool hidden(const std::filesystem::path& p) {
    const std::string n = p.filename().string();
    return !n.empty() && n[0] == '.';
}

inline std::string lower(std::string s) {
    for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

}  // namespace detail

/// True for names ending in .jpg, .jpeg or .png, in any case.
inline bool is_image_file_name(const std::filesystem::path& p) {
    const std::string e = detail::lower(p.extension().string());
    return e == ".jpg" || e == ".jpeg" || e == ".png";
}

/// Scans `dir` (one sub-directory per class). Throws tricks::data_error naming the directory
/// when it does not exist, has no class folders, or a class folder holds no image.
inline image_folder scan_image_folder(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    require<data_error>(fs::is_directory(dir, ec), "tricks::image_folder: ", dir.string(), " is not a directory");
    image_folder f;
    f.name = dir.string();
    f.root = dir;
    std::vector<fs::path> class_dirs;
    for (const auto& e : fs::directory_iterator(dir, fs::directory_options::follow_directory_symlink)) {
        if (detail::hidden(e.path())) continue;
        if (e.is_directory(ec))
            class_dirs.push_back(e.path());
        else
            f.ignored.push_back(e.path());  // a file beside the class folders belongs to no class
    }
    std::sort(class_dirs.begin(), class_dirs.end(),
              [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
    require<data_error>(
        !class_dirs.empty(), "tricks::image_folder: ", dir.string(),
        " has no class folders; expected one sub-directory per class holding its .jpg/.jpeg/.png files");
    require<data_error>(class_dirs.size() <= 65536, "tricks::image_folder: ", dir.string(), " has ", class_dirs.size(),
                        " class folders; at most 65536 are supported");
    for (const auto& cd : class_dirs) {
        const int label = f.classes();
        f.class_names.push_back(cd.filename().string());
        // Files grouped by their directory; directories in sorted order, files sorted within each.
        std::map<std::string, std::vector<std::string>> by_dir;
        by_dir[cd.string()];
        const auto opts = fs::directory_options::follow_directory_symlink;
        for (auto it = fs::recursive_directory_iterator(cd, opts); it != fs::recursive_directory_iterator(); ++it) {
            if (detail::hidden(it->path())) {
                if (it->is_directory(ec))
                    it.disable_recursion_pending();
                else
                    f.ignored.push_back(it->path());
                continue;
            }
            if (it->is_directory(ec)) continue;
            if (is_image_file_name(it->path()))
                by_dir[it->path().parent_path().string()].push_back(it->path().filename().string());
            else
                f.ignored.push_back(it->path());
        }
        const std::size_t before = f.files.size();
        for (auto& [d, names] : by_dir) {
            std::sort(names.begin(), names.end());
            for (const auto& n : names) {
                f.files.push_back(fs::path(d) / n);
                f.labels.push_back(label);
            }
        }
        require<data_error>(f.files.size() > before, "tricks::image_folder: class folder ", cd.string(),
                            " holds no .jpg/.jpeg/.png file");
    }
    std::sort(f.ignored.begin(), f.ignored.end());
    return f;
}

/// Reads a list file: one image per line, `path label`, the label a class index >= 0 after the
/// last run of blanks (so paths may contain spaces); blank lines and lines starting with '#' are
/// skipped. Relative paths are relative to `base` (default: the list file's directory). Classes
/// are 0 .. max label, named by their index; `classes` > 0 fixes the count (labels must be below
/// it; a validation list may lack some classes). Every file must exist. Errors name the list file,
/// the line number and the line.
inline image_folder read_image_list(const std::filesystem::path& list, const std::filesystem::path& base = {},
                                    int classes = 0) {
    namespace fs = std::filesystem;
    std::ifstream in(list);
    require<data_error>(static_cast<bool>(in), "tricks::image_list: cannot open ", list.string());
    const fs::path dir = base.empty() ? list.parent_path() : base;
    image_folder f;
    f.name = list.string();
    f.root = list;
    std::string line;
    int max_label = -1;
    for (long no = 1; std::getline(in, line); ++no) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        const auto first = line.find_first_not_of(" \t");
        if (first == std::string::npos || line[first] == '#') continue;
        const auto last = line.find_last_not_of(" \t");
        const auto sep = line.find_last_of(" \t", last);
        auto where = [&] { return tricks::detail::cat(list.string(), ":", no, ": '", line, "'"); };
        require<data_error>(sep != std::string::npos && sep > first, "tricks::image_list: ", where(),
                            ": expected 'path label'");
        const std::string_view lab(line.data() + sep + 1, last - sep);
        int label = -1;
        const auto [p, ec] = std::from_chars(lab.data(), lab.data() + lab.size(), label);
        require<data_error>(ec == std::errc{} && p == lab.data() + lab.size() && label >= 0,
                            "tricks::image_list: ", where(), ": label '", lab, "' is not a class index >= 0");
        require<data_error>(classes <= 0 || label < classes, "tricks::image_list: ", where(), ": label ", label,
                            " is not below the ", classes, " classes");
        require<data_error>(label < 65536, "tricks::image_list: ", where(), ": label ", label,
                            "; at most 65536 classes are supported");
        const std::string path_text = line.substr(first, line.find_last_not_of(" \t", sep) + 1 - first);
        fs::path p_file = fs::path(path_text).is_absolute() ? fs::path(path_text) : dir / path_text;
        std::error_code fec;
        require<data_error>(fs::is_regular_file(p_file, fec), "tricks::image_list: ", where(), ": ", p_file.string(),
                            " is not a file");
        f.files.push_back(std::move(p_file));
        f.labels.push_back(label);
        max_label = std::max(max_label, label);
    }
    require<data_error>(!f.files.empty(), "tricks::image_list: ", list.string(), " lists no image");
    const int k = classes > 0 ? classes : max_label + 1;
    for (int i = 0; i < k; ++i) f.class_names.push_back(std::to_string(i));
    return f;
}

/// Throws tricks::data_error unless `train` and `val` have the same classes in the same order
/// (the message names the first class that differs, or the counts).
inline void check_same_classes(const image_folder& train, const image_folder& val) {
    const auto& a = train.class_names;
    const auto& b = val.class_names;
    for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        require<data_error>(a[i] == b[i], "tricks::image_folder: class ", i, " is '", a[i], "' in ", train.name,
                            " but '", b[i], "' in ", val.name, "; train and validation need the same class folders");
    if (a.size() != b.size())
        throw data_error(tricks::detail::cat(
            "tricks::image_folder: ", train.name, " has ", a.size(), " classes, ", val.name, " has ", b.size(),
            "; train and validation need the same class folders",
            a.size() > b.size() ? tricks::detail::cat(" (first missing in validation: '", a[b.size()], "')")
                                : tricks::detail::cat(" (first missing in training: '", b[a.size()], "')")));
}

/// True when `dir` has `train` and `val` sub-directories (the layout load_image_folders reads).
inline bool is_image_folder_root(const std::filesystem::path& dir) {
    std::error_code ec;
    return std::filesystem::is_directory(dir / "train", ec) && std::filesystem::is_directory(dir / "val", ec);
}

struct image_folder_split {
    image_folder train, val;
};

/// `root/train` and `root/val`, scanned and checked to have the same classes.
inline image_folder_split load_image_folders(const std::filesystem::path& root) {
    require<data_error>(is_image_folder_root(root), "tricks::image_folder: ", root.string(),
                        " needs a train/ and a val/ sub-directory, each with one folder per class");
    image_folder_split s{scan_image_folder(root / "train"), scan_image_folder(root / "val")};
    check_same_classes(s.train, s.val);
    return s;
}

/// Decodes every image of `f` completely on `threads` threads (0: all cores). Without
/// `skip_bad`, the first bad file in order throws its decoder's error (naming the file); with
/// it, bad files are removed from `f` and listed in f.skipped as "file: reason". Returns the
/// number of files removed. Errors are found in a fixed order, so the result does not depend on
/// the thread count.
inline std::size_t verify_images(image_folder& f, bool skip_bad, int threads = 0) {
    const std::size_t n = f.size();
    std::vector<std::string> reason(n);
    std::vector<char> bad(n, 0);
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const auto t = static_cast<std::size_t>(threads > 0 ? threads : static_cast<int>(hw));
    std::atomic<std::size_t> next{0};
    auto work = [&] {
        for (std::size_t i; (i = next.fetch_add(1)) < n;) {
            try {
                const std::vector<std::uint8_t> bytes = read_file(f.files[i]);
                (void)decode_image(bytes, f.files[i].string());
            } catch (const std::exception& e) {
                bad[i] = 1;
                reason[i] = e.what();
            }
        }
    };
    {
        std::vector<std::jthread> pool;
        for (std::size_t k = 1; k < std::min(t, n); ++k) pool.emplace_back(work);
        work();
    }
    const auto first_bad = std::find(bad.begin(), bad.end(), 1);
    if (first_bad == bad.end()) return 0;
    require<data_error>(skip_bad, reason[static_cast<std::size_t>(first_bad - bad.begin())]);
    image_folder kept = f;
    kept.files.clear();
    kept.labels.clear();
    for (std::size_t i = 0; i < n; ++i) {
        if (bad[i]) {
            kept.skipped.push_back(reason[i]);
        } else {
            kept.files.push_back(f.files[i]);
            kept.labels.push_back(f.labels[i]);
        }
    }
    const std::size_t removed = n - kept.files.size();
    require<data_error>(!kept.files.empty(), "tricks::image_folder: ", f.name, ": all ", n,
                        " images are bad; first: ", kept.skipped.front());
    f = std::move(kept);
    return removed;
}

/// The loader source of an image folder: each image is read from disk, decoded (at 1/2, 1/4 or
/// 1/8 scale when the crop allows, JPEG only) and transformed as `Transform` says: in training,
/// the paper's augmentation (image_transform.hpp); in evaluation, resize the shorter side to
/// opts.resize then the centre opts.size crop. Output: opts.size x opts.size x 3 floats,
/// normalised. A view: `folder` must outlive it.
template <class Transform = aug::paper_train>
struct folder_source {
    const image_folder* folder = nullptr;
    image_transform_options opts{};

    [[nodiscard]] std::size_t size() const noexcept { return folder->size(); }
    [[nodiscard]] int height() const noexcept { return opts.size; }
    [[nodiscard]] int width() const noexcept { return opts.size; }
    [[nodiscard]] static constexpr int channels() noexcept { return 3; }
    [[nodiscard]] int classes() const noexcept { return folder->classes(); }
    [[nodiscard]] int label(std::size_t i) const noexcept { return folder->labels[i]; }
    [[nodiscard]] const std::string& name() const noexcept { return folder->name; }
    /// "paper_train (random_resized_crop+...), 224 px, eval resize 256": for reports.
    [[nodiscard]] std::string describe() const {
        return tricks::detail::cat(Transform::describe(), ", ", opts.size, " px, eval resize ", opts.resize,
                                   " + centre crop");
    }

    void prepare(std::size_t i, bool train, rng& r, float* out) const {
        const std::filesystem::path& file = folder->files[i];
        const std::string name = file.string();
        const std::vector<std::uint8_t> bytes = read_file(file);
        const image_header h = read_header(bytes, name);
        if (train) {
            const train_draw d = draw_train<Transform>(h.width, h.height, opts, r);
            apply_train<Transform>(decode_region(bytes, name, d.box, opts.size, opts.size), d, opts, out);
        } else {
            const crop_box box = eval_crop_box(h.width, h.height, opts);
            apply_eval(decode_region(bytes, name, box, opts.size, opts.size), h.width, h.height, opts, out);
        }
    }
};

}  // namespace tricks::data
