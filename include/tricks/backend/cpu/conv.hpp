#pragma once
// 2-D convolution on the CPU, NHWC activations, filters stored [kh][kw][cin][cout] (HWIO). Forward
// algorithms, picked per shape (and by conv_algo): Winograd F(m x m, 3x3) for 3x3 stride-1 layers
// (winograd.hpp), register-blocked direct kernels for narrow layers (<= 128 channels), and a GEMM
// otherwise, Y(pixels x cout) = im2col(pixels x k) * W(k x cout) with k = kh*kw*cin: gemm_rows
// (conv_common.hpp) for 1x1 stride-1 layers, whose activations already are A, and gemm_packed
// (K-chunked, packed panels, the epilogue on the registers) for every other geometry, its A panels
// gathered straight from the image (strided 3x3 and 1x1 layers, wide 5x5 or 7x7 ones). Both give an
// image the same bits in any batch. The backward passes use Eigen's GEMMs on
// im2col tiles (or the direct and Winograd kernels where they apply); this file does the data
// movement and the work split.
//
// Determinism: work is split into tiles whose boundaries depend only on the shapes, never on the
// thread count, and reductions over tiles (the filter gradient) add partial sums in a fixed order.
// Same input -> same bits, on 1 thread or 16. Every Eigen product runs inside our own parallel
// region (so Eigen stays serial there): Eigen's own multi-threaded GEMM re-blocks the inner
// dimension by thread count, which would change the summation order. Hence no `if` clauses here.
#include <Eigen/Core>
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
                if (ix < 0 || ix >= W)
                    std::memset(dst + kx * cin, 0, sizeof(float) * cin);
                else
                    std::memcpy(dst + kx * cin, x_img + (static_cast<std::size_t>(iy) * W + ix) * cin,
                                sizeof(float) * cin);
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

// ---- direct convolution for narrow layers --------------------------------------------------------
// The CIFAR-style nets' convolutions have 8-128 output channels: as a GEMM (pixels x 9*cin) * (9*cin x
// cout) the right operand is a thin strip and the im2col copy costs as much as the product. The
// direct kernel instead keeps a block of PX output pixels x CB output channels in registers
// (PX * CB / 16 AVX-512 vectors) and walks the taps and input channels of a zero-padded copy of
// the image: per (tap, ci) it loads CB weights once and does PX broadcasts and PX * CB / 16 FMAs.
// Each output's sum runs over (ky, kx, ci) in that order whatever the thread count: deterministic.

/// The geometry the direct kernel handles (any kernel, stride and padding; output channels in blocks
/// of 8, at most 128 channels in and out: measured faster than im2col + GEMM up to there on 2 cores).
inline bool direct_conv_suits(const conv_geometry& g) noexcept {
    return !g.pointwise() && g.out_c % 8 == 0 && g.out_c <= 128 && g.in.c <= 128;
}

