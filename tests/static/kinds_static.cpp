// Compile-only checks of the policy and option kinds (core/kinds.hpp): a type's kind is what it
// declares, the recipe and the model options accept a new type of a known or a new kind with no
// registry, and the defaults and lookups follow the kinds. If this file compiles, every assertion holds.
#include <type_traits>

#include "tricks/core/kinds.hpp"
#include "tricks/models/cifar_resnet.hpp"
#include "tricks/train/recipe.hpp"

namespace {

namespace t = tricks;
namespace d = tricks::detail;

// Kinds are what the types say.
static_assert(std::is_same_v<d::kind_of_t<t::lr::cosine>, t::policy_kind::schedule>);
static_assert(std::is_same_v<d::kind_of_t<t::lr::step<t::epochs<3>>>, t::policy_kind::schedule>);
static_assert(std::is_same_v<d::kind_of_t<t::optim::sgd<t::optim::nesterov>>, t::policy_kind::optimizer>);
static_assert(std::is_same_v<d::kind_of_t<t::classes<10>>, t::option_kind::classes>);
static_assert(std::is_same_v<d::kind_of_t<int>, void>);
static_assert(d::kind_in_family<t::mix::mixup, t::policy_kind::any>);
static_assert(!d::kind_in_family<t::mix::mixup, t::option_kind::any>);  // a policy is no model option
static_assert(!d::kind_in_family<t::tweak::deep_stem, t::policy_kind::any>);
static_assert(!d::kind_in_family<t::optim::nesterov, t::policy_kind::any>);  // an sgd option, not a policy

// The generic rules.
static_assert(d::count_of_kind<t::policy_kind::schedule, t::lr::cosine, t::mix::mixup, t::lr::step<>> == 2);
static_assert(d::at_most_one_of_each_kind<t::lr::cosine, t::mix::mixup, t::precision::fp16_mixed>);
static_assert(!d::at_most_one_of_each_kind<t::precision::fp32, t::mix::mixup, t::precision::fp16_mixed>);
static_assert(d::at_most_one_of_each_kind<>);
static_assert(
    std::is_same_v<d::first_of_kind_t<t::policy_kind::mixing, void, t::lr::cosine, t::mix::mixup>, t::mix::mixup>);
static_assert(std::is_same_v<d::first_of_kind_t<t::policy_kind::distill, int, t::lr::cosine>, int>);

// A user's policy of a new kind enters a recipe without any edit to the library; the recipe's
// defaults and the other kinds are unaffected.
struct ema_kind : t::policy_kind::any {};
struct ema : t::policy<ema_kind> {};
using with_ema = t::recipe<ema, t::lr::cosine>;
static_assert(with_ema::cosine && !with_ema::mixup && !with_ema::fp16);
static_assert(std::is_same_v<with_ema::optimizer, t::optim::sgd<>>);
static_assert(std::is_same_v<d::find_policy_t<ema_kind, void, ema, t::lr::cosine>, ema>);

// A user's policy of a known kind takes that kind's place (and is counted against it).
struct my_schedule : t::policy<t::policy_kind::schedule> {};
using custom = t::recipe<my_schedule>;
static_assert(std::is_same_v<custom::schedule_policy, my_schedule> && !custom::cosine && !custom::step);

// Model options: order free, values read by kind, defaults when absent.
using net = t::models::cifar_resnet<20, t::width<32>, t::in_channels<1>, t::tweak::avg_down, t::classes<7>>;
static_assert(net::options::classes == 7 && net::options::in_channels == 1 && net::base_width == 32);
static_assert(net::options::d && !net::options::c && !net::options::b && !net::options::zero_gamma);
using plain = t::models::cifar_resnet<20>;
static_assert(plain::options::classes == 1000 && plain::options::in_channels == 3 && plain::base_width == 16);

}  // namespace
