#pragma once
// loader: turns a dataset into batches of normalised float images, shuffled and augmented in
// training mode, prepared by one background thread while the caller trains on the previous batch.
//
// Determinism (DESIGN.md §4): every random choice is a pure function of (seed, epoch, position):
//   order of epoch e      = Fisher-Yates with rng::below() on shuffle_rng(seed, e)
//   augmentation of the image at position i of epoch e  = augment_rng(seed, e, i)
// so the batches are bit-identical whether they are built by the worker thread, synchronously,
// or by any future multi-threaded builder, and a run resumed at epoch e sees the same data.
#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/core/rng.hpp"
#include "tricks/core/shape.hpp"
#include "tricks/core/tensor.hpp"
#include "tricks/data/augment.hpp"
#include "tricks/data/dataset.hpp"

namespace tricks::data {

class loader {
public:
    /// Stream id of the loader's randomness under the user's seed ("loader" in ASCII), kept apart
    /// from the streams other consumers (weight init, mixup) derive from the same seed.
    static constexpr std::uint64_t stream_id = 0x6c6f61646572ull;

    /// The generator the order of `epoch` is drawn from.
    [[nodiscard]] static rng shuffle_rng(std::uint64_t seed, int epoch) noexcept {
        return rng(seed, stream_id).fork(2 * static_cast<std::uint64_t>(epoch));
    }
    /// The generator that augments the image at `position` (0-based, in epoch order) of `epoch`.
    [[nodiscard]] static rng augment_rng(std::uint64_t seed, int epoch, std::size_t position) noexcept {
        return rng(seed, stream_id).fork(2 * static_cast<std::uint64_t>(epoch) + 1).fork(position);
    }
    /// Overwrites `order` (its size is n) with the sample order of `epoch`: a uniform permutation
    /// of [0, n) when `shuffle`, else 0, 1, ..., n-1.
    static void epoch_order(std::uint64_t seed, int epoch, bool shuffle, std::vector<std::uint32_t>& order) {
        std::iota(order.begin(), order.end(), std::uint32_t{0});
        if (!shuffle) return;
        rng r = shuffle_rng(seed, epoch);
        for (std::size_t i = order.size(); i > 1; --i) {
            const std::size_t j = r.below(static_cast<std::uint32_t>(i));
            std::swap(order[i - 1], order[j]);
        }
    }

    /// `train` = shuffle + augment; drop_last defaults to `train` (a short last batch would give
    /// batch norm noisy statistics during training, but must not lose test images).
    loader(const dataset& ds, int batch, bool train, augment_options opts, std::uint64_t seed)
        : loader(ds, batch, train, std::move(opts), seed, train) {}

    /// `background` = false builds each batch inside next() (same output; for debugging and tests).
    /// `ds` must outlive the loader and stay unmodified while an epoch runs.
    loader(const dataset& ds, int batch, bool train, augment_options opts, std::uint64_t seed, bool drop_last,
           bool background = true)
        : ds_(&ds), batch_(batch), train_(train), drop_last_(drop_last), background_(background), seed_(seed),
          opts_(std::move(opts)) {
        require(batch > 0, "tricks::loader: batch = ", batch, "; expected > 0");
        require<data_error>(ds.n > 0 && ds.image_size() > 0, "tricks::loader: ", ds.name, ": dataset is empty");
        require<data_error>(ds.pixels.size() == static_cast<std::size_t>(ds.n) * ds.image_size() &&
                                ds.labels.size() == static_cast<std::size_t>(ds.n),
                            "tricks::loader: ", ds.name, ": ", ds.pixels.size(), " pixel bytes and ",
                            ds.labels.size(), " labels do not match n = ", ds.n, " images of ", ds.image_size(),
                            " bytes");
        require(!drop_last || ds.n >= batch, "tricks::loader: ", ds.name, ": batch ", batch, " exceeds its ", ds.n,
                " images and drop_last is set, so an epoch would have no batches");
        check_augment_options(opts_, ds.c);
        order_.resize(static_cast<std::size_t>(ds.n));
        // Both slots get their full size now: the worker never allocates after construction.
        for (auto& s : slots_) {
            s.images.resize({batch_, ds.h, ds.w, ds.c});
            s.labels.resize(static_cast<std::size_t>(batch_));
        }
    }

    // The loader keeps a pointer to the dataset: a temporary would dangle after the full-expression.
    loader(const dataset&&, int, bool, augment_options, std::uint64_t) = delete;
    loader(const dataset&&, int, bool, augment_options, std::uint64_t, bool, bool = true) = delete;
    loader(const loader&) = delete;
    loader& operator=(const loader&) = delete;
    ~loader() { stop_worker(); }

