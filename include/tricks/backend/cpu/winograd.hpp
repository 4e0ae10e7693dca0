#pragma once
// Winograd F(2x2, 3x3) convolution (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", CVPR 2016) for 3x3 stride-1 layers, NHWC, all three passes of training.
//
// A 2x2 block of outputs is Y = A^T [ (G g G^T) . (B^T d B) ] A, summed over input channels, where d
// is the 4x4 input patch under the block, g the 3x3 filter and "." the element-wise product:
// 16 multiplies per 2x2 outputs and channel pair instead of 36 (2.25x fewer). Per input patch
// ("tile") and position (i, j) of the 4x4 product, the sum over input channels is a small GEMM:
//   forward:         M[pos](tiles x cout)  = V[pos](tiles x cin) * U[pos](cin x cout)
//   backward-filter: dU[pos](cin x cout) += V[pos]^T * dM[pos], dM = A dY A^T, dg = G^T dU G
//   backward-data:   the forward of the flipped, transposed filter (as in conv.hpp).
// The transforms only add and halve (B, A: 0/+-1; G: 0/+-1/2): the result is the same
// mathematical convolution, rounded differently from the direct kernel (relative error ~1e-6 in
// FP32, checked against a float64 loop in the tests). Every sum has a fixed order that depends on
// the shapes only: the same bits on 1 thread or 16.
#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "tricks/backend/conv_algo.hpp"
#include "tricks/backend/cpu/conv_common.hpp"
#include "tricks/backend/cpu/workspace.hpp"

