// Where ResNet inference at ImageNet size goes: every kernel call of one evaluation-mode forward of
// resnet<18|50> (optionally with the -B/-C/-D tweaks) at 224x224, timed on its own at the real shapes,
// the way models::inference_pool runs it (one sub-batch of --chunk images on one thread; the pool
// runs one such sub-batch per core). Convolutions carry their folded batch norm (+ ReLU, + residual)
// epilogue as the evaluation forward does. A benchmark, not a test.
//
//   bench_profile_224 [--depth 18|50] [--tweaks a|d] [--chunk 8] [--size 224] [--iters 5] [--threads 1]
//                     [--train 0|1]
//
// --threads N > 1 runs each kernel on N threads instead: what inference_pool does with a batch of
// one sub-batch (batch 1).
// --tweaks a: the original ResNet (7x7 stem, stride on the first 1x1, 1x1/2 shortcuts); d: ResNet-D
// (B + C + D: stride on the 3x3, three 3x3 stem convs, avg-pool + 1x1 shortcuts), as examples/train's
// resnet50d. Each kernel runs --iters times after one warm-up call; the median is reported, times
// how often the network calls that shape. The sum is compared with the whole single-thread forward.
// --train 1: the convolutions of a training step instead (batch --chunk on --threads, as the trainer
// runs it): per shape the forward (no epilogue: training runs batch norm on its own), the gradient
// with respect to the input (not for the stem's first conv, whose input needs none) and to the filter.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <tricks/models/resnet.hpp>
#include <tricks/tricks.hpp>

namespace t = tricks;
namespace tb = tricks::backend;
namespace th = tricks::backend::host;

