// expect: the same option is given twice
#include <tricks/models/resnet.hpp>

int main() {
    tricks::models::resnet<50, tricks::tweak::deep_stem, tricks::tweak::stride_on_3x3, tricks::tweak::deep_stem> net;
    (void)net;
}
