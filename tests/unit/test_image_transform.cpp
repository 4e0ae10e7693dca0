// ImageNet preprocessing (image_transform.hpp): crop boxes, PIL-style bilinear resampling, flip,
// colour jitter, PCA lighting, normalisation, the fused per-pixel pass and the evaluation crop,
// each checked against its own definition computed independently (mostly in double).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numbers>
#include <string>
#include <tuple>
#include <vector>

#include "helpers.hpp"
#include "tricks/data/image_transform.hpp"

using namespace tricks::data;
using tricks::rng;

namespace {

/// Index of channel ch of pixel (x, y) in an interleaved buffer w pixels wide with c channels.
std::size_t idx(int x, int y, int w, int c, int ch) {
    return (static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x)) *
               static_cast<std::size_t>(c) +
           static_cast<std::size_t>(ch);
}

image_u8 random_image(int w, int h, int c, std::uint64_t seed) {
    image_u8 img;
    img.w = w;
    img.h = h;
    img.c = c;
    img.pixels.resize(img.size());
    rng r(seed, 77);
    for (auto& p : img.pixels) p = static_cast<std::uint8_t>(r.below(256));
    return img;
}

image_u8 image_from(int w, int h, int c, const std::function<int(int x, int y, int ch)>& f) {
    image_u8 img;
    img.w = w;
    img.h = h;
    img.c = c;
    img.pixels.resize(img.size());
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < c; ++ch) img.pixels[idx(x, y, w, c, ch)] = static_cast<std::uint8_t>(f(x, y, ch));
    return img;
}

double px(const image_u8& img, int x, int y, int ch) { return img.at(y, x)[ch]; }

/// PIL's bilinear weight of source pixel i (centre i + 0.5) for an output centred at c, the
/// triangle stretched by fs = max(1, scale).
double tri(int i, double c, double fs) { return std::max(0.0, 1.0 - std::abs((i + 0.5 - c) / fs)); }

/// The resampling definition as a plain 2-D loop over every source pixel, in double.
std::vector<double> naive_resample(const image_u8& img, double x0, double y0, double x1, double y1, int ow, int oh) {
    const double sx = (x1 - x0) / ow, sy = (y1 - y0) / oh, fx = std::max(1.0, sx), fy = std::max(1.0, sy);
    std::vector<double> out(static_cast<std::size_t>(ow) * static_cast<std::size_t>(oh) *
                            static_cast<std::size_t>(img.c));
    for (int oy = 0; oy < oh; ++oy)
        for (int ox = 0; ox < ow; ++ox) {
            const double cx = x0 + (ox + 0.5) * sx, cy = y0 + (oy + 0.5) * sy;
            std::vector<double> acc(static_cast<std::size_t>(img.c), 0.0);
            double wsum = 0;
            for (int y = 0; y < img.h; ++y)
                for (int x = 0; x < img.w; ++x) {
                    const double w = tri(x, cx, fx) * tri(y, cy, fy);
                    if (w == 0) continue;
                    wsum += w;
                    for (int ch = 0; ch < img.c; ++ch) acc[static_cast<std::size_t>(ch)] += w * px(img, x, y, ch);
                }
            for (int ch = 0; ch < img.c; ++ch)
                out[idx(ox, oy, ow, img.c, ch)] = acc[static_cast<std::size_t>(ch)] / wsum;
        }
    return out;
}

/// PIL's Image.resize((nw, nh), BILINEAR) of the whole image, in double (rows x cols x c): the
/// same definition, evaluated separably over a window wide enough for every nonzero weight.
std::vector<double> resize_whole(const image_u8& img, int nw, int nh) {
    const int c = img.c;
    const double sx = static_cast<double>(img.w) / nw, sy = static_cast<double>(img.h) / nh;
    const double fx = std::max(1.0, sx), fy = std::max(1.0, sy);
    std::vector<double> mid(idx(0, img.h, nw, c, 0)), out(idx(0, nh, nw, c, 0));
    for (int y = 0; y < img.h; ++y)
        for (int ox = 0; ox < nw; ++ox) {
            const double cx = (ox + 0.5) * sx;
            double wsum = 0;
            for (int x = std::max(0, static_cast<int>(cx - fx) - 1); x < std::min(img.w, static_cast<int>(cx + fx) + 2);
                 ++x) {
                const double w = tri(x, cx, fx);
                wsum += w;
                for (int ch = 0; ch < c; ++ch) mid[idx(ox, y, nw, c, ch)] += w * px(img, x, y, ch);
            }
            for (int ch = 0; ch < c; ++ch) mid[idx(ox, y, nw, c, ch)] /= wsum;
        }
    for (int oy = 0; oy < nh; ++oy) {
        const double cy = (oy + 0.5) * sy;
        double wsum = 0;
        for (int y = std::max(0, static_cast<int>(cy - fy) - 1); y < std::min(img.h, static_cast<int>(cy + fy) + 2);
             ++y) {
            const double w = tri(y, cy, fy);
            wsum += w;
            for (int ox = 0; ox < nw; ++ox)
                for (int ch = 0; ch < c; ++ch) out[idx(ox, oy, nw, c, ch)] += w * mid[idx(ox, y, nw, c, ch)];
        }
        for (int ox = 0; ox < nw; ++ox)
            for (int ch = 0; ch < c; ++ch) out[idx(ox, oy, nw, c, ch)] /= wsum;
    }
    return out;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
    return m;
}

