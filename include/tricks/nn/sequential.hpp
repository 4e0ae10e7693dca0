#pragma once
// Composition: sequential<Layers...> (read left to right), repeat<Layer, N> (N copies of one
// layer type, stored in an array so a deep stage costs one instantiation), identity<C>.
#include <array>
#include <concepts>
#include <cstddef>
#include <string>
#include <tuple>
#include <utility>

#include "tricks/nn/layer.hpp"

namespace tricks::nn {

template <int C>
struct identity {
    static constexpr int in_channels = C, out_channels = C;
    static constexpr std::int64_t parameter_count = 0;
    static constexpr dims out_dims(dims in) noexcept { return in; }
    static constexpr std::int64_t macs(dims) noexcept { return 0; }
    static std::string describe() { return "id"; }
    void init(rng&, const init_options&) {}
    const tensor<float>& forward(const tensor<float>& x, const context&) { return x; }
    const tensor<float>& backward(const tensor<float>& dy, const context&, bool) { return dy; }
    template <class F>
    void for_each_parameter(F&&) {}
    template <class F>
    void for_each_buffer(F&&) {}
};

namespace detail {
template <class... Ls>
constexpr bool channels_chain() {
    constexpr std::array<int, sizeof...(Ls)> in{Ls::in_channels...}, out{Ls::out_channels...};
    for (std::size_t i = 0; i + 1 < sizeof...(Ls); ++i)
        if (out[i] != in[i + 1]) return false;
    return true;
}
}  // namespace detail

/// An activation that the layer before it can compute (relu).
template <class B>
concept fusable_activation = requires(B& b) {
    requires B::fusable_activation;
    { b.output() } -> std::same_as<tensor<float>&>;
};

/// A layer A whose output the next layer B can compute in the same pass: batch_norm followed by
/// relu (A writes max(BN(x), 0) into B's output buffer, and runs B's backward inside its own).
template <class A, class B>
concept fuses_with_next = fusable_activation<B> && requires(A& a, B& b, const tensor<float>& t, const context& ctx) {
    { a.forward_relu(t, ctx, b.output()) } -> std::same_as<const tensor<float>&>;
    { a.backward_relu(t, b.output(), ctx) } -> std::same_as<const tensor<float>&>;
};

/// A layer A (conv) that can apply the next layer B (batch_norm) in evaluation mode to its outputs:
/// B as a per-channel affine map (B.eval_affine()) in A's epilogue, written into B's buffer.
template <class A, class B>
concept folds_next_in_eval = requires(A& a, B& b, const tensor<float>& t, const context& ctx) {
    { a.forward_affine(t, ctx, b.eval_affine(), false, b.output()) } -> std::same_as<const tensor<float>&>;
};

template <class... Ls>
struct sequential {
    static_assert(sizeof...(Ls) > 0, "tricks::sequential: needs at least one layer");
    static_assert((Layer<Ls> && ...), "tricks::sequential: every element must satisfy tricks::nn::Layer");
    static_assert(detail::channels_chain<Ls...>(),
                  "tricks::sequential: each layer's out_channels must equal the next layer's in_channels");
    using layer_types = std::tuple<Ls...>;
    static constexpr std::size_t size = sizeof...(Ls);
    static constexpr int in_channels = std::tuple_element_t<0, layer_types>::in_channels;
    static constexpr int out_channels = std::tuple_element_t<size - 1, layer_types>::out_channels;
    static constexpr std::int64_t parameter_count = (Ls::parameter_count + ... + 0);
    static constexpr dims out_dims(dims d) noexcept {
        ((d = Ls::out_dims(d)), ...);
        return d;
    }
    static constexpr std::int64_t macs(dims d) noexcept {
        std::int64_t m = 0;
        ((m += Ls::macs(d), d = Ls::out_dims(d)), ...);
        return m;
    }
    static std::string describe() {
        std::string s = "seq[";
        ((s += Ls::describe() + " "), ...);
        s.back() = ']';
        return s;
    }

    layer_types layers;

    void init(rng& r, const init_options& o) {
        std::size_t i = 0;
        std::apply([&](auto&... l) { ((void)init_one(l, r.fork(i++), o), ...); }, layers);
    }
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        start(x, ctx);
        return forward_from<0>(x, ctx);
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool need_dx) {
        check_kept();
        grad_input_ = &dy;
        return backward_from<size - 1>(dy, ctx, need_dx, 0);
    }
    /// The backward pass of layers [first, size) only: layers before `first` compute no gradients
    /// (fine-tuning's frozen parts). Returns the gradient at layer first's input (first > 0: not
    /// meaningful to a caller, which only wanted the parameter gradients).
    const tensor<float>& backward_from_layer(const tensor<float>& dy, const context& ctx, std::size_t first) {
        check_kept();
        grad_input_ = &dy;
        return backward_from<size - 1>(dy, ctx, false, first);
    }
    /// Whether the sequence ends in a convolution that can fold the batch norm after it (and with
    /// it a residual block's add and ReLU: forward_residual).
    static constexpr bool folds_residual() {
        if constexpr (size >= 2)
            return foldable<size - 2>();
        else
            return false;
    }

