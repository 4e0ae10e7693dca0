#pragma once
// gpu::device_model<Model, T>: runs a model *type* (the same models::resnet / cifar_resnet types the
// CPU trains) on the device. Each layer type of tricks::nn has a device twin here
// (device_layer<L, T>) that calls the backend::cuda kernels in place of the backend::cpu ones; the
// composition types (sequential, repeat, residual, identity) map to composition twins, so the device
// network has exactly the structure of the type, with no run-time graph.
//
// Storage: activations and their gradients are element type T (float under precision::fp32, __half
// under precision::fp16_mixed); convolution and classifier weights have an FP32 master copy, an FP32
// momentum buffer, a T gradient and (T = __half) the T copy the kernels read; batch-norm parameters
// and statistics are FP32 throughout (cuDNN's convention).
//
// The host model stays the owner of record: upload() copies its parameters, BN statistics and
// (optionally) the optimizer's momentum to the device, download() copies them back, converting
// convolution filters between the host's HWIO and cuDNN's KRSC layout. So checkpoints written from
// a GPU run load on the CPU and the other way round.
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "tricks/backend/cuda/batch_norm.cuh"
#include "tricks/backend/cuda/conv.cuh"
#include "tricks/backend/cuda/elementwise.cuh"
#include "tricks/backend/cuda/layout.cuh"
#include "tricks/backend/cuda/linear.cuh"
#include "tricks/backend/cuda/optim.cuh"
#include "tricks/backend/cuda/pool.cuh"
#include "tricks/distributed/communicator.hpp"
#include "tricks/distributed/device_exchange.hpp"
#include "tricks/nn/batch_norm.hpp"
#include "tricks/nn/conv.hpp"
#include "tricks/nn/linear.hpp"
#include "tricks/nn/pool.hpp"
#include "tricks/nn/relu.hpp"
#include "tricks/nn/residual.hpp"
#include "tricks/nn/sequential.hpp"

namespace tricks::backend::gpu {

namespace detail {
/// out[i] := (pieces[i] + pieces[m + i] + ... + pieces[(ranks - 1) m + i]) / ranks, added in rank
/// order and divided in float: communicator::sum() followed by the host path's division.
template <class = void>
__global__ void rank_order_mean(std::size_t m, int ranks, const float* __restrict__ pieces, float* __restrict__ out) {
    for (std::size_t i = global_thread(); i < m; i += grid_stride()) {
        float acc = pieces[i];
        for (int r = 1; r < ranks; ++r) acc += pieces[static_cast<std::size_t>(r) * m + i];
        out[i] = acc / static_cast<float>(ranks);
    }
}
}  // namespace detail

/// An NHWC activation tensor in device memory; resize() keeps a large enough allocation.
template <device_element T>
struct device_tensor {
    shape4 shape{};
    device_buffer<T> buffer;
    void resize(shape4 s) {
        shape = s;
        buffer.resize(s.size());
    }
    [[nodiscard]] T* data() noexcept { return buffer.data(); }
    [[nodiscard]] const T* data() const noexcept { return buffer.data(); }
    [[nodiscard]] std::size_t size() const noexcept { return shape.size(); }
};

/// What a device forward/backward pass needs besides its inputs.
struct run_context {
    nn::mode phase = nn::mode::train;
    context* gpu = nullptr;
};

/// The device state of one parameter. G is the element type of the gradient and of the copy the
/// kernels read: T for convolution/classifier weights, float for batch-norm parameters.
template <device_element G>
struct device_param {
    nn::parameter* host = nullptr;
    int kh = 0, kw = 0, cin = 0, cout = 0;  // a convolution filter (host HWIO <-> device KRSC); kh == 0: same layout
    device_buffer<float> master, velocity;  // FP32 master weights and momentum
    device_buffer<G> grad;
    device_buffer<G> copy;  // G = __half: the rounded copy the kernels read (G = float: they read master)

    [[nodiscard]] std::size_t size() const noexcept { return master.size(); }
    [[nodiscard]] const G* value() const noexcept {
        if constexpr (std::is_same_v<G, float>)
            return master.data();
        else
            return copy.data();
    }
    [[nodiscard]] conv_geometry filter() const noexcept {
        return conv_geometry{shape4{1, 1, 1, cin}, cout, kh, kw, 1, 0};
    }

