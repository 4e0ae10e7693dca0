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

/// Applies `e` in place to `rows` pixels of `channels` values each.
inline void apply_epilogue(float* y, std::size_t rows, int channels, const conv_epilogue& e) {
    if (e.empty()) return;
    const int C = channels;
    for (std::size_t p = 0; p < rows; ++p) {
        float* yp = y + p * static_cast<std::size_t>(C);
        if (e.scale) {
            if (e.relu)
                for (int c = 0; c < C; ++c) {
                    const float v = yp[c] * e.scale[c] + e.shift[c];
                    yp[c] = v > 0.f ? v : 0.f;
                }
            else
                for (int c = 0; c < C; ++c) yp[c] = yp[c] * e.scale[c] + e.shift[c];
        } else {
            for (int c = 0; c < C; ++c) yp[c] = yp[c] > 0.f ? yp[c] : 0.f;
        }
    }
}

}  // namespace tricks::backend