    /// Evaluation with FP32 storage, for a residual block's branch: relu(this(x) + s) into `out`, the
    /// last batch norm, the add of the shortcut s and the ReLU in the last convolution's epilogue
    /// (the same values as the branch, add_relu_forward after it; the residual's caller checks the
    /// conditions: mode, storage, context::fuse).
    const tensor<float>& forward_residual(const tensor<float>& x, const context& ctx, const tensor<float>& s,
                                          tensor<float>& out) {
        static_assert(folds_residual(),
                      "tricks::sequential::forward_residual: the sequence must end in conv, batch_norm");
        start(x, ctx);
        const tensor<float>& h = forward_from<0, size - 2>(x, ctx);
        using last_conv = layer_t<size - 2>;
        const dims d = last_conv::out_dims({h.shape().h, h.shape().w});
        const shape4 expect{h.shape().n, d.h, d.w, last_conv::out_channels};
        require<shape_error>(s.shape() == expect, "tricks::residual: branch output ", expect, " and shortcut output ",
                             s.shape(), " differ");
        auto epi = std::get<size - 1>(layers).eval_affine();  // a backend::host::conv_epilogue
        epi.residual = s.data();
        const tensor<float>& y = std::get<size - 2>(layers).forward_affine(h, ctx, epi, true, out);
        if (lent_ && &h != input_) ctx.done_with(h);
        return y;
    }

    static constexpr bool is_composite = true;  // nn::Composite
    /// Calls f(layer) for each layer inside, left to right: the one walk over the children that
    /// parameters, buffers, nn::visit_leaves and the inference pool go through.
    template <class F>
    void for_each_child(F&& f) {
        std::apply([&](auto&... l) { (f(l), ...); }, layers);
    }
    template <class F>
    void for_each_parameter(F&& f) {
        for_each_child([&](auto& l) { l.for_each_parameter(f); });
    }
    template <class F>
    void for_each_buffer(F&& f) {
        for_each_child([&](auto& l) { l.for_each_buffer(f); });
    }
    template <std::size_t I>
    auto& get() noexcept {
        return std::get<I>(layers);
    }

private:
    /// Each layer draws from its own stream (fork by position), so adding a layer does not shift
    /// the initial weights of the layers before it.
    template <class L>
    static int init_one(L& l, rng sub, const init_options& o) {
        l.init(sub, o);
        return 0;
    }
    template <std::size_t I>
    using layer_t = std::tuple_element_t<I, layer_types>;
    /// Whether layers I and I + 1 (both before End) can run as one (batch_norm, relu).
    template <std::size_t I, std::size_t End = size>
    static constexpr bool fusable() {
        if constexpr (I + 1 < End)
            return fuses_with_next<layer_t<I>, layer_t<I + 1>>;
        else
            return false;
    }
    /// Whether layer I can fold layer I + 1 (conv + batch_norm) in evaluation mode, and whether a
    /// fusable activation follows them (all before End).
    template <std::size_t I, std::size_t End = size>
    static constexpr bool foldable() {
        if constexpr (I + 1 < End)
            return folds_next_in_eval<layer_t<I>, layer_t<I + 1>>;
        else
            return false;
    }
    template <std::size_t I, std::size_t End = size>
    static constexpr bool activation_after_fold() {
        if constexpr (I + 2 < End)
            return fusable_activation<layer_t<I + 2>>;
        else
            return false;
    }
    /// Layers [I, End) on x.
    template <std::size_t I, std::size_t End = size>
    const tensor<float>& forward_from(const tensor<float>& x, const context& ctx) {
        if constexpr (I == End) {
            return x;
        } else if constexpr (foldable<I, End>()) {
            // Evaluation with FP32 storage: the batch norm (and a ReLU after it) run inside the
            // convolution's epilogue; same values as layer by layer. Otherwise layer by layer.
            if (ctx.folds_into_convolutions()) {
                auto& conv = std::get<I>(layers);
                auto& bn = std::get<I + 1>(layers);
                if constexpr (activation_after_fold<I, End>())
                    return next<I + 3, End>(
                        x, conv.forward_affine(x, ctx, bn.eval_affine(), true, std::get<I + 2>(layers).output()), ctx);
                else
                    return next<I + 2, End>(x, conv.forward_affine(x, ctx, bn.eval_affine(), false, bn.output()), ctx);
            }
            return next<I + 1, End>(x, std::get<I>(layers).forward(x, ctx), ctx);
        } else if constexpr (fusable<I, End>()) {
            if (fused_)
                return next<I + 2, End>(x, std::get<I>(layers).forward_relu(x, ctx, std::get<I + 1>(layers).output()),
                                        ctx);
            return next<I + 1, End>(x, std::get<I>(layers).forward(x, ctx), ctx);
        } else {
            return next<I + 1, End>(x, std::get<I>(layers).forward(x, ctx), ctx);
        }
    }
    /// Continues at layer Next on y, the output of the layers that read x; when the forward lends
    /// (context::lends), x goes back to the arena unless it is this sequence's input (the caller's)
    /// or y itself (an identity passed it on).
    template <std::size_t Next, std::size_t End>
    const tensor<float>& next(const tensor<float>& x, const tensor<float>& y, const context& ctx) {
        if (lent_ && &x != input_ && &x != &y) ctx.done_with(x);
        return forward_from<Next, End>(y, ctx);
    }
    void start(const tensor<float>& x, const context& ctx) {
        fused_ = ctx.fuse;
        lent_ = ctx.lends();
        input_ = &x;
    }
    /// The backward pass has read dy for the last time (d is what the layers made of it): back to
    /// the arena (context::gradient) unless it is the caller's gradient or d itself.
    void read(const tensor<float>& dy, const tensor<float>& d, const context& ctx) const {
        if (&dy != grad_input_ && &dy != &d) ctx.done_with_gradient(dy);
    }
    void check_kept() const {
        require<error>(!lent_,
                       "tricks::sequential: backward after a forward that lent its activations to context::arena "
                       "(evaluation only; run the forward without an arena)");
    }