    /// Host value (and momentum, when given) -> device; the gradient buffer is allocated.
    void upload(const tensor<float>* host_velocity, context& ctx) {
        const std::size_t n = host->value.size();
        master.upload(device_layout(host->value.span()));
        if (host_velocity) {
            require<shape_error>(host_velocity->size() == n, "tricks::gpu::device_param: momentum of ",
                                 host_velocity->size(), " values for a parameter of ", n);
            velocity.upload(device_layout(std::span<const float>(host_velocity->data(), n)));
        } else {
            velocity.resize(n);
            velocity.zero_async(ctx.stream());
        }
        grad.resize(n);
        grad.zero_async(ctx.stream());
        if constexpr (!std::is_same_v<G, float>) {  // the copy the kernels read; the fused optimizer keeps it current
            copy.resize(n);
            cast(n, master.data(), copy.data(), ctx);
        }
    }
    /// Device master weights (and momentum) -> host.
    void download(tensor<float>* host_velocity) const {
        host_layout(master.to_host(), host->value.span());
        if (host_velocity) {
            host_velocity->resize(host->value.shape());
            host_layout(velocity.to_host(), host_velocity->span());
        }
    }
    /// Device gradient -> host parameter's grad (FP32, host layout).
    void download_grad() const {
        std::vector<G> g = grad.to_host();
        std::vector<float> f(g.size());
        for (std::size_t i = 0; i < g.size(); ++i) f[i] = to_float(g[i]);
        host_layout(std::move(f), host->grad.span());
    }

    sgd_tensor<G> sgd_view(bool decay) {
        return {master.data(), velocity.data(),
                grad.data(),   std::is_same_v<G, float> ? nullptr : copy.data(),
                master.size(), decay};
    }

private:
    std::vector<float> device_layout(std::span<const float> h) const {
        std::vector<float> d(h.begin(), h.end());
        if (kh) hwio_to_krsc(filter(), h.data(), d.data());
        return d;
    }
    void host_layout(std::vector<float> d, std::span<float> h) const {
        require<shape_error>(d.size() == h.size(), "tricks::gpu::device_param: device holds ", d.size(),
                             " values, host parameter ", h.size());
        if (kh)
            krsc_to_hwio(filter(), d.data(), h.data());
        else
            std::copy(d.begin(), d.end(), h.begin());
    }
};

/// A batch-norm statistic (running mean or variance) mirrored on the device.
struct device_statistic {
    tensor<float>* host = nullptr;
    device_buffer<float> value;
    void upload() { value.upload(host->span()); }
    void download() const { value.download(host->span()); }
};

/// Device twin of a layer type. Specialised below for every tricks::nn layer; a layer type without
/// one cannot run on backend::cuda.
template <class L, device_element T>
struct device_layer {
    static_assert(
        sizeof(L) == 0,
        "tricks::backend::cuda: this layer type has no CUDA implementation (device twins exist for conv, "
        "batch_norm, relu, max_pool, avg_pool, global_avg_pool, linear, identity, sequential, repeat, residual)");
};

// ---- layers -------------------------------------------------------------------------------------

namespace detail {
/// What the twins of parameter-free layers (ReLU, pools, identity) share: nothing to upload, and the
/// output shape their CPU layer type computes.
template <class L>
struct stateless_twin {
    shape4 prepare(shape4 in, context&) {
        const dims o = L::out_dims(in.spatial());
        return {in.n, o.h, o.w, L::out_channels};
    }
    template <class F>
    void for_each_param(F&&) {}
    template <class F>
    void for_each_statistic(F&&) {}
};
}  // namespace detail

template <int Cin, int Cout, int K, int S, int P, device_element T>
struct device_layer<nn::conv<Cin, Cout, K, S, P>, T> {
    device_param<T> weight;
    explicit device_layer(nn::conv<Cin, Cout, K, S, P>& h) {
        weight.host = &h.weight;
        weight.kh = weight.kw = K;
        weight.cin = Cin;
        weight.cout = Cout;
    }
    static conv_geometry geometry(shape4 in) { return {in, Cout, K, K, S, P}; }

    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        nn::check_channels("tricks::gpu::conv", x.shape, Cin);
        x_ = &x;
        const auto g = geometry(x.shape);
        y_.resize(g.out());
        const auto timed = rc.gpu->time("conv fwd");
        conv2d_forward<T>(g, x.data(), weight.value(), y_.data(), *rc.gpu);
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool need_dx) {
        const auto g = geometry(x_->shape);
        require<shape_error>(dy.shape == g.out(), "tricks::gpu::conv: backward got dy ", dy.shape, ", expected ",
                             g.out());
        {
            const auto timed = rc.gpu->time("conv wgrad");
            conv2d_backward_filter<T>(g, x_->data(), dy.data(), weight.grad.data(), *rc.gpu);
        }
        if (need_dx) {
            dx_.resize(g.in);
            const auto timed = rc.gpu->time("conv dgrad");
            conv2d_backward_data<T>(g, dy.data(), weight.value(), dx_.data(), *rc.gpu);
        }
        return dx_;
    }
    /// Chooses the cuDNN algorithms of this layer for input shape `in` ahead of the first step.
    shape4 prepare(shape4 in, context& ctx) {
        (void)conv2d_prepare<T>(geometry(in), ctx);
        return geometry(in).out();
    }
    template <class F>
    void for_each_param(F&& f) {
        f(weight);
    }
    template <class F>
    void for_each_statistic(F&&) {}

private:
    const device_tensor<T>* x_ = nullptr;
    device_tensor<T> y_, dx_;
};

