#pragma once
// The cartesian product of type lists, computed with Boost.Hana. This file is the ablation
// layer's only contact with Hana (docs/design.md, "Layers": the metaprogramming library stays in
// one small internal layer): it takes and returns plain detail::type_list types, so no Hana type or
// header leaks into the rest of the library, and a user's error never shows a Hana backtrace.
#include <type_traits>

#include <boost/hana/cartesian_product.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>

#include "tricks/ablation/detail/type_list.hpp"

namespace tricks::ablation::detail {

namespace product_impl {

template <class List>
struct to_hana;
template <class... Ts>
struct to_hana<type_list<Ts...>> {
    static constexpr auto value = boost::hana::tuple_t<Ts...>;
};

/// hana::tuple<hana::type<T>...> -> type_list<T...>
template <class Tuple>
struct from_hana_row;
template <class... Es>
struct from_hana_row<boost::hana::tuple<Es...>> {
    using type = type_list<typename Es::type...>;
};

/// hana::tuple<row...> -> type_list<type_list<...>...>
template <class Tuple>
struct from_hana;
template <class... Rows>
struct from_hana<boost::hana::tuple<Rows...>> {
    using type = type_list<typename from_hana_row<Rows>::type...>;
};

}  // namespace product_impl

/// cartesian_product<type_list<A, B>, type_list<X, Y>>::type
///   = type_list<type_list<A, X>, type_list<A, Y>, type_list<B, X>, type_list<B, Y>>
/// Row-major: the first list varies slowest, as in a table read line by line.
template <class... Lists>
struct cartesian_product {
    using type = typename product_impl::from_hana<std::remove_cvref_t<decltype(boost::hana::cartesian_product(
        boost::hana::make_tuple(product_impl::to_hana<Lists>::value...)))>>::type;
};

}  // namespace tricks::ablation::detail
