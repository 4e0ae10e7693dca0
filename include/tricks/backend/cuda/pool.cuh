#pragma once
// Pooling over NHWC activations. Same geometry and semantics as backend/cpu/pool.hpp.
//  - max pool (ImageNet stem, 3x3 stride 2 pad 1): cudnnPooling, CUDNN_POOLING_MAX_DETERMINISTIC.
//    Padding never wins. Contract difference with the CPU kernel: cuDNN keeps no argmax, so the
//    backward pass takes x and y instead of the CPU's argmax buffer.
//  - average pool without ceil mode: cudnnPooling forward (COUNT_INCLUDE_PADDING or
//    COUNT_EXCLUDE_PADDING after count_include_pad).
//  - average pool in ceil mode (ResNet-D's shortcut: 2x2, stride 2, ceil, padding not counted):
//    cudnnPooling has no ceil mode, so a small kernel does it, dividing each window by the number
//    of its elements inside the input (or inside the padded input when count_include_pad).
//  - average-pool backward (any mode) is the same small kernel's adjoint, written as a gather (one
//    thread per input element, no atomics: deterministic); it needs neither x nor y.
//  - global average pool forward/backward: small kernels.
#include "tricks/backend/geometry.hpp"
#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"

namespace tricks::backend::gpu {

namespace detail {

struct pool_dims {
    int n, h, w, c, oh, ow, k, stride, pad;
    bool include_pad;
};
inline pool_dims dims_of(const pool_geometry& g) {
    return {g.in.n, g.in.h, g.in.w, g.in.c, g.out_h(), g.out_w(), g.k, g.stride, g.pad, g.count_include_pad};
}

/// The clipped window of output (oy, ox) and its divisor, as detail::avg_window on the CPU.
struct window {
    int y0, y1, x0, x1, count;
};
__device__ __forceinline__ window avg_window(const pool_dims& d, int oy, int ox) {
    int y0 = oy * d.stride - d.pad, x0 = ox * d.stride - d.pad;
    int y1 = min(y0 + d.k, d.h + d.pad), x1 = min(x0 + d.k, d.w + d.pad);
    const int padded = (y1 - y0) * (x1 - x0);
    y0 = max(y0, 0);
    x0 = max(x0, 0);
    y1 = min(y1, d.h);
    x1 = min(x1, d.w);
    return {y0, y1, x0, x1, d.include_pad ? padded : (y1 - y0) * (x1 - x0)};
}

template <class T>
__global__ void avg_pool_forward_kernel(pool_dims d, const T* __restrict__ x, T* __restrict__ y) {
    const std::size_t total = static_cast<std::size_t>(d.n) * d.oh * d.ow * d.c;
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % d.c);
        std::size_t t = i / d.c;
        const int ox = static_cast<int>(t % d.ow);
        t /= d.ow;
        const int oy = static_cast<int>(t % d.oh);
        const int n = static_cast<int>(t / d.oh);
        const window wdw = avg_window(d, oy, ox);
        float s = 0.f;
        for (int iy = wdw.y0; iy < wdw.y1; ++iy)
            for (int ix = wdw.x0; ix < wdw.x1; ++ix)
                s += to_float(x[((static_cast<std::size_t>(n) * d.h + iy) * d.w + ix) * d.c + c]);
        y[i] = from_float<T>(s / static_cast<float>(wdw.count));
    }
}

/// dx[n, iy, ix, c] = sum over the windows containing (iy, ix) of dy / count.
template <class T>
__global__ void avg_pool_backward_kernel(pool_dims d, const T* __restrict__ dy, T* __restrict__ dx) {
    const std::size_t total = static_cast<std::size_t>(d.n) * d.h * d.w * d.c;
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const int c = static_cast<int>(i % d.c);
        std::size_t t = i / d.c;
        const int ix = static_cast<int>(t % d.w);
        t /= d.w;
        const int iy = static_cast<int>(t % d.h);
        const int n = static_cast<int>(t / d.h);
        // Windows oy with oy*s - pad <= iy < oy*s - pad + k.
        const int ylo = max(0, (iy + d.pad - d.k + d.stride) / d.stride), yhi = min(d.oh - 1, (iy + d.pad) / d.stride);
        const int xlo = max(0, (ix + d.pad - d.k + d.stride) / d.stride), xhi = min(d.ow - 1, (ix + d.pad) / d.stride);
        float s = 0.f;
        for (int oy = ylo; oy <= yhi; ++oy)
            for (int ox = xlo; ox <= xhi; ++ox) {
                const window wdw = avg_window(d, oy, ox);
                if (iy < wdw.y0 || iy >= wdw.y1 || ix < wdw.x0 || ix >= wdw.x1) continue;
                s += to_float(dy[((static_cast<std::size_t>(n) * d.oh + oy) * d.ow + ox) * d.c + c]) /
                     static_cast<float>(wdw.count);
            }
        dx[i] = from_float<T>(s);
    }
}

template <class T>
__global__ void global_avg_pool_forward_kernel(int n, int hw, int c, const T* __restrict__ x, T* __restrict__ y) {
    const std::size_t total = static_cast<std::size_t>(n) * c;
    const float inv = 1.f / static_cast<float>(hw);
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const std::size_t img = i / c, ch = i % c;
        const T* xi = x + img * hw * c + ch;
        float s = 0.f;
        for (int p = 0; p < hw; ++p) s += to_float(xi[static_cast<std::size_t>(p) * c]);
        y[i] = from_float<T>(s * inv);
    }
}

