#pragma once
// Element-wise kernels: ReLU, residual add (fused with the ReLU that follows it in a ResNet block),
// plain add (a residual block's input gradient).
#include <algorithm>
#include <cstddef>

#include "tricks/backend/cpu/workspace.hpp"

namespace tricks::backend::host {

inline void relu_forward(std::size_t n, const float* x, float* y) {
    const std::ptrdiff_t N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd schedule(static) if (n >= parallel_grain)
    for (std::ptrdiff_t i = 0; i < N; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

/// dx = dy where the output was positive (y > 0 <=> x > 0), else 0. dx may alias dy.
inline void relu_backward(std::size_t n, const float* y, const float* dy, float* dx) {
    const std::ptrdiff_t N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd schedule(static) if (n >= parallel_grain)
    for (std::ptrdiff_t i = 0; i < N; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

/// y = relu(a + b): the end of a residual block.
inline void add_relu_forward(std::size_t n, const float* a, const float* b, float* y) {
    const std::ptrdiff_t N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd schedule(static) if (n >= parallel_grain)
    for (std::ptrdiff_t i = 0; i < N; ++i) {
        const float s = a[i] + b[i];
        y[i] = s > 0.f ? s : 0.f;
    }
}

/// y = a + b (the gradient of a residual block's input: branch + shortcut). y may alias a or b.
inline void add(std::size_t n, const float* a, const float* b, float* y) {
    const std::ptrdiff_t N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd schedule(static) if (n >= parallel_grain)
    for (std::ptrdiff_t i = 0; i < N; ++i) y[i] = a[i] + b[i];
}

}  // namespace tricks::backend::host