/// PX output pixels (ox0 ... ox0 + PX - 1 of row oy) x CB output channels (co0 ...) of one image.
template <int PX, int CB>
inline void direct_block(const conv_geometry& g, const float* xp, const float* w, float* y_img, int oy, int ox0,
                         int co0, const conv_epilogue& epi) {
    static_assert(CB == 8 || CB == 16 || CB == 32);
    constexpr int VW = CB >= 16 ? 16 : 8, V = CB / VW;
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
                for (int v = 0; v < V; ++v) acc[px][v] += wv[v] * xv;
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

/// Backward-filter of one image for one tap (ky, kx), CIB input x CB output channels from (ci0, co0):
/// part[tap][ci][co] += sum over the image's output pixels of x_pad[pixel + tap][ci] * dy[pixel][co].
template <int CIB, int CB>
inline void direct_filter_block(const conv_geometry& g, const float* xp, const float* dy_img, float* part, int ky,
                                int kx, int ci0, int co0) {
    static_assert(CB == 8 || CB == 16);
    constexpr int V = 1;
    using vec = vecf<CB>;
    const int C = g.in.c, WP = g.in.w + 2 * g.pad, S = g.stride, cout = g.out_c, oh = g.out_h(), ow = g.out_w();
    vec acc[CIB][V];
    for (int c = 0; c < CIB; ++c)
        for (int v = 0; v < V; ++v) acc[c][v] = vec{};
    for (int oy = 0; oy < oh; ++oy) {
        const float* xrow = xp + (static_cast<std::size_t>(oy * S + ky) * WP + kx) * C + ci0;
        const float* drow = dy_img + static_cast<std::size_t>(oy) * ow * cout + co0;
        for (int ox = 0; ox < ow; ++ox) {
            vec d[V];
            for (int v = 0; v < V; ++v) d[v] = loadv<CB>(drow + static_cast<std::size_t>(ox) * cout + CB * v);
            const float* xv = xrow + static_cast<std::size_t>(ox) * S * C;
            for (int c = 0; c < CIB; ++c)
                for (int v = 0; v < V; ++v) acc[c][v] += d[v] * xv[c];
        }
    }
    float* dst = part + (static_cast<std::size_t>(ky * g.kw + kx) * C + ci0) * cout + co0;
    for (int c = 0; c < CIB; ++c)
        for (int v = 0; v < V; ++v) {
            float* q = dst + static_cast<std::size_t>(c) * cout + CB * v;
            storev<CB>(q, loadv<CB>(q) + acc[c][v]);
        }
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
    constexpr int VW = CB >= 16 ? 16 : 8;
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
                for (int kx = 0; kx < K; ++kx) acc[ky * K + kx] += d * xv[static_cast<std::size_t>(ky) * WP + kx];
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
                int co = 0;
                for (; co + 16 <= g.out_c; co += 16) direct_filter_single_channel<3, 16>(g, xp, dyi, part, co);
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

/// The im2col matrix of a convolution read in place: row r = output pixel `row0 + r` of the batch
/// (image-major), column k = (ky, kx, ci), zero where the window leaves the image.
struct implicit_im2col {
    const conv_geometry& g;
    const float* x;
    std::size_t row0;

    /// dst[k * R + r] = A[p0 + r][k0 + k] for r < R, k < kn (gemm_packed's A panels).
    void pack(int p0, int R, int k0, int kn, float* dst) const {
        const int oh = g.out_h(), ow = g.out_w(), C = g.in.c;
        for (int r = 0; r < R; ++r) {
            const std::size_t p = row0 + static_cast<std::size_t>(p0 + r);
            const int img = static_cast<int>(p / (static_cast<std::size_t>(oh) * ow));
            const int pix = static_cast<int>(p % (static_cast<std::size_t>(oh) * ow)), oy = pix / ow, ox = pix % ow;
            const float* xi = x + static_cast<std::size_t>(img) * g.in.h * g.in.w * C;
            for (int k = k0; k < k0 + kn;) {
                const int tap = k / C, c0 = k % C, run = std::min(C - c0, k0 + kn - k);
                const int iy = oy * g.stride - g.pad + tap / g.kw, ix = ox * g.stride - g.pad + tap % g.kw;
                float* d = dst + static_cast<std::size_t>(k - k0) * R + r;
                if (iy < 0 || iy >= g.in.h || ix < 0 || ix >= g.in.w) {
                    for (int j = 0; j < run; ++j) d[static_cast<std::size_t>(j) * R] = 0.f;
                } else {
                    const float* src = xi + (static_cast<std::size_t>(iy) * g.in.w + ix) * C + c0;
                    for (int j = 0; j < run; ++j) d[static_cast<std::size_t>(j) * R] = src[j];
                }
                k += run;
            }
        }
    }
    /// A[r][k] (relative to row0).
    [[nodiscard]] float at(int r, int k) const {
        const int oh = g.out_h(), ow = g.out_w(), C = g.in.c;
        const std::size_t p = row0 + static_cast<std::size_t>(r);
        const int img = static_cast<int>(p / (static_cast<std::size_t>(oh) * ow));
        const int pix = static_cast<int>(p % (static_cast<std::size_t>(oh) * ow)), oy = pix / ow, ox = pix % ow;
        const int tap = k / C, iy = oy * g.stride - g.pad + tap / g.kw, ix = ox * g.stride - g.pad + tap % g.kw;
        if (iy < 0 || iy >= g.in.h || ix < 0 || ix >= g.in.w) return 0.f;
        return x[((static_cast<std::size_t>(img) * g.in.h + iy) * g.in.w + ix) * C + k % C];
    }
};

/// y = epi(im2col(x) * w) on gemm_packed, one row per output pixel of the batch, A gathered by
/// implicit_im2col: work items are tiles of packed_tile_rows rows times chunks of gemm_nc output
/// channels, so a small batch (down to one 7x7 image) still spreads over the threads. Which item a
/// thread takes changes nothing: every output is summed over k in order inside one item.
inline void packed_conv(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws,
                        const conv_epilogue& epi) {
    const int k = g.k(), cout = g.out_c;
    const std::ptrdiff_t rows = static_cast<std::ptrdiff_t>(g.in.n) * g.out_h() * g.out_w();
    const std::ptrdiff_t tiles = (rows + packed_tile_rows - 1) / packed_tile_rows;
    const int chunks = (cout + gemm_nc - 1) / gemm_nc;
    ws.reserve(static_cast<std::size_t>(max_threads()), gemm_pack_floats(packed_tile_rows));
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t it = 0; it < tiles * chunks; ++it) {
        const std::ptrdiff_t t = it / chunks;
        const int n0 = static_cast<int>(it % chunks) * gemm_nc, nc = std::min(gemm_nc, cout - n0);
        const std::ptrdiff_t r0 = t * packed_tile_rows, nr = std::min<std::ptrdiff_t>(packed_tile_rows, rows - r0);
        conv_epilogue e = epi.from(static_cast<std::size_t>(r0) * cout + n0);
        if (e.scale) e.scale += n0, e.shift += n0;
        const implicit_im2col A{g, x, static_cast<std::size_t>(r0)};
        gemm_packed([&](int p0, int R, int k0, int kn, float* dst) { A.pack(p0, R, k0, kn, dst); },
                    [&](int r, int kk) { return A.at(r, kk); }, static_cast<int>(nr), k, w + n0, cout, nc,
                    y + r0 * cout + n0, static_cast<std::size_t>(cout),
                    ws.get(static_cast<std::size_t>(omp_get_thread_num()), 0), e);
    }
}

}  // namespace detail

