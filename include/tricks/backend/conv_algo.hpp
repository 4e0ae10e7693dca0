#pragma once
// Which algorithm a CPU convolution uses where more than one can compute it. Both compute the same
// convolution and differ by rounding only (relative ~1e-6 in FP32); each is deterministic on its own.
#include <string_view>

namespace tricks::backend {

enum class conv_algo {
    winograd,  // Winograd for 3x3 stride-1 layers (padding <= 2, input and output channels in multiples of
               // 8), F(4x4, 3x3) or F(2x2, 3x3) by the shape (cpu/winograd.hpp, winograd_tile: F(4x4),
               // 4x fewer multiplies, unless its partial tiles make it cost more than F(2x2)'s 2.25x fewer);
               // the direct / im2col-GEMM kernels for every other layer. The default.
    direct,    // the direct / im2col-GEMM kernels for every layer (the algorithms before Winograd; A/B
               // comparisons, and the smallest rounding error)
};

[[nodiscard]] constexpr const char* to_string(conv_algo a) noexcept {
    return a == conv_algo::winograd ? "winograd" : "direct";
}

/// The algorithm named `name` ("winograd" or "direct"); false when it names neither.
[[nodiscard]] constexpr bool parse(std::string_view name, conv_algo& out) noexcept {
    if (name == "winograd")
        out = conv_algo::winograd;
    else if (name == "direct")
        out = conv_algo::direct;
    else
        return false;
    return true;
}

}  // namespace tricks::backend
