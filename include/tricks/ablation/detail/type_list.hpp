#pragma once
// A plain list of types: what the ablation layer hands around. Users never name it.
#include <cstddef>

namespace tricks::ablation::detail {

template <class... Ts>
struct type_list {
    static constexpr std::size_t size = sizeof...(Ts);
};

/// The first N types of a type_list.
template <class List, std::size_t N, class Taken = type_list<>>
struct take;
template <class... Ts, class... Taken>
struct take<type_list<Ts...>, 0, type_list<Taken...>> {
    using type = type_list<Taken...>;
};
template <class T, class... Ts, std::size_t N, class... Taken>
requires(N > 0) struct take<type_list<T, Ts...>, N, type_list<Taken...>> {
    using type = typename take<type_list<Ts...>, N - 1, type_list<Taken..., T>>::type;
};

/// The I-th type of a type_list (I < size).
template <class List, std::size_t I>
struct at;
template <class T, class... Ts>
struct at<type_list<T, Ts...>, 0> {
    using type = T;
};
template <class T, class... Ts, std::size_t I>
requires(I > 0) struct at<type_list<T, Ts...>, I> {
    using type = typename at<type_list<Ts...>, I - 1>::type;
};

}  // namespace tricks::ablation::detail
