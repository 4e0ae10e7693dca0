#pragma once
// Compile-time facts about a model type.
#include <cstdint>

#include "tricks/core/shape.hpp"

namespace tricks {

/// Trainable parameters: conv and linear weights, linear bias, BN gamma and beta.
template <class Model>
inline constexpr std::int64_t parameter_count_v = Model::parameter_count;

/// Forward multiply-accumulates of the convs and the linear layer for one image of height x width.
template <class Model>
constexpr std::int64_t macs(int height, int width) noexcept {
    return Model::macs(dims{height, width});
}

}  // namespace tricks