namespace {

int iters = 5;
bool train = false;

template <class F>
double median_ms(F&& f) {
    f();
    std::vector<double> v;
    for (int i = 0; i < iters; ++i) {
        const auto a = std::chrono::steady_clock::now();
        f();
        v.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    }
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

t::tensor<float> noise(std::size_t n, std::uint64_t stream) {
    t::rng r(7, stream);
    t::tensor<float> v({1, 1, 1, static_cast<int>(n)});
    for (auto& e : v.span()) e = static_cast<float>(r.normal());
    return v;
}

struct conv_call {
    int hw, cin, cout, k, stride;
    bool relu, residual;
    int count;
    [[nodiscard]] bool operator<(const conv_call& o) const {
        return std::tie(hw, cin, cout, k, stride, relu, residual) <
               std::tie(o.hw, o.cin, o.cout, o.k, o.stride, o.relu, o.residual);
    }
};

/// Every convolution of an evaluation forward, with how often it occurs, plus the pools.
struct plan {
    std::map<conv_call, int> convs;
    std::vector<tb::pool_geometry> max_pools, avg_pools;
    int final_hw = 7, final_c = 2048;
};

plan make_plan(int depth, bool tweak_d, int n, int size) {
    plan p;
    auto add = [&](int hw, int cin, int cout, int k, int stride, bool relu, bool residual) {
        ++p.convs[{hw, cin, cout, k, stride, relu, residual, 0}];
    };
    int hw = size;
    if (tweak_d) {  // -C: three 3x3 convs (32, 32, 64), the first with stride 2
        add(hw, 3, 32, 3, 2, true, false);
        hw = (hw + 1) / 2;
        add(hw, 32, 32, 3, 1, true, false);
        add(hw, 32, 64, 3, 1, true, false);
    } else {
        add(hw, 3, 64, 7, 2, true, false);
        hw = (hw + 1) / 2;
    }
    p.max_pools.push_back({{n, hw, hw, 64}, 3, 2, 1});
    hw = (hw + 1) / 2;
    const bool bottleneck = depth >= 50;
    const int blocks[4] = {depth == 18 ? 2 : 3, depth == 18 ? 2 : 4, depth == 18 ? 2 : 6, depth == 18 ? 2 : 3};
    int cin = 64;
    for (int s = 0; s < 4; ++s) {
        const int width = 64 << s, cout = bottleneck ? 4 * width : width;
        for (int b = 0; b < blocks[s]; ++b) {
            const int stride = (b == 0 && s > 0) ? 2 : 1;
            const int ohw = (hw + stride - 1) / stride;
            if (bottleneck) {
                // -B: the stride on the 3x3; -A: on the first 1x1
                const int s1 = tweak_d ? 1 : stride, s3 = tweak_d ? stride : 1;
                add(hw, cin, width, 1, s1, true, false);
                add(s1 == 2 ? ohw : hw, width, width, 3, s3, true, false);
                add(ohw, width, cout, 1, 1, true, true);
            } else {
                add(hw, cin, width, 3, stride, true, false);
                add(ohw, width, width, 3, 1, true, true);
            }
            if (b == 0 && (stride != 1 || cin != cout)) {  // projection shortcut (folded BN, no ReLU)
                if (tweak_d && stride == 2) {
                    p.avg_pools.push_back({{n, hw, hw, cin}, 2, 2, 0, true, false});
                    add(ohw, cin, cout, 1, 1, false, false);
                } else {
                    add(hw, cin, cout, 1, stride, false, false);
                }
            }
            cin = cout;
            hw = ohw;
        }
    }
    p.final_hw = hw;
    p.final_c = cin;
    return p;
}

template <class Model>
double whole_forward_ms(int n, int size) {
    auto m = std::make_unique<Model>();
    m->init(1);
    const auto x = noise(static_cast<std::size_t>(n) * size * size * 3, 1);
    t::tensor<float> xin({n, size, size, 3});
    std::copy(x.data(), x.data() + x.size(), xin.data());
    const t::nn::context eval{.phase = t::nn::mode::eval, .weights_version = t::models::detail::next_weights_version()};
    return median_ms([&] { (void)m->forward(xin, eval); });
}

int run(int depth, bool tweak_d, int n, int size) {
    const plan p = make_plan(depth, tweak_d, n, size);
    struct row {
        std::string kind, shape;
        int count;
        double ms, flops;
    };
    std::vector<row> rows;
    th::workspace ws;
    for (const auto& [c, count] : p.convs) {
        const tb::conv_geometry g{{n, c.hw, c.hw, c.cin}, c.cout, c.k, c.k, c.stride, c.k / 2};
        const auto x = noise(g.in.size(), 1), w = noise(static_cast<std::size_t>(g.k()) * c.cout, 2);
        const auto scale = noise(static_cast<std::size_t>(c.cout), 3),
                   shift = noise(static_cast<std::size_t>(c.cout), 4);
        const auto res = noise(g.out().size(), 5);
        t::tensor<float> y(g.out());
        const th::conv_epilogue epi{scale.data(), shift.data(), c.relu, c.residual ? res.data() : nullptr};
        th::prepared_filter pf;
        const float* prepared = th::prepare_filter(g, w.data(), tb::conv_algo::winograd, 1, pf);
        const double fl = 2.0 * static_cast<double>(g.out().pixels()) * g.k() * c.cout;
        std::string kind = c.k == 1 ? "conv 1x1" : c.k == 3 ? "conv 3x3" : "conv 7x7";
        if (c.stride == 2) kind += "/2";
        const std::string s = std::to_string(c.hw) + " " + std::to_string(c.cin) + "->" + std::to_string(c.cout) +
                              (c.residual ? " +res" : "") + (c.relu ? " relu" : "");
        if (!train) {
            rows.push_back({kind, s, count, median_ms([&] {
                                th::conv2d_forward(g, x.data(), w.data(), y.data(), ws, epi, tb::conv_algo::winograd,
                                                   prepared);
                            }),
                            fl});
            continue;
        }
        const std::string shape = std::to_string(c.hw) + " " + std::to_string(c.cin) + "->" + std::to_string(c.cout);
        rows.push_back({kind + " fwd", shape, count, median_ms([&] {
                            th::conv2d_forward(g, x.data(), w.data(), y.data(), ws, {}, tb::conv_algo::winograd);
                        }),
                        fl});
        const auto dy = noise(g.out().size(), 9);
        if (c.cin != 3) {
            t::tensor<float> dx(g.in);
            rows.push_back({kind + " dx", shape, count, median_ms([&] {
                                th::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ws,
                                                         tb::conv_algo::winograd);
                            }),
                            fl});
        }
        t::tensor<float> dw({1, 1, 1, g.k() * c.cout});
        rows.push_back({kind + " dw", shape, count, median_ms([&] {
                            th::conv2d_backward_filter(g, x.data(), dy.data(), dw.data(), ws, tb::conv_algo::winograd);
                        }),
                        fl});
    }
    for (const auto& g : train ? std::vector<tb::pool_geometry>{} : p.max_pools) {
        const auto x = noise(g.in.size(), 6);
        std::vector<float> y(g.out().size());
        std::vector<std::int32_t> arg(g.out().size());
        rows.push_back({"max pool", "3x3/2 " + std::to_string(g.in.h) + "x" + std::to_string(g.in.c), 1,
                        median_ms([&] { th::max_pool_forward(g, x.data(), y.data(), arg.data()); }), 0});
    }
    for (const auto& g : train ? std::vector<tb::pool_geometry>{} : p.avg_pools) {
        const auto x = noise(g.in.size(), 7);
        std::vector<float> y(g.out().size());
        rows.push_back({"avg pool", "2x2/2 " + std::to_string(g.in.h) + "x" + std::to_string(g.in.c), 1,
                        median_ms([&] { th::avg_pool_forward(g, x.data(), y.data()); }), 0});
    }
    if (!train) {
        const t::shape4 in{n, p.final_hw, p.final_hw, p.final_c};
        const auto x = noise(in.size(), 8);
        std::vector<float> y(static_cast<std::size_t>(n) * p.final_c);
        rows.push_back({"global pool", std::to_string(p.final_hw) + "x" + std::to_string(p.final_c), 1,
                        median_ms([&] { th::global_avg_pool_forward(in, x.data(), y.data()); }), 0});
    }
    double whole = 0;
    using r50d = t::models::resnet<50, t::tweak::stride_on_3x3, t::tweak::deep_stem, t::tweak::avg_down>;
    using r50 = t::models::resnet<50>;
    using r18d = t::models::resnet<18, t::tweak::deep_stem, t::tweak::avg_down>;
    using r18 = t::models::resnet<18>;
    if (train)
        ;  // no whole step to compare with here: bench_infer --train measures it
    else if (depth == 50)
        whole = tweak_d ? whole_forward_ms<r50d>(n, size) : whole_forward_ms<r50>(n, size);
    else
        whole = tweak_d ? whole_forward_ms<r18d>(n, size) : whole_forward_ms<r18>(n, size);

    std::map<std::string, double> by_kind;
    double total = 0, flops = 0;
    std::printf("resnet%d-%s, %dx%d, %s %d on %d thread(s)\n", depth, tweak_d ? "D" : "A", size, size,
                train ? "training convolutions, batch" : "sub-batch", n, omp_get_max_threads());
    std::printf("%-12s %-24s %5s %10s %10s %9s\n", "kind", "shape", "calls", "ms/call", "ms/fwd", "GFLOP/s");
    for (const auto& r : rows) {
        const double per = r.ms * r.count;
        by_kind[r.kind] += per;
        total += per;
        flops += r.flops * r.count;
        std::printf("%-12s %-24s %5d %10.3f %10.2f", r.kind.c_str(), r.shape.c_str(), r.count, r.ms, per);
        if (r.flops > 0) std::printf(" %9.1f", r.flops / (r.ms * 1e6));
        std::printf("\n");
    }
    std::vector<std::pair<double, std::string>> kinds;
    for (const auto& [k, v] : by_kind) kinds.push_back({v, k});
    std::sort(kinds.rbegin(), kinds.rend());
    std::printf("\nby kind:\n");
    for (const auto& [v, k] : kinds) std::printf("  %-12s %9.2f ms  %5.1f%%\n", k.c_str(), v, 100 * v / total);
    std::printf("  %-12s %9.2f ms  (sum of the kernels; %.1f GFLOP/s over the convolutions' direct FLOPs)\n", "total",
                total, flops / (total * 1e6));
    if (!train) std::printf("whole forward (model.forward): %.2f ms, %.1f images/s\n", whole, n * 1000.0 / whole);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int depth = 50, chunk = 8, size = 224, threads = 1;
    bool tweak_d = true;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string_view a = argv[i], v = argv[i + 1];
        const int iv = std::atoi(argv[i + 1]);
        if (a == "--depth" && (iv == 18 || iv == 50))
            depth = iv;
        else if (a == "--tweaks" && (v == "a" || v == "d"))
            tweak_d = v == "d";
        else if (a == "--chunk" && iv >= 1)
            chunk = iv;
        else if (a == "--size" && iv >= 32)
            size = iv;
        else if (a == "--iters" && iv >= 1)
            iters = iv;
        else if (a == "--threads" && iv >= 1)
            threads = iv;
        else if (a == "--train" && (iv == 0 || iv == 1))
            train = iv == 1;
        else {
            std::fprintf(stderr,
                         "usage: bench_profile_224 [--depth 18|50] [--tweaks a|d] [--chunk N>=1] [--size N>=32] "
                         "[--iters N>=1] [--threads N>=1] [--train 0|1]\n");
            return 2;
        }
    }
    omp_set_num_threads(threads);
    return run(depth, tweak_d, chunk, size);
}
