// A user's program: include tricks, check a model's size at compile time, run one forward pass.
// Built by both package tests (add_subdirectory and find_package after install); exit code 0 only
// when the logits have the expected shape.
#include <cstdio>

#include <tricks/tricks.hpp>

namespace t = tricks;

// ResNet-50-D: stride on the 3x3 (B) + deep stem (C) + avg-pool shortcut (D); timm's count.
static_assert(t::parameter_count_v<t::models::resnet50d> == 25'576'264);

int main() {
    using net_t = t::models::cifar_resnet<8, t::in_channels<1>, t::classes<10>>;
    net_t net;
    net.init(1);
    const t::tensor<float> image(t::shape4{1, 28, 28, 1}, 0.f);
    const t::tensor<float>& logits = net.forward(image, t::nn::context{t::nn::mode::eval});
    const t::shape4 s = logits.shape();
    std::printf("%s: logits [n=%d h=%d w=%d c=%d]\n", net_t::name().c_str(), s.n, s.h, s.w, s.c);
    return s == t::shape4{1, 1, 1, 10} ? 0 : 1;
}