std::vector<float> resample(const image_u8& img, double x0, double y0, double x1, double y1, int ow, int oh) {
    std::vector<float> out(static_cast<std::size_t>(ow) * static_cast<std::size_t>(oh) *
                           static_cast<std::size_t>(img.c));
    resample_bilinear(img, x0, y0, x1, y1, ow, oh, out.data());
    return out;
}

decoded_region whole(const image_u8& img, const crop_box& b) {
    return {img,
            static_cast<double>(b.x),
            static_cast<double>(b.y),
            static_cast<double>(b.x + b.w),
            static_cast<double>(b.y + b.h),
            1};
}

std::vector<float> output_of(const image_transform_options& o) {
    return std::vector<float>(static_cast<std::size_t>(o.size) * static_cast<std::size_t>(o.size) * 3);
}

color_vector yiq_of(const color_vector& p) { return mat_vec(rgb_to_yiq, p); }

/// Chi-square statistic of counts against equal expected counts.
double chi_square(const std::vector<int>& counts) {
    double n = 0;
    for (int c : counts) n += c;
    const double e = n / static_cast<double>(counts.size());
    double x2 = 0;
    for (int c : counts) x2 += (c - e) * (c - e) / e;
    return x2;
}

}  // namespace

TEST_CASE("image_transform: resample_bilinear matches PIL's definition computed naively in double") {
    for (int c : {3, 1, 2, 4}) {
        CAPTURE(c);
        const image_u8 img = random_image(41, 29, c, 5 + static_cast<std::uint64_t>(c));
        struct box_case {
            double x0, y0, x1, y1;
            int ow, oh;
        };
        const box_case cases[] = {
            {0, 0, 41, 29, 17, 13},              // downscale ~2.4 x 2.2, antialiased
            {0, 0, 41, 29, 60, 50},              // upscale
            {3.25, 2.5, 30.75, 21.125, 11, 23},  // fractional box, down in x, up in y
            {0, 0, 5, 4, 20, 16},                // corner box, the filter clamped at the image's edges
            {36.5, 20, 41, 29, 9, 3},            // far corner
            {1.5, 0.75, 40.5, 28.25, 7, 5},      // strong downscale (~5.6x)
            {10, 10, 11, 11, 3, 3},              // one pixel, upscaled
        };
        for (const auto& k : cases) {
            CAPTURE(k.x0);
            CAPTURE(k.ow);
            const auto got = resample(img, k.x0, k.y0, k.x1, k.y1, k.ow, k.oh);
            CHECK(max_abs_diff(got, naive_resample(img, k.x0, k.y0, k.x1, k.y1, k.ow, k.oh)) < 1e-4);
        }
    }
    // The decoded_region overload resamples the region's box.
    const image_u8 img = random_image(30, 20, 3, 9);
    const decoded_region region{img, 2.5, 1.0, 27.0, 18.5, 2};
    std::vector<float> a(12 * 10 * 3);
    resample_bilinear(region, 12, 10, a.data());
    CHECK(tricks_test::same_bits(a, resample(img, 2.5, 1.0, 27.0, 18.5, 12, 10)));
}

TEST_CASE("image_transform: resample_bilinear closed forms (constant, linear ramp, identity)") {
    SUBCASE("a constant image stays constant at any scale") {
        const image_u8 img = image_from(50, 40, 3, [](int, int, int ch) { return 173 - 50 * ch; });
        for (const auto& o : {resample(img, 0, 0, 50, 40, 7, 9), resample(img, 3.3, 1.1, 20.7, 39.9, 64, 31)})
            for (std::size_t i = 0; i < o.size(); ++i) CHECK(std::abs(o[i] - (173.0 - 50.0 * (i % 3))) < 1e-4);
    }
    SUBCASE("a linear ramp upsampled stays the ramp away from the edges") {
        // Pixel i holds 2 i + 10, the ramp f(t) = 2 (t - 0.5) + 10 sampled at the centres t = i + 0.5;
        // upsampling is linear interpolation, exact wherever both neighbours exist.
        const image_u8 img = image_from(64, 6, 3, [](int x, int, int ch) { return 2 * x + 10 + ch; });
        for (const auto& [x0, x1, ow] : {std::tuple{0.0, 64.0, 200}, std::tuple{10.5, 30.5, 50}}) {
            const auto o = resample(img, x0, 0, x1, 6, ow, 4);
            const double scale = (x1 - x0) / ow;
            int checked = 0;
            for (int ox = 0; ox < ow; ++ox) {
                const double c = x0 + (ox + 0.5) * scale;
                if (c < 0.5 || c > 63.5) continue;
                for (int oy = 0; oy < 4; ++oy)
                    for (int ch = 0; ch < 3; ++ch)
                        CHECK(std::abs(o[idx(ox, oy, ow, 3, ch)] - (2.0 * (c - 0.5) + 10.0 + ch)) < 1e-4);
                ++checked;
            }
            CHECK(checked > ow * 9 / 10);
        }
        // The same along y.
        const image_u8 col = image_from(3, 80, 3, [](int, int y, int) { return 3 * y; });
        const auto o = resample(col, 0, 0, 3, 80, 3, 250);
        for (int oy = 0; oy < 250; ++oy) {
            const double c = (oy + 0.5) * 80.0 / 250.0;
            if (c < 0.5 || c > 79.5) continue;
            CHECK(std::abs(o[static_cast<std::size_t>(oy) * 9 + 4] - 3.0 * (c - 0.5)) < 1e-4);
        }
    }
    SUBCASE("a box of whole pixels at its own size returns the pixels exactly") {
        const image_u8 img = random_image(37, 23, 3, 11);
        const auto all = resample(img, 0, 0, 37, 23, 37, 23);
        for (std::size_t i = 0; i < all.size(); ++i) CHECK(all[i] == static_cast<float>(img.pixels[i]));
        const auto part = resample(img, 5, 3, 25, 18, 20, 15);
        for (int y = 0; y < 15; ++y)
            for (int x = 0; x < 20; ++x)
                for (int ch = 0; ch < 3; ++ch)
                    CHECK(part[idx(x, y, 20, 3, ch)] == static_cast<float>(px(img, x + 5, y + 3, ch)));
    }
    SUBCASE("invalid boxes and images are rejected") {
        const image_u8 img = random_image(10, 8, 3, 1);
        std::vector<float> out(4 * 4 * 3);
        CHECK_THROWS_WITH_AS(resample_bilinear(img, 0, 0, 10.5, 8, 4, 4, out.data()), doctest::Contains("box x range"),
                             tricks::error);
        CHECK_THROWS_WITH_AS(resample_bilinear(img, 0, 3, 10, 3, 4, 4, out.data()), doctest::Contains("box y range"),
                             tricks::error);
        CHECK_THROWS_WITH_AS(resample_bilinear(img, 0, 0, 10, 8, 0, 4, out.data()), doctest::Contains("output size"),
                             tricks::error);
        image_u8 bad = img;
        bad.pixels.resize(10);
        CHECK_THROWS_AS(resample_bilinear(bad, 0, 0, 10, 8, 4, 4, out.data()), tricks::data_error);
    }
}

