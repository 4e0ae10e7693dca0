// Parity of the cuDNN convolution and batch-norm paths with backend/cpu, forward and backward,
// FP32 and FP16, on small awkward shapes (odd channel counts, odd spatial sizes, strides, padding).
//
// Method. Inputs are drawn in float and rounded to the element type T first, so the CPU reference
// (FP32 kernels) and the GPU see exactly the same input values; what is compared is the GPU
// computation itself. Each element is checked against rtol * scale + atol where scale is the sum of
// the absolute values of the terms that make up that element (the CPU kernel run on |inputs|): the
// quantity floating-point rounding is proportional to, meaningful under cancellation. A wrong index,
// stride, padding or layout produces errors of the order of scale itself (100x or more above every
// bound below). Outputs are pre-filled with NaN, so an element the GPU fails to write fails.
//
// Tolerances.
//  conv FP32: cuDNN may pick implicit GEMM, FFT or Winograd algorithms; with FMA math (no TF32)
//    each adds at most a few dozen roundings of u32 = 2^-24 relative to scale (FFT/Winograd
//    transforms); 1e-4 leaves a margin of >10x over that and is still >1000x below a real error.
//  conv FP16: FP16 inputs, FP32 accumulation, one rounding of the output (u16 = 2^-11 relative);
//    algorithms that keep transformed tiles in FP16 (Winograd) add a few more u16 relative to
//    scale. 8 * u16 ~ 3.9e-3.
//  batch norm FP32: per-channel sums over at most 98 pixels in float: <= 98 u32 ~ 6e-6 of the sum
//    of |terms|; 2e-5. FP16 data: y and dx are computed in FP32 and rounded once: 2 * u16; the FP32
//    outputs (statistics, dgamma, dbeta) see exactly the FP32 case's inputs: 2e-5.
#include <cmath>
#include <string>

#include "harness.cuh"
#include "tricks/backend/cpu.hpp"

