// expect: depth must be 6n\+2
// A CIFAR ResNet has three stages of n two-conv basic blocks plus stem and classifier: 6n+2 layers.
#include <tricks/models/cifar_resnet.hpp>

int main() {
    tricks::models::cifar_resnet<21, tricks::in_channels<1>, tricks::classes<10>> net;
    (void)net;
}
