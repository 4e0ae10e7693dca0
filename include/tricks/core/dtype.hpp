#pragma once
// Element types. FP16/BF16 come from Eigen (Eigen is the CPU math dependency: docs/design.md,
// "Conventions"), so a tensor<half> on the CPU is the same bits cuDNN sees on the GPU.
#include <Eigen/Core>
#include <string_view>
#include <type_traits>

namespace tricks {

using half = Eigen::half;
using bfloat16 = Eigen::bfloat16;

template <class T>
concept Element =
    std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, half> || std::is_same_v<T, bfloat16>;

template <Element T>
constexpr std::string_view dtype_name() noexcept {
    if constexpr (std::is_same_v<T, float>)
        return "float32";
    else if constexpr (std::is_same_v<T, double>)
        return "float64";
    else if constexpr (std::is_same_v<T, half>)
        return "float16";
    else
        return "bfloat16";
}

/// Round a float to the nearest value representable in T and back (round-to-nearest-even).
template <Element T>
inline float round_to(float x) noexcept {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        return x;
    else
        return static_cast<float>(T(x));
}

}  // namespace tricks
