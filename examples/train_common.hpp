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
#include "train_models.hpp"

namespace t = tricks;

namespace train_example {

/// The main job's model: ResNet-20 with the paper's C and D tweaks and zero-gamma.
template <int Width, int InChannels = 1, int Classes = 10>
using net = t::models::cifar_resnet<20, t::width<Width>, t::in_channels<InChannels>, t::classes<Classes>,
                                    t::tweak::deep_stem, t::tweak::avg_down, t::init::zero_gamma>;

/// The main job's recipe: every training trick of the paper that applies without a teacher.
template <class Precision>
using recipe = t::recipe<t::optim::sgd<t::optim::nesterov>, t::lr::linear_scaling<256>, t::lr::warmup<t::epochs<1>>,
                         t::lr::cosine, t::decay::no_bias_decay, t::loss::label_smoothing, t::mix::mixup, Precision>;

struct cli {
    t::options opt;
    std::string model = "cifar_resnet20d";
    std::filesystem::path data_dir = t::data::fashion_mnist::default_dir();
    bool folder = false;     // --data is an image folder (train/ and val/), not IDX files
    int image_size = 0;      // --image-size: 0 = 224 for ImageNet ResNets, 32 for CIFAR-style nets
    int resize = 0;          // --resize: evaluation's shorter side; 0 = round(image_size * 256 / 224)
    double min_area = 0.08;  // --min-area: random resized crop's smallest area fraction
    bool skip_bad = false;   // --skip-bad: decode every image first and leave out those that fail
    std::filesystem::path out_dir = "out/train";
    std::filesystem::path resume;
    int width = 16;
    long train_images = 0;  // 0: all 60,000
    bool cuda = false;      // --device cuda
    int precision = -1;     // --precision: 32 or 16; -1: fp32 on the CPU, fp16 on CUDA
};

inline constexpr const char* usage =
    "usage: train [options]\n"
    "Trains a ResNet with the paper's tricks (He et al. 2019): by default the main job, cifar_resnet<20> with\n"
    "deep stem (ResNet-C), avg-down shortcuts (ResNet-D) and zero-gamma on Fashion-MNIST, with Nesterov SGD,\n"
    "linear lr scaling, 1 warmup epoch, cosine decay, no bias decay, label smoothing and mixup. --model and\n"
    "--data train any model of the table below on IDX files or an image folder with the same recipe.\n"
    "Progress goes to stderr; the result to stdout.\n"
    "\n"
    "  --epochs N        training epochs (default 5)\n"
    "  --batch N         batch size (default 128)\n"
    "  --lr X            base learning rate at batch 256; the run uses lr * batch / 256 (default 0.4)\n"
    "  --wd X            weight decay on conv/linear weights (default 5e-4)\n"
    "  --warmup N        warmup epochs (default 1)\n"
    "  --smoothing X     label smoothing epsilon (default 0.1)\n"
    "  --mixup X         mixup alpha (default 0.2)\n"
    "  --seed N          random seed: same seed, same build, same result bit for bit (default 1)\n"
    "  --data DIR        Fashion-MNIST IDX files (default $TRICKS_FASHION_MNIST_DIR or\n"
    "                    /usr/share/datasets/fashion-mnist, Debian package dataset-fashion-mnist), or an\n"
    "                    image folder: DIR/train and DIR/val, one sub-folder of .jpg/.jpeg/.png per class\n"
    "                    (trained with the paper's ImageNet augmentation, evaluated on a centre crop)\n"
    "  --model NAME      the network (default cifar_resnet20d, the main job's); the list is below\n"
    "  --width 16|32     base width of the CIFAR-style networks (default 16)\n"
    "  --image-size N    image folders: training and evaluation crop side (default 224 for resnet*, 32\n"
    "                    for cifar_resnet*); evaluation resizes the shorter side to N*256/224 first\n"
    "  --resize N        image folders: evaluation's shorter side before the centre crop\n"
    "  --min-area X      image folders: smallest crop area of the random resized crop (default 0.08)\n"
    "  --skip-bad        image folders: decode every image before training and leave out (and report)\n"
    "                    the ones that fail, instead of stopping at the first bad file\n"
    "  --workers N       loader threads (default: 1 for IDX, all cores for image folders)\n"
    "  --out DIR         output folder for metrics.csv, metrics.json, report.md, model.ckpt (to --resume) and\n"
    "                    model.safetensors (the weights under PyTorch's names) (default out/train)\n"
    "  --threads N       CPU threads (default: all cores)\n"
    "  --conv ALGO       CPU convolutions: winograd (F(4x4,3x3), or F(2x2,3x3) on small outputs, for 3x3\n"
    "                    stride-1 layers; default) or direct (no Winograd: the direct and im2col kernels only)\n"
    "  --device cpu|cuda where the network trains (default cpu; cuda needs a build that found nvcc and cuDNN)\n"
    "  --precision 32|16 fp32, or fp16_mixed (FP16 storage, FP32 master weights, loss scaling);\n"
    "                    default 32 on the CPU (where 16 is an exact emulation), 16 on CUDA (tensor cores)\n"
    "  --resume FILE     continue from a checkpoint written by an earlier run with the same settings;\n"
    "                    Ctrl-C (SIGINT) or SIGTERM stops a run after its current step and leaves\n"
    "                    OUT/model.ckpt to resume from, even inside an epoch (exit status 130 or 143)\n"
    "  --init FILE       start from pretrained weights: a .safetensors file with PyTorch's names and layouts\n"
    "                    (torchvision's resnet18..152, timm's resnet*d; io::load_torch_weights), e.g.\n"
    "                    --model resnet50b with torchvision's resnet50, resnet50d with timm's resnet50d\n"
    "  --init-skip-classifier  with --init: keep the fresh classifier (a file with another number of classes)\n"
    "  --freeze N        fine-tuning: fix the first N parts of the network (1: the stem; 2: stem + layer1;\n"
    "                    ...; all but the classifier: feature extraction)\n"
    "  --freeze-bn       fine-tuning: every batch norm keeps its (pretrained) running statistics\n"
    "  --backbone-lr X   fine-tuning: lr of everything but the classifier = X times the lr (default 1)\n"
    "  --sync-bn         under mpirun: batch norms use the statistics of the whole global batch\n"
    "                    (summed over the ranks) instead of each rank's share\n"
    "  --gradient-transport T  under mpirun with --device cuda: auto (NCCL when built with it, else a\n"
    "                    CUDA-aware MPI, else host), host, nccl or mpi; every one gives the same bits\n"
    "  --allow-change NAME[,NAME]  with --resume: let these settings differ from the checkpoint's (e.g.\n"
    "                    epochs, to extend a finished run; report.md lists every setting and its rule)\n"
    "  --train-images N  train on the first N images only (quick runs; IDX)\n"
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
        auto take = [&] {
            ++i;
            return v;
        };
        if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            std::fputs(model_help().c_str(), stdout);
            std::exit(0);
        } else if (a == "--epochs")
            c.opt.epochs = number<int>(a, take());
        else if (a == "--batch")
            c.opt.batch = number<int>(a, take());
        else if (a == "--lr")
            c.opt.lr = number<double>(a, take());
        else if (a == "--wd")
            c.opt.weight_decay = number<double>(a, take());
        else if (a == "--warmup")
            c.opt.warmup_epochs = number<int>(a, take());
        else if (a == "--smoothing")
            c.opt.label_smoothing = number<double>(a, take());
        else if (a == "--mixup")
            c.opt.mixup_alpha = number<double>(a, take());
        else if (a == "--seed")
            c.opt.seed = number<std::uint64_t>(a, take());
        else if (a == "--threads")
            c.opt.threads = number<int>(a, take());
        else if (a == "--conv")
            c.opt.conv_algorithm = examples::cli_conv_algo("train", a, take());
        else if (a == "--width")
            c.width = number<int>(a, take());
        else if (a == "--model") {
            if (!v) fail("--model needs a name");
            c.model = take();
        } else if (a == "--image-size")
            c.image_size = number<int>(a, take());
        else if (a == "--resize")
            c.resize = number<int>(a, take());
        else if (a == "--min-area")
            c.min_area = number<double>(a, take());
        else if (a == "--skip-bad")
            c.skip_bad = true;
        else if (a == "--workers")
            c.opt.data_workers = number<int>(a, take());
        else if (a == "--train-images")
            c.train_images = number<long>(a, take());
        else if (a == "--steps")
            c.opt.max_steps_per_epoch = number<int>(a, take());
        else if (a == "--stop-after")
            c.opt.stop_after_epochs = number<int>(a, take());
        else if (a == "--data") {
            if (!v) fail("--data needs a folder");
            c.data_dir = take();
        } else if (a == "--out") {
            if (!v) fail("--out needs a folder");
            c.out_dir = take();
        } else if (a == "--resume") {
            if (!v) fail("--resume needs a file");
            c.resume = take();
        } else if (a == "--allow-change") {
            if (!v || !*v) fail("--allow-change needs setting names, e.g. --allow-change epochs");
            for (std::string_view names = take(); !names.empty();) {
                const auto comma = names.find(',');
                const std::string_view name = names.substr(0, comma);
                if (name.empty()) fail("--allow-change: empty setting name in '" + std::string(v) + "'");
                c.opt.resume_allow.emplace_back(name);
                names = comma == std::string_view::npos ? std::string_view() : names.substr(comma + 1);
            }
        } else if (a == "--init") {
            if (!v) fail("--init needs a .safetensors file");
            c.opt.init_weights = take();
        } else if (a == "--init-skip-classifier")
            c.opt.init_skip_classifier = true;
        else if (a == "--freeze")
            c.opt.freeze_stages = number<int>(a, take());
        else if (a == "--freeze-bn")
            c.opt.freeze_bn_stats = true;
        else if (a == "--sync-bn")
            c.opt.sync_batch_norm = true;
        else if (a == "--gradient-transport") {
            const char* name = take();
            if (!name || !t::distributed::parse(name, c.opt.gradient_transport))
                fail(std::string("--gradient-transport: '") + (name ? name : "") + "' is not auto, host, nccl or mpi");
        } else if (a == "--backbone-lr")
            c.opt.backbone_lr_scale = number<double>(a, take());
        else if (a == "--quiet")
            c.opt.progress = false;
        else if (a == "--device") {
            const std::string_view d = v ? v : "";
            take();
            if (d == "cuda")
                c.cuda = true;
            else if (d != "cpu")
                fail("--device: '" + std::string(d) + "' is not cpu or cuda");
        } else if (a == "--precision")
            c.precision = number<int>(a, take());
        else
            fail("unknown option '" + std::string(a) + "'");
    }
    if (c.width != 16 && c.width != 32) fail("--width must be 16 or 32 (the width is part of the model type)");
    if (!known_model(c.model)) fail("--model: '" + c.model + "' is not a model of the table" + model_help());
    if (c.opt.epochs < 1) fail("--epochs must be at least 1");
    if (c.opt.batch < 1) fail("--batch must be at least 1");
    if (c.opt.threads < 0) fail("--threads must be >= 0");
    if (c.opt.warmup_epochs > c.opt.epochs) fail("--warmup must not exceed --epochs");
    if (c.precision == -1) c.precision = c.cuda ? 16 : 32;
    if (c.precision != 16 && c.precision != 32) fail("--precision must be 32 or 16");
    if (c.image_size < 0 || c.image_size == 1) fail("--image-size must be at least 2");
    if (c.resize < 0) fail("--resize must be positive");
    if (!(c.min_area > 0 && c.min_area <= 1)) fail("--min-area must be in (0, 1]");
    if (c.opt.data_workers < 0) fail("--workers must be >= 0");
    if (!c.opt.resume_allow.empty() && c.resume.empty()) fail("--allow-change applies to --resume only");
    if (c.opt.init_skip_classifier && c.opt.init_weights.empty()) fail("--init-skip-classifier applies to --init only");
    if (c.opt.freeze_stages < 0) fail("--freeze must be >= 0");
    if (!(c.opt.backbone_lr_scale >= 0)) fail("--backbone-lr must be >= 0");
    c.folder = t::data::is_image_folder_root(c.data_dir);
    return c;
}

