#pragma once
// Targets and the loss: one-hot or label-smoothed targets (paper §5.2), mixup (paper §5.4) and
// the distillation term (paper §5.3). The CE kernel takes soft targets, so each trick is only a
// different way of building q.
#include <cmath>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "tricks/backend/cpu/loss.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/rng.hpp"
#include "tricks/core/tensor.hpp"

namespace tricks {

/// Soft target of one label: one-hot, or with label smoothing (paper §5.2, as written there)
///   q_i = 1 - eps  if i == y,   eps / (K - 1)  otherwise,
/// over the K = `data_classes` classes the data has; a model with more outputs than that (a
/// classifier head padded to a fixed size) gets target 0 on the outputs beyond them.
inline void smoothed_target(int label, int classes, double eps, float* q, int data_classes) {
    const float off = data_classes > 1 ? static_cast<float>(eps / (data_classes - 1)) : 0.f;
    for (int k = 0; k < classes; ++k) q[k] = k < data_classes ? off : 0.f;
    q[label] = static_cast<float>(1.0 - eps);
}
inline void smoothed_target(int label, int classes, double eps, float* q) {
    smoothed_target(label, classes, eps, q, classes);
}

/// Targets of a batch: (n, 1, 1, K), row i = smoothed_target(labels[i]); labels must lie in
/// [0, data_classes) (default: all K outputs are classes of the data).
inline void make_targets(std::span<const int> labels, int classes, double eps, tensor<float>& q, int data_classes = 0) {
    if (data_classes <= 0) data_classes = classes;
    require<error>(data_classes <= classes, "tricks::loss: the data has ", data_classes, " classes, the model ",
                   classes, " outputs");
    q.resize({static_cast<int>(labels.size()), 1, 1, classes});
    for (std::size_t i = 0; i < labels.size(); ++i) {
        require<error>(labels[i] >= 0 && labels[i] < data_classes, "tricks::loss: label ", labels[i],
                       " at batch index ", i, " is outside [0, ", data_classes, ")");
        smoothed_target(labels[i], classes, eps, q.data() + i * static_cast<std::size_t>(classes), data_classes);
    }
}

/// One mixup draw for a batch: lambda ~ Beta(alpha, alpha) and a shuffled pairing of the batch.
struct mixup_draw {
    double lambda = 1.0;
    std::vector<std::uint32_t> partner;
};

/// Draws lambda and a random permutation (Fisher-Yates) from r.
inline void draw_mixup(double alpha, int n, rng& r, mixup_draw& d) {
    require<error>(alpha > 0 && std::isfinite(alpha), "tricks::mix::mixup: alpha must be > 0, got ", alpha);
    d.lambda = r.beta(alpha, alpha);
    d.partner.resize(static_cast<std::size_t>(n));
    std::iota(d.partner.begin(), d.partner.end(), 0u);
    for (int i = n - 1; i > 0; --i) std::swap(d.partner[i], d.partner[r.below(static_cast<std::uint32_t>(i + 1))]);
}

/// x_i <- lambda x_i + (1 - lambda) x_partner(i), for a batch tensor (images or targets) in place.
/// `scratch` keeps a copy of the unmixed rows so partners read original values.
inline void apply_mixup(const mixup_draw& d, tensor<float>& t, tensor<float>& scratch) {
    const int n = t.shape().n;
    require<error>(static_cast<std::size_t>(n) == d.partner.size(), "tricks::mix::mixup: batch of ", n,
                   " but the draw pairs ", d.partner.size());
    scratch = t;
    const std::size_t row = t.size() / static_cast<std::size_t>(n);
    const float l = static_cast<float>(d.lambda), m = 1.f - l;
    for (int i = 0; i < n; ++i) {
        float* o = t.data() + static_cast<std::size_t>(i) * row;
        const float* a = scratch.data() + static_cast<std::size_t>(i) * row;
        const float* b = scratch.data() + static_cast<std::size_t>(d.partner[i]) * row;
        for (std::size_t j = 0; j < row; ++j) o[j] = l * a[j] + m * b[j];
    }
}

/// Distillation term of paper §5.3: T^2 * CE(softmax(r/T), softmax(z/T)), averaged over the batch.
/// Adds its gradient T^2 * (softmax(z/T) - softmax(r/T)) / T / n into dz; returns the term.
inline double distillation_term(int n, int k, const float* z, const float* r, double T, float* dz, tensor<float>& pz,
                                tensor<float>& pr) {
    pz.resize({n, 1, 1, k});
    pr.resize({n, 1, 1, k});
    backend::host::softmax(n, k, r, static_cast<float>(T), pr.data());
    backend::host::softmax(n, k, z, static_cast<float>(T), pz.data());
    double total = 0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) * k; ++i) {
        if (pr[i] > 0) total -= static_cast<double>(pr[i]) * std::log(std::max(static_cast<double>(pz[i]), 1e-45));
        dz[i] += static_cast<float>(T * (pz[i] - pr[i]) / n);
    }
    return T * T * total / n;
}

}  // namespace tricks
