// Prints the ResNet family with parameter counts and MACs, all computed at compile time.
#include <cstdio>

#include <tricks/tricks.hpp>

namespace t = tricks;
namespace m = tricks::models;

template <class Net>
void row(int h, int w) {
    std::printf("%-36s %12lld %16lld  @%dx%d\n", Net::name().c_str(), static_cast<long long>(t::parameter_count_v<Net>),
                static_cast<long long>(t::macs<Net>(h, w)), h, w);
}

int main() {
    std::printf("%-36s %12s %16s\n", "model", "parameters", "MACs/image");
    row<m::resnet18>(224, 224);
    row<m::resnet34>(224, 224);
    row<m::resnet50>(224, 224);
    row<m::resnet50b>(224, 224);
    row<m::resnet50c>(224, 224);
    row<m::resnet50d>(224, 224);
    row<m::resnet101>(224, 224);
    row<m::resnet101d>(224, 224);
    row<m::resnet152>(224, 224);
    row<m::resnet152d>(224, 224);
    row<m::cifar_resnet<20, t::in_channels<1>, t::classes<10>>>(28, 28);
    row<m::cifar_resnet<20, t::in_channels<1>, t::classes<10>, t::tweak::deep_stem, t::tweak::avg_down>>(28, 28);
    row<m::cifar_resnet<56, t::in_channels<1>, t::classes<10>>>(28, 28);
}
