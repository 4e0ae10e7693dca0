#pragma once
// Winograd convolution F(m x m, 3x3) for 3x3 stride-1 layers (Lavin & Gray, "Fast Algorithms for
// Convolutional Neural Networks", CVPR 2016), NHWC, all three passes of training, m = 2 or 4.
//
// An m x m block of outputs is Y = A^T [ (G g G^T) . (B^T d B) ] A, summed over input channels, where
// d is the (m+2) x (m+2) input patch under the block ("tile"), g the 3x3 filter and "." the
// element-wise product: (m+2)^2 multiplies per m^2 outputs and channel pair instead of 9 m^2 (2.25x
// fewer for m = 2, 4x for m = 4). Per tile position pos of the (m+2)^2 products, the sum over input
// channels is a GEMM:
//   forward:         M[pos](tiles x cout)  = V[pos](tiles x cin) * U[pos](cin x cout)
//   backward-filter: dU[pos](cin x cout) += V[pos]^T * dM[pos], dM = A dY A^T, dg = G^T dU G
//   backward-data:   the forward of the flipped, transposed filter (as in conv.hpp).
// F(2x2, 3x3)'s transforms only add and halve; F(4x4, 3x3)'s (interpolation points 0, +-1, +-2) scale
// by up to 8 (A) and 1/24 (G), so its rounding error is larger: ~1e-6 vs ~2e-7 of sum |x||w| in FP32
// (the tests compare both with a float64 loop at 1e-5). It is the same mathematical convolution.
// Every sum has a fixed order that depends on the shapes only: the same bits on 1 thread or 16.
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "tricks/backend/conv_algo.hpp"
#include "tricks/backend/cpu/conv_common.hpp"
#include "tricks/backend/cpu/workspace.hpp"

