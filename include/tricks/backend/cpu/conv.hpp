#pragma once
// 2-D convolution on the CPU, NHWC activations, filters stored [kh][kw][cin][cout] (HWIO). Forward
// algorithms, picked per shape (and by conv_algo): Winograd F(m x m, 3x3) for 3x3 stride-1 layers
// (winograd.hpp), register-blocked direct kernels for narrow layers (<= 128 channels), and a GEMM
// otherwise, Y(pixels x cout) = im2col(pixels x k) * W(k x cout) with k = kh*kw*cin, on gemm_packed
// (conv_common.hpp: K-chunked, packed panels, the epilogue on the registers), its A panels copied
// from the activations (1x1 stride-1 layers, whose activations already are A) or gathered from the
// image (strided and wide layers). The backward passes run on the same GEMM where the direct and
// Winograd kernels do not apply: dx as dy * W^T (then col2im), dW as im2col(x)^T * dy. Every forward
// gives an image the same bits in any batch. This file does the data movement and the work split.
//
// Determinism: work is split into tiles whose boundaries depend only on the shapes, never on the
// thread count, and reductions over tiles (the filter gradient) add partial sums in a fixed order.
// Same input -> same bits, on 1 thread or 16.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "tricks/backend/cpu/conv_common.hpp"
#include "tricks/backend/cpu/epilogue.hpp"
#include "tricks/backend/cpu/winograd.hpp"
#include "tricks/backend/cpu/workspace.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/shape.hpp"

