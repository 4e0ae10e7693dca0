// dlib peer for bench/compare.sh: training and inference throughput of the main job's network
// (cifar_resnet 20 with deep stem + avg-down, 1x28x28, 10 classes) in dlib's template DNN API, on
// the CPU, at the same batch and thread count as tricks (bench_throughput) and PyTorch
// (torch_bench.py). A benchmark, not a test: nothing here asserts a speed.
//   OPENBLAS_CORETYPE=SkylakeX bench_dlib [--threads N] [--batch N] [--width 16|32] [--iters N]
// Prints `dlib params <n>`, `dlib train_images_per_s <median>`, `dlib infer_images_per_s <median>`
// (eval mode: BN replaced by its running-stats affine transform, dlib's documented inference net)
// and `dlib infer_fused_images_per_s <median>` (the same net after dlib::fuse_layers folds each
// affine into the conv below it; the analogue of PyTorch's frozen mode).
//
// Layer mapping from bench/peers/torch_resnet.py's cifar_resnet(20, width=W, c=True, d=True), which
// has the same shapes as tricks' cifar_resnet<20, width<W>, deep_stem, avg_down>:
//   Conv2d(k, stride s, padding k/2, bias=False) -> con_<N,k,k,s,s,k/2,k/2> with its bias disabled
//     by dlib::disable_duplicative_biases (every conv sits under a BN, as in the PyTorch net)
//   BatchNorm2d (gamma, beta; running stats are not parameters) -> bn_con (training) / affine (eval)
//   ReLU -> relu;  residual add -> tag1 ... add_prev1 (identity) or add_prev2 (projection)
//   ResNet-D shortcut AvgPool2d(2, 2, ceil_mode, count_include_pad=False) + 1x1 conv + BN
//     -> avg_pool<2,2,2,2> (no padding) + con<N,1,1,1,1> + bn.  The pooled maps are 28x28 and
//     14x14, both even, so ceil_mode and count_include_pad never come into play.
//   AdaptiveAvgPool2d(1) + flatten -> avg_pool_everything;  Linear(4W, 10) with bias -> fc<10>
// Parameters: 273,874 at width 16 and 1,090,842 at width 32, the same as PyTorch and tricks.
//
// Differences that remain (none changes a layer shape or the work per layer noticeably):
//   - dlib's sgd is plain momentum (v = m v - lr (g + wd w)); torch_bench.py uses Nesterov. dlib
//     also skips weight decay on BN parameters (its default multiplier is 0) — a few hundred
//     multiply-adds per step.
//   - The loss is dlib's loss_multiclass_log (softmax cross-entropy without label smoothing;
//     torch_bench.py smooths labels by 0.1): the loss is a negligible part of a step.
//   - dlib's bn_con computes batch statistics whenever a batch has more than one sample; there is no
//     eval flag, so eval mode is a second network type with affine layers, copied from the
//     trained one (dlib's own idiom), as in dlib's examples.
//   - dlib's CPU backend has no threading of its own: convolutions (im2col + GEMM per sample) and
//     fc run in BLAS, which is multi-threaded; batch norm, ReLU, pooling and the adds run on one
//     thread. --threads sets OpenBLAS's thread count (openblas_set_num_threads).
//   - Debian's OpenBLAS 0.3.21 does not recognise these CPUs and falls back to Prescott kernels,
//     about 5x slower at SGEMM on these AVX-512 machines (~57 vs ~310 GFLOP/s on 2 threads): run
//     with OPENBLAS_CORETYPE=SkylakeX, as bench/compare.sh does; this program warns when OpenBLAS
//     reports the Prescott core.
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include <dlib/dnn.h>