/// "cuda: <GPU name>" for the CUDA build's report; defined in train_cuda.cu.
std::string cuda_device_name();

/// The data of a run: Fashion-MNIST's IDX files in memory, or an image folder read from disk.
struct run_data {
    t::data::dataset train, test;                // IDX
    t::data::image_folder_split folders;         // image folder
    t::data::image_transform_options transform;  // image folder
    std::string description;                     // for the report
};

/// Loads --data as the model needs it: IDX for 1-channel models, an image folder for RGB ones.
template <class Model>
run_data load_data(const cli& c) {
    run_data d;
    if constexpr (Model::input_channels == 3) {
        if (!c.folder)
            fail("--model " + c.model + " trains on an image folder (RGB photos): --data " + c.data_dir.string() +
                 " has no train/ and val/ sub-folders");
        d.folders = t::data::load_image_folders(c.data_dir);
        std::size_t bad = 0;
        if (c.skip_bad) {
            bad += t::data::verify_images(d.folders.train, true, c.opt.data_workers);
            bad += t::data::verify_images(d.folders.val, true, c.opt.data_workers);
            for (const auto* f : {&d.folders.train, &d.folders.val})
                for (const auto& why : f->skipped) std::fprintf(stderr, "train: skipped %s\n", why.c_str());
        }
        d.transform.size = c.image_size;
        d.transform.resize = c.resize > 0 ? c.resize : static_cast<int>(std::lround(c.image_size * 256.0 / 224.0));
        d.transform.min_area = c.min_area;
        t::data::check(d.transform);
        const std::size_t ignored = d.folders.train.ignored.size() + d.folders.val.ignored.size();
        d.description = "image folder " + c.data_dir.string() + " (" + std::to_string(d.folders.train.classes()) +
                        " classes; " + t::data::folder_source<>{&d.folders.train, d.transform}.describe() + "; " +
                        std::to_string(ignored) + " non-image files ignored" +
                        (c.skip_bad ? ", " + std::to_string(bad) + " bad images skipped" : std::string()) + ")";
        for (const auto* f : {&d.folders.train, &d.folders.val})
            if (!f->ignored.empty())
                std::fprintf(stderr, "train: %s: ignored %zu files that are not .jpg/.jpeg/.png (e.g. %s)\n",
                             f->name.c_str(), f->ignored.size(), f->ignored.front().string().c_str());
    } else {
        if (c.folder)
            fail("--data " + c.data_dir.string() + " is an image folder, but --model " + c.model +
                 " is built for Fashion-MNIST's grey IDX images here; image folders train the RGB models "
                 "(every --model name works; this one is only the IDX entry of it)");
        d.train = t::data::fashion_mnist::train(c.data_dir);
        d.test = t::data::fashion_mnist::test(c.data_dir);
        if (c.train_images > 0 && c.train_images < d.train.n)
            d.train = d.train.subset(0, static_cast<std::size_t>(c.train_images));
        d.description = "Fashion-MNIST (" + c.data_dir.string() + ")";
    }
    return d;
}

