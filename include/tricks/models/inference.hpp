#pragma once
// inference_pool<Model>: the evaluation-mode forward of a batch with no barrier between layers.
// model.forward(x, eval) splits every layer over the threads, so the threads meet once per layer
// (~60 times per batch for cifar_resnet<20>) and each layer's whole-batch activations travel
// through L3. Here every thread runs its own copy of the model (the same parameters and batch-norm
// statistics) over sub-batches of a few images, taken in turn: a sub-batch's activations stay in the
// core's L2, the threads only meet at the end, and the convolutions' prepared filters (Winograd's
// transformed 3x3 filters, the wide layers' GEMM panels) are kept from one sub-batch (and one call) to
// the next until the next load(): one set, made by the first copy (on a first sub-batch it runs
// alone) and read by the others.
//
// Each image's outputs are the same bits as model.forward(x, eval) gives: in evaluation mode no
// kernel mixes images, and none changes its summation order with the batch size (tests: test_models'
// inference_pool cases, test_cpu_kernels' "same bits in any batch").
//
//   tricks::models::inference_pool<net> pool;   // sub-batch size measured on the first batch
//   pool.load(model);                           // after training, or whenever the weights change
//   const tensor<float>& logits = pool.forward(x, {.phase = nn::mode::eval});
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#include "tricks/backend/cpu/workspace.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/tensor.hpp"
#include "tricks/nn/parameter.hpp"
#include "tricks/nn/visit.hpp"

namespace tricks::models {

namespace detail {
/// A fresh nn::context::weights_version for each load() of any pool in the process.
inline std::uint64_t next_weights_version() noexcept {
    static std::atomic<std::uint64_t> loads{0};
    return ++loads;
}

/// Calls f on every layer of l, l included, depth first in forward order (nn::Composite's
/// for_each_child; a model is its body).
template <class L, class F>
void visit_layers(L& l, F& f) {
    f(l);
    if constexpr (nn::model_type<L>)
        visit_layers(static_cast<typename L::body_type&>(l), f);
    else if constexpr (nn::Composite<L>)
        l.for_each_child([&](auto& c) { visit_layers(c, f); });
}

/// Every batch norm's run-time settings (eps, momentum): not parameters or buffers, so not in the
/// snapshot, but eps enters the evaluation.
template <class Model>
void bn_settings(Model& m, std::vector<float>& out) {
    auto f = [&](auto& l) {
        if constexpr (nn::is_batch_norm_v<std::remove_cvref_t<decltype(l)>>)
            out.push_back(l.eps), out.push_back(l.momentum);
    };
    visit_layers(m, f);
}
/// Every layer of m with a prepared filter to share (nn::conv), in visit order.
template <class L>
concept shares_prepared_filter = requires(L& l) {
    l.share_prepared_filter(&l);
};

/// Makes every convolution of `copy` read the prepared filter of the same convolution of `source` (a
/// model of the same type, so the i-th such layer of each has the same type).
template <class Model>
void share_prepared_filters(Model& copy, Model& source) {
    std::vector<void*> from;
    auto collect = [&](auto& l) {
        if constexpr (shares_prepared_filter<std::remove_cvref_t<decltype(l)>>) from.push_back(&l);
    };
    visit_layers(source, collect);
    std::size_t i = 0;
    auto link = [&](auto& l) {
        using L = std::remove_cvref_t<decltype(l)>;
        if constexpr (shares_prepared_filter<L>) l.share_prepared_filter(static_cast<const L*>(from[i++]));
    };
    visit_layers(copy, link);
}

/// Floats held by the prepared filters of m's own convolutions.
template <class Model>
std::size_t prepared_floats(Model& m) {
    std::size_t n = 0;
    auto add = [&](auto& l) {
        if constexpr (shares_prepared_filter<std::remove_cvref_t<decltype(l)>>) n += l.prepared_floats();
    };
    visit_layers(m, add);
    return n;
}

template <class Model>
void set_bn_settings(Model& m, const std::vector<float>& in) {
    std::size_t i = 0;
    auto f = [&](auto& l) {
        if constexpr (nn::is_batch_norm_v<std::remove_cvref_t<decltype(l)>>)
            l.eps = in[i], l.momentum = in[i + 1], i += 2;
    };
    visit_layers(m, f);
}
}  // namespace detail

template <class Model>
class inference_pool {
public:
    /// `chunk`: images per sub-batch, or 0 to measure the candidates (2, 4, 8, 16 images) on the
    /// first batch of each image size and thread count, and keep the fastest. The best size follows
    /// the network (the main job's net prefers a few images, its width<32> variant 8-16: docs/design.md,
    /// "Measurements"): small sub-batches keep the activations in L2, large ones read the transformed
    /// filters (36 x cin x cout floats per 3x3 layer) fewer times. Every size gives the same bits, so
    /// the choice is speed only.
    explicit inference_pool(int chunk = 0) : fixed_(chunk) {
        require<error>(chunk >= 0, "tricks::inference_pool: chunk must be >= 1 (or 0: measure), got ", chunk);
    }

