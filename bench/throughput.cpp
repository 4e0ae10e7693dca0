// Training (forward, backward, SGD update) and inference throughput of the main job's network
// (cifar_resnet<20> with deep stem and avg-down, 1x28x28, 10 classes) at batch 128: images/s,
// achieved GFLOP/s, and per-phase times. A benchmark, not a test: nothing here asserts a speed.
//   bench_throughput [--batch N] [--iters N] [--threads N] [--width 16|32] [--fuse 1|0] [--conv winograd|direct]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include <tricks/tricks.hpp>

namespace t = tricks;

template <int W>
using net = t::models::cifar_resnet<20, t::width<W>, t::in_channels<1>, t::classes<10>, t::tweak::deep_stem,
                                    t::tweak::avg_down>;

template <int W>
int run(int batch, int iters, bool eval_too, bool fuse, t::backend::conv_algo algo, int chunk) {
    using model = net<W>;
    auto m = std::make_unique<model>();
    m->init(1);
    t::tensor<float> x({batch, 28, 28, 1});
    t::rng r(1, 2);
    for (auto& v : x.span()) v = static_cast<float>(r.normal());
    t::tensor<float> dz({batch, 1, 1, 10});
    for (auto& v : dz.span()) v = static_cast<float>(r.normal() * 0.01);
    // The update is part of the step, as in the peers (PyTorch's and dlib's optimizer step): Nesterov
    // SGD with the paper's momentum, weight decay 5e-5 (the peers' value), no bias decay.
    std::vector<t::nn::parameter*> params;
    m->for_each_parameter([&](t::nn::parameter& p) { params.push_back(&p); });
    t::sgd_optimizer opt(params, t::sgd_config{0.9, 5e-5, true, true});
    t::nn::activation_arena arena;  // the input gradients lent from layer to layer, as the trainer does
    t::nn::context train{t::nn::mode::train, t::nn::storage::fp32, fuse, algo};
    train.arena = &arena;
    const t::nn::context eval{t::nn::mode::eval, t::nn::storage::fp32, fuse, algo};
    using clock = std::chrono::steady_clock;
    std::vector<double> fwd, bwd, inf, inf_layers;
    t::models::inference_pool<model> pool(chunk);
    for (int i = 0; i < iters + 2; ++i) {  // 2 warm-up iterations: buffers are allocated once
        const auto t0 = clock::now();
        m->forward(x, train);
        const auto t1 = clock::now();
        m->backward(dz, train, false);
        opt.step(1e-3);
        const auto t2 = clock::now();
        if (i >= 2) {
            fwd.push_back(std::chrono::duration<double>(t1 - t0).count());
            bwd.push_back(std::chrono::duration<double>(t2 - t1).count());
        }
        if (eval_too) {
            const auto t3 = clock::now();
            m->forward(x, eval);
            const auto t4 = clock::now();
            pool.load(*m);  // part of the timed inference: the weights changed in the step
            pool.forward(x, eval);
            if (i >= 2) {
                inf_layers.push_back(std::chrono::duration<double>(t4 - t3).count());
                inf.push_back(std::chrono::duration<double>(clock::now() - t4).count());
            }
        }
    }
    auto median = [](std::vector<double> v) {
        std::sort(v.begin(), v.end());
        return v.empty() ? 0.0 : v[v.size() / 2];
    };
    const double f = median(fwd), b = median(bwd);
    const double flops = 2.0 * 3.0 * static_cast<double>(t::macs<model>(28, 28)) * batch;  // fwd + 2x for bwd
    std::printf("model            %s (%lld params, %.2f MMACs/image)\n", model::name().c_str(),
                static_cast<long long>(t::parameter_count_v<model>), t::macs<model>(28, 28) / 1e6);
    std::printf("batch, threads   %d, %d\n", batch, omp_get_max_threads());
    std::printf("convolutions     %s, BN+ReLU fusion %s\n", t::backend::to_string(algo), fuse ? "on" : "off");
    std::printf("train step       %.1f ms (forward %.1f, backward + SGD update %.1f), median of %d\n", (f + b) * 1e3,
                f * 1e3, b * 1e3, iters);
    std::printf("train images/s   %.0f\n", batch / (f + b));
    std::printf("train GFLOP/s    %.1f (direct-equivalent: conv+linear MACs x 2 FLOP x 3 passes)\n",
                flops / (f + b) / 1e9);
    if (eval_too) {
        const double e = median(inf), l = median(inf_layers);
        std::printf(
            "infer images/s   %.0f (%.1f ms per batch, eval mode, inference_pool: a model copy per thread, %d-image "
            "sub-batches%s)\n",
            batch / e, e * 1e3, pool.chunk(), chunk == 0 ? ", measured" : "");
        std::printf(
            "infer layers     %.0f images/s (%.1f ms per batch, model.forward: every layer split over the threads)\n",
            batch / l, l * 1e3);
    }
    return 0;
}

int main(int argc, char** argv) {
    int batch = 128, iters = 10, width = 16, chunk = 0;
    bool fuse = true;
    auto algo = t::backend::conv_algo::winograd;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view a = argv[i];
        const int v = std::atoi(argv[i + 1]);
        if (a == "--batch")
            batch = v;
        else if (a == "--iters")
            iters = v;
        else if (a == "--threads")
            omp_set_num_threads(v);
        else if (a == "--width")
            width = v;
        else if (a == "--chunk")
            chunk = v;  // images per sub-batch of the inference pool (0: it measures)
        else if (a == "--fuse")
            fuse = v != 0;  // 0: batch norm and ReLU layer by layer (A/B of the fusion)
        else if (a == "--conv" && t::backend::parse(argv[i + 1], algo))
            continue;  // A/B of Winograd
        else {
            std::fprintf(stderr,
                         "usage: bench_throughput [--batch N] [--iters N] [--threads N] [--width 16|32] [--fuse 1|0] "
                         "[--conv winograd|direct] [--chunk N]\n");
            return 2;
        }
    }
    if (batch < 1 || iters < 1 || chunk < 0) {
        std::fprintf(stderr, "bench_throughput: --batch and --iters must be >= 1, --chunk >= 0\n");
        return 2;
    }
    return width == 32 ? run<32>(batch, iters, true, fuse, algo, chunk)
                       : run<16>(batch, iters, true, fuse, algo, chunk);
}