template <class Model, class Precision, class Backend>
int run(cli& c) {
    using model = Model;
    using recipe = train_example::recipe<Precision>;
    const auto start = std::chrono::steady_clock::now();
    run_data data = load_data<Model>(c);
    std::filesystem::create_directories(c.out_dir);
    c.opt.checkpoint = c.out_dir / "model.ckpt";

    t::trainer<model, recipe, Backend> trainer(c.opt);
    if (!c.resume.empty()) trainer.resume(c.resume);
    const int threads = omp_get_max_threads();
    // data-parallel (mpirun): rank 0 speaks and writes the outputs; every rank trains
    const int ranks = c.opt.communicator ? c.opt.communicator->size() : 1;
    const bool leader = !c.opt.communicator || c.opt.communicator->rank() == 0;
    std::string device = "cpu";
    if constexpr (!std::is_same_v<Backend, t::backend::cpu>) device = cuda_device_name();
    const int side = Model::input_channels == 3 ? c.image_size : 28;
    const std::size_t n_train = c.folder ? data.folders.train.size() : static_cast<std::size_t>(data.train.n);
    const std::size_t n_test = c.folder ? data.folders.val.size() : static_cast<std::size_t>(data.test.n);
    if (leader) {
        std::fprintf(
            stderr,
            "tricks: %s (%lld parameters, %.1f MMACs/image at %dx%d) on %s (%zu train, %zu test), %s, %d thread%s\n",
            model::name().c_str(), static_cast<long long>(t::parameter_count_v<model>),
            static_cast<double>(t::macs<model>(side, side)) / 1e6, side, side, data.description.c_str(), n_train,
            n_test, device.c_str(), threads, threads == 1 ? "" : "s");
        std::fprintf(stderr, "tricks: recipe %s; %d epochs, batch %d, lr %.3g (scaled %.3g), wd %.2g\n",
                     recipe::describe().c_str(), c.opt.epochs, c.opt.batch, c.opt.lr, c.opt.lr * c.opt.batch / 256,
                     c.opt.weight_decay);
        if (ranks > 1)
            std::fprintf(stderr,
                         "tricks: data-parallel over %d ranks (%d thread%s each): global batch %d = %d x %d images; "
                         "the lr scales with the global batch\n",
                         ranks, threads, threads == 1 ? "" : "s", c.opt.batch, ranks, c.opt.batch / ranks);
    }

    t::history h;
    if constexpr (Model::input_channels == 3) {
        if (leader && model::classes > data.folders.train.classes())
            std::fprintf(
                stderr, "tricks: the head has %d outputs for %d classes; outputs %d..%d are trained towards 0\n",
                model::classes, data.folders.train.classes(), data.folders.train.classes(), model::classes - 1);
        h = trainer.fit(t::data::folder_source<>{&data.folders.train, data.transform},
                        t::data::folder_source<>{&data.folders.val, data.transform});
    } else {
        h = trainer.fit(data.train, data.test);
    }
    if constexpr (!std::is_same_v<Backend, t::backend::cpu>) {
        if (const char* p = std::getenv("TRICKS_GPU_PROFILE"); p && p[0] == '1')
            std::fprintf(stderr, "tricks: GPU profile (TRICKS_GPU_PROFILE=1)\n%s", trainer.profile_report().c_str());
    }

    if (!leader) return 0;  // rank 0 holds the same model and writes the outputs
    if constexpr (requires { trainer.communication_seconds(); }) {
        if (ranks > 1) {  // the training steps' time, from each epoch's throughput
            long steps = static_cast<long>(n_train) / c.opt.batch;
            if (c.opt.max_steps_per_epoch > 0) steps = std::min<long>(steps, c.opt.max_steps_per_epoch);
            double train_s = 0;
            for (const auto& r : h.epochs)
                train_s += r.images_per_s > 0 ? static_cast<double>(steps) * c.opt.batch / r.images_per_s : 0;
            const char* via = "host";
            if constexpr (requires { trainer.gradient_transport(); })
                if (trainer.gradient_transport()) via = trainer.gradient_transport();
            std::fprintf(stderr,
                         "tricks: rank 0 spent %.2f s in the gradient sums (%s transport; waiting for the other ranks "
                         "included), %.1f%% of %.1f s of training steps\n",
                         trainer.communication_seconds(), via,
                         100 * trainer.communication_seconds() / std::max(train_s, 1e-9), train_s);
        }
    }
    t::run_facts facts{model::name(),
                       recipe::describe(),
                       data.description,
                       t::parameter_count_v<model>,
                       t::macs<model>(side, side),
                       threads,
                       std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                       device,
                       trainer.settings()};
    t::write_csv(c.out_dir / "metrics.csv", h);
    t::write_json(c.out_dir / "metrics.json", facts, c.opt, h);
    // the trained weights under PyTorch's names (--init of a later run, export, torchvision/timm)
    t::io::save_torch_weights(trainer.model(), c.out_dir / "model.safetensors");
    const std::string report = t::markdown_report(facts, c.opt, h);
    std::ofstream(c.out_dir / "report.md") << report;
    std::cout << report << "\nwrote " << (c.out_dir / "metrics.csv").string() << ", "
              << (c.out_dir / "metrics.json").string() << ", " << (c.out_dir / "report.md").string() << ", "
              << (c.out_dir / "model.ckpt").string() << ", " << (c.out_dir / "model.safetensors").string() << "\n"
              << "test top-1: " << std::fixed << std::setprecision(2) << 100 * h.final_top1() << "%\n";
    return 0;
}

