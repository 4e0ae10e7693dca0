#pragma once
// inference_pool<Model>: the evaluation-mode forward of a batch with no barrier between layers.
// model.forward(x, eval) splits every layer over the threads, so the threads meet once per layer
// (~60 times per batch for cifar_resnet<20>) and each layer's whole-batch activations travel
// through L3. Here every thread runs its own copy of the model (the same parameters and batch-norm
// statistics) over sub-batches of a few images, taken in turn: a sub-batch's activations stay in the
// core's L2, the threads only meet at the end, and the copies keep their convolutions' transformed
// filters from one sub-batch (and one call) to the next until the next load().
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

    /// Takes a snapshot of `m`'s parameter values, buffers (batch-norm running statistics) and
    /// batch-norm settings; the copies pick it up on their next forward. Call it again whenever `m`'s
    /// weights change.
    void load(Model& m) {
        snapshot_.clear();
        m.for_each_parameter([&](nn::parameter& p) { append(p.value); });
        m.for_each_buffer([&](tensor<float>& b) { append(b); });
        settings_.clear();
        detail::bn_settings(m, settings_);
        // The copies' convolutions key their transformed filters by it (nn::context::weights_version).
        generation_ = detail::next_weights_version();
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
        // The copies' buffers grew to the largest candidate: new copies, sized by the pick, are made on
        // the next call (a copy's arena holds the activations alive at one time for its largest
        // sub-batch, and the copy the weights and transformed filters: docs/design.md, "Measurements").
        copies_.clear();
        return y_;  // every candidate wrote the same bits
    }

    /// The sub-batch size the last forward() used (the measured choice when constructed with 0).
    [[nodiscard]] int chunk() const noexcept { return last_chunk_; }

private:
    struct tuned {
        int h, w, threads, most, chunk;
    };

    const tensor<float>& run(const tensor<float>& x, const nn::context& ctx, int chunk) {
        const shape4 in = x.shape();
        last_chunk_ = chunk;
        const int chunks = (in.n + chunk - 1) / chunk;
        const int threads = std::min(backend::host::max_threads(), chunks);
        while (static_cast<int>(copies_.size()) < threads) {
            copies_.push_back(std::make_unique<replica>());
            copies_.back()->model->for_each_parameter(
                [](nn::parameter& p) { p.grad = tensor<float>(); });  // never trained
        }
        for (int t = 0; t < threads; ++t) refresh(*copies_[static_cast<std::size_t>(t)]);
        nn::context copy_ctx = ctx;
        copy_ctx.weights_version = generation_;  // the copies' weights stay as loaded until the next load()
        const std::size_t image = static_cast<std::size_t>(in.h) * in.w * in.c;
        const dims od = Model::out_dims({in.h, in.w});
        y_.resize({in.n, od.h, od.w, Model::out_channels});
        const std::size_t out_image = static_cast<std::size_t>(od.h) * od.w * Model::out_channels;
        if (chunks == 1 && backend::host::max_threads() > 1) {
            // One sub-batch (a batch smaller than the sub-batch size, batch 1 included): one copy runs it
            // with every thread inside its kernels, whose tiles, and so bits, follow the shapes only.
            copy_ctx.arena = &copies_[0]->arena;
            const tensor<float>& y = copies_[0]->model->forward(x, copy_ctx);  // the caller's batch as is
            require<shape_error>(y.size() == y_.size(), "tricks::inference_pool: output ", y.shape(), " is not ",
                                 y_.shape());
            std::memcpy(y_.data(), y.data(), y.size() * sizeof(float));
            return y_;
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
            for (int c = 0; c < chunks; ++c) {
                if (failed_[t]) continue;
                try {
                    const int b = c * chunk, n = std::min(in.n, b + chunk) - b;
                    r.x.resize({n, in.h, in.w, in.c});
                    std::memcpy(r.x.data(), x.data() + static_cast<std::size_t>(b) * image,
                                static_cast<std::size_t>(n) * image * sizeof(float));
                    const tensor<float>& y = r.model->forward(r.x, own);
                    require<shape_error>(y.size() == static_cast<std::size_t>(n) * out_image,
                                         "tricks::inference_pool: output ", y.shape(), " is not ", n, " x ", od.h,
                                         " x ", od.w, " x ", Model::out_channels);
                    std::memcpy(y_.data() + static_cast<std::size_t>(b) * out_image, y.data(),
                                y.size() * sizeof(float));
                } catch (...) {
                    failed_[t] = std::current_exception();
                }
            }
        }
        for (auto& e : failed_)
            if (e) std::rethrow_exception(e);
        return y_;
    }

    struct replica {
        std::unique_ptr<Model> model = std::make_unique<Model>();
        tensor<float> x;
        nn::activation_arena arena;  // the copy's activations, lent from layer to layer (nn/arena.hpp)
        std::uint64_t generation = 0;
    };
    void append(const tensor<float>& t) { snapshot_.insert(snapshot_.end(), t.data(), t.data() + t.size()); }
    void refresh(replica& r) const {
        if (r.generation == generation_) return;
        std::size_t at = 0;
        auto take = [&](tensor<float>& t) {
            require<error>(at + t.size() <= snapshot_.size(),
                           "tricks::inference_pool: the loaded model does not match the pool's model type");
            std::copy_n(snapshot_.data() + at, t.size(), t.data());
            at += t.size();
        };
        r.model->for_each_parameter([&](nn::parameter& p) { take(p.value); });
        r.model->for_each_buffer(take);
        require<error>(at == snapshot_.size(),
                       "tricks::inference_pool: the loaded model does not match the pool's model type");
        detail::set_bn_settings(*r.model, settings_);
        r.generation = generation_;
    }

    int fixed_, last_chunk_ = 0;
    std::vector<tuned> tuned_;
    std::uint64_t generation_ = 0;
    std::vector<float> snapshot_, settings_;
    std::vector<std::unique_ptr<replica>> copies_;
    std::vector<std::exception_ptr> failed_;  // per thread, the error of its last sub-batch
    tensor<float> y_;
};

}  // namespace tricks::models
