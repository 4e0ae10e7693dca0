// Inference throughput of a deployed model: models::inference_pool with its weights loaded once
// (as a serving process runs; ONNX Runtime's session prepares its weights once too), images/s over
// repeated batches. bench/onnx_compare.sh runs it against ONNX Runtime on the same network, batch,
// size and thread count. bench_throughput measures the main job's training step and the inference
// right after a weight update (the pool reloaded each time); this one keeps the weights, and runs
// ResNet-50-D at 224x224 too. A benchmark, not a test.
//   bench_infer [--model main|resnet50d] [--batch N] [--size N] [--threads N] [--iters N]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include <tricks/models/cifar_resnet.hpp>
#include <tricks/models/inference.hpp>
#include <tricks/models/introspection.hpp>
#include <tricks/models/resnet.hpp>

namespace t = tricks;

namespace {

/// The main job's network (examples/train's default: width 16, 1 channel, 10 classes).
using main_net = t::models::cifar_resnet<20, t::width<16>, t::in_channels<1>, t::classes<10>, t::tweak::deep_stem,
                                         t::tweak::avg_down, t::init::zero_gamma>;
/// examples/train's resnet50d (zero-gamma: the same network at inference).
using resnet50d =
    t::models::resnet<50, t::tweak::stride_on_3x3, t::tweak::deep_stem, t::tweak::avg_down, t::init::zero_gamma>;

template <class Model>
int run(int batch, int side, int iters) {
    auto m = std::make_unique<Model>();
    m->init(1);
    t::tensor<float> x({batch, side, side, Model::input_channels});
    t::rng r(1, 2);
    for (auto& v : x.span()) v = static_cast<float>(r.normal());
    t::models::inference_pool<Model> pool;
    pool.load(*m);
    const t::nn::context eval{.phase = t::nn::mode::eval};
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < 2; ++i) pool.forward(x, eval);  // warm-up: the sub-batch size is measured on the first batch
    std::vector<double> s;
    for (int i = 0; i < iters; ++i) {
        const auto t0 = clock::now();
        pool.forward(x, eval);
        s.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    }
    std::sort(s.begin(), s.end());
    const double med = s[s.size() / 2];
    std::printf("model %s, %dx%dx%d, batch %d, %d threads, %d-image sub-batches, %.1f ms per batch (median of %d)\n",
                Model::name().c_str(), side, side, Model::input_channels, batch, omp_get_max_threads(), pool.chunk(),
                med * 1e3, iters);
    std::printf("infer_images_per_s %.1f\n", batch / med);
    std::printf("gmacs_per_image %.3f\n", static_cast<double>(t::macs<Model>(side, side)) / 1e9);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int batch = 16, side = 0, iters = 10;
    std::string_view model = "main";
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view a = argv[i];
        const int v = std::atoi(argv[i + 1]);
        if (a == "--model")
            model = argv[i + 1];
        else if (a == "--batch")
            batch = v;
        else if (a == "--size")
            side = v;
        else if (a == "--iters")
            iters = v;
        else if (a == "--threads")
            omp_set_num_threads(v);
        else {
            std::fprintf(
                stderr,
                "usage: bench_infer [--model main|resnet50d] [--batch N] [--size N] [--threads N] [--iters N]\n");
            return 2;
        }
    }
    if (batch < 1 || iters < 1 || side < 0 || (model != "main" && model != "resnet50d")) {
        std::fprintf(stderr, "bench_infer: --model main|resnet50d, --batch and --iters >= 1, --size >= 0\n");
        return 2;
    }
    if (model == "main") return run<main_net>(batch, side ? side : 28, iters);
    return run<resnet50d>(batch, side ? side : 224, iters);
}
