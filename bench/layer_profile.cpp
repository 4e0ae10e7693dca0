// Where a CPU training step of the main job's network goes: every kernel call of one forward +
// backward + SGD step of cifar_resnet<20, width<W>>-D (1x28x28, 10 classes) timed on its own, at the
// real shapes and batch, grouped by kind (conv forward / backward-data / backward-filter per shape,
// batch norm, ReLU, residual add, pooling, classifier, loss, optimizer). A benchmark, not a test.
//
//   bench_layer_profile [--batch 128] [--iters 7] [--threads 2] [--width 16|32] [--conv winograd|direct]
//
// Each kernel runs --iters times after one warm-up call; the median is reported, multiplied by how
// often the network calls that kernel with that shape. The sum is compared with a measured whole step.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <tricks/tricks.hpp>

namespace t = tricks;
namespace tb = tricks::backend;
namespace th = tricks::backend::host;

namespace {

int iters = 7;
tb::conv_algo algo = tb::conv_algo::winograd;

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

std::vector<float> noise(std::size_t n, std::uint64_t stream) {
    t::rng r(7, stream);
    std::vector<float> v(n);
    for (auto& e : v) e = static_cast<float>(r.normal());
    return v;
}

t::tensor<float> aligned(const std::vector<float>& v) {
    t::tensor<float> t({1, 1, 1, static_cast<int>(v.size())});
    std::copy(v.begin(), v.end(), t.data());
    return t;
}

struct row {
    std::string kind, shape;
    int count;
    double ms;     // one call
    double flops;  // one call (convolutions, classifier)
};

struct conv_shape {
    int hw, cin, cout, k, stride, count;
    bool first;  // the network's first conv: no backward-data
};

template <int W>
std::vector<conv_shape> conv_shapes() {
    // cifar_resnet<20> (n = 3 blocks per stage) with deep stem and avg-down shortcuts, 28x28 input.
    return {{28, 1, W / 2, 3, 1, 1, true},    {28, W / 2, W / 2, 3, 1, 1, false}, {28, W / 2, W, 3, 1, 1, false},
            {28, W, W, 3, 1, 6, false},       {28, W, 2 * W, 3, 2, 1, false},     {14, 2 * W, 2 * W, 3, 1, 5, false},
            {14, W, 2 * W, 1, 1, 1, false},   {14, 2 * W, 4 * W, 3, 2, 1, false}, {7, 4 * W, 4 * W, 3, 1, 5, false},
            {7, 2 * W, 4 * W, 1, 1, 1, false}};
}

template <int W>
int run(int batch) {
    std::vector<row> rows;
    th::workspace ws;
    for (const auto& c : conv_shapes<W>()) {
        const tb::conv_geometry g{{batch, c.hw, c.hw, c.cin}, c.cout, c.k, c.k, c.stride, c.k / 2};
        // 64-byte aligned, as the network's tensors are (the vector kernels' loads then never split a line)
        const auto x = aligned(noise(g.in.size(), 1)), dy = aligned(noise(g.out().size(), 3));
        const auto w = aligned(noise(static_cast<std::size_t>(c.k) * c.k * c.cin * c.cout, 2));
        t::tensor<float> y(g.out()), dx(g.in), dw(w.shape());
        const double fl = 2.0 * static_cast<double>(g.out().pixels()) * g.k() * c.cout;
        const std::string s = std::to_string(c.hw) + "x" + std::to_string(c.hw) + " " + std::to_string(c.cin) + "->" +
                              std::to_string(c.cout) + " k" + std::to_string(c.k) + "/" + std::to_string(c.stride);
        rows.push_back({"conv fwd", s, c.count,
                        median_ms([&] { th::conv2d_forward(g, x.data(), w.data(), y.data(), ws, {}, algo); }), fl});
        if (!c.first)
            rows.push_back({"conv bwd-data", s, c.count,
                            median_ms([&] { th::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ws, algo); }),
                            fl});
        rows.push_back({"conv bwd-filter", s, c.count,
                        median_ms([&] { th::conv2d_backward_filter(g, x.data(), dy.data(), dw.data(), ws, algo); }),
                        fl});
    }
    // Batch norm after every conv: (pixels, channels, plain, fused). A BN followed by a ReLU (the
    // stem's three, the first of each block) runs fused with it (sequential<..., bn, relu>); the
    // others (the last of each branch, the shortcuts') run alone.
    struct bn_shape {
        int hw, c, plain, fused;
    };
    const bn_shape bns[] = {{28, W / 2, 0, 2}, {28, W, 3, 4}, {14, 2 * W, 4, 3}, {7, 4 * W, 4, 3}};
    for (const auto& b : bns) {
        const std::size_t pixels = static_cast<std::size_t>(batch) * b.hw * b.hw, n = pixels * b.c;
        const tb::batch_norm_geometry g{pixels, b.c, 1e-5f, 0.1f};
        const auto x = noise(n, 4), dy = noise(n, 5);
        std::vector<float> y(n), dx(n), gamma(b.c, 1.f), beta(b.c, 0.f), mean(b.c), is(b.c), rm(b.c, 0.f), rv(b.c, 1.f),
            dg(b.c), db(b.c);
        const std::string s = std::to_string(b.hw) + "x" + std::to_string(b.hw) + "x" + std::to_string(b.c);
        if (b.plain) {
            rows.push_back({"bn fwd", s, b.plain, median_ms([&] {
                                th::batch_norm_forward_train(g, x.data(), gamma.data(), beta.data(), y.data(),
                                                             mean.data(), is.data(), rm.data(), rv.data(), ws);
                            }),
                            0});
            rows.push_back({"bn bwd", s, b.plain, median_ms([&] {
                                th::batch_norm_backward(g, x.data(), dy.data(), gamma.data(), mean.data(), is.data(),
                                                        dx.data(), dg.data(), db.data(), ws);
                            }),
                            0});
        }
        if (b.fused) {
            rows.push_back({"bn+relu fwd", s, b.fused, median_ms([&] {
                                th::batch_norm_forward_train<true>(g, x.data(), gamma.data(), beta.data(), y.data(),
                                                                   mean.data(), is.data(), rm.data(), rv.data(), ws);
                            }),
                            0});
            rows.push_back({"bn+relu bwd", s, b.fused, median_ms([&] {
                                th::batch_norm_backward<true>(g, x.data(), dy.data(), gamma.data(), mean.data(),
                                                              is.data(), dx.data(), dg.data(), db.data(), ws, y.data());
                            }),
                            0});
        }
    }
    // The residual add+ReLU at each block's end, forward and backward.
    struct ew_shape {
        int hw, c, adds;
    };
    const ew_shape ews[] = {{28, W, 3}, {14, 2 * W, 3}, {7, 4 * W, 3}};
    for (const auto& e : ews) {
        const std::size_t n = static_cast<std::size_t>(batch) * e.hw * e.hw * e.c;
        const auto a = noise(n, 6), b = noise(n, 7), dy = noise(n, 8);
        std::vector<float> y(n), dx(n);
        const std::string s = std::to_string(e.hw) + "x" + std::to_string(e.hw) + "x" + std::to_string(e.c);
        rows.push_back(
            {"add+relu fwd", s, e.adds, median_ms([&] { th::add_relu_forward(n, a.data(), b.data(), y.data()); }), 0});
        // backward of a block end: relu mask + the sum of the two branch gradients
        rows.push_back({"add+relu bwd", s, e.adds, median_ms([&] {
                            th::relu_backward(n, a.data(), dy.data(), dx.data());
                            th::add(n, dx.data(), b.data(), y.data());
                        }),
                        0});
    }
    // Pools: two ResNet-D avg-pools, the global average pool.
    {
        const tb::pool_geometry g1{{batch, 28, 28, W}, 2, 2, 0, true, false},
            g2{{batch, 14, 14, 2 * W}, 2, 2, 0, true, false};
        for (const auto& g : {g1, g2}) {
            const auto x = noise(g.in.size(), 9), dy = noise(g.out().size(), 10);
            std::vector<float> y(g.out().size()), dx(g.in.size());
            rows.push_back({"pool fwd", "avg 2x2 ceil " + std::to_string(g.in.h), 1,
                            median_ms([&] { th::avg_pool_forward(g, x.data(), y.data()); }), 0});
            rows.push_back({"pool bwd", "avg 2x2 ceil " + std::to_string(g.in.h), 1,
                            median_ms([&] { th::avg_pool_backward(g, dy.data(), dx.data()); }), 0});
        }
        const t::shape4 in{batch, 7, 7, 4 * W};
        const auto x = noise(in.size(), 11), dy = noise(static_cast<std::size_t>(batch) * 4 * W, 12);
        std::vector<float> y(static_cast<std::size_t>(batch) * 4 * W), dx(in.size());
        rows.push_back(
            {"pool fwd", "global 7x7", 1, median_ms([&] { th::global_avg_pool_forward(in, x.data(), y.data()); }), 0});
        rows.push_back({"pool bwd", "global 7x7", 1,
                        median_ms([&] { th::global_avg_pool_backward(in, dy.data(), dx.data()); }), 0});
    }
    // The whole network, one step: forward, loss, backward, optimizer (for the sum's sanity check).
    using model = t::models::cifar_resnet<20, t::width<W>, t::in_channels<1>, t::classes<10>, t::tweak::deep_stem,
                                          t::tweak::avg_down>;
    auto m = std::make_unique<model>();
    m->init(1);
    t::tensor<float> xin({batch, 28, 28, 1}), dz({batch, 1, 1, 10}), q({batch, 1, 1, 10});
    {
        const auto v = noise(xin.size(), 13);
        std::copy(v.begin(), v.end(), xin.data());
        q.fill(0.1f);
    }
    const t::nn::context train{t::nn::mode::train, t::nn::storage::fp32, true, algo};
    t::sgd_optimizer opt(m->parameters(), t::sgd_config{0.9, 5e-4, true, true});
    double fwd = 0, loss = 0, bwd = 0, step = 0;
    {
        std::vector<double> f, l, b, s;
        for (int i = 0; i < iters + 1; ++i) {
            const auto a = std::chrono::steady_clock::now();
            const auto& z = m->forward(xin, train);
            const auto a1 = std::chrono::steady_clock::now();
            (void)th::softmax_cross_entropy(batch, 10, z.data(), q.data(), dz.data());
            const auto a2 = std::chrono::steady_clock::now();
            m->backward(dz, train, false);
            const auto a3 = std::chrono::steady_clock::now();
            opt.step(0.01);
            const auto a4 = std::chrono::steady_clock::now();
            if (i == 0) continue;
            f.push_back(std::chrono::duration<double, std::milli>(a1 - a).count());
            l.push_back(std::chrono::duration<double, std::milli>(a2 - a1).count());
            b.push_back(std::chrono::duration<double, std::milli>(a3 - a2).count());
            s.push_back(std::chrono::duration<double, std::milli>(a4 - a3).count());
        }
        auto med = [](std::vector<double> v) {
            std::sort(v.begin(), v.end());
            return v[v.size() / 2];
        };
        fwd = med(f);
        loss = med(l);
        bwd = med(b);
        step = med(s);
    }
    rows.push_back({"loss", "softmax CE 10", 1, loss, 0});
    rows.push_back(
        {"optimizer", "nesterov sgd, " + std::to_string(t::parameter_count_v<model>) + " params", 1, step, 0});

