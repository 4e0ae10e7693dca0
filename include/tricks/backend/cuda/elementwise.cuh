#pragma once
// Element-wise kernels, same contract as backend/cpu/elementwise.hpp (ReLU, the residual add fused
// with the ReLU after it), plus the few the device needs on top: plain add (merging the gradients
// of a residual block's two branches) and casts between float and __half.
// Arithmetic is FP32 whatever the storage type; an FP16 result is rounded once, at the store.
// Memory-bound: 16-byte vector loads/stores when every pointer is 16-byte aligned (cudaMalloc'd
// buffers and most offsets into them are), element by element otherwise.
#include <cstdint>

#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"

namespace tricks::backend::gpu {

namespace detail {

struct relu_op {
    template <class T>
    __device__ T operator()(T a, T) const {
        return to_float(a) > 0.f ? a : from_float<T>(0.f);
    }
};
struct relu_backward_op {  // (y, dy)
    template <class T>
    __device__ T operator()(T y, T dy) const {
        return to_float(y) > 0.f ? dy : from_float<T>(0.f);
    }
};
struct add_relu_op {
    template <class T>
    __device__ T operator()(T a, T b) const {
        const float s = to_float(a) + to_float(b);
        return from_float<T>(s > 0.f ? s : 0.f);
    }
};
struct add_op {
    template <class T>
    __device__ T operator()(T a, T b) const {
        return from_float<T>(to_float(a) + to_float(b));
    }
};

inline bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

/// y[i] = f(a[i], b[i]); b may be null (unary ops ignore their second operand). y may alias a or b
/// (each element is read and written by the same thread).
template <class T, class F>
__global__ void map2_kernel(std::size_t n, const T* a, const T* b, T* y, F f, bool vectorised) {
    std::size_t start = 0;
    if (vectorised) {
        constexpr int V = 16 / sizeof(T);
        const std::size_t nv = n / V;
        for (std::size_t i = global_thread(); i < nv; i += grid_stride()) {
            const uint4 ra = reinterpret_cast<const uint4*>(a)[i];
            const uint4 rb = b ? reinterpret_cast<const uint4*>(b)[i] : ra;
            const T* pa = reinterpret_cast<const T*>(&ra);
            const T* pb = reinterpret_cast<const T*>(&rb);
            uint4 ry;
            T* py = reinterpret_cast<T*>(&ry);
#pragma unroll
            for (int j = 0; j < V; ++j) py[j] = f(pa[j], pb[j]);
            reinterpret_cast<uint4*>(y)[i] = ry;
        }
        start = nv * V;
    }
    for (std::size_t i = start + global_thread(); i < n; i += grid_stride()) y[i] = f(a[i], b ? b[i] : a[i]);
}

template <class T, class F>
void map2(std::size_t n, const T* a, const T* b, T* y, F f, context& ctx, const char* name) {
    if (n == 0) return;
    const bool vec = aligned16(a) && (!b || aligned16(b)) && aligned16(y);
    const std::size_t work = vec ? n / (16 / sizeof(T)) + 1 : n;
    map2_kernel<T, F><<<blocks_for(work), threads_per_block, 0, ctx.stream()>>>(n, a, b, y, f, vec);
    detail::check(cudaGetLastError(), name, __FILE__, __LINE__);
}

template <class S, class D>
__global__ void cast_kernel(std::size_t n, const S* __restrict__ s, D* __restrict__ d) {
    for (std::size_t i = global_thread(); i < n; i += grid_stride()) d[i] = from_float<D>(to_float(s[i]));
}

}  // namespace detail

template <device_element T>
void relu_forward(std::size_t n, const T* x, T* y, context& ctx) {
    detail::map2(n, x, static_cast<const T*>(nullptr), y, detail::relu_op{}, ctx, "launch of relu_forward");
}

/// dx = dy where the output was positive (y > 0 <=> x > 0), else 0. dx may alias dy.
template <device_element T>
void relu_backward(std::size_t n, const T* y, const T* dy, T* dx, context& ctx) {
    detail::map2(n, y, dy, dx, detail::relu_backward_op{}, ctx, "launch of relu_backward");
}

/// y = relu(a + b): the end of a residual block.
template <device_element T>
void add_relu_forward(std::size_t n, const T* a, const T* b, T* y, context& ctx) {
    detail::map2(n, a, b, y, detail::add_relu_op{}, ctx, "launch of add_relu_forward");
}

/// y = a + b (y may alias a or b).
template <device_element T>
void add(std::size_t n, const T* a, const T* b, T* y, context& ctx) {
    detail::map2(n, a, b, y, detail::add_op{}, ctx, "launch of add");
}

/// dst = src converted (round to nearest even into __half).
template <device_element S, device_element D>
void cast(std::size_t n, const S* src, D* dst, context& ctx) {
    if (n == 0) return;
    detail::cast_kernel<S, D><<<detail::blocks_for(n), detail::threads_per_block, 0, ctx.stream()>>>(n, src, dst);
    TRICKS_CUDA_CHECK_LAUNCH("cast_kernel");
}

}  // namespace tricks::backend::gpu
