#pragma once
// The layer contract. A layer is a small type with
//  - compile-time shape rules: in_channels, out_channels, parameter_count, out_dims(dims), macs(dims);
//  - run-time state: parameters (value + grad, tagged by role), buffers, cached activations;
//  - forward(x, ctx) -> const tensor& y, backward(dy, ctx, need_dx) -> const tensor& dx;
//  - init(rng, options) and visitors over parameters and buffers (in a fixed order).
// Layers own their outputs (convolutions share their thread's scratch, backend::host::thread_scratch()), so a
// warmed-up step allocates nothing.
#include <concepts>
#include <cstdint>
#include <string>

#include "tricks/core/rng.hpp"
#include "tricks/core/shape.hpp"
#include "tricks/core/tensor.hpp"
#include "tricks/nn/parameter.hpp"

namespace tricks::nn {

struct init_options {
    bool zero_gamma = false;  // paper §3.1: the last BN of each residual branch starts with gamma = 0
};

template <class L>
concept Layer = requires(L& l, const tensor<float>& t, const context& ctx, rng& r, dims d) {
    { L::in_channels } -> std::convertible_to<int>;
    { L::out_channels } -> std::convertible_to<int>;
    { L::parameter_count } -> std::convertible_to<std::int64_t>;
    { L::out_dims(d) } -> std::same_as<dims>;
    { L::macs(d) } -> std::convertible_to<std::int64_t>;
    { L::describe() } -> std::convertible_to<std::string>;
    { l.forward(t, ctx) } -> std::same_as<const tensor<float>&>;
    { l.backward(t, ctx, true) } -> std::same_as<const tensor<float>&>;
    l.init(r, init_options{});
};

/// A layer made of layers (sequential, repeat, residual): it says so (`static constexpr bool
/// is_composite = true`) and for_each_child(f) calls f on each layer inside, in forward order. Every
/// walk over a model's structure goes through it (parameters and buffers, hence checkpoints and the
/// optimizer; nn::visit_leaves, hence weight import/export and ONNX; the inference pool), so a new
/// composite is one member function away from all of them. (A marker rather than a requires-clause
/// on for_each_child: nvcc's front end rejects a lambda inside a requires-expression.)
template <class L>
concept Composite = requires {
    { L::is_composite } -> std::convertible_to<bool>;
}
&&L::is_composite;

/// Checks an input tensor against a layer's compile-time channel count.
inline void check_channels(const char* who, shape4 x, int expected) {
    require<shape_error>(x.c == expected, who, ": expected ", expected, " input channels, got ", x.c, " (input ", x,
                         ")");
    require<shape_error>(x.n > 0, who, ": batch must be > 0, got input ", x);
}
inline void check_channels(const char* who, const tensor<float>& x, int expected) {
    check_channels(who, x.shape(), expected);
}

}  // namespace tricks::nn