namespace tricks::backend {

namespace detail {

/// 3x3, stride 1, padding 0-2, channels in blocks of 8 (the channel vectors of the transforms).
inline bool winograd_suits(const conv_geometry& g) noexcept {
    return g.kh == 3 && g.kw == 3 && g.stride == 1 && g.pad <= 2 && g.in.c % 8 == 0 && g.out_c % 8 == 0;
}

/// Tiles of 2x2 outputs: th x tw per image, numbered over the batch as (image, ty, tx) row-major.
struct winograd_tiles {
    int th, tw;
    explicit winograd_tiles(const conv_geometry& g) : th((g.out_h() + 1) / 2), tw((g.out_w() + 1) / 2) {}
    [[nodiscard]] int per_image() const noexcept { return th * tw; }
};

/// Floats from one tile's 16 x c transformed values to the next: one cache line more than 16 c, so
/// that the GEMMs' rows (one per tile) do not all fall into the same L1 set (16 c floats is 4 KiB at
/// c = 64: seven rows 4 KiB apart measured 1.2x slower).
constexpr std::size_t tile_stride(int c) noexcept { return 16 * static_cast<std::size_t>(c) + 16; }

/// Calls f(std::integral_constant<int, n>{}) for the channel counts the kernels are compiled for
/// (then every offset is a constant: the transforms otherwise spill their 32 addresses), f(0) otherwise.
template <class F>
inline void with_channels(int n, F&& f) {
    switch (n) {
        case 8: f(std::integral_constant<int, 8>{}); break;
        case 16: f(std::integral_constant<int, 16>{}); break;
        case 32: f(std::integral_constant<int, 32>{}); break;
        case 64: f(std::integral_constant<int, 64>{}); break;
        default: f(std::integral_constant<int, 0>{}); break;
    }
}

/// U[pos][ci][co] = (G g G^T)[pos] for the HWIO filter w[ky][kx][ci][co].
inline void winograd_filter_transform(const float* w, int cin, int cout, float* u) {
    const std::size_t cc = static_cast<std::size_t>(cin) * cout;
    for (std::size_t e = 0; e < cc; ++e) {
        float g[3][3], t[4][3];
        for (int y = 0; y < 3; ++y)
            for (int x = 0; x < 3; ++x) g[y][x] = w[(static_cast<std::size_t>(y) * 3 + x) * cc + e];
        for (int x = 0; x < 3; ++x) {  // t = G g
            t[0][x] = g[0][x];
            t[1][x] = 0.5f * (g[0][x] + g[1][x] + g[2][x]);
            t[2][x] = 0.5f * (g[0][x] - g[1][x] + g[2][x]);
            t[3][x] = g[2][x];
        }
        for (int i = 0; i < 4; ++i) {  // U = t G^T
            float* ui = u + static_cast<std::size_t>(i) * 4 * cc + e;
            ui[0] = t[i][0];
            ui[cc] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
            ui[2 * cc] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
            ui[3 * cc] = t[i][2];
        }
    }
}

/// dw[ky][kx][ci][co] = (G^T dU G)[ky][kx] for dU[pos][ci][co]: the adjoint of the filter transform.
inline void winograd_filter_transform_adjoint(const float* du, int cin, int cout, float* dw) {
    const std::size_t cc = static_cast<std::size_t>(cin) * cout;
    for (std::size_t e = 0; e < cc; ++e) {
        float d[4][4], t[3][4];
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) d[i][j] = du[(static_cast<std::size_t>(i) * 4 + j) * cc + e];
        for (int j = 0; j < 4; ++j) {  // t = G^T dU
            t[0][j] = d[0][j] + 0.5f * (d[1][j] + d[2][j]);
            t[1][j] = 0.5f * (d[1][j] - d[2][j]);
            t[2][j] = 0.5f * (d[1][j] + d[2][j]) + d[3][j];
        }
        for (int y = 0; y < 3; ++y) {  // dw = t G
            float* o = dw + static_cast<std::size_t>(y) * 3 * cc + e;
            o[0] = t[y][0] + 0.5f * (t[y][1] + t[y][2]);
            o[cc] = 0.5f * (t[y][1] - t[y][2]);
            o[2 * cc] = 0.5f * (t[y][1] + t[y][2]) + t[y][3];
        }
    }
}

/// V[t][pos][c] = (B^T d B)[pos] for the tiles [t0, t0 + count) of one zero-padded image (padded by
/// pad_image to 2 th + 2 rows of pw = 2 tw + 2 pixels; tile t = ty * tw + tx reads rows 2 ty ... 2 ty + 3).
/// The image is copied first (a sequential read the prefetcher keeps up with; reading the 4x4 patches
/// straight from the batch measured 1.3x slower once the batch no longer fits in the caches).
template <int VW, int CC>
inline void winograd_input_transform(const float* xp, int pw, int tw, int c_rt, int t0, int count, float* v) {
    using vec = vecf<VW>;
    const int C = CC > 0 ? CC : c_rt;
    const std::size_t row_stride = static_cast<std::size_t>(pw) * C;
    for (int k = 0; k < count; ++k) {
        const int t = t0 + k, ty = t / tw, tx = t % tw;
        const float* src = xp + static_cast<std::size_t>(2 * ty) * row_stride + static_cast<std::size_t>(2 * tx) * C;
        float* vt = v + k * tile_stride(C);
        for (int c = 0; c < C; c += VW) {
            vec d[4][4], u[4][4];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) d[i][j] = loadv<VW>(src + i * row_stride + static_cast<std::size_t>(j) * C + c);
            for (int j = 0; j < 4; ++j) {  // u = B^T d
                u[0][j] = d[0][j] - d[2][j];
                u[1][j] = d[1][j] + d[2][j];
                u[2][j] = d[2][j] - d[1][j];
                u[3][j] = d[1][j] - d[3][j];
            }
            for (int i = 0; i < 4; ++i) {  // V = u B
                float* o = vt + static_cast<std::size_t>(4 * i) * C + c;
                storev<VW>(o, u[i][0] - u[i][2]);
                storev<VW>(o + C, u[i][1] + u[i][2]);
                storev<VW>(o + 2 * C, u[i][2] - u[i][1]);
                storev<VW>(o + 3 * C, u[i][1] - u[i][3]);
            }
        }
    }
}

/// winograd_input_transform for C channels (vectors of 16 channels where they divide C, else 8).
inline void input_transform(const float* xp, int pw, int tw, int C, int t0, int count, float* v) {
    with_channels(C, [&](auto cc) {
        constexpr int CC = decltype(cc)::value;
        if (C % 16 == 0) winograd_input_transform<16, CC>(xp, pw, tw, C, t0, count, v);
        else winograd_input_transform<8, CC>(xp, pw, tw, C, t0, count, v);
    });
}

