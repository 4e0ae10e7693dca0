#pragma once
// tricks::recipe<Policies...>: a checked list of training policies. At most one of each kind
// (optimizer, lr scaling, warmup, decay schedule, weight-decay rule, label smoothing,
// distillation, mixing, precision); what is absent costs nothing and takes the plain default
// (SGD with momentum, constant lr, decay on every parameter, one-hot targets, FP32).
#include <string>
#include <type_traits>

#include "tricks/train/policies.hpp"

namespace tricks {

namespace detail {

enum class policy_kind { unknown, optimizer, scaling, warmup, schedule, decay_rule, smoothing, distill, mixing, precision };

template <class P>
struct policy_kind_of : std::integral_constant<policy_kind, policy_kind::unknown> {};
template <class... O>
struct policy_kind_of<optim::sgd<O...>> : std::integral_constant<policy_kind, policy_kind::optimizer> {};
template <int B>
struct policy_kind_of<lr::linear_scaling<B>> : std::integral_constant<policy_kind, policy_kind::scaling> {};
template <class E>
struct policy_kind_of<lr::warmup<E>> : std::integral_constant<policy_kind, policy_kind::warmup> {};
template <>
struct policy_kind_of<lr::cosine> : std::integral_constant<policy_kind, policy_kind::schedule> {};
template <class... M>
struct policy_kind_of<lr::step<M...>> : std::integral_constant<policy_kind, policy_kind::schedule> {};
template <>
struct policy_kind_of<decay::no_bias_decay> : std::integral_constant<policy_kind, policy_kind::decay_rule> {};
template <>
struct policy_kind_of<loss::label_smoothing> : std::integral_constant<policy_kind, policy_kind::smoothing> {};
template <class T>
struct policy_kind_of<loss::distill<T>> : std::integral_constant<policy_kind, policy_kind::distill> {};
template <>
struct policy_kind_of<mix::mixup> : std::integral_constant<policy_kind, policy_kind::mixing> {};
template <>
struct policy_kind_of<precision::fp32> : std::integral_constant<policy_kind, policy_kind::precision> {};
template <>
struct policy_kind_of<precision::fp16_mixed> : std::integral_constant<policy_kind, policy_kind::precision> {};
template <>
struct policy_kind_of<precision::bf16_mixed> : std::integral_constant<policy_kind, policy_kind::precision> {};

template <policy_kind K, class... Ps>
constexpr int count_policy = ((policy_kind_of<Ps>::value == K ? 1 : 0) + ... + 0);

/// The first policy of kind K, or Default.
template <policy_kind K, class Default, class... Ps>
struct find_policy {
    using type = Default;
};
template <policy_kind K, class Default, class P, class... Ps>
struct find_policy<K, Default, P, Ps...> {
    using type = std::conditional_t<policy_kind_of<P>::value == K, P, typename find_policy<K, Default, Ps...>::type>;
};

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
    static_assert(((detail::policy_kind_of<Policies>::value != detail::policy_kind::unknown) && ...),
                  "tricks::recipe: unknown policy type; valid policies are optim::sgd<>, lr::linear_scaling<B>, "
                  "lr::warmup<epochs<m>>, lr::cosine, lr::step<epochs<e>...>, decay::no_bias_decay, "
                  "loss::label_smoothing, loss::distill<Teacher>, mix::mixup, precision::fp32, "
                  "precision::fp16_mixed, precision::bf16_mixed");
    static_assert(detail::count_policy<detail::policy_kind::optimizer, Policies...> <= 1,
                  "tricks::recipe: more than one optimizer");
    static_assert(detail::count_policy<detail::policy_kind::scaling, Policies...> <= 1,
                  "tricks::recipe: more than one lr::linear_scaling");
    static_assert(detail::count_policy<detail::policy_kind::warmup, Policies...> <= 1,
                  "tricks::recipe: more than one lr::warmup");
    static_assert(detail::count_policy<detail::policy_kind::schedule, Policies...> <= 1,
                  "tricks::recipe: more than one learning-rate decay (choose lr::cosine or lr::step<...>)");
    static_assert(detail::count_policy<detail::policy_kind::decay_rule, Policies...> <= 1,
                  "tricks::recipe: decay::no_bias_decay is given twice");
    static_assert(detail::count_policy<detail::policy_kind::smoothing, Policies...> <= 1,
                  "tricks::recipe: loss::label_smoothing is given twice");
    static_assert(detail::count_policy<detail::policy_kind::distill, Policies...> <= 1,
                  "tricks::recipe: more than one loss::distill");
    static_assert(detail::count_policy<detail::policy_kind::mixing, Policies...> <= 1,
                  "tricks::recipe: more than one mixing policy");
    static_assert(detail::count_policy<detail::policy_kind::precision, Policies...> <= 1,
                  "tricks::recipe: more than one precision (choose precision::fp32, fp16_mixed or bf16_mixed)");

