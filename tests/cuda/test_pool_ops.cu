// Parity with backend/cpu of pooling, element-wise ops, the classifier (cuBLAS) and the loss,
// FP32 and FP16, forward and backward. Same method as test_conv_bn.cu: identical (pre-rounded)
// inputs on both sides, per-element bound rtol * scale + atol with scale = sum of |terms|, outputs
// pre-filled with NaN.
//
// Tolerances.
//  Max pooling selects an input: exact in both precisions (rtol 0). Its backward adds at most 4
//    gradients (3x3 stride-2 windows overlap): FP32 to 4 u32 -> 1e-6; in FP16 cuDNN may round
//    after each addition: 4 * u16 (+ atol16).
//  Average pooling sums <= 9 values in FP32 and divides: 1e-6 in FP32; FP16 rounds once, but
//    cuDNN's FP16 pooling may round intermediate values too: 4 * u16.
//  ReLU is exact; add+ReLU and add are exact in FP32 (the same single float addition as the CPU)
//    and rounded once in FP16: u16 of |a| + |b|.
//  Linear (cuBLAS, FP32 compute, no TF32): K <= 64 products per element, 2e-5 in FP32 (blocked
//    or split-K sums); FP16 products are exact in FP32, accumulation FP32, one rounding (the bias
//    is added inside the GEMM through beta = 1): 2 * u16.
//  Loss: computed in double on both sides from identical logits; the loss to 1e-9 relative, p and
//    dz to float rounding (1e-6); FP16 dz is rounded once more: u16.
#include <cmath>
#include <string>

#include "harness.cuh"
#include "tricks/backend/cpu.hpp"

