#pragma once
// Element types, conversions and launch helpers shared by the backend::cuda kernels.
// Device element types: float (precision::fp32) and __half (precision::fp16_mixed storage).
// Statistics, BN parameters, master weights, momentum and soft targets stay float.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <library_types.h>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include "tricks/backend/cuda/error.cuh"

namespace tricks::backend::gpu {

template <class T>
concept device_element = std::same_as<T, float> || std::same_as<T, __half>;

template <class T>
struct dtype_traits;
template <>
struct dtype_traits<float> {
    static constexpr cudnnDataType_t cudnn = CUDNN_DATA_FLOAT;
    static constexpr cudaDataType_t cuda = CUDA_R_32F;
    static constexpr const char* name = "float32";
};
template <>
struct dtype_traits<__half> {
    static constexpr cudnnDataType_t cudnn = CUDNN_DATA_HALF;
    static constexpr cudaDataType_t cuda = CUDA_R_16F;
    static constexpr const char* name = "float16";
};

/// float <-> element conversions, on host and device (round to nearest even for __half).
__host__ __device__ __forceinline__ float to_float(float x) { return x; }
__host__ __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <class T>
__host__ __device__ __forceinline__ T from_float(float x) {
    if constexpr (std::is_same_v<T, float>)
        return x;
    else
        return __float2half_rn(x);
}

namespace detail {

inline constexpr unsigned threads_per_block = 256;

/// Blocks for a grid-stride loop over n items (capped: each thread then loops).
inline unsigned blocks_for(std::size_t n, unsigned threads = threads_per_block) {
    const std::size_t b = (n + threads - 1) / threads;
    return static_cast<unsigned>(std::clamp<std::size_t>(b, 1, 65535u * 8u));
}

__device__ __forceinline__ std::size_t global_thread() {
    return static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ std::size_t grid_stride() { return static_cast<std::size_t>(gridDim.x) * blockDim.x; }

/// Sum over a block (blockDim.x a multiple of 32, at most 1024). Every thread gets the result.
/// The order of the additions depends only on blockDim.x: deterministic.
template <class V>
__device__ V block_sum(V v) {
    __shared__ V warp_part[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    __syncthreads();  // warp_part may still be read by a previous call
    if (lane == 0) warp_part[warp] = v;
    __syncthreads();
    const unsigned warps = blockDim.x >> 5;
    V t = threadIdx.x < warps ? warp_part[threadIdx.x] : V(0);
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) t += __shfl_down_sync(0xffffffffu, t, o);
    if (threadIdx.x == 0) warp_part[0] = t;
    __syncthreads();
    return warp_part[0];
}

/// Max over a block (same constraints as block_sum).
__device__ inline float block_max(float v) {
    __shared__ float warp_part[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
    __syncthreads();
    if (lane == 0) warp_part[warp] = v;
    __syncthreads();
    const unsigned warps = blockDim.x >> 5;
    float t = threadIdx.x < warps ? warp_part[threadIdx.x] : -INFINITY;
    if (warp == 0)
        for (int o = 16; o > 0; o >>= 1) t = fmaxf(t, __shfl_down_sync(0xffffffffu, t, o));
    if (threadIdx.x == 0) warp_part[0] = t;
    __syncthreads();
    return warp_part[0];
}

}  // namespace detail
}  // namespace tricks::backend::gpu
