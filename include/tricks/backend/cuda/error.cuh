#pragma once
// Error checking for backend::cuda. Every CUDA runtime, cuDNN and cuBLAS call goes through
// TRICKS_CUDA_CHECK, which throws tricks::backend::gpu::cuda_error (a tricks::error) naming the
// library, the failing call as written, the status string and code, and file:line:
//   "cuDNN call failed: cudnnConvolutionForward(...) -> CUDNN_STATUS_NOT_SUPPORTED (3000) at conv.cuh:212"
// Kernel launches are checked with TRICKS_CUDA_CHECK_LAUNCH("kernel name") (launch-configuration
// errors; faults inside a kernel surface at the next synchronising call, which is checked too).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "tricks/core/error.hpp"

namespace tricks::backend::gpu {

/// A CUDA runtime / cuDNN / cuBLAS call failed (or the backend was asked for something the
/// device path does not support).
struct cuda_error : tricks::error {
    using tricks::error::error;
};

namespace detail {

[[noreturn]] inline void throw_call_failed(const char* lib, const char* call, long long code, const char* status,
                                           const char* file, int line) {
    throw cuda_error(tricks::detail::cat(lib, " call failed: ", call, " -> ", status ? status : "(no status string)",
                                         " (", code, ") at ", file, ":", line));
}

inline void check(cudaError_t s, const char* call, const char* file, int line) {
    if (s != cudaSuccess) {
        // Reset the runtime's last-error slot (a no-op for sticky errors), so a later launch check
        // does not report this failure again.
        (void)cudaGetLastError();
        throw_call_failed("CUDA", call, static_cast<long long>(s), cudaGetErrorString(s), file, line);
    }
}
inline void check(cudnnStatus_t s, const char* call, const char* file, int line) {
    if (s != CUDNN_STATUS_SUCCESS)
        throw_call_failed("cuDNN", call, static_cast<long long>(s), cudnnGetErrorString(s), file, line);
}
inline void check(cublasStatus_t s, const char* call, const char* file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS)
        throw_call_failed("cuBLAS", call, static_cast<long long>(s), cublasGetStatusString(s), file, line);
}

}  // namespace detail
}  // namespace tricks::backend::gpu

#define TRICKS_CUDA_CHECK(call) ::tricks::backend::gpu::detail::check((call), #call, __FILE__, __LINE__)
#define TRICKS_CUDA_CHECK_LAUNCH(name) \
    ::tricks::backend::gpu::detail::check(cudaGetLastError(), "launch of kernel " name, __FILE__, __LINE__)
