// expect: tricks::recipe: unknown policy type
// A type that is not one of the training policies (here a model option) is rejected by name.
#include <tricks/models/options.hpp>
#include <tricks/train/recipe.hpp>

int main() {
    using r = tricks::recipe<tricks::lr::cosine, tricks::init::zero_gamma>;
    static_assert(r::cosine);
}
