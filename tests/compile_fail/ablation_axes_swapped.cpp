// expect: tricks::ablation::grid: the first axis holds model types
// A grid takes the model axis first, then the recipe axis.
#include <tricks/ablation/grid.hpp>
#include <tricks/models/cifar_resnet.hpp>

namespace t = tricks;
namespace ab = tricks::ablation;
using net = t::models::cifar_resnet<20, t::in_channels<1>, t::classes<10>>;
using study = ab::grid<ab::axis<t::recipe<>, t::recipe<t::lr::cosine>>, ab::axis<net>>;

int main() { return static_cast<int>(ab::size_v<study>); }
