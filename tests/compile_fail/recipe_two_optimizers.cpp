// expect: tricks::recipe: more than one optimizer
// Two optimizers in one recipe: which one would train? The recipe refuses, by name.
#include <tricks/train/recipe.hpp>

int main() {
    using r = tricks::recipe<tricks::optim::sgd<>, tricks::lr::cosine, tricks::optim::sgd<tricks::optim::nesterov>>;
    static_assert(r::cosine);  // uses the recipe, so it is instantiated
}
