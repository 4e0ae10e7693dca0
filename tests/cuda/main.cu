// tricks CUDA backend tests: host-only checks always run; device tests (parity of every kernel with
// backend/cpu, forward and backward, FP32 and FP16) run when a CUDA device is present. Without one
// the binary prints a notice and exits with 77, which CTest reports as skipped (SKIP_RETURN_CODE).
//   tricks_cuda_tests [substring]   run only tests whose name contains substring
//   tricks_cuda_tests --list        list the tests
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "harness.cuh"

namespace {

bool selected(const char* name, const char* filter) { return !filter || std::strstr(name, filter) != nullptr; }

int run(bool device, const char* filter) {
    int ran = 0;
    for (const auto& t : tt::registry()) {
        if (t.needs_device != device || !selected(t.name, filter)) continue;
        ++ran;
        const int before = tt::failures();
        std::printf("[ RUN  ] %s\n", t.name);
        std::fflush(stdout);
        const auto t0 = std::chrono::steady_clock::now();
        try {
            t.fn();
        } catch (const std::exception& e) {
            tt::fail(std::string("unexpected exception: ") + e.what(), t.name, 0);
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        std::printf("[ %s ] %s (%.0f ms)\n", tt::failures() == before ? " OK " : "FAIL", t.name, ms);
        std::fflush(stdout);
    }
    return ran;
}

}  // namespace

int main(int argc, char** argv) {
    const char* filter = nullptr;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--list") == 0) {
            for (const auto& t : tt::registry()) std::printf("%s%s\n", t.name, t.needs_device ? "" : " (host)");
            return 0;
        }
        filter = argv[i];
    }

    const int host_ran = run(false, filter);
    const int ndev = tricks::backend::gpu::device_count();
    if (ndev == 0) {
        std::printf("tricks cuda tests: %d host test(s), %d failure(s)\n", host_ran, tt::failures());
        if (tt::failures()) return 1;
        std::printf("tricks cuda tests: no CUDA device, skipping\n");
        return 77;
    }

    cudaDeviceProp prop{};
    TRICKS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    int cublas_version = 0;
    {
        cublasHandle_t h{};
        if (cublasCreate(&h) == CUBLAS_STATUS_SUCCESS) {
            (void)cublasGetVersion(h, &cublas_version);
            (void)cublasDestroy(h);
        }
    }
    std::printf("device 0: %s (sm_%d%d, %.1f GiB), cuDNN %zu, cuBLAS %d, %d device(s)\n", prop.name, prop.major,
                prop.minor, static_cast<double>(prop.totalGlobalMem) / (1 << 30), cudnnGetVersion(), cublas_version,
                ndev);

    const int dev_ran = run(true, filter);
    std::printf("tricks cuda tests: %d host + %d device test(s), %d comparison(s), %d failure(s)\n", host_ran, dev_ran,
                tt::comparisons(), tt::failures());
    return tt::failures() ? 1 : 0;
}
