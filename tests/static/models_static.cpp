// Compile-only checks of the model types: parameter counts and MACs equal those of an independent
// PyTorch implementation of the same architectures (bench/peers/torch_resnet.py; torchvision for
// A/B, timm for C/D), and the algebra of options (aliases, order, zero_gamma) holds at compile time.
// If this file compiles, every assertion holds.
#include <cstdint>
#include <type_traits>

#include "tricks/models/cifar_resnet.hpp"
#include "tricks/models/introspection.hpp"
#include "tricks/models/resnet.hpp"
#include "tricks/nn/layer.hpp"

namespace {

namespace m = tricks::models;
namespace tw = tricks::tweak;
using tricks::classes;
using tricks::in_channels;
using tricks::macs;
using tricks::parameter_count_v;
using tricks::width;

// ---- ImageNet ResNets at 224x224: params and MACs (convs + linear, one image) --------------------
static_assert(parameter_count_v<m::resnet18> == 11'689'512);
static_assert(macs<m::resnet18>(224, 224) == 1'814'073'344);
static_assert(parameter_count_v<m::resnet34> == 21'797'672);
static_assert(macs<m::resnet34>(224, 224) == 3'663'761'408);
static_assert(parameter_count_v<m::resnet50> == 25'557'032);
static_assert(macs<m::resnet50>(224, 224) == 3'857'973'248);
static_assert(parameter_count_v<m::resnet50b> == 25'557'032);
static_assert(macs<m::resnet50b>(224, 224) == 4'089'184'256);
static_assert(parameter_count_v<m::resnet50c> == 25'576'264);
static_assert(macs<m::resnet50c>(224, 224) == 4'328'824'832);
static_assert(parameter_count_v<m::resnet50d> == 25'576'264);
static_assert(macs<m::resnet50d>(224, 224) == 4'328'824'832);
static_assert(parameter_count_v<m::resnet101> == 44'549'160);
static_assert(macs<m::resnet101>(224, 224) == 7'570'194'432);
static_assert(parameter_count_v<m::resnet101d> == 44'568'392);
static_assert(macs<m::resnet101d>(224, 224) == 8'041'046'016);
static_assert(parameter_count_v<m::resnet152> == 60'192'808);
static_assert(macs<m::resnet152>(224, 224) == 11'282'415'616);
static_assert(parameter_count_v<m::resnet152d> == 60'212'040);
static_assert(macs<m::resnet152d>(224, 224) == 11'753'267'200);

// ---- CIFAR-style ResNets on 28x28 grayscale ----------------------------------------------------
using cifar20 = m::cifar_resnet<20, in_channels<1>, classes<10>>;
using cifar20cd = m::cifar_resnet<20, in_channels<1>, classes<10>, tw::deep_stem, tw::avg_down>;
using cifar20cd_w32 = m::cifar_resnet<20, width<32>, in_channels<1>, classes<10>, tw::deep_stem, tw::avg_down>;
using cifar56 = m::cifar_resnet<56, in_channels<1>, classes<10>>;
static_assert(parameter_count_v<cifar20> == 272'186);
static_assert(macs<cifar20>(28, 28) == 31'021'952);
static_assert(parameter_count_v<cifar20cd> == 273'874);
static_assert(macs<cifar20cd>(28, 28) == 32'320'256);
static_assert(parameter_count_v<cifar20cd_w32> == 1'090'842);
static_assert(macs<cifar20cd_w32>(28, 28) == 129'166'848);
static_assert(parameter_count_v<cifar56> == 855'482);
static_assert(macs<cifar56>(28, 28) == 96'050'048);

// ---- ImageNet ResNets on small grayscale input (10 classes) ------------------------------------
using r18_small = m::resnet<18, in_channels<1>, classes<10>>;
using r50d_small = m::resnet<50, tw::stride_on_3x3, tw::deep_stem, tw::avg_down, in_channels<1>, classes<10>>;
static_assert(parameter_count_v<r18_small> == 11'175'370);
static_assert(macs<r18_small>(28, 28) == 33'010'944);
static_assert(macs<r18_small>(32, 32) == 35'410'944);
static_assert(parameter_count_v<r50d_small> == 23'547'178);
static_assert(macs<r50d_small>(28, 28) == 82'812'032);
static_assert(macs<r50d_small>(32, 32) == 88'174'592);

// ---- ResNet-B moves the stride, it adds no parameter: same count, more MACs (paper §4.2) --------
static_assert(parameter_count_v<m::resnet50> == parameter_count_v<m::resnet50b>);
static_assert(macs<m::resnet50>(224, 224) != macs<m::resnet50b>(224, 224));
static_assert(macs<m::resnet50>(224, 224) < macs<m::resnet50b>(224, 224));
// ResNet-D's avg pool adds no parameter and no MAC (pooling is not counted) over ResNet-C.
static_assert(parameter_count_v<m::resnet50c> == parameter_count_v<m::resnet50d>);
static_assert(macs<m::resnet50c>(224, 224) == macs<m::resnet50d>(224, 224));

// ---- aliases are the paper's cumulative ones (C includes B; D includes B and C) ---------------
static_assert(std::is_same_v<m::resnet18, m::resnet<18>>);
static_assert(std::is_same_v<m::resnet34, m::resnet<34>>);
static_assert(std::is_same_v<m::resnet50, m::resnet<50>>);
static_assert(std::is_same_v<m::resnet101, m::resnet<101>>);
static_assert(std::is_same_v<m::resnet152, m::resnet<152>>);
static_assert(std::is_same_v<m::resnet50b, m::resnet<50, tw::stride_on_3x3>>);
static_assert(std::is_same_v<m::resnet50c, m::resnet<50, tw::stride_on_3x3, tw::deep_stem>>);
static_assert(std::is_same_v<m::resnet50d, m::resnet<50, tw::stride_on_3x3, tw::deep_stem, tw::avg_down>>);
static_assert(std::is_same_v<m::resnet101b, m::resnet<101, tw::stride_on_3x3>>);
static_assert(std::is_same_v<m::resnet101c, m::resnet<101, tw::stride_on_3x3, tw::deep_stem>>);
static_assert(std::is_same_v<m::resnet101d, m::resnet<101, tw::stride_on_3x3, tw::deep_stem, tw::avg_down>>);
static_assert(std::is_same_v<m::resnet152b, m::resnet<152, tw::stride_on_3x3>>);
static_assert(std::is_same_v<m::resnet152c, m::resnet<152, tw::stride_on_3x3, tw::deep_stem>>);
static_assert(std::is_same_v<m::resnet152d, m::resnet<152, tw::stride_on_3x3, tw::deep_stem, tw::avg_down>>);
// The parsed flags say the same.
static_assert(m::resnet50b::options::b && !m::resnet50b::options::c && !m::resnet50b::options::d);
static_assert(m::resnet50c::options::b && m::resnet50c::options::c && !m::resnet50c::options::d);
static_assert(m::resnet50d::options::b && m::resnet50d::options::c && m::resnet50d::options::d);
static_assert(!m::resnet50::options::b && !m::resnet50::options::c && !m::resnet50::options::d);
// Defaults: 1000 classes, 3 input channels, no zero-gamma.
static_assert(m::resnet50::classes == 1000 && m::resnet50::input_channels == 3 && !m::resnet50::zero_gamma);
static_assert(cifar20::classes == 10 && cifar20::input_channels == 1 && cifar20::base_width == 16);
static_assert(cifar20cd_w32::base_width == 32);

// ---- option order does not matter (structure() equality at run time is in tests/unit) ----------
using r50d_reordered = m::resnet<50, tw::avg_down, tw::deep_stem, tw::stride_on_3x3>;
static_assert(parameter_count_v<r50d_reordered> == parameter_count_v<m::resnet50d>);
static_assert(macs<r50d_reordered>(224, 224) == macs<m::resnet50d>(224, 224));
using r50d_small_reordered = m::resnet<50, classes<10>, tw::avg_down, in_channels<1>, tw::deep_stem, tw::stride_on_3x3>;
static_assert(parameter_count_v<r50d_small_reordered> == parameter_count_v<r50d_small>);
static_assert(macs<r50d_small_reordered>(28, 28) == macs<r50d_small>(28, 28));
using cifar20cd_w32_reordered =
    m::cifar_resnet<20, tw::avg_down, classes<10>, tw::deep_stem, width<32>, in_channels<1>>;
static_assert(parameter_count_v<cifar20cd_w32_reordered> == parameter_count_v<cifar20cd_w32>);
static_assert(macs<cifar20cd_w32_reordered>(28, 28) == macs<cifar20cd_w32>(28, 28));
// The body (the network proper) is the same type whatever the order (detail name: update if renamed).
static_assert(std::is_same_v<m::detail::resnet_body<50, r50d_reordered::options>::type,
                             m::detail::resnet_body<50, m::resnet50d::options>::type>);

// ---- zero_gamma changes initial values only, never the counts ---------------------------------
using r50d_zg = m::resnet<50, tw::stride_on_3x3, tw::deep_stem, tw::avg_down, tricks::init::zero_gamma>;
static_assert(r50d_zg::zero_gamma);
static_assert(parameter_count_v<r50d_zg> == parameter_count_v<m::resnet50d>);
static_assert(macs<r50d_zg>(224, 224) == macs<m::resnet50d>(224, 224));
using r18_zg = m::resnet<18, tricks::init::zero_gamma>;
static_assert(parameter_count_v<r18_zg> == parameter_count_v<m::resnet18>);
static_assert(macs<r18_zg>(224, 224) == macs<m::resnet18>(224, 224));
using cifar20_zg = m::cifar_resnet<20, tricks::init::zero_gamma, in_channels<1>, classes<10>>;
static_assert(parameter_count_v<cifar20_zg> == parameter_count_v<cifar20>);
static_assert(macs<cifar20_zg>(28, 28) == macs<cifar20>(28, 28));

// ---- every model is itself a layer (so it composes, e.g. as a teacher or inside a sequential) -
static_assert(tricks::nn::Layer<m::resnet18>);
static_assert(tricks::nn::Layer<m::resnet34>);
static_assert(tricks::nn::Layer<m::resnet50>);
static_assert(tricks::nn::Layer<m::resnet50b>);
static_assert(tricks::nn::Layer<m::resnet50c>);
static_assert(tricks::nn::Layer<m::resnet50d>);
static_assert(tricks::nn::Layer<m::resnet101d>);
static_assert(tricks::nn::Layer<m::resnet152d>);
static_assert(tricks::nn::Layer<r50d_zg>);
static_assert(tricks::nn::Layer<cifar20>);
static_assert(tricks::nn::Layer<cifar20cd_w32>);
static_assert(tricks::nn::Layer<cifar56>);
// and its channel interface is the one its options ask for.
static_assert(r50d_small::in_channels == 1 && r50d_small::out_channels == 10);
static_assert(cifar20cd_w32::in_channels == 1 && cifar20cd_w32::out_channels == 10);
static_assert(m::resnet152d::in_channels == 3 && m::resnet152d::out_channels == 1000);
// The logits are 1x1 whatever the input size.
static_assert(r50d_small::out_dims(tricks::dims{28, 28}) == tricks::dims{1, 1});
static_assert(cifar20::out_dims(tricks::dims{7, 7}) == tricks::dims{1, 1});

}  // namespace
