#pragma once
// tricks::ablation::rows<config<Model, Recipe>...>: a hand-picked list of configurations, in the
// order given (the paper's cumulative tables are rows: each line adds one trick to the line above).
// Also what grid<...> and rows<...> have in common: size_v, at_t, first_t, for_each, names.
//
//   using table6 = rows<config<net_d, efficient>, config<net_d, efficient_cosine>, ...>;
//   static_assert(size_v<table6> == 6);
//   for_each<table6>([&]<class Net, class Recipe>() { trainer<Net, Recipe>{opt}.fit(train, test); });
//
// Every list is checked when it is used: each entry is a config, each config is valid (see
// config.hpp), no configuration is listed twice, and no two configurations train the same network
// with the same recipe under different spellings.
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tricks/ablation/config.hpp"
#include "tricks/ablation/detail/type_list.hpp"
#include "tricks/models/network.hpp"
#include "tricks/train/recipe.hpp"

namespace tricks::ablation {

template <class... Configs>
struct rows;

namespace detail {

template <class T>
struct is_config : std::false_type {};
template <class M, class R>
struct is_config<config<M, R>> : std::true_type {};

// ---- semantic identity: two spellings of the same experiment -------------------------------------

/// A tricks model derives from models::network<Body, InChannels, Classes, ZeroGamma>, whose Body is
/// the sequence of layer types; two model types with the same base build the same network (e.g.
/// cifar_resnet<20, deep_stem, avg_down> and cifar_resnet<20, avg_down, deep_stem>).
template <class B, int I, int C, bool Z>
models::network<B, I, C, Z> network_base(const models::network<B, I, C, Z>*);

template <class M>
struct network_of {
    using type = M;
};
template <class M>
requires requires { network_base(static_cast<const M*>(nullptr)); }
struct network_of<M> {
    using type = decltype(network_base(static_cast<const M*>(nullptr)));
};

template <class A, class B>
inline constexpr bool same_network = std::is_same_v<typename network_of<A>::type, typename network_of<B>::type>;

template <class R>
struct is_tricks_recipe : std::false_type {};
template <class... Ps>
struct is_tricks_recipe<recipe<Ps...>> : std::true_type {};

/// A policy as it acts: sgd's options reduced to whether it is Nesterov, a distillation's teacher
/// by the network it builds. The defaults a recipe takes when nothing is said (plain SGD, FP32) act
/// as if absent.
template <class P>
struct canonical_policy {
    using type = P;
};
template <class... O>
struct canonical_policy<optim::sgd<O...>> {
    using type = std::conditional_t<optim::sgd<O...>::is_nesterov, optim::sgd<optim::nesterov>, optim::sgd<>>;
};
template <class T>
struct canonical_policy<loss::distill<T>> {
    using type = loss::distill<typename network_of<T>::type>;
};
template <class P>
using canonical_policy_t = typename canonical_policy<P>::type;
template <class P>
inline constexpr bool is_default_policy =
    std::is_same_v<canonical_policy_t<P>, optim::sgd<>> || std::is_same_v<P, precision::fp32>;

/// P (canonical) is among Qs (canonical), or is a default that needs not be.
template <class P, class... Qs>
inline constexpr bool policy_in = is_default_policy<P> ||
                                  (std::is_same_v<canonical_policy_t<P>, canonical_policy_t<Qs>> || ...);

template <class... As, class... Bs>
constexpr bool same_policy_set(const recipe<As...>*, const recipe<Bs...>*) {
    return (policy_in<As, Bs...> && ...) && (policy_in<Bs, As...> && ...);
}

/// Two recipes train identically when they hold the same set of policies (compared as types, so a
/// new trick needs no edit here), up to order, the defaults said out loud, and the spelling of a
/// teacher's network.
template <class R1, class R2>
constexpr bool same_recipe() {
    if constexpr (std::is_same_v<R1, R2>) {
        return true;
    } else if constexpr (is_tricks_recipe<R1>::value && is_tricks_recipe<R2>::value) {
        return same_policy_set(static_cast<const R1*>(nullptr), static_cast<const R2*>(nullptr));
    } else {
        return false;
    }
}

template <class C1, class C2>
constexpr bool equivalent() {
    if constexpr (is_config<C1>::value && is_config<C2>::value)
        return same_network<typename C1::model, typename C2::model> &&
               same_recipe<typename C1::recipe, typename C2::recipe>();
    else
        return false;
}

// ---- the checks every list runs ----------------------------------------------------------------

/// Completes config<M, R> (so its own static_asserts run); true for anything else.
template <class C>
constexpr bool complete() {
    if constexpr (is_config<C>::value) return sizeof(C) > 0;
    return true;
}

/// How often C occurs in Cs... (by type, and by meaning).
template <class C, class... Cs>
constexpr std::size_t count_same = (std::size_t{std::is_same_v<C, Cs>} + ... + 0);
template <class C, class... Cs>
constexpr std::size_t count_equivalent = ((equivalent<C, Cs>() ? std::size_t{1} : std::size_t{0}) + ... + 0);

enum class origin { rows, grid };

template <origin O, class... Cs>
struct checked_list {
    static_assert((is_config<Cs>::value && ...),
                  "tricks::ablation::rows: every row must be a tricks::ablation::config<Model, Recipe>");
    static_assert((complete<Cs>() && ...));  // runs each config's checks; never fails by itself

