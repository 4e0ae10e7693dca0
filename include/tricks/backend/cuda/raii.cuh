#pragma once
// RAII owners for the CUDA/cuDNN/cuBLAS objects backend::cuda uses: stream, library handles,
// cuDNN descriptors, device buffers, and the device workspace arena (grown on first use with a
// given size, reused afterwards: a warmed-up training step performs no cudaMalloc).
// All are move-only. Destructors never throw (a failing destroy call is ignored: the process is
// either shutting down or already reporting an error).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "tricks/backend/cuda/error.cuh"

namespace tricks::backend::gpu {

namespace detail {
/// Owner of one library object `H`, destroyed by `Destroy(h)`.
template <class H, auto Destroy>
class unique_object {
public:
    unique_object() = default;
    explicit unique_object(H h) noexcept : h_(h) {}
    unique_object(const unique_object&) = delete;
    unique_object& operator=(const unique_object&) = delete;
    unique_object(unique_object&& o) noexcept : h_(std::exchange(o.h_, H{})) {}
    unique_object& operator=(unique_object&& o) noexcept {
        if (this != &o) {
            reset();
            h_ = std::exchange(o.h_, H{});
        }
        return *this;
    }
    ~unique_object() { reset(); }
    void reset() noexcept {
        if (h_) (void)Destroy(h_);
        h_ = H{};
    }
    [[nodiscard]] H get() const noexcept { return h_; }
    operator H() const noexcept { return h_; }  // NOLINT: handles are passed straight to the C APIs

protected:
    H h_{};
};
}  // namespace detail

// ---- stream and library handles ----------------------------------------------------------------

/// A CUDA stream. Created *blocking* (ordered with the legacy default stream), so plain cudaMemcpy
/// calls made by user code are ordered with the backend's kernels.
class stream : public detail::unique_object<cudaStream_t, &cudaStreamDestroy> {
public:
    static stream create() {
        cudaStream_t s{};
        TRICKS_CUDA_CHECK(cudaStreamCreate(&s));
        return stream(s);
    }
    void synchronize() const { TRICKS_CUDA_CHECK(cudaStreamSynchronize(h_)); }

private:
    using unique_object::unique_object;
};

class cudnn_handle : public detail::unique_object<cudnnHandle_t, &cudnnDestroy> {
public:
    static cudnn_handle create(cudaStream_t s) {
        cudnnHandle_t h{};
        TRICKS_CUDA_CHECK(cudnnCreate(&h));
        cudnn_handle out(h);
        TRICKS_CUDA_CHECK(cudnnSetStream(h, s));
        return out;
    }

private:
    using unique_object::unique_object;
};

class cublas_handle : public detail::unique_object<cublasHandle_t, &cublasDestroy> {
public:
    /// Default math mode: FP16 GEMMs use tensor cores with FP32 accumulation (CUBLAS_COMPUTE_32F);
    /// FP32 GEMMs stay in FP32 (no TF32) so fp32 parity with the CPU is tight.
    static cublas_handle create(cudaStream_t s) {
        cublasHandle_t h{};
        TRICKS_CUDA_CHECK(cublasCreate(&h));
        cublas_handle out(h);
        TRICKS_CUDA_CHECK(cublasSetStream(h, s));
        TRICKS_CUDA_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
        TRICKS_CUDA_CHECK(cublasSetPointerMode(h, CUBLAS_POINTER_MODE_HOST));
        return out;
    }

private:
    using unique_object::unique_object;
};

// ---- cuDNN descriptors --------------------------------------------------------------------------

/// A 4-D tensor descriptor in NHWC layout (the canonical activation layout: docs/design.md, "Conventions").
class tensor_descriptor : public detail::unique_object<cudnnTensorDescriptor_t, &cudnnDestroyTensorDescriptor> {
public:
    static tensor_descriptor create() {
        cudnnTensorDescriptor_t d{};
        TRICKS_CUDA_CHECK(cudnnCreateTensorDescriptor(&d));
        return tensor_descriptor(d);
    }
    static tensor_descriptor nhwc(cudnnDataType_t dt, int n, int h, int w, int c) {
        auto d = create();
        TRICKS_CUDA_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NHWC, dt, n, c, h, w));
        return d;
    }