namespace tricks::backend::host {

namespace detail {

/// Output pixels per tile of the col matrix of backward-data: big enough for an efficient GEMM, small
/// enough that the tile (tile x k floats) stays in L2. Depends on shapes only (determinism, see above).
inline int tile_pixels(int k, int pixels_per_image) {
    const int t = std::clamp((1 << 16) / std::max(k, 1), 32, 1024);
    return std::min(t, pixels_per_image);
}

/// The adjoint of im2col for output pixels [p0, p0 + count) of one image (rows of k values, as
/// implicit_im2col reads them): adds the columns back into the image gradient.
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

// ---- direct convolution for narrow layers --------------------------------------------------------
// The CIFAR-style nets' convolutions have 8-128 output channels: as a GEMM (pixels x 9*cin) * (9*cin x
// cout) the right operand is a thin strip and the im2col copy costs as much as the product. The
// direct kernel instead keeps a block of PX output pixels x CB output channels in registers
// (PX * CB / 16 AVX-512 vectors; without AVX-512 as register_tiles' tiles of at most 6 pixels x 16
// channels) and walks the taps and input channels of a zero-padded copy of the image: per (tap, ci)
// it loads CB weights once and does PX broadcasts and PX * CB / 16 FMAs.
// Each output's sum runs over (ky, kx, ci) in that order whatever the thread count: deterministic.

/// The geometry the direct kernel handles (any kernel, stride and padding; output channels in blocks
/// of 8, at most 128 channels in and out: measured faster than im2col + GEMM up to there on 2 cores).
inline bool direct_conv_suits(const conv_geometry& g) noexcept {
    return !g.pointwise() && g.out_c % 8 == 0 && g.out_c <= 128 && g.in.c <= 128;
}

/// One register tile of direct_block: PX pixels from ox0 x CB channels from co0.
template <int PX, int CB>
inline void direct_tile(const conv_geometry& g, const float* xp, const float* w, float* y_img, int oy, int ox0, int co0,
                        const conv_epilogue& epi) {
    constexpr int VW = block_width<CB>, V = CB / VW;
    using vec = vecf<VW>;
    const int C = g.in.c, WP = g.in.w + 2 * g.pad, S = g.stride, cout = g.out_c, ow = g.out_w();
    vec acc[PX][V];
    for (int px = 0; px < PX; ++px)
        for (int v = 0; v < V; ++v) acc[px][v] = vec{};
    // Within a kernel row, (kx, ci) is one contiguous run of kw * C values both in the padded input
    // (NHWC: pixel ox*S + kx's channels follow pixel ox*S + kx - 1's) and in the HWIO filter, so the
    // two loops are one of length kw * C (same order of additions as kx-then-ci).
    const int run = g.kw * C;
    for (int ky = 0; ky < g.kh; ++ky) {
        const float* xb = xp + (static_cast<std::size_t>(oy * S + ky) * WP + static_cast<std::size_t>(ox0) * S) * C;
        const float* wt = w + static_cast<std::size_t>(ky) * run * cout + co0;
        for (int j = 0; j < run; ++j) {
            const float* wp = wt + static_cast<std::size_t>(j) * cout;
            vec wv[V];
            for (int v = 0; v < V; ++v) wv[v] = loadv<VW>(wp + VW * v);
            for (int px = 0; px < PX; ++px) {
                const float xv = xb[static_cast<std::size_t>(px) * S * C + j];
                for (int v = 0; v < V; ++v) acc[px][v] = fmadd<VW>(wv[v], splat<VW>(xv), acc[px][v]);
            }
        }
    }
    const std::size_t at = (static_cast<std::size_t>(oy) * ow + ox0) * cout + co0;  // in the image's output
    if (!epi.empty()) {  // on the registers: the same x * a + b, + s and max(., 0) as the layers after it
        for (int v = 0; v < V; ++v) {
            const vector_epilogue<VW> e(epi, co0 + VW * v);
            for (int px = 0; px < PX; ++px)
                acc[px][v] = e(acc[px][v], at + static_cast<std::size_t>(px) * cout + VW * v);
        }
    }
    float* yo = y_img + at;
    for (int px = 0; px < PX; ++px)
        for (int v = 0; v < V; ++v) storev<VW>(yo + static_cast<std::size_t>(px) * cout + VW * v, acc[px][v]);
}

/// PX output pixels (ox0 ... ox0 + PX - 1 of row oy) x CB output channels (co0 ...) of one image.
template <int PX, int CB>
inline void direct_block(const conv_geometry& g, const float* xp, const float* w, float* y_img, int oy, int ox0,
                         int co0, const conv_epilogue& epi) {
    static_assert(CB == 8 || CB == 16 || CB == 32);
    register_tiles<PX, CB>([&](auto ps, auto cs, int p0, int c0) {
        direct_tile<decltype(ps)::value, decltype(cs)::value>(g, xp, w, y_img, oy, ox0 + p0, co0 + c0, epi);
    });
}

template <int CB>
inline void direct_row(const conv_geometry& g, const float* xp, const float* w, float* y_img, int oy, int co0,
                       const conv_epilogue& epi) {
    in_blocks<8>(g.out_w(),
                 [&](auto px, int ox) { direct_block<decltype(px)::value, CB>(g, xp, w, y_img, oy, ox, co0, epi); });
}

/// y = epi(conv(x, w)) by the direct kernel; images are split over the threads (static schedule), or
/// their output rows when there are fewer images than threads. Workspace slots: a padded image per
/// thread, then (fewer images than threads) the padded images in slot threads + 1.
inline void direct_conv_forward(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws,
                                const conv_epilogue& epi = {}) {
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * g.in.c;
    const std::size_t out_img = static_cast<std::size_t>(g.out_h()) * g.out_w() * g.out_c;
    const std::size_t padded = static_cast<std::size_t>(g.in.h + 2 * g.pad) * (g.in.w + 2 * g.pad) * g.in.c;
    ws.reserve(static_cast<std::size_t>(max_threads()), padded);
    const int oh = g.out_h(), cout = g.out_c;
    auto row = [&](const float* xp, float* yi, const conv_epilogue& ei, int oy) {
        int co = 0;
        for (; co + 32 <= cout; co += 32) direct_row<32>(g, xp, w, yi, oy, co, ei);
        for (; co + 16 <= cout; co += 16) direct_row<16>(g, xp, w, yi, oy, co, ei);
        if (co < cout) direct_row<8>(g, xp, w, yi, oy, co, ei);
    };
    if (g.in.n < max_threads()) {
        // Fewer images than threads (batch 1): the images are padded once into a shared buffer and the
        // work items are output rows, so every thread gets some. Each output's sum is the same.
        // (slot threads + 1: backward-data keeps its flipped filter in slot `threads`)
        float* xs = ws.get(static_cast<std::size_t>(max_threads()) + 1, static_cast<std::size_t>(g.in.n) * padded);
        for (int img = 0; img < g.in.n; ++img) pad_image(g, x + img * in_img, xs + img * padded);
#pragma omp parallel for schedule(static)
        for (int it = 0; it < g.in.n * oh; ++it) {
            const int img = it / oh;
            row(xs + img * padded, y + img * out_img, epi.from(img * out_img), it % oh);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int img = 0; img < g.in.n; ++img) {
        float* xp = ws.get(static_cast<std::size_t>(omp_get_thread_num()), 0);
        pad_image(g, x + img * in_img, xp);
        float* yi = y + img * out_img;
        const conv_epilogue ei = epi.from(img * out_img);
        for (int oy = 0; oy < oh; ++oy) row(xp, yi, ei, oy);
    }
}

/// One register tile of direct_filter_block: CIB input channels from ci0 x CB output channels from co0.
template <int CIB, int CB>
inline void direct_filter_tile(const conv_geometry& g, const float* xp, const float* dy_img, float* part, int ky,
                               int kx, int ci0, int co0) {
    constexpr int VW = block_width<CB>, V = CB / VW;
    using vec = vecf<VW>;
    const int C = g.in.c, WP = g.in.w + 2 * g.pad, S = g.stride, cout = g.out_c, oh = g.out_h(), ow = g.out_w();
    vec acc[CIB][V];
    for (int c = 0; c < CIB; ++c)
        for (int v = 0; v < V; ++v) acc[c][v] = vec{};
    for (int oy = 0; oy < oh; ++oy) {
        const float* xrow = xp + (static_cast<std::size_t>(oy * S + ky) * WP + kx) * C + ci0;
        const float* drow = dy_img + static_cast<std::size_t>(oy) * ow * cout + co0;
        for (int ox = 0; ox < ow; ++ox) {
            vec d[V];
            for (int v = 0; v < V; ++v) d[v] = loadv<VW>(drow + static_cast<std::size_t>(ox) * cout + VW * v);
            const float* xv = xrow + static_cast<std::size_t>(ox) * S * C;
            for (int c = 0; c < CIB; ++c)
                for (int v = 0; v < V; ++v) acc[c][v] = fmadd<VW>(d[v], splat<VW>(xv[c]), acc[c][v]);
        }
    }
    float* dst = part + (static_cast<std::size_t>(ky * g.kw + kx) * C + ci0) * cout + co0;
    for (int c = 0; c < CIB; ++c)
        for (int v = 0; v < V; ++v) {
            float* q = dst + static_cast<std::size_t>(c) * cout + VW * v;
            storev<VW>(q, loadv<VW>(q) + acc[c][v]);
        }
}

/// Backward-filter of one image for one tap (ky, kx), CIB input x CB output channels from (ci0, co0):
/// part[tap][ci][co] += sum over the image's output pixels of x_pad[pixel + tap][ci] * dy[pixel][co].
template <int CIB, int CB>
inline void direct_filter_block(const conv_geometry& g, const float* xp, const float* dy_img, float* part, int ky,
                                int kx, int ci0, int co0) {
    static_assert(CB == 8 || CB == 16);
    register_tiles<CIB, CB>([&](auto rs, auto cs, int r0, int c0) {
        direct_filter_tile<decltype(rs)::value, decltype(cs)::value>(g, xp, dy_img, part, ky, kx, ci0 + r0, co0 + c0);
    });
}

template <int CIB>
inline void direct_filter_image(const conv_geometry& g, const float* xp, const float* dy_img, float* part) {
    for (int ky = 0; ky < g.kh; ++ky)
        for (int kx = 0; kx < g.kw; ++kx)
            for (int ci = 0; ci < g.in.c; ci += CIB) {
                int co = 0;
                for (; co + 16 <= g.out_c; co += 16) direct_filter_block<CIB, 16>(g, xp, dy_img, part, ky, kx, ci, co);
                if (co < g.out_c) direct_filter_block<CIB, 8>(g, xp, dy_img, part, ky, kx, ci, co);
            }
}

/// Backward-filter of one image with a single input channel (the network's first conv), K x K taps
/// at once: per output pixel one load of CB gradients and K*K independent FMA chains. (Tap by tap,
/// as direct_filter_image<1> does, each sum is one accumulator long and runs at the FMA latency,
/// which made the stem conv's filter gradient a visible share of a step: docs/design.md,
/// "Measurements".) Each dw[tap][co] is summed over the pixels in the same order as there, with one
/// FMA per term.
template <int K, int CB>
inline void direct_filter_single_channel(const conv_geometry& g, const float* xp, const float* dy_img, float* part,
                                         int co0) {
    static_assert(CB == block_width<CB>, "tricks: one vector of CB floats");
    constexpr int VW = CB;
    using vec = vecf<VW>;
    const int WP = g.in.w + 2 * g.pad, S = g.stride, cout = g.out_c, oh = g.out_h(), ow = g.out_w();
    vec acc[K * K];
    for (int t = 0; t < K * K; ++t) acc[t] = vec{};
    for (int oy = 0; oy < oh; ++oy) {
        const float* drow = dy_img + static_cast<std::size_t>(oy) * ow * cout + co0;
        const float* xrow = xp + static_cast<std::size_t>(oy * S) * WP;
        for (int ox = 0; ox < ow; ++ox) {
            const vec d = loadv<VW>(drow + static_cast<std::size_t>(ox) * cout);
            const float* xv = xrow + static_cast<std::size_t>(ox) * S;
            for (int ky = 0; ky < K; ++ky)
                for (int kx = 0; kx < K; ++kx)
                    acc[ky * K + kx] =
                        fmadd<VW>(d, splat<VW>(xv[static_cast<std::size_t>(ky) * WP + kx]), acc[ky * K + kx]);
        }
    }
    for (int t = 0; t < K * K; ++t) {
        float* q = part + static_cast<std::size_t>(t) * cout + co0;
        storev<VW>(q, loadv<VW>(q) + acc[t]);
    }
}

/// Whether `algo` runs g (a forward geometry, or backward-data's as a forward) on Winograd.
inline bool uses_winograd(const conv_geometry& g, conv_algo algo) noexcept {
    return algo == conv_algo::winograd && winograd_suits(g);
}

/// Whether the direct backward-filter kernel applies (input channels 1 or a multiple of 8).
inline bool direct_filter_suits(const conv_geometry& g) noexcept {
    return direct_conv_suits(g) && (g.in.c == 1 || g.in.c % 8 == 0);
}

/// Whether the filter gradient of a Winograd geometry runs on Winograd: always for the narrow layers
/// (the direct kernel is the alternative), and for wider ones from 256 output tiles in the batch.
/// Winograd's filter gradient costs 36 x cin x cout per group of images beyond the work that scales
/// with the tiles, which the tiles of a small batch at 7x7 do not repay: ResNet-50's 7x7x512 layer
/// at batch 16 (64 tiles) took 4x as long as gemm_packed (docs/design.md, "Measurements").
inline bool winograd_filter_pays(const conv_geometry& g) noexcept {
    if (direct_filter_suits(g)) return true;
    const long per_image = winograd_tile(g) == 4 ? winograd_tiles<4>(g).per_image() : winograd_tiles<2>(g).per_image();
    return per_image * g.in.n >= 256;
}

/// dw by the direct kernel: a fixed number of groups of images (a function of the batch only), each
/// summed in image order into its own partial, the partials added in group order.
inline void direct_conv_backward_filter(const conv_geometry& g, const float* x, const float* dy, float* dw,
                                        workspace& ws) {
    const std::size_t wsize = static_cast<std::size_t>(g.k()) * g.out_c;
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * g.in.c;
    const std::size_t out_img = static_cast<std::size_t>(g.out_h()) * g.out_w() * g.out_c;
    const std::size_t padded = static_cast<std::size_t>(g.in.h + 2 * g.pad) * (g.in.w + 2 * g.pad) * g.in.c;
    const int groups = std::min(g.in.n, 16);
    const std::size_t nthreads = static_cast<std::size_t>(max_threads());
    ws.reserve(static_cast<std::size_t>(groups), wsize);
    for (std::size_t t = 0; t < nthreads; ++t) ws.get(static_cast<std::size_t>(groups) + t, padded);
#pragma omp parallel for schedule(static)
    for (int gi = 0; gi < groups; ++gi) {
        float* part = ws.get(static_cast<std::size_t>(gi), 0);
        std::memset(part, 0, sizeof(float) * wsize);
        float* xp = ws.get(static_cast<std::size_t>(groups) + static_cast<std::size_t>(omp_get_thread_num()), 0);
        const int i0 = static_cast<int>(static_cast<long>(g.in.n) * gi / groups);
        const int i1 = static_cast<int>(static_cast<long>(g.in.n) * (gi + 1) / groups);
        for (int img = i0; img < i1; ++img) {
            pad_image(g, x + img * in_img, xp);
            const float* dyi = dy + img * out_img;
            if (g.in.c == 1 && g.kh == 3 && g.kw == 3) {
                constexpr int CB = block_width<16>;  // 9 accumulators of CB floats
                int co = 0;
                for (; co + CB <= g.out_c; co += CB) direct_filter_single_channel<3, CB>(g, xp, dyi, part, co);
                if (co < g.out_c) direct_filter_single_channel<3, 8>(g, xp, dyi, part, co);
            } else if (g.in.c == 1) {
                direct_filter_image<1>(g, xp, dyi, part);
            } else {
                direct_filter_image<8>(g, xp, dyi, part);
            }
        }
    }
    std::memcpy(dw, ws.get(0, 0), sizeof(float) * wsize);
    for (int gi = 1; gi < groups; ++gi) {
        const float* part = ws.get(static_cast<std::size_t>(gi), 0);
        for (std::size_t i = 0; i < wsize; ++i) dw[i] += part[i];
    }
}

/// The weights of backward-data as a forward convolution (stride 1): w'[ky][kx][co][ci] =
/// w[K-1-ky][K-1-kx][ci][co], so dx = conv(dy, w') with padding K-1-pad.
inline void flip_transpose_filter(const conv_geometry& g, const float* w, float* wt) {
    const int C = g.in.c, CO = g.out_c;
    for (int ky = 0; ky < g.kh; ++ky)
        for (int kx = 0; kx < g.kw; ++kx) {
            const float* src = w + static_cast<std::size_t>((g.kh - 1 - ky) * g.kw + (g.kw - 1 - kx)) * C * CO;
            float* dst = wt + static_cast<std::size_t>(ky * g.kw + kx) * CO * C;
            for (int co = 0; co < CO; ++co)
                for (int ci = 0; ci < C; ++ci)
                    dst[static_cast<std::size_t>(co) * C + ci] = src[static_cast<std::size_t>(ci) * CO + co];
        }
}

/// The backward-data geometry as a forward convolution, when the direct kernel can do it (stride 1,
/// padding < kernel, input channels in blocks of 8).
inline bool direct_backward_data_suits(const conv_geometry& g) noexcept {
    return !g.pointwise() && g.stride == 1 && g.pad < g.kh && g.kh == g.kw && g.in.c % 8 == 0 && g.in.c <= 128 &&
           g.out_c <= 128;
}

/// Output pixels per tile of gemm_packed (whole register blocks of 12 rows).
inline constexpr int packed_tile_rows = 20 * gemm_mr;

/// Rows per tile when `rows` rows are cut into tiles of at most packed_tile_rows: as many tiles as
/// that takes, of equal size rounded up to whole register blocks, so no tile is left with a sliver
/// (784 rows: 4 tiles of 204, the last 172, rather than 3 x 240 + 64). A function of `rows` only.
inline std::ptrdiff_t packed_tile(std::ptrdiff_t rows) noexcept {
    const std::ptrdiff_t tiles = std::max<std::ptrdiff_t>(1, (rows + packed_tile_rows - 1) / packed_tile_rows);
    return ((rows + tiles - 1) / tiles + gemm_mr - 1) / gemm_mr * gemm_mr;
}

/// The im2col matrix of a convolution read in place: row r = output pixel `row0 + r` of the batch
/// (image-major), column k = (ky, kx, ci), zero where the window leaves the image.
struct implicit_im2col {
    const conv_geometry& g;
    const float* x;
    std::size_t row0;

    /// dst[j * step] = A[r][k0 + j] for j < kn: one row's run of columns, copied tap by tap (a tap's
    /// channels are contiguous in the image, or all zero where its pixel is padding).
    void segment(std::size_t r, int k0, int kn, float* dst, std::size_t step) const {
        const int oh = g.out_h(), ow = g.out_w(), C = g.in.c;
        const std::size_t p = row0 + r;
        const int img = static_cast<int>(p / (static_cast<std::size_t>(oh) * ow));
        const int pix = static_cast<int>(p % (static_cast<std::size_t>(oh) * ow)), oy = pix / ow, ox = pix % ow;
        const float* xi = x + static_cast<std::size_t>(img) * g.in.h * g.in.w * C;
        for (int k = k0; k < k0 + kn;) {
            const int tap = k / C, c0 = k % C, run = std::min(C - c0, k0 + kn - k);
            const int iy = oy * g.stride - g.pad + tap / g.kw, ix = ox * g.stride - g.pad + tap % g.kw;
            float* d = dst + static_cast<std::size_t>(k - k0) * step;
            if (iy < 0 || iy >= g.in.h || ix < 0 || ix >= g.in.w) {
                for (int j = 0; j < run; ++j) d[static_cast<std::size_t>(j) * step] = 0.f;
            } else {
                const float* src = xi + (static_cast<std::size_t>(iy) * g.in.w + ix) * C + c0;
                if (step == 1)
                    std::memcpy(d, src, sizeof(float) * static_cast<std::size_t>(run));
                else
                    for (int j = 0; j < run; ++j) d[static_cast<std::size_t>(j) * step] = src[j];
            }
            k += run;
        }
    }
    /// dst[k * R + r] = A[p0 + r][k0 + k] for r < R, k < kn (gemm_packed's A panels).
    void pack(int p0, int R, int k0, int kn, float* dst) const {
        for (int r = 0; r < R; ++r)
            segment(static_cast<std::size_t>(p0 + r), k0, kn, dst + r, static_cast<std::size_t>(R));
    }
    /// A[r][k] (relative to row0).
    [[nodiscard]] float at(int r, int k) const {
        float v;
        segment(static_cast<std::size_t>(r), k, 1, &v, 1);
        return v;
    }
};

/// The transpose of the im2col matrix (rows: the k = (ky, kx, ci) from k0; columns: output pixels of
/// the batch from p0): the left operand of the filter gradient, im2col^T * dy.
struct implicit_im2col_t {
    implicit_im2col cols;
    int k0;
    /// dst[j * R + r] = A^T[r0 + r][c0 + j]: per pixel, R consecutive columns of its im2col row.
    void pack(int r0, int R, int c0, int cn, float* dst) const {
        for (int j = 0; j < cn; ++j)
            cols.segment(static_cast<std::size_t>(c0 + j), k0 + r0, R, dst + static_cast<std::size_t>(j) * R, 1);
    }
    [[nodiscard]] float at(int r, int c) const { return cols.at(c, k0 + r); }
};

/// A dense row-major matrix as gemm_packed's left operand: A[r][k] = a[r * lda + k].
struct dense_operand {
    const float* a;
    std::size_t lda;
    void pack(int p0, int R, int k0, int kn, float* dst) const {
        const float* src = a + static_cast<std::size_t>(p0) * lda + k0;
        if (R == gemm_mr) {  // a whole register block: 12 rows, 8 k at a time through registers
            int k = 0;
            for (; k + 8 <= kn; k += 8) {
                float t[gemm_mr][8];
                for (int r = 0; r < gemm_mr; ++r) std::memcpy(t[r], src + static_cast<std::size_t>(r) * lda + k, 32);
                for (int j = 0; j < 8; ++j)
                    for (int r = 0; r < gemm_mr; ++r) dst[static_cast<std::size_t>(k + j) * gemm_mr + r] = t[r][j];
            }
            for (; k < kn; ++k)
                for (int r = 0; r < gemm_mr; ++r)
                    dst[static_cast<std::size_t>(k) * gemm_mr + r] = src[static_cast<std::size_t>(r) * lda + k];
            return;
        }
        for (int r = 0; r < R; ++r)
            for (int k = 0; k < kn; ++k)
                dst[static_cast<std::size_t>(k) * R + r] = src[static_cast<std::size_t>(r) * lda + k];
    }
    [[nodiscard]] float at(int r, int k) const { return a[static_cast<std::size_t>(r) * lda + k]; }
};

/// The transpose of a dense row-major matrix: A[r][k] = a[k * lda + r] (the activations of a 1x1
/// layer as the filter gradient's left operand): R consecutive floats per k.
struct transposed_operand {
    const float* a;
    std::size_t lda;
    void pack(int p0, int R, int k0, int kn, float* dst) const {
        const float* src = a + static_cast<std::size_t>(k0) * lda + p0;
        if (R == gemm_mr) {  // a whole register block: a copy of fixed size, inlined
            for (int k = 0; k < kn; ++k)
                std::memcpy(dst + static_cast<std::size_t>(k) * gemm_mr, src + static_cast<std::size_t>(k) * lda,
                            sizeof(float) * gemm_mr);
            return;
        }
        for (int k = 0; k < kn; ++k)
            std::memcpy(dst + static_cast<std::size_t>(k) * R, src + static_cast<std::size_t>(k) * lda,
                        sizeof(float) * static_cast<std::size_t>(R));
    }
    [[nodiscard]] float at(int r, int k) const { return a[static_cast<std::size_t>(k) * lda + r]; }
};

/// gemm_packed with an operand object (pack / at) for A.
template <class Operand>
inline void gemm_operand(const Operand& A, int rows, int K, const float* b, int ldb, int cols, float* c,
                         std::size_t ldc, float* pack, const conv_epilogue& epi = {}, const float* b_packed = nullptr) {
    gemm_packed([&](int p0, int R, int k0, int kn, float* dst) { A.pack(p0, R, k0, kn, dst); },
                [&](int r, int k) { return A.at(r, k); }, rows, K, b, ldb, cols, c, ldc, pack, epi, b_packed);
}

/// Columns per work item of packed_rows: gemm_nc, or fewer (whole blocks of 32) when `tiles` row
/// tiles of gemm_nc columns would leave some of the `threads` threads without an item (one 14x14
/// image through a 256-column layer is one tile and one chunk: one thread would do it all).
inline int packed_columns(std::ptrdiff_t tiles, int cols, int threads) noexcept {
    const std::ptrdiff_t chunks = (cols + gemm_nc - 1) / gemm_nc;
    if (tiles * chunks >= threads) return gemm_nc;
    const int want = static_cast<int>((threads + tiles - 1) / tiles);  // column chunks per tile
    return std::clamp(((cols + want - 1) / want + 31) / 32 * 32, 32, gemm_nc);
}

/// C = epi(A * B) for `rows` rows on gemm_packed, in work items of packed_tile(rows) rows x
/// packed_columns(...) columns, so a small batch (down to one 7x7 image) still spreads over the
/// threads. make_a(r0) gives the operand of the rows from r0. Neither the items' sizes nor which item
/// a thread takes changes a bit: every output is summed over k in order inside one item. Uses
/// workspace slots [0, threads). b_packed: B as pack_gemm_b lays it out, or null (every item's
/// columns start at a multiple of 32, so its blocks are the packed ones).
template <class MakeA>
inline void packed_rows(std::ptrdiff_t rows, int k, const float* b, int cols, float* c, workspace& ws,
                        const conv_epilogue& epi, MakeA&& make_a, const float* b_packed = nullptr) {
    const std::ptrdiff_t tile = packed_tile(rows), tiles = (rows + tile - 1) / tile;
    const int width = packed_columns(tiles, cols, max_threads()), chunks = (cols + width - 1) / width;
    ws.reserve(static_cast<std::size_t>(max_threads()), gemm_pack_floats(packed_tile_rows));
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t it = 0; it < tiles * chunks; ++it) {
        const std::ptrdiff_t t = it / chunks;
        const int n0 = static_cast<int>(it % chunks) * width, nc = std::min(width, cols - n0);
        const std::ptrdiff_t r0 = t * tile, nr = std::min<std::ptrdiff_t>(tile, rows - r0);
        conv_epilogue e = epi.from(static_cast<std::size_t>(r0) * cols + n0);
        if (e.scale) e.scale += n0, e.shift += n0;
        gemm_operand(make_a(r0), static_cast<int>(nr), k, b + n0, cols, nc, c + r0 * cols + n0,
                     static_cast<std::size_t>(cols), ws.get(static_cast<std::size_t>(omp_get_thread_num()), 0), e,
                     b_packed ? b_packed + static_cast<std::size_t>(n0) * k : nullptr);
    }
}

/// Whether dense_gemm runs a k x cols right operand on packed_rows (else on gemm_rows).
constexpr bool dense_gemm_packs(int k, int cols) noexcept {
    return static_cast<std::size_t>(k) * cols > (std::size_t{1} << 14);
}

/// C (rows x cols) = epi(A * B) for a dense A (rows x k) and B (k x cols): on gemm_rows where B is
/// small enough to stay in L1/L2 beside the A rows (at most 2^14 floats: ResNet-50's 64-channel 1x1
/// layers), else on packed_rows; the bits are the same either way (docs/design.md, "Measurements").
/// gemm_rows' work items: blocks of 512 rows x chunks of columns, as many chunks as it takes to give
/// every thread an item (a 7x7 image is one block); a column chunk changes no sum.
/// b_packed: pack_gemm_b's form of B where dense_gemm_packs(k, cols), else ignored (may be null).
inline void dense_gemm(std::ptrdiff_t rows, int k, const float* a, const float* b, int cols, float* c, workspace& ws,
                       const conv_epilogue& epi, const float* b_packed = nullptr) {
    if (dense_gemm_packs(k, cols)) {
        packed_rows(
            rows, k, b, cols, c, ws, epi,
            [&](std::ptrdiff_t r0) {
                return dense_operand{a + r0 * k, static_cast<std::size_t>(k)};
            },
            b_packed);
        return;
    }
    const std::ptrdiff_t block = 512;
    const std::ptrdiff_t tiles = (rows + block - 1) / block;
    const int most = std::max(1, cols / 32);  // chunks of at least 32 columns
    const int chunks = static_cast<int>(std::min<std::ptrdiff_t>(most, (max_threads() + tiles - 1) / tiles));
    // chunk i: whole 8-column blocks [8 * floor(q i / chunks), ...) of the q = cols / 8, at least 32
    // columns each; the last one also takes the < 8 columns left
    const int q = cols / 8;
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t it = 0; it < tiles * chunks; ++it) {
        const std::ptrdiff_t t = it / chunks;
        const int i = static_cast<int>(it % chunks);
        const int n0 = q * i / chunks * 8, nc = (i == chunks - 1 ? cols : q * (i + 1) / chunks * 8) - n0;
        const std::ptrdiff_t r0 = t * block, nr = std::min(block, rows - r0);
        // An affine and ReLU on the registers (this item's rows and columns: offsets as for C + r0 * cols
        // + n0). A residual instead in a second pass over the block while it is in cache: reading it
        // 12 rows x 32 columns at a time was slower at 56x56 64->256 (13.2-15.4 vs 11.6-14.8 ms, 1
        // thread, 8 images), while the register epilogue won without one (256->64: 9.6-10.7 vs
        // 10.6-12.4 ms).
        const bool registers = !epi.empty() && epi.residual == nullptr;
        conv_epilogue e = epi.from(static_cast<std::size_t>(r0) * cols + n0);
        if (e.scale) e.scale += n0, e.shift += n0;
        float* ct = c + r0 * cols;
        gemm_rows<dense_rows>(a + r0 * k, static_cast<int>(nr), k, b + n0, nc, ct + n0, cols,
                              static_cast<std::size_t>(cols), registers ? &e : nullptr);
        if (epi.empty() || registers) continue;
        if (chunks == 1) {  // in cache
            apply_epilogue(ct, ct, static_cast<std::size_t>(nr), cols, epi.from(static_cast<std::size_t>(r0) * cols));
            continue;
        }
        for (std::ptrdiff_t r = 0; r < nr; ++r) {  // this chunk's columns, row by row
            conv_epilogue er = epi.from(static_cast<std::size_t>(r0 + r) * cols + n0);
            if (er.scale) er.scale += n0, er.shift += n0;
            apply_epilogue(ct + r * cols + n0, ct + r * cols + n0, 1, nc, er);
        }
    }
}

/// y = epi(im2col(x) * w) on gemm_packed, one row per output pixel of the batch, A gathered by
/// implicit_im2col. w_packed: pack_gemm_b's form of w, or null.
inline void packed_conv(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws,
                        const conv_epilogue& epi, const float* w_packed = nullptr) {
    packed_rows(
        static_cast<std::ptrdiff_t>(g.in.n) * g.out_h() * g.out_w(), g.k(), w, g.out_c, y, ws, epi,
        [&](std::ptrdiff_t r0) {
            return implicit_im2col{g, x, static_cast<std::size_t>(r0)};
        },
        w_packed);
}

/// w^T (cout x k, row-major) from w (k x cout): backward-data's right operand.
/// In 32 x 32 blocks (a cache line of each row at a time), over the threads for large filters.
inline void transpose_filter(const float* w, int k, int cout, float* wt) {
    const int bi = (k + 31) / 32, bo = (cout + 31) / 32;
#pragma omp parallel for schedule(static) if (work_size(k, cout) >= parallel_grain)
    for (int b = 0; b < bi * bo; ++b) {
        const int i0 = b / bo * 32, o0 = b % bo * 32, i1 = std::min(k, i0 + 32), o1 = std::min(cout, o0 + 32);
        for (int o = o0; o < o1; ++o)
            for (int i = i0; i < i1; ++i)
                wt[static_cast<std::size_t>(o) * k + i] = w[static_cast<std::size_t>(i) * cout + o];
    }
}

/// dw (k x cout) = sum over the output pixels p of the batch of A^T[.][p] * dy[p][.], where make_at(k0,
/// p0) gives A^T's rows from k0 and columns from pixel p0 (an operand object). The pixels are cut into
/// a fixed number of groups (a function of the shapes only); each group's sum runs over its pixels in
/// order (one fused multiply-add per term, in gemm_packed's K chunks) into its own partial, and the
/// partials are added in group order: the same bits on any thread count. Work items: groups x tiles
/// of packed_tile(k) rows of dw x chunks of gemm_nc columns; with one group dw itself is the
/// partial. Uses workspace slots [0, threads + groups).
template <class MakeAt>
inline void packed_filter_gradient(std::ptrdiff_t pixels, int k, int cout, const float* dy, float* dw, workspace& ws,
                                   MakeAt&& make_at) {
    const std::size_t wsize = static_cast<std::size_t>(k) * cout;
    const int mtile = static_cast<int>(packed_tile(k)), mtiles = (k + mtile - 1) / mtile;
    const int chunks = (cout + gemm_nc - 1) / gemm_nc;
    // Enough items to keep 16 threads busy without more partials than that; a group at least 256 pixels.
    const std::ptrdiff_t base = static_cast<std::ptrdiff_t>(mtiles) * chunks;
    const std::ptrdiff_t groups =
        std::max<std::ptrdiff_t>(1, std::min<std::ptrdiff_t>((16 + base - 1) / base, pixels / 256));
    const std::size_t nthreads = static_cast<std::size_t>(max_threads());
    ws.reserve(nthreads, gemm_pack_floats(packed_tile_rows));
    if (groups > 1)
        for (std::ptrdiff_t gi = 0; gi < groups; ++gi) ws.get(nthreads + static_cast<std::size_t>(gi), wsize);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t it = 0; it < groups * base; ++it) {
        const std::ptrdiff_t gi = it / base, rest = it % base;
        const int m0 = static_cast<int>(rest / chunks) * mtile, mr = std::min(mtile, k - m0);
        const int n0 = static_cast<int>(rest % chunks) * gemm_nc, nc = std::min(gemm_nc, cout - n0);
        const std::ptrdiff_t p0 = pixels * gi / groups, p1 = pixels * (gi + 1) / groups;
        float* part = groups > 1 ? ws.get(nthreads + static_cast<std::size_t>(gi), 0) : dw;
        gemm_operand(make_at(m0, p0), mr, static_cast<int>(p1 - p0), dy + p0 * cout + n0, cout, nc,
                     part + static_cast<std::size_t>(m0) * cout + n0, static_cast<std::size_t>(cout),
                     ws.get(static_cast<std::size_t>(omp_get_thread_num()), 0));
    }
    if (groups == 1) return;
    // dw = partial 0 + partial 1 + ... in group order, element by element, in chunks over the threads.
    const std::ptrdiff_t span = 4096, spans = static_cast<std::ptrdiff_t>((wsize + span - 1) / span);
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t s = 0; s < spans; ++s) {
        const std::size_t i0 = static_cast<std::size_t>(s * span), i1 = std::min(wsize, i0 + span);
        std::memcpy(dw + i0, ws.get(nthreads, 0) + i0, sizeof(float) * (i1 - i0));
        for (std::ptrdiff_t gi = 1; gi < groups; ++gi) {
            const float* part = ws.get(nthreads + static_cast<std::size_t>(gi), 0);
            for (std::size_t i = i0; i < i1; ++i) dw[i] += part[i];
        }
    }
}

}  // namespace detail

