#pragma once
// conv<Cin, Cout, K, Stride, Pad>: a square-kernel convolution without bias (every conv in a
// ResNet is followed by batch norm, whose beta makes a bias redundant).
#include <cmath>
#include <string>

#include "tricks/backend/cpu/conv.hpp"
#include "tricks/nn/layer.hpp"

namespace tricks::nn {

template <int Cin, int Cout, int K, int Stride = 1, int Pad = K / 2>
struct conv {
    static_assert(Cin > 0 && Cout > 0, "tricks::conv: channel counts must be positive");
    static_assert(K > 0 && Stride > 0 && Pad >= 0, "tricks::conv: kernel and stride must be positive, padding >= 0");
    static constexpr int in_channels = Cin, out_channels = Cout, kernel = K, stride = Stride, pad = Pad;
    static constexpr std::int64_t parameter_count = std::int64_t{K} * K * Cin * Cout;
    static constexpr dims out_dims(dims in) noexcept {
        return {window_out(in.h, K, Stride, Pad), window_out(in.w, K, Stride, Pad)};
    }
    static constexpr std::int64_t macs(dims in) noexcept {
        const dims o = out_dims(in);
        return std::int64_t{o.h} * o.w * parameter_count;
    }
    static std::string describe() {
        return "conv(" + std::to_string(Cin) + "," + std::to_string(Cout) + ",k" + std::to_string(K) + ",s" +
               std::to_string(Stride) + ",p" + std::to_string(Pad) + ")";
    }

    parameter weight;  // [K][K][Cin][Cout]

    conv() { weight.allocate(role::weight, static_cast<int>(parameter_count)); }

    /// Kaiming normal, fan_out mode (He et al. 2015; torchvision's ResNet init): std = sqrt(2 / (K*K*Cout)).
    void init(rng& r, const init_options&) {
        const double sd = std::sqrt(2.0 / (double(K) * K * Cout));
        for (auto& v : weight.value.span()) v = static_cast<float>(r.normal() * sd);
    }

    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        check_channels("tricks::conv", x, Cin);
        x_ = &x;
        const auto g = geometry(x.shape());
        ctx.output(y_, g.out());
        const float* w = weights(ctx);
        backend::host::conv2d_forward(g, x.data(), w, y_.data(), backend::host::thread_scratch(), {}, ctx.conv,
                                      prepared(g, w, ctx));
        ctx.round(y_);
        return y_;
    }

    /// Evaluation-mode forward with the batch norm after it folded in (and the ReLU after that when
    /// relu): writes epi(conv(x)) into `out`, the buffer of the last layer folded. sequential calls it
    /// in evaluation mode with FP32 storage; the values equal the layers run one after another.
    const tensor<float>& forward_affine(const tensor<float>& x, const context& ctx, backend::host::conv_epilogue epi,
                                        bool relu, tensor<float>& out) {
        check_channels("tricks::conv", x, Cin);
        require<error>(ctx.folds_into_convolutions(),
                       "tricks::conv: a folded batch norm needs evaluation mode, FP32 storage and context::fuse");
        x_ = &x;
        const auto g = geometry(x.shape());
        ctx.output(out, g.out());
        epi.relu = relu;
        const float* w = weights(ctx);
        backend::host::conv2d_forward(g, x.data(), w, out.data(), backend::host::thread_scratch(), epi, ctx.conv,
                                      prepared(g, w, ctx));
        return out;
    }

    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool need_dx) {
        const auto g = geometry(x_->shape());
        require<shape_error>(dy.shape() == g.out(), "tricks::conv: backward got dy ", dy.shape(), ", expected ",
                             g.out());
        backend::host::conv2d_backward_filter(g, x_->data(), dy.data(), weight.grad.data(),
                                              backend::host::thread_scratch(), ctx.conv);
        ctx.gradient_ready(weight);
        if (need_dx) {
            ctx.gradient(dx_, g.in);
            // the weights forward() used (rounded once there under mixed precision)
            const float* w = ctx.store == storage::fp32 ? weight.value.data() : w_work_.data();
            backend::host::conv2d_backward_data(g, dy.data(), w, dx_.data(), backend::host::thread_scratch(), ctx.conv);
            ctx.round(dx_);
        }
        return dx_;
    }

    template <class F>
    void for_each_parameter(F&& f) {
        f(weight);
    }
    template <class F>
    void for_each_buffer(F&&) {}

private:
    static backend::conv_geometry geometry(shape4 in) { return {in, Cout, K, K, Stride, Pad}; }
    /// The weights the kernels read: the FP32 master, or its copy rounded to the storage precision.
    const float* weights(const context& ctx) {
        if (ctx.store == storage::fp32) return weight.value.data();
        w_work_ = weight.value;
        ctx.round(w_work_);
        return w_work_.data();
    }

    /// The filter in the forward kernel's form, kept while ctx.weights_version stays the same (or read
    /// from the layer named by share_prepared_filter when it holds that form). The storage precision
    /// is part of the key: the kernels read the weights rounded to it.
    const float* prepared(const backend::conv_geometry& g, const float* w, const context& ctx) {
        if (!ctx.weights_version) return nullptr;
        const std::uint64_t key = ctx.weights_version * 4 + static_cast<std::uint64_t>(ctx.store);
        if (source_ != nullptr)
            if (const float* shared = backend::host::find_prepared(g, ctx.conv, key, source_->filter_)) return shared;
        return backend::host::prepare_filter(g, w, ctx.conv, key, filter_);
    }

public:
    /// Read the prepared filter of `from` (a layer with the same weights under the same
    /// weights_version: another copy of the model) instead of making one, whenever it holds the form
    /// this forward needs; null: make our own. No thread may be preparing `from`'s filter while this
    /// layer runs (models::inference_pool lets one copy prepare before the others start).
    void share_prepared_filter(const conv* from) noexcept { source_ = from; }
    /// Floats this layer holds for its own prepared filter (0 while it reads a shared one).
    [[nodiscard]] std::size_t prepared_floats() const noexcept { return filter_.u.capacity(); }

private:
    const tensor<float>* x_ = nullptr;
    const conv* source_ = nullptr;
    backend::host::prepared_filter filter_;
    tensor<float> y_, dx_,
        w_work_;  // the kernels' scratch is backend::host::thread_scratch(), shared by the thread's layers
};

}  // namespace tricks::nn
