#pragma once
// The ImageNet preprocessing of the Bag of Tricks paper (He et al. 2019, §2.1, "baseline training
// procedure"), deterministic and per image. Output: size x size x 3 floats, HWC interleaved (one
// image of an NHWC batch), normalised per channel.
//
// Training, in this fixed order:
//   1. random resized crop box (torchvision's RandomResizedCrop): area in [8%, 100%] of the image,
//      aspect ratio log-uniform in [3/4, 4/3], up to 10 tries, then a centred fallback box;
//   2. resize the box to size x size, bilinear with PIL's antialiasing (Image.resize(BILINEAR, box));
//   3. horizontal flip with probability 1/2;
//   4. colour jitter: brightness, saturation and hue coefficients uniform in [0.6, 1.4] (§2.1);
//   5. PCA lighting noise (Krizhevsky et al. 2012, §4.1), alpha ~ N(0, 0.1);
//   6. normalise: (x - mean) / stddev with the paper's mean and standard deviation (0..255 units).
// Evaluation (§2.1): "resize the shorter edge to 256 pixels while keeping its aspect ratio; then
// the 224x224 centre crop", reproduced exactly as torchvision's Resize(256) + CenterCrop(224) on a
// PIL image by resampling one fractional box of the source (eval_source_box).
//
// Steps 3-6 are per-pixel affine maps of RGB, so they run as one pass: the flip is folded into the
// resampler's column tables, brightness, saturation and hue multiply into one 3x3 matrix, the PCA
// offset and the mean give its fourth column, and a per-channel division by stddev ends it.
// All arithmetic is on floats in 0..255 units without clamping between steps, as MXNet's
// augmenters (which the paper's GluonCV code uses) work on float images without clamping.
//
// Determinism: every draw comes from the per-image rng given to draw_train, and each step draws
// from its own sub-stream r.fork(k) (transform_stream below), so a step's draws never shift
// another's: the crop's number of draws depends on the image's size, the others' do not. A step
// that is absent draws nothing. draw_train draws everything before any pixel is decoded, because
// the decoder needs the crop box (to pick the JPEG DCT scale and the region to decode).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <string>
#include <type_traits>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/core/rng.hpp"
#include "tricks/data/image.hpp"

