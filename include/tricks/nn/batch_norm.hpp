#pragma once
// batch_norm<C>: per-channel normalisation with learned scale (gamma) and shift (beta).
#include <cmath>
#include <string>

#include "tricks/backend/cpu/batch_norm.hpp"
#include "tricks/backend/cpu/epilogue.hpp"
#include "tricks/nn/layer.hpp"

namespace tricks::nn {

template <int C>
struct batch_norm {
    static_assert(C > 0, "tricks::batch_norm: channel count must be positive");
    static constexpr int in_channels = C, out_channels = C;
    static constexpr std::int64_t parameter_count = 2 * std::int64_t{C};
    static constexpr dims out_dims(dims in) noexcept { return in; }
    static constexpr std::int64_t macs(dims) noexcept { return 0; }
    static std::string describe() { return "bn(" + std::to_string(C) + ")"; }

    parameter gamma, beta;
    tensor<float> running_mean, running_var;
    float eps = 1e-5f, momentum = 0.1f;
    /// Training with frozen statistics (fine-tuning; options::freeze_bn_stats): the forward
    /// normalises with the running statistics and leaves them as they are, as in evaluation; gamma
    /// and beta still learn, and the backward treats mean and variance as constants.
    bool frozen_stats = false;

    batch_norm() {
        gamma.allocate(role::bn_gamma, C);
        beta.allocate(role::bn_beta, C);
        running_mean.resize({1, 1, 1, C});
        running_var.resize({1, 1, 1, C});
        reset();
    }
    void reset() {
        gamma.value.fill(1.f);
        beta.value.zero();
        running_mean.zero();
        running_var.fill(1.f);
    }

    /// gamma = 1, beta = 0; gamma = 0 when this BN ends a residual branch under zero_gamma (the
    /// residual block calls zero_init() for its last BN).
    void init(rng&, const init_options&) { reset(); }
    void zero_init() { gamma.value.zero(); }

    const tensor<float>& forward(const tensor<float>& x, const context& ctx) { return forward_into<false>(x, ctx, y_); }

    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool need_dx) {
        (void)need_dx;  // dgamma/dbeta and dx share the same reductions; BN is never a network's first layer
        return backward_from<false>(dy, nullptr, ctx);
    }

    /// Evaluation mode as a per-channel affine y = x * a + b (from the running statistics), for a
    /// convolution before this BN to apply to its outputs (sequential folds conv + BN that way).
    backend::host::conv_epilogue eval_affine() {
        affine_.resize({1, 1, 1, 2 * C});
        backend::host::batch_norm_eval_affine(C, eps, gamma.value.data(), beta.value.data(), running_mean.data(),
                                              running_var.data(), affine_.data(), affine_.data() + C);
        return {affine_.data(), affine_.data() + C, false};
    }
    /// The output buffer (a folded convolution writes it; see eval_affine).
    tensor<float>& output() noexcept { return y_; }

    /// This BN and the ReLU after it in one pass (sequential<..., batch_norm, relu, ...> calls it):
    /// writes max(BN(x), 0) into `out`, the ReLU's output buffer. The same values as the two
    /// layers' forward one after the other.
    const tensor<float>& forward_relu(const tensor<float>& x, const context& ctx, tensor<float>& out) {
        return forward_into<true>(x, ctx, out);
    }
    /// Backward of this BN and the ReLU after it: dy is the ReLU's output gradient, relu_y its
    /// output (the mask). The same values as the ReLU's backward and then this BN's.
    const tensor<float>& backward_relu(const tensor<float>& dy, const tensor<float>& relu_y, const context& ctx) {
        return backward_from<true>(dy, &relu_y, ctx);
    }

    template <class F>
    void for_each_parameter(F&& f) {
        f(gamma);
        f(beta);
    }
    template <class F>
    void for_each_buffer(F&& f) {
        f(running_mean);
        f(running_var);
    }

private:
    template <bool Relu>
    const tensor<float>& forward_into(const tensor<float>& x, const context& ctx, tensor<float>& y) {
        check_channels("tricks::batch_norm", x, C);
        x_ = &x;
        ctx.output(y, x.shape());
        const backend::batch_norm_geometry g{x.shape().pixels(), C, eps, momentum, ctx.sync_batch_norm};
        if (ctx.phase == mode::train && frozen_stats) {
            mean_ = running_mean;  // the backward's constants: the statistics the forward used
            inv_std_.resize({1, 1, 1, C});
            for (int c = 0; c < C; ++c) inv_std_.data()[c] = 1.f / std::sqrt(running_var.data()[c] + eps);
            backend::host::batch_norm_forward_eval<Relu>(g, x.data(), gamma.value.data(), beta.value.data(),
                                                         running_mean.data(), running_var.data(), y.data(), ws_);
        } else if (ctx.phase == mode::train) {
            mean_.resize({1, 1, 1, C});
            inv_std_.resize({1, 1, 1, C});
            backend::host::batch_norm_forward_train<Relu>(g, x.data(), gamma.value.data(), beta.value.data(), y.data(),
                                                          mean_.data(), inv_std_.data(), running_mean.data(),
                                                          running_var.data(), ws_);
        } else {
            backend::host::batch_norm_forward_eval<Relu>(g, x.data(), gamma.value.data(), beta.value.data(),
                                                         running_mean.data(), running_var.data(), y.data(), ws_);
        }
        ctx.round(y);  // rounding commutes with max(., 0): the fused output has the unfused bits
        return y;
    }
    template <bool Relu>
    const tensor<float>& backward_from(const tensor<float>& dy, const tensor<float>* relu_y, const context& ctx) {
        require<error>(!mean_.empty(), "tricks::batch_norm: backward without a training-mode forward");
        require<shape_error>(dy.shape() == x_->shape(), "tricks::batch_norm: gradient ", dy.shape(),
                             " differs from the input ", x_->shape());
        if constexpr (Relu)
            require<shape_error>(relu_y->shape() == x_->shape(), "tricks::batch_norm: fused ReLU output ",
                                 relu_y->shape(), " differs from the input ", x_->shape());
        const backend::batch_norm_geometry g{x_->shape().pixels(), C, eps, momentum, ctx.sync_batch_norm};
        ctx.gradient(dx_, x_->shape());
        backend::host::batch_norm_backward<Relu>(g, x_->data(), dy.data(), gamma.value.data(), mean_.data(),
                                                 inv_std_.data(), dx_.data(), gamma.grad.data(), beta.grad.data(), ws_,
                                                 Relu ? relu_y->data() : nullptr, frozen_stats);
        ctx.gradient_ready(gamma);
        ctx.gradient_ready(beta);
        ctx.round(dx_);
        return dx_;
    }

    const tensor<float>* x_ = nullptr;
    tensor<float> y_, dx_, mean_, inv_std_, affine_;
    backend::host::workspace ws_;
};

}  // namespace tricks::nn