template <int C, device_element T>
struct device_layer<nn::batch_norm<C>, T> {
    device_param<float> gamma, beta;
    device_statistic running_mean, running_var;
    float eps, momentum;
    explicit device_layer(nn::batch_norm<C>& h) : eps(h.eps), momentum(h.momentum) {
        gamma.host = &h.gamma;
        beta.host = &h.beta;
        running_mean.host = &h.running_mean;
        running_var.host = &h.running_var;
    }
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        nn::check_channels("tricks::gpu::batch_norm", x.shape, C);
        x_ = &x;
        y_.resize(x.shape);
        const batch_norm_geometry g{x.shape.pixels(), C, eps, momentum};
        const auto timed = rc.gpu->time("bn fwd");
        if (rc.phase == nn::mode::train) {
            mean_.resize(C);
            inv_std_.resize(C);
            batch_norm_forward_train<T>(g, x.data(), gamma.value(), beta.value(), y_.data(), mean_.data(),
                                        inv_std_.data(), running_mean.value.data(), running_var.value.data(), *rc.gpu,
                                        x.shape);
        } else {
            batch_norm_forward_eval<T>(g, x.data(), gamma.value(), beta.value(), running_mean.value.data(),
                                       running_var.value.data(), y_.data(), *rc.gpu, x.shape);
        }
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool) {
        require<error>(!mean_.empty(), "tricks::gpu::batch_norm: backward without a training-mode forward");
        const batch_norm_geometry g{x_->shape.pixels(), C, eps, momentum};
        dx_.resize(x_->shape);
        const auto timed = rc.gpu->time("bn bwd");
        batch_norm_backward<T>(g, x_->data(), dy.data(), gamma.value(), mean_.data(), inv_std_.data(), dx_.data(),
                               gamma.grad.data(), beta.grad.data(), *rc.gpu, x_->shape);
        return dx_;
    }
    shape4 prepare(shape4 in, context&) { return in; }
    template <class F>
    void for_each_param(F&& f) {
        f(gamma);
        f(beta);
    }
    template <class F>
    void for_each_statistic(F&& f) {
        f(running_mean);
        f(running_var);
    }

private:
    const device_tensor<T>* x_ = nullptr;
    device_tensor<T> y_, dx_;
    device_buffer<float> mean_, inv_std_;
};

template <int C, device_element T>
struct device_layer<nn::relu<C>, T> : detail::stateless_twin<nn::relu<C>> {
    explicit device_layer(nn::relu<C>&) {}
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        nn::check_channels("tricks::gpu::relu", x.shape, C);
        y_.resize(x.shape);
        const auto timed = rc.gpu->time("relu fwd");
        relu_forward<T>(x.size(), x.data(), y_.data(), *rc.gpu);
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool) {
        dx_.resize(y_.shape);
        const auto timed = rc.gpu->time("relu bwd");
        relu_backward<T>(y_.size(), y_.data(), dy.data(), dx_.data(), *rc.gpu);
        return dx_;
    }

private:
    device_tensor<T> y_, dx_;
};

