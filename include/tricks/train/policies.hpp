#pragma once
// The training tricks as policy types (paper §3 and §5). The type chooses the mechanism; the
// numbers live in `tricks::options` with the paper's defaults and can be changed at run time.
#include <concepts>
#include <type_traits>

namespace tricks {

/// The kinds of training policy. A recipe holds at most one policy of each kind; a policy type
/// says its kind by deriving from policy<Kind> (see core/kinds.hpp). A new kind is a new tag here.
namespace policy_kind {
struct any {};  // the family: every kind below derives from it
struct optimizer : any {};
struct scaling : any {};
struct warmup : any {};
struct schedule : any {};
struct decay_rule : any {};
struct smoothing : any {};
struct distill : any {};
struct mixing : any {};
struct precision : any {};
}  // namespace policy_kind

/// The base of every training policy type: its kind.
template <class Kind>
requires std::derived_from<Kind, policy_kind::any>
struct policy {
    using kind = Kind;
};

/// A compile-time epoch count, e.g. lr::warmup<epochs<5>>.
template <int N>
struct epochs {
    static_assert(N >= 0, "tricks::epochs: the count must be non-negative");
    static constexpr int value = N;
};

namespace optim {
/// Nesterov momentum for sgd (Sutskever et al. 2013), as PyTorch's SGD(nesterov=True).
struct nesterov {};
/// SGD with momentum (default 0.9) and weight decay added to the gradient:
///   g = grad + wd * w;  v = mu * v + g;  w -= lr * (nesterov ? g + mu * v : v)
template <class... Options>
struct sgd : policy<policy_kind::optimizer> {
    static_assert(((std::is_same_v<Options, nesterov>)&&...),
                  "tricks::optim::sgd: unknown option; valid options are optim::nesterov");
    static constexpr bool is_nesterov = (std::is_same_v<Options, nesterov> || ...);
};
}  // namespace optim

namespace lr {
/// Linear scaling rule (paper §3.1): lr = base_lr * batch / B, with B = 256 in the paper.
template <int B = 256>
struct linear_scaling : policy<policy_kind::scaling> {
    static_assert(B > 0, "tricks::lr::linear_scaling: the reference batch size must be positive");
    static constexpr int reference_batch = B;
};
/// Learning-rate warmup (paper §3.1): linear from 0 to the initial lr over the first m epochs,
/// applied per iteration.
template <class E = epochs<5>>
struct warmup : policy<policy_kind::warmup> {
    static constexpr int default_epochs = E::value;
};
/// Cosine decay (paper §5.1, eq. 1): lr_t = 1/2 (1 + cos(t pi / T)) lr, per iteration, after warmup.
struct cosine : policy<policy_kind::schedule> {};
/// Step decay (the paper's baseline): lr x 0.1 at each of the given epochs.
template <class... Milestones>
struct step : policy<policy_kind::schedule> {
    static constexpr int milestones[] = {Milestones::value..., -1};
    static constexpr int count = sizeof...(Milestones);
};
}  // namespace lr

namespace decay {
/// No bias decay (paper §3.1): weight decay on conv and linear weights only; biases and BN
/// gamma/beta get none.
struct no_bias_decay : policy<policy_kind::decay_rule> {};
}  // namespace decay

namespace loss {
/// Label smoothing (paper §5.2): target 1 - e for the true class, e / (K - 1) elsewhere; e = 0.1.
struct label_smoothing : policy<policy_kind::smoothing> {};
/// Knowledge distillation (paper §5.3): loss = CE(p, softmax(z)) + T^2 CE(softmax(r/T), softmax(z/T)),
/// r the logits of a Teacher model (loaded from a checkpoint, run in evaluation mode); T = 20.
template <class Teacher = void>
struct distill : policy<policy_kind::distill> {
    using teacher = Teacher;
};
}  // namespace loss

namespace mix {
/// Mixup (paper §5.4): lambda ~ Beta(alpha, alpha), alpha = 0.2; inputs and targets are mixed with
/// the same lambda over a shuffled pairing of the batch.
struct mixup : policy<policy_kind::mixing> {};
}  // namespace mix

namespace precision {
/// FP32 everywhere (default).
struct fp32 : policy<policy_kind::precision> {};
/// FP16 weights/activations/gradients with FP32 accumulation, FP32 master weights, dynamic loss
/// scaling (paper §3.2, after Micikevicius et al. 2018).
struct fp16_mixed : policy<policy_kind::precision> {};
/// BF16 storage with FP32 master weights; BF16 has FP32's exponent range, so no loss scaling.
struct bf16_mixed : policy<policy_kind::precision> {};
}  // namespace precision

}  // namespace tricks
