#pragma once
// gpu::context — what backend::cuda kernels need besides their arguments: the stream, the cuDNN and
// cuBLAS handles bound to it, the workspace arena, and per-shape plans (cuDNN descriptors and the
// convolution algorithms chosen once per geometry). It plays the role of the CPU kernels'
// `workspace&` argument: every gpu:: function takes it last. One context per device and thread;
// not thread-safe.
#include <algorithm>
#include <compare>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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
    /// Batch norm (training mode) through cuDNN's legacy calls instead of our kernels. Off by
    /// default: on cuDNN 9 those calls cost more host time each on NHWC data than the kernels
    /// themselves take for most ResNet layers (measured on an H100: docs/gpu.md).
    bool bn_cudnn = false;
    /// 1x1 stride-1 convolutions as cuBLAS GEMMs (NHWC makes them exactly a matrix product).
    bool pointwise_gemm = true;
    /// Backward-filter of the other convolutions as im2col + one cuBLAS GEMM (dW = dY^T col(X))
    /// instead of cuDNN's backward-filter algorithms (costs a P x K workspace, K = kh*kw*cin).
    /// The environment variable TRICKS_GPU_WGRAD_GEMM=0/1 overrides it.
    bool wgrad_gemm = false;
    /// Time every backend call by category with CUDA events (see profiler); also switched on by the
    /// environment variable TRICKS_GPU_PROFILE=1.
    bool profile = false;
};

/// GPU time per category of call ("conv fwd", "bn bwd", "optimizer", ...), measured with a pair of
/// CUDA events around each call on the stream. Off by default (one branch per call when off); when
/// on, the events serialise nothing but cost host time on every call (docs/design.md,
/// "Measurements"), so profile separately from throughput runs.
class profiler {
public:
    bool enabled = false;

    class scope {
    public:
        scope() = default;
        scope(profiler* p, const char* cat, cudaStream_t s) : p_(p), cat_(cat), s_(s) {
            a_ = p_->event();
            TRICKS_CUDA_CHECK(cudaEventRecord(a_, s_));
        }
        scope(const scope&) = delete;
        scope& operator=(const scope&) = delete;
        ~scope() {
            if (!p_) return;
            cudaEvent_t b = p_->event();
            (void)cudaEventRecord(b, s_);
            p_->spans_.push_back({cat_, a_, b});
        }

    private:
        profiler* p_ = nullptr;
        const char* cat_ = nullptr;
        cudaStream_t s_{};
        cudaEvent_t a_{};
    };

    profiler() = default;
    profiler(const profiler&) = delete;
    profiler& operator=(const profiler&) = delete;
    ~profiler() {
        for (auto& sp : spans_) {
            (void)cudaEventDestroy(sp.a);
            (void)cudaEventDestroy(sp.b);
        }
        for (auto e : pool_) (void)cudaEventDestroy(e);
    }

    /// Adds the time of every finished span to its category (waits for the last one).
    void collect() {
        if (spans_.empty()) return;
        TRICKS_CUDA_CHECK(cudaEventSynchronize(spans_.back().b));
        for (auto& sp : spans_) {
            float ms = 0;
            TRICKS_CUDA_CHECK(cudaEventElapsedTime(&ms, sp.a, sp.b));
            auto& t = totals_[sp.cat];
            t.first += ms;
            t.second += 1;
            pool_.push_back(sp.a);
            pool_.push_back(sp.b);
        }
        spans_.clear();
    }
    void reset() {
        collect();
        totals_.clear();
    }
    /// One line per category, largest first: milliseconds, calls, share of the total.
    [[nodiscard]] std::string report() {
        collect();
        std::vector<std::pair<std::string, std::pair<double, long>>> rows(totals_.begin(), totals_.end());
        std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.first > b.second.first; });
        double total = 0;
        for (auto& r : rows) total += r.second.first;
        std::string out;
        char line[160];
        for (auto& r : rows) {
            std::snprintf(line, sizeof line, "  %-22s %10.2f ms %8ld calls %6.1f%%\n", r.first.c_str(), r.second.first,
                          r.second.second, total > 0 ? 100.0 * r.second.first / total : 0.0);
            out += line;
        }
        std::snprintf(line, sizeof line, "  %-22s %10.2f ms (sum of the timed calls)\n", "total", total);
        return out + line;
    }

private:
    struct span {
        const char* cat;
        cudaEvent_t a, b;
    };
    cudaEvent_t event() {
        if (pool_.empty()) {
            cudaEvent_t e{};
            TRICKS_CUDA_CHECK(cudaEventCreate(&e));
            return e;
        }
        cudaEvent_t e = pool_.back();
        pool_.pop_back();
        return e;
    }
    std::vector<span> spans_;
    std::vector<cudaEvent_t> pool_;
    std::map<std::string, std::pair<double, long>> totals_;
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
    int n, h, w, channels, dtype;
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
        const char* env = std::getenv("TRICKS_GPU_PROFILE");
        prof_.enabled = opt_.profile || (env && env[0] == '1');
        if (const char* w = std::getenv("TRICKS_GPU_WGRAD_GEMM"); w && (w[0] == '0' || w[0] == '1'))
            opt_.wgrad_gemm = w[0] == '1';
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
    /// Times the calls made while the returned scope lives under `category`, when profiling is on.
    [[nodiscard]] profiler::scope time(const char* category) {
        if (!prof_.enabled) return {};
        return profiler::scope(&prof_, category, stream());
    }
    profiler& profile() noexcept { return prof_; }

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
    profiler prof_;
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