template <int C, int K, int S, int P, device_element T>
struct device_layer<nn::max_pool<C, K, S, P>, T> : detail::stateless_twin<nn::max_pool<C, K, S, P>> {
    explicit device_layer(nn::max_pool<C, K, S, P>&) {}
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        nn::check_channels("tricks::gpu::max_pool", x.shape, C);
        x_ = &x;
        g_ = {x.shape, K, S, P, false, true};
        y_.resize(g_.out());
        const auto timed = rc.gpu->time("pool fwd");
        max_pool_forward<T>(g_, x.data(), y_.data(), *rc.gpu);
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool) {
        dx_.resize(g_.in);
        const auto timed = rc.gpu->time("pool bwd");
        max_pool_backward<T>(g_, x_->data(), y_.data(), dy.data(), dx_.data(), *rc.gpu);
        return dx_;
    }

private:
    const device_tensor<T>* x_ = nullptr;
    pool_geometry g_{};
    device_tensor<T> y_, dx_;
};

template <int C, int K, int S, int P, bool Ceil, bool IncludePad, device_element T>
struct device_layer<nn::avg_pool<C, K, S, P, Ceil, IncludePad>, T>
    : detail::stateless_twin<nn::avg_pool<C, K, S, P, Ceil, IncludePad>> {
    explicit device_layer(nn::avg_pool<C, K, S, P, Ceil, IncludePad>&) {}
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        nn::check_channels("tricks::gpu::avg_pool", x.shape, C);
        g_ = {x.shape, K, S, P, Ceil, IncludePad};
        y_.resize(g_.out());
        const auto timed = rc.gpu->time("pool fwd");
        avg_pool_forward<T>(g_, x.data(), y_.data(), *rc.gpu);
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool) {
        dx_.resize(g_.in);
        const auto timed = rc.gpu->time("pool bwd");
        avg_pool_backward<T>(g_, dy.data(), dx_.data(), *rc.gpu);
        return dx_;
    }

private:
    pool_geometry g_{};
    device_tensor<T> y_, dx_;
};

template <int C, device_element T>
struct device_layer<nn::global_avg_pool<C>, T> : detail::stateless_twin<nn::global_avg_pool<C>> {
    explicit device_layer(nn::global_avg_pool<C>&) {}
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        nn::check_channels("tricks::gpu::global_avg_pool", x.shape, C);
        in_ = x.shape;
        y_.resize({in_.n, 1, 1, C});
        const auto timed = rc.gpu->time("pool fwd");
        global_avg_pool_forward<T>(in_, x.data(), y_.data(), *rc.gpu);
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool) {
        dx_.resize(in_);
        const auto timed = rc.gpu->time("pool bwd");
        global_avg_pool_backward<T>(in_, dy.data(), dx_.data(), *rc.gpu);
        return dx_;
    }

private:
    shape4 in_{};
    device_tensor<T> y_, dx_;
};

template <int In, int Out, device_element T>
struct device_layer<nn::linear<In, Out>, T> {
    device_param<T> weight, bias;
    explicit device_layer(nn::linear<In, Out>& h) {
        weight.host = &h.weight;
        bias.host = &h.bias;
    }
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        require<shape_error>(x.shape.h == 1 && x.shape.w == 1 && x.shape.c == In && x.shape.n > 0,
                             "tricks::gpu::linear: expected input (n, 1, 1, ", In, "), got ", x.shape);
        x_ = &x;
        y_.resize({x.shape.n, 1, 1, Out});
        const auto timed = rc.gpu->time("linear");
        linear_forward<T>(x.shape.n, In, Out, x.data(), weight.value(), bias.value(), y_.data(), *rc.gpu);
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool need_dx) {
        dx_.resize(x_->shape);
        const auto timed = rc.gpu->time("linear");
        linear_backward<T>(x_->shape.n, In, Out, x_->data(), weight.value(), dy.data(), need_dx ? dx_.data() : nullptr,
                           weight.grad.data(), bias.grad.data(), *rc.gpu);
        return dx_;
    }
    shape4 prepare(shape4 in, context&) { return {in.n, 1, 1, Out}; }
    template <class F>
    void for_each_param(F&& f) {
        f(weight);
        f(bias);
    }
    template <class F>
    void for_each_statistic(F&&) {}

private:
    const device_tensor<T>* x_ = nullptr;
    device_tensor<T> y_, dx_;
};