    /// Copies `m`'s parameter values, buffers (batch-norm running statistics) and batch-norm settings
    /// into the pool's first copy of the model (the snapshot the pool runs; `m` may change or go away
    /// after); the other copies take them from it on their next forward. Call it again whenever `m`'s
    /// weights change.
    void load(Model& m) {
        if (copies_.empty()) copies_.push_back(new_copy());
        // The convolutions key their prepared filters by it (nn::context::weights_version).
        generation_ = detail::next_weights_version();
        copy_weights(m, *copies_[0]);
    }

    /// Evaluation-mode outputs of the batch x (the shape model.forward(x, eval) returns).
    const tensor<float>& forward(const tensor<float>& x, const nn::context& ctx) {
        require<error>(generation_ > 0, "tricks::inference_pool: forward() before load()");
        require<error>(ctx.phase == nn::mode::eval,
                       "tricks::inference_pool: evaluation mode only (training-mode batch norm needs the whole batch's "
                       "statistics)");
        const shape4 in = x.shape();
        require<shape_error>(in.n > 0 && in.c == Model::in_channels,
                             "tricks::inference_pool: expected a non-empty batch with ", Model::in_channels,
                             " channels, got ", in);
        if (fixed_ > 0) return run(x, ctx, fixed_);
        const int threads = backend::host::max_threads();
        // Up to 16 images (32 was no faster anywhere measured, and every copy keeps buffers for its
        // largest sub-batch), and no more than a thread's share of the batch: beyond it threads idle.
        const int most = std::min(16, (in.n + threads - 1) / threads);
        const tuned key{in.h, in.w, threads, most, 0};  // a small batch does not decide for larger ones
        for (const auto& t : tuned_)
            if (t.h == key.h && t.w == key.w && t.threads == key.threads && t.most == key.most)
                return run(x, ctx, t.chunk);
        std::vector<int> candidates;
        for (int c = 2; c <= most; c *= 2) candidates.push_back(c);
        if (candidates.size() < 2) {  // nothing to choose from
            tuned_.push_back({in.h, in.w, threads, most, most});
            return run(x, ctx, most);
        }
        // Measure: each candidate twice, in turn (the machine's speed drifts), the best time of each.
        std::vector<double> best(candidates.size(), 1e300);
        for (int round = 0; round < 2; ++round)
            for (std::size_t i = 0; i < candidates.size(); ++i) {
                const auto t0 = std::chrono::steady_clock::now();
                (void)run(x, ctx, candidates[i]);
                best[i] =
                    std::min(best[i], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
        tuned pick = key;
        pick.chunk = candidates[static_cast<std::size_t>(std::min_element(best.begin(), best.end()) - best.begin())];
        tuned_.push_back(pick);
        last_chunk_ = pick.chunk;
        // The copies' buffers grew to the largest candidate: the first copy (the loaded weights and the
        // prepared filters) lets its arena's buffers go, and new copies, sized by the pick, are made on
        // the next call (a copy's arena holds the activations alive at one time for its largest
        // sub-batch: docs/design.md, "Measurements").
        copies_.resize(1);
        copies_[0]->arena.clear();
        copies_[0]->x = tensor<float>();
        return y_;  // every candidate wrote the same bits
    }

    /// The sub-batch size the last forward() used (the measured choice when constructed with 0).
    [[nodiscard]] int chunk() const noexcept { return last_chunk_; }

    /// Per copy of the model, the floats its convolutions hold in prepared filters of their own: the
    /// first copy prepares them, the others read the first copy's (so theirs stay 0).
    [[nodiscard]] std::vector<std::size_t> prepared_floats() const {
        std::vector<std::size_t> n;
        for (const auto& r : copies_) n.push_back(detail::prepared_floats(*r->model));
        return n;
    }

private:
    struct tuned {
        int h, w, threads, most, chunk;
    };
    /// What the prepared filters follow: the weights, each layer's image size, precision, algorithm.
    struct prepared_key {
        std::uint64_t generation = 0;
        int h = 0, w = 0;
        nn::storage store = nn::storage::fp32;
        backend::conv_algo conv = backend::conv_algo::winograd;
        bool operator==(const prepared_key&) const = default;
    };
    struct replica {
        std::unique_ptr<Model> model = std::make_unique<Model>();
        tensor<float> x;
        nn::activation_arena arena;  // the copy's activations, lent from layer to layer (nn/arena.hpp)
        std::uint64_t generation = 0;
        prepared_key prepared;  // the first copy: what its prepared filters were made for
    };

    const tensor<float>& run(const tensor<float>& x, const nn::context& ctx, int chunk) {
        const shape4 in = x.shape();
        last_chunk_ = chunk;
        const int chunks = (in.n + chunk - 1) / chunk;
        const int threads = std::min(backend::host::max_threads(), chunks);
        while (static_cast<int>(copies_.size()) < threads) {
            copies_.push_back(new_copy());
            // One set of prepared filters (Winograd's 36 x cin x cout per 3x3 layer, the wide layers'
            // GEMM panels: 2.2x the weights for ResNet-50 at 224) for all copies: the first copy's.
            detail::share_prepared_filters(*copies_.back()->model, *copies_[0]->model);
        }
        for (int t = 1; t < threads; ++t) {  // the loaded weights, from the first copy
            replica& r = *copies_[static_cast<std::size_t>(t)];
            if (r.generation != generation_) copy_weights(*copies_[0]->model, r);
        }
        nn::context copy_ctx = ctx;
        copy_ctx.weights_version = generation_;  // the copies' weights stay as loaded until the next load()
        const dims od = Model::out_dims({in.h, in.w});
        y_.resize({in.n, od.h, od.w, Model::out_channels});
        const prepared_key key{generation_, in.h, in.w, ctx.store, ctx.conv};
        if (chunks == 1 && backend::host::max_threads() > 1) {
            // One sub-batch (a batch smaller than the sub-batch size, batch 1 included): one copy runs it
            // with every thread inside its kernels, whose tiles, and so bits, follow the shapes only.
            copy_ctx.arena = &copies_[0]->arena;
            copies_[0]->prepared = {};  // until it has run: a throw part-way leaves some layers re-prepared
            const tensor<float>& y = copies_[0]->model->forward(x, copy_ctx);  // the caller's batch as is
            require<shape_error>(y.size() == y_.size(), "tricks::inference_pool: output ", y.shape(), " is not ",
                                 y_.shape());
            std::memcpy(y_.data(), y.data(), y.size() * sizeof(float));
            copies_[0]->prepared = key;
            return y_;
        }
        // The other copies read the first copy's prepared filters, which must be complete before they
        // start: after a load(), a new first copy or a new image size or precision, the first copy runs
        // the first sub-batch alone (every thread inside its kernels; the same bits), preparing them.
        int from = 0;
        if (!(copies_[0]->prepared == key)) {
            copy_ctx.arena = &copies_[0]->arena;
            copies_[0]->prepared = {};  // until it has run: a throw part-way leaves some layers re-prepared
            write_chunk(*copies_[0], x, copy_ctx, 0, chunk);
            copies_[0]->prepared = key;
            from = 1;
        }
        failed_.assign(static_cast<std::size_t>(threads), nullptr);  // kept: no allocation per batch
#pragma omp parallel num_threads(threads)
        {
            const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
            omp_set_num_threads(1);  // the kernels' own parallel regions run on this thread alone
            replica& r = *copies_[t];
            nn::context own = copy_ctx;
            own.arena = &r.arena;
#pragma omp for schedule(dynamic, 1)
            for (int c = from; c < chunks; ++c) {
                if (failed_[t]) continue;
                try {
                    write_chunk(r, x, own, c, chunk);
                } catch (...) {
                    failed_[t] = std::current_exception();
                }
            }
        }
        for (auto& e : failed_)
            if (e) std::rethrow_exception(e);
        return y_;
    }

    /// Runs sub-batch c (images c * chunk ...) of x on copy r and writes its outputs into y_.
    void write_chunk(replica& r, const tensor<float>& x, const nn::context& ctx, int c, int chunk) {
        const shape4 in = x.shape();
        const std::size_t image = static_cast<std::size_t>(in.h) * in.w * in.c;
        const dims od = Model::out_dims({in.h, in.w});
        const std::size_t out_image = static_cast<std::size_t>(od.h) * od.w * Model::out_channels;
        const int b = c * chunk, n = std::min(in.n, b + chunk) - b;
        r.x.resize({n, in.h, in.w, in.c});
        std::memcpy(r.x.data(), x.data() + static_cast<std::size_t>(b) * image,
                    static_cast<std::size_t>(n) * image * sizeof(float));
        const tensor<float>& y = r.model->forward(r.x, ctx);
        require<shape_error>(y.size() == static_cast<std::size_t>(n) * out_image, "tricks::inference_pool: output ",
                             y.shape(), " is not ", n, " x ", od.h, " x ", od.w, " x ", Model::out_channels);
        std::memcpy(y_.data() + static_cast<std::size_t>(b) * out_image, y.data(), y.size() * sizeof(float));
    }

    static std::unique_ptr<replica> new_copy() {
        auto r = std::make_unique<replica>();
        r->model->for_each_parameter([](nn::parameter& p) { p.grad = tensor<float>(); });  // never trained
        return r;
    }
    /// `from`'s parameter values, buffers and batch-norm settings into copy r (of the current load).
    void copy_weights(Model& from, replica& r) {
        std::vector<const tensor<float>*> src;
        from.for_each_parameter([&](nn::parameter& p) { src.push_back(&p.value); });
        from.for_each_buffer([&](tensor<float>& b) { src.push_back(&b); });
        std::size_t i = 0;
        auto take = [&](tensor<float>& t) {
            require<error>(i < src.size() && src[i]->size() == t.size(),
                           "tricks::inference_pool: the loaded model does not match the pool's model type");
            std::copy_n(src[i++]->data(), t.size(), t.data());
        };
        r.model->for_each_parameter([&](nn::parameter& p) { take(p.value); });
        r.model->for_each_buffer(take);
        require<error>(i == src.size(),
                       "tricks::inference_pool: the loaded model does not match the pool's model type");
        settings_.clear();
        detail::bn_settings(from, settings_);
        detail::set_bn_settings(*r.model, settings_);
        r.generation = generation_;
    }

    int fixed_, last_chunk_ = 0;
    std::vector<tuned> tuned_;
    std::uint64_t generation_ = 0;
    std::vector<float> settings_;  // scratch of copy_weights
    std::vector<std::unique_ptr<replica>> copies_;
    std::vector<std::exception_ptr> failed_;  // per thread, the error of its last sub-batch
    tensor<float> y_;
};

}  // namespace tricks::models