namespace {

using namespace tt;
namespace tb = tricks::backend;
namespace th = tricks::backend::host;
using tricks::shape4;

constexpr double conv_rtol32 = 1e-4;
constexpr double conv_rtol16 = 8 * u16;
constexpr double bn_rtol32 = 2e-5;
constexpr double bn_rtol16 = 2 * u16;

struct conv_case {
    shape4 in;
    int cout, k, stride, pad;
    const char* what;
};
const conv_case conv_cases[] = {
    {{2, 7, 9, 3}, 5, 3, 2, 1, "3x3/2 p1 3->5 7x9"},     {{1, 9, 7, 3}, 8, 7, 2, 3, "7x7/2 p3 3->8 9x7 (stem)"},
    {{3, 5, 6, 8}, 16, 1, 1, 0, "1x1/1 8->16 5x6"},      {{2, 6, 5, 4}, 6, 1, 2, 0, "1x1/2 4->6 6x5"},
    {{2, 4, 4, 16}, 8, 3, 1, 1, "3x3/1 p1 16->8 4x4"},   {{2, 5, 5, 8}, 12, 3, 1, 0, "3x3/1 p0 8->12 5x5"},
    {{2, 8, 8, 32}, 32, 3, 2, 1, "3x3/2 p1 32->32 8x8"},
};

template <class T>
void conv_parity(gpu::context& ctx, const conv_case& c) {
    const tb::conv_geometry g{c.in, c.cout, c.k, c.k, c.stride, c.pad};
    const std::size_t nx = g.in.size(), ny = g.out().size(), nw = gpu::filter_elements(g);
    const fvec x = rounded<T>(uniform(nx, 11)), w = rounded<T>(uniform(nw, 12, -0.5f, 0.5f)),
               dy = rounded<T>(uniform(ny, 13));

    th::workspace ws;
    fvec y_ref(ny), y_scale(ny), dx_ref(nx), dx_scale(nx), dw_ref(nw), dw_scale(nw);
    th::conv2d_forward(g, x.data(), w.data(), y_ref.data(), ws);
    th::conv2d_forward(g, abs(x).data(), abs(w).data(), y_scale.data(), ws);
    th::conv2d_backward_data(g, dy.data(), w.data(), dx_ref.data(), ws);
    th::conv2d_backward_data(g, abs(dy).data(), abs(w).data(), dx_scale.data(), ws);
    th::conv2d_backward_filter(g, x.data(), dy.data(), dw_ref.data(), ws);
    th::conv2d_backward_filter(g, abs(x).data(), abs(dy).data(), dw_scale.data(), ws);

    fvec w_krsc(nw);
    gpu::hwio_to_krsc(g, w.data(), w_krsc.data());
    auto dx_in = to_device<T>(x);
    auto dw_in = to_device<T>(w_krsc);
    auto ddy = to_device<T>(dy);
    auto dy_out = nan_device<T>(ny);
    auto ddx_out = nan_device<T>(nx);
    auto ddw_out = nan_device<T>(nw);
    gpu::conv2d_forward(g, dx_in.data(), dw_in.data(), dy_out.data(), ctx);
    gpu::conv2d_backward_data(g, ddy.data(), dw_in.data(), ddx_out.data(), ctx);
    gpu::conv2d_backward_filter(g, dx_in.data(), ddy.data(), ddw_out.data(), ctx);

    const fvec dw_krsc = to_host(ddw_out);
    fvec dw_got(nw);
    gpu::krsc_to_hwio(g, dw_krsc.data(), dw_got.data());
    const bool h = std::is_same_v<T, __half>;
    const double rtol = h ? conv_rtol16 : conv_rtol32, atol = h ? atol16 : 0.0;
    const std::string tag = std::string("conv ") + c.what + " " + tname<T>();
    EXPECT_CLOSE(tag + " fwd", to_host(dy_out), y_ref, y_scale, rtol, atol);
    EXPECT_CLOSE(tag + " bwd-data", to_host(ddx_out), dx_ref, dx_scale, rtol, atol);
    EXPECT_CLOSE(tag + " bwd-filter", dw_got, dw_ref, dw_scale, rtol, atol);
    std::printf("       algorithms: %s\n", gpu::conv2d_describe<T>(g, ctx).c_str());
}

TRICKS_GPU_TEST(conv_parity_fp32_benchmark) {
    gpu::context ctx;  // benchmark = true: cudnnFind*
    for (const auto& c : conv_cases) conv_parity<float>(ctx, c);
}
TRICKS_GPU_TEST(conv_parity_fp16_benchmark) {
    gpu::context ctx;
    for (const auto& c : conv_cases) conv_parity<__half>(ctx, c);
}
TRICKS_GPU_TEST(conv_parity_heuristics) {
    gpu::context_options o;
    o.benchmark = false;  // cudnnGet*_v7
    gpu::context ctx(o);
    for (const auto& c : conv_cases) {
        conv_parity<float>(ctx, c);
        conv_parity<__half>(ctx, c);
    }
}

/// The GEMM paths: im2col + cuBLAS backward-filter for every shape, and cuDNN for the 1x1 ones too
/// (pointwise_gemm off), so both implementations of each direction are pinned to the CPU.
TRICKS_GPU_TEST(conv_parity_gemm_paths) {
    gpu::context_options o;
    o.wgrad_gemm = true;
    gpu::context a(o);
    for (const auto& c : conv_cases) {
        conv_parity<float>(a, c);
        conv_parity<__half>(a, c);
    }
    gpu::context_options q;
    q.pointwise_gemm = false;
    gpu::context b(q);
    for (const auto& c : conv_cases)
        if (c.k == 1) conv_parity<__half>(b, c);
}

/// The plan cache and the workspace arena: a second pass over the same shapes neither searches
/// (no new plans) nor allocates (the arena's cudaMalloc count is unchanged).
TRICKS_GPU_TEST(conv_plans_and_workspace_are_reused) {
    gpu::context ctx;
    const tb::conv_geometry g{{4, 14, 14, 64}, 64, 3, 3, 1, 1};
    const std::size_t nx = g.in.size(), ny = g.out().size(), nw = gpu::filter_elements(g);
    auto x = to_device<__half>(uniform(nx, 21));
    auto w = to_device<__half>(uniform(nw, 22, -0.1f, 0.1f));
    auto y = nan_device<__half>(ny);
    auto dx = nan_device<__half>(nx);
    auto dw = nan_device<__half>(nw);
    auto pass = [&] {
        gpu::conv2d_forward(g, x.data(), w.data(), y.data(), ctx);
        gpu::conv2d_backward_data(g, y.data(), w.data(), dx.data(), ctx);
        gpu::conv2d_backward_filter(g, x.data(), y.data(), dw.data(), ctx);
    };
    pass();
    const std::size_t allocs = ctx.workspace().allocations(), plans = ctx.conv_plans().size();
    for (int i = 0; i < 3; ++i) pass();
    ctx.synchronize();
    CHECK_MSG(ctx.workspace().allocations() == allocs,
              "workspace grew after warm-up: " << allocs << " -> " << ctx.workspace().allocations());
    CHECK_MSG(ctx.conv_plans().size() == plans && plans == 1, "plans: " << plans << " -> " << ctx.conv_plans().size());
    // conv2d_prepare on a warmed-up shape allocates nothing either.
    (void)gpu::conv2d_prepare<__half>(g, ctx);
    CHECK(ctx.workspace().allocations() == allocs);
    // A new element type is a new plan.
    auto xf = to_device<float>(uniform(nx, 21));
    auto wf = to_device<float>(uniform(nw, 22));
    auto yf = nan_device<float>(ny);
    gpu::conv2d_forward(g, xf.data(), wf.data(), yf.data(), ctx);
    CHECK(ctx.conv_plans().size() == 2);
}

/// Negative control: the comparison must notice a wrong filter layout (HWIO passed where cuDNN
/// expects KRSC) even at the loose FP16 tolerance; otherwise the parity tests would prove nothing.
TRICKS_GPU_TEST(conv_negative_control_wrong_layout) {
    gpu::context ctx;
    const conv_case& c = conv_cases[0];
    const tb::conv_geometry g{c.in, c.cout, c.k, c.k, c.stride, c.pad};
    const std::size_t nx = g.in.size(), ny = g.out().size(), nw = gpu::filter_elements(g);
    const fvec x = rounded<__half>(uniform(nx, 11)), w = rounded<__half>(uniform(nw, 12, -0.5f, 0.5f));
    th::workspace ws;
    fvec y_ref(ny), y_scale(ny);
    th::conv2d_forward(g, x.data(), w.data(), y_ref.data(), ws);
    th::conv2d_forward(g, abs(x).data(), abs(w).data(), y_scale.data(), ws);
    auto dx_in = to_device<__half>(x);
    auto dw_hwio = to_device<__half>(w);  // not converted: wrong layout
    auto dy_out = nan_device<__half>(ny);
    gpu::conv2d_forward(g, dx_in.data(), dw_hwio.data(), dy_out.data(), ctx);
    const std::size_t bad = out_of_tolerance(to_host(dy_out), y_ref, y_scale, conv_rtol16, atol16);
    std::printf("  ok   negative control: %zu of %zu outputs out of tolerance with HWIO weights\n", bad, ny);
    CHECK_MSG(bad > ny / 2, "only " << bad << " of " << ny << " outputs differ with a wrong filter layout");
}

TRICKS_GPU_TEST(conv_rejects_bad_geometry) {
    gpu::context ctx;
    const tb::conv_geometry g{{1, 2, 2, 3}, 4, 5, 5, 1, 0};  // 5x5 kernel on a 2x2 input
    CHECK_THROWS(gpu::conv2d_forward<float>(g, nullptr, nullptr, nullptr, ctx), tricks::shape_error, "larger than");
}

// ---- batch norm ---------------------------------------------------------------------------------

struct bn_case {
    std::size_t pixels;
    int channels;
};
const bn_case bn_cases[] = {{30, 6}, {98, 64}, {5, 3}, {600, 24}, {300, 300}};  // the last two: several chunks; C > 256

template <class T>
void bn_parity(gpu::context& ctx, const bn_case& c) {
    const tb::batch_norm_geometry g{c.pixels, c.channels, 1e-5f, 0.1f};
    const std::size_t P = c.pixels, n = P * c.channels;
    const int C = c.channels;
    const fvec x = rounded<T>(uniform(n, 31, -1.f, 3.f)), dy = rounded<T>(uniform(n, 32));
    const fvec gamma = uniform(C, 33, 0.5f, 1.5f), beta = uniform(C, 34, -0.5f, 0.5f);
    const fvec rm0 = uniform(C, 35, -0.1f, 0.1f), rv0 = uniform(C, 36, 0.5f, 1.5f);

    // CPU reference.
    th::workspace ws;
    fvec y_ref(n), mean_ref(C), is_ref(C), rm_ref = rm0, rv_ref = rv0, ye_ref(n), dx_ref(n), dg_ref(C), db_ref(C);
    th::batch_norm_forward_train(g, x.data(), gamma.data(), beta.data(), y_ref.data(), mean_ref.data(), is_ref.data(),
                                 rm_ref.data(), rv_ref.data(), ws);
    th::batch_norm_forward_eval(g, x.data(), gamma.data(), beta.data(), rm_ref.data(), rv_ref.data(), ye_ref.data(),
                                ws);
    th::batch_norm_backward(g, x.data(), dy.data(), gamma.data(), mean_ref.data(), is_ref.data(), dx_ref.data(),
                            dg_ref.data(), db_ref.data(), ws);

    // Scales: sums of |terms| per channel (see the file comment), in double.
    std::vector<double> sax(C), sx2(C), sady(C), sadyx(C);
    for (std::size_t p = 0; p < P; ++p)
        for (int ch = 0; ch < C; ++ch) {
            const double xv = x[p * C + ch], d = dy[p * C + ch];
            sax[ch] += std::fabs(xv);
            sx2[ch] += xv * xv;
            sady[ch] += std::fabs(d);
            sadyx[ch] += std::fabs(d * (xv - mean_ref[ch]));
        }
    fvec s_mean(C), s_is(C), s_rm(C), s_rv(C), s_dg(C), s_db(C), s_y(n), s_ye(n), s_dx(n);
    const double m = g.momentum;
    for (int ch = 0; ch < C; ++ch) {
        const double is = is_ref[ch], var = 1.0 / (is * is) - g.eps, amp = (sx2[ch] / P) / var;
        s_mean[ch] = static_cast<float>(sax[ch] / P);
        s_is[ch] = static_cast<float>(is * amp);
        s_rm[ch] = static_cast<float>((1 - m) * std::fabs(rm0[ch]) + m * sax[ch] / P);
        s_rv[ch] = static_cast<float>((1 - m) * std::fabs(rv0[ch]) + m * sx2[ch] / (P > 1 ? P - 1 : 1));
        s_dg[ch] = static_cast<float>(is * (sadyx[ch] + sady[ch] * sax[ch] / P) * amp);
        s_db[ch] = static_cast<float>(sady[ch]);
    }
    for (std::size_t p = 0; p < P; ++p)
        for (int ch = 0; ch < C; ++ch) {
            const std::size_t i = p * C + ch;
            const double is = is_ref[ch], var = 1.0 / (is * is) - g.eps, amp = (sx2[ch] / P) / var;
            const double xc = std::fabs(x[i] - mean_ref[ch]), ga = std::fabs(gamma[ch]);
            s_y[i] = static_cast<float>(ga * is * (xc * amp + sax[ch] / P) + std::fabs(beta[ch]));
            s_ye[i] = static_cast<float>(
                ga / std::sqrt(rv_ref[ch] + g.eps) * (std::fabs(x[i]) + std::fabs(rm_ref[ch])) + std::fabs(beta[ch]));
            s_dx[i] =
                static_cast<float>(ga * is * (std::fabs(dy[i]) + is * is * xc * sadyx[ch] * amp / P + sady[ch] / P));
        }

    // GPU.
    auto dx_in = to_device<T>(x), ddy = to_device<T>(dy);
    auto dgamma = to_device<float>(gamma), dbeta = to_device<float>(beta);
    auto drm = to_device<float>(rm0), drv = to_device<float>(rv0);
    auto dy_out = nan_device<T>(n), dye_out = nan_device<T>(n), ddx_out = nan_device<T>(n);
    auto dmean = nan_device<float>(C), dis = nan_device<float>(C), ddg = nan_device<float>(C),
         ddb = nan_device<float>(C);
    gpu::batch_norm_forward_train(g, dx_in.data(), dgamma.data(), dbeta.data(), dy_out.data(), dmean.data(), dis.data(),
                                  drm.data(), drv.data(), ctx);
    // Evaluation with the CPU's updated running statistics (compared on their own just below).
    auto drm_ref = to_device<float>(rm_ref), drv_ref = to_device<float>(rv_ref);
    gpu::batch_norm_forward_eval(g, dx_in.data(), dgamma.data(), dbeta.data(), drm_ref.data(), drv_ref.data(),
                                 dye_out.data(), ctx);
    gpu::batch_norm_backward(g, dx_in.data(), ddy.data(), dgamma.data(), dmean.data(), dis.data(), ddx_out.data(),
                             ddg.data(), ddb.data(), ctx);

    const bool h = std::is_same_v<T, __half>;
    const double rt = h ? bn_rtol16 : bn_rtol32, at = h ? atol16 : 0.0;
    const std::string tag = "bn P=" + std::to_string(P) + " C=" + std::to_string(C) + " " + tname<T>();
    EXPECT_CLOSE(tag + " y", to_host(dy_out), y_ref, s_y, rt, at);
    EXPECT_CLOSE(tag + " save_mean", to_host(dmean), mean_ref, s_mean, bn_rtol32, 0.0);
    EXPECT_CLOSE(tag + " save_inv_std", to_host(dis), is_ref, s_is, bn_rtol32, 0.0);
    EXPECT_CLOSE(tag + " running_mean", to_host(drm), rm_ref, s_rm, bn_rtol32, 0.0);
    EXPECT_CLOSE(tag + " running_var (unbiased)", to_host(drv), rv_ref, s_rv, bn_rtol32, 0.0);
    EXPECT_CLOSE(tag + " eval y", to_host(dye_out), ye_ref, s_ye, rt, at);
    EXPECT_CLOSE(tag + " dx", to_host(ddx_out), dx_ref, s_dx, rt, at);
    EXPECT_CLOSE(tag + " dgamma", to_host(ddg), dg_ref, s_dg, bn_rtol32, 0.0);
    EXPECT_CLOSE(tag + " dbeta", to_host(ddb), db_ref, s_db, bn_rtol32, 0.0);
}

TRICKS_GPU_TEST(batch_norm_parity_fp32) {
    gpu::context ctx;
    for (const auto& c : bn_cases) bn_parity<float>(ctx, c);
}
TRICKS_GPU_TEST(batch_norm_parity_fp16) {
    gpu::context ctx;
    for (const auto& c : bn_cases) bn_parity<__half>(ctx, c);
}
/// cuDNN's legacy batch-norm calls (context_options::bn_cudnn) against the same CPU reference.
TRICKS_GPU_TEST(batch_norm_parity_cudnn_path) {
    gpu::context_options o;
    o.bn_cudnn = true;
    gpu::context ctx(o);
    for (const auto& c : bn_cases) {
        bn_parity<float>(ctx, c);
        bn_parity<__half>(ctx, c);
    }
}

}  // namespace
