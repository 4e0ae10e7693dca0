// Convolution micro-benchmark of backend::cuda: every convolution of ResNet-50-D at 224x224 (the
// shapes of one training step, with their multiplicity), FP16 NHWC on tensor cores through tricks'
// cuDNN path, forward + backward-data + backward-filter, batch 256 by default.
// bench/gpu/torch_conv.py times PyTorch's channels_last AMP convolution on the same list, and
// bench/gpu/run.sh puts the two side by side.
//
//   conv_bench --list                 the shape table (one line per distinct shape; needs no GPU)
//   conv_bench [--batch 256] [--iters 10] [--warmup 3] [--fp32] [--heuristics] [--json FILE]
//
// Per shape: the time of one forward, one backward-data (not for the stem's first conv: the input
// image needs no gradient) and one backward-filter, median of `iters` timed iterations (CUDA events)
// after `warmup` untimed ones; the algorithm search (cudnnFind*) happens before, in conv2d_prepare,
// and is reported separately. Totals weight each shape by its multiplicity: "conv time per step",
// the images/s that time alone would allow, and the achieved TFLOP/s (2 FLOPs per MAC).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "tricks/backend/cuda/backend.cuh"

namespace {

namespace gpu = tricks::backend::gpu;
namespace tb = tricks::backend;

struct conv_shape {
    std::string name;
    int h, w, cin, cout, k, stride, pad;
    int count;
    bool dgrad;  // backward-data needed (false for the first conv)
    [[nodiscard]] int oh() const { return tricks::window_out(h, k, stride, pad); }
    [[nodiscard]] int ow() const { return tricks::window_out(w, k, stride, pad); }
    /// Multiply-accumulates of one forward pass for one image.
    [[nodiscard]] long long macs() const { return 1LL * oh() * ow() * cin * cout * k * k; }
};

/// ResNet-50-D (tweaks B, C, D; timm's resnet50d) at 224x224: deep stem, stride on the 3x3 conv,
/// average-pool + 1x1 projection shortcuts. Identical shapes are merged (counts added).
std::vector<conv_shape> resnet50d_convs() {
    std::vector<conv_shape> raw;
    auto add = [&raw](std::string name, int h, int cin, int cout, int k, int stride, int count, bool dgrad = true) {
        raw.push_back({std::move(name), h, h, cin, cout, k, stride, k / 2, count, dgrad});
    };
    add("stem.conv1 3x3/2", 224, 3, 32, 3, 2, 1, false);
    add("stem.conv2 3x3", 112, 32, 32, 3, 1, 1);
    add("stem.conv3 3x3", 112, 32, 64, 3, 1, 1);
    int h = 56, cin = 64;  // after the 3x3/2 max-pool
    const int planes[4] = {64, 128, 256, 512}, blocks[4] = {3, 4, 6, 3};
    for (int s = 0; s < 4; ++s) {
        const int p = planes[s], out = 4 * p, stride = s == 0 ? 1 : 2, ho = h / stride;
        const std::string st = "layer" + std::to_string(s + 1);
        add(st + ".0.conv1 1x1", h, cin, p, 1, 1, 1);
        add(st + ".0.conv2 3x3" + (stride == 2 ? "/2" : ""), h, p, p, 3, stride, 1);
        add(st + ".0.conv3 1x1", ho, p, out, 1, 1, 1);
        add(st + ".0.downsample 1x1", ho, cin, out, 1, 1, 1);  // after the 2x2 avg-pool when stride 2
        add(st + ".n.conv1 1x1", ho, out, p, 1, 1, blocks[s] - 1);
        add(st + ".n.conv2 3x3", ho, p, p, 3, 1, blocks[s] - 1);
        add(st + ".n.conv3 1x1", ho, p, out, 1, 1, blocks[s] - 1);
        h = ho;
        cin = out;
    }
    std::vector<conv_shape> merged;
    std::map<std::tuple<int, int, int, int, int, int, bool>, std::size_t> index;
    for (auto& c : raw) {
        const auto key = std::make_tuple(c.h, c.cin, c.cout, c.k, c.stride, c.pad, c.dgrad);
        if (auto it = index.find(key); it != index.end()) {
            merged[it->second].count += c.count;
            merged[it->second].name += " + " + c.name;
        } else {
            index.emplace(key, merged.size());
            merged.push_back(c);
        }
    }
    return merged;
}

/// tricks::macs<models::resnet50d>(224, 224) (= timm's resnet50d): the table must add up to it
/// (plus the 2048 x 1000 classifier).
constexpr long long resnet50d_macs_224 = 4'328'824'832LL;

template <class T>
__global__ void fill_kernel(std::size_t n, T* p, std::uint32_t seed, float scale) {
    for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
        std::uint32_t x = static_cast<std::uint32_t>(i) * 2654435761u ^ seed;
        x ^= x >> 16;
        x *= 0x7feb352du;
        x ^= x >> 15;
        const float u = static_cast<float>(x >> 8) * 0x1.0p-24f * 2.f - 1.f;
        p[i] = gpu::from_float<T>(u * scale);
    }
}

