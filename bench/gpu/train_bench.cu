// Training throughput of ResNet-50-D on the GPU: trainer<resnet50d, recipe<sgd, fp16_mixed>,
// backend::cuda>::step_on_device on synthetic data already on the device (the data pipeline is not
// measured, as in the PyTorch peer bench/gpu/torch_train.py). One step = forward, softmax
// cross-entropy, backward, overflow check, fused SGD update of the FP32 master weights, loss-scale
// update: everything a real step does.
//
//   train_bench [--batch 256] [--size 224] [--iters 20] [--reps 3] [--warmup 5] [--find] [--json FILE]
//
// --find: choose each convolution's algorithms with cudnnFind (times every algorithm once per shape,
// like cudnn.benchmark=True) instead of cuDNN's heuristics. After the timed runs, 3 more steps run
// with the profiler on and print the GPU time per kind of call.
// Prints images/s (median over --reps timed runs of --iters steps), the forward-only time of a step
// (training mode) to split the step into phases, and the device memory in use (total - free, as
// nvidia-smi counts it; this process allocates everything up front, so it is the peak).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <tricks/cuda.cuh>

namespace t = tricks;
namespace g = tricks::backend::gpu;

namespace {

using net = t::models::resnet50d;
using recipe = t::recipe<t::optim::sgd<>, t::precision::fp16_mixed>;
using trainer_t = t::trainer<net, recipe, t::backend::cuda>;

struct args {
    int batch = 256, size = 224, iters = 20, reps = 3, warmup = 5;
    bool find = false;
    std::string json;
};

args parse(int argc, char** argv) {
    args a;
    for (int i = 1; i < argc; ++i) {
        const std::string_view f = argv[i];
        auto num = [&] {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "train_bench: %s needs a value\n", argv[i]);
                std::exit(2);
            }
            return std::atoi(argv[++i]);
        };
        if (f == "--batch")
            a.batch = num();
        else if (f == "--size")
            a.size = num();
        else if (f == "--iters")
            a.iters = num();
        else if (f == "--reps")
            a.reps = num();
        else if (f == "--warmup")
            a.warmup = num();
        else if (f == "--json" && i + 1 < argc)
            a.json = argv[++i];
        else if (f == "--find")
            a.find = true;
        else {
            std::fprintf(stderr, "train_bench: unknown argument '%s'\n", argv[i]);
            std::exit(2);
        }
    }
    if (a.batch < 1 || a.size < 32 || a.iters < 1 || a.reps < 1 || a.warmup < 0) {
        std::fprintf(stderr, "train_bench: batch, iters, reps must be >= 1, size >= 32, warmup >= 0\n");
        std::exit(2);
    }
    return a;
}