    [[nodiscard]] std::size_t batches_per_epoch() const noexcept {
        const auto n = static_cast<std::size_t>(ds_->n), b = static_cast<std::size_t>(batch_);
        return drop_last_ ? n / b : (n + b - 1) / b;
    }
    /// Images in batch `b` of an epoch (the last one is short unless drop_last).
    [[nodiscard]] int batch_size(std::size_t b) const noexcept {
        const std::size_t first = b * static_cast<std::size_t>(batch_);
        return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(batch_), static_cast<std::size_t>(ds_->n) - first));
    }
    [[nodiscard]] const dataset& data() const noexcept { return *ds_; }
    [[nodiscard]] int epoch() const noexcept { return epoch_; }

    /// Begins `epoch` (>= 0) from its first batch, abandoning whatever the previous epoch had left.
    void start_epoch(int epoch) {
        require(epoch >= 0, "tricks::loader: epoch = ", epoch, "; expected >= 0");
        stop_worker();
        epoch_ = epoch;
        epoch_order(seed_, epoch, train_, order_);
        produced_ = consumed_ = 0;
        stop_ = false;
        failure_ = nullptr;
        started_ = true;
        if (background_ && batches_per_epoch() > 0) worker_ = std::thread([this] { run_worker(); });
    }

    /// Fills `images` (resized to (b, h, w, c); its allocation is reused) and `labels` (size b)
    /// with the next batch of the current epoch; returns false once the epoch is exhausted.
    /// Rethrows an exception the worker hit while building this batch.
    bool next(tensor<float>& images, std::vector<int>& labels) {
        require(started_, "tricks::loader: next() called before start_epoch()");
        if (consumed_ >= batches_per_epoch()) return false;
        const std::size_t b = consumed_;
        if (!background_) {
            make_batch(b, images, labels);
            ++consumed_;
            return true;
        }
        slot& s = slots_[b % 2];
        {
            std::unique_lock lock(mutex_);
            ready_.wait(lock, [&] { return produced_ > b || failure_ != nullptr; });
            // Batches finished before a failure are still delivered in order; the error surfaces
            // at the batch that could not be built.
            if (produced_ <= b) std::rethrow_exception(failure_);
        }
        // The worker only writes a slot while fewer than two batches are outstanding, so this
        // slot is ours until consumed_ advances.
        images.resize(s.images.shape());
        std::copy_n(s.images.data(), s.images.size(), images.data());
        labels.assign(s.labels.begin(), s.labels.begin() + s.images.shape().n);
        {
            std::lock_guard lock(mutex_);
            ++consumed_;
        }
        freed_.notify_one();
        return true;
    }

    /// Builds batch `b` of the current epoch synchronously, without touching the loader's
    /// position: the reference the background output is tested against.
    void make_batch(std::size_t b, tensor<float>& images, std::vector<int>& labels) const {
        require(started_, "tricks::loader: make_batch() called before start_epoch()");
        require(b < batches_per_epoch(), "tricks::loader: batch ", b, " out of range; an epoch has ",
                batches_per_epoch());
        const dataset& ds = *ds_;
        const int count = batch_size(b);
        images.resize({count, ds.h, ds.w, ds.c});
        labels.resize(static_cast<std::size_t>(count));
        const std::size_t first = b * static_cast<std::size_t>(batch_);
        const std::size_t img = ds.image_size();
        for (int k = 0; k < count; ++k) {
            const std::size_t pos = first + static_cast<std::size_t>(k);
            const std::uint32_t sample = order_[pos];
            rng r = train_ ? augment_rng(seed_, epoch_, pos) : rng();  // unused when evaluating
            prepare_image(ds, sample, opts_, train_, r, images.data() + static_cast<std::size_t>(k) * img);
            labels[static_cast<std::size_t>(k)] = ds.labels[sample];
        }
    }

private:
    struct slot {
        tensor<float> images;
        std::vector<int> labels;
    };

    void run_worker() {
        const std::size_t total = batches_per_epoch();
        for (std::size_t b = 0; b < total; ++b) {
            {
                std::unique_lock lock(mutex_);
                freed_.wait(lock, [&] { return stop_ || b - consumed_ < 2; });
                if (stop_) return;
            }
            try {
                slot& s = slots_[b % 2];
                make_batch(b, s.images, s.labels);
            } catch (...) {
                {
                    std::lock_guard lock(mutex_);
                    failure_ = std::current_exception();
                }
                ready_.notify_one();
                return;
            }
            {
                std::lock_guard lock(mutex_);
                produced_ = b + 1;
            }
            ready_.notify_one();
        }
    }

    void stop_worker() noexcept {
        if (!worker_.joinable()) return;
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        freed_.notify_one();
        worker_.join();  // the worker checks stop_ between batches, so this waits at most one batch
    }

    const dataset* ds_;
    int batch_;
    bool train_, drop_last_, background_;
    std::uint64_t seed_;
    augment_options opts_;
    std::vector<std::uint32_t> order_;
    int epoch_ = 0;
    bool started_ = false;

    slot slots_[2];
    std::thread worker_;
    std::mutex mutex_;
    std::condition_variable ready_;  // worker -> consumer: a batch is ready or the worker failed
    std::condition_variable freed_;  // consumer -> worker: a slot was freed, or stop requested
    // Guarded by mutex_ while a worker runs:
    std::size_t produced_ = 0, consumed_ = 0;
    bool stop_ = false;
    std::exception_ptr failure_;
};

}  // namespace tricks::data
