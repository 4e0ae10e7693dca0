#pragma once
// What the CPU convolution kernels share: the geometry of a convolution, N-float vectors (GCC/Clang
// vector extension) with unaligned loads and stores, the folded epilogue on a vector, fixed-size
// blocking with compile-time remainders, and the zero-padded copy of one NHWC image.
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#include "tricks/backend/cpu/epilogue.hpp"
#include "tricks/backend/geometry.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/shape.hpp"

namespace tricks::backend::host {

namespace detail {

/// N floats as one value (GCC/Clang vector extension): with N = 16 one AVX-512 register, or two AVX
/// registers where the build has no AVX-512; with N = 8 one AVX register.
template <int N>
struct vec_of;
template <>
struct vec_of<8> {
    using type = float __attribute__((vector_size(32)));
};
template <>
struct vec_of<16> {
    using type = float __attribute__((vector_size(64)));
};
// (Not `template <int N> using vecf = float __attribute__((vector_size(N * 4)))`: GCC drops a
// dependent vector_size in an alias template and silently yields a plain float.)
template <int N>
using vecf = typename vec_of<N>::type;
static_assert(sizeof(vecf<16>) == 64 && sizeof(vecf<8>) == 32);
template <int N>
inline vecf<N> loadv(const float* p) noexcept {
    vecf<N> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
template <int N>
inline void storev(float* p, vecf<N> v) noexcept {
    std::memcpy(p, &v, sizeof v);
}

/// N copies of a (one broadcast; `vecf<N>{} + a` would add the zeros, since 0 + a is not a for a = -0).
template <int N>
inline vecf<N> splat(float a) noexcept {
    return [a]<std::size_t... I>(std::index_sequence<I...>) { return vecf<N>{((void)I, a)...}; }
    (std::make_index_sequence<N>{});
}

/// c + a * b rounded once where the machine has FMA. Spelled out because GCC's contraction of
/// `c += a * b` into an FMA varies between instantiations of one kernel (a 1-row and a 12-row GEMM
/// block gave different bits), and a row's result must not depend on the block it falls in.
template <int N>
inline vecf<N> fmadd(vecf<N> a, vecf<N> b, vecf<N> c) noexcept {
    static_assert(N == 8 || N == 16, "tricks: fmadd on 8 or 16 floats");
#if defined(__FMA__) && (defined(__x86_64__) || defined(__i386__))
    // Through memcpy, not casts: nvcc's front end (which sees this header in CUDA translation units)
    // rejects casts between vector types; GCC compiles the copies away.
    if constexpr (N == 8) {
        __m256 x, y, z;
        std::memcpy(&x, &a, 32), std::memcpy(&y, &b, 32), std::memcpy(&z, &c, 32);
        z = _mm256_fmadd_ps(x, y, z);
        std::memcpy(&c, &z, 32);
        return c;
    } else {
#if defined(__AVX512F__)
        __m512 x, y, z;
        std::memcpy(&x, &a, 64), std::memcpy(&y, &b, 64), std::memcpy(&z, &c, 64);
        z = _mm512_fmadd_ps(x, y, z);
        std::memcpy(&c, &z, 64);
        return c;
#else
        __m256 x[2], y[2], z[2];
        std::memcpy(x, &a, 64), std::memcpy(y, &b, 64), std::memcpy(z, &c, 64);
        z[0] = _mm256_fmadd_ps(x[0], y[0], z[0]), z[1] = _mm256_fmadd_ps(x[1], y[1], z[1]);
        std::memcpy(&c, z, 64);
        return c;
#endif
    }
#elif defined(__aarch64__)
    for (int i = 0; i < N; ++i)
        c[i] = __builtin_fmaf(a[i], b[i], c[i]);  // FMA always there: never contracted by chance
    return c;
#else
    return c + a * b;  // no FMA instruction: nothing to contract
#endif
}

/// A conv_epilogue on VW-channel vectors from channel c0: t * a + b, + the residual, then max(t, 0)
/// (the same expressions, and so the same values, as apply_epilogue and the layers it replaces).
template <int VW>
struct vector_epilogue {
    using vec = vecf<VW>;
    vec a{}, b{};
    bool affine = false, relu = false;
    const float* residual = nullptr;
    vector_epilogue(const conv_epilogue& e, int c0) : affine(e.scale != nullptr), relu(e.relu), residual(e.residual) {
        if (affine) a = loadv<VW>(e.scale + c0), b = loadv<VW>(e.shift + c0);
    }
    /// `at`: the vector's offset in the output the epilogue's residual is laid out like.
    [[nodiscard]] vec operator()(vec t, std::size_t at) const noexcept {
        if (affine) t = t * a + b;
        if (residual) t = t + loadv<VW>(residual + at);
        if (relu) t = t > vec{} ? t : vec{};
        return t;
    }
};

/// Whether one vector register holds 16 floats (AVX-512: 32 such registers). The register blocks
/// below are shaped for it: 12 rows x 32 columns is 24 accumulators. Without it (AVX2: 16 registers
/// of 8 floats; NEON: 32 of 4) the same block needs 48 AVX registers and spills on every step
/// (ResNet-50's 1x1 layers ran at ~5 GFLOP/s a core on an AVX2 machine), so register_tiles cuts it.
#if defined(__AVX512F__)
inline constexpr bool wide_registers = true;
#else
inline constexpr bool wide_registers = false;
#endif

/// The vector width (floats) of a register block CB columns wide: 16 where a register holds 16 and
/// CB >= 16, else 8.
template <int CB>
inline constexpr int block_width = CB >= 16 && wide_registers ? 16 : 8;

/// register_tiles' column of tiles C (columns C * CS ...): tiles of RS rows, the last one shorter. (Rows
/// shared evenly instead, 8 as 4 + 4, measured slower: docs/design.md, "Measurements".)
template <int R, int RS, int CS, int C, class F, int... Q>
inline void register_tile_column(F& f, std::integer_sequence<int, Q...>) {
    (f(std::integral_constant<int, (RS < R - Q * RS ? RS : R - Q * RS)>{}, std::integral_constant<int, CS>{}, Q * RS,
       C * CS),
     ...);
}
template <int R, int RS, int CS, class F, int... C>
inline void register_tile_columns(F& f, std::integer_sequence<int, C...>) {
    (register_tile_column<R, RS, CS, C>(f, std::make_integer_sequence<int, (R + RS - 1) / RS>{}), ...);
}

/// Calls f(std::integral_constant<int, RS>{}, std::integral_constant<int, CS>{}, r0, c0) for the tiles
/// of an R x CB register block that fit the machine's registers, one after the other: the whole
/// block where wide_registers, else tiles of at most 6 rows x 16 columns (12 AVX accumulators, 2 for
/// B and a broadcast) or 12 rows x 8 columns, column tile by column tile.
/// Every output is still one accumulator summed over k in order from the same start, so the tiling
/// changes no bit.
template <int R, int CB, class F>
inline void register_tiles(F&& f) {
    if constexpr (wide_registers) {
        f(std::integral_constant<int, R>{}, std::integral_constant<int, CB>{}, 0, 0);
    } else {
        static_assert(CB == 8 || CB % 16 == 0, "tricks: register blocks of 8 or a multiple of 16 columns");
        constexpr int CS = CB < 16 ? CB : 16, RS = CS == 16 ? 6 : 12;
        register_tile_columns<R, RS, CS>(f, std::make_integer_sequence<int, CB / CS>{});
    }
}

/// Calls f(std::integral_constant<int, B>{}, i) for i = 0, B, 2B, ... while a whole block fits, then
/// once with the remainder as a compile-time block size: register-blocked kernels with fixed trip counts.
template <int B, class F>
inline void in_blocks(int n, F&& f) {
    int i = 0;
    for (; i + B <= n; i += B) f(std::integral_constant<int, B>{}, i);
    [&]<int... R>(std::integer_sequence<int, R...>) {
        ((n - i == R + 1 ? (f(std::integral_constant<int, R + 1>{}, i), 0) : 0), ...);
    }
    (std::make_integer_sequence<int, B - 1>{});
}

/// Calls f(std::integral_constant<int, n>{}) for the channel counts the kernels are compiled for
/// (then every offset is a constant: the transforms otherwise spill their addresses), f(0) otherwise.
template <class F>
inline void with_channels(int n, F&& f) {
    switch (n) {
        case 8:
            f(std::integral_constant<int, 8>{});
            break;
        case 16:
            f(std::integral_constant<int, 16>{});
            break;
        case 32:
            f(std::integral_constant<int, 32>{});
            break;
        case 64:
            f(std::integral_constant<int, 64>{});
            break;
        default:
            f(std::integral_constant<int, 0>{});
            break;
    }
}

/// apply_epilogue on one value v (in place): column o's scale and shift, the residual at offset `at`.
inline void apply_one_epilogue(float* v, const conv_epilogue& epi, std::size_t at, int o) {
    conv_epilogue one = epi.from(at);
    if (one.scale) one.scale += o, one.shift += o;
    apply_epilogue(v, v, 1, 1, one);
}

/// Rows of a dense row-major matrix: K floats apart (gemm_rows' Rows for plain matrices).
struct dense_rows {
    static constexpr std::size_t stride(int k) noexcept { return static_cast<std::size_t>(k); }
};

/// One register tile of gemm_block (gemm_block's arguments for the tile's rows and columns).
template <class Rows, int R, int CB, int KC, bool E>
inline void gemm_tile(const float* a, int k_rt, const float* b, int ldb, float* c, std::size_t ldc,
                      const conv_epilogue* epi = nullptr, std::size_t at = 0, int co = 0) {
    constexpr int VW = block_width<CB>, NV = CB / VW;
    using vec = vecf<VW>;
    const int K = KC > 0 ? KC : k_rt;
    const std::size_t lda = Rows::stride(K);
    vec acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) acc[r][n] = vec{};
    const float* res = E ? epi->residual : nullptr;
    for (int k = 0; k < K; ++k) {
        if (E && k < R) {  // the lines the store and the epilogue touch (as packed_block)
            for (int q = 0; q < CB; q += 16) __builtin_prefetch(c + k * ldc + q, 1, 3);
            if (res)
                for (int q = 0; q < CB; q += 16) __builtin_prefetch(res + at + k * ldc + q, 0, 3);
        }
        vec bv[NV];
        for (int n = 0; n < NV; ++n) bv[n] = loadv<VW>(b + static_cast<std::size_t>(k) * ldb + VW * n);
        for (int r = 0; r < R; ++r) {
            const float av = a[r * lda + k];
            for (int n = 0; n < NV; ++n) acc[r][n] = fmadd<VW>(bv[n], splat<VW>(av), acc[r][n]);
        }
    }
    if constexpr (E)
        for (int n = 0; n < NV; ++n) {
            const vector_epilogue<VW> e(*epi, co + VW * n);
            for (int r = 0; r < R; ++r) acc[r][n] = e(acc[r][n], at + r * ldc + VW * n);
        }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) storev<VW>(c + r * ldc + VW * n, acc[r][n]);
}

/// C (R rows x CB columns) = A (R rows of K) * B (K x ldb, from column 0): the register block of
/// gemm_rows. Rows::stride(K) / Rows::stride(ldb) are the row pitches of A / C; KC > 0 fixes K at
/// compile time (then the R row offsets are constants, not R registers). With E, `epi` is applied on
/// the registers before the store: `at` is C's offset and `co` its first column in the epilogue's
/// layout (a compile-time switch, so the kernel without it, which the Winograd GEMMs and linear layers
/// use, is the code measured before; a run-time test measured within the noise of it).
template <class Rows, int R, int CB, int KC, bool E = false>
inline void gemm_block(const float* a, int k_rt, const float* b, int ldb, float* c, std::size_t ldc,
                       const conv_epilogue* epi = nullptr, std::size_t at = 0, int co = 0) {
    const std::size_t lda = Rows::stride(KC > 0 ? KC : k_rt);
    register_tiles<R, CB>([&](auto rs, auto cs, int r0, int c0) {
        gemm_tile<Rows, decltype(rs)::value, decltype(cs)::value, KC, E>(
            a + r0 * lda, k_rt, b + c0, ldb, c + r0 * ldc + c0, ldc, epi, at + r0 * ldc + c0, co + c0);
    });
}

/// C = A (rows x K) * B (K x cols, row-major), rows of A and C Rows::stride(K) / Rows::stride(cols)
/// apart. Every element is summed over k in order, by the same expression in whichever register
/// block (12 rows x 32/16/8 columns) or remainder loop it falls, so a row's result never depends
/// on the rows around it: a convolution gives an image the same bits in any batch.
/// ldb / ldc, when given (nonzero), are B's and C's row pitches: a block of columns of wider matrices.
/// `epi`: applied to every element before it is stored (its channels and residual are C's: offset
/// them with C for a block of columns), the values apply_epilogue would give.
template <class Rows>
inline void gemm_rows(const float* a, int rows, int K, const float* b, int cols, float* c, int ldb_given = 0,
                      std::size_t ldc_given = 0, const conv_epilogue* epi = nullptr) {
    const std::size_t lda = Rows::stride(K), ldc = ldc_given ? ldc_given : Rows::stride(cols);
    const int ldb = ldb_given ? ldb_given : cols;
    // Register blocks of 12 rows x CB columns: up to 24 accumulators with AVX-512 (12 rows measured
    // faster than fewer at 32 columns and than more at 16: docs/design.md, "Measurements"); without
    // it gemm_block runs them as register_tiles' smaller tiles.
    with_channels(K, [&](auto kc) {
        constexpr int KC = decltype(kc)::value;
        auto columns = [&](auto cb, int co) {
            in_blocks<12>(rows, [&](auto r, int r0) {
                constexpr int RB = decltype(r)::value, CB = decltype(cb)::value;
                // (dense_rows only: the Winograd GEMMs never have an epilogue)
                if constexpr (std::is_same_v<Rows, dense_rows>)
                    if (epi) {
                        gemm_block<Rows, RB, CB, KC, true>(a + r0 * lda, K, b + co, ldb, c + r0 * ldc + co, ldc, epi,
                                                           r0 * ldc + co, co);
                        return;
                    }
                gemm_block<Rows, RB, CB, KC>(a + r0 * lda, K, b + co, ldb, c + r0 * ldc + co, ldc);
            });
        };
        int co = 0;
        for (; co + 32 <= cols; co += 32) columns(std::integral_constant<int, 32>{}, co);
        for (; co + 16 <= cols; co += 16) columns(std::integral_constant<int, 16>{}, co);
        if (co + 8 <= cols) columns(std::integral_constant<int, 8>{}, co), co += 8;
        // Fewer than 8 columns left: one fused multiply-add per k, spelled out, since GCC contracted
        // `s += a * b` in some rows and not in others once it vectorised this loop.
        for (int r = 0; r < rows; ++r)
            for (int o = co; o < cols; ++o) {
                float s = 0;
                for (int k = 0; k < K; ++k) s = std::fma(a[r * lda + k], b[static_cast<std::size_t>(k) * ldb + o], s);
                c[r * ldc + o] = s;
                if (epi) apply_one_epilogue(c + r * ldc + o, *epi, r * ldc + o, o);
            }
    });
}

// ---- packed GEMM for the im2col geometries ---------------------------------------------------------
// gemm_rows walks the whole K for each 12-row block straight from the operands, which suits a 1x1
// layer's activations (measured as fast as the packed form below on ResNet-50's 1x1 layers:
// docs/design.md, "Measurements"). A strided or large-kernel layer has no such matrix: its rows are
// gathered from the image (the im2col matrix), K = 9 x 512 floats per row at the deepest 3x3, and
// the filter (K x cout) is too large to stay in cache across small tiles. gemm_packed takes K
// in chunks of gemm_kc: per chunk it copies the rows' A values into 12-row panels ([k][12], read in
// order) and, per block of columns, B's values into one contiguous [k][CB] panel (L1-resident while
// every row block uses it), and continues each output's sum from where the previous chunk stored it.
// An output's sum still runs over k = 0 ... K-1 in order, one fused multiply-add per term, whatever
// block or chunk it falls in: the same bits as gemm_rows, and a row's result never depends on the
// rows around it. The epilogue (conv_epilogue) is applied on the registers after the last chunk.

inline constexpr int gemm_kc = 256;  // k per chunk: a 12 x kc A panel and a kc x 32 B panel stay in L1/L2
inline constexpr int gemm_mr = 12;   // rows per register block (as gemm_rows)
inline constexpr int gemm_nc = 256;  // columns per chunk: the chunk's C rows stay in L2 across the K chunks

/// Floats of scratch gemm_packed needs for `rows` rows: the A panels of one chunk and one B panel.
constexpr std::size_t gemm_pack_floats(int rows) noexcept {
    return (static_cast<std::size_t>((rows + gemm_mr - 1) / gemm_mr) * gemm_mr + 32) * gemm_kc;
}

/// Calls f(CB, co) for gemm_packed's blocks of columns of [n0, n1): 32 columns while they last, then
/// one of 16, then one of 8; the < 8 columns left are not a block. For n0 a multiple of 32 the blocks
/// of any such range line up with those of [0, cols), so a B packed once for all columns
/// (pack_gemm_b) serves every range of whole blocks.
template <class F>
inline void column_blocks(int n0, int n1, F&& f) {
    int co = n0;
    for (; co + 32 <= n1; co += 32) f(std::integral_constant<int, 32>{}, co);
    if (co + 16 <= n1) f(std::integral_constant<int, 16>{}, co), co += 16;
    if (co + 8 <= n1) f(std::integral_constant<int, 8>{}, co);
}
/// The columns column_blocks(0, cols) covers (cols rounded down to 8).
constexpr int blocked_columns(int cols) noexcept { return cols / 8 * 8; }

/// B (K x cols, rows ldb apart) in the panels gemm_packed reads: block (CB, co) of column_blocks(0,
/// cols) at bp[co * K], as K rows of CB floats, so the panel of rows k0... of that block is
/// bp + co * K + k0 * CB. K x blocked_columns(cols) floats. A fixed right operand (a convolution's
/// filter in evaluation) is packed once instead of once per tile of rows and per chunk of K.
inline void pack_gemm_b(const float* b, int K, int ldb, int cols, float* bp) {
    column_blocks(0, cols, [&](auto cb, int co) {
        constexpr int CB = decltype(cb)::value;
        float* dst = bp + static_cast<std::size_t>(co) * K;
        for (int k = 0; k < K; ++k)
            std::memcpy(dst + static_cast<std::size_t>(k) * CB, b + static_cast<std::size_t>(k) * ldb + co,
                        sizeof(float) * CB);
    });
}

/// One register tile of packed_block: R rows x CB columns of panels of RA rows ([k][RA]) and CBP
/// columns ([k][CBP]), from the tile's first row and column.
template <int R, int CB, int RA, int CBP>
inline void packed_block_tile(const float* ap, const float* bp, int kn, float* c, std::size_t ldc, bool first,
                              const conv_epilogue* epi, std::size_t at, int co) {
    constexpr int VW = block_width<CB>, NV = CB / VW;
    using vec = vecf<VW>;
    vec acc[R][NV];
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) acc[r][n] = first ? vec{} : loadv<VW>(c + r * ldc + VW * n);
    const float* res = epi ? epi->residual : nullptr;
    for (int k = 0; k < kn; ++k) {
        // Ask early for the lines the block's end touches (row k of C, which a first chunk only writes,
        // and of the residual): at 224x224 they come from L3 or memory, 12 rows ldc apart, a pattern
        // the hardware prefetcher does not follow (ResNet-50's 28x28 128->512 layer: ~10% faster).
        if (k < R) {
            if (first)
                for (int q = 0; q < CB; q += 16) __builtin_prefetch(c + k * ldc + q, 1, 3);
            if (res)
                for (int q = 0; q < CB; q += 16) __builtin_prefetch(res + at + k * ldc + q, 0, 3);
        }
        vec bv[NV];
        for (int n = 0; n < NV; ++n) bv[n] = loadv<VW>(bp + static_cast<std::size_t>(k) * CBP + VW * n);
        for (int r = 0; r < R; ++r) {
            const float av = ap[k * RA + r];
            for (int n = 0; n < NV; ++n) acc[r][n] = fmadd<VW>(bv[n], splat<VW>(av), acc[r][n]);
        }
    }
    if (epi)
        for (int n = 0; n < NV; ++n) {
            const vector_epilogue<VW> e(*epi, co + VW * n);
            for (int r = 0; r < R; ++r) acc[r][n] = e(acc[r][n], at + r * ldc + VW * n);
        }
    for (int r = 0; r < R; ++r)
        for (int n = 0; n < NV; ++n) storev<VW>(c + r * ldc + VW * n, acc[r][n]);
}