namespace tricks::data {

/// Run-time numbers of the transform; the defaults are the paper's (§2.1).
struct image_transform_options {
    int size = 224;    ///< output side (training crop and evaluation centre crop)
    int resize = 256;  ///< evaluation: the shorter side is resized to this, then the centre size x size is kept
    double min_area = 0.08, max_area = 1.0;               ///< crop area, as a fraction of the image's area
    double min_ratio = 3.0 / 4.0, max_ratio = 4.0 / 3.0;  ///< crop aspect ratio w / h, drawn log-uniformly
    int tries = 10;  ///< random crop attempts before the centred fallback (torchvision's 10)
    float brightness = 0.4f, saturation = 0.4f, hue = 0.4f;  ///< coefficients drawn from [1 - v, 1 + v]
    float pca_std = 0.1f;                                    ///< standard deviation of the PCA lighting alphas
    std::array<float, 3> mean{123.68f, 116.779f, 103.939f};  ///< per channel, 0..255 units (§2.1)
    std::array<float, 3> stddev{58.393f, 57.12f, 57.375f};   ///< per channel, 0..255 units (§2.1)
};

/// Throws tricks::error naming the first field that is out of range, with its value.
inline void check(const image_transform_options& o) {
    constexpr const char* p = "tricks::image_transform: ";
    require(o.size >= 1, p, "size = ", o.size, "; expected >= 1");
    require(o.resize >= o.size, p, "resize = ", o.resize, "; expected >= size (", o.size, ")");
    require(o.min_area > 0 && o.min_area <= 1, p, "min_area = ", o.min_area, "; expected in (0, 1]");
    require(o.max_area > 0 && o.max_area <= 1, p, "max_area = ", o.max_area, "; expected in (0, 1]");
    require(o.min_area <= o.max_area, p, "min_area = ", o.min_area, " > max_area = ", o.max_area);
    require(o.min_ratio > 0 && std::isfinite(o.min_ratio), p, "min_ratio = ", o.min_ratio,
            "; expected a finite value > 0");
    require(o.max_ratio > 0 && std::isfinite(o.max_ratio), p, "max_ratio = ", o.max_ratio,
            "; expected a finite value > 0");
    require(o.min_ratio <= o.max_ratio, p, "min_ratio = ", o.min_ratio, " > max_ratio = ", o.max_ratio);
    require(o.tries >= 1, p, "tries = ", o.tries, "; expected >= 1");
    require(o.brightness >= 0 && o.brightness < 1, p, "brightness = ", o.brightness,
            "; expected in [0, 1) (the coefficient is drawn from [1 - brightness, 1 + brightness])");
    require(o.saturation >= 0 && o.saturation < 1, p, "saturation = ", o.saturation,
            "; expected in [0, 1) (the coefficient is drawn from [1 - saturation, 1 + saturation])");
    require(o.hue >= 0 && o.hue <= 1, p, "hue = ", o.hue, "; expected in [0, 1] (a chroma rotation of at most pi)");
    require(o.pca_std >= 0 && std::isfinite(o.pca_std), p, "pca_std = ", o.pca_std, "; expected a finite value >= 0");
    for (std::size_t c = 0; c < 3; ++c) {
        require(std::isfinite(o.mean[c]), p, "mean[", c, "] = ", o.mean[c], "; expected a finite value");
        require(o.stddev[c] > 0 && std::isfinite(o.stddev[c]), p, "stddev[", c, "] = ", o.stddev[c],
                "; expected a finite value > 0");
    }
}

/// A box with fractional edges, [x0, x1) x [y0, y1), in the pixel grid of the whole image
/// (pixel i covers [i, i + 1), its centre is i + 0.5, as in PIL).
struct source_box {
    double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    friend bool operator==(const source_box&, const source_box&) = default;
};

/// The sub-stream of the per-image rng each training step draws from (rng::fork(k)).
enum class transform_stream : std::uint64_t { crop = 0, flip = 1, jitter = 2, lighting = 3 };

namespace detail {

/// Python 3's round() to an integer value: halves go to the even neighbour. torchvision rounds with
/// it (RandomResizedCrop's sides, CenterCrop's offsets), so ties must break the same way. Returns a
/// double so that callers compare before converting a possibly huge value to int.
inline double round_half_even(double v) {
    const double f = std::floor(v), d = v - f;
    const bool up = d > 0.5 || (d == 0.5 && std::fmod(f, 2.0) != 0.0);
    return up ? f + 1.0 : f;
}

inline void require_image_size(int W, int H) {
    require(W >= 1 && H >= 1, "tricks::image_transform: image size ", W, "x", H, "; expected at least 1x1");
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// 1. Crop boxes

/// torchvision's RandomResizedCrop.get_params (v0.8 and later) on a W x H image: up to `tries`
/// times, draw area = W*H * U(min_area, max_area) and ratio = exp(U(log min_ratio, log max_ratio)),
/// take w = round(sqrt(area * ratio)), h = round(sqrt(area / ratio)) and, when the box fits, its
/// position x = U_int[0, W - w] then y = U_int[0, H - h] (torchvision draws y first; the order only
/// decides which draw of the stream goes where). If no try fits: the centred box of the whole
/// image with its ratio clamped to [min_ratio, max_ratio]. Draws two uniform_double() per try and
/// two below() on success, all from `r`. Rounding is Python's (half to even). One deviation, for
/// degenerate options only: a fallback side is at least 1 pixel.
inline crop_box random_resized_crop_box(int W, int H, const image_transform_options& o, rng& r) {
    check(o);
    detail::require_image_size(W, H);
    const double area = static_cast<double>(W) * static_cast<double>(H);
    const double log_lo = std::log(o.min_ratio), log_hi = std::log(o.max_ratio);
    for (int t = 0; t < o.tries; ++t) {
        const double target = area * (o.min_area + (o.max_area - o.min_area) * r.uniform_double());
        const double ratio = std::exp(log_lo + (log_hi - log_lo) * r.uniform_double());
        const double wd = detail::round_half_even(std::sqrt(target * ratio));
        const double hd = detail::round_half_even(std::sqrt(target / ratio));
        if (0 < wd && wd <= W && 0 < hd && hd <= H) {
            const int w = static_cast<int>(wd), h = static_cast<int>(hd);
            const int x = static_cast<int>(r.below(static_cast<std::uint32_t>(W - w + 1)));
            const int y = static_cast<int>(r.below(static_cast<std::uint32_t>(H - h + 1)));
            return {x, y, w, h};
        }
    }
    const double in_ratio = static_cast<double>(W) / static_cast<double>(H);
    int w = W, h = H;
    if (in_ratio < o.min_ratio)
        h = std::max(1, static_cast<int>(detail::round_half_even(static_cast<double>(W) / o.min_ratio)));
    else if (in_ratio > o.max_ratio)
        w = std::max(1, static_cast<int>(detail::round_half_even(static_cast<double>(H) * o.max_ratio)));
    return {(W - w) / 2, (H - h) / 2, w, h};
}

/// The evaluation box, exactly: the source region that torchvision's Resize(resize) followed by
/// CenterCrop(size) keeps of a W x H PIL image. Resize makes the shorter side `resize` and the
/// longer int(resize * longer / shorter) (truncated, as torchvision does), so the two axes scale
/// by slightly different factors sx = W / new_w and sy = H / new_h; CenterCrop starts at
/// int(round((new - size) / 2)) (Python's round). Output pixel (i, j) of the crop is resized pixel
/// (left + i, top + j), whose centre in the source is (left + i + 0.5) * sx; the box
/// [left * sx, (left + size) * sx) resampled to `size` pixels puts its centres at the same places
/// with the same filter width, so it reproduces resize-then-crop (up to rounding in the last bits).
inline source_box eval_source_box(int W, int H, const image_transform_options& o) {
    check(o);
    detail::require_image_size(W, H);
    const int shorter = std::min(W, H), longer = std::max(W, H);
    const int new_long =
        static_cast<int>(static_cast<double>(o.resize) * static_cast<double>(longer) / static_cast<double>(shorter));
    const int new_w = W <= H ? o.resize : new_long, new_h = W <= H ? new_long : o.resize;
    const auto left = static_cast<int>(detail::round_half_even(static_cast<double>(new_w - o.size) / 2.0));
    const auto top = static_cast<int>(detail::round_half_even(static_cast<double>(new_h - o.size) / 2.0));
    // Integer products divided once: the box's edges are correctly rounded, and a crop that
    // reaches the resized image's edge ends exactly at W (or H).
    const auto edge = [](int k, int whole, int resized) {
        return static_cast<double>(k) * static_cast<double>(whole) / static_cast<double>(resized);
    };
    return {edge(left, W, new_w), edge(top, H, new_h), edge(left + o.size, W, new_w), edge(top + o.size, H, new_h)};
}

/// The smallest box of whole pixels that contains eval_source_box(W, H, o): the region a decoder
/// must produce for evaluation (apply_eval(region, W, H, ...) places the exact box inside it).
inline crop_box eval_crop_box(int W, int H, const image_transform_options& o) {
    const source_box b = eval_source_box(W, H, o);
    const int x0 = std::clamp(static_cast<int>(std::floor(b.x0)), 0, W - 1);
    const int y0 = std::clamp(static_cast<int>(std::floor(b.y0)), 0, H - 1);
    const int x1 = std::clamp(static_cast<int>(std::ceil(b.x1)), x0 + 1, W);
    const int y1 = std::clamp(static_cast<int>(std::ceil(b.y1)), y0 + 1, H);
    return {x0, y0, x1 - x0, y1 - y0};
}

// ---------------------------------------------------------------------------------------------
// 2. Bilinear resampling with PIL's antialiasing

namespace detail {

/// The taps of one axis: output pixel o reads `count[o]` source pixels from `first[o]` on, with
/// the weights at weight[o * stride ...]. PIL's precompute_coeffs (libImaging/Resample.c) for the
/// bilinear (triangle) filter: scale = (in1 - in0) / out_size, the filter is stretched by
/// fs = max(1, scale) when downscaling (antialiasing), output pixel o is centred at
/// c = in0 + (o + 0.5) * scale, source pixel i at i + 0.5 weighs max(0, 1 - |i + 0.5 - c| / fs),
/// the window [round(c - fs), round(c + fs)) is clipped to the image (so the filter reads pixels
/// outside the box but never outside the image) and the weights are divided by their sum.
/// `mirror` stores output o's taps at slot out_size - 1 - o: the horizontal flip for free.
struct axis_taps {
    std::vector<int> first, count;
    std::vector<float> weight;
    int stride = 0;

    void build(int in_size, double in0, double in1, int out_size, bool mirror) {
        const double scale = (in1 - in0) / static_cast<double>(out_size);
        const double fs = std::max(scale, 1.0);  // triangle support 1, stretched by fs
        stride = static_cast<int>(std::ceil(fs)) * 2 + 1;
        const auto n = static_cast<std::size_t>(out_size);
        first.assign(n, 0);
        count.assign(n, 0);
        weight.assign(n * static_cast<std::size_t>(stride), 0.0f);
        for (int o = 0; o < out_size; ++o) {
            const double c = in0 + (static_cast<double>(o) + 0.5) * scale;
            const int lo = std::max(0, static_cast<int>(std::floor(c - fs + 0.5)));
            const int hi = std::min(in_size, static_cast<int>(std::floor(c + fs + 0.5)));
            const auto tap = [&](int i) {
                return std::max(0.0, 1.0 - std::abs((static_cast<double>(i) + 0.5 - c) / fs));
            };
            double sum = 0;
            for (int i = lo; i < hi; ++i) sum += tap(i);
            const auto slot = static_cast<std::size_t>(mirror ? out_size - 1 - o : o);
            first[slot] = lo;
            count[slot] = hi - lo;
            float* w = weight.data() + slot * static_cast<std::size_t>(stride);
            for (int i = lo; i < hi; ++i) w[i - lo] = static_cast<float>(tap(i) / sum);
        }
    }
};

/// One output row: the vertical taps `wy` (count `ny`, from source row `first_row`) blend the source
/// columns [col0, col0 + cols) into `line` (cols x c floats), then the horizontal taps of `tx`
/// turn `line` into out_w x c floats at `dst`. The vertical step runs first because it is a
/// contiguous multiply-add over bytes that vectorises, and it leaves one short row for the
/// horizontal step, whose taps gather (PIL runs the horizontal pass first; the sums are the same
/// up to float rounding). C is the channel count when known at compile time, 0 when
/// it is only known at run time.
template <int C>
void resample_row(const image_u8& img, int c_rt, const axis_taps& tx, int first_row, const float* wy, int ny, int col0,
                  int cols, float* line, float* dst) {
    const int c = C > 0 ? C : c_rt;
    const auto uc = static_cast<std::size_t>(c);
    const std::size_t n = static_cast<std::size_t>(cols) * uc;
    {
        const std::uint8_t* s = img.at(first_row, col0);
        const float w0 = wy[0];
        for (std::size_t e = 0; e < n; ++e) line[e] = w0 * static_cast<float>(s[e]);
    }
    for (int t = 1; t < ny; ++t) {
        const std::uint8_t* s = img.at(first_row + t, col0);
        const float wt = wy[t];
        for (std::size_t e = 0; e < n; ++e) line[e] += wt * static_cast<float>(s[e]);
    }
    const std::size_t out_w = tx.first.size();
    for (std::size_t o = 0; o < out_w; ++o) {
        const float* p = line + static_cast<std::size_t>(tx.first[o] - col0) * uc;
        const float* w = tx.weight.data() + o * static_cast<std::size_t>(tx.stride);
        const int taps = tx.count[o];
        if constexpr (C > 0) {
            std::array<float, static_cast<std::size_t>(C)> acc{};
            for (int t = 0; t < taps; ++t)
                for (std::size_t ch = 0; ch < static_cast<std::size_t>(C); ++ch)
                    acc[ch] += w[t] * p[static_cast<std::size_t>(t) * uc + ch];
            for (std::size_t ch = 0; ch < static_cast<std::size_t>(C); ++ch) dst[o * uc + ch] = acc[ch];
        } else {
            for (std::size_t ch = 0; ch < uc; ++ch) {
                float acc = 0;
                for (int t = 0; t < taps; ++t) acc += w[t] * p[static_cast<std::size_t>(t) * uc + ch];
                dst[o * uc + ch] = acc;
            }
        }
    }
}

/// resample_bilinear with the option of mirroring the output's columns (the training flip).
inline void resample_box(const image_u8& img, double x0, double y0, double x1, double y1, int out_w, int out_h,
                         float* out, bool mirror) {
    require<data_error>(img.w >= 1 && img.h >= 1 && img.c >= 1, "tricks::resample_bilinear: image is ", img.w, "x",
                        img.h, "x", img.c, "; expected at least 1x1x1");
    require<data_error>(img.pixels.size() >= img.size(), "tricks::resample_bilinear: image holds ", img.pixels.size(),
                        " bytes, too few for ", img.w, "x", img.h, "x", img.c);
    require(out_w >= 1 && out_h >= 1, "tricks::resample_bilinear: output size ", out_w, "x", out_h,
            "; expected at least 1x1");
    // A box computed by mapping coordinates may overshoot the image by rounding in the last bits.
    constexpr double slack = 1e-6;
    require(std::isfinite(x0) && std::isfinite(x1) && x0 >= -slack && x0 < x1 && x1 <= img.w + slack,
            "tricks::resample_bilinear: box x range [", x0, ", ", x1, ") is empty or outside the image's width ",
            img.w);
    require(std::isfinite(y0) && std::isfinite(y1) && y0 >= -slack && y0 < y1 && y1 <= img.h + slack,
            "tricks::resample_bilinear: box y range [", y0, ", ", y1, ") is empty or outside the image's height ",
            img.h);

    thread_local axis_taps tx, ty;
    thread_local std::vector<float> line;
    tx.build(img.w, x0, x1, out_w, mirror);
    ty.build(img.h, y0, y1, out_h, false);

    // Only the source columns some output column reads are blended vertically.
    int col0 = img.w, col1 = 0;
    for (std::size_t o = 0; o < tx.first.size(); ++o) {
        col0 = std::min(col0, tx.first[o]);
        col1 = std::max(col1, tx.first[o] + tx.count[o]);
    }
    const auto uc = static_cast<std::size_t>(img.c);
    line.resize(static_cast<std::size_t>(col1 - col0) * uc);
    const auto row = [&](auto channels) {
        for (int o = 0; o < out_h; ++o) {
            const auto uo = static_cast<std::size_t>(o);
            resample_row<decltype(channels)::value>(
                img, img.c, tx, ty.first[uo], ty.weight.data() + uo * static_cast<std::size_t>(ty.stride), ty.count[uo],
                col0, col1 - col0, line.data(), out + uo * static_cast<std::size_t>(out_w) * uc);
        }
    };
    switch (img.c) {
        case 1:
            row(std::integral_constant<int, 1>{});
            break;
        case 3:
            row(std::integral_constant<int, 3>{});
            break;
        case 4:
            row(std::integral_constant<int, 4>{});
            break;
        default:
            row(std::integral_constant<int, 0>{});
            break;
    }
}

}  // namespace detail

/// Resamples the box [x0, x1) x [y0, y1) of `img` (fractional edges allowed, inside the image) to
/// out_w x out_h pixels as PIL's Image.resize((out_w, out_h), BILINEAR, box=(x0, y0, x1, y1))
/// defines it (see detail::axis_taps), writing out_h x out_w x img.c floats in 0..255, not rounded
/// (PIL rounds its 8-bit result and its intermediate rows; this keeps both in float). The filter
/// reads pixels outside the box up to the image's edges, so resampling a box equals resizing the
/// whole image at the same scale and cropping. Separable, with the taps of each axis computed
/// once per call; each output row is blended vertically from the source rows it needs (only the
/// columns the horizontal taps read) into a per-thread scratch row, then horizontally.
inline void resample_bilinear(const image_u8& img, double x0, double y0, double x1, double y1, int out_w, int out_h,
                              float* out) {
    detail::resample_box(img, x0, y0, x1, y1, out_w, out_h, out, false);
}

/// Resamples the box of a decoded region, [x0, x1) x [y0, y1) of region.image.
inline void resample_bilinear(const decoded_region& src, int out_w, int out_h, float* out) {
    resample_bilinear(src.image, src.x0, src.y0, src.x1, src.y1, out_w, out_h, out);
}

// ---------------------------------------------------------------------------------------------
// 4-6. Colour: the per-step maps (double, for reference and tests) and the fused per-image affine

using color_matrix = std::array<std::array<double, 3>, 3>;
using color_vector = std::array<double, 3>;

namespace detail {
constexpr color_matrix matrix_product(const color_matrix& a, const color_matrix& b) {
    color_matrix m{};
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j)
            for (std::size_t k = 0; k < 3; ++k) m[i][j] += a[i][k] * b[k][j];
    return m;
}
constexpr color_matrix matrix_inverse(const color_matrix& a) {
    const color_matrix cof{{{a[1][1] * a[2][2] - a[1][2] * a[2][1], a[0][2] * a[2][1] - a[0][1] * a[2][2],
                             a[0][1] * a[1][2] - a[0][2] * a[1][1]},
                            {a[1][2] * a[2][0] - a[1][0] * a[2][2], a[0][0] * a[2][2] - a[0][2] * a[2][0],
                             a[0][2] * a[1][0] - a[0][0] * a[1][2]},
                            {a[1][0] * a[2][1] - a[1][1] * a[2][0], a[0][1] * a[2][0] - a[0][0] * a[2][1],
                             a[0][0] * a[1][1] - a[0][1] * a[1][0]}}};
    const double det = a[0][0] * cof[0][0] + a[0][1] * cof[1][0] + a[0][2] * cof[2][0];
    color_matrix inv{};
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) inv[i][j] = cof[i][j] / det;
    return inv;
}
}  // namespace detail

/// m * v.
constexpr color_vector mat_vec(const color_matrix& m, const color_vector& v) {
    return {m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2], m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
            m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2]};
}

