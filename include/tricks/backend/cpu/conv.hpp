#pragma once
// 2-D convolution on the CPU, NHWC activations, filters stored [kh][kw][cin][cout] (HWIO) so the
// forward pass is one GEMM per tile of output pixels: Y(tile x cout) = im2col(tile x k) * W(k x cout)
// with k = kh*kw*cin. Eigen does the GEMM; this file does the data movement and the work split.
//
// Determinism: work is split into tiles whose boundaries depend only on the shapes, never on the
// thread count, and reductions over tiles (the filter gradient) add partial sums in a fixed order.
// Same input -> same bits, on 1 thread or 16. Every Eigen product runs inside our own parallel
// region (so Eigen stays serial there): Eigen's own multi-threaded GEMM re-blocks the inner
// dimension by thread count, which would change the summation order. Hence no `if` clauses here.
#include <Eigen/Core>
#include <algorithm>
#include <cstring>

#include "tricks/backend/cpu/workspace.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/shape.hpp"

namespace tricks::backend {

struct conv_geometry {
    shape4 in;      // input activations (n, h, w, cin)
    int out_c = 0;  // output channels
    int kh = 1, kw = 1, stride = 1, pad = 0;

    [[nodiscard]] constexpr int out_h() const noexcept { return window_out(in.h, kh, stride, pad); }
    [[nodiscard]] constexpr int out_w() const noexcept { return window_out(in.w, kw, stride, pad); }
    [[nodiscard]] constexpr shape4 out() const noexcept { return {in.n, out_h(), out_w(), out_c}; }
    [[nodiscard]] constexpr int k() const noexcept { return kh * kw * in.c; }
    [[nodiscard]] constexpr bool pointwise() const noexcept { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }

