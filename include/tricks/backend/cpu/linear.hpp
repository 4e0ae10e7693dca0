#pragma once
// Fully connected layer: y (n x out) = x (n x in) * W (in x out) + b. W is stored in x out so the
// NHWC-flattened features multiply without a transpose.
#include <Eigen/Core>

#include "tricks/core/error.hpp"

namespace tricks::backend {

namespace detail {
using lin_mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using lin_cmap = Eigen::Map<const lin_mat>;
using lin_map = Eigen::Map<lin_mat>;
}  // namespace detail

inline void linear_forward(int n, int in, int out, const float* x, const float* w, const float* b, float* y) {
    require<shape_error>(n > 0 && in > 0 && out > 0, "tricks::linear: bad shape n=", n, " in=", in, " out=", out);
    using namespace detail;
    // Inside a team Eigen stays serial, so its blocking (and the result) is the same for any
    // thread count; the classifier is too small to gain from splitting.
#pragma omp parallel
#pragma omp single
    {
        lin_map Y(y, n, out);
        Y.noalias() = lin_cmap(x, n, in) * lin_cmap(w, in, out);
        if (b) Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, out);
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

}  // namespace tricks::backend
