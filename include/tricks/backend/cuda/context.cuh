#pragma once
// gpu::context — what backend::cuda kernels need besides their arguments: the stream, the cuDNN and
// cuBLAS handles bound to it, the workspace arena, and per-shape plans (cuDNN descriptors and the
// convolution algorithms chosen once per geometry). It plays the role of the CPU kernels'
// `workspace&` argument: every gpu:: function takes it last. One context per device and thread;
// not thread-safe.
#include <compare>
#include <cstddef>
#include <map>
#include <memory>
#include <string>

#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/raii.cuh"

namespace tricks::backend::gpu {

struct context_options {
    /// true: cudnnFind* times every applicable algorithm on the first use of a shape (like PyTorch's
    /// cudnn.benchmark=True); false: cuDNN's heuristics (cudnnGet*_v7), no trial runs.
    bool benchmark = true;
    /// Only algorithms cuDNN reports as deterministic (same bits run to run).
    bool deterministic = false;
    /// Let FP32 convolutions use TF32 tensor cores. Off by default: precision::fp32 on the GPU
    /// then matches the CPU to FP32 rounding (FP16 convolutions always use tensor cores).
    bool allow_tf32 = false;
    /// Largest workspace a convolution algorithm may use.
    std::size_t workspace_limit = std::size_t(1) << 30;
    /// CUDNN_BATCHNORM_SPATIAL_PERSISTENT instead of CUDNN_BATCHNORM_SPATIAL (faster NHWC FP16
    /// kernels; cuDNN documents a possible overflow for some input ranges).
    bool bn_persistent = false;
};

namespace detail {

/// One convolution geometry + element type -> descriptors and the chosen algorithms.
struct conv_key {
    int n, h, w, c, k, kh, kw, stride, pad, dtype;
    friend auto operator<=>(const conv_key&, const conv_key&) = default;
};
struct conv_plan {
    tensor_descriptor x, y;
    filter_descriptor w;
    // One convolution descriptor per direction: each carries the math type of its algorithm.
    convolution_descriptor fwd_conv, bwd_data_conv, bwd_filter_conv;
    bool fwd_ready = false, bwd_data_ready = false, bwd_filter_ready = false;
    cudnnConvolutionFwdAlgo_t fwd_algo{};
    cudnnConvolutionBwdDataAlgo_t bwd_data_algo{};
    cudnnConvolutionBwdFilterAlgo_t bwd_filter_algo{};
    cudnnMathType_t fwd_math{}, bwd_data_math{}, bwd_filter_math{};
    std::size_t fwd_ws = 0, bwd_data_ws = 0, bwd_filter_ws = 0;
};

struct bn_key {
    long long pixels;
    int channels, dtype;
    friend auto operator<=>(const bn_key&, const bn_key&) = default;
};
struct bn_plan {
    tensor_descriptor x, param;  // param: 1 x C x 1 x 1 float (derived by cuDNN)
};

struct pool_key {
    int n, h, w, c, k, stride, pad, mode, dtype;
    friend auto operator<=>(const pool_key&, const pool_key&) = default;
};
struct pool_plan {
    tensor_descriptor x, y;
    pooling_descriptor pool;
};

}  // namespace detail

class context {
public:
    /// device < 0: the current device.
    explicit context(context_options opt = {}, int device = -1) : opt_(opt) {
        if (device >= 0) TRICKS_CUDA_CHECK(cudaSetDevice(device));
        TRICKS_CUDA_CHECK(cudaGetDevice(&device_));
        stream_ = gpu::stream::create();
        cudnn_ = cudnn_handle::create(stream_);
        cublas_ = cublas_handle::create(stream_);
    }
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    [[nodiscard]] cudaStream_t stream() const noexcept { return stream_.get(); }
    [[nodiscard]] cudnnHandle_t cudnn() const noexcept { return cudnn_.get(); }
    [[nodiscard]] cublasHandle_t cublas() const noexcept { return cublas_.get(); }
    [[nodiscard]] int device() const noexcept { return device_; }
    [[nodiscard]] const context_options& options() const noexcept { return opt_; }
    [[nodiscard]] context_options& options() noexcept { return opt_; }
    device_workspace& workspace() noexcept { return ws_; }
    void synchronize() const { stream_.synchronize(); }

    // Plan caches (used by conv.cuh, batch_norm.cuh, pool.cuh). Plans live as long as the context.
    std::map<detail::conv_key, std::unique_ptr<detail::conv_plan>>& conv_plans() noexcept { return conv_; }
    std::map<detail::bn_key, std::unique_ptr<detail::bn_plan>>& bn_plans() noexcept { return bn_; }
    std::map<detail::pool_key, std::unique_ptr<detail::pool_plan>>& pool_plans() noexcept { return pool_; }

private:
    context_options opt_;
    int device_ = 0;
    // Declaration order = destruction in reverse: plans and workspace go before the handles/stream.
    gpu::stream stream_;
    gpu::cudnn_handle cudnn_;
    gpu::cublas_handle cublas_;
    device_workspace ws_;
    std::map<detail::conv_key, std::unique_ptr<detail::conv_plan>> conv_;
    std::map<detail::bn_key, std::unique_ptr<detail::bn_plan>> bn_;
    std::map<detail::pool_key, std::unique_ptr<detail::pool_plan>> pool_;
};

/// Number of CUDA devices, 0 when the runtime reports none or no driver (never throws).
inline int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the sticky "no device"/"insufficient driver" error
        return 0;
    }
    return n;
}

}  // namespace tricks::backend::gpu