TEST_CASE("image_transform: random resized crop boxes follow torchvision's distribution") {
    const image_transform_options o;
    const int W = 500, H = 375, n = 20000;
    const double A = static_cast<double>(W) * H, lr_lo = std::log(3.0 / 4.0), lr_hi = std::log(4.0 / 3.0);
    rng r(2024, 1);
    std::vector<int> ratio_bins(10, 0), area_bins(10, 0);
    double xs = 0, ys = 0;
    int positioned = 0, outside = 0, bad_area = 0, bad_ratio = 0;
    for (int i = 0; i < n; ++i) {
        const crop_box b = random_resized_crop_box(W, H, o, r);
        outside += !(b.w >= 1 && b.h >= 1 && b.x >= 0 && b.y >= 0 && b.x + b.w <= W && b.y + b.h <= H);
        const double area = b.w * static_cast<double>(b.h) / A, lr = std::log(static_cast<double>(b.w) / b.h);
        // Rounding each side by at most half a pixel moves the area by < 0.1% of the image here.
        bad_area += !(area >= 0.08 - 1e-3 && area <= 1.0);
        bad_ratio += !(lr >= lr_lo - 0.01 && lr <= lr_hi + 0.01);
        // Boxes of at most 45% of the image always fit on the first draw of their try, so their
        // ratio and area are the drawn ones (up to rounding): log-uniform and uniform.
        if (area <= 0.45) {
            const auto bin = [](double v, double lo, double hi) {
                return static_cast<std::size_t>(std::clamp(static_cast<int>((v - lo) / (hi - lo) * 10), 0, 9));
            };
            ++ratio_bins[bin(lr, lr_lo, lr_hi)];
            ++area_bins[bin(area, 0.08, 0.45)];
        }
        if (b.w < W && b.h < H) {
            xs += static_cast<double>(b.x) / (W - b.w);
            ys += static_cast<double>(b.y) / (H - b.h);
            ++positioned;
        }
    }
    CHECK(outside == 0);
    CHECK(bad_area == 0);
    CHECK(bad_ratio == 0);
    // 9 degrees of freedom: P(chi2 > 27.9) = 0.001. Fixed seed, so this is deterministic.
    CHECK(chi_square(ratio_bins) < 27.9);
    CHECK(chi_square(area_bins) < 27.9);
    CHECK(std::abs(xs / positioned - 0.5) < 0.01);
    CHECK(std::abs(ys / positioned - 0.5) < 0.01);
}

TEST_CASE("image_transform: the random crop's fallback is torchvision's clamped centre crop") {
    image_transform_options o;
    rng r(1, 2);
    // No 8%..100% box of ratio 3/4..4/3 fits in 10 rows: w = 10000, h = round(10 * 4/3) = 13.
    CHECK(random_resized_crop_box(10000, 10, o, r) == crop_box{4993, 0, 13, 10});
    CHECK(random_resized_crop_box(10, 10000, o, r) == crop_box{0, 4993, 10, 13});
    CHECK(random_resized_crop_box(1000, 10, o, r) == crop_box{493, 0, 13, 10});
    // Boxes that round to zero pixels: the whole image (its ratio is inside the range).
    o.min_area = o.max_area = 0.001;
    CHECK(random_resized_crop_box(10, 10, o, r) == crop_box{0, 0, 10, 10});
    o.min_area = o.max_area = 0.08;
    CHECK(random_resized_crop_box(1, 1, o, r) == crop_box{0, 0, 1, 1});
    // Python's round breaks ties to even: 5 / 0.4 = 12.5 -> 12, 5 * 2.5 = 12.5 -> 12.
    o.min_area = o.max_area = 1.0;
    o.min_ratio = o.max_ratio = 0.4;
    CHECK(random_resized_crop_box(5, 20, o, r) == crop_box{0, 4, 5, 12});
    o.min_ratio = o.max_ratio = 2.5;
    CHECK(random_resized_crop_box(20, 5, o, r) == crop_box{4, 0, 12, 5});
    CHECK(detail::round_half_even(0.5) == 0.0);
    CHECK(detail::round_half_even(1.5) == 2.0);
    CHECK(detail::round_half_even(2.5) == 2.0);
    CHECK(detail::round_half_even(2.5000001) == 3.0);
    CHECK(detail::round_half_even(-1.5) == -2.0);
}

