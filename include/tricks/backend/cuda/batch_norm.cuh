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
#include <algorithm>
#include <climits>

#include "tricks/backend/geometry.hpp"
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

// ---- our training-mode kernels -------------------------------------------------------------------
// Per-channel sums over the pixels of an NHWC tensor: the pixels are cut into `chunks` fixed chunks
// (a function of the shape only), each block sums one chunk for up to 256 channels (threads laid out
// as rows x cols, cols = min(C, 256) consecutive channels, so a warp reads consecutive addresses),
// in double; the chunk sums are then added in chunk order by one thread per channel. The same
// input gives the same bits on every run.

struct bn_layout {
    std::size_t pixels, chunk;
    int c, cols, rows, chunks;
};
inline bn_layout bn_layout_of(std::size_t pixels, int c) {
    bn_layout l{};
    l.pixels = pixels;
    l.c = c;
    l.cols = std::min(c, 256);
    l.rows = 256 / l.cols;
    l.chunks = static_cast<int>(std::clamp<std::size_t>(pixels / 256, 1, 2048));
    l.chunk = (pixels + static_cast<std::size_t>(l.chunks) - 1) / static_cast<std::size_t>(l.chunks);
    return l;
}

/// acc[0] += x
template <class T>
struct bn_sum_op {
    const T* x;
    __device__ void operator()(std::size_t i, int, double* acc) const { acc[0] += to_float(x[i]); }
};
/// acc[0] += (x - mean)^2
template <class T>
struct bn_sq_op {
    const T* x;
    const float* mean;
    __device__ void operator()(std::size_t i, int c, double* acc) const {
        const double d = static_cast<double>(to_float(x[i])) - mean[c];
        acc[0] += d * d;
    }
};
/// acc[0] += dy, acc[1] += dy * (x - mean)
template <class T>
struct bn_bwd_op {
    const T* x;
    const T* dy;
    const float* mean;
    __device__ void operator()(std::size_t i, int c, double* acc) const {
        const double g = to_float(dy[i]);
        acc[0] += g;
        acc[1] += g * (static_cast<double>(to_float(x[i])) - mean[c]);
    }
};

/// partial[(chunk * N + k) * C + c] = the chunk's sum of accumulator k for channel c.
template <int N, class Op>
__global__ void __launch_bounds__(256) bn_partials_kernel(bn_layout l, Op op, double* __restrict__ partial) {
    const int t = static_cast<int>(threadIdx.x);
    const int r = t / l.cols, cc = t % l.cols;
    const int c = static_cast<int>(blockIdx.y) * l.cols + cc;
    const std::size_t p0 = static_cast<std::size_t>(blockIdx.x) * l.chunk;
    const std::size_t p1 = p0 + l.chunk < l.pixels ? p0 + l.chunk : l.pixels;
    double acc[N] = {};
    if (r < l.rows && c < l.c)
        for (std::size_t p = p0 + static_cast<std::size_t>(r); p < p1; p += static_cast<std::size_t>(l.rows))
            op(p * static_cast<std::size_t>(l.c) + static_cast<std::size_t>(c), c, acc);
    __shared__ double sh[N][256];
#pragma unroll
    for (int k = 0; k < N; ++k) sh[k][t] = acc[k];
    __syncthreads();
    if (r == 0 && c < l.c) {
#pragma unroll
        for (int k = 0; k < N; ++k) {
            double s = 0;
            for (int rr = 0; rr < l.rows; ++rr) s += sh[k][rr * l.cols + cc];
            partial[(static_cast<std::size_t>(blockIdx.x) * N + k) * static_cast<std::size_t>(l.c) + c] = s;
        }
    }
}

template <int N, class Op>
void bn_partials(const bn_layout& l, Op op, double* partial, context& ctx) {
    const dim3 grid(static_cast<unsigned>(l.chunks), static_cast<unsigned>((l.c + l.cols - 1) / l.cols));
    bn_partials_kernel<N, Op><<<grid, 256, 0, ctx.stream()>>>(l, op, partial);
    TRICKS_CUDA_CHECK_LAUNCH("bn_partials_kernel");
}

