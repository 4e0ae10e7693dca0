#pragma once
// Parameters tagged by role, and the per-step context layers receive.
// Policies act on roles (docs/design.md, "Training"): no_bias_decay skips `bias` and `bn_*`;
// zero_gamma zeroes the `bn_gamma` of the last BN of each residual branch.
#include <cstdint>
#include <string_view>

#include "tricks/backend/conv_algo.hpp"
#include "tricks/core/dtype.hpp"
#include "tricks/core/tensor.hpp"
#include "tricks/nn/arena.hpp"

namespace tricks::distributed {
class communicator;
}

namespace tricks::nn {

enum class role : std::uint8_t { weight, bias, bn_gamma, bn_beta };

constexpr std::string_view role_name(role r) noexcept {
    switch (r) {
        case role::weight:
            return "weight";
        case role::bias:
            return "bias";
        case role::bn_gamma:
            return "bn_gamma";
        case role::bn_beta:
            return "bn_beta";
    }
    return "?";
}

/// A trainable tensor: FP32 value (the master copy under mixed precision) and its gradient.
struct parameter {
    role kind = role::weight;
    tensor<float> value, grad;
    void allocate(role r, int count) {
        kind = r;
        value.resize({1, 1, 1, count});
        grad.resize({1, 1, 1, count});
        value.zero();
        grad.zero();
    }
};

/// Told by each layer's backward pass when the gradients of its parameters are final (the trainer's
/// data-parallel gradient buckets start their sums from it while the backward pass goes on).
struct gradient_sink {
    virtual void ready(parameter& p) = 0;

protected:
    ~gradient_sink() = default;
};

enum class mode : std::uint8_t { train, eval };

/// Storage precision of activations and weights as seen by the kernels. FP32 accumulation always.
enum class storage : std::uint8_t { fp32, fp16, bf16 };

/// What one forward/backward pass needs to know besides its inputs.
struct context {
    mode phase = mode::train;
    storage store = storage::fp32;
    /// Run a batch_norm and the relu after it (in a sequential) as one kernel. The values are the
    /// same either way; false runs them layer by layer (A/B checks and benchmarks).
    bool fuse = true;
    /// The CPU convolutions' algorithm (backend/conv_algo.hpp): Winograd for 3x3 stride-1 layers by default.
    backend::conv_algo conv = backend::conv_algo::winograd;
    /// Nonzero: the caller promises that every weight is what it was in the earlier forwards with this
    /// value, so a convolution may keep its transformed filter (backend::host::prepared_filter) from one call
    /// to the next. models::inference_pool's copies run with one fresh value per load(). 0 (training,
    /// where every step moves the weights): no promise, the filter is transformed on every call.
    std::uint64_t weights_version = 0;
    /// Non-null in training: batch norms take their statistics over every rank of this
    /// communicator's batches (synchronised batch norm, options::sync_batch_norm).
    distributed::communicator* sync_batch_norm = nullptr;
    /// Non-null in data-parallel training: told of every parameter whose gradient a backward pass
    /// has finished.
    gradient_sink* gradients = nullptr;
    /// Non-null: in evaluation mode the layers' outputs borrow their buffers from this arena and the
    /// composites give an inner output back once it has been read (nn/arena.hpp); no backward pass may
    /// follow such a forward (the composites refuse it). In any mode the backward pass's input
    /// gradients borrow from it the same way. Same values. models::inference_pool's copies run
    /// with one arena each, the CPU trainer with one.
    activation_arena* arena = nullptr;

    /// Tells `gradients` (if any) that `p`'s gradient is final for this step.
    void gradient_ready(parameter& p) const {
        if (gradients != nullptr) gradients->ready(p);
    }

    /// Whether evaluation runs its batch norms, ReLUs and residual adds inside the convolutions'
    /// epilogues (evaluation with FP32 storage and `fuse`); the values are the layer-by-layer ones.
    [[nodiscard]] bool folds_into_convolutions() const noexcept {
        return fuse && phase == mode::eval && store == storage::fp32;
    }

    /// Whether this forward lends activations through `arena` (set, in evaluation mode).
    [[nodiscard]] bool lends() const noexcept { return arena != nullptr && phase == mode::eval; }
    /// Gives a layer's output t the shape s: through `arena` when the forward lends, else t.resize(s).
    void output(tensor<float>& t, shape4 s) const {
        if (lends())
            arena->take(t, s);
        else
            t.resize(s);
    }
    /// A composite's inner output t has been read for the last time in this forward: back to the
    /// arena when the forward lends. t is a layer's own (non-const) buffer, never the caller's input.
    void done_with(const tensor<float>& t) const {
        if (lends()) arena->give(const_cast<tensor<float>&>(t));
    }
    /// The backward pass lends its gradients whenever `arena` is set (training: the forward's
    /// outputs stay with their layers, which their backward passes read; each input gradient is read
    /// once, by the layer before).
    /// Gives a layer's input gradient t the shape s: through `arena` when set, else t.resize(s).
    void gradient(tensor<float>& t, shape4 s) const {
        if (arena != nullptr)
            arena->take(t, s);
        else
            t.resize(s);
    }
    /// A composite's inner gradient t has been read for the last time in this backward: back to the
    /// arena when set. t is a layer's own buffer, never the caller's output gradient.
    void done_with_gradient(const tensor<float>& t) const {
        if (arena != nullptr) arena->give(const_cast<tensor<float>&>(t));
    }

    /// Rounds a freshly written activation/gradient tensor to the storage precision: the values a
    /// later layer reads are exactly those an FP16 (or BF16) buffer would hold.
    void round(tensor<float>& t) const noexcept {
        if (store == storage::fp32) return;
        float* p = t.data();
        const std::size_t n = t.size();
        if (store == storage::fp16)
            for (std::size_t i = 0; i < n; ++i) p[i] = round_to<half>(p[i]);
        else
            for (std::size_t i = 0; i < n; ++i) p[i] = round_to<bfloat16>(p[i]);
    }
};

}  // namespace tricks::nn
