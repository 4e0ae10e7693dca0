#pragma once
// The learning-rate schedule, per iteration: peak lr (linear scaling), linear warmup, then cosine
// or step decay (or constant). Built from the recipe's flags and the run-time numbers, so one
// compiled schedule serves every recipe.
#include <cmath>
#include <numbers>
#include <string>
#include <string_view>
#include <vector>

#include "tricks/core/error.hpp"

namespace tricks {

/// Epochs (step milestones) as text: {2, 4, 6} -> "2, 4, 6" (with sep ", ").
inline std::string epoch_list(const std::vector<int>& epochs, std::string_view sep = ", ") {
    std::string s;
    for (int e : epochs) {
        if (!s.empty()) s += sep;
        s += std::to_string(e);
    }
    return s;
}

struct lr_schedule {
    enum class decay_kind { constant, cosine, step };

    double base_lr = 0.1;
    int batch = 256;
    int scaling_reference = 0;  // lr::linear_scaling<B>: B; 0 = no scaling
    long warmup_steps = 0;
    long total_steps = 1;
    long steps_per_epoch = 1;
    decay_kind decay = decay_kind::constant;
    std::vector<int> milestones;  // epochs, for step decay
    double step_factor = 0.1;

    /// Peak learning rate: base_lr * batch / B under the linear scaling rule (paper §3.1).
    [[nodiscard]] double peak() const noexcept {
        return scaling_reference > 0 ? base_lr * batch / scaling_reference : base_lr;
    }

    /// The lr used by iteration t (0-based).
    ///  - warmup (paper §3.1): lr = peak * (t + 1) / W for t < W: linear from 0, reaching the peak
    ///    at the last warmup iteration;
    ///  - cosine (paper eq. 1): lr = peak * (1 + cos(pi * t' / T)) / 2, with t' = t - W and
    ///    T = total - W, so it starts at the peak and reaches 0 at t = total (the end of training);
    ///  - step: peak * 0.1^(number of milestones passed), milestones in epochs.
    [[nodiscard]] double at(long t) const noexcept {
        const double p = peak();
        if (t < warmup_steps) return p * static_cast<double>(t + 1) / static_cast<double>(warmup_steps);
        switch (decay) {
            case decay_kind::constant:
                return p;
            case decay_kind::cosine: {
                const double T = static_cast<double>(total_steps - warmup_steps);
                const double tt = static_cast<double>(t - warmup_steps);
                if (T <= 0 || tt >= T) return 0.0;
                return 0.5 * (1.0 + std::cos(std::numbers::pi * tt / T)) * p;
            }
            case decay_kind::step: {
                const double epoch = static_cast<double>(t) / static_cast<double>(steps_per_epoch);
                double lr = p;
                for (int m : milestones)
                    if (epoch >= m) lr *= step_factor;
                return lr;
            }
        }
        return p;
    }

    void validate() const {
        require<training_error>(base_lr >= 0 && std::isfinite(base_lr),
                                "tricks::lr_schedule: lr must be finite and >= 0, got ", base_lr);
        require<training_error>(
            total_steps > 0, "tricks::lr_schedule: no training steps (epochs x steps per epoch = ", total_steps, ")");
        require<training_error>(warmup_steps >= 0 && warmup_steps <= total_steps, "tricks::lr_schedule: warmup of ",
                                warmup_steps, " steps is longer than the whole run (", total_steps, " steps)");
    }
};

}  // namespace tricks