template <class T>
void fill(gpu::device_buffer<T>& b, std::uint32_t seed, float scale) {
    fill_kernel<T><<<1024, 256>>>(b.size(), b.data(), seed, scale);
    TRICKS_CUDA_CHECK_LAUNCH("fill_kernel");
}

struct options {
    int batch = 256, iters = 10, warmup = 3;
    bool fp32 = false, heuristics = false, list = false;
    std::string json;
};

struct result {
    conv_shape s;
    double find_s = 0, fwd_ms = 0, dgrad_ms = 0, wgrad_ms = 0;
    std::string algos;
};

double median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

template <class T>
result run_shape(const conv_shape& s, const options& o, gpu::context& ctx) {
    const tb::conv_geometry g{{o.batch, s.h, s.w, s.cin}, s.cout, s.k, s.k, s.stride, s.pad};
    gpu::device_buffer<T> x(g.in.size()), w(gpu::filter_elements(g)), y(g.out().size()), dy(g.out().size()),
        dx(s.dgrad ? g.in.size() : 0), dw(gpu::filter_elements(g));
    fill(x, 1, 1.f);
    fill(w, 2, 0.05f);
    fill(dy, 3, 1.f);
    result r;
    r.s = s;
    const auto t0 = std::chrono::steady_clock::now();
    (void)gpu::conv2d_prepare<T>(g, ctx);  // algorithm search, workspace sized once
    ctx.synchronize();
    r.find_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    cudaEvent_t ev[4];
    for (auto& e : ev) TRICKS_CUDA_CHECK(cudaEventCreate(&e));
    std::vector<float> f, d, wg;
    for (int it = 0; it < o.warmup + o.iters; ++it) {
        TRICKS_CUDA_CHECK(cudaEventRecord(ev[0], ctx.stream()));
        gpu::conv2d_forward(g, x.data(), w.data(), y.data(), ctx);
        TRICKS_CUDA_CHECK(cudaEventRecord(ev[1], ctx.stream()));
        if (s.dgrad) gpu::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ctx);
        TRICKS_CUDA_CHECK(cudaEventRecord(ev[2], ctx.stream()));
        gpu::conv2d_backward_filter(g, x.data(), dy.data(), dw.data(), ctx);
        TRICKS_CUDA_CHECK(cudaEventRecord(ev[3], ctx.stream()));
        TRICKS_CUDA_CHECK(cudaEventSynchronize(ev[3]));
        if (it < o.warmup) continue;
        float a = 0, b = 0, c = 0;
        TRICKS_CUDA_CHECK(cudaEventElapsedTime(&a, ev[0], ev[1]));
        TRICKS_CUDA_CHECK(cudaEventElapsedTime(&b, ev[1], ev[2]));
        TRICKS_CUDA_CHECK(cudaEventElapsedTime(&c, ev[2], ev[3]));
        f.push_back(a);
        d.push_back(b);
        wg.push_back(c);
    }
    for (auto& e : ev) TRICKS_CUDA_CHECK(cudaEventDestroy(e));
    r.fwd_ms = median(f);
    r.dgrad_ms = s.dgrad ? median(d) : 0.0;
    r.wgrad_ms = median(wg);
    r.algos = gpu::conv2d_describe<T>(g, ctx);
    return r;
}

