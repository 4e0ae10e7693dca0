#pragma once
// The residual blocks of the ResNet family (paper Fig. 1 and Fig. 2), as types.
#include "tricks/nn/batch_norm.hpp"
#include "tricks/nn/conv.hpp"
#include "tricks/nn/pool.hpp"
#include "tricks/nn/relu.hpp"
#include "tricks/nn/residual.hpp"
#include "tricks/nn/sequential.hpp"

namespace tricks::models {

/// conv + BN + ReLU, the unit every stem and branch is made of.
template <int Cin, int Cout, int K, int Stride>
using conv_bn_relu = nn::sequential<nn::conv<Cin, Cout, K, Stride, K / 2>, nn::batch_norm<Cout>, nn::relu<Cout>>;

/// The shortcut of a block that maps Cin channels at stride S to Cout channels:
///  - identity when nothing changes;
///  - ResNet-A/B/C: 1x1 conv with stride S, then BN;
///  - ResNet-D (avg_down) and S > 1: 2x2 stride-S average pool (ceil mode, padding not counted),
///    then a stride-1 1x1 conv and BN. A stride-1 projection stays a plain 1x1 conv.
template <int Cin, int Cout, int S, bool AvgDown>
struct shortcut_for {
    using type = nn::sequential<nn::conv<Cin, Cout, 1, S, 0>, nn::batch_norm<Cout>>;
};
template <int C>
struct shortcut_for<C, C, 1, false> {
    using type = nn::identity<C>;
};
template <int C>
struct shortcut_for<C, C, 1, true> {
    using type = nn::identity<C>;
};
template <int Cin, int Cout, int S>
requires(S > 1) struct shortcut_for<Cin, Cout, S, true> {
    using type =
        nn::sequential<nn::avg_pool<Cin, S, S, 0, true, false>, nn::conv<Cin, Cout, 1, 1, 0>, nn::batch_norm<Cout>>;
};

/// Basic block (ResNet-18/34 and the CIFAR nets): 3x3 (stride S) -> BN -> ReLU -> 3x3 -> BN.
template <int Cin, int Cout, int S, bool AvgDown>
using basic_block = nn::residual<nn::sequential<nn::conv<Cin, Cout, 3, S, 1>, nn::batch_norm<Cout>, nn::relu<Cout>,
                                                nn::conv<Cout, Cout, 3, 1, 1>, nn::batch_norm<Cout>>,
                                 typename shortcut_for<Cin, Cout, S, AvgDown>::type>;

/// Bottleneck block (ResNet-50+): 1x1 -> 3x3 -> 1x1 (x4 expansion). ResNet-A puts the stride on
/// the first 1x1; ResNet-B (StrideOn3x3) on the 3x3.
template <int Cin, int Mid, int S, bool StrideOn3x3, bool AvgDown>
using bottleneck_block =
    nn::residual<nn::sequential<nn::conv<Cin, Mid, 1, StrideOn3x3 ? 1 : S, 0>, nn::batch_norm<Mid>, nn::relu<Mid>,
                                nn::conv<Mid, Mid, 3, StrideOn3x3 ? S : 1, 1>, nn::batch_norm<Mid>, nn::relu<Mid>,
                                nn::conv<Mid, 4 * Mid, 1, 1, 0>, nn::batch_norm<4 * Mid>>,
                 typename shortcut_for<Cin, 4 * Mid, S, AvgDown>::type>;

/// N blocks: the first changes channels/stride, the other N-1 are one repeated type.
template <class First, class Rest, int N>
struct stage_of {
    using type = nn::sequential<First, nn::repeat<Rest, N - 1>>;
};
template <class First, class Rest>
struct stage_of<First, Rest, 1> {
    using type = nn::sequential<First>;
};

template <int Cin, int Cout, int S, int N, bool AvgDown>
using basic_stage = typename stage_of<basic_block<Cin, Cout, S, AvgDown>, basic_block<Cout, Cout, 1, AvgDown>, N>::type;

template <int Cin, int Mid, int S, int N, bool B, bool D>
using bottleneck_stage =
    typename stage_of<bottleneck_block<Cin, Mid, S, B, D>, bottleneck_block<4 * Mid, Mid, 1, B, D>, N>::type;

}  // namespace tricks::models