/// Sum of the chunk partials of accumulator k, channel c, in chunk order.
__device__ inline double bn_total(const bn_layout& l, const double* partial, int n, int k, int c) {
    double s = 0;
    for (int ch = 0; ch < l.chunks; ++ch)
        s += partial[(static_cast<std::size_t>(ch) * n + k) * static_cast<std::size_t>(l.c) + c];
    return s;
}

template <class = void>
__global__ void bn_mean_kernel(bn_layout l, const double* __restrict__ partial, float* __restrict__ mean) {
    for (int c = static_cast<int>(global_thread()); c < l.c; c += static_cast<int>(grid_stride()))
        mean[c] = static_cast<float>(bn_total(l, partial, 1, 0, c) / static_cast<double>(l.pixels));
}

/// inv_std, running statistics, and y = x * a + b's per-channel a, b (as the CPU kernel).
template <class = void>
__global__ void bn_stats_kernel(bn_layout l, const double* __restrict__ partial, const float* __restrict__ mean,
                                const float* __restrict__ gamma, const float* __restrict__ beta, float eps,
                                float momentum, float* __restrict__ inv_std, float* __restrict__ running_mean,
                                float* __restrict__ running_var, float* __restrict__ ab) {
    for (int c = static_cast<int>(global_thread()); c < l.c; c += static_cast<int>(grid_stride())) {
        const double ss = bn_total(l, partial, 1, 0, c);
        const double m = static_cast<double>(l.pixels);
        const double var = ss / m;
        const float is = static_cast<float>(1.0 / sqrt(var + eps));
        inv_std[c] = is;
        const double unbiased = l.pixels > 1 ? ss / (m - 1) : var;
        running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean[c]);
        running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * unbiased);
        const float a = gamma[c] * is;
        ab[c] = a;
        ab[l.c + c] = beta[c] - mean[c] * a;
    }
}

/// dgamma, dbeta and dx = k1 * dy + k2 * (x - mean) + k3's constants (as the CPU kernel).
template <class = void>
__global__ void bn_grad_stats_kernel(bn_layout l, const double* __restrict__ partial, const float* __restrict__ gamma,
                                     const float* __restrict__ inv_std, float* __restrict__ dgamma,
                                     float* __restrict__ dbeta, float* __restrict__ k) {
    for (int c = static_cast<int>(global_thread()); c < l.c; c += static_cast<int>(grid_stride())) {
        const double m = static_cast<double>(l.pixels);
        const double is = inv_std[c];
        const double dg = bn_total(l, partial, 2, 1, c) * is;
        const double db = bn_total(l, partial, 2, 0, c);
        dgamma[c] = static_cast<float>(dg);
        dbeta[c] = static_cast<float>(db);
        k[c] = static_cast<float>(gamma[c] * is);
        k[l.c + c] = static_cast<float>(-gamma[c] * is * is * dg / m);
        k[2 * l.c + c] = static_cast<float>(-gamma[c] * is * db / m);
    }
}

template <class T>
__global__ void bn_apply_kernel(std::size_t total, int c, const T* __restrict__ x, const float* __restrict__ ab,
                                T* __restrict__ y) {
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const int ch = static_cast<int>(i % static_cast<std::size_t>(c));
        y[i] = from_float<T>(to_float(x[i]) * ab[ch] + ab[c + ch]);
    }
}

template <class T>
__global__ void bn_dx_kernel(std::size_t total, int c, const T* __restrict__ x, const T* __restrict__ dy,
                             const float* __restrict__ mean, const float* __restrict__ k, T* __restrict__ dx) {
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const int ch = static_cast<int>(i % static_cast<std::size_t>(c));
        dx[i] = from_float<T>(k[ch] * to_float(dy[i]) + k[c + ch] * (to_float(x[i]) - mean[ch]) + k[2 * c + ch]);
    }
}