    using optimizer = typename detail::find_policy<detail::policy_kind::optimizer, optim::sgd<>, Policies...>::type;
    using precision_policy = typename detail::find_policy<detail::policy_kind::precision, precision::fp32, Policies...>::type;
    using schedule_policy = typename detail::find_policy<detail::policy_kind::schedule, void, Policies...>::type;
    using distill_policy = typename detail::find_policy<detail::policy_kind::distill, void, Policies...>::type;
    using teacher = typename detail::teacher_of<distill_policy>::type;

    static constexpr bool distills = !std::is_void_v<distill_policy>;
    static_assert(!distills || !std::is_void_v<teacher>,
                  "tricks: knowledge distillation needs a teacher model type: t::loss::distill<Teacher>");

    static constexpr bool nesterov = optimizer::is_nesterov;
    static constexpr int scaling_reference_batch =
        detail::scaling_batch<typename detail::find_policy<detail::policy_kind::scaling, void, Policies...>::type>::value;
    static constexpr bool linear_scaling = scaling_reference_batch > 0;
    static constexpr bool warmup = detail::count_policy<detail::policy_kind::warmup, Policies...> > 0;
    static constexpr int default_warmup_epochs =
        detail::warmup_epochs_of<typename detail::find_policy<detail::policy_kind::warmup, void, Policies...>::type>::value;
    static constexpr bool cosine = std::is_same_v<schedule_policy, lr::cosine>;
    static constexpr bool step = detail::is_step<schedule_policy>::value;
    static constexpr bool no_bias_decay = detail::count_policy<detail::policy_kind::decay_rule, Policies...> > 0;
    static constexpr bool label_smoothing = detail::count_policy<detail::policy_kind::smoothing, Policies...> > 0;
    static constexpr bool mixup = detail::count_policy<detail::policy_kind::mixing, Policies...> > 0;
    static constexpr bool fp16 = std::is_same_v<precision_policy, precision::fp16_mixed>;
    static constexpr bool bf16 = std::is_same_v<precision_policy, precision::bf16_mixed>;

    /// A readable name: "sgd + linear_scaling<256> + warmup + cosine + ...".
    static std::string describe() {
        std::string s = nesterov ? "sgd(nesterov)" : "sgd";
        if (linear_scaling) s += " + linear_scaling<" + std::to_string(scaling_reference_batch) + ">";
        if (warmup) s += " + warmup";
        if (cosine) s += " + cosine";
        if (step) s += " + step";
        if (no_bias_decay) s += " + no_bias_decay";
        if (label_smoothing) s += " + label_smoothing";
        if (distills) s += " + distill";
        if (mixup) s += " + mixup";
        if (fp16) s += " + fp16_mixed";
        if (bf16) s += " + bf16_mixed";
        return s;
    }

    /// The step milestones (epochs), for lr::step.
    static constexpr auto milestones() noexcept {
        if constexpr (step) return schedule_policy::milestones;
        else return static_cast<const int*>(nullptr);
    }
    static constexpr int milestone_count() noexcept {
        if constexpr (step) return schedule_policy::count;
        else return 0;
    }
};

}  // namespace tricks