namespace {

using namespace tt;
namespace tb = tricks::backend;
namespace th = tricks::backend::host;
using tricks::shape4;

// ---- pooling ------------------------------------------------------------------------------------

template <class T>
void max_pool_parity(gpu::context& ctx, const tb::pool_geometry& g, const char* what) {
    const std::size_t nx = g.in.size(), ny = g.out().size();
    // Distinct values (multiples of 1/8 from -40, exact in FP16): a unique maximum in every window,
    // negative values so that a padding treated as 0 would win and show.
    const fvec x = rounded<T>(distinct(nx, 41, -40.f)), dy = rounded<T>(uniform(ny, 42));
    fvec y_ref(ny), dx_ref(nx), dx_scale(nx);
    std::vector<std::int32_t> arg(ny);
    th::max_pool_forward(g, x.data(), y_ref.data(), arg.data());
    th::max_pool_backward(g, dy.data(), arg.data(), dx_ref.data());
    th::max_pool_backward(g, abs(dy).data(), arg.data(), dx_scale.data());

    auto dx_in = to_device<T>(x), ddy = to_device<T>(dy), dy_out = nan_device<T>(ny), ddx = nan_device<T>(nx);
    gpu::max_pool_forward(g, dx_in.data(), dy_out.data(), ctx);
    gpu::max_pool_backward(g, dx_in.data(), dy_out.data(), ddy.data(), ddx.data(), ctx);
    const bool h = std::is_same_v<T, __half>;
    const std::string tag = std::string("max_pool ") + what + " " + tname<T>();
    EXPECT_CLOSE(tag + " fwd", to_host(dy_out), y_ref, fvec(ny, 0.f), 0.0, 0.0);
    EXPECT_CLOSE(tag + " bwd", to_host(ddx), dx_ref, dx_scale, h ? 4 * u16 : 1e-6, h ? atol16 : 0.0);
}

template <class T>
void avg_pool_parity(gpu::context& ctx, const tb::pool_geometry& g, const char* what) {
    const std::size_t nx = g.in.size(), ny = g.out().size();
    const fvec x = rounded<T>(uniform(nx, 43)), dy = rounded<T>(uniform(ny, 44));
    fvec y_ref(ny), y_scale(ny), dx_ref(nx), dx_scale(nx);
    th::avg_pool_forward(g, x.data(), y_ref.data());
    th::avg_pool_forward(g, abs(x).data(), y_scale.data());
    th::avg_pool_backward(g, dy.data(), dx_ref.data());
    th::avg_pool_backward(g, abs(dy).data(), dx_scale.data());

    auto dx_in = to_device<T>(x), ddy = to_device<T>(dy);
    auto dy_out = nan_device<T>(ny), dy_kernel = nan_device<T>(ny), ddx = nan_device<T>(nx);
    gpu::avg_pool_forward(g, dx_in.data(), dy_out.data(), ctx);                            // cuDNN unless ceil mode
    gpu::avg_pool_forward(g, dx_in.data(), dy_kernel.data(), ctx, /*force_kernel=*/true);  // the kernel
    gpu::avg_pool_backward(g, ddy.data(), ddx.data(), ctx);
    const bool h = std::is_same_v<T, __half>;
    const double rt = h ? 4 * u16 : 1e-6, at = h ? atol16 : 0.0;
    const std::string tag = std::string("avg_pool ") + what + " " + tname<T>();
    EXPECT_CLOSE(tag + (g.ceil_mode ? " fwd (kernel)" : " fwd (cuDNN)"), to_host(dy_out), y_ref, y_scale, rt, at);
    EXPECT_CLOSE(tag + " fwd (kernel)", to_host(dy_kernel), y_ref, y_scale, rt, at);
    EXPECT_CLOSE(tag + " bwd", to_host(ddx), dx_ref, dx_scale, rt, at);
}

template <class T>
void pooling_all(gpu::context& ctx) {
    // ImageNet stem: 3x3 stride 2 pad 1 (odd sizes: the last window is partly padding).
    max_pool_parity<T>(ctx, {{2, 9, 7, 5}, 3, 2, 1, false, true}, "3x3/2 p1 9x7 c5");
    max_pool_parity<T>(ctx, {{1, 8, 6, 16}, 2, 2, 0, false, true}, "2x2/2 8x6 c16");
    // ResNet-D shortcut: 2x2 stride 2, ceil mode, padding not counted, odd sizes (partial windows).
    avg_pool_parity<T>(ctx, {{2, 7, 9, 6}, 2, 2, 0, true, false}, "2x2/2 ceil nopad 7x9 c6");
    avg_pool_parity<T>(ctx, {{1, 8, 8, 16}, 2, 2, 0, true, false}, "2x2/2 ceil nopad 8x8 c16");
    avg_pool_parity<T>(ctx, {{2, 5, 5, 3}, 3, 2, 1, true, true}, "3x3/2 p1 ceil countpad 5x5 c3");
    // Floor mode through cuDNN, both divisor conventions.
    avg_pool_parity<T>(ctx, {{2, 7, 6, 4}, 3, 2, 1, false, false}, "3x3/2 p1 nopad 7x6 c4");
    avg_pool_parity<T>(ctx, {{2, 7, 6, 4}, 3, 2, 1, false, true}, "3x3/2 p1 countpad 7x6 c4");
    avg_pool_parity<T>(ctx, {{1, 6, 6, 8}, 2, 2, 0, false, true}, "2x2/2 6x6 c8");

    // Global average pool.
    const shape4 in{3, 5, 7, 6};
    const fvec x = rounded<T>(uniform(in.size(), 45)), dy = rounded<T>(uniform(3 * 6, 46));
    fvec y_ref(18), y_scale(18), dx_ref(in.size()), dx_scale(in.size());
    th::global_avg_pool_forward(in, x.data(), y_ref.data());
    th::global_avg_pool_forward(in, abs(x).data(), y_scale.data());
    th::global_avg_pool_backward(in, dy.data(), dx_ref.data());
    th::global_avg_pool_backward(in, abs(dy).data(), dx_scale.data());
    auto dx_in = to_device<T>(x), ddy = to_device<T>(dy), dy_out = nan_device<T>(18), ddx = nan_device<T>(in.size());
    gpu::global_avg_pool_forward(in, dx_in.data(), dy_out.data(), ctx);
    gpu::global_avg_pool_backward(in, ddy.data(), ddx.data(), ctx);
    const bool h = std::is_same_v<T, __half>;
    EXPECT_CLOSE(std::string("global_avg_pool 3x5x7x6 fwd ") + tname<T>(), to_host(dy_out), y_ref, y_scale,
                 h ? 2 * u16 : 1e-6, h ? atol16 : 0.0);
    EXPECT_CLOSE(std::string("global_avg_pool 3x5x7x6 bwd ") + tname<T>(), to_host(ddx), dx_ref, dx_scale,
                 h ? 2 * u16 : 1e-6, h ? atol16 : 0.0);
}

TRICKS_GPU_TEST(pooling_parity_fp32) {
    gpu::context ctx;
    pooling_all<float>(ctx);
}
TRICKS_GPU_TEST(pooling_parity_fp16) {
    gpu::context ctx;
    pooling_all<__half>(ctx);
}

/// Negative control: dividing padded windows by the wrong count (padding counted / not counted)
/// must be caught by the FP16 tolerance.
TRICKS_GPU_TEST(avg_pool_negative_control_divisor) {
    gpu::context ctx;
    tb::pool_geometry g{{2, 5, 5, 3}, 3, 2, 1, true, true};
    const std::size_t nx = g.in.size(), ny = g.out().size();
    const fvec x = rounded<__half>(uniform(nx, 43, 0.5f, 1.f));
    fvec y_ref(ny), y_scale(ny);
    th::avg_pool_forward(g, x.data(), y_ref.data());
    th::avg_pool_forward(g, abs(x).data(), y_scale.data());
    g.count_include_pad = false;  // the GPU divides by the wrong count
    auto dx_in = to_device<__half>(x);
    auto dy_out = nan_device<__half>(ny);
    gpu::avg_pool_forward(g, dx_in.data(), dy_out.data(), ctx);
    const std::size_t bad = out_of_tolerance(to_host(dy_out), y_ref, y_scale, 4 * u16, atol16);
    std::printf("  ok   negative control: %zu of %zu outputs out of tolerance with the wrong divisor\n", bad, ny);
    CHECK_MSG(bad > 0, "a wrong average-pool divisor went unnoticed");
}

TRICKS_GPU_TEST(max_pool_rejects_ceil_mode) {
    gpu::context ctx;
    const tb::pool_geometry g{{1, 5, 5, 2}, 2, 2, 0, true, true};
    CHECK_THROWS(gpu::max_pool_forward<float>(g, nullptr, nullptr, ctx), tricks::shape_error, "ceil_mode");
}

// ---- element-wise -------------------------------------------------------------------------------

template <class T>
void elementwise_all(gpu::context& ctx, std::size_t n, std::size_t offset) {
    // offset > 0 misaligns the pointers by `offset` elements: the element-by-element path.
    const fvec a = rounded<T>(uniform(n, 51)), b = rounded<T>(uniform(n, 52));
    fvec relu_ref(n), relu_b_ref(n), addrelu_ref(n), add_ref(n), s_ab(n);
    th::relu_forward(n, a.data(), relu_ref.data());
    th::relu_backward(n, relu_ref.data(), b.data(), relu_b_ref.data());
    th::add_relu_forward(n, a.data(), b.data(), addrelu_ref.data());
    for (std::size_t i = 0; i < n; ++i) {
        add_ref[i] = a[i] + b[i];
        s_ab[i] = std::fabs(a[i]) + std::fabs(b[i]);
    }
    fvec pa(offset, 0.f), pb(offset, 0.f);
    pa.insert(pa.end(), a.begin(), a.end());
    pb.insert(pb.end(), b.begin(), b.end());
    auto da = to_device<T>(pa), db = to_device<T>(pb);
    auto y1 = nan_device<T>(n + offset), y2 = nan_device<T>(n + offset), y3 = nan_device<T>(n + offset),
         y4 = nan_device<T>(n + offset);
    const T* A = da.data() + offset;
    const T* B = db.data() + offset;
    gpu::relu_forward(n, A, y1.data() + offset, ctx);
    gpu::relu_backward(n, static_cast<const T*>(y1.data() + offset), B, y2.data() + offset, ctx);
    gpu::add_relu_forward(n, A, B, y3.data() + offset, ctx);
    gpu::add(n, A, B, y4.data() + offset, ctx);
    auto strip = [offset](fvec v) { return fvec(v.begin() + static_cast<std::ptrdiff_t>(offset), v.end()); };
    const bool h = std::is_same_v<T, __half>;
    const std::string tag = " n=" + std::to_string(n) + (offset ? " misaligned " : " aligned ") + tname<T>();
    EXPECT_CLOSE("relu" + tag, strip(to_host(y1)), relu_ref, fvec(n, 0.f), 0.0, 0.0);
    EXPECT_CLOSE("relu_backward" + tag, strip(to_host(y2)), relu_b_ref, fvec(n, 0.f), 0.0, 0.0);
    EXPECT_CLOSE("add_relu" + tag, strip(to_host(y3)), addrelu_ref, s_ab, h ? u16 : 0.0, h ? atol16 : 0.0);
    EXPECT_CLOSE("add" + tag, strip(to_host(y4)), add_ref, s_ab, h ? u16 : 0.0, h ? atol16 : 0.0);
    // In place: relu_backward with dx aliasing dy.
    gpu::relu_backward(n, static_cast<const T*>(y1.data() + offset), db.data() + offset, db.data() + offset, ctx);
    EXPECT_CLOSE("relu_backward in place" + tag, strip(to_host(db)), relu_b_ref, fvec(n, 0.f), 0.0, 0.0);
}

TRICKS_GPU_TEST(elementwise_parity) {
    gpu::context ctx;
    for (std::size_t n : {std::size_t{1}, std::size_t{1037}, std::size_t{4096 + 5}})
        for (std::size_t off : {std::size_t{0}, std::size_t{1}}) {
            elementwise_all<float>(ctx, n, off);
            elementwise_all<__half>(ctx, n, off);
        }
}

TRICKS_GPU_TEST(cast_rounds_to_nearest) {
    gpu::context ctx;
    const std::size_t n = 3001;
    fvec v = uniform(n, 53, -70000.f, 70000.f);  // includes values that overflow FP16 to +-inf
    v[0] = 1.f + 0x1.0p-11f;                     // a tie: rounds to even (1.0)
    v[1] = 1.f + 3 * 0x1.0p-11f;                 // a tie: rounds to even (1 + 2^-9)
    auto src = to_device<float>(v);
    auto h = nan_device<__half>(n);
    auto back = nan_device<float>(n);
    gpu::cast(n, static_cast<const float*>(src.data()), h.data(), ctx);
    gpu::cast(n, static_cast<const __half*>(h.data()), back.data(), ctx);
    const fvec got = to_host(back);
    std::size_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const float want = static_cast<float>(tricks::half(v[i]));  // Eigen's round-to-nearest-even
        if (!(got[i] == want)) ++bad;
    }
    CHECK_MSG(bad == 0, bad << " casts differ from Eigen::half rounding");
    CHECK(got[0] == 1.f && got[1] == 1.f + 0x1.0p-9f);
}

