#pragma once
// examples/train's model table: every name --model accepts, mapped to a model type family. One
// table; each name is one typed instantiation per data kind (see run_entry), compiled in one of
// five translation units (train_part0.cpp ... train_part4.cpp) so that a build spreads over the
// cores. Classifier heads are fixed per family: 10 outputs for Fashion-MNIST's IDX files; for image
// folders 10 or 100 (CIFAR-style nets, the smallest that fits) and 1000 (ImageNet ResNets, as
// torchvision's); outputs beyond the data's classes are trained towards 0 (train/loss.hpp).
#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>

#include <tricks/models/cifar_resnet.hpp>
#include <tricks/models/resnet.hpp>

namespace train_example {

namespace t = tricks;

template <std::size_t N>
struct fixed_name {
    char s[N]{};
    constexpr fixed_name(const char (&v)[N]) { std::copy_n(v, N, s); }  // NOLINT: implicit by design
    [[nodiscard]] constexpr std::string_view view() const { return {s, N - 1}; }
};

/// A CIFAR-style ResNet (He et al. 2016, §4.2) with zero-gamma; width, input channels and classes
/// are bound per run.
template <int Depth, class... Tweaks>
struct cifar_family {
    static constexpr bool imagenet = false;
    template <int W, int C, int K>
    using type =
        t::models::cifar_resnet<Depth, t::width<W>, t::in_channels<C>, t::classes<K>, Tweaks..., t::init::zero_gamma>;
};

/// An ImageNet ResNet (He et al. 2016) with the paper's tweaks and zero-gamma.
template <int Depth, class... Tweaks>
struct resnet_family {
    static constexpr bool imagenet = true;
    template <int C, int K>
    using type = t::models::resnet<Depth, t::in_channels<C>, t::classes<K>, Tweaks..., t::init::zero_gamma>;
};

template <fixed_name Name, class Family, int Part>
struct model_entry {
    static constexpr std::string_view name = Name.view();
    using family = Family;
    static constexpr int part = Part;
};

using B = t::tweak::stride_on_3x3;
using C = t::tweak::deep_stem;
using D = t::tweak::avg_down;

/// ResNet-B moves the bottleneck's stride to its 3x3 conv; a basic block's first conv already is
/// the 3x3, so resnet18/34 have no -b (their -c and -d include B's no-op for naming's sake).
using model_table = std::tuple<
    model_entry<"cifar_resnet20", cifar_family<20>, 0>, model_entry<"cifar_resnet20c", cifar_family<20, C>, 0>,
    model_entry<"cifar_resnet20d", cifar_family<20, C, D>, 0>,  // the main job
    model_entry<"cifar_resnet32", cifar_family<32>, 0>, model_entry<"cifar_resnet32d", cifar_family<32, C, D>, 0>,
    model_entry<"cifar_resnet44", cifar_family<44>, 1>, model_entry<"cifar_resnet44d", cifar_family<44, C, D>, 1>,
    model_entry<"cifar_resnet56", cifar_family<56>, 1>, model_entry<"cifar_resnet56d", cifar_family<56, C, D>, 1>,
    model_entry<"resnet18", resnet_family<18>, 2>, model_entry<"resnet18c", resnet_family<18, B, C>, 2>,
    model_entry<"resnet18d", resnet_family<18, B, C, D>, 2>, model_entry<"resnet34", resnet_family<34>, 2>,
    model_entry<"resnet34c", resnet_family<34, B, C>, 2>, model_entry<"resnet34d", resnet_family<34, B, C, D>, 2>,
    model_entry<"resnet50", resnet_family<50>, 3>, model_entry<"resnet50b", resnet_family<50, B>, 3>,
    model_entry<"resnet50c", resnet_family<50, B, C>, 3>, model_entry<"resnet50d", resnet_family<50, B, C, D>, 3>,
    model_entry<"resnet101", resnet_family<101>, 4>, model_entry<"resnet101b", resnet_family<101, B>, 4>,
    model_entry<"resnet101c", resnet_family<101, B, C>, 4>, model_entry<"resnet101d", resnet_family<101, B, C, D>, 4>,
    model_entry<"resnet152", resnet_family<152>, 4>, model_entry<"resnet152b", resnet_family<152, B>, 4>,
    model_entry<"resnet152c", resnet_family<152, B, C>, 4>, model_entry<"resnet152d", resnet_family<152, B, C, D>, 4>>;

inline constexpr int model_parts = 5;

/// Calls f.template operator()<Entry>() for the table entry named `name` in part `Part`; false
/// when the part has no such name.
template <int Part, class F>
bool with_model(std::string_view name, F&& f) {
    return std::apply(
        [&]<class... E>(E...) {
            return ((E::part == Part && E::name == name ? (f.template operator()<E>(), true) : false) || ...);
        },
        model_table{});
}

/// True when `name` is in the table.
inline bool known_model(std::string_view name) {
    return std::apply([&]<class... E>(E...) { return ((E::name == name) || ...); }, model_table{});
}

/// Part of the table holding `name` (-1: none).
inline int model_part(std::string_view name) {
    return std::apply(
        [&]<class... E>(E...) {
            int p = -1;
            ((E::name == name ? (p = E::part, true) : false) || ...);
            return p;
        },
        model_table{});
}

/// The --help list of models.
inline std::string model_help() {
    std::string cifar, imagenet;
    std::apply([&]<class... E>(E...) { ((E::family::imagenet ? imagenet : cifar).append(" ").append(E::name), ...); },
               model_table{});
    return "\nmodels (--model; -b/-c/-d are the paper's ResNet-B/C/D tweaks, all with zero-gamma):\n"
           "  CIFAR-style (IDX data, or image folders at small sizes; --width 16|32):\n   " +
           cifar + "\n  ImageNet ResNets (image folders; 1000-output head):\n   " + imagenet + "\n";
}

}  // namespace train_example
