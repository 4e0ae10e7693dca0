#pragma once
// A minimal test harness for the CUDA backend tests (no framework: the binary must decide to skip
// with exit code 77 before anything touches the device, and must build with nvcc alone).
//
//   TRICKS_HOST_TEST(name) { ... }   runs everywhere (no device needed)
//   TRICKS_GPU_TEST(name)  { ... }   runs only when a CUDA device is present
//   CHECK(cond) / CHECK_MSG(cond, stream-expr) / CHECK_THROWS(expr, Type, substring)
//   expect_close(what, got, want, scale, rtol, atol): |got - want| <= rtol * scale + atol everywhere.
//
// Comparisons print one line each with the worst ratio err / bound, so a log shows how much margin
// every tolerance has, not only pass/fail.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <cuda_fp16.h>

#include "tricks/backend/cuda/backend.cuh"
#include "tricks/core/rng.hpp"

namespace tt {

namespace gpu = tricks::backend::gpu;
using fvec = std::vector<float>;

struct test_case {
    const char* name;
    void (*fn)();
    bool needs_device;
};
inline std::vector<test_case>& registry() {
    static std::vector<test_case> r;
    return r;
}
struct registrar {
    registrar(const char* name, void (*fn)(), bool dev) { registry().push_back({name, fn, dev}); }
};
inline int& failures() {
    static int f = 0;
    return f;
}
inline int& comparisons() {
    static int c = 0;
    return c;
}

/// While set, failures are reported as deliberate (the harness's own self-test).
inline bool& deliberate() {
    static bool d = false;
    return d;
}

inline void fail(const std::string& msg, const char* file, int line) {
    ++failures();
    std::cout << (deliberate() ? "  (deliberate) caught: " : "  FAIL ") << file << ":" << line << ": " << msg
              << std::endl;
}

#define TRICKS_HOST_TEST(name)                                    \
    static void name();                                           \
    static ::tt::registrar name##_registrar(#name, &name, false); \
    static void name()
#define TRICKS_GPU_TEST(name)                                    \
    static void name();                                          \
    static ::tt::registrar name##_registrar(#name, &name, true); \
    static void name()

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) ::tt::fail("CHECK(" #cond ") failed", __FILE__, __LINE__); \
    } while (0)
#define CHECK_MSG(cond, msg)                              \
    do {                                                  \
        if (!(cond)) {                                    \
            std::ostringstream tt_os_;                    \
            tt_os_ << "CHECK(" #cond ") failed: " << msg; \
            ::tt::fail(tt_os_.str(), __FILE__, __LINE__); \
        }                                                 \
    } while (0)
#define CHECK_THROWS(expr, Type, substring)                                                                         \
    do {                                                                                                            \
        bool tt_thrown_ = false;                                                                                    \
        try {                                                                                                       \
            expr;                                                                                                   \
        } catch (const Type& e) {                                                                                   \
            tt_thrown_ = true;                                                                                      \
            if (std::string(e.what()).find(substring) == std::string::npos)                                         \
                ::tt::fail(std::string(#expr " threw, but the message lacks \"") + (substring) + "\": " + e.what(), \
                           __FILE__, __LINE__);                                                                     \
        }                                                                                                           \
        if (!tt_thrown_) ::tt::fail(#expr " did not throw " #Type, __FILE__, __LINE__);                             \
    } while (0)

/// Number of elements with |got - want| > rtol * scale + atol (or NaN): for negative controls.
inline std::size_t out_of_tolerance(const fvec& got, const fvec& want, const fvec& scale, double rtol, double atol) {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size() && i < want.size() && i < scale.size(); ++i) {
        const double err = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
        if (!(err <= rtol * std::fabs(static_cast<double>(scale[i])) + atol)) ++bad;
    }
    return bad;
}

/// |got - want| <= rtol * scale + atol for every element (NaN fails; an element whose bound is 0
/// must match exactly).
inline void expect_close(const std::string& what, const fvec& got, const fvec& want, const fvec& scale, double rtol,
                         double atol, const char* file, int line) {
    ++comparisons();
    if (got.size() != want.size() || scale.size() != want.size()) {
        fail(what + ": size mismatch", file, line);
        return;
    }
    std::size_t bad = 0, first = 0, worst_i = 0;
    double worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        const double err = std::fabs(static_cast<double>(got[i]) - static_cast<double>(want[i]));
        const double bound = rtol * std::fabs(static_cast<double>(scale[i])) + atol;
        const bool ok = err <= bound;  // false for NaN
        if (!ok) {
            if (bad++ == 0) first = i;
        }
        const double ratio = bound > 0 ? err / bound : (err == 0 ? 0 : INFINITY);
        if (!(ratio <= worst)) {  // also catches NaN
            worst = std::isnan(ratio) ? INFINITY : ratio;
            worst_i = i;
        }
    }
    if (bad) {
        std::ostringstream os;
        os << what << ": " << bad << " of " << got.size() << " elements out of tolerance; first at " << first
           << ": got " << got[first] << ", want " << want[first] << ", scale " << scale[first] << " (rtol " << rtol
           << ", atol " << atol << "); worst err/bound " << worst << " at " << worst_i;
        fail(os.str(), file, line);
    } else {
        std::printf("  ok   %-58s n=%-7zu worst err/bound %.3g\n", what.c_str(), got.size(), worst);
    }
}
#define EXPECT_CLOSE(what, got, want, scale, rtol, atol) \
    ::tt::expect_close(what, got, want, scale, rtol, atol, __FILE__, __LINE__)