    // count_same<C, Cs...> counts C itself once; anything above that is a repeat.
    static constexpr bool all_distinct = ((count_same<Cs, Cs...> == 1) && ...);
    static constexpr bool all_different = ((count_equivalent<Cs, Cs...> <= 1) && ...);

    static_assert(O != origin::rows || all_distinct,
                  "tricks::ablation: configuration listed twice: the same configuration appears twice in "
                  "tricks::ablation::rows");
    static_assert(O != origin::grid || all_distinct,
                  "tricks::ablation: configuration listed twice: an axis of tricks::ablation::grid lists the same "
                  "model or recipe twice");
    static_assert(!all_distinct || all_different,
                  "tricks::ablation: two configurations train the same network with the same recipe: the same options "
                  "or policies in another order, or tweak::stride_on_3x3 on a cifar_resnet (its basic blocks have no "
                  "strided 1x1 conv, so the tweak changes nothing); list each configuration once");

    static constexpr bool is_ablation_list = true;
    using configs = type_list<Cs...>;
    static constexpr std::size_t size = sizeof...(Cs);
};

template <class List>
struct as_rows;
template <class... Cs>
struct as_rows<type_list<Cs...>> {
    using type = rows<Cs...>;
};

template <class G>
concept ablation_list = requires {
    requires G::is_ablation_list;
    typename G::configs;
};

template <class F, class... Cs>
constexpr void visit(type_list<Cs...>, F& f) {
    (f.template operator()<typename Cs::model, typename Cs::recipe>(), ...);
}

}  // namespace detail

/// Hand-picked configurations, in order.
template <class... Configs>
struct rows : detail::checked_list<detail::origin::rows, Configs...> {};

/// The number of configurations of a grid or rows.
template <detail::ablation_list G>
inline constexpr std::size_t size_v = G::size;

/// The I-th configuration (a config<Model, Recipe>) of a grid or rows.
template <detail::ablation_list G, std::size_t I>
requires(I < G::size) using at_t = typename detail::at<typename G::configs, I>::type;

/// The first N configurations of a grid or rows, as rows (e.g. to build part of a study).
template <detail::ablation_list G, std::size_t N>
requires(N <=
         G::size) using first_t = typename detail::as_rows<typename detail::take<typename G::configs, N>::type>::type;

/// Calls f.template operator()<Model, Recipe>() once per configuration, in order; a generic lambda
/// [&]<class Net, class Recipe>() { ... } is one. Each call is one typed instantiation.
template <class G, class F>
constexpr void for_each(F&& f) {
    static_assert(detail::ablation_list<G>,
                  "tricks::ablation::for_each: the template argument must be a tricks::ablation::grid<...> or "
                  "tricks::ablation::rows<...>");
    if constexpr (detail::ablation_list<G>) detail::visit(typename G::configs{}, f);
}

/// The configurations' names (config_name<Model, Recipe>()), in order.
template <class G>
std::vector<std::string> names() {
    std::vector<std::string> out;
    out.reserve(size_v<G>);
    for_each<G>([&]<class M, class R>() { out.push_back(config_name<M, R>()); });
    return out;
}

}  // namespace tricks::ablation
