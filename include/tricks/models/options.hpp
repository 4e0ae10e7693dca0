#pragma once
// Model options: the paper's tweaks (§4.2, "ResNet Tweaks") as empty tag types, and the few
// numbers a model type needs at compile time (classes, input channels, width). Parsing checks that
// every option is known and given at most once, and says so in words.
#include <concepts>
#include <string>
#include <type_traits>
#include <vector>

#include "tricks/core/kinds.hpp"

namespace tricks {

/// The kinds of model option. A model takes at most one option of each kind; an option type says its
/// kind by deriving from model_option<Kind> (see core/kinds.hpp). A new tweak is a new tag here.
namespace option_kind {
struct any {};  // the family: every kind below derives from it
struct stride_on_3x3 : any {};
struct deep_stem : any {};
struct avg_down : any {};
struct zero_gamma : any {};
struct classes : any {};
struct in_channels : any {};
struct width : any {};
}  // namespace option_kind

/// The base of every model option type: its kind.
template <class Kind>
requires std::derived_from<Kind, option_kind::any>
struct model_option {
    using kind = Kind;
};

namespace tweak {
/// ResNet-B (paper §4.2, Fig. 2a): in the bottleneck's path A, the stride moves from the first 1x1
/// conv to the 3x3 conv, so no activations are skipped by a strided 1x1.
struct stride_on_3x3 : model_option<option_kind::stride_on_3x3> {};
/// ResNet-C (paper §4.2, Fig. 2b): the 7x7 stem conv becomes three 3x3 convs (32, 32, 64 wide).
struct deep_stem : model_option<option_kind::deep_stem> {};
/// ResNet-D (paper §4.2, Fig. 2c): a downsampling shortcut is a 2x2 stride-2 average pool then a
/// stride-1 1x1 conv, so the shortcut no longer ignores 3/4 of its input.
struct avg_down : model_option<option_kind::avg_down> {};
}  // namespace tweak

namespace init {
/// Zero-gamma (paper §3.1): the last BN of every residual branch starts with gamma = 0.
struct zero_gamma : model_option<option_kind::zero_gamma> {};
}  // namespace init

template <int N>
struct classes : model_option<option_kind::classes> {
    static_assert(N > 0, "tricks::classes: need at least one class");
    static constexpr int value = N;
};
template <int C>
struct in_channels : model_option<option_kind::in_channels> {
    static_assert(C > 0, "tricks::in_channels: need at least one input channel");
    static constexpr int value = C;
};
template <int W>
struct width : model_option<option_kind::width> {
    static_assert(W > 0 && W % 2 == 0,
                  "tricks::width: the width must be a positive even number (the deep stem uses W/2)");
    static constexpr int value = W;
};

namespace models::detail {

/// O is a model option: it derives from model_option<Kind> with one of option_kind's kinds.
template <class O>
concept known_option = tricks::detail::kind_in_family<O, option_kind::any>;

/// The number an option carries (classes<N>, in_channels<C>, width<W>), 0 for a tag.
template <class O>
constexpr int option_value() noexcept {
    if constexpr (requires { O::value; })
        return O::value;
    else
        return 0;
}

/// The number of the option of kind K among Os, or Default.
template <class K, int Default, class... Os>
constexpr int value_of() noexcept {
    int v = Default;
    ((std::is_same_v<tricks::detail::kind_of_t<Os>, K> ? void(v = option_value<Os>()) : void()), ...);
    return v;
}

/// A model's name from its parts: "resnet50-D" + "zero_gamma" -> "resnet50-D+zero_gamma".
inline std::string join_parts(const std::vector<std::string>& parts) {
    std::string s;
    for (const auto& p : parts) s += (s.empty() ? "" : "+") + p;
    return s;
}

/// The parsed options of a model; instantiating it checks them.
template <class... Os>
struct parsed {
    static constexpr bool all_known = (known_option<Os> && ...);
    static constexpr bool no_duplicates = tricks::detail::at_most_one_of_each_kind<Os...>;
    static_assert(all_known,
                  "tricks::models: unknown option type; valid options are tweak::stride_on_3x3, tweak::deep_stem, "
                  "tweak::avg_down, init::zero_gamma, classes<N>, in_channels<C> and (cifar_resnet) width<W>");
    static_assert(no_duplicates, "tricks::models: the same option is given twice");
    static constexpr bool b = tricks::detail::count_of_kind<option_kind::stride_on_3x3, Os...> > 0;
    static constexpr bool c = tricks::detail::count_of_kind<option_kind::deep_stem, Os...> > 0;
    static constexpr bool d = tricks::detail::count_of_kind<option_kind::avg_down, Os...> > 0;
    static constexpr bool zero_gamma = tricks::detail::count_of_kind<option_kind::zero_gamma, Os...> > 0;
    static constexpr int classes = value_of<option_kind::classes, 1000, Os...>();
    static constexpr int in_channels = value_of<option_kind::in_channels, 3, Os...>();
    template <int Default>
    static constexpr int width = value_of<option_kind::width, Default, Os...>();
    static constexpr bool has_width = tricks::detail::count_of_kind<option_kind::width, Os...> > 0;
};

}  // namespace models::detail
}  // namespace tricks
