#pragma once
// What a forward convolution applies to each output before storing it: an evaluation-mode batch
// norm folded into the convolution (y = acc * scale[c] + shift[c]) and the ReLU after it. The
// expression is the one batch_norm_forward_eval evaluates (x * a + b with the same a and b, then
// max(., 0)), so folded and layer-by-layer evaluation give the same values.
#include <cstddef>

namespace tricks::backend {

struct conv_epilogue {
    const float* scale = nullptr;  // per output channel; null: no affine
    const float* shift = nullptr;
    bool relu = false;
    [[nodiscard]] bool empty() const noexcept { return scale == nullptr && !relu; }
};

/// y = e(x) for `rows` pixels of `channels` values each; y may be x (in place).
inline void apply_epilogue(const float* x, float* y, std::size_t rows, int channels, const conv_epilogue& e) {
    const int C = channels;
    for (std::size_t p = 0; p < rows; ++p) {
        const float* xp = x + p * static_cast<std::size_t>(C);
        float* yp = y + p * static_cast<std::size_t>(C);
        if (e.scale && e.relu) {
            for (int c = 0; c < C; ++c) {
                const float v = xp[c] * e.scale[c] + e.shift[c];
                yp[c] = v > 0.f ? v : 0.f;
            }
        } else if (e.scale) {
            for (int c = 0; c < C; ++c) yp[c] = xp[c] * e.scale[c] + e.shift[c];
        } else if (e.relu) {
            for (int c = 0; c < C; ++c) yp[c] = xp[c] > 0.f ? xp[c] : 0.f;
        } else if (xp != yp) {
            for (int c = 0; c < C; ++c) yp[c] = xp[c];
        }
    }
}

}  // namespace tricks::backend
