#pragma once
// tricks::ablation::grid<axis<Models...>, axis<Recipes...>>: every model with every recipe, as
// config<Model, Recipe> types in row-major order (the first model with each recipe, then the
// second model, ...). The product is computed by detail/product.hpp (Boost.Hana); everything
// else (size_v, at_t, first_t, for_each, names, the checks) is shared with rows<...>.
//
//   using g = grid<axis<resnet50, resnet50b, resnet50c, resnet50d>,
//                  axis<recipe<>, recipe<lr::cosine>, recipe<lr::cosine, loss::label_smoothing>>>;
//   static_assert(size_v<g> == 12);
//   static_assert(std::is_same_v<at_t<g, 1>, config<resnet50, recipe<lr::cosine>>>);
#include <type_traits>

#include "tricks/ablation/config.hpp"
#include "tricks/ablation/detail/product.hpp"
#include "tricks/ablation/detail/type_list.hpp"
#include "tricks/ablation/rows.hpp"

namespace tricks::ablation {

/// One dimension of a grid: the alternatives for one slot of config<Model, Recipe>.
template <class... Ts>
struct axis {
    static_assert(sizeof...(Ts) > 0, "tricks::ablation::axis: an axis needs at least one entry");
    using list = detail::type_list<Ts...>;
};

namespace detail {

template <class T>
struct is_axis : std::false_type {};
template <class... Ts>
struct is_axis<axis<Ts...>> : std::true_type {};

template <class Pair>
struct to_config;
template <class M, class R>
struct to_config<type_list<M, R>> {
    using type = config<M, R>;
};

template <class Product>
struct product_configs;
template <class... Pairs>
struct product_configs<type_list<Pairs...>> {
    using type = checked_list<origin::grid, typename to_config<Pairs>::type...>;
};

template <class... Axes>
struct axes_ok : std::false_type {};
template <class... Ms, class... Rs>
struct axes_ok<axis<Ms...>, axis<Rs...>> : std::bool_constant<(model_type<Ms> && ...) && (recipe_type<Rs> && ...)> {};

template <class... Axes>
struct grid_base {
    using type = checked_list<origin::grid>;  // invalid axes: the static_asserts of grid say why
};
template <class... Ms, class... Rs>
requires(sizeof...(Ms) > 0 && sizeof...(Rs) > 0 &&
         axes_ok<axis<Ms...>, axis<Rs...>>::value) struct grid_base<axis<Ms...>, axis<Rs...>> {
    using type = typename product_configs<typename cartesian_product<type_list<Ms...>, type_list<Rs...>>::type>::type;
};

}  // namespace detail

template <class... Axes>
struct grid : detail::grid_base<Axes...>::type {
    static_assert((detail::is_axis<Axes>::value && ...),
                  "tricks::ablation::grid: every argument must be a tricks::ablation::axis<...>");
    static_assert(sizeof...(Axes) == 2,
                  "tricks::ablation::grid: a grid has two axes, models then recipes: "
                  "grid<axis<Models...>, axis<Recipes...>>");
    static_assert(!(detail::is_axis<Axes>::value && ...) || sizeof...(Axes) != 2 || detail::axes_ok<Axes...>::value,
                  "tricks::ablation::grid: the first axis holds model types (tricks::models::resnet<...>, "
                  "cifar_resnet<...>) and the second recipe types (tricks::recipe<...>): "
                  "grid<axis<Models...>, axis<Recipes...>>");
};

}  // namespace tricks::ablation
