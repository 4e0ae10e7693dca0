#pragma once
#include <string>

#include "tricks/backend/cpu/elementwise.hpp"
#include "tricks/nn/layer.hpp"

namespace tricks::nn {

template <int C>
struct relu {
    static constexpr int in_channels = C, out_channels = C;
    static constexpr std::int64_t parameter_count = 0;
    static constexpr dims out_dims(dims in) noexcept { return in; }
    static constexpr std::int64_t macs(dims) noexcept { return 0; }
    static std::string describe() { return "relu"; }
    /// sequential may compute this ReLU inside the layer before it (batch_norm, or a convolution
    /// with its batch norm folded in evaluation mode), writing output().
    static constexpr bool fusable_activation = true;

    void init(rng&, const init_options&) {}
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        check_channels("tricks::relu", x, C);
        ctx.output(y_, x.shape());
        backend::host::relu_forward(x.size(), x.data(), y_.data());
        return y_;  // rounding is a no-op: max(x, 0) of a representable value is representable
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool) {
        ctx.gradient(dx_, y_.shape());
        backend::host::relu_backward(y_.size(), y_.data(), dy.data(), dx_.data());
        return dx_;
    }
    /// The output buffer, which a batch_norm before this ReLU writes when the two run fused
    /// (sequential does that); backward then never runs on this layer.
    tensor<float>& output() noexcept { return y_; }

    template <class F>
    void for_each_parameter(F&&) {}
    template <class F>
    void for_each_buffer(F&&) {}

private:
    tensor<float> y_, dx_;
};

}  // namespace tricks::nn
