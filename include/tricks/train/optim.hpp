#pragma once
// SGD with momentum (optionally Nesterov) and weight decay, in PyTorch's form:
//   g = grad + wd * w          (wd = 0 for biases and BN parameters under decay::no_bias_decay)
//   v = mu * v + g
//   w = w - lr * (nesterov ? g + mu * v : v)
// One fused pass per parameter tensor; momentum buffers are FP32 (like the master weights).
#include <cstddef>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/nn/parameter.hpp"

namespace tricks {

struct sgd_config {
    double momentum = 0.9;
    double weight_decay = 1e-4;
    bool nesterov = false;
    bool no_bias_decay = false;
};

/// Whether weight decay applies to a parameter (paper §3.1: only conv and linear weights under
/// no_bias_decay; everything otherwise).
constexpr bool decays(nn::role r, bool no_bias_decay) noexcept { return !no_bias_decay || r == nn::role::weight; }

class sgd_optimizer {
public:
    sgd_optimizer() = default;
    sgd_optimizer(std::vector<nn::parameter*> params, sgd_config cfg) : params_(std::move(params)), cfg_(cfg) {
        velocity_.resize(params_.size());
        for (std::size_t i = 0; i < params_.size(); ++i) {
            velocity_[i].resize(params_[i]->value.shape());
            velocity_[i].zero();
        }
    }

    /// Per-parameter lr multipliers (fine-tuning, train/finetune.hpp): parameter i moves with
    /// lr * scale[i]; 0 leaves it, its momentum and its decay alone (frozen). Empty: all 1.
    void set_lr_scales(std::vector<float> scale) {
        require<error>(scale.empty() || scale.size() == params_.size(), "tricks::sgd_optimizer: ", scale.size(),
                       " lr scales for ", params_.size(), " parameters");
        scale_ = std::move(scale);
    }

    void step(double lr) {
        const float mu = static_cast<float>(cfg_.momentum);
        const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(params_.size());
#pragma omp parallel for schedule(dynamic, 1)
        for (std::ptrdiff_t i = 0; i < P; ++i) {
            const float scale = scale_.empty() ? 1.f : scale_[static_cast<std::size_t>(i)];
            if (scale == 0.f) continue;
            const float flr = static_cast<float>(lr) * scale;  // x 1 is exact: unscaled runs keep their bits
            nn::parameter& p = *params_[static_cast<std::size_t>(i)];
            const float wd = decays(p.kind, cfg_.no_bias_decay) ? static_cast<float>(cfg_.weight_decay) : 0.f;
            float* w = p.value.data();
            const float* gr = p.grad.data();
            float* v = velocity_[static_cast<std::size_t>(i)].data();
            const std::size_t n = p.value.size();
            if (cfg_.nesterov) {
                for (std::size_t j = 0; j < n; ++j) {
                    const float g = gr[j] + wd * w[j];
                    v[j] = mu * v[j] + g;
                    w[j] -= flr * (g + mu * v[j]);
                }
            } else {
                for (std::size_t j = 0; j < n; ++j) {
                    const float g = gr[j] + wd * w[j];
                    v[j] = mu * v[j] + g;
                    w[j] -= flr * v[j];
                }
            }
        }
    }

    [[nodiscard]] const sgd_config& config() const noexcept { return cfg_; }
    std::vector<tensor<float>>& velocity() noexcept { return velocity_; }

private:
    std::vector<nn::parameter*> params_;
    std::vector<tensor<float>> velocity_;
    std::vector<float> scale_;
    sgd_config cfg_;
};

}  // namespace tricks
