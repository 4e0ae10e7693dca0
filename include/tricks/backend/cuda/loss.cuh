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
    mean_loss_kernel(int n, const double* __restrict__ row_loss, double* __restrict__ out_d,
                     float* __restrict__ out_f) {
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
/// Distillation rows (paper §5.3, train/loss.hpp's distillation_term): per row,
///   loss_i = -sum_k softmax(r_i/T)_k log softmax(z_i/T)_k,
///   dz_ik += scale * T * (softmax(z_i/T)_k - softmax(r_i/T)_k) / n   (the T^2 factor times d(z/T)/dz = 1/T).
template <class T, class R>
__global__ void __launch_bounds__(loss_threads)
    distill_rows_kernel(int n, int k, const T* __restrict__ z, const R* __restrict__ r, float temperature,
                        T* __restrict__ dz, const float* __restrict__ dz_scale, double* __restrict__ row_loss) {
    const double scale = dz_scale ? static_cast<double>(*dz_scale) : 1.0;
    const double t = temperature;
    for (int i = blockIdx.x; i < n; i += gridDim.x) {
        const std::size_t off = static_cast<std::size_t>(i) * k;
        float mz = -INFINITY, mr = -INFINITY;
        for (int j = threadIdx.x; j < k; j += blockDim.x) {
            mz = fmaxf(mz, to_float(z[off + j]));
            mr = fmaxf(mr, to_float(r[off + j]));
        }
        mz = block_max(mz);
        mr = block_max(mr);
        double sz = 0, sr = 0;
        for (int j = threadIdx.x; j < k; j += blockDim.x) {
            sz += exp((to_float(z[off + j]) - static_cast<double>(mz)) / t);
            sr += exp((to_float(r[off + j]) - static_cast<double>(mr)) / t);
        }
        sz = block_sum(sz);
        sr = block_sum(sr);
        const double lsz = log(sz);
        double loss = 0;
        for (int j = threadIdx.x; j < k; j += blockDim.x) {
            const double logpz = (to_float(z[off + j]) - static_cast<double>(mz)) / t - lsz;
            const double pr = exp((to_float(r[off + j]) - static_cast<double>(mr)) / t) / sr;
            if (pr > 0) loss -= pr * logpz;
            const double g = to_float(dz[off + j]) + scale * t * (exp(logpz) - pr) / n;
            dz[off + j] = from_float<T>(static_cast<float>(g));
        }
        loss = block_sum(loss);
        if (threadIdx.x == 0) row_loss[i] = loss;
    }
}

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

/// Writes the mean loss to *loss (device float, may be null), dz = (p - q) / n * (*dz_scale)
/// (dz_scale: device pointer, null = 1; the loss scale of fp16_mixed), and p (may be null). No host
/// sync. Returns the device address of the mean loss in double (valid until the next loss call on
/// this context).
template <device_element T>
const double* softmax_cross_entropy_async(int n, int k, const T* z, const float* q, T* dz, float* p, float* loss,
                                          const float* dz_scale, context& ctx) {
    return detail::softmax_cross_entropy_launch(n, k, z, q, dz, p, loss, dz_scale, ctx);
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
    detail::softmax_rows_kernel<T>
        <<<detail::row_blocks(n), detail::loss_threads, 0, ctx.stream()>>>(n, k, z, temperature, p);
    TRICKS_CUDA_CHECK_LAUNCH("softmax_rows_kernel");
}

/// The distillation term of paper §5.3 for student logits z and teacher logits r: adds its
/// gradient T^2 * (softmax(z/T) - softmax(r/T)) / T / n (times *dz_scale when given) into dz and
/// returns the device address of the batch mean of -sum softmax(r/T) log softmax(z/T), *without*
/// the T^2 factor (the caller reads it with the CE loss and multiplies). No host sync.
template <device_element T, device_element R>
const double* distillation_term_async(int n, int k, const T* z, const R* r, float temperature, T* dz,
                                      const float* dz_scale, context& ctx) {
    require<shape_error>(n > 0 && k > 0 && temperature > 0.f, "tricks::gpu::distillation_term: bad shape n=", n,
                         " k=", k, " or temperature ", temperature);
    double* scratch = ctx.workspace().get_as<double>(device_workspace::misc, static_cast<std::size_t>(n) + 1);
    detail::distill_rows_kernel<T, R><<<detail::row_blocks(n), detail::loss_threads, 0, ctx.stream()>>>(
        n, k, z, r, temperature, dz, dz_scale, scratch);
    TRICKS_CUDA_CHECK_LAUNCH("distill_rows_kernel");
    detail::mean_loss_kernel<>
        <<<1, detail::loss_threads, 0, ctx.stream()>>>(n, scratch, scratch + n, static_cast<float*>(nullptr));
    TRICKS_CUDA_CHECK_LAUNCH("mean_loss_kernel");
    return scratch + n;
}

}  // namespace tricks::backend::gpu
