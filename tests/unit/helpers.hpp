#pragma once
// Helpers shared by the unit tests: a thread-count guard, bit-for-bit state comparison and a small
// learnable synthetic data set (tests that must not depend on the Fashion-MNIST files).
#include <omp.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "tricks/core/rng.hpp"
#include "tricks/data/dataset.hpp"

namespace tricks_test {

/// Code under test may change OpenMP's process-wide thread count (options.threads); this puts the
/// previous count back when the scope ends, so later tests run as configured.
struct omp_threads_guard {
    int saved = omp_get_max_threads();
    omp_threads_guard() = default;
    omp_threads_guard(const omp_threads_guard&) = delete;
    omp_threads_guard& operator=(const omp_threads_guard&) = delete;
    ~omp_threads_guard() { omp_set_num_threads(saved); }
};

/// Every parameter value and buffer (BN running statistics) of a model, in visiting order.
template <class Model>
std::vector<float> state_of(Model& m) {
    std::vector<float> all;
    for (auto* p : m.parameters()) all.insert(all.end(), p->value.span().begin(), p->value.span().end());
    for (auto* b : m.buffers()) all.insert(all.end(), b->span().begin(), b->span().end());
    return all;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// Synthetic 28x28 grey images: class k has brightness 20k plus uniform noise in [0, 60), a feature
/// random crops and flips keep, so a small ResNet separates the classes within a few steps.
inline tricks::data::dataset synthetic_digits(int n, std::uint64_t seed, std::uint64_t stream) {
    tricks::data::dataset d;
    d.name = "synthetic";
    d.n = n;
    d.h = d.w = 28;
    d.c = 1;
    d.classes = 10;
    d.pixels.resize(static_cast<std::size_t>(n) * 28 * 28);
    d.labels.resize(static_cast<std::size_t>(n));
    tricks::rng r(seed, stream);
    for (int i = 0; i < n; ++i) {
        const int k = static_cast<int>(r.below(10));
        d.labels[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(k);
        for (std::size_t p = 0; p < 28 * 28; ++p)
            d.pixels[static_cast<std::size_t>(i) * 28 * 28 + p] = static_cast<std::uint8_t>(20 * k + r.below(60));
    }
    return d;
}

}  // namespace tricks_test
