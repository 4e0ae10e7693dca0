// expect: width<W> applies to cifar_resnet only
#include <tricks/models/resnet.hpp>

int main() {
    tricks::models::resnet<18, tricks::width<32>> net;
    (void)net;
}