    void validate(const char* who) const {
        require<shape_error>(in.n > 0, who, ": batch must be > 0, got n=", in.n);
        require<shape_error>(in.c > 0 && out_c > 0, who, ": channels must be > 0, got cin=", in.c, " cout=", out_c);
        require<shape_error>(kh > 0 && kw > 0 && stride > 0 && pad >= 0, who, ": bad kernel ", kh, "x", kw,
                             " stride ", stride, " pad ", pad);
        require<shape_error>(in.h + 2 * pad >= kh && in.w + 2 * pad >= kw, who, ": kernel ", kh, "x", kw,
                             " is larger than the padded input ", in.h + 2 * pad, "x", in.w + 2 * pad, " (input ", in,
                             ", pad ", pad, ")");
    }
};

namespace detail {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using cmap = Eigen::Map<const row_major, Eigen::Aligned16>;
using map = Eigen::Map<row_major, Eigen::Unaligned>;
using cmap_u = Eigen::Map<const row_major, Eigen::Unaligned>;

/// Output pixels per tile: big enough for an efficient GEMM, small enough that the im2col tile
/// (tile x k floats) stays in L2. Depends on shapes only (determinism, see above).
inline int tile_pixels(int k, int pixels_per_image) {
    const int t = std::clamp((1 << 16) / std::max(k, 1), 32, 1024);
    return std::min(t, pixels_per_image);
}

/// im2col for output pixels [p0, p0 + count) of image `img`: one row of k values per pixel.
inline void im2col_tile(const conv_geometry& g, const float* x_img, int p0, int count, float* col) {
    const int ow = g.out_w(), cin = g.in.c, H = g.in.h, W = g.in.w;
    const int k = g.k();
    for (int i = 0; i < count; ++i) {
        const int p = p0 + i, oy = p / ow, ox = p % ow;
        float* row = col + static_cast<std::size_t>(i) * k;
        for (int ky = 0; ky < g.kh; ++ky) {
            const int iy = oy * g.stride - g.pad + ky;
            float* dst = row + ky * g.kw * cin;
            if (iy < 0 || iy >= H) {
                std::memset(dst, 0, sizeof(float) * g.kw * cin);
                continue;
            }
            const int ix0 = ox * g.stride - g.pad;
            if (ix0 >= 0 && ix0 + g.kw <= W) {  // the whole kernel row is inside: one contiguous copy
                std::memcpy(dst, x_img + (static_cast<std::size_t>(iy) * W + ix0) * cin, sizeof(float) * g.kw * cin);
                continue;
            }
            for (int kx = 0; kx < g.kw; ++kx) {
                const int ix = ix0 + kx;
                if (ix < 0 || ix >= W) std::memset(dst + kx * cin, 0, sizeof(float) * cin);
                else std::memcpy(dst + kx * cin, x_img + (static_cast<std::size_t>(iy) * W + ix) * cin, sizeof(float) * cin);
            }
        }
    }
}

/// The adjoint of im2col_tile: adds the columns back into the image gradient.
inline void col2im_tile_add(const conv_geometry& g, const float* col, int p0, int count, float* dx_img) {
    const int ow = g.out_w(), cin = g.in.c, H = g.in.h, W = g.in.w;
    const int k = g.k();
    for (int i = 0; i < count; ++i) {
        const int p = p0 + i, oy = p / ow, ox = p % ow;
        const float* row = col + static_cast<std::size_t>(i) * k;
        for (int ky = 0; ky < g.kh; ++ky) {
            const int iy = oy * g.stride - g.pad + ky;
            if (iy < 0 || iy >= H) continue;
            for (int kx = 0; kx < g.kw; ++kx) {
                const int ix = ox * g.stride - g.pad + kx;
                if (ix < 0 || ix >= W) continue;
                float* dst = dx_img + (static_cast<std::size_t>(iy) * W + ix) * cin;
                const float* src = row + (ky * g.kw + kx) * cin;
                for (int c = 0; c < cin; ++c) dst[c] += src[c];
            }
        }
    }
}

}  // namespace detail

/// y = conv(x, w). x: in (NHWC), w: k x cout row-major (HWIO), y: out (NHWC), overwritten.
inline void conv2d_forward(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws) {
    using namespace detail;
    g.validate("tricks::conv2d");
    const int k = g.k(), cout = g.out_c;
    const int opix = g.out_h() * g.out_w();
    const cmap_u W(w, k, cout);
    if (g.pointwise()) {  // 1x1 stride 1: the activations already are the GEMM operand
        const std::ptrdiff_t rows = static_cast<std::ptrdiff_t>(g.in.pixels());
        const std::ptrdiff_t block = 512;
        const std::ptrdiff_t tiles = (rows + block - 1) / block;
#pragma omp parallel for schedule(static)
        for (std::ptrdiff_t t = 0; t < tiles; ++t) {
            const std::ptrdiff_t r0 = t * block, nr = std::min(block, rows - r0);
            map(y + r0 * cout, nr, cout).noalias() = cmap_u(x + r0 * k, nr, k) * W;
        }
        return;
    }
    const int tile = tile_pixels(k, opix);
    const int tiles_per_img = (opix + tile - 1) / tile;
    const std::ptrdiff_t tiles = static_cast<std::ptrdiff_t>(g.in.n) * tiles_per_img;
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * g.in.c;
    ws.reserve(static_cast<std::size_t>(max_threads()), static_cast<std::size_t>(tile) * k);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t t = 0; t < tiles; ++t) {
        const int img = static_cast<int>(t / tiles_per_img);
        const int p0 = static_cast<int>(t % tiles_per_img) * tile, cnt = std::min(tile, opix - p0);
        float* col = ws.get(static_cast<std::size_t>(omp_get_thread_num()), 0);
        im2col_tile(g, x + img * in_img, p0, cnt, col);
        float* yt = y + (static_cast<std::size_t>(img) * opix + p0) * cout;
        map(yt, cnt, cout).noalias() = cmap_u(col, cnt, k) * W;
    }
}

