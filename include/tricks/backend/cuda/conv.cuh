#pragma once
// 2-D convolution through cuDNN (legacy v7-style API of cuDNN 9). Same contract as
// backend/cpu/conv.hpp (geometry, argument order, outputs overwritten), with device pointers:
//   x, y, dx, dy: NHWC activations of element type T (float or __half);
//   w, dw:        filters in cuDNN's NHWC filter layout KRSC = [cout][kh][kw][cin] (the CPU keeps
//                 HWIO; convert with hwio_to_krsc / krsc_to_hwio from layout.cuh).
// FP16 data runs on tensor cores (CUDNN_TENSOR_OP_MATH) with FP32 accumulation (compute type
// CUDNN_DATA_FLOAT, cuDNN's "pseudo half" configuration). FP32 data uses FMA math unless
// context_options::allow_tf32.
// 1x1 stride-1 unpadded convolutions (every 1x1 of a ResNet-B/D bottleneck and shortcut) are exactly a
// matrix product in NHWC and run as cuBLAS GEMMs (context_options::pointwise_gemm, on by default):
// forward Y[P x Cout] = X[P x Cin] W^T, backward-data dX = dY W, backward-filter dW = dY^T X, with
// P = n*h*w and W = KRSC = [Cout][Cin].
// The algorithm of each direction is chosen once per geometry and element type (cudnnFind* when
// context_options::benchmark, cudnnGet*_v7 otherwise) and cached in the context; the workspace
// comes from the context's arena (slot `conv`), so a warmed-up step does not allocate.
#include <climits>
#include <sstream>
#include <string>
#include <vector>

#include "tricks/backend/geometry.hpp"
#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"
#include "tricks/backend/cuda/layout.cuh"
#include "tricks/backend/cuda/linear.cuh"

