// expect: tricks::recipe: two policies of the same kind
// A policy kind the library does not know (a user's) is still checked: two policies of it in one
// recipe are refused by the generic at-most-one-of-each-kind rule, with no registry to extend.
#include <tricks/train/recipe.hpp>

struct ema_kind : tricks::policy_kind::any {};
struct ema_fast : tricks::policy<ema_kind> {};
struct ema_slow : tricks::policy<ema_kind> {};

int main() {
    using r = tricks::recipe<ema_fast, tricks::lr::cosine, ema_slow>;
    static_assert(r::cosine);  // uses the recipe, so it is instantiated
}