/// dx = conv^T(dy, w), overwritten.
inline void conv2d_backward_data(const conv_geometry& g, const float* dy, const float* w, float* dx, workspace& ws) {
    using namespace detail;
    g.validate("tricks::conv2d_backward_data");
    const int k = g.k(), cout = g.out_c;
    const int opix = g.out_h() * g.out_w();
    const cmap_u W(w, k, cout);
    if (g.pointwise()) {
        const std::ptrdiff_t rows = static_cast<std::ptrdiff_t>(g.in.pixels());
        const std::ptrdiff_t block = 512;
        const std::ptrdiff_t tiles = (rows + block - 1) / block;
#pragma omp parallel for schedule(static)
        for (std::ptrdiff_t t = 0; t < tiles; ++t) {
            const std::ptrdiff_t r0 = t * block, nr = std::min(block, rows - r0);
            map(dx + r0 * k, nr, k).noalias() = cmap_u(dy + r0 * cout, nr, cout) * W.transpose();
        }
        return;
    }
    // col2im scatters into overlapping windows, so one image is handled by one thread, its tiles in order.
    const int tile = tile_pixels(k, opix);
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * g.in.c;
    ws.reserve(static_cast<std::size_t>(max_threads()), static_cast<std::size_t>(tile) * k);
#pragma omp parallel for schedule(static)
    for (int img = 0; img < g.in.n; ++img) {
        float* col = ws.get(static_cast<std::size_t>(omp_get_thread_num()), 0);
        float* dxi = dx + img * in_img;
        std::memset(dxi, 0, sizeof(float) * in_img);
        for (int p0 = 0; p0 < opix; p0 += tile) {
            const int cnt = std::min(tile, opix - p0);
            const float* dyt = dy + (static_cast<std::size_t>(img) * opix + p0) * cout;
            map(col, cnt, k).noalias() = cmap_u(dyt, cnt, cout) * W.transpose();
            col2im_tile_add(g, col, p0, cnt, dxi);
        }
    }
}

/// dw = sum over the batch of im2col(x)^T * dy, overwritten (k x cout).
inline void conv2d_backward_filter(const conv_geometry& g, const float* x, const float* dy, float* dw, workspace& ws) {
    using namespace detail;
    g.validate("tricks::conv2d_backward_filter");
    const int k = g.k(), cout = g.out_c;
    const int opix = g.out_h() * g.out_w();
    const std::size_t wsize = static_cast<std::size_t>(k) * cout;
    const bool pw = g.pointwise();
    const int tile = pw ? 512 : tile_pixels(k, opix);
    // Tiles: for pointwise convs rows of the flattened batch, otherwise per-image pixel tiles.
    const int tiles_per_img = pw ? 0 : (opix + tile - 1) / tile;
    const std::ptrdiff_t rows = static_cast<std::ptrdiff_t>(g.in.pixels());
    const std::ptrdiff_t tiles = pw ? (rows + tile - 1) / tile : static_cast<std::ptrdiff_t>(g.in.n) * tiles_per_img;
    // A fixed number of partial sums (a function of the shapes only), added in order at the end.
    const std::ptrdiff_t groups = std::min<std::ptrdiff_t>(tiles, wsize <= (1u << 18) ? 16 : 4);
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * g.in.c;
    const std::size_t nthreads = static_cast<std::size_t>(max_threads());
    // slots [0, groups): partial dW; slots [groups, groups + threads): im2col tiles.
    ws.reserve(static_cast<std::size_t>(groups), wsize);
    for (std::size_t s = 0; s < nthreads; ++s) ws.get(static_cast<std::size_t>(groups) + s, pw ? 1 : static_cast<std::size_t>(tile) * k);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t gi = 0; gi < groups; ++gi) {
        float* part = ws.get(static_cast<std::size_t>(gi), 0);
        map P(part, k, cout);
        P.setZero();
        float* col = ws.get(static_cast<std::size_t>(groups) + static_cast<std::size_t>(omp_get_thread_num()), 0);
        const std::ptrdiff_t t0 = tiles * gi / groups, t1 = tiles * (gi + 1) / groups;
        for (std::ptrdiff_t t = t0; t < t1; ++t) {
            if (pw) {
                const std::ptrdiff_t r0 = t * tile, nr = std::min<std::ptrdiff_t>(tile, rows - r0);
                P.noalias() += cmap_u(x + r0 * k, nr, k).transpose() * cmap_u(dy + r0 * cout, nr, cout);
            } else {
                const int img = static_cast<int>(t / tiles_per_img);
                const int p0 = static_cast<int>(t % tiles_per_img) * tile, cnt = std::min(tile, opix - p0);
                im2col_tile(g, x + img * in_img, p0, cnt, col);
                const float* dyt = dy + (static_cast<std::size_t>(img) * opix + p0) * cout;
                P.noalias() += cmap_u(col, cnt, k).transpose() * cmap_u(dyt, cnt, cout);
            }
        }
    }
    std::memcpy(dw, ws.get(0, 0), sizeof(float) * wsize);
    for (std::ptrdiff_t gi = 1; gi < groups; ++gi) {
        const float* part = ws.get(static_cast<std::size_t>(gi), 0);
        for (std::size_t i = 0; i < wsize; ++i) dw[i] += part[i];
    }
}

}  // namespace tricks::backend
