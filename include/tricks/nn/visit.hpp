#pragma once
// Walking a model's structure: what kind of layer a type is, and visit_leaves(), which calls a
// function on every leaf layer (conv, batch_norm, relu, pools, linear, identity) in forward order:
// a model as its body, a composite's children as its for_each_child lists them (a sequential's
// layers left to right, a repeat's copies in turn, a residual's branch then its shortcut). Weight
// import/export (io/torch_weights.hpp) and the ONNX exporter (io/onnx.hpp) walk models with it; the
// order is that of for_each_parameter/for_each_buffer.
#include <type_traits>

#include "tricks/nn/batch_norm.hpp"
#include "tricks/nn/conv.hpp"
#include "tricks/nn/linear.hpp"
#include "tricks/nn/pool.hpp"
#include "tricks/nn/relu.hpp"
#include "tricks/nn/residual.hpp"
#include "tricks/nn/sequential.hpp"

namespace tricks::nn {

namespace detail {
template <class T>
struct is_sequential : std::false_type {};
template <class... Ls>
struct is_sequential<sequential<Ls...>> : std::true_type {};
template <class T>
struct is_repeat : std::false_type {};
template <class L, int N>
struct is_repeat<repeat<L, N>> : std::true_type {};
template <class T>
struct is_residual : std::false_type {};
template <class B, class S>
struct is_residual<residual<B, S>> : std::true_type {};
template <class T>
struct is_conv : std::false_type {};
template <int Cin, int Cout, int K, int S, int P>
struct is_conv<conv<Cin, Cout, K, S, P>> : std::true_type {};
template <class T>
struct is_linear : std::false_type {};
template <int In, int Out>
struct is_linear<linear<In, Out>> : std::true_type {};
template <class T>
struct is_max_pool : std::false_type {};
template <int C, int K, int S, int P>
struct is_max_pool<max_pool<C, K, S, P>> : std::true_type {};
template <class T>
struct is_avg_pool : std::false_type {};
template <int C, int K, int S, int P, bool Ceil, bool Count>
struct is_avg_pool<avg_pool<C, K, S, P, Ceil, Count>> : std::true_type {};
template <class T>
struct is_global_avg_pool : std::false_type {};
template <int C>
struct is_global_avg_pool<global_avg_pool<C>> : std::true_type {};
template <class T>
struct is_relu : std::false_type {};
template <int C>
struct is_relu<relu<C>> : std::true_type {};
template <class T>
struct is_identity : std::false_type {};
template <int C>
struct is_identity<identity<C>> : std::true_type {};
}  // namespace detail

// (batch_norm's trait is detail::is_batch_norm, from residual.hpp)
template <class T>
inline constexpr bool is_sequential_v = detail::is_sequential<T>::value;
template <class T>
inline constexpr bool is_repeat_v = detail::is_repeat<T>::value;
template <class T>
inline constexpr bool is_residual_v = detail::is_residual<T>::value;
template <class T>
inline constexpr bool is_conv_v = detail::is_conv<T>::value;
template <class T>
inline constexpr bool is_batch_norm_v = detail::is_batch_norm<T>::value;
template <class T>
inline constexpr bool is_linear_v = detail::is_linear<T>::value;
template <class T>
inline constexpr bool is_max_pool_v = detail::is_max_pool<T>::value;
template <class T>
inline constexpr bool is_avg_pool_v = detail::is_avg_pool<T>::value;
template <class T>
inline constexpr bool is_global_avg_pool_v = detail::is_global_avg_pool<T>::value;
template <class T>
inline constexpr bool is_relu_v = detail::is_relu<T>::value;
template <class T>
inline constexpr bool is_identity_v = detail::is_identity<T>::value;

/// A model type (models::network): a sequential body with model-level members.
template <class T>
concept model_type = requires {
    typename T::body_type;
}
&&std::is_base_of_v<typename T::body_type, T>;

/// A layer with no layers inside it.
template <class T>
inline constexpr bool is_leaf_v = is_conv_v<T> || is_batch_norm_v<T> || is_linear_v<T> || is_max_pool_v<T> ||
                                  is_avg_pool_v<T> || is_global_avg_pool_v<T> || is_relu_v<T> || is_identity_v<T>;

/// Calls f(leaf) for every leaf layer of `l` in forward order (see the top of this file).
template <class L, class F>
void visit_leaves(L& l, F&& f) {
    if constexpr (model_type<L>) {
        visit_leaves(static_cast<typename L::body_type&>(l), f);
    } else if constexpr (Composite<L>) {
        l.for_each_child([&](auto& child) { visit_leaves(child, f); });
    } else {
        static_assert(is_leaf_v<L>,
                      "tricks::nn::visit_leaves: a layer type this visitor does not know; add it to nn/visit.hpp");
        f(l);
    }
}

}  // namespace tricks::nn