TEST_CASE("image_transform: the evaluation box reproduces Resize(256) + CenterCrop(224)") {
    SUBCASE("box arithmetic") {
        const image_transform_options o;
        // 500x375: new size 341x256 (int(256 * 500 / 375) = 341), crop offsets round(58.5) = 58
        // (Python rounds half to even) and 16.
        const source_box b = eval_source_box(500, 375, o);
        CHECK(b.x0 == 58.0 * 500.0 / 341.0);
        CHECK(b.x1 == 282.0 * 500.0 / 341.0);
        CHECK(b.y0 == 16.0 * 375.0 / 256.0);
        CHECK(b.y1 == 240.0 * 375.0 / 256.0);
        CHECK(eval_crop_box(500, 375, o) ==
              crop_box{85, 23, static_cast<int>(std::ceil(b.x1)) - 85, static_cast<int>(std::ceil(b.y1)) - 23});
        // Portrait: the roles swap.
        const source_box p = eval_source_box(375, 500, o);
        CHECK(p == source_box{b.y0, b.x0, b.y1, b.x1});
        // The short side already at `resize`: no scaling, whole pixels.
        CHECK(eval_source_box(300, 256, o) == source_box{38, 16, 262, 240});
        CHECK(eval_crop_box(300, 256, o) == crop_box{38, 16, 224, 224});
    }
    struct eval_case {
        int W, H, size, resize, new_w, new_h, left, top;
    };
    // Expected sizes and offsets worked out by hand with torchvision's rules.
    const eval_case cases[] = {
        {500, 375, 224, 256, 341, 256, 58, 16},  // round(58.5) = 58
        {137, 101, 48, 55, 74, 55, 13, 4},       // int(74.6) = 74, round(3.5) = 4
        {101, 137, 48, 55, 55, 74, 4, 13},      {64, 64, 32, 40, 40, 40, 4, 4},
        {90, 40, 30, 30, 67, 30, 18, 0},         // round(18.5) = 18, resize == size
        {300, 256, 224, 256, 300, 256, 38, 16},  // no scaling
    };
    for (const auto& k : cases) {
        CAPTURE(k.W);
        CAPTURE(k.H);
        image_transform_options o;
        o.size = k.size;
        o.resize = k.resize;
        const image_u8 img = random_image(k.W, k.H, 3, static_cast<std::uint64_t>(k.W * 1000 + k.H));
        const auto full = resize_whole(img, k.new_w, k.new_h);
        const auto S = static_cast<std::size_t>(k.size);
        std::vector<double> ref(S * S * 3), ref_norm(S * S * 3);
        for (int y = 0; y < k.size; ++y)
            for (int x = 0; x < k.size; ++x)
                for (int ch = 0; ch < 3; ++ch) {
                    const double v = full[idx(x + k.left, y + k.top, k.new_w, 3, ch)];
                    const auto uch = static_cast<std::size_t>(ch);
                    ref[idx(x, y, k.size, 3, ch)] = v;
                    ref_norm[idx(x, y, k.size, 3, ch)] = (v - o.mean[uch]) / o.stddev[uch];
                }
        const source_box b = eval_source_box(k.W, k.H, o);
        CHECK(max_abs_diff(resample(img, b.x0, b.y0, b.x1, b.y1, k.size, k.size), ref) < 1e-3);

        // From a region decoded for eval_crop_box with a margin of the filter's reach: exact.
        const crop_box cb = eval_crop_box(k.W, k.H, o);
        const int mx0 = std::max(0, cb.x - 3), my0 = std::max(0, cb.y - 3);
        const int mx1 = std::min(k.W, cb.x + cb.w + 3), my1 = std::min(k.H, cb.y + cb.h + 3);
        const auto crop_of = [&](int x0, int y0, int x1, int y1) {
            return image_from(x1 - x0, y1 - y0, 3,
                              [&](int x, int y, int ch) { return static_cast<int>(px(img, x + x0, y + y0, ch)); });
        };
        const decoded_region margin{crop_of(mx0, my0, mx1, my1),
                                    static_cast<double>(cb.x - mx0),
                                    static_cast<double>(cb.y - my0),
                                    static_cast<double>(cb.x + cb.w - mx0),
                                    static_cast<double>(cb.y + cb.h - my0),
                                    1};
        auto out = output_of(o);
        apply_eval(margin, k.W, k.H, o, out.data());
        CHECK(max_abs_diff(out, ref_norm) < 1e-4);

        // The whole image with the exact box written into it, through the other overload.
        apply_eval(decoded_region{img, b.x0, b.y0, b.x1, b.y1, 1}, o, out.data());
        CHECK(max_abs_diff(out, ref_norm) < 1e-4);

        // From the box alone (no margin): equal away from the crop's border.
        const decoded_region tight{crop_of(cb.x, cb.y, cb.x + cb.w, cb.y + cb.h),
                                   0,
                                   0,
                                   static_cast<double>(cb.w),
                                   static_cast<double>(cb.h),
                                   1};
        apply_eval(tight, k.W, k.H, o, out.data());
        double interior = 0;
        for (std::size_t y = 2; y + 2 < S; ++y)
            for (std::size_t x = 2; x + 2 < S; ++x)
                for (std::size_t ch = 0; ch < 3; ++ch) {
                    const std::size_t i = (y * S + x) * 3 + ch;
                    interior = std::max(interior, std::abs(out[i] - ref_norm[i]));
                }
        CHECK(interior < 1e-4);

        // Training without a random crop uses the same box.
        rng r(3, 4);
        const auto d = draw_train<aug::train_transform<>>(k.W, k.H, o, r);
        CHECK(d.box == cb);
        CHECK(d.src == b);
        auto train_out = output_of(o);
        apply_train<aug::train_transform<>>(margin, d, o, train_out.data());
        apply_eval(margin, k.W, k.H, o, out.data());
        CHECK(tricks_test::same_bits(train_out, out));
    }
}