template <class T>
__global__ void global_avg_pool_backward_kernel(int n, int hw, int c, const T* __restrict__ dy, T* __restrict__ dx) {
    const std::size_t total = static_cast<std::size_t>(n) * hw * c;
    const float inv = 1.f / static_cast<float>(hw);
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const std::size_t ch = i % c, img = i / (static_cast<std::size_t>(hw) * c);
        dx[i] = from_float<T>(to_float(dy[img * c + ch]) * inv);
    }
}

template <class T>
pool_plan& pool_plan_for(const pool_geometry& g, cudnnPoolingMode_t mode, context& ctx) {
    constexpr cudnnDataType_t dt = dtype_traits<T>::cudnn;
    const pool_key key{
        g.in.n, g.in.h, g.in.w, g.in.c, g.k, g.stride, g.pad, static_cast<int>(mode), static_cast<int>(dt)};
    auto& plans = ctx.pool_plans();
    if (auto it = plans.find(key); it != plans.end()) return *it->second;
    auto p = std::make_unique<pool_plan>();
    p->x = tensor_descriptor::nhwc(dt, g.in.n, g.in.h, g.in.w, g.in.c);
    p->y = tensor_descriptor::nhwc(dt, g.in.n, g.out_h(), g.out_w(), g.in.c);
    p->pool = pooling_descriptor::create(mode, g.k, g.pad, g.stride);
    return *plans.emplace(key, std::move(p)).first->second;
}

}  // namespace detail

/// Max-pool forward (cuDNN). Ceil mode is not supported on the GPU (no model uses it for max pooling).
template <device_element T>
void max_pool_forward(const pool_geometry& g, const T* x, T* y, context& ctx) {
    g.validate("tricks::gpu::max_pool");
    require<shape_error>(!g.ceil_mode, "tricks::gpu::max_pool: ceil_mode is not supported by the CUDA backend");
    auto& p = detail::pool_plan_for<T>(g, CUDNN_POOLING_MAX_DETERMINISTIC, ctx);
    const float one = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnPoolingForward(ctx.cudnn(), p.pool, &one, p.x, x, &zero, p.y, y));
}

/// Max-pool backward: dx = 0, then each dy goes to its window's maximum. x and y are the forward
/// pass's input and output (cuDNN finds the maximum again instead of keeping an argmax).
template <device_element T>
void max_pool_backward(const pool_geometry& g, const T* x, const T* y, const T* dy, T* dx, context& ctx) {
    g.validate("tricks::gpu::max_pool_backward");
    require<shape_error>(!g.ceil_mode,
                         "tricks::gpu::max_pool_backward: ceil_mode is not supported by the CUDA backend");
    auto& p = detail::pool_plan_for<T>(g, CUDNN_POOLING_MAX_DETERMINISTIC, ctx);
    const float one = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnPoolingBackward(ctx.cudnn(), p.pool, &one, p.y, y, p.y, dy, p.x, x, &zero, p.x, dx));
}

/// Average-pool forward: cuDNN for floor mode, the kernel for ceil mode. `force_kernel` runs the
/// kernel in floor mode too (tests compare both paths).
template <device_element T>
void avg_pool_forward(const pool_geometry& g, const T* x, T* y, context& ctx, bool force_kernel = false) {
    g.validate("tricks::gpu::avg_pool");
    if (g.ceil_mode || force_kernel) {
        const auto d = detail::dims_of(g);
        const std::size_t total = g.out().size();
        detail::avg_pool_forward_kernel<T>
            <<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(d, x, y);
        TRICKS_CUDA_CHECK_LAUNCH("avg_pool_forward_kernel");
        return;
    }
    const auto mode =
        g.count_include_pad ? CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
    auto& p = detail::pool_plan_for<T>(g, mode, ctx);
    const float one = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnPoolingForward(ctx.cudnn(), p.pool, &one, p.x, x, &zero, p.y, y));
}

/// Average-pool backward (any mode), dx overwritten.
template <device_element T>
void avg_pool_backward(const pool_geometry& g, const T* dy, T* dx, context& ctx) {
    g.validate("tricks::gpu::avg_pool_backward");
    const auto d = detail::dims_of(g);
    const std::size_t total = g.in.size();
    detail::avg_pool_backward_kernel<T>
        <<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(d, dy, dx);
    TRICKS_CUDA_CHECK_LAUNCH("avg_pool_backward_kernel");
}

/// (n, h, w, c) -> (n, 1, 1, c): the mean over each feature map.
template <device_element T>
void global_avg_pool_forward(shape4 in, const T* x, T* y, context& ctx) {
    require<shape_error>(in.n > 0 && in.h > 0 && in.w > 0 && in.c > 0, "tricks::gpu::global_avg_pool: empty input ",
                         in);
    const std::size_t total = static_cast<std::size_t>(in.n) * in.c;
    detail::global_avg_pool_forward_kernel<T>
        <<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(in.n, in.h * in.w, in.c, x, y);
    TRICKS_CUDA_CHECK_LAUNCH("global_avg_pool_forward_kernel");
}

template <device_element T>
void global_avg_pool_backward(shape4 in, const T* dy, T* dx, context& ctx) {
    require<shape_error>(in.n > 0 && in.h > 0 && in.w > 0 && in.c > 0,
                         "tricks::gpu::global_avg_pool_backward: empty input ", in);
    const std::size_t total = in.size();
    detail::global_avg_pool_backward_kernel<T>
        <<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(in.n, in.h * in.w, in.c, dy, dx);
    TRICKS_CUDA_CHECK_LAUNCH("global_avg_pool_backward_kernel");
}

}  // namespace tricks::backend::gpu