namespace detail {
/// Whether conv2d_forward(g, ..., algo) runs on gemm_packed with the filter as its right operand (the
/// wide 1x1 layers, and the strided or wide layers that neither Winograd nor the direct kernel takes).
inline bool forward_packs_filter(const conv_geometry& g, conv_algo algo) noexcept {
    if (g.pointwise()) return dense_gemm_packs(g.k(), g.out_c);
    return !uses_winograd(g, algo) && !direct_conv_suits(g);
}
}  // namespace detail

/// A convolution's filter in the form its forward kernel reads, kept between calls while the weights
/// stay the same: the Winograd path transforms the 3x3 filter into 36 x cin x cout values on every
/// call otherwise, a cost that small sub-batches repeat (docs/design.md, "Measurements"), and the
/// packed GEMM copies the filter into panels once per tile of output pixels (7-12% of ResNet-50's wide
/// 1x1 layers at 224). Keyed by the caller's version of the weights and by the form, which depends on
/// the geometry (the Winograd tile size follows the image size).
struct prepared_filter {
    std::uint64_t version = 0;  // 0: nothing prepared
    int tile = 0;               // the Winograd tile size U was made for; 0: gemm_packed's panels
    tensor<float> u;
};

/// What `p` holds if it is the filter in the form conv2d_forward(g, ..., algo) reads for `version`,
/// else null. Reads p only: several threads may look into one prepared_filter while none prepares it.
inline const float* find_prepared(const conv_geometry& g, conv_algo algo, std::uint64_t version,
                                  const prepared_filter& p) {
    using namespace detail;
    if (version == 0 || p.version != version) return nullptr;
    const bool winograd = uses_winograd(g, algo);
    if (!winograd && !forward_packs_filter(g, algo)) return nullptr;
    const int tile = winograd ? winograd_tile(g) : 0;
    const std::size_t n =
        winograd ? winograd_filter_size(g) : static_cast<std::size_t>(g.k()) * blocked_columns(g.out_c);
    return p.tile == tile && p.u.size() == n && n > 0 ? p.u.data() : nullptr;
}