namespace {

using namespace dlib;

// A 3x3 stride-2 conv with padding 1 (dlib's con<> alias defaults to no padding when stride > 1).
template <long N, typename SUBNET>
using con3s2 = add_layer<con_<N, 3, 3, 2, 2, 1, 1>, SUBNET>;

// Basic block, identity shortcut: relu(bn(conv3(relu(bn(conv3(x))))) + x).
template <template <typename> class BN, long N, typename SUBNET>
using block_id = relu<add_prev1<BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, 1, 1, tag1<SUBNET>>>>>>>>;

// Basic block that halves the resolution and changes the width: the main path's first conv has
// stride 2; the ResNet-D shortcut is 2x2/2 average pool, 1x1 conv, BN (computed first, tagged 2).
template <template <typename> class BN, long N, typename SUBNET>
using block_down = relu<add_prev2<BN<
    con<N, 3, 3, 1, 1, relu<BN<con3s2<N, skip1<tag2<BN<con<N, 1, 1, 1, 1, avg_pool<2, 2, 2, 2, tag1<SUBNET>>>>>>>>>>>>>;

// Deep stem: three 3x3 stride-1 convs to W/2, W/2, W, each with BN and ReLU.
template <template <typename> class BN, long W, typename SUBNET>
using deep_stem =
    relu<BN<con<W, 3, 3, 1, 1, relu<BN<con<W / 2, 3, 3, 1, 1, relu<BN<con<W / 2, 3, 3, 1, 1, SUBNET>>>>>>>>>;

// Three stages of three blocks (W, 2W, 4W channels; 28x28, 14x14, 7x7), global average pool, fc.
template <template <typename> class BN, long W>
using head_and_body = fc<
    10,
    avg_pool_everything<block_id<
        BN, 4 * W,
        block_id<
            BN, 4 * W,
            block_down<
                BN, 4 * W,
                block_id<
                    BN, 2 * W,
                    block_id<
                        BN, 2 * W,
                        block_down<
                            BN, 2 * W,
                            block_id<BN, W,
                                     block_id<BN, W, block_id<BN, W, deep_stem<BN, W, input<matrix<float>>>>>>>>>>>>>>;

template <long W>
using train_net = loss_multiclass_log<head_and_body<bn_con, W>>;
template <long W>
using infer_net = loss_multiclass_log<head_and_body<affine, W>>;

// The PyTorch model's parameter count (torch_resnet.py's params(), also tricks'
// parameter_count_v): convs without bias, BN gamma and beta, fc weights and bias.
constexpr long long reference_params(long w) {
    const long h = w / 2;
    auto conv = [](long cin, long cout, long k) { return cin * cout * k * k; };
    long long n = conv(1, h, 3) + conv(h, h, 3) + conv(h, w, 3) + 2 * (h + h + w);  // stem
    long cin = w;
    for (long c : {w, 2 * w, 4 * w}) {
        for (int b = 0; b < 3; ++b) {
            n += conv(cin, c, 3) + conv(c, c, 3) + 4 * c;
            if (cin != c) n += conv(cin, c, 1) + 2 * c;  // avg-down shortcut
            cin = c;
        }
    }
    return n + cin * 10 + 10;  // fc
}
static_assert(reference_params(16) == 273874 && reference_params(32) == 1090842);

// OpenBLAS's own controls, looked up at run time so that the program still builds and runs when
// the BLAS behind dlib is another implementation.
int set_blas_threads(int n) {
    using set_fn = void (*)(int);
    using get_fn = int (*)();
    auto set = reinterpret_cast<set_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    auto get = reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    if (set && n > 0) set(n);
    return get ? get() : -1;
}
const char* blas_core() {
    using core_fn = char* (*)();
    auto core = reinterpret_cast<core_fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
    return core ? core() : "not OpenBLAS";
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

template <long W>
int run(int batch, int iters) {
    using clock = std::chrono::steady_clock;
    std::mt19937 gen(1);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::uniform_int_distribution<unsigned long> label(0, 9);
    std::vector<matrix<float>> images(batch, matrix<float>(28, 28));
    for (auto& im : images)
        for (auto& v : im) v = normal(gen);
    std::vector<unsigned long> y(batch);
    for (auto& v : y) v = label(gen);

    auto net = std::make_unique<train_net<W>>();
    disable_duplicative_biases(*net);  // bias-free convs under every BN, as in PyTorch and tricks
    resizable_tensor x;                // the batch, converted once (the timed loops take tensors)
    net->to_tensor(images.begin(), images.end(), x);
    net->forward(x);  // allocates the parameters
    const long long n = static_cast<long long>(count_parameters(*net));
    std::printf("dlib params %lld\n", n);
    if (n != reference_params(W)) {
        std::fprintf(stderr, "dlib_bench: %lld parameters, expected %lld (PyTorch/tricks)\n", n, reference_params(W));
        return 1;
    }

    std::vector<sgd> solvers(train_net<W>::num_computational_layers, sgd(5e-5f, 0.9f));
    std::vector<double> times;
    for (int i = 0; i < iters + 2; ++i) {  // 2 warm-up steps
        const auto t0 = clock::now();
        net->compute_parameter_gradients(x, y.begin());  // forward, loss, backward
        net->update_parameters(solvers, 0.1);
        if (i >= 2) times.push_back(std::chrono::duration<double>(clock::now() - t0).count());
    }
    std::printf("dlib train_images_per_s %.1f\n", batch / median(times));

    auto infer = [&](auto& m) {
        std::vector<double> t;
        for (int i = 0; i < iters + 2; ++i) {
            const auto t0 = clock::now();
            m.forward(x);  // logits, as PyTorch's model(x)
            if (i >= 2) t.push_back(std::chrono::duration<double>(clock::now() - t0).count());
        }
        return batch / median(t);
    };
    auto eval = std::make_unique<infer_net<W>>(*net);  // BN -> affine with the running statistics
    resizable_tensor unused;
    eval->to_tensor(images.begin(), images.begin() + 1, unused);  // dlib's forward(tensor) requires one
    std::printf("dlib infer_images_per_s %.1f\n", infer(*eval));
    const matrix<float> logits = mat(eval->forward(x));
    fuse_layers(*eval);  // each affine folded into the conv below it (conv bias re-enabled)
    std::printf("dlib infer_fused_images_per_s %.1f\n", infer(*eval));
    // The fused net must compute the same function (up to float rounding), or its speed means nothing.
    const float diff = max(abs(mat(eval->forward(x)) - logits)), scale = max(abs(logits));
    std::printf("dlib fused_max_abs_diff %.3g (logits up to %.3g)\n", diff, scale);
    if (!(diff <= 1e-3f * std::max(1.f, scale))) {
        std::fprintf(stderr, "dlib_bench: fuse_layers changed the logits\n");
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int batch = 128, iters = 10, width = 16, threads = 2;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (i + 1 >= argc || (a != "--batch" && a != "--iters" && a != "--threads" && a != "--width")) {
            std::fprintf(stderr, "usage: %s [--threads N] [--batch N] [--width 16|32] [--iters N]\n", argv[0]);
            return 2;
        }
        const int v = std::atoi(argv[++i]);
        if (a == "--batch")
            batch = v;
        else if (a == "--iters")
            iters = v;
        else if (a == "--threads")
            threads = v;
        else
            width = v;
    }
    if (batch < 2 || iters < 1 || threads < 1 || (width != 16 && width != 32)) {
        std::fprintf(stderr,
                     "dlib_bench: need --batch >= 2 (dlib's BN uses batch statistics only then), "
                     "--iters >= 1, --threads >= 1, --width 16 or 32\n");
        return 2;
    }
    const int got = set_blas_threads(threads);
    const char* core = blas_core();
    std::printf("dlib blas %s core, %d threads, batch %d, width %d\n", core, got, batch, width);
    if (std::strcmp(core, "Prescott") == 0)
        std::fprintf(stderr,
                     "dlib_bench: OpenBLAS is using its Prescott kernels; set OPENBLAS_CORETYPE "
                     "(e.g. SkylakeX on AVX-512 CPUs) for a fair comparison\n");
    return width == 16 ? run<16>(batch, iters) : run<32>(batch, iters);
}
