// expect: tricks::ablation: configuration listed twice
// The same config<Model, Recipe> twice in rows<...> is a mistake (the second run adds nothing).
#include <tricks/ablation/rows.hpp>
#include <tricks/models/cifar_resnet.hpp>

namespace t = tricks;
namespace ab = tricks::ablation;
using net = t::models::cifar_resnet<20, t::in_channels<1>, t::classes<10>>;
using study =
    ab::rows<ab::config<net, t::recipe<>>, ab::config<net, t::recipe<t::lr::cosine>>, ab::config<net, t::recipe<>>>;

int main() { return static_cast<int>(ab::size_v<study>); }