/// The filter in the form conv2d_forward(g, x, w, ..., algo) reads (Winograd's transformed filter, or
/// the packed GEMM's panels), made in `p` unless p already holds it for `version` (nonzero: the
/// caller's promise that w has not changed since it last used this version), or null where that
/// forward reads w as it is.
inline const float* prepare_filter(const conv_geometry& g, const float* w, conv_algo algo, std::uint64_t version,
                                   prepared_filter& p) {
    using namespace detail;
    require<error>(version != 0, "tricks::prepare_filter: version 0 means 'no promise' and cannot key a filter");
    const bool winograd = uses_winograd(g, algo);
    if (!winograd && (!forward_packs_filter(g, algo) || blocked_columns(g.out_c) == 0)) return nullptr;
    if (const float* kept = find_prepared(g, algo, version, p)) return kept;
    if (winograd) {
        p.u.resize({1, 1, 1, static_cast<int>(winograd_filter_size(g))});
        winograd_prepare_filter(g, w, p.u.data());
    } else {
        p.u.resize({1, 1, 1, g.k() * blocked_columns(g.out_c)});
        pack_gemm_b(w, g.k(), g.out_c, g.out_c, p.u.data());
    }
    p.version = version, p.tile = winograd ? winograd_tile(g) : 0;
    return p.u.data();
}

