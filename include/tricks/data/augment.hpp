#pragma once
// Per-image preprocessing: bytes -> [0,1] floats, training-time random crop and horizontal flip,
// then per-channel normalisation. For 28x28/32x32 inputs the standard augmentation is "pad and
// crop" (He et al. 2016, §4.2 for CIFAR) rather than the ImageNet random-resized crop of the Bag
// of Tricks paper (§2.1), which would throw away most of such a small image.
//
// Order of operations, fixed because tests and checkpoints depend on it:
//   1. conceptually pad the byte image by `crop_padding` pixels of value 0 on every side
//      (as torchvision's RandomCrop(padding) does before Normalize);
//   2. draw dy then dx, each uniform in [0, 2p], and take the h x w window at (dy, dx);
//   3. draw flip (one below(2) draw, 1 = flip) and mirror columns when set;
//   4. out = (byte / 255 - mean[ch]) / stddev[ch] for every pixel, padding included — so the
//      padded border reads (0 - mean) / stddev, the normalised value of a black pixel.
// The rng is only advanced in training mode, by exactly one draw per enabled transform whatever
// its outcome, so a stream's later draws never depend on an image's content or on earlier coins.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/core/rng.hpp"
#include "tricks/data/dataset.hpp"

namespace tricks::data {

struct augment_options {
    int crop_padding = 2;         ///< pixels of zero padding per side before a random crop; 0 = no crop
    bool horizontal_flip = true;  ///< mirror left-right with probability 1/2
    std::vector<float> mean;      ///< per channel, in [0,1] units; empty = 0
    std::vector<float> stddev;    ///< per channel; empty = 1
};

/// Throws tricks::error unless `o` fits images with `channels` channels.
inline void check_augment_options(const augment_options& o, int channels) {
    require(o.crop_padding >= 0, "tricks::augment: crop_padding = ", o.crop_padding, "; expected >= 0");
    const auto c = static_cast<std::size_t>(channels);
    require(o.mean.empty() || o.mean.size() == c, "tricks::augment: mean has ", o.mean.size(),
            " values; expected 0 (no centring) or one per channel (", channels, ")");
    require(o.stddev.empty() || o.stddev.size() == c, "tricks::augment: stddev has ", o.stddev.size(),
            " values; expected 0 (no scaling) or one per channel (", channels, ")");
    for (std::size_t i = 0; i < o.stddev.size(); ++i)
        require(o.stddev[i] > 0.0f, "tricks::augment: stddev[", i, "] = ", o.stddev[i], "; expected > 0");
}

/// Writes image `index` of `ds` as h*w*c normalised floats (NHWC) to `out`. In training mode the
/// crop and flip described at the top of this file are drawn from `r` (and only from `r`);
/// in evaluation mode `r` is untouched and the image is only normalised.
inline void prepare_image(const dataset& ds, std::size_t index, const augment_options& opts, bool train, rng& r,
                          float* out) {
    require<data_error>(index < static_cast<std::size_t>(ds.n), "tricks::augment: ", ds.name, ": image ", index,
                        " out of range; the dataset has ", ds.n, " images");
    const std::size_t img = ds.image_size();
    // A dataset edited after loading (or built by hand) must not be read out of bounds.
    require<data_error>(ds.pixels.size() >= (index + 1) * img, "tricks::augment: ", ds.name, ": pixels hold ",
                        ds.pixels.size(), " bytes, too few for image ", index, " of ", img, " bytes");
    check_augment_options(opts, ds.c);

    const int h = ds.h, w = ds.w, c = ds.c;
    int dy = 0, dx = 0;  // offset of the crop window in source coordinates (may be negative)
    bool flip = false;
    if (train) {
        const int p = opts.crop_padding;
        if (p > 0) {
            const auto span = static_cast<std::uint32_t>(2 * p + 1);
            dy = static_cast<int>(r.below(span)) - p;
            dx = static_cast<int>(r.below(span)) - p;
        }
        if (opts.horizontal_flip) flip = r.below(2) == 1;
    }

    // Per-channel value of every possible byte: 256*c divisions once instead of h*w*c, and the
    // padding value is simply lut[0]. Computed exactly as (v / 255 - mean) / std in float.
    constexpr int max_lut_channels = 4;
    float lut_small[max_lut_channels * 256];
    std::vector<float> lut_big;
    float* lut = lut_small;
    if (c > max_lut_channels) {
        lut_big.resize(static_cast<std::size_t>(c) * 256);
        lut = lut_big.data();
    }
    for (int ch = 0; ch < c; ++ch) {
        const float m = opts.mean.empty() ? 0.0f : opts.mean[static_cast<std::size_t>(ch)];
        const float s = opts.stddev.empty() ? 1.0f : opts.stddev[static_cast<std::size_t>(ch)];
        for (int v = 0; v < 256; ++v) lut[ch * 256 + v] = (static_cast<float>(v) / 255.0f - m) / s;
    }

    const std::uint8_t* src = ds.image(index);
    const auto uc = static_cast<std::size_t>(c);
    for (int y = 0; y < h; ++y) {
        float* row = out + static_cast<std::size_t>(y) * static_cast<std::size_t>(w) * uc;
        const int sy = y + dy;
        if (sy < 0 || sy >= h) {  // whole row comes from the padding
            for (int x = 0; x < w; ++x)
                for (int ch = 0; ch < c; ++ch) row[static_cast<std::size_t>(x) * uc + ch] = lut[ch * 256];
            continue;
        }
        const std::uint8_t* srow = src + static_cast<std::size_t>(sy) * static_cast<std::size_t>(w) * uc;
        for (int x = 0; x < w; ++x) {
            // Crop first, then mirror the cropped window: output column x shows window column
            // (flip ? w-1-x : x), which is source column that + dx.
            const int sx = (flip ? w - 1 - x : x) + dx;
            float* o = row + static_cast<std::size_t>(x) * uc;
            if (sx < 0 || sx >= w) {
                for (int ch = 0; ch < c; ++ch) o[ch] = lut[ch * 256];
            } else {
                const std::uint8_t* s = srow + static_cast<std::size_t>(sx) * uc;
                for (int ch = 0; ch < c; ++ch) o[ch] = lut[ch * 256 + s[ch]];
            }
        }
    }
}

}  // namespace tricks::data
