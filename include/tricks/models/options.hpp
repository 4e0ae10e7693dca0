#pragma once
// Model options: the paper's tweaks (§4.2, "ResNet Tweaks") as empty tag types, and the few
// numbers a model type needs at compile time (classes, input channels, width). Parsing checks that
// every option is known and given at most once, and says so in words.
#include <type_traits>

namespace tricks {

namespace tweak {
/// ResNet-B (paper §4.2, Fig. 2a): in the bottleneck's path A, the stride moves from the first 1x1
/// conv to the 3x3 conv, so no activations are skipped by a strided 1x1.
struct stride_on_3x3 {};
/// ResNet-C (paper §4.2, Fig. 2b): the 7x7 stem conv becomes three 3x3 convs (32, 32, 64 wide).
struct deep_stem {};
/// ResNet-D (paper §4.2, Fig. 2c): a downsampling shortcut is a 2x2 stride-2 average pool then a
/// stride-1 1x1 conv, so the shortcut no longer ignores 3/4 of its input.
struct avg_down {};
}  // namespace tweak

namespace init {
/// Zero-gamma (paper §3.1): the last BN of every residual branch starts with gamma = 0.
struct zero_gamma {};
}  // namespace init

template <int N>
struct classes {
    static_assert(N > 0, "tricks::classes: need at least one class");
    static constexpr int value = N;
};
template <int C>
struct in_channels {
    static_assert(C > 0, "tricks::in_channels: need at least one input channel");
    static constexpr int value = C;
};
template <int W>
struct width {
    static_assert(W > 0 && W % 2 == 0, "tricks::width: the width must be a positive even number (the deep stem uses W/2)");
    static constexpr int value = W;
};

namespace models::detail {

enum class option_kind { unknown, stride_on_3x3, deep_stem, avg_down, zero_gamma, classes, in_channels, width };

template <class T>
struct kind_of : std::integral_constant<option_kind, option_kind::unknown> {};
template <>
struct kind_of<tweak::stride_on_3x3> : std::integral_constant<option_kind, option_kind::stride_on_3x3> {};
template <>
struct kind_of<tweak::deep_stem> : std::integral_constant<option_kind, option_kind::deep_stem> {};
template <>
struct kind_of<tweak::avg_down> : std::integral_constant<option_kind, option_kind::avg_down> {};
template <>
struct kind_of<init::zero_gamma> : std::integral_constant<option_kind, option_kind::zero_gamma> {};
template <int N>
struct kind_of<classes<N>> : std::integral_constant<option_kind, option_kind::classes> {};
template <int C>
struct kind_of<in_channels<C>> : std::integral_constant<option_kind, option_kind::in_channels> {};
template <int W>
struct kind_of<width<W>> : std::integral_constant<option_kind, option_kind::width> {};

template <option_kind K, class... Os>
constexpr int count_kind = ((kind_of<Os>::value == K ? 1 : 0) + ... + 0);

template <class T>
struct option_value : std::integral_constant<int, 0> {};
template <int N>
struct option_value<classes<N>> : std::integral_constant<int, N> {};
template <int C>
struct option_value<in_channels<C>> : std::integral_constant<int, C> {};
template <int W>
struct option_value<width<W>> : std::integral_constant<int, W> {};

template <option_kind K, int Default, class... Os>
constexpr int value_of() noexcept {
    int v = Default;
    ((kind_of<Os>::value == K ? void(v = option_value<Os>::value) : void()), ...);
    return v;
}

/// The parsed options of a model; instantiating it checks them.
template <class... Os>
struct parsed {
    static constexpr bool all_known = ((kind_of<Os>::value != option_kind::unknown) && ...);
    static constexpr bool no_duplicates =
        ((count_kind<kind_of<Os>::value, Os...> == 1) && ...);
    static_assert(all_known,
                  "tricks::models: unknown option type; valid options are tweak::stride_on_3x3, tweak::deep_stem, "
                  "tweak::avg_down, init::zero_gamma, classes<N>, in_channels<C> and (cifar_resnet) width<W>");
    static_assert(no_duplicates, "tricks::models: the same option is given twice");
    static constexpr bool b = count_kind<option_kind::stride_on_3x3, Os...> > 0;
    static constexpr bool c = count_kind<option_kind::deep_stem, Os...> > 0;
    static constexpr bool d = count_kind<option_kind::avg_down, Os...> > 0;
    static constexpr bool zero_gamma = count_kind<option_kind::zero_gamma, Os...> > 0;
    static constexpr int classes = value_of<option_kind::classes, 1000, Os...>();
    static constexpr int in_channels = value_of<option_kind::in_channels, 3, Os...>();
    template <int Default>
    static constexpr int width = value_of<option_kind::width, Default, Os...>();
    static constexpr bool has_width = count_kind<option_kind::width, Os...> > 0;
};

}  // namespace models::detail
}  // namespace tricks