/// ITU-R BT.601 luma weights: the grey level saturation moves towards (MXNet's SaturationJitterAug).
inline constexpr color_vector luma_weights{0.299, 0.587, 0.114};

/// RGB -> YIQ as MXNet's HueJitterAug writes it (python/mxnet/image/image.py, `tyiq`).
inline constexpr color_matrix rgb_to_yiq{{{0.299, 0.587, 0.114}, {0.596, -0.274, -0.321}, {0.211, -0.523, 0.311}}};

/// YIQ -> RGB: the exact inverse of rgb_to_yiq. MXNet uses its 3-decimal rounding
/// {{1, 0.956, 0.621}, {1, -0.272, -0.647}, {1, -1.107, 1.705}} (`ityiq`), which differs from it
/// by < 3e-3 per entry but makes a zero rotation change colours by up to ~0.05 (of 255) and lets
/// the rotation leak into luma; the exact inverse keeps hue coefficient 1 the identity and Y fixed.
inline constexpr color_matrix yiq_to_rgb = detail::matrix_inverse(rgb_to_yiq);

/// Brightness (MXNet's BrightnessJitterAug): x -> b * x.
constexpr color_matrix brightness_matrix(double b) { return {{{b, 0, 0}, {0, b, 0}, {0, 0, b}}}; }