/// y = conv(x, w). x: in (NHWC), w: k x cout row-major (HWIO), y: out (NHWC), overwritten.
/// epi: applied to every output before it is stored (a folded evaluation-mode BN, a residual
/// block's shortcut, the ReLU).
/// prepared: prepare_filter(g, w, algo, ...)'s result for these weights, or null.
inline void conv2d_forward(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws,
                           const conv_epilogue& epi = {}, conv_algo algo = conv_algo::winograd,
                           const float* prepared = nullptr) {
    using namespace detail;
    g.validate("tricks::conv2d");
    const int k = g.k(), cout = g.out_c;
    if (g.pointwise()) {  // 1x1 stride 1: the activations already are the GEMM operand
        // Our GEMMs, not Eigen's: Eigen's kernels depend on the block's row count and a row's place in
        // it, which gave an image other bits in another batch (models::inference_pool promises the
        // same); ours sum every output over k in order wherever its row falls.
        dense_gemm(static_cast<std::ptrdiff_t>(g.in.pixels()), k, x, w, cout, y, ws, epi, prepared);
        return;
    }
    if (uses_winograd(g, algo)) {
        winograd_forward(g, x, w, y, ws, epi, 0, prepared);
        return;
    }
    if (direct_conv_suits(g)) {
        direct_conv_forward(g, x, w, y, ws, epi);
        return;
    }
    // Any other geometry (strided or wide non-Winograd layers, large kernels): the packed GEMM with A
    // gathered from the image (implicit im2col), over tiles of output pixels of the whole batch.
    packed_conv(g, x, w, y, ws, epi, prepared);
}