// ---- linear -------------------------------------------------------------------------------------

template <class T>
void linear_parity(gpu::context& ctx, int n, int in, int out, bool bias) {
    const fvec x = rounded<T>(uniform(static_cast<std::size_t>(n) * in, 61)),
               w = rounded<T>(uniform(static_cast<std::size_t>(in) * out, 62, -0.5f, 0.5f)),
               b = rounded<T>(uniform(out, 63)), dy = rounded<T>(uniform(static_cast<std::size_t>(n) * out, 64));
    const std::size_t ny = static_cast<std::size_t>(n) * out, nx = static_cast<std::size_t>(n) * in,
                      nw = static_cast<std::size_t>(in) * out;
    fvec y_ref(ny), y_s(ny), dx_ref(nx), dx_s(nx), dw_ref(nw), dw_s(nw), db_ref(out), db_s(out);
    th::linear_forward(n, in, out, x.data(), w.data(), bias ? b.data() : nullptr, y_ref.data());
    th::linear_forward(n, in, out, abs(x).data(), abs(w).data(), bias ? abs(b).data() : nullptr, y_s.data());
    th::linear_backward(n, in, out, x.data(), w.data(), dy.data(), dx_ref.data(), dw_ref.data(), db_ref.data());
    th::linear_backward(n, in, out, abs(x).data(), abs(w).data(), abs(dy).data(), dx_s.data(), dw_s.data(),
                        db_s.data());

    auto dx_in = to_device<T>(x), dw_in = to_device<T>(w), db_in = to_device<T>(b), ddy = to_device<T>(dy);
    auto y = nan_device<T>(ny), dx = nan_device<T>(nx), dw = nan_device<T>(nw), db = nan_device<T>(out);
    gpu::linear_forward(n, in, out, dx_in.data(), dw_in.data(), bias ? db_in.data() : nullptr, y.data(), ctx);
    gpu::linear_backward(n, in, out, dx_in.data(), dw_in.data(), ddy.data(), dx.data(), dw.data(), db.data(), ctx);
    const bool h = std::is_same_v<T, __half>;
    const double rt = h ? 2 * u16 : 2e-5, at = h ? atol16 : 0.0;
    const std::string tag = "linear " + std::to_string(n) + "x" + std::to_string(in) + "->" + std::to_string(out) +
                            (bias ? " +b " : " ") + tname<T>();
    EXPECT_CLOSE(tag + " fwd", to_host(y), y_ref, y_s, rt, at);
    EXPECT_CLOSE(tag + " dx", to_host(dx), dx_ref, dx_s, rt, at);
    EXPECT_CLOSE(tag + " dw", to_host(dw), dw_ref, dw_s, rt, at);
    EXPECT_CLOSE(tag + " db", to_host(db), db_ref, db_s, rt, at);
}

