// expect: tricks::ablation: two configurations train the same network with the same recipe
// tweak::stride_on_3x3 (ResNet-B) changes nothing in cifar_resnet's basic blocks, so "A" and "B"
// would be the same experiment under two names.
#include <tricks/ablation/grid.hpp>
#include <tricks/models/cifar_resnet.hpp>

namespace t = tricks;
namespace ab = tricks::ablation;
using a = t::models::cifar_resnet<20, t::in_channels<1>, t::classes<10>>;
using b = t::models::cifar_resnet<20, t::in_channels<1>, t::classes<10>, t::tweak::stride_on_3x3>;
using study = ab::grid<ab::axis<a, b>, ab::axis<t::recipe<t::lr::cosine>>>;

int main() { return static_cast<int>(ab::size_v<study>); }
