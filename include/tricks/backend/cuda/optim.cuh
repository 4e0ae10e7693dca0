#pragma once
// The optimizer step and dynamic loss scaling on the device (precision::fp16_mixed, paper §3.2).
//
// One fused kernel per step over all parameters (sgd_multi), in train/optim.hpp's form:
//   g = grad / S + wd * w      (wd = 0 where the tensor's decay flag is off: no_bias_decay)
//   v = mu * v + g
//   w = w - lr * (nesterov ? g + mu * v : v)
// on FP32 master weights w and FP32 momentum v, writing the storage-precision (FP16) copy of w that
// the layers read in the same pass. S is the loss scale (1 without a scaler).
//
// Dynamic loss scaling without a host round trip (train/precision.hpp's loss_scaler on the device):
//   scaler.check(...)   any inf/NaN in a gradient -> state.found_inf = 1
//   sgd.step(..., scaler.state())   skips the whole update when found_inf, else unscales by 1/S
//   scaler.update()     found_inf: S = max(S/2, 1), skipped += 1; else after `window` clean steps
//                       S *= 2; clears found_inf for the next step
// All three are stream-ordered kernels; read() copies the state to the host when a report needs it.
#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"

namespace tricks::backend::gpu {

/// Device-resident loss-scale state (lives in device memory; read it with dynamic_loss_scale::read).
struct loss_scale_state {
    float scale = 65536.f;
    int found_inf = 0;
    int clean_steps = 0;
    int window = 2000;
    long long skipped = 0;
};

/// One parameter tensor as the fused step sees it (all pointers are device pointers).
template <class T>
struct sgd_tensor {
    float* master = nullptr;    // FP32 master weights
    float* velocity = nullptr;  // FP32 momentum buffer
    const T* grad = nullptr;    // gradient in storage precision (scaled by S under loss scaling)
    T* model = nullptr;         // storage-precision copy written after the update; may be null
    std::size_t n = 0;
    bool decay = true;  // weight decay applies (false for bias / BN under no_bias_decay)
};

struct sgd_hyper {
    float lr = 0.1f;
    float momentum = 0.9f;
    float weight_decay = 1e-4f;
    bool nesterov = false;
};

namespace detail {

/// The update of one tensor by this thread's share of the grid (x dimension).
template <class T>
__device__ __forceinline__ void sgd_apply(const sgd_tensor<T>& t, const sgd_hyper& h, const loss_scale_state* st) {
    const float inv = st ? 1.f / st->scale : 1.f;
    const float wd = t.decay ? h.weight_decay : 0.f;
    for (std::size_t i = global_thread(); i < t.n; i += grid_stride()) {
        const float w = t.master[i];
        const float g = to_float(t.grad[i]) * inv + wd * w;
        const float v = h.momentum * t.velocity[i] + g;
        t.velocity[i] = v;
        const float nw = w - h.lr * (h.nesterov ? g + h.momentum * v : v);
        t.master[i] = nw;
        if (t.model) t.model[i] = from_float<T>(nw);
    }
}

template <class T>
__global__ void sgd_kernel(const sgd_tensor<T>* __restrict__ list, int first, sgd_hyper h,
                           const loss_scale_state* __restrict__ st) {
    if (st && st->found_inf) return;  // overflow: skip the step (uniform over the grid)
    const sgd_tensor<T> t = list[first + static_cast<int>(blockIdx.y)];  // into registers
    sgd_apply(t, h, st);
}

template <class T>
__global__ void sgd_single_kernel(sgd_tensor<T> t, sgd_hyper h, const loss_scale_state* __restrict__ st) {
    if (st && st->found_inf) return;
    sgd_apply(t, h, st);
}

template <class T>
__global__ void check_finite_kernel(std::size_t n, const T* __restrict__ x, int* __restrict__ flag) {
    bool bad = false;
    for (std::size_t i = global_thread(); i < n; i += grid_stride()) bad |= !isfinite(to_float(x[i]));
    if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

template <class T>
__global__ void check_finite_multi_kernel(const sgd_tensor<T>* __restrict__ list, int first, int* __restrict__ flag) {
    const sgd_tensor<T> t = list[first + static_cast<int>(blockIdx.y)];
    bool bad = false;
    for (std::size_t i = global_thread(); i < t.n; i += grid_stride()) bad |= !isfinite(to_float(t.grad[i]));
    if (__syncthreads_or(bad) && threadIdx.x == 0) *flag = 1;
}

template <class = void>
__global__ void loss_scale_update_kernel(loss_scale_state* s) {
    if (s->found_inf) {
        s->scale = fmaxf(s->scale * 0.5f, 1.f);
        s->clean_steps = 0;
        ++s->skipped;
    } else if (++s->clean_steps >= s->window) {
        s->scale *= 2.f;
        s->clean_steps = 0;
    }
    s->found_inf = 0;
}

/// Blocks along x for the multi-tensor kernels: enough for the largest tensor (8 elements per
/// thread), at most 1024 (blocks of smaller tensors exit at once).
inline unsigned multi_blocks_x(std::size_t max_n) {
    return static_cast<unsigned>(
        std::clamp<std::size_t>((max_n + threads_per_block * 8 - 1) / (threads_per_block * 8), 1, 1024));
}
inline constexpr int max_grid_y = 65535;

}  // namespace detail

/// The fused SGD step over a fixed list of parameter tensors (uploaded once; each step is one launch).
template <device_element T>
class sgd_multi {
public:
    sgd_multi() = default;
    explicit sgd_multi(std::span<const sgd_tensor<T>> tensors) {
        list_.upload(tensors);
        count_ = static_cast<int>(tensors.size());
        for (const auto& t : tensors) max_n_ = std::max(max_n_, t.n);
    }
    /// scaler: device loss-scale state (dynamic_loss_scale::state()) or null for no scaling.
    void step(const sgd_hyper& h, const loss_scale_state* scaler, context& ctx) const {
        for (int first = 0; first < count_; first += detail::max_grid_y) {
            const dim3 grid(detail::multi_blocks_x(max_n_),
                            static_cast<unsigned>(std::min(count_ - first, detail::max_grid_y)));
            detail::sgd_kernel<T><<<grid, detail::threads_per_block, 0, ctx.stream()>>>(list_.data(), first, h, scaler);
            TRICKS_CUDA_CHECK_LAUNCH("sgd_kernel");
        }
    }
    /// Sets *flag (device int) to 1 if any gradient holds an inf or NaN (leaves it alone otherwise).
    void check_finite(int* flag, context& ctx) const {
        for (int first = 0; first < count_; first += detail::max_grid_y) {
            const dim3 grid(detail::multi_blocks_x(max_n_),
                            static_cast<unsigned>(std::min(count_ - first, detail::max_grid_y)));
            detail::check_finite_multi_kernel<T>
                <<<grid, detail::threads_per_block, 0, ctx.stream()>>>(list_.data(), first, flag);
            TRICKS_CUDA_CHECK_LAUNCH("check_finite_multi_kernel");
        }
    }
    [[nodiscard]] int size() const noexcept { return count_; }

private:
    device_buffer<sgd_tensor<T>> list_;
    int count_ = 0;
    std::size_t max_n_ = 0;
};

/// The fused step for one tensor (one launch per tensor; prefer sgd_multi for a whole model).
template <device_element T>
void sgd_update(const sgd_tensor<T>& t, const sgd_hyper& h, const loss_scale_state* scaler, context& ctx) {
    if (t.n == 0) return;
    detail::sgd_single_kernel<T><<<detail::blocks_for(t.n), detail::threads_per_block, 0, ctx.stream()>>>(t, h, scaler);
    TRICKS_CUDA_CHECK_LAUNCH("sgd_single_kernel");
}

/// Sets *flag (device int) to 1 if x[0, n) holds an inf or NaN; leaves it alone otherwise.
template <device_element T>
void check_finite(std::size_t n, const T* x, int* flag, context& ctx) {
    if (n == 0) return;
    detail::check_finite_kernel<T><<<detail::blocks_for(n), detail::threads_per_block, 0, ctx.stream()>>>(n, x, flag);
    TRICKS_CUDA_CHECK_LAUNCH("check_finite_kernel");
}

/// Dynamic loss scaling with its state on the device.
class dynamic_loss_scale {
public:
    explicit dynamic_loss_scale(float initial_scale = 65536.f, int window = 2000) {
        loss_scale_state s;
        s.scale = initial_scale;
        s.window = window;
        state_.upload(std::span<const loss_scale_state>(&s, 1));
    }
    [[nodiscard]] loss_scale_state* state() noexcept { return state_.data(); }
    [[nodiscard]] const loss_scale_state* state() const noexcept { return state_.data(); }
    /// Device address of S (for softmax_cross_entropy_async's dz_scale).
    [[nodiscard]] const float* scale() const noexcept {
        return reinterpret_cast<const float*>(reinterpret_cast<const char*>(state_.data()) +
                                              offsetof(loss_scale_state, scale));
    }
    [[nodiscard]] int* found_inf() noexcept {
        return reinterpret_cast<int*>(reinterpret_cast<char*>(state_.data()) + offsetof(loss_scale_state, found_inf));
    }
    template <device_element T>
    void check(std::size_t n, const T* grad, context& ctx) {
        check_finite(n, grad, found_inf(), ctx);
    }
    template <device_element T>
    void check(const sgd_multi<T>& params, context& ctx) {
        params.check_finite(found_inf(), ctx);
    }
    void update(context& ctx) {
        detail::loss_scale_update_kernel<><<<1, 1, 0, ctx.stream()>>>(state_.data());
        TRICKS_CUDA_CHECK_LAUNCH("loss_scale_update_kernel");
    }
    /// Sets the step counters (resuming from a checkpoint); synchronous.
    void restore(int clean_steps, long long skipped) {
        loss_scale_state s = read_blocking();
        s.clean_steps = clean_steps;
        s.skipped = skipped;
        s.found_inf = 0;
        state_.upload(std::span<const loss_scale_state>(&s, 1));
    }
    /// Synchronising copy of the state (for reports; not needed per step).
    [[nodiscard]] loss_scale_state read(context& ctx) const {
        loss_scale_state s;
        TRICKS_CUDA_CHECK(cudaMemcpyAsync(&s, state_.data(), sizeof s, cudaMemcpyDeviceToHost, ctx.stream()));
        ctx.synchronize();
        return s;
    }

private:
    loss_scale_state read_blocking() const {
        loss_scale_state s;
        TRICKS_CUDA_CHECK(cudaMemcpy(&s, state_.data(), sizeof s, cudaMemcpyDeviceToHost));
        return s;
    }
    device_buffer<loss_scale_state> state_;
};

}  // namespace tricks::backend::gpu
