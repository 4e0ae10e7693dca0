#pragma once
// Helpers shared by the unit tests: a thread-count guard, bit-for-bit state comparison, a small
// learnable synthetic data set (tests that must not depend on the Fashion-MNIST files), a scratch
// directory, and the message of an expected error.
#include <omp.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/core/rng.hpp"
#include "tricks/data/dataset.hpp"

namespace tricks_test {

/// A fresh directory under the system temp dir (named by `prefix`, the process and a random
/// number), removed with everything in it at scope exit.
struct temp_dir {
    std::filesystem::path path;
    explicit temp_dir(const std::string& prefix = "tricks_test_") {
        std::random_device rd;
        path = std::filesystem::temp_directory_path() /
               (prefix + std::to_string(::getpid()) + "_" + std::to_string(rd()) + std::to_string(rd()));
        std::filesystem::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    std::filesystem::path operator/(const std::string& name) const { return path / name; }
};

/// The message of the tricks::data_error that `f` throws; "" when it throws nothing (so a check
/// that the message contains something fails).
template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const tricks::data_error& e) {
        return e.what();
    }
    return {};
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

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

/// Bit-for-bit equality (-0 and NaN payloads included); empty vectors are equal without touching
/// their (possibly null) data pointers.
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
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
