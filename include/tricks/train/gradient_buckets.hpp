#pragma once
// The CPU trainer's data-parallel gradient sums, in buckets started while the backward pass goes on
// (docs/design.md, "Data-parallel training"). A bucket holds consecutive parameters in backward
// order; the layers tell the trainer (nn::context::gradients) when a parameter's gradient is final,
// and a bucket's sum starts (communicator::start_sum) as soon as all of its parameters are. The sums
// are element-wise, so the bits are those of one sum of one buffer, whatever the bucketing.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <unordered_map>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/core/tensor.hpp"
#include "tricks/distributed/communicator.hpp"
#include "tricks/nn/parameter.hpp"

namespace tricks::detail {

class gradient_buckets final : public nn::gradient_sink {
public:
    /// A bucket closes once it holds at least this many values (1 MiB of FP32): large enough that
    /// a sum's latency is small against its bytes, small enough that the first sums start early
    /// in the backward pass.
    static constexpr std::size_t default_bucket_floats = std::size_t{1} << 18;

    explicit gradient_buckets(std::size_t bucket_floats = default_bucket_floats) : bucket_floats_(bucket_floats) {}
    gradient_buckets(const gradient_buckets&) = delete;
    gradient_buckets& operator=(const gradient_buckets&) = delete;
    /// A step left between begin() and finish() (an exception in the backward pass) has sums in
    /// flight that read and write this object's buffer, and the other ranks wait for the rest of
    /// them: the job cannot go on, so it ends on every rank with the reason.
    ~gradient_buckets() {
        if (in_flight_) unfinished("the trainer was destroyed");
    }

    /// Before a backward pass: `params` in the model's (forward) order, `buffers` (batch-norm
    /// running statistics, final after the forward pass: their bucket starts now; empty with
    /// synchronised batch norm). `ctx` rounds the gradients to the storage precision before they
    /// are sent (FP16/BF16 runs).
    void begin(distributed::communicator& comm, const nn::context& ctx, const std::vector<nn::parameter*>& params,
               const std::vector<tensor<float>*>& buffers) {
        if (in_flight_) unfinished("a new step began");
        comm_ = &comm;
        ctx_ = &ctx;
        in_flight_ = true;
        if (params != params_ || buffers != buffers_) plan(params, buffers);
        std::fill(filled_.begin(), filled_.end(), std::size_t{0});
        std::fill(started_.begin(), started_.end(), false);
        std::fill(seen_.begin(), seen_.end(), false);
        timed([&] {
            if (!buffers_.empty()) start(0);
        });
    }

    void ready(nn::parameter& p) override {
        const auto it = index_.find(&p);
        if (it == index_.end() || seen_[it->second]) return;
        seen_[it->second] = true;
        const std::size_t b = bucket_of_[it->second];
        timed([&] {
            if (++filled_[b] == buckets_[b].params.size()) start(b);
            comm_->progress();
        });
    }

    /// After the backward pass: starts the buckets some of whose parameters got no gradient
    /// (frozen stages), waits for every sum, and leaves each gradient and buffer as its mean over
    /// the `ranks`.
    void finish(int ranks) {
        timed([&] {
            for (std::size_t b = 0; b < buckets_.size(); ++b)
                if (!started_[b]) start(b);
            comm_->finish_sums();
        });
        in_flight_ = false;
        const auto n = static_cast<float>(ranks);
        const float* from = flat_.data();
        for (const bucket& k : buckets_) {
            for (nn::parameter* p : k.params)
                for (auto& v : p->grad.span()) v = *from++ / n;
            for (tensor<float>* t : k.buffers)
                for (auto& v : t->span()) v = *from++ / n;
        }
    }

    /// Wall seconds the training thread has spent in the communicator's calls (starting, advancing,
    /// and waiting at the end for the sums and the other ranks).
    [[nodiscard]] double seconds() const noexcept { return seconds_; }
    [[nodiscard]] std::size_t buckets() const noexcept { return buckets_.size(); }

private:
    struct bucket {
        std::vector<nn::parameter*> params;
        std::vector<tensor<float>*> buffers;
        std::size_t offset = 0, size = 0;  // in flat_
    };

    void plan(const std::vector<nn::parameter*>& params, const std::vector<tensor<float>*>& buffers) {
        params_ = params;
        buffers_ = buffers;
        buckets_.clear();
        index_.clear();
        bucket_of_.assign(params.size(), 0);
        std::size_t at = 0;
        const auto open = [&] {
            buckets_.push_back({});
            buckets_.back().offset = at;
        };
        if (!buffers.empty()) {  // bucket 0: the running statistics
            open();
            for (tensor<float>* t : buffers) {
                buckets_.back().buffers.push_back(t);
                at += t->size();
            }
            buckets_.back().size = at;
        }
        for (std::size_t i = params.size(); i-- > 0;) {  // backward order
            if (buckets_.empty() || !buckets_.back().buffers.empty() || buckets_.back().size >= bucket_floats_) open();
            bucket& k = buckets_.back();
            k.params.push_back(params[i]);
            k.size += params[i]->grad.size();
            at += params[i]->grad.size();
            bucket_of_[i] = buckets_.size() - 1;
            index_.emplace(params[i], i);
        }
        flat_.resize(at);
        filled_.assign(buckets_.size(), 0);
        started_.assign(buckets_.size(), false);
        seen_.assign(params.size(), false);
    }

    void start(std::size_t b) {
        bucket& k = buckets_[b];
        float* to = flat_.data() + k.offset;
        for (nn::parameter* p : k.params) {
            ctx_->round(p->grad);  // the gradient as an FP16/BF16 buffer holds it
            to = std::copy_n(p->grad.data(), p->grad.size(), to);
        }
        for (tensor<float>* t : k.buffers) to = std::copy_n(t->data(), t->size(), to);
        started_[b] = true;
        comm_->start_sum(std::span<float>(flat_.data() + k.offset, k.size));
    }

    [[noreturn]] void unfinished(const char* what) {
        comm_->abort(tricks::detail::cat("tricks::trainer: ", what,
                                         " while a data-parallel step's gradient sums were in flight (the step "
                                         "ended inside its backward pass, by an exception); the ranks cannot agree "
                                         "on this step any more"),
                     1);
        std::abort();  // communicator::abort does not return; a broken one still ends this rank
    }

    template <class F>
    void timed(F&& f) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }

    std::size_t bucket_floats_;
    distributed::communicator* comm_ = nullptr;
    const nn::context* ctx_ = nullptr;
    std::vector<nn::parameter*> params_;
    std::vector<tensor<float>*> buffers_;
    std::vector<bucket> buckets_;
    std::unordered_map<const nn::parameter*, std::size_t> index_;  // parameter -> its index in params_
    std::vector<std::size_t> bucket_of_, filled_;
    std::vector<bool> started_, seen_;
    std::vector<float> flat_;
    double seconds_ = 0;
    bool in_flight_ = false;  // between begin() and finish()
};

}  // namespace tricks::detail