/// dx = conv^T(dy, w), overwritten.
inline void conv2d_backward_data(const conv_geometry& g, const float* dy, const float* w, float* dx, workspace& ws,
                                 conv_algo algo = conv_algo::winograd) {
    using namespace detail;
    g.validate("tricks::conv2d_backward_data");
    const int k = g.k(), cout = g.out_c;
    const int opix = g.out_h() * g.out_w();
    const std::size_t nthreads = static_cast<std::size_t>(max_threads());
    if (g.pointwise()) {  // dx (pixels x cin) = dy (pixels x cout) * w^T
        float* wt = ws.get(nthreads, static_cast<std::size_t>(k) * cout);
        transpose_filter(w, k, cout, wt);
        dense_gemm(static_cast<std::ptrdiff_t>(g.in.pixels()), cout, dy, wt, k, dx, ws, {});
        return;
    }
    if (direct_backward_data_suits(g)) {
        // dx = conv(dy, flipped and transposed w), stride 1, padding K-1-pad: the direct kernel.
        const conv_geometry t{g.out(), g.in.c, g.kh, g.kw, 1, g.kh - 1 - g.pad};
        // The flipped filter lives in slot `threads` (slots below it are the kernel's padded images).
        const std::size_t slot = nthreads;
        float* wt = ws.get(slot, static_cast<std::size_t>(k) * cout);
        flip_transpose_filter(g, w, wt);
        if (uses_winograd(t, algo))
            winograd_forward(t, dy, wt, dx, ws, {}, slot + 1);
        else
            direct_conv_forward(t, dy, wt, dx, ws);
        return;
    }
    // col = dy * w^T per tile of an image's output pixels (gemm_packed), scattered back by col2im.
    // col2im adds into overlapping windows, so one image is handled by one thread, its tiles in order.
    // Slots: [0, threads) gemm_packed's panels, threads: w^T, (threads, 2 threads] the col tiles.
    const int tile = std::min(opix, std::max(tile_pixels(k, opix), 96));
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * g.in.c;
    ws.reserve(nthreads, gemm_pack_floats(tile));
    for (std::size_t t = 0; t <= nthreads; ++t)
        ws.get(nthreads + t, t == 0 ? static_cast<std::size_t>(k) * cout : static_cast<std::size_t>(tile) * k);
    float* wt = ws.get(nthreads, 0);
    transpose_filter(w, k, cout, wt);
#pragma omp parallel for schedule(static)
    for (int img = 0; img < g.in.n; ++img) {
        const std::size_t me = static_cast<std::size_t>(omp_get_thread_num());
        float* col = ws.get(nthreads + 1 + me, 0);
        float* dxi = dx + img * in_img;
        std::memset(dxi, 0, sizeof(float) * in_img);
        for (int p0 = 0; p0 < opix; p0 += tile) {
            const int cnt = std::min(tile, opix - p0);
            const float* dyt = dy + (static_cast<std::size_t>(img) * opix + p0) * cout;
            gemm_operand(dense_operand{dyt, static_cast<std::size_t>(cout)}, cnt, cout, wt, k, k, col,
                         static_cast<std::size_t>(k), ws.get(me, 0));
            col2im_tile_add(g, col, p0, cnt, dxi);
        }
    }
}