namespace tricks::backend::host {

namespace detail {

/// 3x3, stride 1, padding 0-2, channels in blocks of 8 (the channel vectors of the transforms).
inline bool winograd_suits(const conv_geometry& g) noexcept {
    return g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad <= 2 && g.in.c % 8 == 0 && g.out_c % 8 == 0;
}

/// The 1-D transforms of F(M, 3); the 2-D ones apply them to the columns, then to the rows. T is a
/// float or a vector of floats.
template <int M>
struct winograd_1d;

template <>
struct winograd_1d<2> {
    static constexpr int alpha = 4;
    template <class T>  // B^T d
    static void input(const T (&d)[4], T (&r)[4]) {
        r[0] = d[0] - d[2];
        r[1] = d[1] + d[2];
        r[2] = d[2] - d[1];
        r[3] = d[1] - d[3];
    }
    template <class T>  // A^T m
    static void output(const T (&m)[4], T (&o)[2]) {
        o[0] = m[0] + m[1] + m[2];
        o[1] = m[1] - m[2] - m[3];
    }
    template <class T>  // A y (the adjoint of output)
    static void grad(const T (&y)[2], T (&m)[4]) {
        m[0] = y[0];
        m[1] = y[0] + y[1];
        m[2] = y[0] - y[1];
        m[3] = -y[1];
    }
    template <class T>  // G g
    static void filter(const T (&g)[3], T (&u)[4]) {
        u[0] = g[0];
        u[1] = 0.5f * (g[0] + g[1] + g[2]);
        u[2] = 0.5f * (g[0] - g[1] + g[2]);
        u[3] = g[2];
    }
    template <class T>  // G^T u (the adjoint of filter)
    static void filter_adjoint(const T (&u)[4], T (&g)[3]) {
        g[0] = u[0] + 0.5f * (u[1] + u[2]);
        g[1] = 0.5f * (u[1] - u[2]);
        g[2] = 0.5f * (u[1] + u[2]) + u[3];
    }
};

template <>
struct winograd_1d<4> {
    static constexpr int alpha = 6;
    template <
        class
        T>  // B^T d, B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
    static void input(const T (&d)[6], T (&r)[6]) {
        const T a = d[4] - 4.f * d[2], b = d[3] - 4.f * d[1], c = d[4] - d[2], e = 2.f * (d[3] - d[1]);
        r[0] = 4.f * d[0] - 5.f * d[2] + d[4];
        r[1] = a + b;
        r[2] = a - b;
        r[3] = c + e;
        r[4] = c - e;
        r[5] = 4.f * d[1] - 5.f * d[3] + d[5];
    }
    template <class T>  // A^T m, A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
    static void output(const T (&m)[6], T (&o)[4]) {
        const T s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
        o[0] = m[0] + s12 + s34;
        o[1] = d12 + 2.f * d34;
        o[2] = s12 + 4.f * s34;
        o[3] = d12 + 8.f * d34 + m[5];
    }
    template <class T>  // A y
    static void grad(const T (&y)[4], T (&m)[6]) {
        const T s02 = y[0] + y[2], s13 = y[1] + y[3], q02 = y[0] + 4.f * y[2], q13 = 2.f * y[1] + 8.f * y[3];
        m[0] = y[0];
        m[1] = s02 + s13;
        m[2] = s02 - s13;
        m[3] = q02 + q13;
        m[4] = q02 - q13;
        m[5] = y[3];
    }
    template <class T>  // G g, G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
    static void filter(const T (&g)[3], T (&u)[6]) {
        const T s = g[0] + g[2];
        u[0] = g[0] / 4.f;
        u[1] = -(s + g[1]) / 6.f;
        u[2] = -(s - g[1]) / 6.f;
        u[3] = (g[0] / 4.f + g[1] / 2.f + g[2]) / 6.f;
        u[4] = (g[0] / 4.f - g[1] / 2.f + g[2]) / 6.f;
        u[5] = g[2];
    }
    template <class T>  // G^T u
    static void filter_adjoint(const T (&u)[6], T (&g)[3]) {
        const T s12 = u[1] + u[2], d12 = u[1] - u[2], s34 = u[3] + u[4], d34 = u[3] - u[4];
        g[0] = u[0] / 4.f - s12 / 6.f + s34 / 24.f;
        g[1] = -d12 / 6.f + d34 / 12.f;
        g[2] = -s12 / 6.f + s34 / 6.f + u[5];
    }
};

/// Tiles of M x M outputs: th x tw per image (tile t = ty * tw + tx); the zero-padded image they read
/// is (M th + 2) x (M tw + 2).
template <int M>
struct winograd_tiles {
    static constexpr int alpha = M + 2, positions = alpha * alpha;
    int th, tw;
    explicit winograd_tiles(const conv_geometry& g) : th((g.out_h() + M - 1) / M), tw((g.out_w() + M - 1) / M) {}
    [[nodiscard]] int per_image() const noexcept { return th * tw; }
    [[nodiscard]] int padded_h() const noexcept { return M * th + 2; }
    [[nodiscard]] int padded_w() const noexcept { return M * tw + 2; }
    /// Floats from one tile's positions x c transformed values to the next: one cache line more, so
    /// that the GEMMs' rows (one per tile) do not all fall into the same L1 set (16 x 64 floats are
    /// 4 KiB; rows 4 KiB apart measured slower: docs/design.md, "Measurements").
    static constexpr std::size_t stride(int c) noexcept { return positions * static_cast<std::size_t>(c) + 16; }
};

/// with_channels plus the vector width: f(std::integral_constant<int, VW>{}, std::integral_constant<int, CC>{})
/// with VW = 16 where 16 divides n and a register holds 16 floats, else 8 (n is a multiple of 8).
template <class F>
inline void with_vectors(int n, F&& f) {
    with_channels(n, [&](auto cc) {
        if constexpr (wide_registers)
            if (n % 16 == 0) return f(std::integral_constant<int, 16>{}, cc);
        f(std::integral_constant<int, 8>{}, cc);
    });
}

/// A separable 2-D transform: f (N values -> Out values) applied to each column of the N x N values
/// load(i, j), then to each row of the result; store(i, j, v) receives the Out x Out results.
/// Every transform here (input, output, gradient, filter and its adjoint) is one of these.
template <int N, int Out, class T, class Load, class F, class Store>
inline void separable_2d(Load&& load, F&& f, Store&& store) {
    T col[N][Out];  // col[j] = f(column j)
    for (int j = 0; j < N; ++j) {
        T c[N];
        for (int i = 0; i < N; ++i) c[i] = load(i, j);
        f(c, col[j]);
    }
    for (int i = 0; i < Out; ++i) {  // row i of the columns' results
        T r[N], o[Out];
        for (int j = 0; j < N; ++j) r[j] = col[j][i];
        f(r, o);
        for (int j = 0; j < Out; ++j) store(i, j, o[j]);
    }
}

/// (ci, co) pairs per vector of the filter transforms: 16 where a register holds 16 floats, else 8.
inline constexpr int filter_pairs = block_width<16>;

/// The filter transform and its adjoint, on filter_pairs (ci, co) pairs at a time (cin * cout is a
/// multiple of 64: both are multiples of 8): dst[i][j][pair] = (f f^T applied to src[.][.][pair])[i][j],
/// src In x In and dst Out x Out positions, each position cc = cin * cout floats.
template <int In, int Out, class F>
inline void transform_filter_pairs(const float* src, std::size_t cc, F&& f, float* dst) {
    constexpr int W = filter_pairs;
    using vec = vecf<W>;
    for (std::size_t e = 0; e < cc; e += W)
        separable_2d<In, Out, vec>(
            [&](int i, int j) { return loadv<W>(src + static_cast<std::size_t>(i * In + j) * cc + e); }, f,
            [&](int i, int j, vec v) { storev<W>(dst + static_cast<std::size_t>(i * Out + j) * cc + e, v); });
}

/// U[pos][ci][co] = (G g G^T)[pos] for the HWIO filter w[ky][kx][ci][co].
template <int M>
inline void winograd_filter_transform(const float* w, int cin, int cout, float* u) {
    transform_filter_pairs<3, M + 2>(
        w, static_cast<std::size_t>(cin) * cout, [](const auto& in, auto& out) { winograd_1d<M>::filter(in, out); }, u);
}

/// dw[ky][kx][ci][co] = (G^T dU G)[ky][kx] for dU[pos][ci][co]: the adjoint of the filter transform.
template <int M>
inline void winograd_filter_transform_adjoint(const float* du, int cin, int cout, float* dw) {
    transform_filter_pairs<M + 2, 3>(
        du, static_cast<std::size_t>(cin) * cout,
        [](const auto& in, auto& out) { winograd_1d<M>::filter_adjoint(in, out); }, dw);
}

/// V[t][pos][c] = (B^T d B)[pos] for the tiles [t0, t0 + count) of one zero-padded image (by
/// pad_image to padded_h x padded_w; tile (ty, tx) reads the patch at row M ty, column M tx).
/// The image is copied first: a sequential read the prefetcher keeps up with (reading the patches
/// straight from the batch measured slower once the batch no longer fits in the caches:
/// docs/design.md, "Measurements").
template <int M, int VW, int CC>
inline void winograd_input_transform(const float* xp, int pw, int tw, int c_rt, int t0, int count, float* v) {
    using vec = vecf<VW>;
    using tf = winograd_1d<M>;
    constexpr int A = tf::alpha;
    const int C = CC > 0 ? CC : c_rt;
    const std::size_t row_stride = static_cast<std::size_t>(pw) * C;
    for (int k = 0; k < count; ++k) {
        const int t = t0 + k, ty = t / tw, tx = t % tw;
        const float* src = xp + static_cast<std::size_t>(M * ty) * row_stride + static_cast<std::size_t>(M * tx) * C;
        float* vt = v + k * winograd_tiles<M>::stride(C);
        for (int c = 0; c < C; c += VW)
            separable_2d<A, A, vec>(
                [&](int i, int j) { return loadv<VW>(src + i * row_stride + static_cast<std::size_t>(j) * C + c); },
                [](const auto& in, auto& out) { tf::input(in, out); },
                [&](int i, int j, vec v) { storev<VW>(vt + static_cast<std::size_t>(i * A + j) * C + c, v); });
    }
}

/// winograd_input_transform for C channels (with_vectors: vectors of 16 channels where they divide C and
/// a register holds 16 floats, else 8).
template <int M>
inline void input_transform(const float* xp, int pw, int tw, int C, int t0, int count, float* v) {
    with_vectors(C, [&](auto vw, auto cc) {
        winograd_input_transform<M, decltype(vw)::value, decltype(cc)::value>(xp, pw, tw, C, t0, count, v);
    });
}

/// y = epi(A^T M A) for the tiles [t0, t0 + count) of one image, M[t][pos][co]; outputs past the
/// image (sizes not a multiple of M) are dropped.
template <int M, int VW, int CC>
inline void winograd_output_transform(const conv_geometry& g, const winograd_tiles<M>& tl, const float* m, int t0,
                                      int count, float* yi, const conv_epilogue& epi) {
    using vec = vecf<VW>;
    using tf = winograd_1d<M>;
    constexpr int A = tf::alpha;
    const int CO = CC > 0 ? CC : g.out_c, oh = g.out_h(), ow = g.out_w();
    for (int k = 0; k < count; ++k) {
        const int t = t0 + k, oy = M * (t / tl.tw), ox = M * (t % tl.tw);
        const int rows = std::min(M, oh - oy), cols = std::min(M, ow - ox);
        const float* mt = m + k * winograd_tiles<M>::stride(CO);
        for (int c = 0; c < CO; c += VW) {
            const vector_epilogue<VW> e(epi, c);
            separable_2d<A, M, vec>(
                [&](int i, int j) { return loadv<VW>(mt + static_cast<std::size_t>(i * A + j) * CO + c); },
                [](const auto& in, auto& out) { tf::output(in, out); },
                [&](int i, int j, vec v) {
                    if (i < rows && j < cols) {
                        const std::size_t at = (static_cast<std::size_t>(oy + i) * ow + ox + j) * CO + c;
                        storev<VW>(yi + at, e(v, at));
                    }
                });
        }
    }
}

/// dM[t][pos][co] = (A dY A^T)[pos] for all tiles of one image (outputs past the image count as 0).
template <int M, int VW, int CC>
inline void winograd_grad_transform(const conv_geometry& g, const winograd_tiles<M>& tl, const float* di, float* dm) {
    using vec = vecf<VW>;
    using tf = winograd_1d<M>;
    constexpr int A = tf::alpha;
    const int CO = CC > 0 ? CC : g.out_c, oh = g.out_h(), ow = g.out_w();
    for (int k = 0; k < tl.per_image(); ++k) {
        const int oy = M * (k / tl.tw), ox = M * (k % tl.tw);
        float* dst = dm + k * winograd_tiles<M>::stride(CO);
        for (int c = 0; c < CO; c += VW)
            separable_2d<M, A, vec>(
                [&](int i, int j) {
                    return oy + i < oh && ox + j < ow
                               ? loadv<VW>(di + (static_cast<std::size_t>(oy + i) * ow + ox + j) * CO + c)
                               : vec{};
                },
                [](const auto& in, auto& out) { tf::grad(in, out); },
                [&](int i, int j, vec v) { storev<VW>(dst + static_cast<std::size_t>(i * A + j) * CO + c, v); });
    }
}

/// M[t][pos] = V[t][pos] * U[pos] for one position and `rows` tiles (V's rows stride(K) apart, M's stride(cout)).
template <int M>
inline void winograd_gemm(const float* v, int rows, int K, const float* u, int cout, float* m) {
    gemm_rows<winograd_tiles<M>>(v, rows, K, u, cout, m);
}

/// Tiles at most for winograd_gemms_from_filter (one register block); its input channels per filter
/// chunk, and output channels per work item at most.
inline constexpr int winograd_fused_rows = 12;
inline constexpr int winograd_fused_kc = 16;
inline constexpr int winograd_fused_width = 256;
/// Floats of scratch per thread winograd_gemms_from_filter<M> needs: one chunk of U for an item's
/// outputs (positions padded by a cache line, so that their rows do not share L1 sets).
template <int M>
constexpr std::size_t winograd_fused_floats() noexcept {
    return std::size_t{winograd_tiles<M>::positions} * (winograd_fused_kc * winograd_fused_width + 16);
}

/// One register tile of winograd_fused_block: R rows x CB columns.
template <int R, int CB>
inline void winograd_fused_tile(const float* a, std::size_t lda, const float* b, std::size_t ldb, int kn, float* c,
                                std::size_t ldc, bool first) {
    constexpr int VW = block_width<CB>, NV = CB / VW;
    using vec = vecf<VW>;
    vec acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) acc[r][n] = first ? vec{} : loadv<VW>(c + r * ldc + VW * n);
    for (int k = 0; k < kn; ++k) {
        vec bv[NV];
        for (int n = 0; n < NV; ++n) bv[n] = loadv<VW>(b + k * ldb + VW * n);
        for (int r = 0; r < R; ++r) {
            const float av = a[r * lda + k];
            for (int n = 0; n < NV; ++n) acc[r][n] = fmadd<VW>(bv[n], splat<VW>(av), acc[r][n]);
        }
    }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) storev<VW>(c + r * ldc + VW * n, acc[r][n]);
}