/// y = epi(A^T M A) for the tiles [t0, t0 + count) of one image, M[t][pos][co]; outputs past the
/// image (odd sizes) are dropped.
template <int VW, int CC>
inline void winograd_output_transform(const conv_geometry& g, const winograd_tiles& tl, const float* m, int t0, int count,
                                      float* yi, const conv_epilogue& epi) {
    using vec = vecf<VW>;
    const int CO = CC > 0 ? CC : g.out_c, oh = g.out_h(), ow = g.out_w();
    for (int k = 0; k < count; ++k) {
        const int t = t0 + k, oy = 2 * (t / tl.tw), ox = 2 * (t % tl.tw);
        const float* mt = m + k * tile_stride(CO);
        for (int c = 0; c < CO; c += VW) {
            const vector_epilogue<VW> e(epi, c);
            vec s[2][4];
            for (int j = 0; j < 4; ++j) {  // s = A^T M
                const vec m0 = loadv<VW>(mt + static_cast<std::size_t>(j) * CO + c);
                const vec m1 = loadv<VW>(mt + static_cast<std::size_t>(4 + j) * CO + c);
                const vec m2 = loadv<VW>(mt + static_cast<std::size_t>(8 + j) * CO + c);
                const vec m3 = loadv<VW>(mt + static_cast<std::size_t>(12 + j) * CO + c);
                s[0][j] = m0 + m1 + m2;
                s[1][j] = m1 - m2 - m3;
            }
            for (int i = 0; i < 2 && oy + i < oh; ++i) {  // Y = s A
                float* o = yi + (static_cast<std::size_t>(oy + i) * ow + ox) * CO + c;
                storev<VW>(o, e(s[i][0] + s[i][1] + s[i][2]));
                if (ox + 1 < ow) storev<VW>(o + CO, e(s[i][1] - s[i][2] - s[i][3]));
            }
        }
    }
}

/// dM[t][pos][co] = (A dY A^T)[pos] for all tiles of one image (outputs past the image count as 0).
template <int VW, int CC>
inline void winograd_grad_transform(const conv_geometry& g, const winograd_tiles& tl, const float* di, float* dm) {
    using vec = vecf<VW>;
    const int CO = CC > 0 ? CC : g.out_c, oh = g.out_h(), ow = g.out_w();
    for (int k = 0; k < tl.per_image(); ++k) {
        const int oy = 2 * (k / tl.tw), ox = 2 * (k % tl.tw);
        float* dst = dm + k * tile_stride(CO);
        for (int c = 0; c < CO; c += VW) {
            vec d[2][2];
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j)
                    d[i][j] = oy + i < oh && ox + j < ow ? loadv<VW>(di + (static_cast<std::size_t>(oy + i) * ow + ox + j) * CO + c)
                                                         : vec{};
            const vec t[4][2] = {{d[0][0], d[0][1]},  // t = A dY
                                 {d[0][0] + d[1][0], d[0][1] + d[1][1]},
                                 {d[0][0] - d[1][0], d[0][1] - d[1][1]},
                                 {-d[1][0], -d[1][1]}};
            for (int i = 0; i < 4; ++i) {  // dM = t A^T
                float* o = dst + static_cast<std::size_t>(4 * i) * CO + c;
                storev<VW>(o, t[i][0]);
                storev<VW>(o + CO, t[i][0] + t[i][1]);
                storev<VW>(o + 2 * CO, t[i][0] - t[i][1]);
                storev<VW>(o + 3 * CO, -t[i][1]);
            }
        }
    }
}

/// M (R rows x CB channels) = V (R rows of K, tile_stride(K) apart) * U (K x cout): the forward GEMM's register
/// block. KC > 0 fixes K at compile time (then the R row offsets are constants, not R registers).
template <int R, int CB, int KC>
inline void winograd_gemm_block(const float* v, int k_rt, const float* u, int cout, float* m, std::size_t ldm) {
    constexpr int VW = CB >= 16 ? 16 : 8, NV = CB / VW;
    using vec = vecf<VW>;
    const int K = KC > 0 ? KC : k_rt;
    const std::size_t lda = tile_stride(K);
    vec acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) acc[r][n] = vec{};
    for (int k = 0; k < K; ++k) {
        vec uv[NV];
        for (int n = 0; n < NV; ++n) uv[n] = loadv<VW>(u + static_cast<std::size_t>(k) * cout + VW * n);
        for (int r = 0; r < R; ++r) {
            const float xv = v[r * lda + k];
            for (int n = 0; n < NV; ++n) acc[r][n] += uv[n] * xv;
        }
    }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) storev<VW>(m + r * ldm + VW * n, acc[r][n]);
}

template <int KC>
inline void winograd_gemm_fixed(const float* v, int rows, int K, const float* u, int cout, float* m) {
    const std::size_t lda = tile_stride(K), ldm = tile_stride(cout);
    int co = 0;
    for (; co + 32 <= cout; co += 32)
        in_blocks<7>(rows, [&](auto r, int r0) {
            winograd_gemm_block<decltype(r)::value, 32, KC>(v + r0 * lda, K, u + co, cout, m + r0 * ldm + co, ldm);
        });
    for (; co + 16 <= cout; co += 16)
        in_blocks<12>(rows, [&](auto r, int r0) {
            winograd_gemm_block<decltype(r)::value, 16, KC>(v + r0 * lda, K, u + co, cout, m + r0 * ldm + co, ldm);
        });
    if (co < cout)
        in_blocks<12>(rows, [&](auto r, int r0) {
            winograd_gemm_block<decltype(r)::value, 8, KC>(v + r0 * lda, K, u + co, cout, m + r0 * ldm + co, ldm);
        });
}

