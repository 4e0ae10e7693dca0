#pragma once
// tricks::models::resnet<Depth, Options...>: the ImageNet ResNets of He et al. (2016) with the
// tweaks of He et al. (2019) §4 as options. Depth 18/34 use basic blocks, 50/101/152 bottlenecks.
//
//   using net = resnet<50, tweak::stride_on_3x3, tweak::deep_stem, tweak::avg_down>;  // ResNet-50-D
//   static_assert(parameter_count_v<net> == 25'576'264);  // = timm's resnet50d
#include <string>
#include <utility>
#include <vector>

#include "tricks/models/blocks.hpp"
#include "tricks/models/network.hpp"
#include "tricks/models/options.hpp"
#include "tricks/nn/linear.hpp"

namespace tricks::models {

namespace detail {

template <int Depth>
struct resnet_layout {
    static_assert(Depth == 18 || Depth == 34 || Depth == 50 || Depth == 101 || Depth == 152,
                  "tricks::models::resnet: unsupported depth; valid depths are 18, 34, 50, 101 and 152");
    static constexpr bool bottleneck = Depth >= 50;
    static constexpr int n1 = Depth == 18 ? 2 : 3;
    static constexpr int n2 = Depth == 18 ? 2 : Depth == 152 ? 8 : 4;
    static constexpr int n3 = Depth == 18 ? 2 : Depth == 101 ? 23 : Depth == 152 ? 36 : 6;
    static constexpr int n4 = Depth == 18 ? 2 : 3;
};

/// Stem: ResNet-A/B 7x7/2 conv (64) + BN + ReLU; ResNet-C three 3x3 convs (32, 32, 64, the first
/// with stride 2). Both end with a 3x3 stride-2 max-pool.
template <int Cin, bool Deep>
struct imagenet_stem {
    using type =
        nn::sequential<nn::conv<Cin, 64, 7, 2, 3>, nn::batch_norm<64>, nn::relu<64>, nn::max_pool<64, 3, 2, 1>>;
};
template <int Cin>
struct imagenet_stem<Cin, true> {
    using type = nn::sequential<conv_bn_relu<Cin, 32, 3, 2>, conv_bn_relu<32, 32, 3, 1>, conv_bn_relu<32, 64, 3, 1>,
                                nn::max_pool<64, 3, 2, 1>>;
};

template <int Depth, class P, bool Bottleneck = resnet_layout<Depth>::bottleneck>
struct resnet_body {
    using L = resnet_layout<Depth>;
    using type = nn::sequential<
        typename imagenet_stem<P::in_channels, P::c>::type, bottleneck_stage<64, 64, 1, L::n1, P::b, P::d>,
        bottleneck_stage<256, 128, 2, L::n2, P::b, P::d>, bottleneck_stage<512, 256, 2, L::n3, P::b, P::d>,
        bottleneck_stage<1024, 512, 2, L::n4, P::b, P::d>, nn::global_avg_pool<2048>, nn::linear<2048, P::classes>>;
};
template <int Depth, class P>
struct resnet_body<Depth, P, false> {
    using L = resnet_layout<Depth>;
    using type =
        nn::sequential<typename imagenet_stem<P::in_channels, P::c>::type, basic_stage<64, 64, 1, L::n1, P::d>,
                       basic_stage<64, 128, 2, L::n2, P::d>, basic_stage<128, 256, 2, L::n3, P::d>,
                       basic_stage<256, 512, 2, L::n4, P::d>, nn::global_avg_pool<512>, nn::linear<512, P::classes>>;
};

/// The paper's letter after the depth ("-B", "-C", "-D") when the tweaks are its cumulative ones
/// (Table 5: C includes B, D includes B and C); "" for ResNet-A and for any other combination.
template <class P>
std::string tweak_letter() {
    if (P::b && P::c && P::d) return "-D";
    if (P::b && P::c && !P::d) return "-C";
    if (P::b && !P::c && !P::d) return "-B";
    return "";
}

/// The tweaks no letter names, one word each (a combination outside the paper's A-D).
template <class P>
std::vector<std::string> tweak_words() {
    std::vector<std::string> w;
    if (!tweak_letter<P>().empty()) return w;
    if (P::b) w.emplace_back("stride_on_3x3");
    if (P::c) w.emplace_back("deep_stem");
    if (P::d) w.emplace_back("avg_down");
    return w;
}

}  // namespace detail

template <int Depth, class... Options>
struct resnet : network<typename detail::resnet_body<Depth, detail::parsed<Options...>>::type,
                        detail::parsed<Options...>::in_channels, detail::parsed<Options...>::classes,
                        detail::parsed<Options...>::zero_gamma> {
    static_assert(!detail::parsed<Options...>::has_width,
                  "tricks::models::resnet: width<W> applies to cifar_resnet only (ImageNet ResNets are 64 wide)");
    using options = detail::parsed<Options...>;
    /// The name's words, from the options: {"resnet50-D", "zero_gamma"}, {"resnet18", "avg_down"}.
    static std::vector<std::string> parts() {
        std::vector<std::string> p{"resnet" + std::to_string(Depth) + detail::tweak_letter<options>()};
        for (auto& w : detail::tweak_words<options>()) p.push_back(std::move(w));
        if (options::zero_gamma) p.emplace_back("zero_gamma");
        return p;
    }
    /// "resnet50-D+zero_gamma": the parts joined by '+'.
    static std::string name() { return detail::join_parts(parts()); }
};

using resnet18 = resnet<18>;
using resnet34 = resnet<34>;
using resnet50 = resnet<50>;
using resnet101 = resnet<101>;
using resnet152 = resnet<152>;
// The paper's tweaks are cumulative: C includes B, D includes B and C (Table 5).
using resnet50b = resnet<50, tweak::stride_on_3x3>;
using resnet50c = resnet<50, tweak::stride_on_3x3, tweak::deep_stem>;
using resnet50d = resnet<50, tweak::stride_on_3x3, tweak::deep_stem, tweak::avg_down>;
using resnet101b = resnet<101, tweak::stride_on_3x3>;
using resnet101c = resnet<101, tweak::stride_on_3x3, tweak::deep_stem>;
using resnet101d = resnet<101, tweak::stride_on_3x3, tweak::deep_stem, tweak::avg_down>;
using resnet152b = resnet<152, tweak::stride_on_3x3>;
using resnet152c = resnet<152, tweak::stride_on_3x3, tweak::deep_stem>;
using resnet152d = resnet<152, tweak::stride_on_3x3, tweak::deep_stem, tweak::avg_down>;

}  // namespace tricks::models