/// C (R rows x 32) = (first ? 0 : C) + A * B over kn steps: A's rows lda apart, B's ldb.
template <int R>
inline void winograd_fused_block(const float* a, std::size_t lda, const float* b, std::size_t ldb, int kn, float* c,
                                 std::size_t ldc, bool first) {
    register_tiles<R, 32>([&](auto rs, auto cs, int r0, int c0) {
        winograd_fused_tile<decltype(rs)::value, decltype(cs)::value>(a + r0 * lda, lda, b + c0, ldb, kn,
                                                                      c + r0 * ldc + c0, ldc, first);
    });
}

/// M[t][pos] = V[t][pos] * U[pos] for every position and `rows` <= winograd_fused_rows tiles, with U
/// made from the 3x3 filter w (HWIO) right before its sums use it: the work items are ranges of
/// output channels (whole blocks of 32, cout a multiple of 32, at most winograd_fused_width, as
/// many as it takes to give every thread one), and per item U is made winograd_fused_kc input
/// channels at a time. For one 7x7 image (4 tiles) the stored U, 4x the filter at F(4x4) (36 MiB
/// for a 512->512 layer), would be read from memory for 4 multiply-adds per value; here the filter
/// is read instead. The same bits as winograd_gemm over winograd_filter_transform's U: the
/// transform is the same separable_2d on the same filter_pairs-pair vectors (pairs ci * cout + co, co
/// from a multiple of filter_pairs), and each output's sum runs over ci in order, one fused multiply-add per term
/// from 0, as gemm_block's (a chunk stores its partial and the next continues it).
/// scratch(thread): winograd_fused_floats<M>() floats.
template <int M, class Scratch>
inline void winograd_gemms_from_filter(const float* v, int rows, int C, const float* w, int CO, float* m,
                                       Scratch&& scratch) {
    using tiles = winograd_tiles<M>;
    constexpr int W = filter_pairs;
    using vec = vecf<W>;
    constexpr int P = tiles::positions, A = M + 2, KC = winograd_fused_kc;
    const std::size_t lda = tiles::stride(C), ldc = tiles::stride(CO), cc = static_cast<std::size_t>(C) * CO;
    const int blocks = CO / 32, threads = max_threads();
    const int per_item = std::min(winograd_fused_width / 32, (blocks + threads - 1) / threads);
    const int items = (blocks + per_item - 1) / per_item;
#pragma omp parallel for schedule(static)
    for (int it = 0; it < items; ++it) {
        const int o0 = it * per_item * 32, width = std::min(per_item * 32, CO - o0);
        const std::size_t ldu = static_cast<std::size_t>(width), pitch = KC * ldu + 16;
        float* ul = scratch(omp_get_thread_num());  // ul[pos * pitch + k * width + o] = U[pos][c0 + k][o0 + o]
        for (int c0 = 0; c0 < C; c0 += KC) {
            const int kn = std::min(KC, C - c0);
            for (int k = 0; k < kn; ++k)
                for (int h = 0; h < width; h += W) {
                    const float* src = w + static_cast<std::size_t>(c0 + k) * CO + o0 + h;
                    float* dst = ul + k * ldu + h;
                    separable_2d<3, A, vec>(
                        [&](int i, int j) { return loadv<W>(src + static_cast<std::size_t>(i * 3 + j) * cc); },
                        [](const auto& in, auto& out) { winograd_1d<M>::filter(in, out); },
                        [&](int i, int j, vec x) { storev<W>(dst + static_cast<std::size_t>(i * A + j) * pitch, x); });
                }
            for (int pos = 0; pos < P; ++pos)
                for (int o = 0; o < width; o += 32)
                    in_blocks<winograd_fused_rows>(rows, [&](auto r, int r0) {
                        winograd_fused_block<decltype(r)::value>(
                            v + r0 * lda + static_cast<std::size_t>(pos) * C + c0, lda, ul + pos * pitch + o, ldu, kn,
                            m + r0 * ldc + static_cast<std::size_t>(pos) * CO + o0 + o, ldc, c0 == 0);
                    });
        }
    }
}