// ---- data --------------------------------------------------------------------------------------

inline constexpr std::uint64_t seed = 0x6370756B6Cull;

inline fvec uniform(std::size_t n, std::uint64_t stream, float lo = -1.f, float hi = 1.f) {
    tricks::rng r(seed, stream);
    fvec v(n);
    for (auto& e : v) e = lo + (hi - lo) * r.uniform();
    return v;
}
/// n pairwise distinct values lo, lo + 1/8, ... (exact in FP16 for n <= 2048 around 0), shuffled.
inline fvec distinct(std::size_t n, std::uint64_t stream, float lo) {
    fvec v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = lo + 0.125f * static_cast<float>(i);
    tricks::rng r(seed, stream);
    for (std::size_t i = n; i > 1; --i) std::swap(v[i - 1], v[r.below(static_cast<std::uint32_t>(i))]);
    return v;
}
inline fvec abs(fvec v) {
    for (auto& e : v) e = std::fabs(e);
    return v;
}

/// The value an element of type T holds for x (round to nearest even for __half).
template <class T>
float round_to(float x) {
    if constexpr (std::is_same_v<T, float>)
        return x;
    else
        return __half2float(__float2half_rn(x));
}
template <class T>
fvec rounded(fvec v) {
    for (auto& e : v) e = round_to<T>(e);
    return v;
}

/// Host float values -> device buffer of T.
template <class T>
gpu::device_buffer<T> to_device(const fvec& v) {
    std::vector<T> h(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) {
        if constexpr (std::is_same_v<T, float>)
            h[i] = v[i];
        else
            h[i] = __float2half_rn(v[i]);
    }
    gpu::device_buffer<T> d;
    d.upload(h);
    return d;
}
/// A device buffer of n elements filled with NaN (bytes 0xFF), so outputs that are not written show.
template <class T>
gpu::device_buffer<T> nan_device(std::size_t n) {
    gpu::device_buffer<T> d(n);
    TRICKS_CUDA_CHECK(cudaMemset(d.data(), 0xFF, n * sizeof(T)));
    return d;
}
template <class T>
fvec to_host(const gpu::device_buffer<T>& d) {
    TRICKS_CUDA_CHECK(cudaDeviceSynchronize());
    const std::vector<T> h = d.to_host();
    fvec v(h.size());
    for (std::size_t i = 0; i < h.size(); ++i) {
        if constexpr (std::is_same_v<T, float>)
            v[i] = h[i];
        else
            v[i] = __half2float(h[i]);
    }
    return v;
}

template <class T>
const char* tname() {
    return std::is_same_v<T, float> ? "fp32" : "fp16";
}

// ---- tolerances ----------------------------------------------------------------------------------
// Unit roundoffs: u32 = 2^-24 (float), u16 = 2^-11 (half, 11 significant bits).
// An FP16 result rounded once from an exact-enough FP32 value is within u16 * |value|; below the
// normal range (|x| < 2^-14) the spacing is 2^-24, hence atol16 = 2^-25 for every FP16 comparison.
inline constexpr double u32 = 0x1.0p-24;
inline constexpr double u16 = 0x1.0p-11;
inline constexpr double atol16 = 0x1.0p-25;

}  // namespace tt