// ---- composition --------------------------------------------------------------------------------

template <int C, device_element T>
struct device_layer<nn::identity<C>, T> : detail::stateless_twin<nn::identity<C>> {
    explicit device_layer(nn::identity<C>&) {}
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context&) { return x; }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context&, bool) { return dy; }
};

template <class... Ls, device_element T>
struct device_layer<nn::sequential<Ls...>, T> {
    std::tuple<device_layer<Ls, T>...> layers;
    explicit device_layer(nn::sequential<Ls...>& h)
        : layers(std::apply([](auto&... l) { return std::tuple<device_layer<Ls, T>...>(device_layer<Ls, T>(l)...); },
                            h.layers)) {}

    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        const device_tensor<T>* cur = &x;
        std::apply([&](auto&... l) { ((cur = &l.forward(*cur, rc)), ...); }, layers);
        return *cur;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool need_dx) {
        return backward_from<sizeof...(Ls) - 1>(dy, rc, need_dx);
    }
    shape4 prepare(shape4 in, context& ctx) {
        std::apply([&](auto&... l) { ((in = l.prepare(in, ctx)), ...); }, layers);
        return in;
    }
    template <class F>
    void for_each_param(F&& f) {
        std::apply([&](auto&... l) { (l.for_each_param(f), ...); }, layers);
    }
    template <class F>
    void for_each_statistic(F&& f) {
        std::apply([&](auto&... l) { (l.for_each_statistic(f), ...); }, layers);
    }

private:
    template <std::size_t I>
    const device_tensor<T>& backward_from(const device_tensor<T>& dy, const run_context& rc, bool need_dx) {
        const device_tensor<T>& d = std::get<I>(layers).backward(dy, rc, I == 0 ? need_dx : true);
        if constexpr (I == 0)
            return d;
        else
            return backward_from<I - 1>(d, rc, need_dx);
    }
};

template <class L, int N, device_element T>
struct device_layer<nn::repeat<L, N>, T> {
    std::vector<device_layer<L, T>> items;  // N twins (device_layer is move-only)
    explicit device_layer(nn::repeat<L, N>& h) {
        items.reserve(N);
        for (auto& l : h.items) items.emplace_back(l);
    }
    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        const device_tensor<T>* cur = &x;
        for (auto& l : items) cur = &l.forward(*cur, rc);
        return *cur;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool need_dx) {
        const device_tensor<T>* cur = &dy;
        for (int i = N - 1; i >= 0; --i)
            cur = &items[static_cast<std::size_t>(i)].backward(*cur, rc, i == 0 ? need_dx : true);
        return *cur;
    }
    shape4 prepare(shape4 in, context& ctx) {
        for (auto& l : items) in = l.prepare(in, ctx);
        return in;
    }
    template <class F>
    void for_each_param(F&& f) {
        for (auto& l : items) l.for_each_param(f);
    }
    template <class F>
    void for_each_statistic(F&& f) {
        for (auto& l : items) l.for_each_statistic(f);
    }
};

template <class Branch, class Shortcut, device_element T>
struct device_layer<nn::residual<Branch, Shortcut>, T> {
    device_layer<Branch, T> branch;
    device_layer<Shortcut, T> shortcut;
    explicit device_layer(nn::residual<Branch, Shortcut>& h) : branch(h.branch), shortcut(h.shortcut) {}

    const device_tensor<T>& forward(const device_tensor<T>& x, const run_context& rc) {
        const device_tensor<T>& a = branch.forward(x, rc);
        const device_tensor<T>& s = shortcut.forward(x, rc);
        require<shape_error>(a.shape == s.shape, "tricks::gpu::residual: branch output ", a.shape,
                             " and shortcut output ", s.shape, " differ");
        y_.resize(a.shape);
        const auto timed = rc.gpu->time("residual add+relu");
        add_relu_forward<T>(y_.size(), a.data(), s.data(), y_.data(), *rc.gpu);
        return y_;
    }
    const device_tensor<T>& backward(const device_tensor<T>& dy, const run_context& rc, bool) {
        ds_.resize(y_.shape);
        {
            const auto timed = rc.gpu->time("residual bwd");
            relu_backward<T>(y_.size(), y_.data(), dy.data(), ds_.data(), *rc.gpu);
        }
        const device_tensor<T>& db = branch.backward(ds_, rc, true);
        const device_tensor<T>& dsc = shortcut.backward(ds_, rc, true);
        dx_.resize(db.shape);
        const auto timed = rc.gpu->time("residual bwd");
        add<T>(dx_.size(), db.data(), dsc.data(), dx_.data(), *rc.gpu);
        return dx_;
    }
    shape4 prepare(shape4 in, context& ctx) {
        const shape4 out = branch.prepare(in, ctx);
        (void)shortcut.prepare(in, ctx);
        return out;
    }
    template <class F>
    void for_each_param(F&& f) {
        branch.for_each_param(f);
        shortcut.for_each_param(f);
    }
    template <class F>
    void for_each_statistic(F&& f) {
        branch.for_each_statistic(f);
        shortcut.for_each_statistic(f);
    }

private:
    device_tensor<T> y_, ds_, dx_;
};

