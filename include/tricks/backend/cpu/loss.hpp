#pragma once
// Softmax cross-entropy against soft targets q (rows sum to 1). One kernel serves hard labels,
// label smoothing, mixup and distillation: they differ only in how q is built (train/loss.hpp).
//   loss = -1/n sum_i sum_k q_ik log softmax(z_i)_k,   dloss/dz_i = (softmax(z_i) - q_i) / n
#include <algorithm>
#include <cmath>

namespace tricks::backend::host {

/// Returns the mean loss; writes dz (may be null) and the probabilities p (may be null).
/// Accumulates in double: the loss is reported and compared bit for bit across runs.
inline double softmax_cross_entropy(int n, int k, const float* z, const float* q, float* dz, float* p = nullptr) {
    double total = 0;
    for (int i = 0; i < n; ++i) {
        const float* zi = z + static_cast<std::size_t>(i) * k;
        const float* qi = q + static_cast<std::size_t>(i) * k;
        const float m = *std::max_element(zi, zi + k);
        double se = 0;
        for (int j = 0; j < k; ++j) se += std::exp(static_cast<double>(zi[j] - m));
        const double lse = m + std::log(se);
        for (int j = 0; j < k; ++j) {
            const double logp = zi[j] - lse;
            if (qi[j] != 0.f) total -= qi[j] * logp;
            const double pj = std::exp(logp);
            if (dz) dz[static_cast<std::size_t>(i) * k + j] = static_cast<float>((pj - qi[j]) / n);
            if (p) p[static_cast<std::size_t>(i) * k + j] = static_cast<float>(pj);
        }
    }
    return total / n;
}

/// softmax(z / T) row by row (the distillation targets of paper §5.3).
inline void softmax(int n, int k, const float* z, float temperature, float* p) {
    for (int i = 0; i < n; ++i) {
        const float* zi = z + static_cast<std::size_t>(i) * k;
        float* pi = p + static_cast<std::size_t>(i) * k;
        const float m = *std::max_element(zi, zi + k);
        double se = 0;
        for (int j = 0; j < k; ++j) se += std::exp(static_cast<double>(zi[j] - m) / temperature);
        for (int j = 0; j < k; ++j)
            pi[j] = static_cast<float>(std::exp(static_cast<double>(zi[j] - m) / temperature) / se);
    }
}

}  // namespace tricks::backend::host