/// A convolution's filter in the form its forward kernel reads, kept between calls while the weights
/// stay the same (the Winograd path transforms the 3x3 filter into 36 x cin x cout values on every
/// call otherwise, a cost that small sub-batches repeat: docs/design.md, "Measurements"). Keyed by
/// the caller's version of the weights and by the transform, which depends on the geometry (the tile
/// size follows the image size).
struct prepared_filter {
    std::uint64_t version = 0;  // 0: nothing prepared
    int tile = 0;               // the Winograd tile size U was made for
    tensor<float> u;
};

/// The transformed filter conv2d_forward(g, x, w, ..., algo) would compute from w, made in `p` unless
/// p already holds it for `version` (nonzero: the caller's promise that w has not changed since it
/// last used this version), or null where that forward does not transform its filter.
inline const float* prepare_filter(const conv_geometry& g, const float* w, conv_algo algo, std::uint64_t version,
                                   prepared_filter& p) {
    using namespace detail;
    require<error>(version != 0, "tricks::prepare_filter: version 0 means 'no promise' and cannot key a filter");
    if (!uses_winograd(g, algo)) return nullptr;
    const int tile = winograd_tile(g);
    const std::size_t n = winograd_filter_size(g);
    if (p.version != version || p.tile != tile || p.u.size() != n) {
        p.u.resize({1, 1, 1, static_cast<int>(n)});
        winograd_prepare_filter(g, w, p.u.data());
        p.version = version, p.tile = tile;
    }
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
        // Work items: blocks of 512 rows x chunks of output channels, as many chunks as it takes to give
        // every thread an item (a 7x7 image is one block). Our GEMM, not Eigen's: Eigen's kernels depend
        // on the block's row count and a row's place in it, which gave an image other bits in another
        // batch (models::inference_pool promises the same); a column chunk changes no sum.
        const std::ptrdiff_t rows = static_cast<std::ptrdiff_t>(g.in.pixels());
        const std::ptrdiff_t block = 512;
        const std::ptrdiff_t tiles = (rows + block - 1) / block;
        const int most = std::max(1, cout / 32);  // chunks of at least 32 columns
        const int chunks = static_cast<int>(std::min<std::ptrdiff_t>(most, (max_threads() + tiles - 1) / tiles));
        // chunk i: whole 8-column blocks [8 * floor(q i / chunks), ...) of the q = cout / 8, at least 32
        // columns each; the last one also takes the < 8 columns left
        const int q = cout / 8;
#pragma omp parallel for schedule(static)
        for (std::ptrdiff_t it = 0; it < tiles * chunks; ++it) {
            const std::ptrdiff_t t = it / chunks;
            const int i = static_cast<int>(it % chunks);
            const int n0 = q * i / chunks * 8, nc = (i == chunks - 1 ? cout : q * (i + 1) / chunks * 8) - n0;
            const std::ptrdiff_t r0 = t * block, nr = std::min(block, rows - r0);
            float* yt = y + r0 * cout;
            gemm_rows<dense_rows>(x + r0 * k, static_cast<int>(nr), k, w + n0, nc, yt + n0, cout,
                                  static_cast<std::size_t>(cout));
            if (epi.empty()) continue;
            if (chunks == 1) {  // in cache
                apply_epilogue(yt, yt, static_cast<std::size_t>(nr), cout,
                               epi.from(static_cast<std::size_t>(r0) * cout));
                continue;
            }
            for (std::ptrdiff_t r = 0; r < nr; ++r) {  // this chunk's columns, row by row
                conv_epilogue e = epi.from(static_cast<std::size_t>(r0 + r) * cout + n0);
                if (e.scale) e.scale += n0, e.shift += n0;
                apply_epilogue(yt + r * cout + n0, yt + r * cout + n0, 1, nc, e);
            }
        }
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
    packed_conv(g, x, w, y, ws, epi);
}