/// Classes of the image folder's training split: its non-hidden sub-directories (the head size is
/// chosen before the full scan, which load_data does).
inline int folder_classes(const cli& c) {
    int k = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(c.data_dir / "train", ec))
        if (e.is_directory(ec) && e.path().filename().string()[0] != '.') ++k;
    return k;
}

/// Runs the table entry E on the CPU: the model type for the data kind, width and head.
template <class E>
int run_entry(cli& c) {
    using F = typename E::family;
    constexpr bool main_model = E::name == std::string_view("cifar_resnet20d");
    if (c.image_size == 0) c.image_size = F::imagenet ? 224 : 32;
    if (c.precision == 16 && !main_model)
        fail("--precision 16 is built for the main job's model (cifar_resnet20d) only; --model " + c.model +
             " trains in fp32");
    if constexpr (F::imagenet) {
        if (c.width != 16) fail("--width applies to the CIFAR-style networks; " + c.model + " is 64 wide");
        if (!c.folder)
            fail("--model " + c.model + " trains on an image folder (RGB photos): --data " + c.data_dir.string() +
                 " has no train/ and val/ sub-folders");
        if (folder_classes(c) > 1000)
            fail("--data " + c.data_dir.string() + " has " + std::to_string(folder_classes(c)) + " classes; " +
                 c.model + "'s head here has 1000 outputs (use the library with t::classes<N> for more)");
        return run<typename F::template type<3, 1000>, t::precision::fp32, t::backend::cpu>(c);
    } else if (c.folder) {
        const int k = folder_classes(c);
        if (k > 100)
            fail("--data " + c.data_dir.string() + " has " + std::to_string(k) +
                 " classes; the CIFAR-style heads here have " +
                 "10 or 100 outputs (use a resnet*, or the library with t::classes<N>)");
        if (k <= 10)
            return c.width == 16 ? run<typename F::template type<16, 3, 10>, t::precision::fp32, t::backend::cpu>(c)
                                 : run<typename F::template type<32, 3, 10>, t::precision::fp32, t::backend::cpu>(c);
        return c.width == 16 ? run<typename F::template type<16, 3, 100>, t::precision::fp32, t::backend::cpu>(c)
                             : run<typename F::template type<32, 3, 100>, t::precision::fp32, t::backend::cpu>(c);
    } else {
        if constexpr (main_model) {
            if (c.precision == 16)
                return c.width == 16 ? run<net<16>, t::precision::fp16_mixed, t::backend::cpu>(c)
                                     : run<net<32>, t::precision::fp16_mixed, t::backend::cpu>(c);
        }
        return c.width == 16 ? run<typename F::template type<16, 1, 10>, t::precision::fp32, t::backend::cpu>(c)
                             : run<typename F::template type<32, 1, 10>, t::precision::fp32, t::backend::cpu>(c);
    }
}

/// The CPU runs of table part P (train_partP.cpp); -1 when the name is not in that part.
template <int P>
int run_table_part(cli& c) {
    int rc = -1;
    with_model<P>(c.model, [&]<class E>() { rc = run_entry<E>(c); });
    return rc;
}
int run_part0(cli& c);
int run_part1(cli& c);
int run_part2(cli& c);
int run_part3(cli& c);
int run_part4(cli& c);

/// The backend::cpu runs (train.cpp: the table) and the backend::cuda ones (train_cuda.cu).
int run_cpu(cli& c);
int run_cuda(cli& c);

}  // namespace train_example