    std::map<std::string, double> by_kind;
    double total = 0;
    // GFLOP/s of a convolution: the direct algorithm's 2 x MACs per second, whatever algorithm ran (with
    // Winograd's 2.25x fewer multiplies this "effective" rate can exceed the machine's FP32 peak).
    std::printf("convolutions: %s\n", tb::to_string(algo));
    std::printf("%-16s %-22s %5s %10s %10s %9s\n", "kind", "shape", "calls", "ms/call", "ms/step", "GFLOP/s");
    for (const auto& r : rows) {
        const double per_step = r.ms * r.count;
        by_kind[r.kind] += per_step;
        total += per_step;
        std::printf("%-16s %-22s %5d %10.3f %10.2f", r.kind.c_str(), r.shape.c_str(), r.count, r.ms, per_step);
        if (r.flops > 0) std::printf(" %9.1f", r.flops / (r.ms * 1e6));
        std::printf("\n");
    }
    std::vector<std::pair<double, std::string>> kinds;
    for (const auto& [k, v] : by_kind) kinds.push_back({v, k});
    std::sort(kinds.rbegin(), kinds.rend());
    std::printf("\nby kind (batch %d, %d threads, width %d):\n", batch, omp_get_max_threads(), W);
    for (const auto& [v, k] : kinds) std::printf("  %-16s %8.2f ms  %5.1f%%\n", k.c_str(), v, 100 * v / total);
    std::printf("  %-16s %8.2f ms  (sum of the kernels above)\n", "total", total);
    std::printf(
        "measured whole step: forward %.2f + loss %.2f + backward %.2f + optimizer %.2f = %.2f ms (%.0f images/s)\n",
        fwd, loss, bwd, step, fwd + loss + bwd + step, batch * 1000.0 / (fwd + loss + bwd + step));
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    int batch = 128, threads = 0, width = 16;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const int v = i + 1 < argc ? std::atoi(argv[i + 1]) : 0;
        if (a == "--batch")
            batch = v, ++i;
        else if (a == "--iters")
            iters = v, ++i;
        else if (a == "--threads")
            threads = v, ++i;
        else if (a == "--width")
            width = v, ++i;
        else if (a == "--conv" && i + 1 < argc && tb::parse(argv[i + 1], algo))
            ++i;
        else {
            std::fprintf(stderr, "bench_layer_profile: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (batch < 1 || iters < 1 || (width != 16 && width != 32)) {
        std::fprintf(stderr, "bench_layer_profile: batch and iters must be >= 1, width 16 or 32\n");
        return 2;
    }
    if (threads > 0) omp_set_num_threads(threads);
    return width == 16 ? run<16>(batch) : run<32>(batch);
}
