// expect: tricks::models::resnet: unsupported depth
// ResNet depths are 18, 34, 50, 101 and 152; 42 is none of them.
#include <tricks/models/resnet.hpp>

int main() {
    tricks::models::resnet<42> net;
    (void)net;
}
