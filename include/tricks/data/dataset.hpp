#pragma once
// dataset: labelled 8-bit images held in memory, NHWC. Pixels stay bytes (4x smaller than floats,
// so Fashion-MNIST's 47 MB and CIFAR's 150 MB fit comfortably); augment.hpp turns one image into
// normalised floats when a batch is built.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/data/idx.hpp"

namespace tricks::data {

struct dataset {
    std::string name;                  ///< for messages and logs ("fashion-mnist/train")
    int n = 0, h = 0, w = 0, c = 0;    ///< image count and NHWC extents of one image
    int classes = 0;                   ///< labels are in [0, classes)
    std::vector<std::uint8_t> pixels;  ///< n*h*w*c bytes, NHWC
    std::vector<std::uint8_t> labels;  ///< n bytes

    /// Bytes in one image (h*w*c).
    [[nodiscard]] std::size_t image_size() const noexcept {
        return static_cast<std::size_t>(h) * static_cast<std::size_t>(w) * static_cast<std::size_t>(c);
    }
    /// First byte of image i (no bounds check; i < n).
    [[nodiscard]] const std::uint8_t* image(std::size_t i) const noexcept { return pixels.data() + i * image_size(); }

    /// Images [first, first + count) as a new dataset with the same name, extents and classes
    /// (e.g. a validation split, or a small subset for a quick run).
    [[nodiscard]] dataset subset(std::size_t first, std::size_t count) const {
        require<data_error>(first <= static_cast<std::size_t>(n) && count <= static_cast<std::size_t>(n) - first,
                            "tricks::dataset: ", name, ": subset [", first, ", ", first + count,
                            ") out of range; the dataset has ", n, " images");
        dataset s;
        s.name = name;
        s.n = static_cast<int>(count);
        s.h = h;
        s.w = w;
        s.c = c;
        s.classes = classes;
        const std::size_t sz = image_size();
        s.pixels.assign(pixels.begin() + static_cast<std::ptrdiff_t>(first * sz),
                        pixels.begin() + static_cast<std::ptrdiff_t>((first + count) * sz));
        s.labels.assign(labels.begin() + static_cast<std::ptrdiff_t>(first),
                        labels.begin() + static_cast<std::ptrdiff_t>(first + count));
        return s;
    }
};

namespace detail {
inline std::string idx_origin(const idx_array& a) {
    return a.source.empty() ? std::string("in memory") : a.source.string();
}
}  // namespace detail

/// Pairs an image array (rank 3: n,h,w with one channel; rank 4: n,h,w,c) with a label array
/// (rank 1: n) and checks that they belong together. Arrays are taken by value so callers that
/// pass temporaries (read_idx(...)) move 47 MB instead of copying it.
/// Throws tricks::data_error naming the files and the counts or label that disagree.
inline dataset make_dataset(std::string name, idx_array images, idx_array labels, int classes) {
    const std::string where = "tricks::dataset: " + name + ": ";
    const std::string img_src = detail::idx_origin(images), lbl_src = detail::idx_origin(labels);
    require<data_error>(classes >= 1 && classes <= 256, where, "classes = ", classes,
                        "; labels are bytes, so expected 1 to 256");
    require<data_error>(images.dims.size() == 3 || images.dims.size() == 4, where, "images ", img_src, " have rank ",
                        images.dims.size(), "; expected 3 (n, h, w) or 4 (n, h, w, c)");
    require<data_error>(labels.dims.size() == 1, where, "labels ", lbl_src, " have rank ", labels.dims.size(),
                        "; expected 1 (n)");
    for (std::size_t i = 0; i < images.dims.size(); ++i)
        require<data_error>(images.dims[i] > 0, where, "images ", img_src, ": dimension ", i, " is ", images.dims[i],
                            "; every extent must be positive");
    require<data_error>(labels.dims[0] > 0, where, "labels ", lbl_src, ": count is ", labels.dims[0],
                        "; expected a positive count");
    require<data_error>(images.element_count() == images.values.size(), where, "images ", img_src, ": dims say ",
                        images.element_count(), " bytes, the array holds ", images.values.size());
    require<data_error>(labels.element_count() == labels.values.size(), where, "labels ", lbl_src, ": dims say ",
                        labels.element_count(), " bytes, the array holds ", labels.values.size());
    require<data_error>(images.dims[0] == labels.dims[0], where, "image count ", images.dims[0], " (", img_src,
                        ") != label count ", labels.dims[0], " (", lbl_src, ")");
    for (std::size_t i = 0; i < labels.values.size(); ++i)
        require<data_error>(labels.values[i] < classes, where, "label ", i, " in ", lbl_src, " is ",
                            int{labels.values[i]}, "; expected 0 to ", classes - 1);

    dataset d;
    d.name = std::move(name);
    d.n = images.dims[0];
    d.h = images.dims[1];
    d.w = images.dims[2];
    d.c = images.dims.size() == 4 ? images.dims[3] : 1;
    d.classes = classes;
    d.pixels = std::move(images.values);
    d.labels = std::move(labels.values);
    return d;
}

/// Per-channel mean and (population) standard deviation of pixel/255, the constants of the
/// usual (x - mean) / std input normalisation.
struct channel_stats {
    std::vector<float> mean, stddev;
};

/// Exact statistics over every pixel of `d`: a 256-bin histogram per channel is summed in
/// integers, so the result does not depend on summation order and costs one pass over bytes.
inline channel_stats compute_stats(const dataset& d) {
    require<data_error>(d.c > 0 && d.n > 0, "tricks::dataset: ", d.name, ": compute_stats on an empty dataset");
    const auto c = static_cast<std::size_t>(d.c);
    std::vector<std::array<std::uint64_t, 256>> hist(c, std::array<std::uint64_t, 256>{});
    const std::size_t total = d.pixels.size();
    for (std::size_t p = 0; p + c <= total; p += c)
        for (std::size_t ch = 0; ch < c; ++ch) ++hist[ch][d.pixels[p + ch]];

    channel_stats s;
    s.mean.resize(c);
    s.stddev.resize(c);
    const double count = static_cast<double>(total / c);
    for (std::size_t ch = 0; ch < c; ++ch) {
        // Sums of v and v^2 over <= 2^32 bytes fit in 64 bits (255^2 * 2^32 < 2^48).
        std::uint64_t s1 = 0, s2 = 0;
        for (std::uint64_t v = 0; v < 256; ++v) {
            s1 += v * hist[ch][v];
            s2 += v * v * hist[ch][v];
        }
        const double mean = static_cast<double>(s1) / count;
        const double var = std::max(0.0, static_cast<double>(s2) / count - mean * mean);
        s.mean[ch] = static_cast<float>(mean / 255.0);
        s.stddev[ch] = static_cast<float>(std::sqrt(var) / 255.0);
    }
    return s;
}

}  // namespace tricks::data
