// expect: tricks::ablation: distillation teacher and student must have the same classes and input channels
// A teacher that sees RGB images cannot teach a student of grey ones (nor predict other classes).
#include <tricks/ablation/grid.hpp>
#include <tricks/models/cifar_resnet.hpp>

namespace t = tricks;
namespace ab = tricks::ablation;
using student = t::models::cifar_resnet<20, t::in_channels<1>, t::classes<10>>;
using teacher = t::models::cifar_resnet<56, t::in_channels<3>, t::classes<10>>;
using study = ab::grid<ab::axis<student>, ab::axis<t::recipe<>, t::recipe<t::loss::distill<teacher>>>>;

int main() {
    int n = 0;
    ab::for_each<study>([&]<class Net, class Recipe>() { ++n; });
    return n;
}