/// Saturation (MXNet's SaturationJitterAug): x -> grey + s * (x - grey), grey = luma_weights . x.
constexpr color_matrix saturation_matrix(double s) {
    color_matrix m{};
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) m[i][j] = (1.0 - s) * luma_weights[j] + (i == j ? s : 0.0);
    return m;
}

/// Hue with coefficient h (MXNet's HueJitterAug with alpha = h - 1): rotate the (I, Q) chroma
/// plane by (h - 1) * pi, i.e. yiq_to_rgb * [[1, 0, 0], [0, cos, -sin], [0, sin, cos]] * rgb_to_yiq.
inline color_matrix hue_matrix(double h) {
    const double a = (h - 1.0) * std::numbers::pi, u = std::cos(a), w = std::sin(a);
    const color_matrix rot{{{1, 0, 0}, {0, u, -w}, {0, w, u}}};
    return detail::matrix_product(detail::matrix_product(yiq_to_rgb, rot), rgb_to_yiq);
}

/// Colour jitter as one matrix: brightness, then saturation, then hue. GluonCV/MXNet apply the
/// jitters in a random order per image; the order is fixed here so that an rng stream means the
/// same transform whatever a shuffle would have drawn.
inline color_matrix jitter_matrix(double b, double s, double h) {
    return detail::matrix_product(hue_matrix(h), detail::matrix_product(saturation_matrix(s), brightness_matrix(b)));
}

