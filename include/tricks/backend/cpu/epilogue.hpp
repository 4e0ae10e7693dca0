#pragma once
// What a forward convolution applies to each output before storing it: an evaluation-mode batch
// norm folded into the convolution (y = acc * scale[c] + shift[c]), a residual block's shortcut added
// to it, and the ReLU after that. The expressions are the ones batch_norm_forward_eval and
// add_relu_forward evaluate (x * a + b with the same a and b, + s, then max(., 0)), so folded and
// layer-by-layer evaluation give the same values.
#include <cstddef>

namespace tricks::backend::host {

struct conv_epilogue {
    const float* scale = nullptr;  // per output channel; null: no affine
    const float* shift = nullptr;
    bool relu = false;
    /// Added after the affine, before the ReLU: a residual block's shortcut, laid out as the
    /// convolution's output (the whole batch); null: nothing added.
    const float* residual = nullptr;
    [[nodiscard]] bool empty() const noexcept { return scale == nullptr && !relu && residual == nullptr; }
    /// The same epilogue for the outputs from element `offset` on (one image, one block of rows).
    [[nodiscard]] conv_epilogue from(std::size_t offset) const noexcept {
        conv_epilogue e = *this;
        if (e.residual) e.residual += offset;
        return e;
    }
};

/// y = e(x) for `rows` pixels of `channels` values each; y may be x (in place). e.residual, when
/// set, is read at x's offsets (e.from(...) for a block of a larger output).
inline void apply_epilogue(const float* x, float* y, std::size_t rows, int channels, const conv_epilogue& e) {
    const int C = channels;
    for (std::size_t p = 0; p < rows; ++p) {
        const float* xp = x + p * static_cast<std::size_t>(C);
        float* yp = y + p * static_cast<std::size_t>(C);
        if (e.residual) {
            const float* rp = e.residual + p * static_cast<std::size_t>(C);
            for (int c = 0; c < C; ++c) {
                float v = e.scale ? xp[c] * e.scale[c] + e.shift[c] : xp[c];
                v = v + rp[c];
                yp[c] = e.relu ? (v > 0.f ? v : 0.f) : v;
            }
        } else if (e.scale && e.relu) {
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

}  // namespace tricks::backend::host
