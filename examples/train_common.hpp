#pragma once
// The README's main job (examples/train): command line, model and recipe types, and the run itself
// as a template over the backend. train.cpp instantiates it for backend::cpu; train_cuda.cu (built
// when CMake finds nvcc and cuDNN) for backend::cuda, behind `--device cuda`.
#include <omp.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include <tricks/tricks.hpp>

#include "cli.hpp"

namespace t = tricks;

namespace train_example {

template <int Width>
using net = t::models::cifar_resnet<20, t::width<Width>, t::in_channels<1>, t::classes<10>, t::tweak::deep_stem,
                                    t::tweak::avg_down, t::init::zero_gamma>;

template <class Precision>
using recipe = t::recipe<t::optim::sgd<t::optim::nesterov>, t::lr::linear_scaling<256>, t::lr::warmup<t::epochs<1>>,
                         t::lr::cosine, t::decay::no_bias_decay, t::loss::label_smoothing, t::mix::mixup, Precision>;

struct cli {
    t::options opt;
    std::filesystem::path data_dir = t::data::fashion_mnist::default_dir();
    std::filesystem::path out_dir = "out/train";
    std::filesystem::path resume;
    int width = 16;
    long train_images = 0;  // 0: all 60,000
    bool cuda = false;      // --device cuda
    int precision = -1;     // --precision: 32 or 16; -1: fp32 on the CPU, fp16 on CUDA
};

inline constexpr const char* usage =
    "usage: train [options]\n"
    "Trains cifar_resnet<20> with deep stem (ResNet-C), avg-down shortcuts (ResNet-D) and zero-gamma on\n"
    "Fashion-MNIST, with Nesterov SGD, linear lr scaling, 1 warmup epoch, cosine decay, no bias decay,\n"
    "label smoothing and mixup (He et al. 2019). Progress goes to stderr; the result to stdout.\n\n"
    "  --epochs N        training epochs (default 5)\n"
    "  --batch N         batch size (default 128)\n"
    "  --lr X            base learning rate at batch 256; the run uses lr * batch / 256 (default 0.4)\n"
    "  --wd X            weight decay on conv/linear weights (default 5e-4)\n"
    "  --warmup N        warmup epochs (default 1)\n"
    "  --smoothing X     label smoothing epsilon (default 0.1)\n"
    "  --mixup X         mixup alpha (default 0.2)\n"
    "  --seed N          random seed: same seed, same build, same result bit for bit (default 1)\n"
    "  --data DIR        Fashion-MNIST IDX files (default $TRICKS_FASHION_MNIST_DIR or\n"
    "                    /usr/share/datasets/fashion-mnist, Debian package dataset-fashion-mnist)\n"
    "  --out DIR         output folder for metrics.csv, metrics.json, report.md, model.ckpt (default out/train)\n"
    "  --width 16|32     base width of the network (default 16)\n"
    "  --threads N       CPU threads (default: all cores)\n"
    "  --conv ALGO       CPU convolutions: winograd (F(2x2,3x3) for 3x3 stride-1 layers; default) or\n"
    "                    direct (no Winograd: the direct and im2col kernels only)\n"
    "  --device cpu|cuda where the network trains (default cpu; cuda needs a build that found nvcc and cuDNN)\n"
    "  --precision 32|16 fp32, or fp16_mixed (FP16 storage, FP32 master weights, loss scaling);\n"
    "                    default 32 on the CPU (where 16 is an exact emulation), 16 on CUDA (tensor cores)\n"
    "  --resume FILE     continue from a checkpoint written by an earlier run with the same settings\n"
    "  --train-images N  train on the first N images only (quick runs)\n"
    "  --steps N         at most N steps per epoch (quick runs)\n"
    "  --stop-after N    stop after N epochs, leaving a checkpoint to --resume from (time-boxed runs)\n"
    "  --quiet           no progress output\n"
    "  --help            this text\n";

[[noreturn]] inline void fail(const std::string& msg) { examples::cli_fail("train", msg); }

template <class T>
T number(std::string_view flag, const char* v) {
    return examples::cli_number<T>("train", flag, v);
}

inline cli parse(int argc, char** argv) {
    cli c;
    c.opt.epochs = 5;
    c.opt.batch = 128;
    c.opt.lr = 0.4;
    c.opt.weight_decay = 5e-4;
    c.opt.warmup_epochs = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        auto take = [&] { ++i; return v; };
        if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            std::exit(0);
        } else if (a == "--epochs") c.opt.epochs = number<int>(a, take());
        else if (a == "--batch") c.opt.batch = number<int>(a, take());
        else if (a == "--lr") c.opt.lr = number<double>(a, take());
        else if (a == "--wd") c.opt.weight_decay = number<double>(a, take());
        else if (a == "--warmup") c.opt.warmup_epochs = number<int>(a, take());
        else if (a == "--smoothing") c.opt.label_smoothing = number<double>(a, take());
        else if (a == "--mixup") c.opt.mixup_alpha = number<double>(a, take());
        else if (a == "--seed") c.opt.seed = number<std::uint64_t>(a, take());
        else if (a == "--threads") c.opt.threads = number<int>(a, take());
        else if (a == "--conv") c.opt.conv_algorithm = examples::cli_conv_algo("train", a, take());
        else if (a == "--width") c.width = number<int>(a, take());
        else if (a == "--train-images") c.train_images = number<long>(a, take());
        else if (a == "--steps") c.opt.max_steps_per_epoch = number<int>(a, take());
        else if (a == "--stop-after") c.opt.stop_after_epochs = number<int>(a, take());
        else if (a == "--data") { if (!v) fail("--data needs a folder"); c.data_dir = take(); }
        else if (a == "--out") { if (!v) fail("--out needs a folder"); c.out_dir = take(); }
        else if (a == "--resume") { if (!v) fail("--resume needs a file"); c.resume = take(); }
        else if (a == "--quiet") c.opt.progress = false;
        else if (a == "--device") {
            const std::string_view d = v ? v : "";
            take();
            if (d == "cuda") c.cuda = true;
            else if (d != "cpu") fail("--device: '" + std::string(d) + "' is not cpu or cuda");
        } else if (a == "--precision") c.precision = number<int>(a, take());
        else fail("unknown option '" + std::string(a) + "'");
    }
    if (c.width != 16 && c.width != 32) fail("--width must be 16 or 32 (the width is part of the model type)");
    if (c.opt.epochs < 1) fail("--epochs must be at least 1");
    if (c.opt.batch < 1) fail("--batch must be at least 1");
    if (c.opt.threads < 0) fail("--threads must be >= 0");
    if (c.opt.warmup_epochs > c.opt.epochs) fail("--warmup must not exceed --epochs");
    if (c.precision == -1) c.precision = c.cuda ? 16 : 32;
    if (c.precision != 16 && c.precision != 32) fail("--precision must be 32 or 16");
    return c;
}

