#pragma once
// tricks::models::cifar_resnet<Depth, Options...>: the small ResNets of He et al. (2016) §4.2 for
// 28x28/32x32 input: depth 6n+2, three stages of n basic blocks with W, 2W, 4W channels.
// Stem: one 3x3 stride-1 conv to W (deep_stem: three 3x3 stride-1 convs to W/2, W/2, W), no
// max-pool. Stages 2 and 3 downsample by 2 with a projection shortcut (avg_down: ResNet-D's).
#include <string>
#include <vector>

#include "tricks/models/blocks.hpp"
#include "tricks/models/network.hpp"
#include "tricks/models/options.hpp"
#include "tricks/nn/linear.hpp"

namespace tricks::models {

namespace detail {

template <int Depth>
struct cifar_layout {
    static_assert(Depth >= 8 && (Depth - 2) % 6 == 0,
                  "tricks::models::cifar_resnet: depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, 110, ...)");
    static constexpr int n = (Depth - 2) / 6;
};

template <int Cin, int W, bool Deep>
struct cifar_stem {
    using type = conv_bn_relu<Cin, W, 3, 1>;
};
template <int Cin, int W>
struct cifar_stem<Cin, W, true> {
    using type =
        nn::sequential<conv_bn_relu<Cin, W / 2, 3, 1>, conv_bn_relu<W / 2, W / 2, 3, 1>, conv_bn_relu<W / 2, W, 3, 1>>;
};

template <int Depth, class P>
struct cifar_body {
    static constexpr int n = cifar_layout<Depth>::n;
    static constexpr int W = P::template width<16>;
    using type = nn::sequential<typename cifar_stem<P::in_channels, W, P::c>::type, basic_stage<W, W, 1, n, P::d>,
                                basic_stage<W, 2 * W, 2, n, P::d>, basic_stage<2 * W, 4 * W, 2, n, P::d>,
                                nn::global_avg_pool<4 * W>, nn::linear<4 * W, P::classes>>;
};

}  // namespace detail

template <int Depth, class... Options>
struct cifar_resnet : network<typename detail::cifar_body<Depth, detail::parsed<Options...>>::type,
                              detail::parsed<Options...>::in_channels, detail::parsed<Options...>::classes,
                              detail::parsed<Options...>::zero_gamma> {
    using options = detail::parsed<Options...>;
    static constexpr int base_width = options::template width<16>;
    /// The name's words, from the options: {"cifar_resnet20w32", "deep_stem", "zero_gamma"}.
    static std::vector<std::string> parts() {
        std::vector<std::string> p{"cifar_resnet" + std::to_string(Depth)};
        if (base_width != 16) p.front() += "w" + std::to_string(base_width);
        // stride_on_3x3 changes nothing in a basic block (its first conv already is the 3x3)
        if (options::c) p.emplace_back("deep_stem");
        if (options::d) p.emplace_back("avg_down");
        if (options::zero_gamma) p.emplace_back("zero_gamma");
        return p;
    }
    /// "cifar_resnet20+deep_stem+zero_gamma": the parts joined by '+'.
    static std::string name() { return detail::join_parts(parts()); }
};

}  // namespace tricks::models