int usage() {
    std::fprintf(
        stderr,
        "usage: conv_bench [--list] [--batch N] [--iters N] [--warmup N] [--fp32] [--heuristics] [--json FILE]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (a == "--list")
            o.list = true;
        else if (a == "--fp32")
            o.fp32 = true;
        else if (a == "--heuristics")
            o.heuristics = true;
        else if (a == "--batch" || a == "--iters" || a == "--warmup" || a == "--json") {
            const char* v = next();
            if (!v) return usage();
            if (a == "--batch")
                o.batch = std::atoi(v);
            else if (a == "--iters")
                o.iters = std::atoi(v);
            else if (a == "--warmup")
                o.warmup = std::atoi(v);
            else
                o.json = v;
        } else
            return usage();
    }
    if (o.batch <= 0 || o.iters <= 0 || o.warmup < 0) return usage();

    const auto shapes = resnet50d_convs();
    long long total_macs = 0;
    for (const auto& s : shapes) total_macs += s.macs() * s.count;
    if (total_macs + 2048LL * 1000 != resnet50d_macs_224) {
        std::fprintf(stderr, "conv_bench: the shape table adds up to %lld MACs + classifier, ResNet-50-D has %lld\n",
                     total_macs, resnet50d_macs_224);
        return 3;
    }
    if (o.list) {
        // name is last (it contains spaces); fields: h w cin cout k stride pad count dgrad macs_per_image
        std::printf("# resnet50d convs at 224x224: %zu distinct shapes, %lld conv MACs per image\n", shapes.size(),
                    total_macs);
        for (const auto& s : shapes)
            std::printf("%d %d %d %d %d %d %d %d %d %lld %s\n", s.h, s.w, s.cin, s.cout, s.k, s.stride, s.pad, s.count,
                        s.dgrad ? 1 : 0, s.macs(), s.name.c_str());
        return 0;
    }

    if (!tricks::backend::cuda::available()) {
        std::fprintf(stderr, "conv_bench: no CUDA device\n");
        return 77;
    }
    cudaDeviceProp prop{};
    TRICKS_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    gpu::context_options copt;
    copt.benchmark = !o.heuristics;
    gpu::context ctx(copt);
    std::printf("conv_bench: %s, cuDNN %zu, batch %d, %s NHWC, %s, %d timed iterations (median)\n", prop.name,
                cudnnGetVersion(), o.batch, o.fp32 ? "fp32" : "fp16", o.heuristics ? "heuristics" : "cudnnFind",
                o.iters);
    std::printf("%-44s %5s %9s %9s %9s %8s %7s\n", "shape (n=batch)", "count", "fwd ms", "dgrad ms", "wgrad ms",
                "TFLOP/s", "find s");
    std::vector<result> results;
    double step_ms = 0, step_flops = 0;
    for (const auto& s : shapes) {
        result r = o.fp32 ? run_shape<float>(s, o, ctx) : run_shape<__half>(s, o, ctx);
        const double ms = r.fwd_ms + r.dgrad_ms + r.wgrad_ms;
        const double flops = 2.0 * static_cast<double>(s.macs()) * o.batch * (s.dgrad ? 3 : 2);
        char shape[64];
        std::snprintf(shape, sizeof shape, "%dx%dx%d -> %d k%d/%d", s.h, s.w, s.cin, s.cout, s.k, s.stride);
        std::printf("%-44s %5d %9.3f %9.3f %9.3f %8.1f %7.2f\n", shape, s.count, r.fwd_ms, r.dgrad_ms, r.wgrad_ms,
                    flops / (ms * 1e-3) / 1e12, r.find_s);
        std::printf("    %s\n", r.algos.c_str());
        std::fflush(stdout);
        step_ms += ms * s.count;
        step_flops += flops * s.count;
        results.push_back(std::move(r));
    }
    const double img_s = o.batch / (step_ms * 1e-3);
    std::printf("total conv time per training step: %.2f ms  (%.0f images/s if convolutions were all, %.1f TFLOP/s)\n",
                step_ms, img_s, step_flops / (step_ms * 1e-3) / 1e12);
    std::printf("workspace arena: %.1f MiB, %zu allocations\n",
                static_cast<double>(ctx.workspace().bytes()) / (1 << 20), ctx.workspace().allocations());

    if (!o.json.empty()) {
        std::ofstream js(o.json);
        js << "{\n  \"impl\": \"tricks\", \"device\": \"" << prop.name << "\", \"batch\": " << o.batch
           << ", \"dtype\": \"" << (o.fp32 ? "fp32" : "fp16") << "\", \"step_ms\": " << step_ms
           << ", \"images_per_s\": " << img_s << ", \"tflops\": " << step_flops / (step_ms * 1e-3) / 1e12
           << ",\n  \"shapes\": [\n";
        for (std::size_t i = 0; i < results.size(); ++i) {
            const auto& r = results[i];
            js << "    {\"name\": \"" << r.s.name << "\", \"h\": " << r.s.h << ", \"cin\": " << r.s.cin
               << ", \"cout\": " << r.s.cout << ", \"k\": " << r.s.k << ", \"stride\": " << r.s.stride
               << ", \"count\": " << r.s.count << ", \"fwd_ms\": " << r.fwd_ms << ", \"dgrad_ms\": " << r.dgrad_ms
               << ", \"wgrad_ms\": " << r.wgrad_ms << ", \"find_s\": " << r.find_s << ", \"algos\": \"" << r.algos
               << "\"}" << (i + 1 < results.size() ? "," : "") << "\n";
        }
        js << "  ]\n}\n";
    }
    return 0;
}