/// dw = sum over the batch of im2col(x)^T * dy, overwritten (k x cout).
inline void conv2d_backward_filter(const conv_geometry& g, const float* x, const float* dy, float* dw, workspace& ws,
                                   conv_algo algo = conv_algo::winograd) {
    using namespace detail;
    g.validate("tricks::conv2d_backward_filter");
    if (uses_winograd(g, algo) && winograd_filter_pays(g)) {
        winograd_backward_filter(g, x, dy, dw, ws);
        return;
    }
    if (direct_filter_suits(g)) {
        direct_conv_backward_filter(g, x, dy, dw, ws);
        return;
    }
    const int k = g.k();
    const std::ptrdiff_t pixels = static_cast<std::ptrdiff_t>(g.in.n) * g.out_h() * g.out_w();
    if (g.pointwise()) {  // x itself is im2col(x)
        packed_filter_gradient(pixels, k, g.out_c, dy, dw, ws, [&](int m0, std::ptrdiff_t p0) {
            return transposed_operand{x + p0 * k + m0, static_cast<std::size_t>(k)};
        });
        return;
    }
    packed_filter_gradient(pixels, k, g.out_c, dy, dw, ws, [&](int m0, std::ptrdiff_t p0) {
        return implicit_im2col_t{implicit_im2col{g, x, static_cast<std::size_t>(p0)}, m0};
    });
}

}  // namespace tricks::backend::host