/// Scratch for one BN call: chunk partials (doubles), then room for 4C + 4 per-channel floats.
inline double* bn_scratch(const bn_layout& l, int accumulators, float** floats, context& ctx) {
    const std::size_t nd = static_cast<std::size_t>(l.chunks) * accumulators * static_cast<std::size_t>(l.c);
    double* d = ctx.workspace().get_as<double>(device_workspace::bn, nd + 2 * static_cast<std::size_t>(l.c) + 2);
    *floats = reinterpret_cast<float*>(d + nd);
    return d;
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
    if (!ctx.options().bn_cudnn) {
        (void)detail::bn_shape(g, shape, "tricks::gpu::batch_norm_forward_train");
        const auto l = detail::bn_layout_of(g.pixels, g.channels);
        float* ab = nullptr;
        double* partial = detail::bn_scratch(l, 1, &ab, ctx);
        const unsigned cb = detail::blocks_for(static_cast<std::size_t>(g.channels));
        detail::bn_partials<1>(l, detail::bn_sum_op<T>{x}, partial, ctx);
        detail::bn_mean_kernel<><<<cb, detail::threads_per_block, 0, ctx.stream()>>>(l, partial, save_mean);
        TRICKS_CUDA_CHECK_LAUNCH("bn_mean_kernel");
        detail::bn_partials<1>(l, detail::bn_sq_op<T>{x, save_mean}, partial, ctx);
        detail::bn_stats_kernel<><<<cb, detail::threads_per_block, 0, ctx.stream()>>>(
            l, partial, save_mean, gamma, beta, g.eps, g.momentum, save_inv_std, running_mean, running_var, ab);
        TRICKS_CUDA_CHECK_LAUNCH("bn_stats_kernel");
        const std::size_t total = g.pixels * static_cast<std::size_t>(g.channels);
        detail::bn_apply_kernel<T>
            <<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(total, g.channels, x, ab, y);
        TRICKS_CUDA_CHECK_LAUNCH("bn_apply_kernel");
        return;
    }
    auto& p = detail::bn_plan_for<T>(g, shape, ctx, "tricks::gpu::batch_norm_forward_train");
    const float alpha = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnBatchNormalizationForwardTraining(ctx.cudnn(), detail::bn_mode(ctx), &alpha, &zero, p.x, x,
                                                             p.x, y, p.param, gamma, beta,
                                                             static_cast<double>(g.momentum), running_mean, running_var,
                                                             static_cast<double>(g.eps), save_mean, save_inv_std));
}

/// Evaluation-mode forward with the running statistics (our kernel, see the top of this file).
template <device_element T>
void batch_norm_forward_eval(const batch_norm_geometry& g, const T* x, const float* gamma, const float* beta,
                             const float* running_mean, const float* running_var, T* y, context& ctx,
                             shape4 shape = {}) {
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
    if (!ctx.options().bn_cudnn) {
        (void)detail::bn_shape(g, shape, "tricks::gpu::batch_norm_backward");
        const auto l = detail::bn_layout_of(g.pixels, g.channels);
        float* k = nullptr;
        double* partial = detail::bn_scratch(l, 2, &k, ctx);
        detail::bn_partials<2>(l, detail::bn_bwd_op<T>{x, dy, save_mean}, partial, ctx);
        detail::bn_grad_stats_kernel<>
            <<<detail::blocks_for(static_cast<std::size_t>(g.channels)), detail::threads_per_block, 0, ctx.stream()>>>(
                l, partial, gamma, save_inv_std, dgamma, dbeta, k);
        TRICKS_CUDA_CHECK_LAUNCH("bn_grad_stats_kernel");
        const std::size_t total = g.pixels * static_cast<std::size_t>(g.channels);
        detail::bn_dx_kernel<T><<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(
            total, g.channels, x, dy, save_mean, k, dx);
        TRICKS_CUDA_CHECK_LAUNCH("bn_dx_kernel");
        return;
    }
    auto& p = detail::bn_plan_for<T>(g, shape, ctx, "tricks::gpu::batch_norm_backward");
    const float one = 1.f, zero = 0.f;
    TRICKS_CUDA_CHECK(cudnnBatchNormalizationBackward(ctx.cudnn(), detail::bn_mode(ctx), &one, &zero, &one, &zero, p.x,
                                                      x, p.x, dy, p.x, dx, p.param, gamma, dgamma, dbeta,
                                                      static_cast<double>(g.eps), save_mean, save_inv_std));
}

}  // namespace tricks::backend::gpu
