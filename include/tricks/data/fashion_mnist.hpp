#pragma once
// Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 60000 training and 10000 test images, 28x28 grey,
// 10 classes, in the MNIST IDX format. Debian ships it as the package dataset-fashion-mnist
// (/usr/share/datasets/fashion-mnist, gzip files); TRICKS_FASHION_MNIST_DIR points elsewhere.
#include <array>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include "tricks/core/error.hpp"
#include "tricks/data/dataset.hpp"
#include "tricks/data/idx.hpp"

namespace tricks::data::fashion_mnist {

inline constexpr int classes = 10;
inline constexpr int height = 28, width = 28;

/// Label i names class_names[i] (the order of the original release).
inline constexpr std::array<std::string_view, 10> class_names{
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/// $TRICKS_FASHION_MNIST_DIR when set and non-empty, else where Debian's package installs it.
inline std::filesystem::path default_dir() {
    if (const char* env = std::getenv("TRICKS_FASHION_MNIST_DIR"); env != nullptr && *env != '\0') return env;
    return "/usr/share/datasets/fashion-mnist";
}

namespace detail {

inline std::string install_hint() {
    return "; install the Debian package dataset-fashion-mnist (apt install dataset-fashion-mnist) or set "
           "TRICKS_FASHION_MNIST_DIR to a directory holding train-images-idx3-ubyte[.gz], "
           "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]";
}

/// `dir/base` when it exists (no decompression needed), else `dir/base.gz`.
inline std::filesystem::path find_file(const std::filesystem::path& dir, const std::string& base) {
    std::error_code ec;
    const auto plain = dir / base;
    if (std::filesystem::is_regular_file(plain, ec)) return plain;
    const auto gz = dir / (base + ".gz");
    if (std::filesystem::is_regular_file(gz, ec)) return gz;
    throw data_error("tricks::fashion_mnist: neither " + plain.string() + " nor " + gz.string() + " exists" +
                     install_hint());
}

inline dataset load(const std::filesystem::path& dir, const std::string& prefix, const std::string& split) {
    std::error_code ec;
    require<data_error>(std::filesystem::is_directory(dir, ec), "tricks::fashion_mnist: directory ", dir.string(),
                        " does not exist", install_hint());
    dataset d = make_dataset("fashion-mnist/" + split, read_idx(find_file(dir, prefix + "-images-idx3-ubyte")),
                             read_idx(find_file(dir, prefix + "-labels-idx1-ubyte")), classes);
    // The loaders and models assume 28x28 grey; another IDX file under the right name is an error.
    require<data_error>(d.h == height && d.w == width && d.c == 1, "tricks::fashion_mnist: ", dir.string(), ": ", split,
                        " images are ", d.h, "x", d.w, "x", d.c, "; expected 28x28x1");
    return d;
}

}  // namespace detail

/// The 60000 training images. Throws tricks::data_error when files are missing or malformed.
inline dataset train(const std::filesystem::path& dir = default_dir()) { return detail::load(dir, "train", "train"); }

/// The 10000 test images. Throws tricks::data_error when files are missing or malformed.
inline dataset test(const std::filesystem::path& dir = default_dir()) { return detail::load(dir, "t10k", "test"); }

}  // namespace tricks::data::fashion_mnist
