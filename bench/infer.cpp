// Inference throughput of a deployed model: models::inference_pool with its weights loaded once
// (as a serving process runs; ONNX Runtime's session prepares its weights once too), images/s over
// repeated batches. bench/onnx_compare.sh runs it against ONNX Runtime on the same network, batch,
// size and thread count. bench_throughput measures the main job's training step and the inference
// right after a weight update (the pool reloaded each time); this one keeps the weights, and runs
// the ImageNet nets at 224x224 too (bench/compare_224.sh), and with --train their training step
// (forward, cross-entropy, backward, Nesterov SGD step) on the model itself. It ends with the
// process's peak resident memory (inference: the model is dropped once the pool has loaded it, as a
// serving process would; training also lends the backward pass's gradients, as the trainer does).
// A benchmark, not a test.
//   bench_infer [--model main|resnet18|resnet50|resnet50d] [--batch N] [--size N] [--threads N] [--iters N]
//               [--train]
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <vector>

#include <tricks/backend/cpu/loss.hpp>
#include <tricks/models/cifar_resnet.hpp>
#include <tricks/models/inference.hpp>
#include <tricks/models/introspection.hpp>
#include <tricks/models/resnet.hpp>
#include <tricks/train/optim.hpp>

namespace t = tricks;

namespace {

/// The main job's network (examples/train's default: width 16, 1 channel, 10 classes).
using main_net = t::models::cifar_resnet<20, t::width<16>, t::in_channels<1>, t::classes<10>, t::tweak::deep_stem,
                                         t::tweak::avg_down, t::init::zero_gamma>;
/// examples/train's resnet18, resnet50 and resnet50d (zero-gamma, as train builds them; 1000 classes).
using resnet18 = t::models::resnet<18, t::init::zero_gamma>;
using resnet50 = t::models::resnet<50, t::init::zero_gamma>;
using resnet50d =
    t::models::resnet<50, t::tweak::stride_on_3x3, t::tweak::deep_stem, t::tweak::avg_down, t::init::zero_gamma>;

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return static_cast<double>(u.ru_maxrss) / 1024.0;
}

double median(std::vector<double> s) {
    std::sort(s.begin(), s.end());
    return s[s.size() / 2];
}

/// batch x side x side x channels normal values (the same for every run).
t::tensor<float> random_batch(int batch, int side, int channels) {
    t::tensor<float> x({batch, side, side, channels});
    t::rng r(1, 2);
    for (auto& v : x.span()) v = static_cast<float>(r.normal());
    return x;
}

/// Training steps of batch x side x side: forward (training mode), softmax cross-entropy, backward,
/// Nesterov SGD with weight decay; images/s from the median step after one warm-up step.
template <class Model>
int train(int batch, int side, int iters) {
    auto m = std::make_unique<Model>();
    m->init(1);
    const t::tensor<float> x = random_batch(batch, side, Model::input_channels);
    constexpr int K = Model::out_channels;
    t::tensor<float> q({batch, 1, 1, K}), dz({batch, 1, 1, K});
    q.fill(0.f);
    for (int i = 0; i < batch; ++i) q.data()[static_cast<std::size_t>(i) * K + (i * 7) % K] = 1.f;
    t::nn::activation_arena arena;  // the input gradients lent from layer to layer, as the trainer does
    const t::nn::context ctx{.phase = t::nn::mode::train, .arena = &arena};
    t::sgd_optimizer opt(m->parameters(), t::sgd_config{0.9, 1e-4, true, true});
    std::vector<double> s, f, b;
    using clock = std::chrono::steady_clock;
    auto secs = [](clock::time_point a, clock::time_point z) { return std::chrono::duration<double>(z - a).count(); };
    for (int i = 0; i < iters + 1; ++i) {
        const auto t0 = clock::now();
        const auto& z = m->forward(x, ctx);
        const auto t1 = clock::now();
        (void)t::backend::host::softmax_cross_entropy(batch, K, z.data(), q.data(), dz.data());
        m->backward(dz, ctx, false);
        const auto t2 = clock::now();
        opt.step(0.01);
        if (i == 0) continue;
        s.push_back(secs(t0, clock::now()));
        f.push_back(secs(t0, t1));
        b.push_back(secs(t1, t2));
    }
    const double med = median(s);
    std::printf(
        "model %s, %dx%dx%d, batch %d, %d threads, training step %.1f ms (forward %.1f, loss + backward %.1f; "
        "medians of %d)\n",
        Model::name().c_str(), side, side, Model::input_channels, batch, omp_get_max_threads(), med * 1e3,
        median(f) * 1e3, median(b) * 1e3, iters);
    std::printf("train_images_per_s %.2f\n", batch / med);
    std::printf("peak_rss_mb %.0f\n", peak_rss_mb());
    return 0;
}