TRICKS_GPU_TEST(linear_parity_all) {
    gpu::context ctx;
    linear_parity<float>(ctx, 7, 13, 10, true);
    linear_parity<float>(ctx, 5, 64, 33, false);
    linear_parity<__half>(ctx, 7, 13, 10, true);
    linear_parity<__half>(ctx, 5, 64, 33, false);
    linear_parity<__half>(ctx, 16, 64, 24, true);
}

// ---- loss ---------------------------------------------------------------------------------------

/// Soft targets: row i mixes labels a and b (mixup, lambda 0.7) after label smoothing 0.1; every
/// fourth row is a hard one-hot target (exercises q = 0 terms).
fvec soft_targets(int n, int k) {
    fvec q(static_cast<std::size_t>(n) * k, 0.f);
    tricks::rng r(seed, 71);
    for (int i = 0; i < n; ++i) {
        float* qi = q.data() + static_cast<std::size_t>(i) * k;
        const int a = static_cast<int>(r.below(static_cast<std::uint32_t>(k)));
        const int b = static_cast<int>(r.below(static_cast<std::uint32_t>(k)));
        if (i % 4 == 3) {
            qi[a] = 1.f;
            continue;
        }
        for (int j = 0; j < k; ++j) qi[j] = 0.1f / k;
        qi[a] += 0.7f * 0.9f;
        qi[b] += 0.3f * 0.9f;
    }
    return q;
}

