#pragma once
// residual<Branch, Shortcut>: y = relu(Branch(x) + Shortcut(x)), the ResNet block (paper Fig. 1).
// Under zero_gamma (paper §3.1) the last BN of Branch starts with gamma = 0, so the block starts
// as relu(Shortcut(x)): the identity for a non-downsampling block on non-negative inputs.
#include <string>

#include "tricks/backend/cpu/elementwise.hpp"
#include "tricks/nn/batch_norm.hpp"
#include "tricks/nn/sequential.hpp"

namespace tricks::nn {

namespace detail {
template <class T>
struct is_batch_norm : std::false_type {};
template <int C>
struct is_batch_norm<batch_norm<C>> : std::true_type {};
}  // namespace detail

template <class Branch, class Shortcut>
struct residual {
    static_assert(Branch::in_channels == Shortcut::in_channels && Branch::out_channels == Shortcut::out_channels,
                  "tricks::residual: branch and shortcut must map the same input channels to the same output channels");
    using last_of_branch = std::tuple_element_t<Branch::size - 1, typename Branch::layer_types>;
    static_assert(detail::is_batch_norm<last_of_branch>::value,
                  "tricks::residual: the branch must end with batch_norm (zero_gamma acts on it)");
    static constexpr int in_channels = Branch::in_channels, out_channels = Branch::out_channels;
    static constexpr std::int64_t parameter_count = Branch::parameter_count + Shortcut::parameter_count;
    static constexpr dims out_dims(dims d) noexcept { return Branch::out_dims(d); }
    static constexpr std::int64_t macs(dims d) noexcept { return Branch::macs(d) + Shortcut::macs(d); }
    static std::string describe() { return "res{" + Branch::describe() + "|" + Shortcut::describe() + "}"; }

    Branch branch;
    Shortcut shortcut;

    void init(rng& r, const init_options& o) {
        rng b = r.fork(0), s = r.fork(1);
        branch.init(b, o);
        shortcut.init(s, o);
        if (o.zero_gamma) branch.template get<Branch::size - 1>().zero_init();
    }
    const tensor<float>& forward(const tensor<float>& x, const context& ctx) {
        if constexpr (Branch::folds_residual()) {
            // Evaluation with FP32 storage: the add and the ReLU run in the branch's last convolution
            // (its epilogue reads the shortcut), the same values as below without the pass over y.
            if (ctx.folds_into_convolutions()) {
                const tensor<float>& s = shortcut.forward(x, ctx);
                const tensor<float>& y = branch.forward_residual(x, ctx, s, y_);
                if (&s != &x) ctx.done_with(s);  // a projection's output (an identity shortcut is x)
                return y;
            }
        }
        const tensor<float>& a = branch.forward(x, ctx);
        const tensor<float>& s = shortcut.forward(x, ctx);
        require<shape_error>(a.shape() == s.shape(), "tricks::residual: branch output ", a.shape(),
                             " and shortcut output ", s.shape(), " differ");
        ctx.output(y_, a.shape());
        backend::host::add_relu_forward(y_.size(), a.data(), s.data(), y_.data());
        ctx.round(y_);
        if (&a != &x) ctx.done_with(a);
        if (&s != &x) ctx.done_with(s);
        return y_;
    }
    const tensor<float>& backward(const tensor<float>& dy, const context& ctx, bool need_dx) {
        ctx.gradient(ds_, y_.shape());
        backend::host::relu_backward(y_.size(), y_.data(), dy.data(), ds_.data());
        const tensor<float>& db = branch.backward(ds_, ctx, true);
        const tensor<float>& dsc = shortcut.backward(ds_, ctx, true);
        ctx.gradient(dx_, db.shape());
        backend::host::add(dx_.size(), db.data(), dsc.data(), dx_.data());
        ctx.round(dx_);
        if (&db != &ds_) ctx.done_with_gradient(db);
        if (&dsc != &ds_) ctx.done_with_gradient(dsc);  // an identity shortcut passed ds_ on
        ctx.done_with_gradient(ds_);
        (void)need_dx;
        return dx_;
    }
    static constexpr bool is_composite = true;  // nn::Composite
    /// Calls f(branch) then f(shortcut) (see sequential::for_each_child).
    template <class F>
    void for_each_child(F&& f) {
        f(branch);
        f(shortcut);
    }
    template <class F>
    void for_each_parameter(F&& f) {
        for_each_child([&](auto& l) { l.for_each_parameter(f); });
    }
    template <class F>
    void for_each_buffer(F&& f) {
        for_each_child([&](auto& l) { l.for_each_buffer(f); });
    }

private:
    tensor<float> y_, ds_, dx_;
};

}  // namespace tricks::nn