TEST_CASE("image_transform: the horizontal flip mirrors the resized output exactly") {
    const image_u8 img = random_image(120, 90, 3, 21);
    image_transform_options o;
    o.size = 33;
    o.resize = 40;
    train_draw d;
    d.box = {10, 5, 100, 80};
    d.src = {10, 5, 110, 85};
    auto plain = output_of(o), flipped = output_of(o), ignored = output_of(o);
    using flip_only = aug::train_transform<aug::horizontal_flip>;
    apply_train<flip_only>(whole(img, d.box), d, o, plain.data());
    d.flip = true;
    apply_train<flip_only>(whole(img, d.box), d, o, flipped.data());
    apply_train<aug::train_transform<aug::random_resized_crop>>(whole(img, d.box), d, o, ignored.data());
    const auto S = static_cast<std::size_t>(o.size);
    bool mirrored = true;
    for (std::size_t y = 0; y < S; ++y)
        for (std::size_t x = 0; x < S; ++x)
            for (std::size_t ch = 0; ch < 3; ++ch)
                mirrored = mirrored && flipped[(y * S + x) * 3 + ch] == plain[(y * S + (S - 1 - x)) * 3 + ch];
    CHECK(mirrored);
    CHECK(tricks_test::same_bits(ignored, plain));  // a transform without the flip step ignores the drawn flip

    // The coin is fair.
    int flips = 0;
    const int n = 10000;
    for (int i = 0; i < n; ++i)
        flips += draw_train<flip_only>(100, 100, o, rng(8, 9).fork(static_cast<std::uint64_t>(i))).flip;
    CHECK(std::abs(flips - n / 2) < 200);  // 4 standard deviations
}

TEST_CASE("image_transform: brightness, saturation and hue follow their formulas") {
    rng r(31, 0);
    for (int t = 0; t < 50; ++t) {
        const color_vector p{255 * r.uniform_double(), 255 * r.uniform_double(), 255 * r.uniform_double()};
        const double k = 0.6 + 0.8 * r.uniform_double();
        const double grey = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];

        const color_vector bright = mat_vec(brightness_matrix(k), p);
        for (std::size_t c = 0; c < 3; ++c) CHECK(bright[c] == k * p[c]);

        const color_vector sat = mat_vec(saturation_matrix(k), p);
        for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(sat[c] - (grey + k * (p[c] - grey))) < 1e-9);
        const color_vector grey3 = mat_vec(saturation_matrix(0.0), p);
        for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(grey3[c] - grey) < 1e-9);

        // Hue: a rotation of the chroma plane (I, Q) by (k - 1) pi that keeps luma Y.
        const color_vector yiq = yiq_of(p), hue = yiq_of(mat_vec(hue_matrix(k), p));
        const double a = (k - 1) * std::numbers::pi;
        CHECK(std::abs(hue[0] - yiq[0]) < 1e-9);
        CHECK(std::abs(hue[1] - (std::cos(a) * yiq[1] - std::sin(a) * yiq[2])) < 1e-9);
        CHECK(std::abs(hue[2] - (std::sin(a) * yiq[1] + std::cos(a) * yiq[2])) < 1e-9);

        // The jitter matrix is brightness, then saturation, then hue.
        const double s = 0.6 + 0.8 * r.uniform_double(), h = 0.6 + 0.8 * r.uniform_double();
        const color_vector steps =
            mat_vec(hue_matrix(h), mat_vec(saturation_matrix(s), mat_vec(brightness_matrix(k), p)));
        const color_vector fused = mat_vec(jitter_matrix(k, s, h), p);
        for (std::size_t c = 0; c < 3; ++c) CHECK(std::abs(fused[c] - steps[c]) < 1e-9);
    }
    const color_matrix id = hue_matrix(1.0), round_trip = detail::matrix_product(yiq_to_rgb, rgb_to_yiq);
    // MXNet's printed inverse (`ityiq`), of which yiq_to_rgb is the exact version.
    const color_matrix mxnet_ityiq{{{1.0, 0.956, 0.621}, {1.0, -0.272, -0.647}, {1.0, -1.107, 1.705}}};
    for (std::size_t i = 0; i < 3; ++i)
        for (std::size_t j = 0; j < 3; ++j) {
            CHECK(std::abs(id[i][j] - (i == j ? 1.0 : 0.0)) < 1e-12);
            CHECK(std::abs(round_trip[i][j] - (i == j ? 1.0 : 0.0)) < 1e-12);
            CHECK(std::abs(yiq_to_rgb[i][j] - mxnet_ityiq[i][j]) < 3e-3);
        }
    // A half-turn coefficient (1.5: rotation by pi/2) maps (I, Q) to (-Q, I).
    const color_vector p{200, 40, 90}, q = yiq_of(mat_vec(hue_matrix(1.5), p)), y = yiq_of(p);
    CHECK(std::abs(q[1] + y[2]) < 1e-9);
    CHECK(std::abs(q[2] - y[1]) < 1e-9);

    // The drawn coefficients: uniform in [1 - v, 1 + v], brightness then saturation then hue.
    image_transform_options o;
    o.brightness = 0.4f;
    o.saturation = 0.2f;
    o.hue = 0.0f;
    double sum_b = 0, sum_s = 0;
    int out_of_range = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        const auto d = draw_train<aug::train_transform<aug::color_jitter>>(
            64, 64, o, rng(12, 0).fork(static_cast<std::uint64_t>(i)));
        out_of_range += !(d.b >= 0.6f && d.b <= 1.4f && d.s >= 0.8f && d.s <= 1.2f && d.h == 1.0f);
        sum_b += d.b;
        sum_s += d.s;
    }
    CHECK(out_of_range == 0);
    CHECK(std::abs(sum_b / n - 1.0) < 0.01);  // sd of the mean 0.4 / sqrt(3 n) = 0.0016
    CHECK(std::abs(sum_s / n - 1.0) < 0.005);
    rng j = rng(12, 0).fork(5).fork(static_cast<std::uint64_t>(transform_stream::jitter));
    const double u0 = j.uniform_double(), u1 = j.uniform_double();
    const auto d = draw_train<aug::paper_train>(64, 64, o, rng(12, 0).fork(5));
    CHECK(d.b == static_cast<float>(1.0 + 0.4f * (2 * u0 - 1)));
    CHECK(d.s == static_cast<float>(1.0 + 0.2f * (2 * u1 - 1)));
}

