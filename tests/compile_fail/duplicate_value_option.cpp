// expect: the same option is given twice
// Two values for one numeric option are a duplicate too, even when they differ.
#include <tricks/models/cifar_resnet.hpp>

int main() {
    tricks::models::cifar_resnet<20, tricks::classes<10>, tricks::classes<100>> net;
    (void)net;
}
