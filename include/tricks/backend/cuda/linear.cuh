#pragma once
// Fully connected layer through cuBLAS, same contract as backend/cpu/linear.hpp:
//   y (n x out) = x (n x in) * W (in x out) + b, all row-major, element type T.
// cublasGemmEx with CUBLAS_COMPUTE_32F: FP16 inputs run on tensor cores with FP32 accumulation;
// FP32 inputs stay FP32 (the handle's math mode does not allow TF32).
// cuBLAS is column-major: a row-major R x C matrix is the column-major C x R matrix of its
// transpose, so Y^T = W^T X^T is gemm(N, N, m=out, n=n, k=in, A=W (ld out), B=X (ld in)).
#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"

namespace tricks::backend::gpu {

namespace detail {

/// y[i, j] = b[j]: the GEMM then accumulates onto the bias (beta = 1), so an FP16 output is rounded
/// once, after the bias is added in FP32.
template <class T>
__global__ void broadcast_bias_kernel(std::size_t rows, int cols, const T* __restrict__ b, T* __restrict__ y) {
    const std::size_t total = rows * cols;
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) y[i] = b[i % cols];
}

/// db[j] = sum_i dy[i, j] (FP32 accumulation, rows in order: deterministic).
template <class T>
__global__ void column_sums_kernel(int rows, int cols, const T* __restrict__ dy, T* __restrict__ db) {
    for (std::size_t j = global_thread(); j < static_cast<std::size_t>(cols); j += grid_stride()) {
        float s = 0.f;
        for (int i = 0; i < rows; ++i) s += to_float(dy[static_cast<std::size_t>(i) * cols + j]);
        db[j] = from_float<T>(s);
    }
}

template <class T>
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const T* a, int lda,
          const T* b, int ldb, T* c, int ldc, float beta = 0.f) {
    const float alpha = 1.f;
    constexpr cudaDataType_t dt = dtype_traits<T>::cuda;
    TRICKS_CUDA_CHECK(cublasGemmEx(h, ta, tb, m, n, k, &alpha, a, dt, lda, b, dt, ldb, &beta, c, dt, ldc,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace detail

/// y = x W + b (b may be null), overwritten.
template <device_element T>
void linear_forward(int n, int in, int out, const T* x, const T* w, const T* b, T* y, context& ctx) {
    require<shape_error>(n > 0 && in > 0 && out > 0, "tricks::gpu::linear: bad shape n=", n, " in=", in, " out=", out);
    if (b) {
        const std::size_t total = static_cast<std::size_t>(n) * out;
        detail::broadcast_bias_kernel<T><<<detail::blocks_for(total), detail::threads_per_block, 0, ctx.stream()>>>(
            static_cast<std::size_t>(n), out, b, y);
        TRICKS_CUDA_CHECK_LAUNCH("broadcast_bias_kernel");
    }
    detail::gemm<T>(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, out, n, in, w, out, x, in, y, out, b ? 1.f : 0.f);
}

/// dx = dy W^T (if dx), dw = x^T dy, db = column sums of dy (if db). All overwritten.
template <device_element T>
void linear_backward(int n, int in, int out, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, context& ctx) {
    require<shape_error>(n > 0 && in > 0 && out > 0, "tricks::gpu::linear_backward: bad shape n=", n, " in=", in,
                         " out=", out);
    // dx^T (in x n) = W (in x out) dy^T (out x n); W is stored as the column-major out x in matrix W^T.
    if (dx) detail::gemm<T>(ctx.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, in, n, out, w, out, dy, out, dx, in);
    // dw^T (out x in) = dy^T (out x n) x (n x in); x is stored as the column-major in x n matrix x^T.
    detail::gemm<T>(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, out, in, n, dy, out, x, in, dw, out);
    if (db) {
        detail::column_sums_kernel<T>
            <<<detail::blocks_for(static_cast<std::size_t>(out)), detail::threads_per_block, 0, ctx.stream()>>>(n, out,
                                                                                                                dy, db);
        TRICKS_CUDA_CHECK_LAUNCH("column_sums_kernel");
    }
}

}  // namespace tricks::backend::gpu