/// One register tile of winograd_filter_block: CIB input channels x CB output channels.
template <int CIB, int CB>
inline void winograd_filter_tile(const float* v, std::size_t lda, const float* dm, std::size_t ldd, int cout, int tiles,
                                 float* du) {
    constexpr int VW = block_width<CB>, NV = CB / VW;
    using vec = vecf<VW>;
    vec acc[CIB][NV];
    for (int c = 0; c < CIB; ++c)
        for (int n = 0; n < NV; ++n) acc[c][n] = vec{};
    for (int t = 0; t < tiles; ++t) {
        vec d[NV];
        for (int n = 0; n < NV; ++n) d[n] = loadv<VW>(dm + t * ldd + VW * n);
        const float* vt = v + t * lda;
        for (int c = 0; c < CIB; ++c)
            for (int n = 0; n < NV; ++n) acc[c][n] = fmadd<VW>(d[n], splat<VW>(vt[c]), acc[c][n]);
    }
    for (int c = 0; c < CIB; ++c)
        for (int n = 0; n < NV; ++n) {
            float* q = du + static_cast<std::size_t>(c) * cout + VW * n;
            storev<VW>(q, loadv<VW>(q) + acc[c][n]);
        }
}

/// dU (CIB x CB; rows cout apart) += V^T dM over `tiles` rows (V's rows lda apart, dM's ldd apart).
template <int CIB, int CB>
inline void winograd_filter_block(const float* v, std::size_t lda, const float* dm, std::size_t ldd, int cout,
                                  int tiles, float* du) {
    register_tiles<CIB, CB>([&](auto rs, auto cs, int r0, int c0) {
        winograd_filter_tile<decltype(rs)::value, decltype(cs)::value>(v + r0, lda, dm + c0, ldd, cout, tiles,
                                                                       du + static_cast<std::size_t>(r0) * cout + c0);
    });
}