/// M[t][pos] = V[t][pos] * U[pos] for one position: V's rows tile_stride(K) apart, M's tile_stride(cout).
inline void winograd_gemm(const float* v, int rows, int K, const float* u, int cout, float* m) {
    with_channels(K, [&](auto kc) { winograd_gemm_fixed<decltype(kc)::value>(v, rows, K, u, cout, m); });
}

/// dU (CIB x CB; rows cout apart) += V^T dM over `tiles` rows (V's rows lda apart, dM's ldd apart).
template <int CIB, int CB>
inline void winograd_filter_block(const float* v, std::size_t lda, const float* dm, std::size_t ldd, int cout, int tiles,
                                  float* du) {
    constexpr int VW = CB >= 16 ? 16 : 8, NV = CB / VW;
    using vec = vecf<VW>;
    vec acc[CIB][NV];
    for (int c = 0; c < CIB; ++c)
        for (int n = 0; n < NV; ++n) acc[c][n] = vec{};
    for (int t = 0; t < tiles; ++t) {
        vec d[NV];
        for (int n = 0; n < NV; ++n) d[n] = loadv<VW>(dm + t * ldd + VW * n);
        const float* vt = v + t * lda;
        for (int c = 0; c < CIB; ++c)
            for (int n = 0; n < NV; ++n) acc[c][n] += d[n] * vt[c];
    }
    for (int c = 0; c < CIB; ++c)
        for (int n = 0; n < NV; ++n) {
            float* q = du + static_cast<std::size_t>(c) * cout + VW * n;
            storev<VW>(q, loadv<VW>(q) + acc[c][n]);
        }
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

/// Tiles per block of the forward pass (a block's V and M stay in cache between the three steps).
inline constexpr int winograd_block_tiles = 32;
/// Tiles per GEMM of the filter gradient: whole images, at least this many tiles (fixed: the order of
/// the filter gradient's sum depends on it).
inline constexpr int winograd_filter_tiles = 64;

/// y = epi(conv(x, w)) for a winograd_suits geometry. Images are split over the threads; each is
/// zero-padded into a per-thread buffer and done in blocks of tiles. Workspace slots from `slot0`: the
/// transformed filter, then per thread a padded image, a V block and an M block.
inline void winograd_conv_forward(const conv_geometry& g, const float* x, const float* w, float* y, workspace& ws,
                                  const conv_epilogue& epi, std::size_t slot0) {
    const winograd_tiles tl(g);
    const int C = g.in.c, CO = g.out_c, B = std::min(winograd_block_tiles, tl.per_image());
    const int ph = 2 * tl.th + 2, pw = 2 * tl.tw + 2;
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * C;
    const std::size_t out_img = static_cast<std::size_t>(g.out_h()) * g.out_w() * CO;
    const std::size_t T = static_cast<std::size_t>(max_threads());
    float* u = ws.get(slot0, 16 * static_cast<std::size_t>(C) * CO);
    for (std::size_t t = 0; t < T; ++t) {
        ws.get(slot0 + 1 + t, static_cast<std::size_t>(ph) * pw * C);
        ws.get(slot0 + 1 + T + t, B * tile_stride(C));
        ws.get(slot0 + 1 + 2 * T + t, B * tile_stride(CO));
    }
    winograd_filter_transform(w, C, CO, u);
#pragma omp parallel for schedule(static)
    for (int img = 0; img < g.in.n; ++img) {
        const std::size_t th = static_cast<std::size_t>(omp_get_thread_num());
        float* xp = ws.get(slot0 + 1 + th, 0);
        float* v = ws.get(slot0 + 1 + T + th, 0);
        float* m = ws.get(slot0 + 1 + 2 * T + th, 0);
        pad_image(g, x + img * in_img, xp, ph, pw);
        for (int t0 = 0; t0 < tl.per_image(); t0 += B) {
            const int nt = std::min(B, tl.per_image() - t0);
            input_transform(xp, pw, tl.tw, C, t0, nt, v);
            for (int pos = 0; pos < 16; ++pos)
                winograd_gemm(v + pos * C, nt, C, u + static_cast<std::size_t>(pos) * C * CO, CO, m + pos * CO);
            with_channels(CO, [&](auto cc) {
                constexpr int CC = decltype(cc)::value;
                if (CO % 16 == 0) winograd_output_transform<16, CC>(g, tl, m, t0, nt, y + img * out_img, epi);
                else winograd_output_transform<8, CC>(g, tl, m, t0, nt, y + img * out_img, epi);
            });
        }
    }
}

/// dw = sum over the batch of the filter gradient, overwritten. A fixed number of groups of images (a
/// function of the batch only) each sum into their own dU in image order, in chunks of whole images
/// (>= winograd_filter_tiles tiles per GEMM); the groups' dU are added in group order and transformed
/// back once.
inline void winograd_conv_backward_filter(const conv_geometry& g, const float* x, const float* dy, float* dw,
                                          workspace& ws) {
    const winograd_tiles tl(g);
    const int C = g.in.c, CO = g.out_c;
    const int ph = 2 * tl.th + 2, pw = 2 * tl.tw + 2;
    const int chunk = std::max(1, winograd_filter_tiles / tl.per_image());  // images per GEMM
    const std::size_t chunk_tiles = static_cast<std::size_t>(chunk) * tl.per_image();
    const std::size_t in_img = static_cast<std::size_t>(g.in.h) * g.in.w * C;
    const std::size_t out_img = static_cast<std::size_t>(g.out_h()) * g.out_w() * CO;
    const std::size_t usize = 16 * static_cast<std::size_t>(C) * CO;
    const int groups = std::min(g.in.n, 16);
    const std::size_t G = static_cast<std::size_t>(groups), T = static_cast<std::size_t>(max_threads());
    // slots [0, G): partial dU; then per thread a padded image, V and dM of a chunk.
    ws.reserve(G, usize);
    for (std::size_t t = 0; t < T; ++t) {
        ws.get(G + t, static_cast<std::size_t>(ph) * pw * C);
        ws.get(G + T + t, chunk_tiles * tile_stride(C));
        ws.get(G + 2 * T + t, chunk_tiles * tile_stride(CO));
    }
    const std::size_t lda = tile_stride(C), ldd = tile_stride(CO);
#pragma omp parallel for schedule(static)
    for (int gi = 0; gi < groups; ++gi) {
        const std::size_t th = static_cast<std::size_t>(omp_get_thread_num());
        float* part = ws.get(static_cast<std::size_t>(gi), 0);
        float* xp = ws.get(G + th, 0);
        float* v = ws.get(G + T + th, 0);
        float* dm = ws.get(G + 2 * T + th, 0);
        std::memset(part, 0, sizeof(float) * usize);
        const int i0 = static_cast<int>(static_cast<long>(g.in.n) * gi / groups);
        const int i1 = static_cast<int>(static_cast<long>(g.in.n) * (gi + 1) / groups);
        for (int c0 = i0; c0 < i1; c0 += chunk) {
            const int imgs = std::min(chunk, i1 - c0), nt = imgs * tl.per_image();
            for (int k = 0; k < imgs; ++k) {  // image c0 + k: tiles [k * per_image, (k + 1) * per_image) of the chunk
                const std::size_t row0 = static_cast<std::size_t>(k) * tl.per_image();
                pad_image(g, x + (c0 + k) * in_img, xp, ph, pw);
                input_transform(xp, pw, tl.tw, C, 0, tl.per_image(), v + row0 * lda);
                with_channels(CO, [&](auto cc) {
                    constexpr int CC = decltype(cc)::value;
                    const float* di = dy + (c0 + k) * out_img;
                    if (CO % 16 == 0) winograd_grad_transform<16, CC>(g, tl, di, dm + row0 * ldd);
                    else winograd_grad_transform<8, CC>(g, tl, di, dm + row0 * ldd);
                });
            }
            for (int pos = 0; pos < 16; ++pos)
                winograd_filter_gemm(v + pos * C, lda, C, dm + pos * CO, ldd, CO, nt, part + static_cast<std::size_t>(pos) * C * CO);
        }
    }
    float* du = ws.get(0, 0);
    for (int gi = 1; gi < groups; ++gi) {
        const float* part = ws.get(static_cast<std::size_t>(gi), 0);
        for (std::size_t i = 0; i < usize; ++i) du[i] += part[i];
    }
    winograd_filter_transform_adjoint(du, C, CO, dw);
}

}  // namespace detail
}  // namespace tricks::backend
