#pragma once
// Pooling over NHWC activations: max-pool (ImageNet stem), average pool (ResNet-D's shortcut:
// 2x2, stride 2, ceil mode, padding not counted) and the global average pool before the classifier.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "tricks/backend/cpu/workspace.hpp"
#include "tricks/backend/geometry.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/shape.hpp"

namespace tricks::backend::host {

namespace detail {
/// max_pool_forward's rows; Track: write the argmax too.
template <bool Track>
inline void max_pool_rows(const pool_geometry& g, const float* x, float* y, std::int32_t* argmax) {
    const int oh = g.out_h(), ow = g.out_w(), C = g.in.c, H = g.in.h, W = g.in.w;
    // By output row (one image's rows spread over the threads at batch 1). Each output starts from
    // its window's first input and takes a later one only when strictly greater: a branch-free select
    // the compiler vectorises over the channels. The first of equal maxima wins, a NaN first stays.
    const std::ptrdiff_t rows = static_cast<std::ptrdiff_t>(g.in.n) * oh;
#pragma omp parallel for schedule(static) if (g.in.size() >= parallel_grain)
    for (std::ptrdiff_t row = 0; row < rows; ++row) {
        const std::ptrdiff_t n = row / oh;
        const int oy = static_cast<int>(row % oh);
        const int y0 = std::max(oy * g.stride - g.pad, 0), y1 = std::min(oy * g.stride - g.pad + g.k, H);
        for (int ox = 0; ox < ow; ++ox) {
            const std::size_t o = (static_cast<std::size_t>(row) * ow + ox) * C;
            float* yo = y + o;
            std::int32_t* ao = Track ? argmax + o : nullptr;
            const int x0 = std::max(ox * g.stride - g.pad, 0), x1 = std::min(ox * g.stride - g.pad + g.k, W);
            if (y0 >= y1 || x0 >= x1) {  // not for a validated geometry; kept well defined
                std::fill_n(yo, C, -std::numeric_limits<float>::infinity());
                if constexpr (Track) std::fill_n(ao, C, -1);
                continue;
            }
            const std::size_t first = ((static_cast<std::size_t>(n) * H + y0) * W + x0) * C;
            for (int c = 0; c < C; ++c) {
                yo[c] = x[first + c];
                if constexpr (Track) ao[c] = static_cast<std::int32_t>(first + c);
            }
            for (int iy = y0; iy < y1; ++iy)
                for (int ix = iy == y0 ? x0 + 1 : x0; ix < x1; ++ix) {
                    const std::size_t i = ((static_cast<std::size_t>(n) * H + iy) * W + ix) * C;
                    const float* xi = x + i;
                    const auto base = static_cast<std::int32_t>(i);
                    for (int c = 0; c < C; ++c) {
                        const bool greater = xi[c] > yo[c];
                        yo[c] = greater ? xi[c] : yo[c];
                        if constexpr (Track) ao[c] = greater ? base + c : ao[c];
                    }
                }
        }
    }
}

}  // namespace detail

/// Max-pool forward; `argmax` receives, per output element, the flat input index that won (the
/// first maximum in window order), so the backward pass routes gradients without searching again.
/// Null `argmax`: the outputs only (an evaluation that no backward pass follows).
inline void max_pool_forward(const pool_geometry& g, const float* x, float* y, std::int32_t* argmax) {
    g.validate("tricks::max_pool");
    if (argmax != nullptr)
        detail::max_pool_rows<true>(g, x, y, argmax);
    else
        detail::max_pool_rows<false>(g, x, y, nullptr);
}

/// dx = 0, then dx[argmax[o]] += dy[o]. Windows of one image only touch that image: split by image.
inline void max_pool_backward(const pool_geometry& g, const float* dy, const std::int32_t* argmax, float* dx) {
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * g.in.c;
    const std::size_t out_img = static_cast<std::size_t>(g.out_h()) * g.out_w() * g.in.c;
#pragma omp parallel for schedule(static) if (g.in.size() >= parallel_grain)
    for (int n = 0; n < g.in.n; ++n) {
        std::fill_n(dx + n * in_img, in_img, 0.f);
        for (std::size_t o = n * out_img; o < (n + 1) * out_img; ++o) dx[argmax[o]] += dy[o];
    }
}

namespace detail {
/// Window [y0, y1) x [x0, x1) clipped to the input, and the divisor of an average pool.
struct pool_window {
    int y0, y1, x0, x1, count;
};
inline pool_window avg_window(const pool_geometry& g, int oy, int ox) {
    const int H = g.in.h, W = g.in.w;
    int y0 = oy * g.stride - g.pad, x0 = ox * g.stride - g.pad;
    int y1 = std::min(y0 + g.k, H + g.pad), x1 = std::min(x0 + g.k, W + g.pad);
    const int padded = (y1 - y0) * (x1 - x0);  // window inside the padded input (ceil mode may cut it)
    y0 = std::max(y0, 0);
    x0 = std::max(x0, 0);
    y1 = std::min(y1, H);
    x1 = std::min(x1, W);
    return {y0, y1, x0, x1, g.count_include_pad ? padded : (y1 - y0) * (x1 - x0)};
}
}  // namespace detail

inline void avg_pool_forward(const pool_geometry& g, const float* x, float* y) {
    g.validate("tricks::avg_pool");
    const int oh = g.out_h(), ow = g.out_w(), C = g.in.c, H = g.in.h, W = g.in.w;
#pragma omp parallel for schedule(static) if (g.in.size() >= parallel_grain)
    for (int n = 0; n < g.in.n; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const auto w = detail::avg_window(g, oy, ox);
                float* yo = y + ((static_cast<std::size_t>(n) * oh + oy) * ow + ox) * C;
                std::fill_n(yo, C, 0.f);
                for (int iy = w.y0; iy < w.y1; ++iy)
                    for (int ix = w.x0; ix < w.x1; ++ix) {
                        const float* xi = x + ((static_cast<std::size_t>(n) * H + iy) * W + ix) * C;
                        for (int c = 0; c < C; ++c) yo[c] += xi[c];
                    }
                const float inv = 1.f / static_cast<float>(w.count);
                for (int c = 0; c < C; ++c) yo[c] *= inv;
            }
}

inline void avg_pool_backward(const pool_geometry& g, const float* dy, float* dx) {
    const int oh = g.out_h(), ow = g.out_w(), C = g.in.c, H = g.in.h, W = g.in.w;
    const std::size_t in_img = static_cast<std::size_t>(H) * W * C;
#pragma omp parallel for schedule(static) if (g.in.size() >= parallel_grain)
    for (int n = 0; n < g.in.n; ++n) {
        std::fill_n(dx + n * in_img, in_img, 0.f);
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox) {
                const auto w = detail::avg_window(g, oy, ox);
                const float* dyo = dy + ((static_cast<std::size_t>(n) * oh + oy) * ow + ox) * C;
                const float inv = 1.f / static_cast<float>(w.count);
                for (int iy = w.y0; iy < w.y1; ++iy)
                    for (int ix = w.x0; ix < w.x1; ++ix) {
                        float* dxi = dx + ((static_cast<std::size_t>(n) * H + iy) * W + ix) * C;
                        for (int c = 0; c < C; ++c) dxi[c] += dyo[c] * inv;
                    }
            }
    }
}