/// PCA lighting eigenvalues and eigenvectors (columns) of ImageNet's RGB covariance, 0..255 units:
/// fb.resnet.torch's datasets/imagenet.lua values (eigval 0.2175, 0.0188, 0.0045 on the 0..1 scale)
/// times 255, as MXNet's CreateAugmenter(pca_noise=...) and GluonCV's lighting use them.
inline constexpr color_vector pca_eigval{55.46, 4.794, 1.148};
inline constexpr color_matrix pca_eigvec{
    {{-0.5675, 0.7192, 0.4009}, {-0.5808, -0.0045, -0.8140}, {-0.5836, -0.6948, 0.4203}}};

/// AlexNet's lighting noise (Krizhevsky et al. 2012, §4.1): the RGB offset eigvec * (alpha .* eigval).
inline color_vector pca_lighting_offset(const std::array<float, 3>& alpha) {
    color_vector scaled{};
    for (std::size_t i = 0; i < 3; ++i) scaled[i] = static_cast<double>(alpha[i]) * pca_eigval[i];
    return mat_vec(pca_eigvec, scaled);
}

/// The drawn parameters of one training image. `box` is the region to decode (whole pixels);
/// `src` the box to resample, in the same full-image coordinates (equal to `box` for a random
/// crop, the fractional eval_source_box without one). Absent steps leave their defaults
/// (no flip, coefficients 1, alphas 0).
struct train_draw {
    crop_box box;
    bool flip = false;
    float b = 1, s = 1, h = 1;     ///< brightness, saturation, hue coefficients
    std::array<float, 3> alpha{};  ///< PCA lighting alphas
    source_box src;
};

