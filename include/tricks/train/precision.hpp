#pragma once
// Dynamic loss scaling for fp16_mixed (Micikevicius et al. 2018; paper §3.2): the loss is
// multiplied by S before the backward pass so small gradients survive FP16; on inf/NaN in any
// gradient the step is skipped and S halves; after `window` clean steps S doubles.
#include <cmath>
#include <cstdint>
#include <vector>

#include "tricks/nn/parameter.hpp"

namespace tricks {

struct loss_scaler {
    double scale = 65536;
    int window = 2000;
    int clean_steps = 0;
    std::int64_t skipped = 0;

    /// Checks every gradient (already in storage precision); on overflow halves the scale and
    /// returns false (skip the step). Otherwise unscales the gradients in place and returns true.
    bool unscale_or_skip(const std::vector<nn::parameter*>& params) {
        bool finite = true;
        for (auto* p : params) {
            const float* g = p->grad.data();
            const std::size_t n = p->grad.size();
            for (std::size_t i = 0; i < n && finite; ++i) finite = std::isfinite(g[i]);
            if (!finite) break;
        }
        if (!finite) {
            scale = std::max(scale * 0.5, 1.0);
            clean_steps = 0;
            ++skipped;
            return false;
        }
        const float inv = static_cast<float>(1.0 / scale);
        for (auto* p : params)
            for (auto& g : p->grad.span()) g *= inv;
        if (++clean_steps >= window) {
            scale *= 2;
            clean_steps = 0;
        }
        return true;
    }
};

}  // namespace tricks