/// C (R x CB, rows ldc apart) = (first ? 0 : C) + Ap * Bp over kn steps; Ap: [k][R], Bp: [k][CB]. With
/// `epi`, the epilogue is applied before the store; `at` is C's offset in the epilogue's layout.
template <int R, int CB>
inline void packed_block(const float* ap, const float* bp, int kn, float* c, std::size_t ldc, bool first,
                         const conv_epilogue* epi, std::size_t at, int co) {
    register_tiles<R, CB>([&](auto rs, auto cs, int r0, int c0) {
        packed_block_tile<decltype(rs)::value, decltype(cs)::value, R, CB>(ap + r0, bp + c0, kn, c + r0 * ldc + c0, ldc,
                                                                           first, epi, at + r0 * ldc + c0, co + c0);
    });
}

/// C = epi(A * B): `rows` rows, A rows x K (given by pack_a), B K x cols (rows ldb apart), C's rows ldc
/// apart; epi's channels and residual are C's (offset them with C for a block of columns).
/// pack_a(r0, R, k0, kn, dst) writes dst[k * R + r] = A[r0 + r][k0 + k] for r < R, k < kn; a(r, k)
/// returns one value of A (the < 8 remainder columns). `pack`: gemm_pack_floats(rows) floats.
/// `b_packed`, when given: B's blocks as pack_gemm_b lays them out, from B's column 0 here (the packed
/// operand of a wider matrix from a multiple of 32 columns on: its bp + n0 * K); the panels are read
/// from it instead of being copied. The same values either way, so the same bits.
template <class PackA, class ElemA>
inline void gemm_packed(PackA&& pack_a, ElemA&& a, int rows, int K, const float* b, int ldb, int cols, float* c,
                        std::size_t ldc, float* pack, const conv_epilogue& epi = {}, const float* b_packed = nullptr) {
    float* ap = pack;
    float* bp = pack + static_cast<std::size_t>((rows + gemm_mr - 1) / gemm_mr) * gemm_mr * gemm_kc;
    // Columns in chunks of gemm_nc (the chunk's C rows stay in L2 across the K chunks), then K.
    for (int n0 = 0; n0 < cols; n0 += gemm_nc) {
        const int n1 = std::min(cols, n0 + gemm_nc);
        for (int k0 = 0; k0 < K; k0 += gemm_kc) {
            const int kn = std::min(gemm_kc, K - k0);
            const bool first = k0 == 0;
            const conv_epilogue* e = k0 + kn == K && !epi.empty() ? &epi : nullptr;
            in_blocks<gemm_mr>(rows, [&](auto r, int r0) {
                pack_a(r0, decltype(r)::value, k0, kn, ap + static_cast<std::size_t>(r0) * kn);
            });
            column_blocks(n0, n1, [&](auto cb, int co) {
                constexpr int CB = decltype(cb)::value;
                const float* panel = bp;
                if (b_packed)
                    panel = b_packed + static_cast<std::size_t>(co) * K + static_cast<std::size_t>(k0) * CB;
                else
                    for (int k = 0; k < kn; ++k)
                        std::memcpy(bp + static_cast<std::size_t>(k) * CB,
                                    b + static_cast<std::size_t>(k0 + k) * ldb + co, sizeof(float) * CB);
                in_blocks<gemm_mr>(rows, [&](auto r, int r0) {
                    packed_block<decltype(r)::value, CB>(ap + static_cast<std::size_t>(r0) * kn, panel, kn,
                                                         c + r0 * ldc + co, ldc, first, e, r0 * ldc + co, co);
                });
            });
            const int co = n0 + blocked_columns(n1 - n0);
            for (int r = 0; r < rows; ++r)  // fewer than 8 columns left: one fused multiply-add per k
                for (int o = co; o < n1; ++o) {
                    float s = first ? 0.f : c[r * ldc + o];
                    for (int k = k0; k < k0 + kn; ++k)
                        s = std::fma(a(r, k), b[static_cast<std::size_t>(k) * ldb + o], s);
                    c[r * ldc + o] = s;
                    if (e) apply_one_epilogue(c + r * ldc + o, *e, r * ldc + o, o);
                }
        }
    }
}

