#pragma once
// batch_norm<C>: per-channel normalisation with learned scale (gamma) and shift (beta).
#include <string>

#include "tricks/backend/cpu/batch_norm.hpp"
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

    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        check_channels("tricks::batch_norm", x, C);
        x_ = &x;
        y_.resize(x.shape());
        const backend::batch_norm_geometry g{x.shape().pixels(), C, eps, momentum};
        if (ctx.phase == mode::train) {
            mean_.resize({1, 1, 1, C});
            inv_std_.resize({1, 1, 1, C});
            backend::batch_norm_forward_train(g, x.data(), gamma.value.data(), beta.value.data(), y_.data(),
                                              mean_.data(), inv_std_.data(), running_mean.data(), running_var.data(), ws_);
        } else {
            backend::batch_norm_forward_eval(g, x.data(), gamma.value.data(), beta.value.data(), running_mean.data(),
                                             running_var.data(), y_.data(), ws_);
        }
        ctx.round(y_);
        return y_;
    }

    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool need_dx) {
        require<error>(!mean_.empty(), "tricks::batch_norm: backward without a training-mode forward");
        const backend::batch_norm_geometry g{x_->shape().pixels(), C, eps, momentum};
        dx_.resize(x_->shape());
        backend::batch_norm_backward(g, x_->data(), dy.data(), gamma.value.data(), mean_.data(), inv_std_.data(),
                                     dx_.data(), gamma.grad.data(), beta.grad.data(), ws_);
        (void)need_dx;  // dgamma/dbeta and dx share the same reductions; BN is never a network's first layer
        ctx.round(dx_);
        return dx_;
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
    const tensor<float>* x_ = nullptr;
    tensor<float> y_, dx_, mean_, inv_std_;
    backend::workspace ws_;
};

}  // namespace tricks::nn