template <class T>
void loss_parity(gpu::context& ctx, int n, int k) {
    const std::size_t nk = static_cast<std::size_t>(n) * k;
    const fvec z = rounded<T>(uniform(nk, 72, -4.f, 4.f)), q = soft_targets(n, k);
    fvec dz_ref(nk), p_ref(nk), s_dz(nk);
    const double loss_ref = th::softmax_cross_entropy(n, k, z.data(), q.data(), dz_ref.data(), p_ref.data());
    for (std::size_t i = 0; i < nk; ++i) s_dz[i] = (std::fabs(p_ref[i]) + std::fabs(q[i])) / static_cast<float>(n);

    auto dz_in = to_device<T>(z);
    auto dq = to_device<float>(q);
    auto ddz = nan_device<T>(nk);
    auto dp = nan_device<float>(nk);
    const double loss = gpu::softmax_cross_entropy(n, k, dz_in.data(), dq.data(), ddz.data(), dp.data(), ctx);
    const bool h = std::is_same_v<T, __half>;
    const std::string tag = "softmax_xent " + std::to_string(n) + "x" + std::to_string(k) + " " + tname<T>();
    EXPECT_CLOSE(tag + " loss", fvec{static_cast<float>(loss)}, fvec{static_cast<float>(loss_ref)},
                 fvec{static_cast<float>(loss_ref)}, 1e-6, 0.0);
    CHECK_MSG(std::fabs(loss - loss_ref) <= 1e-9 * std::fabs(loss_ref), tag << " loss " << loss << " vs " << loss_ref);
    EXPECT_CLOSE(tag + " p", to_host(dp), p_ref, p_ref, 1e-6, 1e-12);
    EXPECT_CLOSE(tag + " dz", to_host(ddz), dz_ref, s_dz, h ? u16 : 1e-6, h ? atol16 : 0.0);

    // Async form with a device loss scale: dz is scaled, the loss is not; nothing synchronises.
    const float S = 1024.f;
    auto dS = to_device<float>(fvec{S});
    auto dloss = nan_device<float>(1);
    auto ddz2 = nan_device<T>(nk);
    gpu::softmax_cross_entropy_async(n, k, dz_in.data(), dq.data(), ddz2.data(), static_cast<float*>(nullptr),
                                     dloss.data(), dS.data(), ctx);
    fvec dz_scaled = dz_ref, s_scaled = s_dz;
    for (std::size_t i = 0; i < nk; ++i) {
        dz_scaled[i] *= S;
        s_scaled[i] *= S;
    }
    EXPECT_CLOSE(tag + " dz (scaled x1024)", to_host(ddz2), dz_scaled, s_scaled, h ? u16 : 1e-6, h ? atol16 * S : 0.0);
    EXPECT_CLOSE(tag + " loss (async, float)", to_host(dloss), fvec{static_cast<float>(loss_ref)},
                 fvec{static_cast<float>(loss_ref)}, 1e-6, 0.0);

    // softmax with a temperature (distillation targets).
    fvec pt_ref(nk);
    th::softmax(n, k, z.data(), 3.f, pt_ref.data());
    auto dpt = nan_device<float>(nk);
    gpu::softmax(n, k, dz_in.data(), 3.f, dpt.data(), ctx);
    EXPECT_CLOSE(tag + " softmax T=3", to_host(dpt), pt_ref, pt_ref, 1e-6, 1e-12);
}

TRICKS_GPU_TEST(loss_parity_all) {
    gpu::context ctx;
    for (auto [n, k] : {std::pair{6, 10}, std::pair{3, 1000}, std::pair{9, 257}}) {
        loss_parity<float>(ctx, n, k);
        loss_parity<__half>(ctx, n, k);
    }
}

}  // namespace