/// Milliseconds of `fn` run `n` times, by CUDA events on the trainer's stream.
template <class F>
double time_ms(g::context& ctx, int n, F&& fn) {
    cudaEvent_t a, b;
    TRICKS_CUDA_CHECK(cudaEventCreate(&a));
    TRICKS_CUDA_CHECK(cudaEventCreate(&b));
    TRICKS_CUDA_CHECK(cudaEventRecord(a, ctx.stream()));
    for (int i = 0; i < n; ++i) fn();
    TRICKS_CUDA_CHECK(cudaEventRecord(b, ctx.stream()));
    TRICKS_CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    TRICKS_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    (void)cudaEventDestroy(a);
    (void)cudaEventDestroy(b);
    return ms;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

void note(const char* what, std::chrono::steady_clock::time_point since) {
    std::fprintf(stderr, "train_bench: %s (%.1f s)\n", what,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count());
}

int main(int argc, char** argv) try {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
    const args a = parse(argc, argv);
    if (!t::backend::cuda::available()) {
        std::printf("train_bench: no CUDA device, skipping\n");
        return 77;
    }
    cudaDeviceProp prop{};
    TRICKS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    t::options o;
    o.batch = a.batch;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.weight_decay = 1e-4;
    o.progress = false;
    const auto t0 = std::chrono::steady_clock::now();
    t::backend::gpu::context_options gopt;
    gopt.benchmark = a.find;
    trainer_t tr(o, gopt);  // host init (Kaiming) + upload
    note("model initialised and uploaded", t0);
    const double init_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto& ctx = tr.gpu();

    // Synthetic batch on the device: inputs ~ U(-1, 1) in FP16, one-hot targets of random classes.
    const t::shape4 in{a.batch, a.size, a.size, 3};
    std::vector<__half> xh(in.size());
    t::rng r(42, 1);
    for (auto& v : xh) v = __float2half_rn(2.f * r.uniform() - 1.f);
    g::device_tensor<__half> x;
    x.resize(in);
    x.buffer.upload(xh);
    std::vector<float> qh(static_cast<std::size_t>(a.batch) * net::classes, 0.f);
    for (int i = 0; i < a.batch; ++i) qh[static_cast<std::size_t>(i) * net::classes + r.below(net::classes)] = 1.f;
    g::device_buffer<float> q;
    q.upload(qh);

    const auto tp = std::chrono::steady_clock::now();
    tr.prepare(in);
    note(a.find ? "convolution algorithms chosen (cudnnFind)" : "convolution algorithms chosen (heuristics)", tp);
    const double prepare_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tp).count();
    auto step = [&] { (void)tr.step_on_device(x, q.data(), o.lr); };
    const auto tw = std::chrono::steady_clock::now();
    (void)time_ms(ctx, std::max(a.warmup, 1), step);  // first steps allocate activations and workspaces
    note("warm-up steps done", tw);
    std::printf("device: %s\n", prop.name);
    std::printf("model: %s, %lld parameters, %.3f GMACs/image at %dx%d\n", net::name().c_str(),
                static_cast<long long>(t::parameter_count_v<net>),
                static_cast<double>(t::macs<net>(a.size, a.size)) / 1e9, a.size, a.size);
    std::printf("setup: host init + upload %.1f s, convolution algorithm choice (prepare) %.1f s\n", init_s, prepare_s);

    // Printed as soon as measured (a run cut short by a time limit still reports what it did).
    auto profile = [&](const char* label, int steps) {
        ctx.profile().enabled = true;
        ctx.profile().reset();
        (void)time_ms(ctx, steps, step);
        std::printf("GPU time per kind of call, %d profiled steps (%s):\n%s", steps, label,
                    ctx.profile().report().c_str());
        ctx.profile().enabled = false;
    };
    const char* mine = ctx.options().wgrad_gemm ? "wgrad by im2col+GEMM" : "wgrad by cuDNN";
    profile(mine, 2);

    std::vector<double> step_ms, fwd_ms;
    for (int rep = 0; rep < a.reps; ++rep) {
        step_ms.push_back(time_ms(ctx, a.iters, step) / a.iters);
        fwd_ms.push_back(time_ms(ctx, a.iters, [&] { (void)tr.device_net().forward(x, t::nn::mode::train); }) /
                         a.iters);
        std::printf("rep %d: step %.2f ms, forward %.2f ms\n", rep + 1, step_ms.back(), fwd_ms.back());
    }
    note("timed steps done", tw);
    const double ms = median(step_ms), fwd = median(fwd_ms);
    const double ips = a.batch * 1000.0 / ms;
    std::size_t free_b = 0, total_b = 0;
    TRICKS_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    const double used_gib = static_cast<double>(total_b - free_b) / (1024.0 * 1024 * 1024);
    std::printf(
        "tricks resnet50d fp16_mixed batch %d (%s): %.1f ms/step, %.0f images/s; forward %.1f ms, "
        "backward+loss+update %.1f ms; device memory used %.2f GiB\n",
        a.batch, mine, ms, ips, fwd, ms - fwd, used_gib);

    // The other backward-filter implementation, same process and data: im2col + cuBLAS GEMM for
    // the convolutions cuDNN handles otherwise (1x1s are GEMMs either way).
    ctx.options().wgrad_gemm = !ctx.options().wgrad_gemm;
    const char* other = ctx.options().wgrad_gemm ? "wgrad by im2col+GEMM" : "wgrad by cuDNN";
    (void)time_ms(ctx, 2, step);
    std::vector<double> other_ms;
    for (int rep = 0; rep < a.reps; ++rep) other_ms.push_back(time_ms(ctx, a.iters, step) / a.iters);
    const double oms = median(other_ms);
    std::printf("variant (%s): %.1f ms/step, %.0f images/s\n", other, oms, a.batch * 1000.0 / oms);
    profile(other, 2);
    ctx.options().wgrad_gemm = !ctx.options().wgrad_gemm;
    if (!a.json.empty()) {
        std::ofstream f(a.json);
        f << "{\"impl\": \"tricks\", \"algorithms\": \"" << (a.find ? "find" : "heuristics") << "\", \"device\": \""
          << prop.name << "\", \"batch\": " << a.batch << ", \"size\": " << a.size << ", \"step_ms\": " << ms
          << ", \"fwd_ms\": " << fwd << ", \"images_per_s\": " << ips << ", \"variant\": \"" << other
          << "\", \"variant_images_per_s\": " << a.batch * 1000.0 / oms << ", \"memory_used_gib\": " << used_gib
          << ", \"parameters\": " << t::parameter_count_v<net> << "}\n";
    }
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "train_bench: %s\n", e.what());
    return 1;
}
