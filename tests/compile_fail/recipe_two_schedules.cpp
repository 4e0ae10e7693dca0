// expect: tricks::recipe: more than one learning-rate decay
// Cosine and step decay both decide the lr after warmup; a recipe takes one of them.
#include <tricks/train/recipe.hpp>

int main() {
    using r = tricks::recipe<tricks::lr::warmup<>, tricks::lr::cosine, tricks::lr::step<tricks::epochs<30>>>;
    static_assert(r::warmup);
}