/// Steps 3-6 after the resampling as one per-pixel map: out[c] = (m[c] . rgb + shift[c]) / stddev[c].
/// The division (not a multiplication by 1/stddev) keeps an identity jitter and zero lighting
/// bit-exact to the normalisation formula (x - mean) / stddev.
struct color_affine {
    std::array<std::array<float, 3>, 3> m{};
    std::array<float, 3> shift{}, stddev{};
};

/// The affine of one image: jitter matrix (if `jitter`) and PCA offset (if `lighting`) from `d`,
/// mean and stddev from `o`; composed in double, rounded to float once.
inline color_affine make_color_affine(const train_draw& d, bool jitter, bool lighting,
                                      const image_transform_options& o) {
    const color_matrix m = jitter ? jitter_matrix(d.b, d.s, d.h) : brightness_matrix(1.0);
    const color_vector off = lighting ? pca_lighting_offset(d.alpha) : color_vector{};
    color_affine a;
    for (std::size_t i = 0; i < 3; ++i) {
        for (std::size_t j = 0; j < 3; ++j) a.m[i][j] = static_cast<float>(m[i][j]);
        a.shift[i] = static_cast<float>(off[i] - static_cast<double>(o.mean[i]));
        a.stddev[i] = o.stddev[i];
    }
    return a;
}

