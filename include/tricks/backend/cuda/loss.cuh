#pragma once
// Softmax cross-entropy against soft targets q (rows sum to 1), the kernel form of
// backend/cpu/loss.hpp: one kernel serves hard labels, label smoothing, mixup and distillation.
//   loss = -1/n sum_i sum_k q_ik log softmax(z_i)_k,   dloss/dz_i = (softmax(z_i) - q_i) / n
// Logits z and gradients dz have the activation type T; targets q and probabilities p are float.
// As on the CPU, the log-sum-exp and the loss accumulate in double; one block per row, then one
// block adds the row losses in a fixed order (the loss is the same bits run to run).
// The _async form writes the mean loss to device memory and takes the loss scale from device
// memory (dynamic loss scaling without a host round trip); the plain form returns the loss
// (it synchronises the stream).
#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"

namespace tricks::backend::gpu {

namespace detail {

inline constexpr unsigned loss_threads = 256;

template <class T>
__global__ void __launch_bounds__(loss_threads)
    softmax_xent_rows_kernel(int n, int k, const T* __restrict__ z, const float* __restrict__ q, T* __restrict__ dz,
                             float* __restrict__ p, const float* __restrict__ dz_scale, double* __restrict__ row_loss) {
    const double scale = dz_scale ? static_cast<double>(*dz_scale) : 1.0;
    for (int i = blockIdx.x; i < n; i += gridDim.x) {
        const std::size_t off = static_cast<std::size_t>(i) * k;
        float m = -INFINITY;
        for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, to_float(z[off + j]));
        m = block_max(m);
        double se = 0;
        for (int j = threadIdx.x; j < k; j += blockDim.x) se += exp(static_cast<double>(to_float(z[off + j]) - m));
        se = block_sum(se);
        const double lse = m + log(se);
        double loss = 0;
        for (int j = threadIdx.x; j < k; j += blockDim.x) {
            const double logp = to_float(z[off + j]) - lse;
            const float qj = q[off + j];
            if (qj != 0.f) loss -= qj * logp;
            const double pj = exp(logp);
            if (dz) dz[off + j] = from_float<T>(static_cast<float>((pj - qj) / n * scale));
            if (p) p[off + j] = static_cast<float>(pj);
        }
        loss = block_sum(loss);
        if (threadIdx.x == 0) row_loss[i] = loss;
    }
}

/// mean = sum(row_loss) / n, written as double (and as float when out_f is not null).
template <class = void>  // a template so the header can be included by several translation units
__global__ void __launch_bounds__(loss_threads)
    mean_loss_kernel(int n, const double* __restrict__ row_loss, double* __restrict__ out_d, float* __restrict__ out_f) {
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += row_loss[i];
    s = block_sum(s);
    if (threadIdx.x == 0) {
        *out_d = s / n;
        if (out_f) *out_f = static_cast<float>(s / n);
    }
}

template <class T>
__global__ void __launch_bounds__(loss_threads)
    softmax_rows_kernel(int n, int k, const T* __restrict__ z, float temperature, float* __restrict__ p) {
    for (int i = blockIdx.x; i < n; i += gridDim.x) {
        const std::size_t off = static_cast<std::size_t>(i) * k;
        float m = -INFINITY;
        for (int j = threadIdx.x; j < k; j += blockDim.x) m = fmaxf(m, to_float(z[off + j]));
        m = block_max(m);
        double se = 0;
        for (int j = threadIdx.x; j < k; j += blockDim.x)
            se += exp(static_cast<double>(to_float(z[off + j]) - m) / temperature);
        se = block_sum(se);
        for (int j = threadIdx.x; j < k; j += blockDim.x)
            p[off + j] = static_cast<float>(exp(static_cast<double>(to_float(z[off + j]) - m) / temperature) / se);
    }
}

inline unsigned row_blocks(int n) { return static_cast<unsigned>(std::min(n, 65535)); }

/// Row losses + the mean; returns the device address of the double mean (in the loss slot).
template <class T>
double* softmax_cross_entropy_launch(int n, int k, const T* z, const float* q, T* dz, float* p, float* loss_f,
                                     const float* dz_scale, context& ctx) {
    require<shape_error>(n > 0 && k > 0, "tricks::gpu::softmax_cross_entropy: bad shape n=", n, " k=", k);
    double* scratch = ctx.workspace().get_as<double>(device_workspace::loss, static_cast<std::size_t>(n) + 1);
    double* mean = scratch + n;
    softmax_xent_rows_kernel<T><<<row_blocks(n), loss_threads, 0, ctx.stream()>>>(n, k, z, q, dz, p, dz_scale, scratch);
    TRICKS_CUDA_CHECK_LAUNCH("softmax_xent_rows_kernel");
    mean_loss_kernel<><<<1, loss_threads, 0, ctx.stream()>>>(n, scratch, mean, loss_f);
    TRICKS_CUDA_CHECK_LAUNCH("mean_loss_kernel");
    return mean;
}

}  // namespace detail

/// Writes the mean loss to *loss (device, may be null), dz = (p - q) / n * (*dz_scale) (dz_scale:
/// device pointer, null = 1; the loss scale of fp16_mixed), and p (may be null). No host sync.
template <device_element T>
void softmax_cross_entropy_async(int n, int k, const T* z, const float* q, T* dz, float* p, float* loss,
                                 const float* dz_scale, context& ctx) {
    (void)detail::softmax_cross_entropy_launch(n, k, z, q, dz, p, loss, dz_scale, ctx);
}

/// Returns the mean loss (synchronises the stream); writes dz (may be null) and p (may be null).
template <device_element T>
double softmax_cross_entropy(int n, int k, const T* z, const float* q, T* dz, float* p, context& ctx) {
    const double* mean = detail::softmax_cross_entropy_launch(n, k, z, q, dz, p, static_cast<float*>(nullptr),
                                                              static_cast<const float*>(nullptr), ctx);
    double out = 0;
    TRICKS_CUDA_CHECK(cudaMemcpyAsync(&out, mean, sizeof(double), cudaMemcpyDeviceToHost, ctx.stream()));
    ctx.synchronize();
    return out;
}

/// softmax(z / T) row by row (the distillation targets of paper §5.3).
template <device_element T>
void softmax(int n, int k, const T* z, float temperature, float* p, context& ctx) {
    require<shape_error>(n > 0 && k > 0 && temperature > 0.f, "tricks::gpu::softmax: bad shape n=", n, " k=", k,
                         " or temperature ", temperature);
    detail::softmax_rows_kernel<T><<<detail::row_blocks(n), detail::loss_threads, 0, ctx.stream()>>>(n, k, z, temperature, p);
    TRICKS_CUDA_CHECK_LAUNCH("softmax_rows_kernel");
}

}  // namespace tricks::backend::gpu