namespace tricks::backend::gpu {

namespace detail {

inline cudnnMathType_t initial_math(cudnnDataType_t dt, const context_options& o) {
    if (dt == CUDNN_DATA_HALF) return CUDNN_TENSOR_OP_MATH;
    return o.allow_tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH;
}
/// The math type to run a chosen algorithm with: the one cuDNN measured/proposed it with, except
/// that FP32 without allow_tf32 stays on FMA math (what PyTorch does with allow_tf32=False).
inline cudnnMathType_t resolve_math(cudnnMathType_t found, cudnnDataType_t dt, const context_options& o) {
    if (dt == CUDNN_DATA_FLOAT && !o.allow_tf32) return CUDNN_FMA_MATH;
    return found;
}

/// First usable entry of a perf list (cuDNN sorts it by time for Find, by expected speed for Get).
template <class Perf>
int pick_algorithm(const Perf* r, int count, const context_options& o, const char* direction, const conv_geometry& g) {
    for (int i = 0; i < count; ++i) {
        if (r[i].status != CUDNN_STATUS_SUCCESS) continue;
        if (r[i].memory > o.workspace_limit) continue;
        if (o.deterministic && r[i].determinism != CUDNN_DETERMINISTIC) continue;
        return i;
    }
    std::ostringstream os;
    os << "tricks::gpu::conv2d: cuDNN offers no usable " << direction << " algorithm for input " << g.in
       << " cout=" << g.out_c << " k=" << g.kh << "x" << g.kw << " stride=" << g.stride << " pad=" << g.pad << " ("
       << count << " candidates; workspace limit " << o.workspace_limit << " bytes"
       << (o.deterministic ? ", deterministic only" : "") << ")";
    for (int i = 0; i < count; ++i)
        os << "\n  algo " << static_cast<int>(r[i].algo) << ": " << cudnnGetErrorString(r[i].status) << ", "
           << r[i].memory << " bytes";
    throw cuda_error(os.str());
}

template <class T>
conv_plan& conv_plan_for(const conv_geometry& g, context& ctx) {
    constexpr cudnnDataType_t dt = dtype_traits<T>::cudnn;
    const conv_key key{g.in.n, g.in.h, g.in.w, g.in.c, g.out_c, g.kh, g.kw, g.stride, g.pad, static_cast<int>(dt)};
    auto& plans = ctx.conv_plans();
    if (auto it = plans.find(key); it != plans.end()) return *it->second;
    auto p = std::make_unique<conv_plan>();
    p->x = tensor_descriptor::nhwc(dt, g.in.n, g.in.h, g.in.w, g.in.c);
    p->y = tensor_descriptor::nhwc(dt, g.in.n, g.out_h(), g.out_w(), g.out_c);
    p->w = filter_descriptor::krsc(dt, g.out_c, g.kh, g.kw, g.in.c);
    const cudnnMathType_t m = initial_math(dt, ctx.options());
    p->fwd_conv = convolution_descriptor::create(g.pad, g.stride, CUDNN_DATA_FLOAT, m);
    p->bwd_data_conv = convolution_descriptor::create(g.pad, g.stride, CUDNN_DATA_FLOAT, m);
    p->bwd_filter_conv = convolution_descriptor::create(g.pad, g.stride, CUDNN_DATA_FLOAT, m);
    return *plans.emplace(key, std::move(p)).first->second;
}

template <class T>
void choose_forward(conv_plan& p, const conv_geometry& g, context& ctx) {
    constexpr cudnnDataType_t dt = dtype_traits<T>::cudnn;
    int max = 0, got = 0;
    TRICKS_CUDA_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(ctx.cudnn(), &max));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> r(static_cast<std::size_t>(std::max(max, 1)));
    if (ctx.options().benchmark)
        TRICKS_CUDA_CHECK(
            cudnnFindConvolutionForwardAlgorithm(ctx.cudnn(), p.x, p.w, p.fwd_conv, p.y, max, &got, r.data()));
    else
        TRICKS_CUDA_CHECK(
            cudnnGetConvolutionForwardAlgorithm_v7(ctx.cudnn(), p.x, p.w, p.fwd_conv, p.y, max, &got, r.data()));
    const int i = pick_algorithm(r.data(), got, ctx.options(), "forward", g);
    p.fwd_algo = r[i].algo;
    p.fwd_math = resolve_math(r[i].mathType, dt, ctx.options());
    p.fwd_conv.set_math(p.fwd_math);
    TRICKS_CUDA_CHECK(
        cudnnGetConvolutionForwardWorkspaceSize(ctx.cudnn(), p.x, p.w, p.fwd_conv, p.y, p.fwd_algo, &p.fwd_ws));
    p.fwd_ready = true;
}

template <class T>
void choose_backward_data(conv_plan& p, const conv_geometry& g, context& ctx) {
    constexpr cudnnDataType_t dt = dtype_traits<T>::cudnn;
    int max = 0, got = 0;
    TRICKS_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(ctx.cudnn(), &max));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> r(static_cast<std::size_t>(std::max(max, 1)));
    if (ctx.options().benchmark)
        TRICKS_CUDA_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(ctx.cudnn(), p.w, p.y, p.bwd_data_conv, p.x, max,
                                                                    &got, r.data()));
    else
        TRICKS_CUDA_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(ctx.cudnn(), p.w, p.y, p.bwd_data_conv, p.x, max,
                                                                      &got, r.data()));
    const int i = pick_algorithm(r.data(), got, ctx.options(), "backward-data", g);
    p.bwd_data_algo = r[i].algo;
    p.bwd_data_math = resolve_math(r[i].mathType, dt, ctx.options());
    p.bwd_data_conv.set_math(p.bwd_data_math);
    TRICKS_CUDA_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(ctx.cudnn(), p.w, p.y, p.bwd_data_conv, p.x,
                                                                   p.bwd_data_algo, &p.bwd_data_ws));
    p.bwd_data_ready = true;
}

template <class T>
void choose_backward_filter(conv_plan& p, const conv_geometry& g, context& ctx) {
    constexpr cudnnDataType_t dt = dtype_traits<T>::cudnn;
    int max = 0, got = 0;
    TRICKS_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(ctx.cudnn(), &max));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> r(static_cast<std::size_t>(std::max(max, 1)));
    if (ctx.options().benchmark)
        TRICKS_CUDA_CHECK(cudnnFindConvolutionBackwardFilterAlgorithm(ctx.cudnn(), p.x, p.y, p.bwd_filter_conv, p.w,
                                                                      max, &got, r.data()));
    else
        TRICKS_CUDA_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(ctx.cudnn(), p.x, p.y, p.bwd_filter_conv, p.w,
                                                                        max, &got, r.data()));
    const int i = pick_algorithm(r.data(), got, ctx.options(), "backward-filter", g);
    p.bwd_filter_algo = r[i].algo;
    p.bwd_filter_math = resolve_math(r[i].mathType, dt, ctx.options());
    p.bwd_filter_conv.set_math(p.bwd_filter_math);
    TRICKS_CUDA_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(ctx.cudnn(), p.x, p.y, p.bwd_filter_conv, p.w,
                                                                     p.bwd_filter_algo, &p.bwd_filter_ws));
    p.bwd_filter_ready = true;
}

}  // namespace detail