/// (n, h, w, c) -> (n, 1, 1, c): the mean over each feature map.
inline void global_avg_pool_forward(shape4 in, const float* x, float* y) {
    require<shape_error>(in.n > 0 && in.h > 0 && in.w > 0 && in.c > 0, "tricks::global_avg_pool: empty input ", in);
    const int C = in.c;
    const std::size_t hw = static_cast<std::size_t>(in.h) * in.w;
    const float inv = 1.f / static_cast<float>(hw);
#pragma omp parallel for schedule(static) if (in.size() >= parallel_grain)
    for (int n = 0; n < in.n; ++n) {
        float* yo = y + static_cast<std::size_t>(n) * C;
        std::fill_n(yo, C, 0.f);
        const float* xi = x + n * hw * C;
        for (std::size_t p = 0; p < hw; ++p)
            for (int c = 0; c < C; ++c) yo[c] += xi[p * C + c];
        for (int c = 0; c < C; ++c) yo[c] *= inv;
    }
}

inline void global_avg_pool_backward(shape4 in, const float* dy, float* dx) {
    const int C = in.c;
    const std::size_t hw = static_cast<std::size_t>(in.h) * in.w;
    const float inv = 1.f / static_cast<float>(hw);
#pragma omp parallel for schedule(static) if (in.size() >= parallel_grain)
    for (int n = 0; n < in.n; ++n) {
        const float* d = dy + static_cast<std::size_t>(n) * C;
        float* o = dx + n * hw * C;
        for (std::size_t p = 0; p < hw; ++p)
            for (int c = 0; c < C; ++c) o[p * C + c] = d[c] * inv;
    }
}

}  // namespace tricks::backend::host
