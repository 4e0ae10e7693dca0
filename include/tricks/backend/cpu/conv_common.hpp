#pragma once
// What the CPU convolution kernels share: the geometry of a convolution, N-float vectors (GCC/Clang
// vector extension) with unaligned loads and stores, the folded epilogue on a vector, fixed-size
// blocking with compile-time remainders, and the zero-padded copy of one NHWC image.
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <utility>

#include "tricks/backend/cpu/epilogue.hpp"
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

/// A conv_epilogue on VW-channel vectors from channel c0: t * a + b, then max(t, 0) (the same
/// expression, and so the same values, as apply_epilogue and the layers it replaces).
template <int VW>
struct vector_epilogue {
    using vec = vecf<VW>;
    vec a{}, b{};
    bool affine = false, relu = false;
    vector_epilogue(const conv_epilogue& e, int c0) : affine(e.scale != nullptr), relu(e.relu) {
        if (affine) a = loadv<VW>(e.scale + c0), b = loadv<VW>(e.shift + c0);
    }
    [[nodiscard]] vec operator()(vec t) const noexcept {
        if (affine) t = t * a + b;
        if (relu) t = t > vec{} ? t : vec{};
        return t;
    }
};

/// Calls f(std::integral_constant<int, B>{}, i) for i = 0, B, 2B, ... while a whole block fits, then
/// once with the remainder as a compile-time block size: register-blocked kernels with fixed trip counts.
template <int B, class F>
inline void in_blocks(int n, F&& f) {
    int i = 0;
    for (; i + B <= n; i += B) f(std::integral_constant<int, B>{}, i);
    [&]<int... R>(std::integer_sequence<int, R...>) {
        ((n - i == R + 1 ? (f(std::integral_constant<int, R + 1>{}, i), 0) : 0), ...);
    }(std::make_integer_sequence<int, B - 1>{});
}

/// Zero-padded copy of one NHWC image into a ph x pw x c buffer (ph >= h + 2 pad, pw >= w + 2 pad):
/// the image at row and column `pad`, zeros around it (beyond h + 2 pad / w + 2 pad as well).
inline void pad_image(const conv_geometry& g, const float* x_img, float* xp, int ph, int pw) {
    const int H = g.in.h, W = g.in.w, C = g.in.c, P = g.pad;
    const std::size_t row = static_cast<std::size_t>(pw) * C, left = static_cast<std::size_t>(P) * C;
    const std::size_t right = static_cast<std::size_t>(pw - W - P) * C;
    std::memset(xp, 0, sizeof(float) * row * P);                                                  // top rows
    std::memset(xp + (static_cast<std::size_t>(H) + P) * row, 0, sizeof(float) * row * (ph - H - P));  // bottom rows
    for (int y = 0; y < H; ++y) {
        float* r = xp + (static_cast<std::size_t>(y) + P) * row;
        std::memset(r, 0, sizeof(float) * left);
        std::memcpy(r + left, x_img + static_cast<std::size_t>(y) * W * C, sizeof(float) * static_cast<std::size_t>(W) * C);
        std::memset(r + left + static_cast<std::size_t>(W) * C, 0, sizeof(float) * right);
    }
}
/// The usual (h + 2 pad) x (w + 2 pad) padding.
inline void pad_image(const conv_geometry& g, const float* x_img, float* xp) {
    pad_image(g, x_img, xp, g.in.h + 2 * g.pad, g.in.w + 2 * g.pad);
}

}  // namespace detail
}  // namespace tricks::backend