namespace detail {
struct im2col_dims {
    int n, h, w, c, oh, ow, kh, kw, stride, pad;
};
/// col[p][(ky * kw + kx) * c + ci] = x[img, oy*s - pad + ky, ox*s - pad + kx, ci] (0 outside), p = (img, oy, ox).
template <class T>
__global__ void im2col_kernel(im2col_dims d, const T* __restrict__ x, T* __restrict__ col) {
    const std::size_t K = static_cast<std::size_t>(d.kh) * d.kw * d.c;
    const std::size_t total = static_cast<std::size_t>(d.n) * d.oh * d.ow * K;
    for (std::size_t i = global_thread(); i < total; i += grid_stride()) {
        const std::size_t k = i % K, p = i / K;
        const int ci = static_cast<int>(k % d.c);
        const int t = static_cast<int>(k / d.c);
        const int kx = t % d.kw, ky = t / d.kw;
        const int ox = static_cast<int>(p % d.ow);
        const std::size_t t2 = p / d.ow;
        const int oy = static_cast<int>(t2 % d.oh);
        const std::size_t img = t2 / d.oh;
        const int iy = oy * d.stride - d.pad + ky, ix = ox * d.stride - d.pad + kx;
        col[i] = (iy >= 0 && iy < d.h && ix >= 0 && ix < d.w) ? x[((img * d.h + iy) * d.w + ix) * d.c + ci]
                                                              : from_float<T>(0.f);
    }
}
inline bool use_gemm(const conv_geometry& g, const context& ctx) {
    return ctx.options().pointwise_gemm && g.pointwise() && g.in.pixels() <= static_cast<std::size_t>(INT_MAX);
}
}  // namespace detail

/// y = conv(x, w), overwritten. x: g.in (NHWC), w: KRSC, y: g.out() (NHWC).
template <device_element T>
void conv2d_forward(const conv_geometry& g, const T* x, const T* w, T* y, context& ctx) {
    g.validate("tricks::gpu::conv2d");
    if (detail::use_gemm(g, ctx)) {  // Y^T (Cout x P) = W (Cout x Cin) X^T
        detail::gemm<T>(ctx.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, g.out_c, static_cast<int>(g.in.pixels()), g.in.c, w,
                        g.in.c, x, g.in.c, y, g.out_c);
        return;
    }
    auto& p = detail::conv_plan_for<T>(g, ctx);
    if (!p.fwd_ready) detail::choose_forward<T>(p, g, ctx);
    void* ws = ctx.workspace().get(device_workspace::conv, p.fwd_ws);
    const float alpha = 1.f, beta = 0.f;
    TRICKS_CUDA_CHECK(cudnnConvolutionForward(ctx.cudnn(), &alpha, p.x, x, p.w, w, p.fwd_conv, p.fwd_algo, ws, p.fwd_ws,
                                              &beta, p.y, y));
}

/// dx = conv^T(dy, w), overwritten.
template <device_element T>
void conv2d_backward_data(const conv_geometry& g, const T* dy, const T* w, T* dx, context& ctx) {
    g.validate("tricks::gpu::conv2d_backward_data");
    if (detail::use_gemm(g, ctx)) {  // dX^T (Cin x P) = W^T (Cin x Cout) dY^T
        detail::gemm<T>(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_N, g.in.c, static_cast<int>(g.in.pixels()), g.out_c, w,
                        g.in.c, dy, g.out_c, dx, g.in.c);
        return;
    }
    auto& p = detail::conv_plan_for<T>(g, ctx);
    if (!p.bwd_data_ready) detail::choose_backward_data<T>(p, g, ctx);
    void* ws = ctx.workspace().get(device_workspace::conv, p.bwd_data_ws);
    const float alpha = 1.f, beta = 0.f;
    TRICKS_CUDA_CHECK(cudnnConvolutionBackwardData(ctx.cudnn(), &alpha, p.w, w, p.y, dy, p.bwd_data_conv,
                                                   p.bwd_data_algo, ws, p.bwd_data_ws, &beta, p.x, dx));
}

