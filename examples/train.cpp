// The README's main job: trains ResNet-20-D (deep stem, avg-down shortcut, zero-gamma) on
// Fashion-MNIST with the paper's efficient-training and refinement tricks, shows progress, and
// ends with the test accuracy, metrics (CSV, JSON), a Markdown report and the final checkpoint.
// `--device cuda` trains on a GPU when the build has the CUDA backend (train_cuda.cu).
#include "train_common.hpp"

namespace train_example {

int run_cpu(cli& c) {
    if (c.precision == 16) return c.width == 16 ? run<16, t::precision::fp16_mixed, t::backend::cpu>(c)
                                                : run<32, t::precision::fp16_mixed, t::backend::cpu>(c);
    return c.width == 16 ? run<16, t::precision::fp32, t::backend::cpu>(c) : run<32, t::precision::fp32, t::backend::cpu>(c);
}

#ifndef TRICKS_TRAIN_WITH_CUDA
int run_cuda(cli&) {
    fail("--device cuda: this build has no CUDA backend (CMake found no nvcc and cuDNN when it was configured; "
         "see README, GPU section)");
}
#endif

}  // namespace train_example

int main(int argc, char** argv) {
    using namespace train_example;
    cli c = parse(argc, argv);
    try {
        return c.cuda ? run_cuda(c) : run_cpu(c);
    } catch (const t::error& e) {
        std::fprintf(stderr, "train: %s\n", e.what());
        return 1;
    } catch (const std::filesystem::filesystem_error& e) {  // e.g. --out names an existing file
        std::fprintf(stderr, "train: %s\n", e.what());
        return 1;
    }
}
