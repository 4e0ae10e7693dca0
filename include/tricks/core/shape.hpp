#pragma once
// Shapes. Activations are NHWC (docs/design.md, "Conventions"): n images, h rows, w columns, c
// channels, c fastest.
#include <cstddef>
#include <cstdint>
#include <ostream>

namespace tricks {

/// Spatial size of one feature map; the batch and channel counts live elsewhere (channels are
/// compile-time in layer types, the batch is a run-time value).
struct dims {
    int h = 0, w = 0;
    friend constexpr bool operator==(dims, dims) = default;
};

struct shape4 {
    int n = 0, h = 0, w = 0, c = 0;
    [[nodiscard]] constexpr std::size_t size() const noexcept {
        return static_cast<std::size_t>(n) * static_cast<std::size_t>(h) * static_cast<std::size_t>(w) *
               static_cast<std::size_t>(c);
    }
    [[nodiscard]] constexpr std::size_t pixels() const noexcept {
        return static_cast<std::size_t>(n) * static_cast<std::size_t>(h) * static_cast<std::size_t>(w);
    }
    [[nodiscard]] constexpr dims spatial() const noexcept { return {h, w}; }
    friend constexpr bool operator==(shape4, shape4) = default;
    friend std::ostream& operator<<(std::ostream& os, shape4 s) {
        return os << "[n=" << s.n << " h=" << s.h << " w=" << s.w << " c=" << s.c << "]";
    }
};

/// Output size of a window operation (convolution, pooling): floor((in + 2p - k) / s) + 1,
/// or the ceil variant used by ResNet-D's average pool (a window must start inside the input
/// or the left padding, as in PyTorch's ceil_mode).
constexpr int window_out(int in, int k, int stride, int pad, bool ceil_mode = false) noexcept {
    const int span = in + 2 * pad - k;
    if (span < 0) return 0;
    int out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad) --out;
    return out;
}

}  // namespace tricks
