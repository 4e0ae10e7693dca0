#pragma once
// Kinds of policy and option types. A type says its kind itself, by a member `kind` (the tag of
// its category): `struct cosine : policy<policy_kind::schedule> {}` in train/policies.hpp,
// `struct deep_stem : model_option<option_kind::deep_stem> {}` in models/options.hpp. The checks
// over a list of such types (every type has a kind of the right family, at most one of each kind,
// the first of a kind) are the generic templates below: a new policy or option is one type with its
// kind, and the recipe's and the models' checks pick it up without a registry to extend.
#include <concepts>
#include <type_traits>

namespace tricks::detail {

/// The kind of T (its member type `kind`), or void when T declares none.
template <class T>
struct kind_of {
    using type = void;
};
template <class T>
requires requires { typename T::kind; }
struct kind_of<T> {
    using type = typename T::kind;
};
template <class T>
using kind_of_t = typename kind_of<T>::type;

/// T declares a kind, and that kind belongs to the family Family (derives from it).
template <class T, class Family>
concept kind_in_family = std::derived_from<kind_of_t<T>, Family>;

/// How many of Ts are of kind K.
template <class K, class... Ts>
inline constexpr int count_of_kind = ((std::is_same_v<kind_of_t<Ts>, K> ? 1 : 0) + ... + 0);

/// No two of Ts share a kind.
template <class... Ts>
inline constexpr bool at_most_one_of_each_kind = ((count_of_kind<kind_of_t<Ts>, Ts...> == 1) && ...);

/// The first of Ts of kind K, or Default.
template <class K, class Default, class... Ts>
struct first_of_kind {
    using type = Default;
};
template <class K, class Default, class T, class... Ts>
struct first_of_kind<K, Default, T, Ts...> {
    using type =
        std::conditional_t<std::is_same_v<kind_of_t<T>, K>, T, typename first_of_kind<K, Default, Ts...>::type>;
};
template <class K, class Default, class... Ts>
using first_of_kind_t = typename first_of_kind<K, Default, Ts...>::type;

}  // namespace tricks::detail