/// dw = sum over the batch of the correlation of x with dy, overwritten (KRSC).
template <device_element T>
void conv2d_backward_filter(const conv_geometry& g, const T* x, const T* dy, T* dw, context& ctx) {
    g.validate("tricks::gpu::conv2d_backward_filter");
    if (detail::use_gemm(g, ctx)) {  // dW^T (Cin x Cout) = X^T (Cin x P) dY (P x Cout)
        detail::gemm<T>(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, g.in.c, g.out_c, static_cast<int>(g.in.pixels()), x,
                        g.in.c, dy, g.out_c, dw, g.in.c);
        return;
    }
    const std::size_t out_pixels = g.out().pixels();
    if (ctx.options().wgrad_gemm && out_pixels <= static_cast<std::size_t>(INT_MAX)) {
        // dW^T (K x Cout) = col^T (K x P) dY (P x Cout), col = im2col(x) [P][K] in the workspace.
        const int K = g.k();
        T* col = ctx.workspace().get_as<T>(device_workspace::conv, out_pixels * static_cast<std::size_t>(K));
        const detail::im2col_dims d{g.in.n, g.in.h, g.in.w, g.in.c, g.out_h(), g.out_w(), g.kh, g.kw, g.stride, g.pad};
        detail::im2col_kernel<T>
            <<<detail::blocks_for(out_pixels * K), detail::threads_per_block, 0, ctx.stream()>>>(d, x, col);
        TRICKS_CUDA_CHECK_LAUNCH("im2col_kernel");
        detail::gemm<T>(ctx.cublas(), CUBLAS_OP_N, CUBLAS_OP_T, K, g.out_c, static_cast<int>(out_pixels), col, K, dy,
                        g.out_c, dw, K);
        return;
    }
    auto& p = detail::conv_plan_for<T>(g, ctx);
    if (!p.bwd_filter_ready) detail::choose_backward_filter<T>(p, g, ctx);
    void* ws = ctx.workspace().get(device_workspace::conv, p.bwd_filter_ws);
    const float alpha = 1.f, beta = 0.f;
    TRICKS_CUDA_CHECK(cudnnConvolutionBackwardFilter(ctx.cudnn(), &alpha, p.x, x, p.y, dy, p.bwd_filter_conv,
                                                     p.bwd_filter_algo, ws, p.bwd_filter_ws, &beta, p.w, dw));
}

/// Chooses (and caches) all three algorithms of a geometry now and grows the workspace to fit
/// them, so that the first training step neither searches nor reallocates. Returns the workspace
/// bytes the geometry needs.
template <device_element T>
std::size_t conv2d_prepare(const conv_geometry& g, context& ctx) {
    g.validate("tricks::gpu::conv2d_prepare");
    if (detail::use_gemm(g, ctx)) return 0;
    auto& p = detail::conv_plan_for<T>(g, ctx);
    if (!p.fwd_ready) detail::choose_forward<T>(p, g, ctx);
    if (!p.bwd_data_ready) detail::choose_backward_data<T>(p, g, ctx);
    if (!p.bwd_filter_ready) detail::choose_backward_filter<T>(p, g, ctx);
    const std::size_t need = std::max({p.fwd_ws, p.bwd_data_ws, p.bwd_filter_ws});
    ctx.workspace().reserve(device_workspace::conv, need);
    return need;
}

/// The algorithms chosen for a geometry, e.g. "fwd algo 1 (math 1, 0 B) | bwd-data ... " (for logs);
/// "(not chosen yet)" for directions not run so far.
template <device_element T>
std::string conv2d_describe(const conv_geometry& g, context& ctx) {
    auto& p = detail::conv_plan_for<T>(g, ctx);
    std::ostringstream os;
    auto one = [&os](const char* name, bool ready, int algo, int math, std::size_t ws) {
        os << name << ' ';
        if (ready)
            os << "algo " << algo << " (math " << math << ", " << ws << " B)";
        else
            os << "(not chosen yet)";
    };
    one("fwd", p.fwd_ready, p.fwd_algo, p.fwd_math, p.fwd_ws);
    os << " | ";
    one("bwd-data", p.bwd_data_ready, p.bwd_data_algo, p.bwd_data_math, p.bwd_data_ws);
    os << " | ";
    one("bwd-filter", p.bwd_filter_ready, p.bwd_filter_algo, p.bwd_filter_math, p.bwd_filter_ws);
    return os.str();
}

}  // namespace tricks::backend::gpu
