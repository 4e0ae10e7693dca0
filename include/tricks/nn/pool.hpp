#pragma once
// Pooling layers: max_pool (the ImageNet stem's 3x3 stride 2), avg_pool (ResNet-D's shortcut) and
// global_avg_pool (before the classifier).
#include <cstdint>
#include <string>
#include <vector>

#include "tricks/backend/cpu/pool.hpp"
#include "tricks/nn/layer.hpp"

namespace tricks::nn {

template <int C, int K, int Stride, int Pad = 0>
struct max_pool {
    static constexpr int in_channels = C, out_channels = C, kernel = K, stride = Stride, pad = Pad;
    static constexpr std::int64_t parameter_count = 0;
    static constexpr dims out_dims(dims in) noexcept {
        return {window_out(in.h, K, Stride, Pad), window_out(in.w, K, Stride, Pad)};
    }
    static constexpr std::int64_t macs(dims) noexcept { return 0; }
    static std::string describe() {
        return "maxpool(k" + std::to_string(K) + ",s" + std::to_string(Stride) + ",p" + std::to_string(Pad) + ")";
    }
    void init(rng&, const init_options&) {}
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        check_channels("tricks::max_pool", x, C);
        g_ = {x.shape(), K, Stride, Pad, false, true};
        routed_ = false;  // until argmax_ holds this forward's routes
        ctx.output(y_, g_.out());
        // A lending forward is never followed by a backward pass (the composites refuse it): no argmax.
        const bool route = !ctx.lends();
        if (route) argmax_.resize(y_.size());
        backend::host::max_pool_forward(g_, x.data(), y_.data(), route ? argmax_.data() : nullptr);
        routed_ = route;
        return y_;
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool) {
        require<error>(routed_,
                       "tricks::max_pool: backward after a forward that lent its buffers (an evaluation with "
                       "context::arena) or before any forward");
        require<shape_error>(dy.shape() == g_.out(), "tricks::max_pool: backward got dy ", dy.shape(), ", expected ",
                             g_.out());
        ctx.gradient(dx_, g_.in);
        backend::host::max_pool_backward(g_, dy.data(), argmax_.data(), dx_.data());
        return dx_;
    }
    template <class F>
    void for_each_parameter(F&&) {}
    template <class F>
    void for_each_buffer(F&&) {}

private:
    backend::pool_geometry g_{};
    tensor<float> y_, dx_;
    std::vector<std::int32_t> argmax_;
    bool routed_ = false;  // the last forward wrote argmax_
};

/// Average pool. ResNet-D uses avg_pool<C, 2, 2, 0, true, false>: ceil mode so odd sizes keep
/// their last row/column (7 -> 4, matching the strided main path), padding never counted.
template <int C, int K, int Stride, int Pad = 0, bool CeilMode = false, bool CountIncludePad = true>
struct avg_pool {
    static constexpr int in_channels = C, out_channels = C, kernel = K, stride = Stride, pad = Pad;
    static constexpr bool ceil_mode = CeilMode, count_include_pad = CountIncludePad;
    static constexpr std::int64_t parameter_count = 0;
    static constexpr dims out_dims(dims in) noexcept {
        return {window_out(in.h, K, Stride, Pad, CeilMode), window_out(in.w, K, Stride, Pad, CeilMode)};
    }
    static constexpr std::int64_t macs(dims) noexcept { return 0; }
    static std::string describe() {
        return "avgpool(k" + std::to_string(K) + ",s" + std::to_string(Stride) + ",p" + std::to_string(Pad) +
               (CeilMode ? ",ceil" : "") + (CountIncludePad ? "" : ",nopad") + ")";
    }
    void init(rng&, const init_options&) {}
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        check_channels("tricks::avg_pool", x, C);
        g_ = {x.shape(), K, Stride, Pad, CeilMode, CountIncludePad};
        ctx.output(y_, g_.out());
        backend::host::avg_pool_forward(g_, x.data(), y_.data());
        ctx.round(y_);
        return y_;
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool) {
        ctx.gradient(dx_, g_.in);
        backend::host::avg_pool_backward(g_, dy.data(), dx_.data());
        ctx.round(dx_);
        return dx_;
    }
    template <class F>
    void for_each_parameter(F&&) {}
    template <class F>
    void for_each_buffer(F&&) {}

private:
    backend::pool_geometry g_{};
    tensor<float> y_, dx_;
};

template <int C>
struct global_avg_pool {
    static constexpr int in_channels = C, out_channels = C;
    static constexpr std::int64_t parameter_count = 0;
    static constexpr dims out_dims(dims) noexcept { return {1, 1}; }
    static constexpr std::int64_t macs(dims) noexcept { return 0; }
    static std::string describe() { return "gap"; }
    void init(rng&, const init_options&) {}
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        check_channels("tricks::global_avg_pool", x, C);
        in_ = x.shape();
        ctx.output(y_, {in_.n, 1, 1, C});
        backend::host::global_avg_pool_forward(in_, x.data(), y_.data());
        ctx.round(y_);
        return y_;
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool) {
        ctx.gradient(dx_, in_);
        backend::host::global_avg_pool_backward(in_, dy.data(), dx_.data());
        ctx.round(dx_);
        return dx_;
    }
    template <class F>
    void for_each_parameter(F&&) {}
    template <class F>
    void for_each_buffer(F&&) {}

private:
    shape4 in_{};
    tensor<float> y_, dx_;
};

}  // namespace tricks::nn