// ---- the model ----------------------------------------------------------------------------------

/// A model type on the device: the twin of the model's body plus the parameter lists the fused
/// optimizer walks. Parameters are visited in the host model's order (for_each_parameter), so
/// the i-th device parameter is the i-th entry of Model::parameters().
template <class Model, device_element T>
class device_model {
public:
    using body_type = typename Model::body_type;

    /// Which parameters weight decay applies to, by role (the trainer passes the recipe's rule).
    using decay_rule = bool (*)(nn::role);
    static bool decay_all(nn::role) noexcept { return true; }

    /// Binds to `host` (which must outlive this object) and uploads its state.
    device_model(Model& host, context& ctx, decay_rule decays = decay_all)
        : body_(static_cast<body_type&>(host)), ctx_(&ctx), decays_(decays) {
        check_host_order(host);
        upload(nullptr);
    }
    device_model(const device_model&) = delete;
    device_model& operator=(const device_model&) = delete;

    const device_tensor<T>& forward(const device_tensor<T>& x, nn::mode phase) {
        require<shape_error>(x.shape.c == Model::input_channels, "tricks::gpu::device_model: ", Model::name(),
                             " takes ", Model::input_channels, " input channels, got input ", x.shape);
        return body_.forward(x, run_context{phase, ctx_});
    }
    void backward(const device_tensor<T>& dz) { (void)body_.backward(dz, run_context{nn::mode::train, ctx_}, false); }

    /// Chooses every convolution algorithm for input `in` now (cudnnFind runs outside the timed steps).
    void prepare(shape4 in) { (void)body_.prepare(in, *ctx_); }

    /// The twins must visit parameters and statistics in the host model's order (for_each_parameter,
    /// for_each_buffer): the optimizer's momentum, Model::parameters() and checkpoints are indexed by
    /// it. Each device parameter points at its host parameter, so the check is exact.
    void check_host_order(Model& host) {
        std::vector<const void*> h, d;
        host.for_each_parameter([&](nn::parameter& p) { h.push_back(&p); });
        body_.for_each_param([&](auto& p) { d.push_back(p.host); });
        require<error>(h == d, "tricks::gpu::device_model: ", Model::name(), ": the device twins visit ", d.size(),
                       " parameters in another order than the host model's ", h.size(), " (backend/cuda/model.cuh)");
        h.clear();
        d.clear();
        host.for_each_buffer([&](tensor<float>& b) { h.push_back(&b); });
        body_.for_each_statistic([&](device_statistic& st) { d.push_back(st.host); });
        require<error>(h == d, "tricks::gpu::device_model: ", Model::name(), ": the device twins visit ", d.size(),
                       " statistics in another order than the host model's ", h.size(),
                       " buffers (backend/cuda/model.cuh)");
    }

    /// Host parameters, BN statistics and (when given, one per parameter in host order) momentum -> device.
    void upload(const std::vector<tensor<float>>* velocity) {
        std::size_t i = 0;
        body_.for_each_param([&](auto& p) {
            p.upload(velocity ? &(*velocity)[i] : nullptr, *ctx_);
            ++i;
        });
        if (velocity)
            require<shape_error>(velocity->size() == i, "tricks::gpu::device_model: ", velocity->size(),
                                 " momentum tensors for ", i, " parameters");
        body_.for_each_statistic([&](device_statistic& s) { s.upload(); });
        build_optimizer_lists();
    }
    /// Device master weights, BN statistics and (when given) momentum -> host.
    void download(std::vector<tensor<float>>* velocity) {
        ctx_->synchronize();
        std::size_t i = 0;
        if (velocity) velocity->resize(count_params());
        body_.for_each_param([&](auto& p) {
            p.download(velocity ? &(*velocity)[i] : nullptr);
            ++i;
        });
        body_.for_each_statistic([&](device_statistic& s) { s.download(); });
    }
    /// Device gradients -> the host parameters' grad tensors (FP32, host layout): for tests.
    void download_grads() {
        ctx_->synchronize();
        body_.for_each_param([&](auto& p) { p.download_grad(); });
    }