TEST_CASE("image_transform: PCA lighting noise") {
    image_transform_options o;
    const int n = 20000;
    std::array<double, 3> sum{}, sum2{};
    int inexact = 0;
    using lighting = aug::train_transform<aug::pca_lighting>;
    for (int i = 0; i < n; ++i) {
        const auto d = draw_train<lighting>(64, 64, o, rng(13, 0).fork(static_cast<std::uint64_t>(i)));
        for (std::size_t c = 0; c < 3; ++c) {
            sum[c] += d.alpha[c];
            sum2[c] += static_cast<double>(d.alpha[c]) * d.alpha[c];
        }
        // The offset is eigvec * (alpha .* eigval), the values of MXNet's CreateAugmenter.
        const double e[3] = {55.46, 4.794, 1.148};
        const double v[3][3] = {{-0.5675, 0.7192, 0.4009}, {-0.5808, -0.0045, -0.8140}, {-0.5836, -0.6948, 0.4203}};
        const color_vector off = pca_lighting_offset(d.alpha);
        for (std::size_t c = 0; c < 3; ++c)
            inexact +=
                off[c] != v[c][0] * (d.alpha[0] * e[0]) + v[c][1] * (d.alpha[1] * e[1]) + v[c][2] * (d.alpha[2] * e[2]);
    }
    CHECK(inexact == 0);
    for (std::size_t c = 0; c < 3; ++c) {
        const double mean = sum[c] / n, sd = std::sqrt(sum2[c] / n - mean * mean);
        CHECK(std::abs(mean) < 0.003);  // 4 standard deviations of the mean (0.1 / sqrt(n))
        CHECK(std::abs(sd - 0.1) < 0.003);
    }
    o.pca_std = 0.0f;
    const auto d = draw_train<lighting>(64, 64, o, rng(13, 1));
    CHECK(d.alpha == std::array<float, 3>{0, 0, 0});
}

TEST_CASE("image_transform: normalisation is exactly (x - mean) / stddev") {
    // A 32x32 image, resized to 32 and centre-cropped to 32: the identity, so the output is the
    // normalised pixels, bit for bit.
    image_transform_options o;
    o.size = o.resize = 32;
    const image_u8 img = random_image(32, 32, 3, 17);
    const decoded_region region{img, 0, 0, 32, 32, 1};
    auto train = output_of(o), eval = output_of(o);
    apply_train<aug::train_transform<>>(region, draw_train<aug::train_transform<>>(32, 32, o, rng(1, 1)), o,
                                        train.data());
    apply_eval(region, 32, 32, o, eval.data());
    bool exact = true;
    for (std::size_t i = 0; i < train.size(); ++i) {
        const float want = (static_cast<float>(img.pixels[i]) - o.mean[i % 3]) / o.stddev[i % 3];
        exact = exact && train[i] == want && eval[i] == want;
    }
    CHECK(exact);
    // Brightness alone is exact too: the affine's off-diagonal terms are zero.
    train_draw d = draw_train<aug::train_transform<>>(32, 32, o, rng(1, 1));
    d.b = 1.25f;
    const color_affine a = make_color_affine(d, true, false, o);
    std::array<float, 3> pixel{10, 200, 255};
    apply_color_affine(a, pixel.data(), 1);
    for (std::size_t c = 0; c < 3; ++c)
        CHECK(pixel[c] == (1.25f * std::array<float, 3>{10, 200, 255}[c] - o.mean[c]) / o.stddev[c]);
}

