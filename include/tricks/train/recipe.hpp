#pragma once
// tricks::recipe<Policies...>: a checked list of training policies. At most one of each kind
// (optimizer, lr scaling, warmup, decay schedule, weight-decay rule, label smoothing,
// distillation, mixing, precision); what is absent costs nothing and takes the plain default
// (SGD with momentum, constant lr, decay on every parameter, one-hot targets, FP32).
#include <string>
#include <type_traits>
#include <vector>

#include "tricks/core/kinds.hpp"
#include "tricks/train/policies.hpp"

namespace tricks {

namespace detail {

/// P is a training policy: it derives from policy<Kind> with one of policy_kind's kinds.
template <class P>
concept training_policy = kind_in_family<P, policy_kind::any>;

template <class K, class... Ps>
inline constexpr int count_policy = count_of_kind<K, Ps...>;

/// The first policy of kind K, or Default.
template <class K, class Default, class... Ps>
using find_policy_t = first_of_kind_t<K, Default, Ps...>;

template <class T>
struct is_step : std::false_type {};
template <class... M>
struct is_step<lr::step<M...>> : std::true_type {};
template <class T>
struct teacher_of {
    using type = void;
};
template <class T>
struct teacher_of<loss::distill<T>> {
    using type = T;
};
template <class T>
struct scaling_batch : std::integral_constant<int, 0> {};
template <int B>
struct scaling_batch<lr::linear_scaling<B>> : std::integral_constant<int, B> {};
template <class T>
struct warmup_epochs_of : std::integral_constant<int, 0> {};
template <class E>
struct warmup_epochs_of<lr::warmup<E>> : std::integral_constant<int, E::value> {};

}  // namespace detail

template <class... Policies>
struct recipe {
    static_assert((detail::training_policy<Policies> && ...),
                  "tricks::recipe: unknown policy type; valid policies are optim::sgd<>, lr::linear_scaling<B>, "
                  "lr::warmup<epochs<m>>, lr::cosine, lr::step<epochs<e>...>, decay::no_bias_decay, "
                  "loss::label_smoothing, loss::distill<Teacher>, mix::mixup, precision::fp32, "
                  "precision::fp16_mixed, precision::bf16_mixed");
    static_assert(detail::count_policy<policy_kind::optimizer, Policies...> <= 1,
                  "tricks::recipe: more than one optimizer");
    static_assert(detail::count_policy<policy_kind::scaling, Policies...> <= 1,
                  "tricks::recipe: more than one lr::linear_scaling");
    static_assert(detail::count_policy<policy_kind::warmup, Policies...> <= 1,
                  "tricks::recipe: more than one lr::warmup");
    static_assert(detail::count_policy<policy_kind::schedule, Policies...> <= 1,
                  "tricks::recipe: more than one learning-rate decay (choose lr::cosine or lr::step<...>)");
    static_assert(detail::count_policy<policy_kind::decay_rule, Policies...> <= 1,
                  "tricks::recipe: decay::no_bias_decay is given twice");
    static_assert(detail::count_policy<policy_kind::smoothing, Policies...> <= 1,
                  "tricks::recipe: loss::label_smoothing is given twice");
    static_assert(detail::count_policy<policy_kind::distill, Policies...> <= 1,
                  "tricks::recipe: more than one loss::distill");
    static_assert(detail::count_policy<policy_kind::mixing, Policies...> <= 1,
                  "tricks::recipe: more than one mixing policy");
    static_assert(detail::count_policy<policy_kind::precision, Policies...> <= 1,
                  "tricks::recipe: more than one precision (choose precision::fp32, fp16_mixed or bf16_mixed)");
    // The sentences above name the kinds a user meets; this one holds for every kind, a new one too.
    static_assert(detail::at_most_one_of_each_kind<Policies...>, "tricks::recipe: two policies of the same kind");

    using optimizer = detail::find_policy_t<policy_kind::optimizer, optim::sgd<>, Policies...>;
    using precision_policy = detail::find_policy_t<policy_kind::precision, precision::fp32, Policies...>;
    using schedule_policy = detail::find_policy_t<policy_kind::schedule, void, Policies...>;
    using distill_policy = detail::find_policy_t<policy_kind::distill, void, Policies...>;
    using teacher = typename detail::teacher_of<distill_policy>::type;

    static constexpr bool distills = !std::is_void_v<distill_policy>;
    static_assert(!distills || !std::is_void_v<teacher>,
                  "tricks: knowledge distillation needs a teacher model type: t::loss::distill<Teacher>");

    static constexpr bool nesterov = optimizer::is_nesterov;
    static constexpr int scaling_reference_batch =
        detail::scaling_batch<detail::find_policy_t<policy_kind::scaling, void, Policies...>>::value;
    static constexpr bool linear_scaling = scaling_reference_batch > 0;
    static constexpr bool warmup = detail::count_policy<policy_kind::warmup, Policies...> > 0;
    static constexpr int default_warmup_epochs =
        detail::warmup_epochs_of<detail::find_policy_t<policy_kind::warmup, void, Policies...>>::value;
    static constexpr bool cosine = std::is_same_v<schedule_policy, lr::cosine>;
    static constexpr bool step = detail::is_step<schedule_policy>::value;
    static constexpr bool no_bias_decay = detail::count_policy<policy_kind::decay_rule, Policies...> > 0;
    static constexpr bool label_smoothing = detail::count_policy<policy_kind::smoothing, Policies...> > 0;
    static constexpr bool mixup = detail::count_policy<policy_kind::mixing, Policies...> > 0;
    static constexpr bool fp16 = std::is_same_v<precision_policy, precision::fp16_mixed>;
    static constexpr bool bf16 = std::is_same_v<precision_policy, precision::bf16_mixed>;

    /// The recipe's policies as words, in a fixed order whatever the order of the type's list: the
    /// optimizer ("sgd" or "sgd(nesterov)"), then "linear_scaling<B>", "warmup", "cosine", "step",
    /// "no_bias_decay", "label_smoothing", "distill", "mixup", "fp16_mixed", "bf16_mixed" when
    /// present. Reports compare rows by these (ablation/report.hpp).
    static std::vector<std::string> parts() {
        std::vector<std::string> p{nesterov ? "sgd(nesterov)" : "sgd"};
        if (linear_scaling) p.push_back("linear_scaling<" + std::to_string(scaling_reference_batch) + ">");
        if (warmup) p.emplace_back("warmup");
        if (cosine) p.emplace_back("cosine");
        if (step) p.emplace_back("step");
        if (no_bias_decay) p.emplace_back("no_bias_decay");
        if (label_smoothing) p.emplace_back("label_smoothing");
        if (distills) p.emplace_back("distill");
        if (mixup) p.emplace_back("mixup");
        if (fp16) p.emplace_back("fp16_mixed");
        if (bf16) p.emplace_back("bf16_mixed");
        return p;
    }

    /// A readable name: the parts joined, "sgd + linear_scaling<256> + warmup + cosine + ...".
    static std::string describe() {
        std::string s;
        for (const auto& w : parts()) s += (s.empty() ? "" : " + ") + w;
        return s;
    }

    /// The step milestones (epochs), for lr::step.
    static constexpr auto milestones() noexcept {
        if constexpr (step)
            return schedule_policy::milestones;
        else
            return static_cast<const int*>(nullptr);
    }
    static constexpr int milestone_count() noexcept {
        if constexpr (step)
            return schedule_policy::count;
        else
            return 0;
    }
};

}  // namespace tricks
