// expect: tricks::models: unknown option type
// A plain type such as int is not an option either (cifar_resnet parses options the same way).
#include <tricks/models/cifar_resnet.hpp>

int main() {
    tricks::models::cifar_resnet<20, int> net;
    (void)net;
}