/// "cuda: <GPU name>" for the CUDA build's report; defined in train_cuda.cu.
std::string cuda_device_name();

template <int Width, class Precision, class Backend>
int run(cli& c) {
    using model = net<Width>;
    using recipe = train_example::recipe<Precision>;
    const auto start = std::chrono::steady_clock::now();
    t::data::dataset train = t::data::fashion_mnist::train(c.data_dir);
    const t::data::dataset test = t::data::fashion_mnist::test(c.data_dir);
    if (c.train_images > 0 && c.train_images < train.n) train = train.subset(0, static_cast<std::size_t>(c.train_images));
    std::filesystem::create_directories(c.out_dir);
    c.opt.checkpoint = c.out_dir / "model.ckpt";

    t::trainer<model, recipe, Backend> trainer(c.opt);
    if (!c.resume.empty()) trainer.resume(c.resume);
    const int threads = omp_get_max_threads();
    std::string device = "cpu";
    if constexpr (!std::is_same_v<Backend, t::backend::cpu>) device = cuda_device_name();
    std::fprintf(stderr, "tricks: %s (%lld parameters, %.1f MMACs/image) on %s (%d train, %d test), %s, %d threads\n",
                 model::name().c_str(), static_cast<long long>(t::parameter_count_v<model>),
                 static_cast<double>(t::macs<model>(28, 28)) / 1e6, c.data_dir.string().c_str(), train.n, test.n,
                 device.c_str(), threads);
    std::fprintf(stderr, "tricks: recipe %s; %d epochs, batch %d, lr %.3g (scaled %.3g), wd %.2g\n", recipe::describe().c_str(),
                 c.opt.epochs, c.opt.batch, c.opt.lr, c.opt.lr * c.opt.batch / 256, c.opt.weight_decay);

    const t::history h = trainer.fit(train, test);
    if constexpr (!std::is_same_v<Backend, t::backend::cpu>) {
        if (const char* p = std::getenv("TRICKS_GPU_PROFILE"); p && p[0] == '1')
            std::fprintf(stderr, "tricks: GPU profile (TRICKS_GPU_PROFILE=1)\n%s", trainer.profile_report().c_str());
    }

    t::run_facts facts{model::name(), recipe::describe(), "Fashion-MNIST (" + c.data_dir.string() + ")",
                       t::parameter_count_v<model>, t::macs<model>(28, 28), threads,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), device};
    t::write_csv(c.out_dir / "metrics.csv", h);
    t::write_json(c.out_dir / "metrics.json", facts, c.opt, h);
    const std::string report = t::markdown_report(facts, c.opt, h);
    std::ofstream(c.out_dir / "report.md") << report;
    std::cout << report << "\nwrote " << (c.out_dir / "metrics.csv").string() << ", " << (c.out_dir / "metrics.json").string()
              << ", " << (c.out_dir / "report.md").string() << ", " << (c.out_dir / "model.ckpt").string() << "\n"
              << "test top-1: " << std::fixed << std::setprecision(2) << 100 * h.final_top1() << "%\n";
    return 0;
}

/// The backend::cpu instantiations (train.cpp) and the backend::cuda ones (train_cuda.cu).
int run_cpu(cli& c);
int run_cuda(cli& c);

}  // namespace train_example

