#pragma once
// Filter layouts. The CPU kernels store a convolution filter as HWIO, [kh][kw][cin][cout] (a k x cout
// row-major GEMM operand); cuDNN's NHWC filter layout is KRSC, [cout][kh][kw][cin]. These host
// functions convert between the two (e.g. when moving a model or a checkpoint between backends).
// Plain host code: any element type (float, tricks::half, __half).
#include <cstddef>

#include "tricks/backend/geometry.hpp"

namespace tricks::backend::gpu {

[[nodiscard]] constexpr std::size_t filter_elements(const conv_geometry& g) noexcept {
    return static_cast<std::size_t>(g.kh) * g.kw * g.in.c * g.out_c;
}

/// HWIO index of (co, ky, kx, ci) and the KRSC index of the same weight.
[[nodiscard]] constexpr std::size_t hwio_index(const conv_geometry& g, int co, int ky, int kx, int ci) noexcept {
    return ((static_cast<std::size_t>(ky) * g.kw + kx) * g.in.c + ci) * g.out_c + co;
}
[[nodiscard]] constexpr std::size_t krsc_index(const conv_geometry& g, int co, int ky, int kx, int ci) noexcept {
    return ((static_cast<std::size_t>(co) * g.kh + ky) * g.kw + kx) * g.in.c + ci;
}

template <class T>
void hwio_to_krsc(const conv_geometry& g, const T* hwio, T* krsc) {
    for (int co = 0; co < g.out_c; ++co)
        for (int ky = 0; ky < g.kh; ++ky)
            for (int kx = 0; kx < g.kw; ++kx)
                for (int ci = 0; ci < g.in.c; ++ci)
                    krsc[krsc_index(g, co, ky, kx, ci)] = hwio[hwio_index(g, co, ky, kx, ci)];
}

template <class T>
void krsc_to_hwio(const conv_geometry& g, const T* krsc, T* hwio) {
    for (int co = 0; co < g.out_c; ++co)
        for (int ky = 0; ky < g.kh; ++ky)
            for (int kx = 0; kx < g.kw; ++kx)
                for (int ci = 0; ci < g.in.c; ++ci)
                    hwio[hwio_index(g, co, ky, kx, ci)] = krsc[krsc_index(g, co, ky, kx, ci)];
}

}  // namespace tricks::backend::gpu
