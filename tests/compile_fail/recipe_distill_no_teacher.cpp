// expect: knowledge distillation needs a teacher model type
// loss::distill<> without a Teacher type has nothing to distil from (paper §5.3): a compile error.
#include <tricks/train/recipe.hpp>

int main() {
    using r = tricks::recipe<tricks::lr::cosine, tricks::loss::distill<>>;
    static_assert(r::distills);
}
