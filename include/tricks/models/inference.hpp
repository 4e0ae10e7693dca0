#pragma once
// inference_pool<Model>: the evaluation-mode forward of a batch with no barrier between layers.
// model.forward(x, eval) splits every layer over the threads, so the threads meet once per layer
// (~60 times per batch for cifar_resnet<20>) and each layer's whole-batch activations travel
// through L3. Here every thread runs its own copy of the model (the same parameters and batch-norm
// statistics) over sub-batches of `chunk` images, taken in turn: a sub-batch's activations stay in
// the core's L2 and the threads only meet at the end.
//
// Each image's outputs are the same bits as model.forward(x, eval) gives: in evaluation mode no
// kernel mixes images, and none changes its summation order with the batch size (test_inference).
//
//   tricks::models::inference_pool<net> pool;   // chunk = 8 images
//   pool.load(model);                           // after training, or whenever the weights change
//   const tensor<float>& logits = pool.forward(x, {.phase = nn::mode::eval});
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

#include "tricks/backend/cpu/workspace.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/tensor.hpp"
#include "tricks/nn/parameter.hpp"

namespace tricks::models {

template <class Model>
class inference_pool {
public:
    /// `chunk`: images per sub-batch. 8 measured fastest for the main job's net on 2 threads (4 and 16
    /// were 3-10% slower): a 28x28x16 activation of 8 images is 400 KB, well inside a 1-2 MB L2.
    explicit inference_pool(int chunk = 8) : chunk_(chunk) {
        require<error>(chunk >= 1, "tricks::inference_pool: chunk must be >= 1, got ", chunk);
    }

    /// Takes a snapshot of `m`'s parameter values and buffers (batch-norm running statistics); the
    /// copies pick it up on their next forward. Call it again whenever `m`'s weights change.
    void load(Model& m) {
        snapshot_.clear();
        m.for_each_parameter([&](nn::parameter& p) { append(p.value); });
        m.for_each_buffer([&](tensor<float>& b) { append(b); });
        // Unique over every pool in the process: the copies' convolutions key their transformed
        // filters by it (nn::context::weights_version).
        static std::atomic<std::uint64_t> loads{0};
        generation_ = ++loads;
    }

    /// Evaluation-mode outputs of the batch x (the shape model.forward(x, eval) returns).
    const tensor<float>& forward(const tensor<float>& x, const nn::context& ctx) {
        require<error>(generation_ > 0, "tricks::inference_pool: forward() before load()");
        require<error>(ctx.phase == nn::mode::eval,
                       "tricks::inference_pool: evaluation mode only (training-mode batch norm needs the whole batch's statistics)");
        const shape4 in = x.shape();
        require<shape_error>(in.n > 0 && in.c == Model::in_channels, "tricks::inference_pool: expected a non-empty batch with ",
                             Model::in_channels, " channels, got ", in);
        const int chunks = (in.n + chunk_ - 1) / chunk_;
        const int threads = std::min(backend::max_threads(), chunks);
        while (static_cast<int>(copies_.size()) < threads) copies_.push_back(std::make_unique<replica>());
        for (int t = 0; t < threads; ++t) refresh(*copies_[static_cast<std::size_t>(t)]);
        nn::context run = ctx;
        run.weights_version = generation_;  // the copies' weights stay as loaded until the next load()
        const std::size_t image = static_cast<std::size_t>(in.h) * in.w * in.c;
        const dims od = Model::out_dims({in.h, in.w});
        y_.resize({in.n, od.h, od.w, Model::out_channels});
        const std::size_t out_image = static_cast<std::size_t>(od.h) * od.w * Model::out_channels;
        std::vector<std::exception_ptr> failed(static_cast<std::size_t>(threads));
#pragma omp parallel num_threads(threads)
        {
            const std::size_t t = static_cast<std::size_t>(omp_get_thread_num());
            omp_set_num_threads(1);  // the kernels' own parallel regions run on this thread alone
            replica& r = *copies_[t];
#pragma omp for schedule(dynamic, 1)
            for (int c = 0; c < chunks; ++c) {
                if (failed[t]) continue;
                try {
                    const int b = c * chunk_, n = std::min(in.n, b + chunk_) - b;
                    r.x.resize({n, in.h, in.w, in.c});
                    std::memcpy(r.x.data(), x.data() + static_cast<std::size_t>(b) * image, static_cast<std::size_t>(n) * image * sizeof(float));
                    const tensor<float>& y = r.model->forward(r.x, run);
                    require<shape_error>(y.size() == static_cast<std::size_t>(n) * out_image, "tricks::inference_pool: output ", y.shape(),
                                         " is not ", n, " x ", od.h, " x ", od.w, " x ", Model::out_channels);
                    std::memcpy(y_.data() + static_cast<std::size_t>(b) * out_image, y.data(), y.size() * sizeof(float));
                } catch (...) {
                    failed[t] = std::current_exception();
                }
            }
        }
        for (auto& e : failed)
            if (e) std::rethrow_exception(e);
        return y_;
    }

    [[nodiscard]] int chunk() const noexcept { return chunk_; }

private:
    struct replica {
        std::unique_ptr<Model> model = std::make_unique<Model>();
        tensor<float> x;
        std::uint64_t generation = 0;
    };
    void append(const tensor<float>& t) { snapshot_.insert(snapshot_.end(), t.data(), t.data() + t.size()); }
    void refresh(replica& r) const {
        if (r.generation == generation_) return;
        std::size_t at = 0;
        auto take = [&](tensor<float>& t) {
            require<error>(at + t.size() <= snapshot_.size(), "tricks::inference_pool: the loaded model does not match the pool's model type");
            std::copy_n(snapshot_.data() + at, t.size(), t.data());
            at += t.size();
        };
        r.model->for_each_parameter([&](nn::parameter& p) { take(p.value); });
        r.model->for_each_buffer(take);
        require<error>(at == snapshot_.size(), "tricks::inference_pool: the loaded model does not match the pool's model type");
        r.generation = generation_;
    }

    int chunk_;
    std::uint64_t generation_ = 0;
    std::vector<float> snapshot_;
    std::vector<std::unique_ptr<replica>> copies_;
    tensor<float> y_;
};

}  // namespace tricks::models