/// Zero-padded copy of one NHWC image into a ph x pw x c buffer (ph >= h + 2 pad, pw >= w + 2 pad):
/// the image at row and column `pad`, zeros around it (beyond h + 2 pad / w + 2 pad as well).
inline void pad_image(const conv_geometry& g, const float* x_img, float* xp, int ph, int pw) {
    const int H = g.in.h, W = g.in.w, C = g.in.c, P = g.pad;
    const std::size_t row = static_cast<std::size_t>(pw) * C, left = static_cast<std::size_t>(P) * C;
    const std::size_t right = static_cast<std::size_t>(pw - W - P) * C;
    std::memset(xp, 0, sizeof(float) * row * P);                                                       // top rows
    std::memset(xp + (static_cast<std::size_t>(H) + P) * row, 0, sizeof(float) * row * (ph - H - P));  // bottom rows
    for (int y = 0; y < H; ++y) {
        float* r = xp + (static_cast<std::size_t>(y) + P) * row;
        std::memset(r, 0, sizeof(float) * left);
        std::memcpy(r + left, x_img + static_cast<std::size_t>(y) * W * C,
                    sizeof(float) * static_cast<std::size_t>(W) * C);
        std::memset(r + left + static_cast<std::size_t>(W) * C, 0, sizeof(float) * right);
    }
}
/// The usual (h + 2 pad) x (w + 2 pad) padding.
inline void pad_image(const conv_geometry& g, const float* x_img, float* xp) {
    pad_image(g, x_img, xp, g.in.h + 2 * g.pad, g.in.w + 2 * g.pad);
}

}  // namespace detail
}  // namespace tricks::backend::host