/// Applies `a` in place to n RGB pixels.
inline void apply_color_affine(const color_affine& a, float* px, std::size_t n) {
    const float m00 = a.m[0][0], m01 = a.m[0][1], m02 = a.m[0][2], m10 = a.m[1][0], m11 = a.m[1][1], m12 = a.m[1][2],
                m20 = a.m[2][0], m21 = a.m[2][1], m22 = a.m[2][2];
    const float t0 = a.shift[0], t1 = a.shift[1], t2 = a.shift[2];
    const float s0 = a.stddev[0], s1 = a.stddev[1], s2 = a.stddev[2];
    for (std::size_t i = 0; i < n; ++i) {
        float* p = px + 3 * i;
        const float r = p[0], g = p[1], b = p[2];
        p[0] = (m00 * r + m01 * g + m02 * b + t0) / s0;
        p[1] = (m10 * r + m11 * g + m12 * b + t1) / s1;
        p[2] = (m20 * r + m21 * g + m22 * b + t2) / s2;
    }
}

// ---------------------------------------------------------------------------------------------
// Policies: which training steps run

namespace aug {

struct random_resized_crop {};  ///< step 1; without it training uses the evaluation box
struct horizontal_flip {};      ///< step 3
struct color_jitter {};         ///< step 4
struct pca_lighting {};         ///< step 5

template <class T>
inline constexpr bool is_step_v = std::is_same_v<T, random_resized_crop> || std::is_same_v<T, horizontal_flip> ||
                                  std::is_same_v<T, color_jitter> || std::is_same_v<T, pca_lighting>;

/// The training steps that run; resizing to size x size and normalising always do. The steps run
/// in the fixed order of this file's header whatever order they are listed in.
template <class... Steps>
struct train_transform {
    static_assert((is_step_v<Steps> && ...),
                  "tricks::data::aug::train_transform: every step must be one of random_resized_crop, "
                  "horizontal_flip, color_jitter, pca_lighting");
    static_assert((((0 + ... + (std::is_same_v<Steps, random_resized_crop> ? 1 : 0)) <= 1) &&
                   ((0 + ... + (std::is_same_v<Steps, horizontal_flip> ? 1 : 0)) <= 1) &&
                   ((0 + ... + (std::is_same_v<Steps, color_jitter> ? 1 : 0)) <= 1) &&
                   ((0 + ... + (std::is_same_v<Steps, pca_lighting> ? 1 : 0)) <= 1)),
                  "tricks::data::aug::train_transform: a step is listed more than once; list each step at most once");

    static constexpr bool crop = (std::is_same_v<Steps, random_resized_crop> || ...);
    static constexpr bool flip = (std::is_same_v<Steps, horizontal_flip> || ...);
    static constexpr bool jitter = (std::is_same_v<Steps, color_jitter> || ...);
    static constexpr bool lighting = (std::is_same_v<Steps, pca_lighting> || ...);

    /// The steps in the order they run joined by '+', e.g.
    /// "random_resized_crop+horizontal_flip+color_jitter+pca_lighting"; "none" without steps.
    static std::string describe() {
        std::string s;
        const auto add = [&s](bool on, const char* name) {
            if (!on) return;
            if (!s.empty()) s += '+';
            s += name;
        };
        add(crop, "random_resized_crop");
        add(flip, "horizontal_flip");
        add(jitter, "color_jitter");
        add(lighting, "pca_lighting");
        return s.empty() ? "none" : s;
    }
};

/// The paper's training augmentation (§2.1).
using paper_train = train_transform<random_resized_crop, horizontal_flip, color_jitter, pca_lighting>;

template <class T>
inline constexpr bool is_train_transform_v = false;
template <class... Steps>
inline constexpr bool is_train_transform_v<train_transform<Steps...>> = true;

}  // namespace aug

// ---------------------------------------------------------------------------------------------
// The transforms

/// Draws the parameters of one training image of W x H pixels (full resolution, as displayed)
/// from `r`, the image's own stream, which is not advanced: step k draws from r.fork(k)
/// (transform_stream), so the same `r` always gives the same draw.
/// Jitter coefficients are 1 + U(-v, v) for v = brightness, saturation, hue, drawn in that order;
/// the alphas are pca_std * N(0, 1), in channel order.
template <class T>
train_draw draw_train(int W, int H, const image_transform_options& o, const rng& r) {
    static_assert(aug::is_train_transform_v<T>, "draw_train<T>: T must be a tricks::data::aug::train_transform<...>");
    check(o);
    detail::require_image_size(W, H);
    train_draw d;
    if constexpr (T::crop) {
        rng c = r.fork(static_cast<std::uint64_t>(transform_stream::crop));
        d.box = random_resized_crop_box(W, H, o, c);
        d.src = {static_cast<double>(d.box.x), static_cast<double>(d.box.y), static_cast<double>(d.box.x + d.box.w),
                 static_cast<double>(d.box.y + d.box.h)};
    } else {
        d.box = eval_crop_box(W, H, o);
        d.src = eval_source_box(W, H, o);
    }
    if constexpr (T::flip) {
        rng f = r.fork(static_cast<std::uint64_t>(transform_stream::flip));
        d.flip = f.below(2) == 1;
    }
    if constexpr (T::jitter) {
        rng j = r.fork(static_cast<std::uint64_t>(transform_stream::jitter));
        const auto coef = [&j](float v) {
            return static_cast<float>(1.0 + static_cast<double>(v) * (2.0 * j.uniform_double() - 1.0));
        };
        d.b = coef(o.brightness);
        d.s = coef(o.saturation);
        d.h = coef(o.hue);
    }
    if constexpr (T::lighting) {
        rng l = r.fork(static_cast<std::uint64_t>(transform_stream::lighting));
        for (auto& a : d.alpha) a = static_cast<float>(static_cast<double>(o.pca_std) * l.normal());
    }
    return d;
}