TEST_CASE("image_transform: the fused pass equals the steps applied one after another in double") {
    const image_u8 img = random_image(97, 73, 3, 23);
    image_transform_options o;
    o.size = 24;
    o.resize = 28;
    const auto S = static_cast<std::size_t>(o.size);
    int flipped = 0;
    for (std::uint64_t i = 0; i < 8; ++i) {
        CAPTURE(i);
        const auto d = draw_train<aug::paper_train>(img.w, img.h, o, rng(41, 0).fork(i));
        flipped += d.flip;
        auto out = output_of(o);
        apply_train<aug::paper_train>(whole(img, d.box), d, o, out.data());

        const auto resized =
            naive_resample(img, d.box.x, d.box.y, d.box.x + d.box.w, d.box.y + d.box.h, o.size, o.size);
        std::vector<double> ref(out.size());
        const double angle = (static_cast<double>(d.h) - 1.0) * std::numbers::pi;
        for (std::size_t y = 0; y < S; ++y)
            for (std::size_t x = 0; x < S; ++x) {
                const std::size_t sx = d.flip ? S - 1 - x : x;  // step 3
                color_vector p{};
                for (std::size_t c = 0; c < 3; ++c) p[c] = resized[(y * S + sx) * 3 + c] * d.b;  // brightness
                const double grey = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
                for (auto& v : p) v = grey + d.s * (v - grey);  // saturation
                color_vector yiq = yiq_of(p);                   // hue: rotate (I, Q)
                const double i_ = yiq[1], q_ = yiq[2];
                yiq[1] = std::cos(angle) * i_ - std::sin(angle) * q_;
                yiq[2] = std::sin(angle) * i_ + std::cos(angle) * q_;
                p = mat_vec(yiq_to_rgb, yiq);
                for (std::size_t c = 0; c < 3; ++c) {  // PCA lighting
                    for (std::size_t k = 0; k < 3; ++k) p[c] += pca_eigvec[c][k] * d.alpha[k] * pca_eigval[k];
                    ref[(y * S + x) * 3 + c] = (p[c] - o.mean[c]) / o.stddev[c];  // normalise
                }
            }
        CHECK(max_abs_diff(out, ref) < 1e-4);
    }
    CHECK(flipped > 0);
    CHECK(flipped < 8);
}

TEST_CASE("image_transform: regions decoded with a margin or at a reduced scale") {
    const image_u8 img = random_image(80, 60, 3, 29);
    image_transform_options o;
    o.size = 20;
    o.resize = 24;
    const auto d = draw_train<aug::paper_train>(img.w, img.h, o, rng(5, 5));
    auto from_whole = output_of(o), from_margin = output_of(o);
    apply_train<aug::paper_train>(whole(img, d.box), d, o, from_whole.data());
    // A region that starts 4 pixels before the box (or at the image's edge) with the box inside it.
    const int ox = std::max(0, d.box.x - 4), oy = std::max(0, d.box.y - 4);
    const int ex = std::min(img.w, d.box.x + d.box.w + 4), ey = std::min(img.h, d.box.y + d.box.h + 4);
    const decoded_region margin{
        image_from(ex - ox, ey - oy, 3,
                   [&](int x, int y, int ch) { return static_cast<int>(px(img, x + ox, y + oy, ch)); }),
        static_cast<double>(d.box.x - ox),
        static_cast<double>(d.box.y - oy),
        static_cast<double>(d.box.x + d.box.w - ox),
        static_cast<double>(d.box.y + d.box.h - oy),
        1};
    apply_train<aug::paper_train>(margin, d, o, from_margin.data());
    CHECK(tricks_test::same_bits(from_whole, from_margin));

    // At half scale the region's box is the full-resolution box halved; for the evaluation box
    // (fractional, inside a whole-pixel box) the located box is mapped the same way.
    const image_u8 half = image_from(40, 30, 3, [&](int x, int y, int ch) {
        return static_cast<int>((px(img, 2 * x, 2 * y, ch) + px(img, 2 * x + 1, 2 * y, ch) +
                                 px(img, 2 * x, 2 * y + 1, ch) + px(img, 2 * x + 1, 2 * y + 1, ch)) /
                                4);
    });
    const auto e = draw_train<aug::train_transform<>>(img.w, img.h, o, rng(5, 5));
    const decoded_region half_region{
        half, e.box.x / 2.0, e.box.y / 2.0, (e.box.x + e.box.w) / 2.0, (e.box.y + e.box.h) / 2.0, 2};
    auto got = output_of(o), want = output_of(o);
    apply_train<aug::train_transform<>>(half_region, e, o, got.data());
    apply_eval(decoded_region{half, e.src.x0 / 2, e.src.y0 / 2, e.src.x1 / 2, e.src.y1 / 2, 2}, o, want.data());
    double m = 0;
    for (std::size_t i = 0; i < got.size(); ++i) m = std::max(m, static_cast<double>(std::abs(got[i] - want[i])));
    CHECK(m < 1e-5);

    // Only RGB.
    const decoded_region grey{random_image(10, 10, 1, 3), 0, 0, 10, 10, 1};
    CHECK_THROWS_WITH_AS(apply_eval(grey, o, got.data()), doctest::Contains("1 channels; expected 3"),
                         tricks::data_error);
}

