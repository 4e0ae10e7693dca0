#pragma once
// Batch normalisation through cuDNN (CUDNN_BATCHNORM_SPATIAL, or SPATIAL_PERSISTENT with
// context_options::bn_persistent). Same contract as backend/cpu/batch_norm.hpp:
//   x, y, dx, dy: NHWC activations of element type T (float or __half);
//   gamma, beta, running/saved statistics, dgamma, dbeta: float (FP32 even for FP16 data).
// cuDNN's conventions coincide with the CPU kernels': exponentialAverageFactor = momentum
// (running = (1 - m) * running + m * batch), the running variance is the unbiased one, and the
// saved "inverse variance" is 1 / sqrt(var + eps) with the biased batch variance.
// The CPU geometry carries only pixels (n*h*w) and channels; these functions take the activation's
// real NHWC shape as well (describing n x h x w x C rather than pixels x 1 x 1 x C: same memory and
// reduction set, but cuDNN picks its kernels by the dimensions). The geometry-only overloads use
// pixels x 1 x 1 x C.
// Evaluation mode is a small kernel of ours (y = x * a + b per channel with a = gamma/sqrt(var+eps),
// b = beta - mean * a, the CPU kernel's form): cuDNN 9's legacy inference call reports
// NOT_SUPPORTED for some NHWC FP16 shapes.
#include <climits>

#include "tricks/backend/cpu/batch_norm.hpp"
#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"

namespace tricks::backend::gpu {

namespace detail {

/// The NHWC shape cuDNN is told about: `s` when given (n > 0), else pixels x 1 x 1 x C.
inline shape4 bn_shape(const batch_norm_geometry& g, shape4 s, const char* who) {
    require<shape_error>(g.pixels > 0 && g.channels > 0, who, ": empty input (pixels=", g.pixels,
                         ", channels=", g.channels, ")");
    require<shape_error>(g.pixels <= static_cast<std::size_t>(INT_MAX), who, ": ", g.pixels,
                         " pixels exceed cuDNN's int extent");
    if (s.n == 0) return {static_cast<int>(g.pixels), 1, 1, g.channels};
    require<shape_error>(s.pixels() == g.pixels && s.c == g.channels, who, ": shape ", s, " does not match ", g.pixels,
                         " pixels x ", g.channels, " channels");
    return s;
}

template <class T>
bn_plan& bn_plan_for(const batch_norm_geometry& g, shape4 shape, context& ctx, const char* who) {
    const shape4 s = bn_shape(g, shape, who);
    require<shape_error>(static_cast<double>(g.eps) >= CUDNN_BN_MIN_EPSILON, who, ": eps ", g.eps,
                         " is below CUDNN_BN_MIN_EPSILON");
    constexpr cudnnDataType_t dt = dtype_traits<T>::cudnn;
    const bn_key key{s.n, s.h, s.w, s.c, static_cast<int>(dt)};
    auto& plans = ctx.bn_plans();
    if (auto it = plans.find(key); it != plans.end()) return *it->second;
    auto p = std::make_unique<bn_plan>();
    p->x = tensor_descriptor::nhwc(dt, s.n, s.h, s.w, s.c);
    p->param = tensor_descriptor::create();
    TRICKS_CUDA_CHECK(cudnnDeriveBNTensorDescriptor(p->param, p->x, CUDNN_BATCHNORM_SPATIAL));
    return *plans.emplace(key, std::move(p)).first->second;
}

inline cudnnBatchNormMode_t bn_mode(const context& ctx) {
    return ctx.options().bn_persistent ? CUDNN_BATCHNORM_SPATIAL_PERSISTENT : CUDNN_BATCHNORM_SPATIAL;
}

template <class T>
__global__ void bn_eval_kernel(std::size_t total, int c, const T* __restrict__ x, const float* __restrict__ gamma,
                               const float* __restrict__ beta, const float* __restrict__ mean,
                               const float* __restrict__ var, float eps, T* __restrict__ y) {
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const int ch = static_cast<int>(i % static_cast<std::size_t>(c));
        const float a = gamma[ch] / sqrtf(var[ch] + eps);
        const float b = beta[ch] - mean[ch] * a;
        y[i] = from_float<T>(to_float(x[i]) * a + b);
    }
}

}  // namespace detail

/// Training-mode forward: y, the batch mean and 1/sqrt(var + eps) per channel (for the backward
/// pass), and the running statistics updated in place.
template <device_element T>
void batch_norm_forward_train(const batch_norm_geometry& g, const T* x, const float* gamma, const float* beta, T* y,
                              float* save_mean, float* save_inv_std, float* running_mean, float* running_var,
                              context& ctx, shape4 shape = {}) {
    auto& p = detail::bn_plan_for<T>(g, shape, ctx, "tricks::gpu::batch_norm_forward_train");
    const float alpha = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(
        ctx.cudnn(), detail::bn_mode(ctx), &alpha, &zero, p.x, x, p.x, y, p.param, gamma, beta,
        static_cast<double>(g.momentum), running_mean, running_var, static_cast<double>(g.eps), save_mean, save_inv_std));
}

/// Evaluation-mode forward with the running statistics (our kernel, see the top of this file).
template <device_element T>
void batch_norm_forward_eval(const batch_norm_geometry& g, const T* x, const float* gamma, const float* beta,
                             const float* running_mean, const float* running_var, T* y, context& ctx, shape4 shape = {}) {
    (void)detail::bn_shape(g, shape, "tricks::gpu::batch_norm_forward_eval");
    const std::size_t total = g.pixels * static_cast<std::size_t>(g.channels);
    detail::bn_eval_kernel<T><<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(
        total, g.channels, x, gamma, beta, running_mean, running_var, g.eps, y);
    TRICKS_CUDA_CHECK_LAUNCH("bn_eval_kernel");
}

/// Training-mode backward: dx, dgamma = sum(dy * xhat), dbeta = sum(dy); all overwritten.
template <device_element T>
void batch_norm_backward(const batch_norm_geometry& g, const T* x, const T* dy, const float* gamma,
                         const float* save_mean, const float* save_inv_std, T* dx, float* dgamma, float* dbeta,
                         context& ctx, shape4 shape = {}) {
    auto& p = detail::bn_plan_for<T>(g, shape, ctx, "tricks::gpu::batch_norm_backward");
    const float one = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnBatchNormalizationBackward(ctx.cudnn(), detail::bn_mode(ctx), &one, &zero, &one, &zero, p.x, x,
                                                      p.x, dy, p.x, dx, p.param, gamma, dgamma, dbeta,
                                                      static_cast<double>(g.eps), save_mean, save_inv_std));
}

}  // namespace tricks::backend::gpu
