#pragma once
// linear<In, Out>: the classifier. Input (n, 1, 1, In) (after global pooling), output (n, 1, 1, Out).
#include <cmath>
#include <string>

#include "tricks/backend/cpu/linear.hpp"
#include "tricks/nn/layer.hpp"

namespace tricks::nn {

template <int In, int Out>
struct linear {
    static_assert(In > 0 && Out > 0, "tricks::linear: sizes must be positive");
    static constexpr int in_channels = In, out_channels = Out;
    static constexpr std::int64_t parameter_count = std::int64_t{In} * Out + Out;
    static constexpr dims out_dims(dims) noexcept { return {1, 1}; }
    static constexpr std::int64_t macs(dims) noexcept { return std::int64_t{In} * Out; }
    static std::string describe() { return "linear(" + std::to_string(In) + "," + std::to_string(Out) + ")"; }

    parameter weight, bias;  // weight stored In x Out
    linear() {
        weight.allocate(role::weight, In * Out);
        bias.allocate(role::bias, Out);
    }
    /// U(-1/sqrt(In), 1/sqrt(In)) for weight and bias (PyTorch's nn.Linear default).
    void init(rng& r, const init_options&) {
        const float b = 1.f / std::sqrt(static_cast<float>(In));
        for (auto& v : weight.value.span()) v = (2.f * r.uniform() - 1.f) * b;
        for (auto& v : bias.value.span()) v = (2.f * r.uniform() - 1.f) * b;
    }
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        require<shape_error>(x.shape().h == 1 && x.shape().w == 1 && x.shape().c == In && x.shape().n > 0,
                             "tricks::linear: expected input (n, 1, 1, ", In, "), got ", x.shape());
        x_ = &x;
        ctx.output(y_, {x.shape().n, 1, 1, Out});
        const float* w = weight.value.data();
        if (ctx.store != storage::fp32) {
            w_work_ = weight.value;
            ctx.round(w_work_);
            w = w_work_.data();
        }
        backend::host::linear_forward(x.shape().n, In, Out, x.data(), w, bias.value.data(), y_.data());
        // logits stay FP32: the loss is computed in FP32 under mixed precision (as AMP does)
        return y_;
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool need_dx) {
        const int n = x_->shape().n;
        ctx.gradient(dx_, x_->shape());
        const float* w = ctx.store == storage::fp32 ? weight.value.data() : w_work_.data();
        backend::host::linear_backward(n, In, Out, x_->data(), w, dy.data(), need_dx ? dx_.data() : nullptr,
                                       weight.grad.data(), bias.grad.data());
        ctx.gradient_ready(weight);
        ctx.gradient_ready(bias);
        ctx.round(dx_);
        return dx_;
    }
    template <class F>
    void for_each_parameter(F&& f) {
        f(weight);
        f(bias);
    }
    template <class F>
    void for_each_buffer(F&&) {}

private:
    const tensor<float>* x_ = nullptr;
    tensor<float> y_, dx_, w_work_;
};

}  // namespace tricks::nn
