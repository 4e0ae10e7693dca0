#pragma once
// Fully connected layer: y (n x out) = x (n x in) * W (in x out) + b. W is stored in x out so the
// NHWC-flattened features multiply without a transpose.
#include <Eigen/Core>

#include <algorithm>
#include <cstddef>

#include "tricks/backend/cpu/conv_common.hpp"
#include "tricks/backend/cpu/workspace.hpp"

#include "tricks/core/error.hpp"

namespace tricks::backend::host {

namespace detail {
using lin_mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using lin_cmap = Eigen::Map<const lin_mat>;
using lin_map = Eigen::Map<lin_mat>;
}  // namespace detail

/// y = x W + b. Our GEMM (gemm_rows: every element summed over k in order, then b added), not Eigen's:
/// Eigen picks its kernels (GEMV, GEMM and their remainder paths) by the row count, so the same image
/// gave other logits in a batch of 5 than in a batch of 8 (models::inference_pool runs sub-batches
/// and promises forward()'s bits). Row blocks are split over the threads; the classifier's share of
/// the work is tiny (64 x 10 MACs per image here, 2M of ResNet-50's 4.1G).
inline void linear_forward(int n, int in, int out, const float* x, const float* w, const float* b, float* y) {
    require<shape_error>(n > 0 && in > 0 && out > 0, "tricks::linear: bad shape n=", n, " in=", in, " out=", out);
    constexpr int R = 48;  // rows per task
    const int blocks = (n + R - 1) / R;
#pragma omp parallel for schedule(static) if (work_size(n, in, out) >= 8 * parallel_grain)
    for (int blk = 0; blk < blocks; ++blk) {
        const int r0 = blk * R, rows = std::min(R, n - r0);
        float* yb = y + static_cast<std::size_t>(r0) * out;
        detail::gemm_rows<detail::dense_rows>(x + static_cast<std::size_t>(r0) * in, rows, in, w, out, yb);
        if (b)
            for (int r = 0; r < rows; ++r)
                for (int o = 0; o < out; ++o) yb[static_cast<std::size_t>(r) * out + o] += b[o];
    }
}

/// dx = dy W^T (if dx), dw = x^T dy, db = column sums of dy (if db). All overwritten.
inline void linear_backward(int n, int in, int out, const float* x, const float* w, const float* dy, float* dx,
                            float* dw, float* db) {
    using namespace detail;
#pragma omp parallel
#pragma omp single
    {
        const lin_cmap DY(dy, n, out);
        if (dx) lin_map(dx, n, in).noalias() = DY * lin_cmap(w, in, out).transpose();
        lin_map(dw, in, out).noalias() = lin_cmap(x, n, in).transpose() * DY;
        if (db) Eigen::Map<Eigen::RowVectorXf>(db, out) = DY.colwise().sum();
    }
}

}  // namespace tricks::backend::host