template <class Model>
int run(int batch, int side, int iters) {
    auto m = std::make_unique<Model>();
    m->init(1);
    const t::tensor<float> x = random_batch(batch, side, Model::input_channels);
    t::models::inference_pool<Model> pool;
    pool.load(*m);
    m.reset();  // as a serving process does: the pool holds what it runs (its copies of the model)
    const t::nn::context eval{.phase = t::nn::mode::eval};
    using clock = std::chrono::steady_clock;
    for (int i = 0; i < 2; ++i) pool.forward(x, eval);  // warm-up: the sub-batch size is measured on the first batch
    std::vector<double> s;
    for (int i = 0; i < iters; ++i) {
        const auto t0 = clock::now();
        pool.forward(x, eval);
        s.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    }
    const double med = median(s);
    std::printf("model %s, %dx%dx%d, batch %d, %d threads, %d-image sub-batches, %.1f ms per batch (median of %d)\n",
                Model::name().c_str(), side, side, Model::input_channels, batch, omp_get_max_threads(), pool.chunk(),
                med * 1e3, iters);
    std::printf("infer_images_per_s %.1f\n", batch / med);
    std::printf("gmacs_per_image %.3f\n", static_cast<double>(t::macs<Model>(side, side)) / 1e9);
    std::printf("peak_rss_mb %.0f\n", peak_rss_mb());
    // What the pool holds besides activations: one copy of the weights per copy of the model, and one
    // set of prepared filters (Winograd's transformed 3x3 filters, the wide layers' GEMM panels).
    const auto prepared = pool.prepared_floats();
    std::size_t prepared_total = 0;
    for (const std::size_t n : prepared) prepared_total += n;
    std::printf("model_copies %zu\n", prepared.size());
    std::printf("weights_mb_per_copy %.1f\n", static_cast<double>(t::parameter_count_v<Model>) * 4 / 1e6);
    std::printf("prepared_filters_mb %.1f\n", static_cast<double>(prepared_total) * 4 / 1e6);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int batch = 16, side = 0, iters = 10;
    bool training = false;
    std::string_view model = "main";
    for (int i = 1; i < argc; i += 2) {
        const std::string_view a = argv[i];
        if (a == "--train") {
            training = true;
            --i;
            continue;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "bench_infer: %s needs a value\n", argv[i]);
            return 2;
        }
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
                "usage: bench_infer [--model main|resnet18|resnet50|resnet50d] [--batch N] [--size N] [--threads N] "
                "[--iters N] [--train]\n");
            return 2;
        }
    }
    const bool known = model == "main" || model == "resnet18" || model == "resnet50" || model == "resnet50d";
    if (batch < 1 || iters < 1 || side < 0 || !known) {
        std::fprintf(stderr,
                     "bench_infer: --model main|resnet18|resnet50|resnet50d, --batch and --iters >= 1, --size >= 0\n");
        return 2;
    }
    auto go = [&]<class Model>(int default_side) {
        const int sz = side ? side : default_side;
        return training ? train<Model>(batch, sz, iters) : run<Model>(batch, sz, iters);
    };
    if (model == "main") return go.template operator()<main_net>(28);
    if (model == "resnet18") return go.template operator()<resnet18>(224);
    if (model == "resnet50") return go.template operator()<resnet50>(224);
    return go.template operator()<resnet50d>(224);
}