namespace detail {

/// Where `want` (full-image coordinates) lies in a region decoded for `decoded`: the region maps
/// decoded.x .. decoded.x + decoded.w linearly onto region.x0 .. region.x1 (likewise y).
inline source_box locate_box(const decoded_region& region, const crop_box& decoded, const source_box& want) {
    require(decoded.w >= 1 && decoded.h >= 1, "tricks::image_transform: decoded box ", decoded.w, "x", decoded.h,
            "; expected at least 1x1");
    const auto axis = [](double r0, double r1, int at, int len, double w0, double w1) {
        const double a = static_cast<double>(at), b = static_cast<double>(at + len);
        if (w0 == a && w1 == b) return std::array<double, 2>{r0, r1};
        const double k = (r1 - r0) / static_cast<double>(len);
        return std::array<double, 2>{r0 + (w0 - a) * k, r0 + (w1 - a) * k};
    };
    const auto x = axis(region.x0, region.x1, decoded.x, decoded.w, want.x0, want.x1);
    const auto y = axis(region.y0, region.y1, decoded.y, decoded.h, want.y0, want.y1);
    return {x[0], y[0], x[1], y[1]};
}

inline void require_rgb_region(const decoded_region& region) {
    require<data_error>(region.image.c == 3, "tricks::image_transform: the decoded image has ", region.image.c,
                        " channels; expected 3 (RGB)");
}

}  // namespace detail

/// Steps 2-6 of one training image: `region` was decoded for d.box (its x0..y1 locate d.box in
/// region.image, possibly at a reduced scale); writes o.size x o.size x 3 normalised floats.
template <class T>
void apply_train(const decoded_region& region, const train_draw& d, const image_transform_options& o, float* out) {
    static_assert(aug::is_train_transform_v<T>, "apply_train<T>: T must be a tricks::data::aug::train_transform<...>");
    check(o);
    detail::require_rgb_region(region);
    const source_box b = detail::locate_box(region, d.box, d.src);
    detail::resample_box(region.image, b.x0, b.y0, b.x1, b.y1, o.size, o.size, out, T::flip && d.flip);
    apply_color_affine(make_color_affine(d, T::jitter, T::lighting, o), out,
                       static_cast<std::size_t>(o.size) * static_cast<std::size_t>(o.size));
}

namespace detail {
/// Resample `b` of region.image to o.size x o.size and normalise.
inline void eval_resample(const decoded_region& region, const source_box& b, const image_transform_options& o,
                          float* out) {
    require_rgb_region(region);
    resample_box(region.image, b.x0, b.y0, b.x1, b.y1, o.size, o.size, out, false);
    apply_color_affine(make_color_affine(train_draw{}, false, false, o), out,
                       static_cast<std::size_t>(o.size) * static_cast<std::size_t>(o.size));
}
}  // namespace detail

/// Evaluation of a region whose box (region.x0..y1) is the exact evaluation box, e.g. a whole
/// image with eval_source_box(W, H, o) written into it: resample to size x size and normalise.
/// A region decoded for eval_crop_box (whole pixels) holds the exact box only up to a fraction of
/// a pixel at each edge, which this overload cannot know: pass W and H (the overload below) to
/// match torchvision; given such a region, this one resamples the slightly larger whole-pixel box.
inline void apply_eval(const decoded_region& region, const image_transform_options& o, float* out) {
    check(o);
    detail::eval_resample(region, {region.x0, region.y0, region.x1, region.y1}, o, out);
}

/// Evaluation of a W x H image from a region decoded for eval_crop_box(W, H, o) (region.x0..y1
/// locate that box): resamples the exact eval_source_box inside it. Equal to torchvision's
/// Resize(resize) + CenterCrop(size) when the region is at full scale and includes a margin of
/// the filter's reach around the box, and in the crop's interior otherwise. Draws nothing: the
/// output equals apply_train<aug::train_transform<>> of draw_train<aug::train_transform<>> for any rng.
inline void apply_eval(const decoded_region& region, int W, int H, const image_transform_options& o, float* out) {
    check(o);
    detail::eval_resample(region, detail::locate_box(region, eval_crop_box(W, H, o), eval_source_box(W, H, o)), o, out);
}

}  // namespace tricks::data