    /// Data-parallel training: every gradient and batch-norm running statistic becomes its mean over
    /// the ranks of `comm`, as the CPU trainer's gradient buckets compute it. Staged through host
    /// memory: downloaded (FP16 gradients widened to float, exactly), summed in rank order by
    /// communicator::sum (fixed order: the bits depend on the world size only), divided by the rank
    /// count in float and uploaded (FP16 gradients rounded once, as the CPU rounds the mean). Waits
    /// for the device; one host buffer of every gradient and statistic.
    void mean_over_ranks(distributed::communicator& comm) {
        const auto timed = ctx_->time("gradient mean over ranks");
        ctx_->synchronize();
        std::size_t n = 0;
        body_.for_each_param([&](auto& p) { n += p.grad.size(); });
        body_.for_each_statistic([&](device_statistic& st) { n += st.value.size(); });
        flat_.resize(n);
        std::size_t at = 0;
        body_.for_each_param([&](auto& p) {  // FP32 gradients straight into flat_, FP16 ones widened
            const std::span<float> f(flat_.data() + at, p.grad.size());
            using G = std::remove_cvref_t<decltype(*p.grad.data())>;
            if constexpr (std::is_same_v<G, float>) {
                p.grad.download(f);
            } else {
                half_.resize(f.size());
                p.grad.download(std::span<G>(half_));
                for (std::size_t i = 0; i < f.size(); ++i) f[i] = to_float(half_[i]);
            }
            at += f.size();
        });
        body_.for_each_statistic([&](device_statistic& st) {
            st.value.download(std::span<float>(flat_.data() + at, st.value.size()));
            at += st.value.size();
        });
        comm.sum(std::span<float>(flat_));
        const auto ranks = static_cast<float>(comm.size());
        at = 0;
        body_.for_each_param([&](auto& p) {
            const std::span<float> f(flat_.data() + at, p.grad.size());
            for (auto& v : f) v /= ranks;
            using G = std::remove_cvref_t<decltype(*p.grad.data())>;
            if constexpr (std::is_same_v<G, float>) {
                p.grad.upload(std::span<const float>(f));
            } else {  // rounded once to the storage precision
                half_.resize(f.size());
                for (std::size_t i = 0; i < f.size(); ++i) half_[i] = from_float<G>(f[i]);
                p.grad.upload(std::span<const G>(half_));
            }
            at += f.size();
        });
        body_.for_each_statistic([&](device_statistic& st) {
            const std::span<float> v(flat_.data() + at, st.value.size());
            for (auto& x : v) x /= ranks;
            st.value.upload(std::span<const float>(v));
            at += v.size();
        });
    }

    /// mean_over_ranks() with the gradients kept in device memory, moved by `ex` (NCCL or a
    /// CUDA-aware MPI): the gradients and statistics are packed into one FP32 buffer of size() x m
    /// floats (FP16 widened exactly), an all-to-all gives this rank every rank's piece of block
    /// rank(), a kernel adds the pieces in rank order and divides by the number of ranks, an
    /// all-gather returns every block to every rank, and the results are unpacked (FP16 rounded
    /// once). The same float operations in the same order as the host path: the same bits.
    void mean_over_ranks(distributed::device_exchange& ex) {
        const auto timed = ctx_->time("gradient mean over ranks");
        std::size_t n = 0;
        body_.for_each_param([&](auto& p) { n += p.grad.size(); });
        body_.for_each_statistic([&](device_statistic& st) { n += st.value.size(); });
        const auto W = static_cast<std::size_t>(ex.size()), me = static_cast<std::size_t>(ex.rank());
        const std::size_t m = (n + W - 1) / W;
        if (flat_device_.size() != W * m) {  // the padding past n stays zero: its sums are zeros
            flat_device_.resize(W * m);
            flat_device_.zero_async(ctx_->stream());
            pieces_device_.resize(W * m);
        }
        move_gradients(flat_device_.data(), true);
        void* const stream = ctx_->stream();
        if (!ex.stream_ordered()) ctx_->synchronize();
        ex.all_to_all(flat_device_.data(), pieces_device_.data(), m, stream);
        detail::rank_order_mean<><<<detail::blocks_for(m), detail::threads_per_block, 0, ctx_->stream()>>>(
            m, ex.size(), pieces_device_.data(), flat_device_.data() + me * m);
        TRICKS_CUDA_CHECK_LAUNCH("rank_order_mean");
        if (!ex.stream_ordered()) ctx_->synchronize();
        ex.all_gather(flat_device_.data(), m, stream);
        move_gradients(flat_device_.data(), false);
    }