    template <std::size_t I>
    const tensor<float>& backward_from(const tensor<float>& dy, const context& ctx, bool need_dx, std::size_t first) {
        if (I < first) return dy;
        if constexpr (I >= 1) {
            if constexpr (fusable<I - 1>()) {
                if (fused_) {  // layers I - 1 and I ran as one: one backward for both
                    const tensor<float>& d =
                        std::get<I - 1>(layers).backward_relu(dy, std::get<I>(layers).output(), ctx);
                    read(dy, d, ctx);
                    if constexpr (I == 1)
                        return d;
                    else
                        return backward_from<I - 2>(d, ctx, need_dx, first);
                }
            }
        }
        const tensor<float>& d = std::get<I>(layers).backward(dy, ctx, I == 0 ? need_dx : I > first);
        read(dy, d, ctx);
        if constexpr (I == 0)
            return d;
        else
            return backward_from<I - 1>(d, ctx, need_dx, first);
    }

    bool fused_ = true;                     // how the last forward ran (its backward runs the same way)
    bool lent_ = false;                     // whether the last forward gave its inner outputs back to context::arena
    const tensor<float>* input_ = nullptr;  // the last forward's input (the caller's: never given back)
    const tensor<float>* grad_input_ = nullptr;  // the last backward's dy (the caller's: never given back)
};

template <class L, int N>
struct repeat {
    static_assert(N >= 1, "tricks::repeat: count must be at least 1");
    static_assert(L::in_channels == L::out_channels, "tricks::repeat: a repeated layer must keep its channel count");
    static constexpr int in_channels = L::in_channels, out_channels = L::out_channels;
    static constexpr std::int64_t parameter_count = L::parameter_count * N;
    static constexpr dims out_dims(dims d) noexcept {
        for (int i = 0; i < N; ++i) d = L::out_dims(d);
        return d;
    }
    static constexpr std::int64_t macs(dims d) noexcept {
        std::int64_t m = 0;
        for (int i = 0; i < N; ++i) {
            m += L::macs(d);
            d = L::out_dims(d);
        }
        return m;
    }
    static std::string describe() { return std::to_string(N) + "x" + L::describe(); }

    std::array<L, N> items;

    void init(rng& r, const init_options& o) {
        for (int i = 0; i < N; ++i) {
            rng sub = r.fork(static_cast<std::uint64_t>(i));
            items[i].init(sub, o);
        }
    }
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        const tensor<float>* cur = &x;
        for (auto& l : items) {
            const tensor<float>& y = l.forward(*cur, ctx);
            if (cur != &x && cur != &y) ctx.done_with(*cur);  // an inner output, read for the last time
            cur = &y;
        }
        return *cur;
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool need_dx) {
        const tensor<float>* cur = &dy;
        for (int i = N - 1; i >= 0; --i) {
            const tensor<float>& d = items[i].backward(*cur, ctx, i == 0 ? need_dx : true);
            if (cur != &dy && cur != &d) ctx.done_with_gradient(*cur);  // an inner gradient, read once
            cur = &d;
        }
        return *cur;
    }
    static constexpr bool is_composite = true;  // nn::Composite
    /// Calls f(copy) for each of the N copies in turn (see sequential::for_each_child).
    template <class F>
    void for_each_child(F&& f) {
        for (auto& l : items) f(l);
    }
    template <class F>
    void for_each_parameter(F&& f) {
        for_each_child([&](auto& l) { l.for_each_parameter(f); });
    }
    template <class F>
    void for_each_buffer(F&& f) {
        for_each_child([&](auto& l) { l.for_each_buffer(f); });
    }
};

}  // namespace tricks::nn