private:
    using unique_object::unique_object;
};

/// A convolution filter descriptor in cuDNN's NHWC filter layout KRSC: [cout][kh][kw][cin].
class filter_descriptor : public detail::unique_object<cudnnFilterDescriptor_t, &cudnnDestroyFilterDescriptor> {
public:
    static filter_descriptor krsc(cudnnDataType_t dt, int cout, int kh, int kw, int cin) {
        cudnnFilterDescriptor_t d{};
        TRICKS_CUDA_CHECK(cudnnCreateFilterDescriptor(&d));
        filter_descriptor out(d);
        TRICKS_CUDA_CHECK(cudnnSetFilter4dDescriptor(d, dt, CUDNN_TENSOR_NHWC, cout, cin, kh, kw));
        return out;
    }

private:
    using unique_object::unique_object;
};

class convolution_descriptor
    : public detail::unique_object<cudnnConvolutionDescriptor_t, &cudnnDestroyConvolutionDescriptor> {
public:
    /// Cross-correlation (what every framework calls convolution), no dilation, one group.
    /// compute = CUDNN_DATA_FLOAT for both float and half data: FP32 accumulation.
    static convolution_descriptor create(int pad, int stride, cudnnDataType_t compute, cudnnMathType_t math) {
        cudnnConvolutionDescriptor_t d{};
        TRICKS_CUDA_CHECK(cudnnCreateConvolutionDescriptor(&d));
        convolution_descriptor out(d);
        TRICKS_CUDA_CHECK(
            cudnnSetConvolution2dDescriptor(d, pad, pad, stride, stride, 1, 1, CUDNN_CROSS_CORRELATION, compute));
        TRICKS_CUDA_CHECK(cudnnSetConvolutionMathType(d, math));
        return out;
    }
    void set_math(cudnnMathType_t math) { TRICKS_CUDA_CHECK(cudnnSetConvolutionMathType(h_, math)); }

private:
    using unique_object::unique_object;
};

class pooling_descriptor : public detail::unique_object<cudnnPoolingDescriptor_t, &cudnnDestroyPoolingDescriptor> {
public:
    static pooling_descriptor create(cudnnPoolingMode_t mode, int k, int pad, int stride) {
        cudnnPoolingDescriptor_t d{};
        TRICKS_CUDA_CHECK(cudnnCreatePoolingDescriptor(&d));
        pooling_descriptor out(d);
        TRICKS_CUDA_CHECK(cudnnSetPooling2dDescriptor(d, mode, CUDNN_PROPAGATE_NAN, k, k, pad, pad, stride, stride));
        return out;
    }

private:
    using unique_object::unique_object;
};

// ---- device memory ------------------------------------------------------------------------------

/// An owning device array of T (cudaMalloc/cudaFree). resize() keeps the allocation when it is
/// large enough (contents are then stale), like tricks::tensor on the host.
template <class T>
class device_buffer {
public:
    device_buffer() = default;
    explicit device_buffer(std::size_t n) { resize(n); }
    device_buffer(const device_buffer&) = delete;
    device_buffer& operator=(const device_buffer&) = delete;
    device_buffer(device_buffer&& o) noexcept
        : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), cap_(std::exchange(o.cap_, 0)) {}
    device_buffer& operator=(device_buffer&& o) noexcept {
        if (this != &o) {
            release();
            p_ = std::exchange(o.p_, nullptr);
            n_ = std::exchange(o.n_, 0);
            cap_ = std::exchange(o.cap_, 0);
        }
        return *this;
    }
    ~device_buffer() { release(); }

    void resize(std::size_t n) {
        if (n > cap_) {
            release();
            void* p = nullptr;
            TRICKS_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
            p_ = static_cast<T*>(p);
            cap_ = n;
        }
        n_ = n;
    }
    /// Synchronous copies (ordered with all work already queued on blocking streams).
    void upload(std::span<const T> host) {
        resize(host.size());
        if (!host.empty())
            TRICKS_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    }
    void download(std::span<T> host) const {
        require<cuda_error>(host.size() <= n_, "tricks::gpu::device_buffer::download: asked for ", host.size(),
                            " elements, buffer holds ", n_);
        if (!host.empty())
            TRICKS_CUDA_CHECK(cudaMemcpy(host.data(), p_, host.size() * sizeof(T), cudaMemcpyDeviceToHost));
    }
    [[nodiscard]] std::vector<T> to_host() const {
        std::vector<T> v(n_);
        download(v);
        return v;
    }
    void zero_async(cudaStream_t s) {
        if (n_) TRICKS_CUDA_CHECK(cudaMemsetAsync(p_, 0, n_ * sizeof(T), s));
    }

    [[nodiscard]] T* data() noexcept { return p_; }
    [[nodiscard]] const T* data() const noexcept { return p_; }
    [[nodiscard]] std::size_t size() const noexcept { return n_; }
    [[nodiscard]] std::size_t bytes() const noexcept { return n_ * sizeof(T); }
    [[nodiscard]] bool empty() const noexcept { return n_ == 0; }

