// expect: tricks::models: unknown option type
// A type that is not one of the model options (a user's own tag here) is rejected by name.
#include <tricks/models/resnet.hpp>

struct my_tweak {};

int main() {
    tricks::models::resnet<50, tricks::tweak::deep_stem, my_tweak> net;
    (void)net;
}
