// The machine's measured FP32 peak: independent chains of vector FMAs (no memory traffic) on 1
// thread and on every thread, in GFLOP/s. compare.sh's "fraction of peak" computes the peak from
// what /proc/cpuinfo says (threads x clock x lanes x 2 FMA units x 2); this measures it, and the
// ratio between the two thread counts tells whether the threads are separate cores (about 2x for
// 2 threads) or SMT siblings sharing one core's FMA units (about 1x). A benchmark, not a test.
//   bench_peak_flops [--seconds S] [--threads N]     (N: default every processor)
// The last line, `peak_gflops <N> <value>`, is for scripts (bench/compare.sh).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace {

// One register's floats: 16 with AVX-512; else 8 (AVX2). 16-float vectors on AVX2 are two registers
// each, 24 with the chains below: they spilled, and GCC did not contract their a * b + c into FMAs,
// so the "peak" came out at a tenth of what the convolutions reach (6.8 GFLOP/s a core on an AVX2
// EPYC).
#if defined(__AVX512F__)
constexpr int lanes = 16;
#else
constexpr int lanes = 8;
#endif
using vec = float __attribute__((vector_size(lanes * sizeof(float))));
constexpr int chains = 12;  // enough independent FMAs to hide the latency, and registers for a and b
constexpr long inner = 1 << 16;

/// FMAs per call: inner x chains vectors of `lanes` floats; returns a value so nothing is optimised away.
__attribute__((noinline)) float fma_loop(float seed) {
    vec acc[chains];
    for (int i = 0; i < chains; ++i) acc[i] = vec{} + seed * static_cast<float>(i + 1);
    const vec a = vec{} + 0.999999f, b = vec{} + 1e-7f;
    for (long k = 0; k < inner; ++k) {
#pragma GCC unroll 16
        for (int i = 0; i < chains; ++i) acc[i] = acc[i] * a + b;  // one FMA each (GNU mode contracts)
    }
    float s = 0;
    for (int i = 0; i < chains; ++i)
        for (int l = 0; l < lanes; ++l) s += acc[i][l];
    return s;
}

/// GFLOP/s of `threads` threads each running fma_loop for about `seconds`.
double measure(int threads, double seconds) {
    using clock = std::chrono::steady_clock;
    double total_flops = 0;
    volatile float sink = 0;
    const auto t0 = clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total_flops)
    {
        float s = 0;
        long calls = 0;
        while (std::chrono::duration<double>(clock::now() - t0).count() < seconds) {
            s += fma_loop(1e-3f * static_cast<float>(omp_get_thread_num() + 1));
            ++calls;
        }
        total_flops += static_cast<double>(calls) * inner * chains * lanes * 2;
        sink = sink + s;
    }
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    return total_flops / dt / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 2.0;
    int all = omp_get_num_procs();
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--seconds" && i + 1 < argc)
            seconds = std::atof(argv[++i]);
        else if (a == "--threads" && i + 1 < argc)
            all = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: bench_peak_flops [--seconds S] [--threads N]\n");
            return 2;
        }
    }
    if (seconds <= 0 || all < 1) {
        std::fprintf(stderr, "bench_peak_flops: --seconds and --threads must be positive\n");
        return 2;
    }
    (void)measure(1, 0.2);  // warm up the clock
    const double one = measure(1, seconds);
    const double many = measure(all, seconds);
    std::printf("fp32 FMA peak, 1 thread     %.1f GFLOP/s\n", one);
    std::printf("fp32 FMA peak, %d threads    %.1f GFLOP/s (%.2fx the 1-thread rate)\n", all, many, many / one);
    std::printf("peak_gflops %d %.1f\n", all, many);
    return 0;
}