private:
    void release() noexcept {
        if (p_) (void)cudaFree(p_);
        p_ = nullptr;
        n_ = cap_ = 0;
    }
    T* p_ = nullptr;
    std::size_t n_ = 0, cap_ = 0;
};

/// The device workspace arena: numbered slots (see `slot`), each grown to the largest size ever
/// asked for and reused afterwards. Growing waits for the device (kernels queued earlier may
/// still use the old block), frees the old block and allocates the new one; after the first step with
/// the largest shapes no call allocates. allocations() counts cudaMalloc calls (for tests).
class device_workspace {
public:
    enum slot : std::size_t { conv = 0, loss = 1, misc = 2, bn = 3 };

    device_workspace() = default;
    device_workspace(const device_workspace&) = delete;
    device_workspace& operator=(const device_workspace&) = delete;
    ~device_workspace() {
        for (auto& s : slots_)
            if (s.p) (void)cudaFree(s.p);
    }

    /// At least `bytes` of device memory (256-byte aligned; contents unspecified); null for 0 bytes
    /// on a never-used slot.
    void* get(std::size_t slot, std::size_t bytes) {
        if (slots_.size() <= slot) slots_.resize(slot + 1);
        auto& s = slots_[slot];
        if (bytes > s.bytes) {
            const std::size_t grown = std::max(bytes, s.bytes + s.bytes / 4);  // amortise slow growth
            if (s.p) {
                TRICKS_CUDA_CHECK(cudaDeviceSynchronize());  // queued kernels may still use the old block
                TRICKS_CUDA_CHECK(cudaFree(s.p));
            }
            s.p = nullptr;
            s.bytes = 0;
            TRICKS_CUDA_CHECK(cudaMalloc(&s.p, grown));
            s.bytes = grown;
            ++allocations_;
        }
        return s.p;
    }
    template <class T>
    T* get_as(std::size_t slot, std::size_t count) {
        return static_cast<T*>(get(slot, count * sizeof(T)));
    }
    /// Grow ahead of time (e.g. to the largest conv workspace of a model) so the first step does
    /// not reallocate mid-way.
    void reserve(std::size_t slot, std::size_t bytes) { (void)get(slot, bytes); }

    [[nodiscard]] std::size_t bytes() const noexcept {
        std::size_t b = 0;
        for (auto& s : slots_) b += s.bytes;
        return b;
    }
    [[nodiscard]] std::size_t allocations() const noexcept { return allocations_; }

private:
    struct block {
        void* p = nullptr;
        std::size_t bytes = 0;
        block() = default;
        block(block&& o) noexcept : p(std::exchange(o.p, nullptr)), bytes(std::exchange(o.bytes, 0)) {}
        block& operator=(block&& o) noexcept {
            std::swap(p, o.p);
            std::swap(bytes, o.bytes);
            return *this;
        }
    };
    std::vector<block> slots_;
    std::size_t allocations_ = 0;
};

}  // namespace tricks::backend::gpu