/// dU (cin x cout) += V^T dM for one position, summed over `tiles` rows in order.
inline void winograd_filter_gemm(const float* v, std::size_t lda, int cin, const float* dm, std::size_t ldd, int cout,
                                 int tiles, float* du) {
    for (int ci = 0; ci < cin; ci += 8) {
        float* d = du + static_cast<std::size_t>(ci) * cout;
        int co = 0;
        for (; co + 32 <= cout; co += 32) winograd_filter_block<8, 32>(v + ci, lda, dm + co, ldd, cout, tiles, d + co);
        for (; co + 16 <= cout; co += 16) winograd_filter_block<8, 16>(v + ci, lda, dm + co, ldd, cout, tiles, d + co);
        if (co < cout) winograd_filter_block<8, 8>(v + ci, lda, dm + co, ldd, cout, tiles, d + co);
    }
}

/// Tiles per block of the forward pass: a block's V and M stay in cache between the three steps.
/// Small images are taken several at a time, so that the GEMM has rows enough to reuse each U.
inline constexpr int winograd_block_tiles = 32;
/// Tiles per GEMM of the filter gradient: whole images, at least this many tiles (fixed: the order of
/// the filter gradient's sum depends on it).
inline constexpr int winograd_filter_tiles = 64;

/// y = epi(conv(x, w)) for a winograd_suits geometry with F(M x M, 3x3). Work items: a block of tiles
/// of one image, or (small images) a group of whole images; each image is zero-padded into a per-thread
/// buffer first. Workspace slots from `slot0`: the transformed filter, then per thread a padded image,
/// a V block and an M block, then (fewer images than threads) the padded images, or (U made from the
/// filter) per thread winograd_gemms_from_filter's scratch. `u`: the filter already transformed
/// (winograd_prepare_filter), or null.
template <int M>
inline void winograd_conv_forward(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws,
                                  const conv_epilogue& epi, std::size_t slot0, const float* u = nullptr) {
    using tiles = winograd_tiles<M>;
    const tiles tl(g);
    const int C = g.in.c, CO = g.out_c, per = tl.per_image();
    const int ph = tl.padded_h(), pw = tl.padded_w();
    // an item: `imgs` whole images (small images) in one block, or one image in blocks of B tiles
    const int imgs = std::max(1, winograd_block_tiles / per),
              B = imgs > 1 ? imgs * per : std::min(winograd_block_tiles, per);
    const int items = (g.in.n + imgs - 1) / imgs;
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * C;
    const std::size_t out_img = static_cast<std::size_t>(g.out_h()) * g.out_w() * CO;
    const std::size_t T = static_cast<std::size_t>(max_threads());
    // A few tiles over several threads (one 7x7 image): the GEMMs make U from the filter as they go
    // instead of reading a stored one (winograd_gemms_from_filter: the same bits).
    const bool from_filter =
        imgs > 1 && items < static_cast<int>(T) && CO % 32 == 0 && std::min(imgs, g.in.n) * per <= winograd_fused_rows;
    if (!u && !from_filter) {
        float* uw = ws.get(slot0, tiles::positions * static_cast<std::size_t>(C) * CO);
        winograd_filter_transform<M>(w, C, CO, uw);
        u = uw;
    }
    for (std::size_t t = 0; t < T; ++t) {
        ws.get(slot0 + 1 + t, static_cast<std::size_t>(ph) * pw * C);
        ws.get(slot0 + 1 + T + t, B * tiles::stride(C));
        ws.get(slot0 + 1 + 2 * T + t, B * tiles::stride(CO));
    }
    auto output = [&](const float* m, int t0, int nt, int img) {
        with_vectors(CO, [&](auto vw, auto cc) {
            winograd_output_transform<M, decltype(vw)::value, decltype(cc)::value>(g, tl, m, t0, nt, y + img * out_img,
                                                                                   epi.from(img * out_img));
        });
    };
    if (imgs == 1 && g.in.n < static_cast<int>(T)) {
        // Fewer images than threads (batch 1 in a serving process): the images are padded once into a
        // shared buffer and the work items are the blocks of B tiles, so every thread gets some. The
        // blocks, and so every sum, are the ones below: the same bits.
        const int blocks = (per + B - 1) / B;
        const std::size_t padded = static_cast<std::size_t>(ph) * pw * C;
        float* xs = ws.get(slot0 + 1 + 3 * T, static_cast<std::size_t>(g.in.n) * padded);
        for (int i = 0; i < g.in.n; ++i) pad_image(g, x + i * in_img, xs + i * padded, ph, pw);
#pragma omp parallel for schedule(static)
        for (int it = 0; it < g.in.n * blocks; ++it) {
            const std::size_t th = static_cast<std::size_t>(omp_get_thread_num());
            float* v = ws.get(slot0 + 1 + T + th, 0);
            float* m = ws.get(slot0 + 1 + 2 * T + th, 0);
            const int img = it / blocks, t0 = (it % blocks) * B, nt = std::min(B, per - t0);
            input_transform<M>(xs + img * padded, pw, tl.tw, C, t0, nt, v);
            for (std::size_t pos = 0; pos < tiles::positions; ++pos)
                winograd_gemm<M>(v + pos * C, nt, C, u + pos * C * CO, CO, m + pos * CO);
            output(m, t0, nt, img);
        }
        return;
    }
    if (imgs > 1 && items < static_cast<int>(T)) {
        // Fewer groups of small images than threads (batch 1 of a 7x7 or 14x14 layer): the transforms
        // run on this thread, the per-position GEMMs (the same ones) on all of them.
        float* xp = ws.get(slot0 + 1, 0);
        float* v = ws.get(slot0 + 1 + T, 0);
        float* m = ws.get(slot0 + 1 + 2 * T, 0);
        if (from_filter)
            for (std::size_t t = 0; t < T; ++t) ws.get(slot0 + 1 + 3 * T + t, winograd_fused_floats<M>());
        for (int it = 0; it < items; ++it) {
            const int i0 = it * imgs, ni = std::min(imgs, g.in.n - i0);
            for (int k = 0; k < ni; ++k) {
                pad_image(g, x + (i0 + k) * in_img, xp, ph, pw);
                input_transform<M>(xp, pw, tl.tw, C, 0, per, v + static_cast<std::size_t>(k) * per * tiles::stride(C));
            }
            if (from_filter)
                winograd_gemms_from_filter<M>(v, ni * per, C, w, CO, m, [&](int th) {
                    return ws.get(slot0 + 1 + 3 * T + static_cast<std::size_t>(th), 0);
                });
            else
#pragma omp parallel for schedule(static)
                for (std::size_t pos = 0; pos < tiles::positions; ++pos)
                    winograd_gemm<M>(v + pos * C, ni * per, C, u + pos * C * CO, CO, m + pos * CO);
            for (int k = 0; k < ni; ++k)
                output(m + static_cast<std::size_t>(k) * per * tiles::stride(CO), 0, per, i0 + k);
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int it = 0; it < items; ++it) {
        const std::size_t th = static_cast<std::size_t>(omp_get_thread_num());
        float* xp = ws.get(slot0 + 1 + th, 0);
        float* v = ws.get(slot0 + 1 + T + th, 0);
        float* m = ws.get(slot0 + 1 + 2 * T + th, 0);
        // images [i0, i0 + ni); several: all their tiles in one block, each padded in turn; one: padded
        // once, its tiles in blocks of B
        const int i0 = it * imgs, ni = std::min(imgs, g.in.n - i0), step = imgs > 1 ? per : B;
        if (imgs == 1) pad_image(g, x + i0 * in_img, xp, ph, pw);
        for (int t0 = 0; t0 < per; t0 += step) {
            const int nt = std::min(step, per - t0);
            for (int k = 0; k < ni; ++k) {
                if (imgs > 1) pad_image(g, x + (i0 + k) * in_img, xp, ph, pw);
                input_transform<M>(xp, pw, tl.tw, C, t0, nt, v + static_cast<std::size_t>(k) * nt * tiles::stride(C));
            }
            for (std::size_t pos = 0; pos < tiles::positions; ++pos)
                winograd_gemm<M>(v + pos * C, ni * nt, C, u + pos * C * CO, CO, m + pos * CO);
            for (int k = 0; k < ni; ++k)
                output(m + static_cast<std::size_t>(k) * nt * tiles::stride(CO), t0, nt, i0 + k);
        }
    }
}

/// dw = sum over the batch of the filter gradient, overwritten. A fixed number of groups of images (a
/// function of the batch only) each sum into a dU in image order, in chunks of whole images (>=
/// winograd_filter_tiles tiles per GEMM), and transform it back to a 3x3 partial; the partials are
/// added in group order. The dU accumulator is per thread and the 16 stored partials are 9/(m+2)^2
/// of its size: keeping the groups' dU instead cost 16 x 36 x cin x cout floats per F(4x4) layer,
/// which dominated the wide networks' peak memory (docs/design.md, "Measurements").
template <int M>
inline void winograd_conv_backward_filter(const conv_geometry& g, const float* x, const float* dy, float* dw,
                                          workspace& ws) {
    using tiles = winograd_tiles<M>;
    const tiles tl(g);
    const int C = g.in.c, CO = g.out_c, per = tl.per_image();
    const int ph = tl.padded_h(), pw = tl.padded_w();
    const int chunk = std::max(1, winograd_filter_tiles / per);  // images per GEMM
    const std::size_t chunk_tiles = static_cast<std::size_t>(chunk) * per;
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * C;
    const std::size_t out_img = static_cast<std::size_t>(g.out_h()) * g.out_w() * CO;
    const std::size_t usize = tiles::positions * static_cast<std::size_t>(C) * CO,
                      wsize = 9 * static_cast<std::size_t>(C) * CO;
    const int groups = std::min(g.in.n, 16);
    const std::size_t G = static_cast<std::size_t>(groups), T = static_cast<std::size_t>(max_threads());
    // slots [0, G): the groups' partial dw; then per thread a padded image, V and dM of a chunk, dU.
    ws.reserve(G, wsize);
    for (std::size_t t = 0; t < T; ++t) {
        ws.get(G + t, static_cast<std::size_t>(ph) * pw * C);
        ws.get(G + T + t, chunk_tiles * tiles::stride(C));
        ws.get(G + 2 * T + t, chunk_tiles * tiles::stride(CO));
        ws.get(G + 3 * T + t, usize);
    }
    const std::size_t lda = tiles::stride(C), ldd = tiles::stride(CO);
#pragma omp parallel for schedule(static)
    for (int gi = 0; gi < groups; ++gi) {
        const std::size_t th = static_cast<std::size_t>(omp_get_thread_num());
        float* part = ws.get(G + 3 * T + th, 0);  // this group's dU
        float* xp = ws.get(G + th, 0);
        float* v = ws.get(G + T + th, 0);
        float* dm = ws.get(G + 2 * T + th, 0);
        std::memset(part, 0, sizeof(float) * usize);
        const int i0 = static_cast<int>(static_cast<long>(g.in.n) * gi / groups);
        const int i1 = static_cast<int>(static_cast<long>(g.in.n) * (gi + 1) / groups);
        for (int c0 = i0; c0 < i1; c0 += chunk) {
            const int imgs = std::min(chunk, i1 - c0), nt = imgs * per;
            for (int k = 0; k < imgs; ++k) {  // image c0 + k: tiles [k * per, (k + 1) * per) of the chunk
                const std::size_t row0 = static_cast<std::size_t>(k) * per;
                pad_image(g, x + (c0 + k) * in_img, xp, ph, pw);
                input_transform<M>(xp, pw, tl.tw, C, 0, per, v + row0 * lda);
                with_vectors(CO, [&](auto vw, auto cc) {
                    winograd_grad_transform<M, decltype(vw)::value, decltype(cc)::value>(g, tl, dy + (c0 + k) * out_img,
                                                                                         dm + row0 * ldd);
                });
            }
            for (std::size_t pos = 0; pos < tiles::positions; ++pos)
                winograd_filter_gemm(v + pos * C, lda, C, dm + pos * CO, ldd, CO, nt, part + pos * C * CO);
        }
        winograd_filter_transform_adjoint<M>(part, C, CO, ws.get(static_cast<std::size_t>(gi), 0));
    }
    std::memcpy(dw, ws.get(0, 0), sizeof(float) * wsize);
    for (int gi = 1; gi < groups; ++gi) {
        const float* part = ws.get(static_cast<std::size_t>(gi), 0);
        for (std::size_t i = 0; i < wsize; ++i) dw[i] += part[i];
    }
}

/// The output tile size for a geometry (a function of the shape only): F(4x4, 3x3) where its tiles
/// need fewer multiplies than F(2x2, 3x3)'s, counting the outputs past the image that a partial tile
/// computes (7x7: 4 tiles x 36 vs 16 x 16; 5x5 or 1x1: F(2x2, 3x3), the smaller rounding error).
/// Both beat the direct kernel on the main job's 3x3 layers, F(4x4) by more (docs/design.md,
/// "Measurements").
inline int winograd_tile(const conv_geometry& g) noexcept {
    const long f4 = long{winograd_tiles<4>(g).per_image()} * winograd_tiles<4>::positions;
    const long f2 = long{winograd_tiles<2>(g).per_image()} * winograd_tiles<2>::positions;
    return f4 < f2 ? 4 : 2;
}

inline void winograd_forward(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws,
                             const conv_epilogue& epi, std::size_t slot0, const float* u = nullptr) {
    if (winograd_tile(g) == 4)
        winograd_conv_forward<4>(g, x, w, y, ws, epi, slot0, u);
    else
        winograd_conv_forward<2>(g, x, w, y, ws, epi, slot0, u);
}
/// The transformed filter winograd_forward(g, ...) reads for the weights w (positions x cin x cout floats).
inline void winograd_prepare_filter(const conv_geometry& g, const float* w, float* u) {
    if (winograd_tile(g) == 4)
        winograd_filter_transform<4>(w, g.in.c, g.out_c, u);
    else
        winograd_filter_transform<2>(w, g.in.c, g.out_c, u);
}
inline std::size_t winograd_filter_size(const conv_geometry& g) {
    const std::size_t positions = winograd_tile(g) == 4 ? winograd_tiles<4>::positions : winograd_tiles<2>::positions;
    return positions * static_cast<std::size_t>(g.in.c) * g.out_c;
}
inline void winograd_backward_filter(const conv_geometry& g, const float* x, const float* dy, float* dw,
                                     workspace& ws) {
    if (winograd_tile(g) == 4)
        winograd_conv_backward_filter<4>(g, x, dy, dw, ws);
    else
        winograd_conv_backward_filter<2>(g, x, dy, dw, ws);
}

}  // namespace detail
}  // namespace tricks::backend::host