    /// One fused SGD step over every parameter (two launches: T-typed and FP32-typed gradients).
    /// `scale`: the device loss-scale state under fp16_mixed (the step is skipped on overflow and
    /// the gradients unscaled), or null.
    void sgd_step(const sgd_hyper& h, const loss_scale_state* scale) {
        const auto timed = ctx_->time("optimizer");
        if (typed_.size()) typed_.step(h, scale, *ctx_);
        if (fp32_.size()) fp32_.step(h, scale, *ctx_);
    }
    /// Flags an inf/NaN in any gradient (dynamic loss scaling).
    void check_gradients(dynamic_loss_scale& s) {
        const auto timed = ctx_->time("overflow check");
        if (typed_.size()) s.check(typed_, *ctx_);
        if (fp32_.size()) s.check(fp32_, *ctx_);
    }

    [[nodiscard]] std::size_t count_params() {
        std::size_t n = 0;
        body_.for_each_param([&](auto&) { ++n; });
        return n;
    }

private:
    /// Every gradient and statistic, in mean_over_ranks()'s order, into (`pack`) or out of the
    /// device buffer `flat`: FP32 copied, FP16 widened into it and rounded out of it.
    void move_gradients(float* flat, bool pack) {
        const cudaStream_t s = ctx_->stream();
        const auto copy = [&](float* grad, float* at, std::size_t k) {
            TRICKS_CUDA_CHECK(
                cudaMemcpyAsync(pack ? at : grad, pack ? grad : at, k * sizeof(float), cudaMemcpyDeviceToDevice, s));
        };
        std::size_t at = 0;
        body_.for_each_param([&](auto& p) {
            using G = std::remove_cvref_t<decltype(*p.grad.data())>;
            const std::size_t k = p.grad.size();
            if constexpr (std::is_same_v<G, float>)
                copy(p.grad.data(), flat + at, k);
            else if (pack)
                cast<G, float>(k, p.grad.data(), flat + at, *ctx_);
            else
                cast<float, G>(k, flat + at, p.grad.data(), *ctx_);
            at += k;
        });
        body_.for_each_statistic([&](device_statistic& st) {
            copy(st.value.data(), flat + at, st.value.size());
            at += st.value.size();
        });
    }

    void build_optimizer_lists() {
        std::vector<sgd_tensor<T>> typed;
        std::vector<sgd_tensor<float>> fp32;
        body_.for_each_param([&](auto& p) {
            const bool decay = decays_(p.host->kind);
            using G = std::remove_cvref_t<decltype(*p.grad.data())>;
            if constexpr (std::is_same_v<G, T>)
                typed.push_back(p.sgd_view(decay));
            else
                fp32.push_back(p.sgd_view(decay));
        });
        // Under precision::fp32 (T = float) both kinds land in `typed`; fp32 stays empty.
        typed_ = sgd_multi<T>(typed);
        fp32_ = sgd_multi<float>(fp32);
    }

    device_layer<body_type, T> body_;
    context* ctx_;
    decay_rule decays_;
    sgd_multi<T> typed_;
    sgd_multi<float> fp32_;
    device_buffer<float> flat_device_, pieces_device_;  // mean_over_ranks(device_exchange&)'s buffers
    std::vector<float> flat_;                           // mean_over_ranks' host staging, reused from step to step
    std::vector<T> half_;                               // and its FP16 gradients on their way (T = __half)
};

}  // namespace tricks::backend::gpu
