#pragma once
// Batch normalisation over NHWC activations: statistics per channel over n*h*w values.
// Training uses the batch statistics (biased variance for normalising, unbiased for the running
// estimate, as in PyTorch); evaluation uses the running statistics.
//
// Reductions run over a fixed number of pixel chunks (a function of the shape) whose float partial
// sums are added in order in double, so the result does not depend on the thread count.
//
// Synchronised batch norm (geometry.across, data-parallel training): the per-channel sums are
// summed over the ranks of a communicator (in rank order) before they are used, so every rank
// normalises with the statistics of the global batch and its backward carries the terms that
// flow through those statistics from every rank's samples, as one process with the whole batch.
// dgamma and dbeta stay the rank's own sums (the trainer sums the ranks' gradients).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "tricks/backend/cpu/epilogue.hpp"
#include "tricks/backend/cpu/workspace.hpp"
#include "tricks/backend/geometry.hpp"
#include "tricks/core/error.hpp"
#include "tricks/distributed/communicator.hpp"

namespace tricks::backend::host {

namespace detail {
inline std::ptrdiff_t bn_chunks(std::size_t pixels) {
    return static_cast<std::ptrdiff_t>(std::clamp<std::size_t>(pixels / 256, 1, 64));
}
/// Per-channel sums over all pixels: f(p, acc) adds pixel p's terms into acc[0, width) (width = C,
/// or a multiple of C for several sums in one pass); out[0, width) receives the totals in double.
template <class F>
void channel_sums(std::size_t pixels, int width, workspace& ws, std::size_t slot0, double* out, F&& f) {
    const int C = width;
    const std::ptrdiff_t chunks = bn_chunks(pixels);
    ws.reserve(slot0 + static_cast<std::size_t>(chunks), static_cast<std::size_t>(C));
#pragma omp parallel for schedule(static) if (work_size(pixels, C) >= parallel_grain)
    for (std::ptrdiff_t ch = 0; ch < chunks; ++ch) {
        float* acc = ws.get(slot0 + static_cast<std::size_t>(ch), 0);
        std::fill_n(acc, C, 0.f);
        const std::size_t p0 = pixels * static_cast<std::size_t>(ch) / static_cast<std::size_t>(chunks);
        const std::size_t p1 = pixels * static_cast<std::size_t>(ch + 1) / static_cast<std::size_t>(chunks);
        for (std::size_t p = p0; p < p1; ++p) f(p, acc);
    }
    std::fill_n(out, C, 0.0);
    for (std::ptrdiff_t ch = 0; ch < chunks; ++ch) {
        const float* acc = ws.get(slot0 + static_cast<std::size_t>(ch), 0);
        for (int c = 0; c < C; ++c) out[c] += acc[c];
    }
}
/// n doubles of scratch (slot 65: never used by the chunk sums or the per-channel constants).
inline double* doubles(workspace& ws, int n) {
    return reinterpret_cast<double*>(ws.get(65, 2 * static_cast<std::size_t>(n)));
}
}  // namespace detail

namespace detail {
/// y = x * a + b per channel, then max(., 0) when Relu (the ReLU after a BN, fused: one pass).
/// The expression is apply_epilogue's, the one a convolution uses when it folds this BN in
/// evaluation mode: one definition, so folded and layer-by-layer results cannot drift apart.
template <bool Relu>
void bn_apply(std::size_t pixels, int C, const float* x, const float* a, const float* b, float* y) {
    constexpr std::ptrdiff_t block = 256;  // pixels per call
    const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(pixels), blocks = (P + block - 1) / block;
    const conv_epilogue e{a, b, Relu};
#pragma omp parallel for schedule(static) if (work_size(pixels, C) >= parallel_grain)
    for (std::ptrdiff_t i = 0; i < blocks; ++i) {
        const std::ptrdiff_t p0 = i * block, n = std::min(block, P - p0);
        apply_epilogue(x + p0 * C, y + p0 * C, static_cast<std::size_t>(n), C, e);
    }
}
}  // namespace detail

/// Training-mode forward. Writes y, the batch mean and 1/sqrt(var + eps) per channel (for the
/// backward pass), and updates the running statistics. Relu: y = max(BN(x), 0), the ReLU that
/// follows the BN in one pass (the same values as the two layers one after the other).
template <bool Relu = false>
void batch_norm_forward_train(const batch_norm_geometry& g, const float* x, const float* gamma, const float* beta,
                              float* y, float* save_mean, float* save_inv_std, float* running_mean, float* running_var,
                              workspace& ws) {
    require<shape_error>(g.pixels > 0 && g.channels > 0, "tricks::batch_norm: empty input (pixels=", g.pixels,
                         ", channels=", g.channels, ")");
    const int C = g.channels;
    double* s = detail::doubles(ws, 2 * C + 1);
    detail::channel_sums(g.pixels, C, ws, 0, s, [&](std::size_t p, float* acc) {
        const float* xp = x + p * C;
        for (int c = 0; c < C; ++c) acc[c] += xp[c];
    });
    s[C] = static_cast<double>(g.pixels);  // the global batch's pixel count, summed with the sums
    if (g.across != nullptr) g.across->sum(std::span<double>(s, static_cast<std::size_t>(C) + 1));
    const double pixels = s[C], inv_n = 1.0 / pixels;
    for (int c = 0; c < C; ++c) save_mean[c] = static_cast<float>(s[c] * inv_n);
    detail::channel_sums(g.pixels, C, ws, 0, s, [&](std::size_t p, float* acc) {
        const float* xp = x + p * C;
        for (int c = 0; c < C; ++c) {
            const float d = xp[c] - save_mean[c];
            acc[c] += d * d;
        }
    });
    if (g.across != nullptr) g.across->sum(std::span<double>(s, static_cast<std::size_t>(C)));
    for (int c = 0; c < C; ++c) {
        const double var = s[c] * inv_n;
        save_inv_std[c] = static_cast<float>(1.0 / std::sqrt(var + g.eps));
        const double unbiased = pixels > 1 ? s[c] / (pixels - 1) : var;
        running_mean[c] = static_cast<float>((1.0 - g.momentum) * running_mean[c] + g.momentum * save_mean[c]);
        running_var[c] = static_cast<float>((1.0 - g.momentum) * running_var[c] + g.momentum * unbiased);
    }
    // y = x * a + b with a = gamma * inv_std, b = beta - mean * a (one FMA per element).
    float* a = ws.get(64, static_cast<std::size_t>(2 * C));
    float* b = a + C;
    for (int c = 0; c < C; ++c) {
        a[c] = gamma[c] * save_inv_std[c];
        b[c] = beta[c] - save_mean[c] * a[c];
    }
    detail::bn_apply<Relu>(g.pixels, C, x, a, b, y);
}

/// Evaluation mode as y = x * a + b per channel: a = gamma / sqrt(running_var + eps),
/// b = beta - running_mean * a. A convolution before the BN can apply it to its outputs
/// (conv_epilogue) instead of a separate pass; both use these a and b.
inline void batch_norm_eval_affine(int channels, float eps, const float* gamma, const float* beta,
                                   const float* running_mean, const float* running_var, float* a, float* b) {
    for (int c = 0; c < channels; ++c) {
        a[c] = gamma[c] / std::sqrt(running_var[c] + eps);
        b[c] = beta[c] - running_mean[c] * a[c];
    }
}

/// Evaluation-mode forward with the running statistics (Relu: fused with the following ReLU).
template <bool Relu = false>
void batch_norm_forward_eval(const batch_norm_geometry& g, const float* x, const float* gamma, const float* beta,
                             const float* running_mean, const float* running_var, float* y, workspace& ws) {
    const int C = g.channels;
    float* a = ws.get(64, static_cast<std::size_t>(2 * C));
    float* b = a + C;
    batch_norm_eval_affine(C, g.eps, gamma, beta, running_mean, running_var, a, b);
    detail::bn_apply<Relu>(g.pixels, C, x, a, b, y);
}

namespace detail {
/// The two passes of batch_norm_backward with the channel count CT known at compile time (0: the
/// run-time g.channels); a fixed trip count lets the compiler vectorise the narrow layers' loops.
template <bool Relu, int CT>
void bn_backward_passes(const batch_norm_geometry& g, const float* x, const float* dy, const float* gamma,
                        const float* save_mean, const float* save_inv_std, float* dx, float* dgamma, float* dbeta,
                        workspace& ws, const float* relu_y, bool frozen_stats) {
    const int C = CT > 0 ? CT : g.channels;
    // Layout: sdy[C], sdyx[C], this rank's pixel count, then (synchronised batch norm) a copy of
    // those 2C + 1 values summed over the ranks: 4C + 2 doubles.
    double* sdy = doubles(ws, 4 * C + 2);
    double* sdyx = sdy + C;
    // sum(dy) and sum(dy * (x - mean)) in one pass over dy and x (each sum in the same order as two
    // separate passes would add it: the same bits, half the memory traffic). Under Relu the
    // gradient is dy where the ReLU's output is positive, else 0 (the ReLU's backward, on the fly).
    // One expression for both cases (the compiler contracts a * b + c into an FMA the same way in
    // both, so fused and layer-by-layer give the same bits); the gradient is loaded unconditionally
    // so that the mask is a select, not a branch per value.
    channel_sums(g.pixels, 2 * C, ws, 0, sdy, [&](std::size_t p, float* acc) {
        const float* dp = dy + p * C;
        const float* xp = x + p * C;
        const float* mp = Relu ? relu_y + p * C : nullptr;
        float* a2 = acc + C;
        for (int c = 0; c < C; ++c) {
            float d = dp[c];
            if constexpr (Relu) d = mp[c] > 0.f ? d : 0.f;
            acc[c] += d;
            a2[c] += d * (xp[c] - save_mean[c]);
        }
    });
    // The sums the statistics' terms of dx need: over the global batch under synchronised batch
    // norm (a copy summed over the ranks, with the pixel count), this rank's otherwise.
    double* all = sdy;
    all[2 * C] = static_cast<double>(g.pixels);
    if (g.across != nullptr && !frozen_stats) {
        all = sdy + 2 * C + 1;
        std::copy_n(sdy, 2 * C, all);
        all[2 * C] = static_cast<double>(g.pixels);
        g.across->sum(std::span<double>(all, 2 * static_cast<std::size_t>(C) + 1));
    }
    const double m = all[2 * C];
    // dx = k1 * dy + k2 * (x - mean) + k3 with per-channel constants.
    float* k1 = ws.get(64, static_cast<std::size_t>(3 * C));
    float* k2 = k1 + C;
    float* k3 = k2 + C;
    for (int c = 0; c < C; ++c) {
        const double is = save_inv_std[c];
        dgamma[c] = static_cast<float>(sdyx[c] * is);  // sum(dy * xhat) over this rank's pixels
        dbeta[c] = static_cast<float>(sdy[c]);
        const double dg = all[C + c] * is;
        const double db = all[c];
        k1[c] = static_cast<float>(gamma[c] * is);
        // With frozen statistics mean and inv_std are constants, not functions of x: dx = gamma * inv_std * dy.
        k2[c] = frozen_stats ? 0.f : static_cast<float>(-gamma[c] * is * is * dg / m);
        k3[c] = frozen_stats ? 0.f : static_cast<float>(-gamma[c] * is * db / m);
    }
    const std::ptrdiff_t P = static_cast<std::ptrdiff_t>(g.pixels);
#pragma omp parallel for schedule(static) if (work_size(g.pixels, C) >= parallel_grain)
    for (std::ptrdiff_t p = 0; p < P; ++p) {
        const float* xp = x + p * C;
        const float* dp = dy + p * C;
        const float* mp = Relu ? relu_y + p * C : nullptr;
        float* o = dx + p * C;
        for (int c = 0; c < C; ++c) {
            float d = dp[c];
            if constexpr (Relu) d = mp[c] > 0.f ? d : 0.f;
            o[c] = k1[c] * d + k2[c] * (xp[c] - save_mean[c]) + k3[c];
        }
    }
}
}  // namespace detail

/// Training-mode backward: dgamma = sum(dy * xhat), dbeta = sum(dy),
/// dx = gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma)   (m = n*h*w).
/// relu_y: when the BN is followed by a ReLU (fused), that ReLU's output; dy is then the ReLU's
/// output gradient and is masked on the fly (dy where relu_y > 0, else 0: the ReLU's backward).
/// frozen_stats: the forward normalised with fixed statistics (save_mean / save_inv_std are the
/// running ones, batch_norm::frozen_stats): dgamma and dbeta as above, dx = gamma * inv_std * dy.
template <bool Relu = false>
void batch_norm_backward(const batch_norm_geometry& g, const float* x, const float* dy, const float* gamma,
                         const float* save_mean, const float* save_inv_std, float* dx, float* dgamma, float* dbeta,
                         workspace& ws, const float* relu_y = nullptr, bool frozen_stats = false) {
    if constexpr (Relu) require<error>(relu_y != nullptr, "tricks::batch_norm_backward: fused ReLU without its output");
    switch (g.channels) {  // the same arithmetic in the same order for every case: the same bits
        case 16:
            return detail::bn_backward_passes<Relu, 16>(g, x, dy, gamma, save_mean, save_inv_std, dx, dgamma, dbeta, ws,
                                                        relu_y, frozen_stats);
        case 32:
            return detail::bn_backward_passes<Relu, 32>(g, x, dy, gamma, save_mean, save_inv_std, dx, dgamma, dbeta, ws,
                                                        relu_y, frozen_stats);
        case 64:
            return detail::bn_backward_passes<Relu, 64>(g, x, dy, gamma, save_mean, save_inv_std, dx, dgamma, dbeta, ws,
                                                        relu_y, frozen_stats);
        default:
            return detail::bn_backward_passes<Relu, 0>(g, x, dy, gamma, save_mean, save_inv_std, dx, dgamma, dbeta, ws,
                                                       relu_y, frozen_stats);
    }
}

}  // namespace tricks::backend::host