TEST_CASE("image_transform: draws are deterministic and each step has its own stream") {
    const image_transform_options o;
    const rng r(99, 7);
    const auto before = r.save();
    const auto a = draw_train<aug::paper_train>(500, 375, o, r);
    const auto b = draw_train<aug::paper_train>(500, 375, o, r);
    CHECK(r.save().counter == before.counter);  // the image's stream is not advanced
    CHECK(a.box == b.box);
    CHECK(a.flip == b.flip);
    CHECK(a.b == b.b);
    CHECK(a.s == b.s);
    CHECK(a.h == b.h);
    CHECK(a.alpha == b.alpha);
    CHECK(a.src == b.src);

    // Same draw, same output bits.
    const image_u8 img = random_image(500, 375, 3, 1);
    image_transform_options small = o;
    small.size = 56;
    small.resize = 64;
    const auto ds = draw_train<aug::paper_train>(500, 375, small, r);
    auto o1 = output_of(small), o2 = output_of(small);
    apply_train<aug::paper_train>(whole(img, ds.box), ds, small, o1.data());
    apply_train<aug::paper_train>(whole(img, ds.box), ds, small, o2.data());
    CHECK(tricks_test::same_bits(o1, o2));

    // Another image's stream draws differently.
    const auto c = draw_train<aug::paper_train>(500, 375, o, r.fork(1));
    CHECK((c.box != a.box || c.b != a.b));
    CHECK(c.b != a.b);
    CHECK(c.alpha != a.alpha);

    // The crop is random_resized_crop_box on fork 0.
    rng crop_stream = r.fork(static_cast<std::uint64_t>(transform_stream::crop));
    CHECK(a.box == random_resized_crop_box(500, 375, o, crop_stream));

    // A step's draws do not depend on the others: dropping the crop, or an image size that makes
    // the crop use all its tries, leaves flip, jitter and lighting unchanged.
    const auto no_crop =
        draw_train<aug::train_transform<aug::pca_lighting, aug::color_jitter, aug::horizontal_flip>>(500, 375, o, r);
    const auto long_image = draw_train<aug::paper_train>(10000, 10, o, r);
    for (const auto& other : {no_crop, long_image}) {
        CHECK(other.flip == a.flip);
        CHECK(other.b == a.b);
        CHECK(other.s == a.s);
        CHECK(other.h == a.h);
        CHECK(other.alpha == a.alpha);
    }
    CHECK(no_crop.box == eval_crop_box(500, 375, o));
    const auto lighting_only = draw_train<aug::train_transform<aug::pca_lighting>>(500, 375, o, r);
    CHECK(lighting_only.alpha == a.alpha);
    CHECK(lighting_only.b == 1.0f);
    CHECK(!lighting_only.flip);

    // Absent steps draw nothing and leave the identity.
    const auto none = draw_train<aug::train_transform<>>(500, 375, o, r);
    CHECK(!none.flip);
    CHECK(none.b == 1.0f);
    CHECK(none.s == 1.0f);
    CHECK(none.h == 1.0f);
    CHECK(none.alpha == std::array<float, 3>{0, 0, 0});
}

TEST_CASE("image_transform: policies describe themselves") {
    using aug::train_transform;
    CHECK(aug::paper_train::describe() == "random_resized_crop+horizontal_flip+color_jitter+pca_lighting");
    CHECK(train_transform<aug::pca_lighting, aug::horizontal_flip>::describe() == "horizontal_flip+pca_lighting");
    CHECK(train_transform<>::describe() == "none");
    static_assert(aug::paper_train::crop && aug::paper_train::flip && aug::paper_train::jitter &&
                  aug::paper_train::lighting);
    static_assert(!train_transform<aug::color_jitter>::crop && train_transform<aug::color_jitter>::jitter);
    static_assert(aug::is_train_transform_v<aug::paper_train> && !aug::is_train_transform_v<int>);
}

TEST_CASE("image_transform: check() names the field and the value") {
    CHECK_NOTHROW(check(image_transform_options{}));
    struct bad_case {
        std::function<void(image_transform_options&)> edit;
        const char* message;
    };
    const bad_case cases[] = {
        {[](auto& o) { o.size = 0; }, "size = 0"},
        {[](auto& o) { o.resize = 200; }, "resize = 200; expected >= size (224)"},
        {[](auto& o) { o.min_area = 0; }, "min_area = 0"},
        {[](auto& o) { o.max_area = 1.5; }, "max_area = 1.5"},
        {[](auto& o) { o.min_area = 0.9, o.max_area = 0.5; }, "min_area = 0.9 > max_area = 0.5"},
        {[](auto& o) { o.min_ratio = -1; }, "min_ratio = -1"},
        {[](auto& o) { o.max_ratio = 0; }, "max_ratio = 0"},
        {[](auto& o) { o.min_ratio = 2, o.max_ratio = 1; }, "min_ratio = 2 > max_ratio = 1"},
        {[](auto& o) { o.tries = 0; }, "tries = 0"},
        {[](auto& o) { o.brightness = -0.5f; }, "brightness = -0.5"},
        {[](auto& o) { o.brightness = 1.0f; }, "brightness = 1"},
        {[](auto& o) { o.saturation = 1.5f; }, "saturation = 1.5"},
        {[](auto& o) { o.hue = -0.25f; }, "hue = -0.25"},
        {[](auto& o) { o.pca_std = -0.5f; }, "pca_std = -0.5"},
        {[](auto& o) { o.mean[1] = std::nanf(""); }, "mean[1]"},
        {[](auto& o) { o.stddev[2] = 0; }, "stddev[2] = 0"},
    };
    for (const auto& k : cases) {
        CAPTURE(k.message);
        image_transform_options o;
        k.edit(o);
        CHECK_THROWS_WITH_AS(check(o), doctest::Contains(k.message), tricks::error);
    }
    // The transforms check their options.
    image_transform_options o;
    o.tries = 0;
    CHECK_THROWS_WITH_AS(draw_train<aug::paper_train>(10, 10, o, rng(1, 1)), doctest::Contains("tries = 0"),
                         tricks::error);
    rng rr(1, 1);
    CHECK_THROWS_WITH_AS(random_resized_crop_box(0, 10, image_transform_options{}, rr),
                         doctest::Contains("image size 0x10"), tricks::error);
}
