#pragma once
// Batch normalisation through cuDNN (CUDNN_BATCHNORM_SPATIAL, or SPATIAL_PERSISTENT with
// context_options::bn_persistent). Same contract as backend/cpu/batch_norm.hpp:
//   x, y, dx, dy: NHWC activations of element type T (float or __half);
//   gamma, beta, running/saved statistics, dgamma, dbeta: float (FP32 even for FP16 data).
// cuDNN's conventions coincide with the CPU kernels': exponentialAverageFactor = momentum
// (running = (1 - m) * running + m * batch), the running variance is the unbiased one, and the
// saved "inverse variance" is 1 / sqrt(var + eps) with the biased batch variance.
// The geometry carries only pixels (n*h*w) and channels; the data is described to cuDNN as an
// NHWC tensor of pixels x 1 x 1 x C, which has the same memory layout and the same per-channel
// reduction set as n x h x w x C.
#include <climits>

#include "tricks/backend/cpu/batch_norm.hpp"
#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"

namespace tricks::backend::gpu {

namespace detail {

template <class T>
bn_plan& bn_plan_for(const batch_norm_geometry& g, context& ctx, const char* who) {
    require<shape_error>(g.pixels > 0 && g.channels > 0, who, ": empty input (pixels=", g.pixels,
                         ", channels=", g.channels, ")");
    require<shape_error>(g.pixels <= static_cast<std::size_t>(INT_MAX), who, ": ", g.pixels,
                         " pixels exceed cuDNN's int extent");
    require<shape_error>(static_cast<double>(g.eps) >= CUDNN_BN_MIN_EPSILON, who, ": eps ", g.eps,
                         " is below CUDNN_BN_MIN_EPSILON");
    constexpr cudnnDataType_t dt = dtype_traits<T>::cudnn;
    const bn_key key{static_cast<long long>(g.pixels), g.channels, static_cast<int>(dt)};
    auto& plans = ctx.bn_plans();
    if (auto it = plans.find(key); it != plans.end()) return *it->second;
    auto p = std::make_unique<bn_plan>();
    p->x = tensor_descriptor::nhwc(dt, static_cast<int>(g.pixels), 1, 1, g.channels);
    p->param = tensor_descriptor::create();
    TRICKS_CUDA_CHECK(cudnnDeriveBNTensorDescriptor(p->param, p->x, CUDNN_BATCHNORM_SPATIAL));
    return *plans.emplace(key, std::move(p)).first->second;
}

inline cudnnBatchNormMode_t bn_mode(const context& ctx) {
    return ctx.options().bn_persistent ? CUDNN_BATCHNORM_SPATIAL_PERSISTENT : CUDNN_BATCHNORM_SPATIAL;
}

}  // namespace detail

/// Training-mode forward: y, the batch mean and 1/sqrt(var + eps) per channel (for the backward
/// pass), and the running statistics updated in place.
template <device_element T>
void batch_norm_forward_train(const batch_norm_geometry& g, const T* x, const float* gamma, const float* beta, T* y,
                              float* save_mean, float* save_inv_std, float* running_mean, float* running_var,
                              context& ctx) {
    auto& p = detail::bn_plan_for<T>(g, ctx, "tricks::gpu::batch_norm_forward_train");
    const float alpha = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(
        ctx.cudnn(), detail::bn_mode(ctx), &alpha, &zero, p.x, x, p.x, y, p.param, gamma, beta,
        static_cast<double>(g.momentum), running_mean, running_var, static_cast<double>(g.eps), save_mean, save_inv_std));
}

/// Evaluation-mode forward with the running statistics.
template <device_element T>
void batch_norm_forward_eval(const batch_norm_geometry& g, const T* x, const float* gamma, const float* beta,
                             const float* running_mean, const float* running_var, T* y, context& ctx) {
    auto& p = detail::bn_plan_for<T>(g, ctx, "tricks::gpu::batch_norm_forward_eval");
    const float alpha = 1.f, zero = 0.f;
    // Inference has no persistent variant; SPATIAL is the matching mode.
    TRICKS_CUDA_CHECK(cudnnBatchNormalizationForwardInference(ctx.cudnn(), CUDNN_BATCHNORM_SPATIAL, &alpha, &zero, p.x, x,
                                                              p.x, y, p.param, gamma, beta, running_mean, running_var,
                                                              static_cast<double>(g.eps)));
}

/// Training-mode backward: dx, dgamma = sum(dy * xhat), dbeta = sum(dy); all overwritten.
template <device_element T>
void batch_norm_backward(const batch_norm_geometry& g, const T* x, const T* dy, const float* gamma,
                         const float* save_mean, const float* save_inv_std, T* dx, float* dgamma, float* dbeta,
                         context& ctx) {
    auto& p = detail::bn_plan_for<T>(g, ctx, "tricks::gpu::batch_norm_backward");
    const float one = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnBatchNormalizationBackward(ctx.cudnn(), detail::bn_mode(ctx), &one, &zero, &one, &zero, p.x, x,
                                                      p.x, dy, p.x, dx, p.param, gamma, dgamma, dbeta,
                                                      static_cast<double>(g.eps), save_mean, save_inv_std));
}

}  // namespace tricks::backend::gpu