/// dx = conv^T(dy, w), overwritten.
inline void conv2d_backward_data(const conv_geometry& g, const float* dy, const float* w, float* dx, workspace& ws,
                                 conv_algo algo = conv_algo::winograd) {
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
    if (direct_backward_data_suits(g)) {
        // dx = conv(dy, flipped and transposed w), stride 1, padding K-1-pad: the direct kernel.
        const conv_geometry t{g.out(), g.in.c, g.kh, g.kw, 1, g.kh - 1 - g.pad};
        // The flipped filter lives in slot `threads` (slots below it are the kernel's padded images).
        const std::size_t slot = static_cast<std::size_t>(max_threads());
        float* wt = ws.get(slot, static_cast<std::size_t>(k) * cout);
        flip_transpose_filter(g, w, wt);
        if (uses_winograd(t, algo))
            winograd_forward(t, dy, wt, dx, ws, {}, slot + 1);
        else
            direct_conv_forward(t, dy, wt, dx, ws);
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
inline void conv2d_backward_filter(const conv_geometry& g, const float* x, const float* dy, float* dw, workspace& ws,
                                   conv_algo algo = conv_algo::winograd) {
    using namespace detail;
    g.validate("tricks::conv2d_backward_filter");
    if (uses_winograd(g, algo)) {
        winograd_backward_filter(g, x, dy, dw, ws);
        return;
    }
    if (direct_filter_suits(g)) {
        direct_conv_backward_filter(g, x, dy, dw, ws);
        return;
    }
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
    for (std::size_t s = 0; s < nthreads; ++s)
        ws.get(static_cast<std::size_t>(groups) + s, pw ? 1 : static_cast<std::size_t>(tile) * k);
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

}  // namespace tricks::backend::host
