// The fused SGD step and dynamic loss scaling on the device, against the CPU's sgd_optimizer
// (train/optim.hpp) and loss_scaler (train/precision.hpp); the on-device overflow check; and the
// infrastructure: filter layout conversion and error messages (host tests, run without a device),
// device buffers and the workspace arena.
//
// Tolerances. The SGD update is the same few float operations on both sides; the compilers may
// fuse different multiply-adds (FMA), each changing a result by at most one rounding of the
// intermediate terms: 1e-6 of |w| + |v| (a few u32). The FP16 copy must be exactly the FP16
// rounding of the GPU's own master weight.
#include <cmath>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "harness.cuh"
#include "tricks/backend/cpu.hpp"
#include "tricks/train/optim.hpp"
#include "tricks/train/precision.hpp"

namespace {

using namespace tt;
namespace tb = tricks::backend;
using tricks::shape4;

// ---- host tests (no device) ---------------------------------------------------------------------

TRICKS_HOST_TEST(filter_layout_round_trip) {
    const tb::conv_geometry g{{1, 9, 9, 3}, 5, 3, 2, 1, 0};  // kh=3, kw=2: rectangular, to catch swapped axes
    const std::size_t n = gpu::filter_elements(g);
    CHECK(n == 3u * 2u * 3u * 5u);
    std::vector<float> hwio(n), krsc(n), back(n);
    for (std::size_t i = 0; i < n; ++i) hwio[i] = static_cast<float>(i);
    gpu::hwio_to_krsc(g, hwio.data(), krsc.data());
    gpu::krsc_to_hwio(g, krsc.data(), back.data());
    CHECK(back == hwio);
    // The last weight (co=4, ky=2, kx=1, ci=2) is last in both layouts (index 89).
    CHECK(krsc[gpu::krsc_index(g, 4, 2, 1, 2)] == hwio[gpu::hwio_index(g, 4, 2, 1, 2)]);
    // (co=1, ky=0, kx=1, ci=0): HWIO ((0*2 + 1)*3 + 0)*5 + 1 = 16, KRSC ((1*3 + 0)*2 + 1)*3 + 0 = 21.
    CHECK(gpu::hwio_index(g, 1, 0, 1, 0) == 16u && gpu::krsc_index(g, 1, 0, 1, 0) == 21u);
    CHECK(krsc[21] == 16.f);
    // KRSC is cout-major: the first kh*kw*cin entries are output channel 0 in (ky, kx, ci) order.
    for (int ky = 0, i = 0; ky < 3; ++ky)
        for (int kx = 0; kx < 2; ++kx)
            for (int ci = 0; ci < 3; ++ci, ++i)
                CHECK(krsc[static_cast<std::size_t>(i)] == hwio[((ky * 2 + kx) * 3 + ci) * 5]);
}

TRICKS_HOST_TEST(error_messages_name_call_status_and_place) {
    CHECK_THROWS(TRICKS_CUDA_CHECK(CUDNN_STATUS_BAD_PARAM), gpu::cuda_error,
                 "cuDNN call failed: CUDNN_STATUS_BAD_PARAM");
    CHECK_THROWS(TRICKS_CUDA_CHECK(CUDNN_STATUS_NOT_SUPPORTED), gpu::cuda_error, "test_optim_infra.cu:");
    CHECK_THROWS(TRICKS_CUDA_CHECK(CUBLAS_STATUS_INVALID_VALUE), gpu::cuda_error, "cuBLAS call failed");
    CHECK_THROWS(TRICKS_CUDA_CHECK(cudaErrorInvalidValue), gpu::cuda_error, "CUDA call failed: cudaErrorInvalidValue");
    // The status string and the numeric code are in the message; cuda_error is a tricks::error.
    try {
        TRICKS_CUDA_CHECK(CUDNN_STATUS_BAD_PARAM);
        CHECK(false);
    } catch (const tricks::error& e) {
        const std::string m = e.what();
        CHECK_MSG(m.find("BAD_PARAM") != std::string::npos && m.find("(2000)") != std::string::npos, m);
    }
    // Success does not throw.
    TRICKS_CUDA_CHECK(CUDNN_STATUS_SUCCESS);
    TRICKS_CUDA_CHECK(CUBLAS_STATUS_SUCCESS);
    TRICKS_CUDA_CHECK(cudaSuccess);
}

/// The comparison itself: within tolerance passes, twice the bound, NaN or a size mismatch fail.
TRICKS_HOST_TEST(harness_comparison_fails_on_wrong_results) {
    const fvec want{1.f, -2.f, 0.f}, scale{1.f, 2.f, 0.f};
    CHECK(out_of_tolerance({1.f + 0.5e-3f, -2.f, 0.f}, want, scale, 1e-3, 0.0) == 0);
    CHECK(out_of_tolerance({1.f + 2e-3f, -2.f, 0.f}, want, scale, 1e-3, 0.0) == 1);
    CHECK(out_of_tolerance({1.f, std::nanf(""), 0.f}, want, scale, 1e-3, 0.0) == 1);
    CHECK(out_of_tolerance({1.f, -2.f, 1e-30f}, want, scale, 1e-3, 0.0) == 1);  // zero bound: exact
    const int before = failures();
    deliberate() = true;
    expect_close("deliberate mismatch (expected to fail)", {1.f, -2.f, 5.f}, want, scale, 1e-3, 0.0, __FILE__,
                 __LINE__);
    expect_close("deliberate size mismatch (expected to fail)", {1.f}, want, scale, 1e-3, 0.0, __FILE__, __LINE__);
    deliberate() = false;
    const int caught = failures() - before;
    failures() = before;  // the two deliberate failures are not failures of this run
    CHECK_MSG(caught == 2, "expect_close reported " << caught << " of 2 deliberate mismatches");
}

// ---- device infrastructure ---------------------------------------------------------------------

TRICKS_GPU_TEST(device_buffer_and_workspace) {
    gpu::device_buffer<float> b;
    const fvec v = uniform(1000, 81);
    b.upload(v);
    CHECK(b.size() == 1000 && b.to_host() == v);
    float* p = b.data();
    b.resize(10);  // shrinking keeps the allocation
    CHECK(b.data() == p && b.size() == 10);
    gpu::device_workspace ws;
    void* a = ws.get(0, 1000);
    CHECK(ws.get(0, 500) == a && ws.get(0, 1000) == a && ws.allocations() == 1);
    (void)ws.get(1, 64);
    CHECK(ws.allocations() == 2);
    (void)ws.get(0, 5000);
    CHECK(ws.allocations() == 3 && ws.get(0, 5000) != nullptr && ws.allocations() == 3);
    // A failing runtime call reports the call and where.
    CHECK_THROWS(gpu::device_buffer<float>(std::size_t(1) << 50), gpu::cuda_error, "cudaMalloc");
}

// ---- fused SGD vs train/optim.hpp ---------------------------------------------------------------

struct param_spec {
    tricks::nn::role role;
    int n;
};
const param_spec specs[] = {{tricks::nn::role::weight, 1000},
                            {tricks::nn::role::bias, 10},
                            {tricks::nn::role::bn_gamma, 33},
                            {tricks::nn::role::weight, 4099}};

/// Gradients of step s for parameter i (rounded to T: what the backward pass would have stored).
template <class T>
fvec grad_of(int i, int s, int n) {
    return rounded<T>(uniform(static_cast<std::size_t>(n), 1000 + 10 * static_cast<std::uint64_t>(s) + i, -2.f, 2.f));
}

template <class T>
void sgd_parity(bool nesterov, bool no_bias_decay, bool multi) {
    gpu::context ctx;
    const int P = static_cast<int>(std::size(specs));
    std::vector<tricks::nn::parameter> cpu(P);
    std::vector<tricks::nn::parameter*> ptrs;
    std::vector<gpu::device_buffer<float>> master, velocity;
    std::vector<gpu::device_buffer<T>> grad, model;
    std::vector<gpu::sgd_tensor<T>> list;
    for (int i = 0; i < P; ++i) {
        cpu[i].allocate(specs[i].role, specs[i].n);
        const fvec w0 = rounded<T>(uniform(static_cast<std::size_t>(specs[i].n), 900 + i));
        std::copy(w0.begin(), w0.end(), cpu[i].value.data());
        ptrs.push_back(&cpu[i]);
        master.push_back(to_device<float>(w0));
        velocity.push_back(to_device<float>(fvec(static_cast<std::size_t>(specs[i].n), 0.f)));
        grad.push_back(nan_device<T>(static_cast<std::size_t>(specs[i].n)));
        model.push_back(nan_device<T>(static_cast<std::size_t>(specs[i].n)));
    }
    for (int i = 0; i < P; ++i)
        list.push_back({master[i].data(), velocity[i].data(), grad[i].data(),
                        std::is_same_v<T, float> && i % 2 == 0 ? nullptr : model[i].data(),
                        static_cast<std::size_t>(specs[i].n), tricks::decays(specs[i].role, no_bias_decay)});
    const tricks::sgd_config cfg{0.9, 1e-3, nesterov, no_bias_decay};
    tricks::sgd_optimizer ref(ptrs, cfg);
    const gpu::sgd_multi<T> fused(list);
    const gpu::sgd_hyper hyper{0.05f, 0.9f, 1e-3f, nesterov};
    // Magnitude of the terms each result sums (|w0| and every step's |g|): the velocity cancels
    // terms of size ~|g| down to a small value, and the GPU contracts mu * v + g into one FMA, so a
    // bound relative to |result| alone would demand more than float arithmetic gives.
    std::vector<fvec> mag(static_cast<std::size_t>(P));
    for (int i = 0; i < P; ++i) {
        mag[i].resize(static_cast<std::size_t>(specs[i].n));
        for (int j = 0; j < specs[i].n; ++j) mag[i][j] = std::fabs(cpu[i].value.data()[j]);
    }
    for (int s = 0; s < 3; ++s) {
        for (int i = 0; i < P; ++i) {
            const fvec g = grad_of<T>(i, s, specs[i].n);
            for (int j = 0; j < specs[i].n; ++j) mag[i][j] += std::fabs(g[j]);
            std::copy(g.begin(), g.end(), cpu[i].grad.data());
            const auto dg = to_device<T>(g);
            TRICKS_CUDA_CHECK(cudaMemcpy(grad[i].data(), dg.data(), dg.bytes(), cudaMemcpyDeviceToDevice));
        }
        ref.step(0.05);
        if (multi)
            fused.step(hyper, nullptr, ctx);
        else
            for (const auto& t : list) gpu::sgd_update(t, hyper, nullptr, ctx);
    }
    const std::string tag = std::string("sgd ") + (multi ? "multi " : "single ") + (nesterov ? "nesterov " : "") +
                            (no_bias_decay ? "no_bias_decay " : "") + tname<T>();
    for (int i = 0; i < P; ++i) {
        const fvec w_ref(cpu[i].value.data(), cpu[i].value.data() + specs[i].n);
        const fvec v_ref(ref.velocity()[static_cast<std::size_t>(i)].data(),
                         ref.velocity()[static_cast<std::size_t>(i)].data() + specs[i].n);
        fvec s(w_ref.size());
        for (std::size_t j = 0; j < s.size(); ++j) s[j] = std::fabs(w_ref[j]) + std::fabs(v_ref[j]) + mag[i][j];
        const fvec w_got = to_host(master[i]);
        EXPECT_CLOSE(tag + " param " + std::to_string(i) + " master", w_got, w_ref, s, 1e-6, 0.0);
        EXPECT_CLOSE(tag + " param " + std::to_string(i) + " velocity", to_host(velocity[i]), v_ref, s, 1e-6, 0.0);
        if (list[i].model) {
            const fvec copy = to_host(model[i]);
            EXPECT_CLOSE(tag + " param " + std::to_string(i) + " model copy = round(master)", copy, rounded<T>(w_got),
                         fvec(copy.size(), 0.f), 0.0, 0.0);
        } else {
            CHECK(std::isnan(to_host(model[i])[0]));  // no copy requested: untouched
        }
    }
}

TRICKS_GPU_TEST(sgd_parity_all) {
    for (bool nesterov : {false, true})
        for (bool nbd : {false, true}) {
            sgd_parity<float>(nesterov, nbd, true);
            sgd_parity<__half>(nesterov, nbd, true);
        }
    sgd_parity<__half>(true, true, false);
    sgd_parity<float>(false, false, false);
}

// ---- overflow check and dynamic loss scaling ------------------------------------------------------

template <class T>
void overflow_check() {
    gpu::context ctx;
    const std::size_t n = 5001;
    gpu::device_buffer<int> flag(1);
    auto read_flag = [&] {
        int f = -1;
        TRICKS_CUDA_CHECK(cudaMemcpy(&f, flag.data(), sizeof f, cudaMemcpyDeviceToHost));
        return f;
    };
    auto clean = to_device<T>(uniform(n, 91, -60000.f, 60000.f));
    fvec with_nan = uniform(n, 92), with_inf = uniform(n, 93);
    with_nan[n - 1] = std::numeric_limits<float>::quiet_NaN();
    with_inf[17] = std::is_same_v<T, float> ? std::numeric_limits<float>::infinity() : 70000.f;  // FP16 overflow -> inf
    auto dnan = to_device<T>(with_nan), dinf = to_device<T>(with_inf);
    for (auto* buf : {&clean, &dnan, &dinf}) {
        TRICKS_CUDA_CHECK(cudaMemset(flag.data(), 0, sizeof(int)));
        gpu::check_finite(n, static_cast<const T*>(buf->data()), flag.data(), ctx);
        const int want = buf == &clean ? 0 : 1;
        CHECK_MSG(read_flag() == want, tname<T>() << " buffer "
                                                  << (buf == &clean  ? "clean"
                                                      : buf == &dnan ? "nan"
                                                                     : "inf")
                                                  << ": flag " << read_flag());
    }
    // The flag is only ever set: a clean buffer after a bad one leaves it at 1.
    gpu::check_finite(n, static_cast<const T*>(clean.data()), flag.data(), ctx);
    CHECK(read_flag() == 1);
}

TRICKS_GPU_TEST(overflow_check_fp32_fp16) {
    overflow_check<float>();
    overflow_check<__half>();
}

/// Five steps of fp16_mixed's scaled update on the device vs loss_scaler + sgd_optimizer on the
/// CPU: step 1 overflows (skipped, scale 1024 -> 512), steps 2-5 are clean (window 2: the scale
/// doubles after steps 3 and 5, ending at 2048). Gradients arrive multiplied by the current scale,
/// as the backward pass of a scaled loss would produce them.
TRICKS_GPU_TEST(dynamic_loss_scaling_matches_cpu) {
    using T = __half;
    gpu::context ctx;
    const int P = 2;
    const int sizes[P] = {777, 12};
    std::vector<tricks::nn::parameter> cpu(P);
    std::vector<tricks::nn::parameter*> ptrs;
    std::vector<gpu::device_buffer<float>> master, velocity;
    std::vector<gpu::device_buffer<T>> grad, model;
    std::vector<gpu::sgd_tensor<T>> list;
    for (int i = 0; i < P; ++i) {
        cpu[i].allocate(i == 0 ? tricks::nn::role::weight : tricks::nn::role::bias, sizes[i]);
        const fvec w0 = rounded<T>(uniform(static_cast<std::size_t>(sizes[i]), 950 + i));
        std::copy(w0.begin(), w0.end(), cpu[i].value.data());
        ptrs.push_back(&cpu[i]);
        master.push_back(to_device<float>(w0));
        velocity.push_back(to_device<float>(fvec(static_cast<std::size_t>(sizes[i]), 0.f)));
        grad.push_back(nan_device<T>(static_cast<std::size_t>(sizes[i])));
        model.push_back(nan_device<T>(static_cast<std::size_t>(sizes[i])));
        list.push_back({master[i].data(), velocity[i].data(), grad[i].data(), model[i].data(),
                        static_cast<std::size_t>(sizes[i]), i == 0});
    }
    tricks::sgd_optimizer ref(ptrs, tricks::sgd_config{0.9, 1e-4, true, true});
    tricks::loss_scaler ref_scale;
    ref_scale.scale = 1024;
    ref_scale.window = 2;
    const gpu::sgd_multi<T> fused(list);
    gpu::dynamic_loss_scale scaler(1024.f, 2);
    const gpu::sgd_hyper hyper{0.1f, 0.9f, 1e-4f, true};
    std::vector<fvec> mag(P);  // |w0| + sum of the unscaled |g| (see sgd_parity)
    for (int i = 0; i < P; ++i) {
        mag[i].resize(static_cast<std::size_t>(sizes[i]));
        for (int j = 0; j < sizes[i]; ++j) mag[i][j] = std::fabs(cpu[i].value.data()[j]);
    }
    for (int s = 0; s < 5; ++s) {
        const float S = static_cast<float>(ref_scale.scale);
        for (int i = 0; i < P; ++i) {
            fvec g = grad_of<T>(i, s, sizes[i]);  // unscaled gradient
            for (auto& e : g) e = round_to<T>(e * S);
            if (s == 0 && i == 1) g[5] = 1e6f;  // overflows FP16 -> inf
            g = rounded<T>(g);
            for (int j = 0; j < sizes[i]; ++j)
                if (std::isfinite(g[j])) mag[i][j] += std::fabs(g[j]) / S;
            std::copy(g.begin(), g.end(), cpu[i].grad.data());
            const auto dg = to_device<T>(g);
            TRICKS_CUDA_CHECK(cudaMemcpy(grad[i].data(), dg.data(), dg.bytes(), cudaMemcpyDeviceToDevice));
        }
        if (ref_scale.unscale_or_skip(ptrs)) ref.step(0.1);
        scaler.check(fused, ctx);
        fused.step(hyper, scaler.state(), ctx);
        scaler.update(ctx);
        const gpu::loss_scale_state st = scaler.read(ctx);
        CHECK_MSG(st.scale == static_cast<float>(ref_scale.scale) && st.skipped == ref_scale.skipped &&
                      st.clean_steps == ref_scale.clean_steps && st.found_inf == 0,
                  "after step " << s << ": device scale " << st.scale << " skipped " << st.skipped << " clean "
                                << st.clean_steps << " found_inf " << st.found_inf << "; cpu scale " << ref_scale.scale
                                << " skipped " << ref_scale.skipped << " clean " << ref_scale.clean_steps);
        if (s == 0) CHECK(std::isnan(to_host(model[0])[0]));  // the skipped step wrote nothing
    }
    CHECK(ref_scale.skipped == 1 && ref_scale.scale == 2048.0);  // the scenario ran as intended
    for (int i = 0; i < P; ++i) {
        const fvec w_ref(cpu[i].value.data(), cpu[i].value.data() + sizes[i]);
        const fvec v_ref(ref.velocity()[static_cast<std::size_t>(i)].data(),
                         ref.velocity()[static_cast<std::size_t>(i)].data() + sizes[i]);
        fvec s(w_ref.size());
        for (std::size_t j = 0; j < s.size(); ++j) s[j] = std::fabs(w_ref[j]) + std::fabs(v_ref[j]) + mag[i][j];
        EXPECT_CLOSE("loss-scaled sgd param " + std::to_string(i) + " master", to_host(master[i]), w_ref, s, 1e-6, 0.0);
        EXPECT_CLOSE("loss-scaled sgd param " + std::to_string(i) + " velocity", to_host(velocity[i]), v_ref, s, 1e-6,
                     0.0);
    }
    // The device scale is what softmax_cross_entropy_async reads.
    float S = 0;
    TRICKS_CUDA_CHECK(cudaMemcpy(&S, scaler.scale(), sizeof S, cudaMemcpyDeviceToHost));
    CHECK(S == 2048.f);
}

}  // namespace
