#pragma once
// Loaders turn a source of labelled images into batches of normalised float images (NHWC),
// shuffled and augmented in training mode, prepared by worker threads while the caller trains on
// earlier batches.
//
// A source (the `batch_source` concept) says how many images it has, their prepared size, their
// labels, and prepares image i into floats given the training flag and a random stream. Two
// sources exist: `memory_source` (an in-memory `dataset` of bytes with the pad-and-crop
// augmentation of augment.hpp, the 28x28/32x32 path) and `folder_source` (image_folder.hpp: JPEG
// and PNG files decoded and augmented as the paper does for ImageNet).
//
// Determinism (docs/design.md, "Determinism"): every random choice is a pure function of
// (seed, epoch, position):
//   order of epoch e      = Fisher-Yates with rng::below() on shuffle_rng(seed, e)
//   augmentation of the image at position i of epoch e  = augment_rng(seed, e, i)
// Each worker writes whole images into their place in the batch, so the batches are bit-identical
// whatever the number of workers (0 = built inside next()), and a run resumed at epoch e sees the
// same data.
#include <algorithm>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <numeric>
#include <string>
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

/// What a loader needs of a data source. `prepare` writes height() x width() x channels() floats
/// and must be safe to call from several threads at once; in training mode it may draw from `r`
/// (and only from `r`), in evaluation mode it must not depend on `r`.
template <class S>
concept batch_source = std::copy_constructible<S> &&
    requires(const S& s, std::size_t i, bool train, rng& r, float* out) {
    { s.size() } -> std::convertible_to<std::size_t>;
    { s.height() } -> std::convertible_to<int>;
    { s.width() } -> std::convertible_to<int>;
    { s.channels() } -> std::convertible_to<int>;
    { s.classes() } -> std::convertible_to<int>;
    { s.label(i) } -> std::convertible_to<int>;
    { s.name() } -> std::convertible_to<std::string>;
    s.prepare(i, train, r, out);
};

/// An in-memory dataset with the pad-and-crop augmentation of augment.hpp. A view: `ds` must
/// outlive it and stay unmodified while a loader reads it.
struct memory_source {
    const dataset* ds = nullptr;
    augment_options opts;

    [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(ds->n); }
    [[nodiscard]] int height() const noexcept { return ds->h; }
    [[nodiscard]] int width() const noexcept { return ds->w; }
    [[nodiscard]] int channels() const noexcept { return ds->c; }
    [[nodiscard]] int classes() const noexcept { return ds->classes; }
    [[nodiscard]] int label(std::size_t i) const noexcept { return ds->labels[i]; }
    [[nodiscard]] const std::string& name() const noexcept { return ds->name; }
    void prepare(std::size_t i, bool train, rng& r, float* out) const { prepare_image(*ds, i, opts, train, r, out); }
};

/// The images [begin, end) of a source, as a source: a data-parallel evaluation gives each rank
/// one slice of the test set. A view like the source it holds.
template <batch_source Source>
struct slice_source {
    Source src;
    std::size_t begin = 0, end = 0;

    slice_source(Source s, std::size_t b, std::size_t e) : src(std::move(s)), begin(b), end(e) {
        require(b <= e && e <= src.size(), "tricks::data::slice_source: ", src.name(), ": images [", b, ", ", e,
                ") of ", src.size());
    }
    [[nodiscard]] std::size_t size() const noexcept { return end - begin; }
    [[nodiscard]] int height() const { return src.height(); }
    [[nodiscard]] int width() const { return src.width(); }
    [[nodiscard]] int channels() const { return src.channels(); }
    [[nodiscard]] int classes() const { return src.classes(); }
    [[nodiscard]] int label(std::size_t i) const { return src.label(begin + i); }
    [[nodiscard]] std::string name() const { return src.name(); }
    void prepare(std::size_t i, bool train, rng& r, float* out) const { src.prepare(begin + i, train, r, out); }
};

template <class S>
inline constexpr bool is_slice_source = false;
template <class S>
inline constexpr bool is_slice_source<slice_source<S>> = true;

/// The batches of a source, built by `workers` threads (0: inside next()).
template <batch_source Source>
class batch_loader {
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

    /// `train` = shuffle + augment. drop_last: a short last batch would give batch norm noisy
    /// statistics during training, but must not lose test images. `workers` threads build the
    /// batches (0: next() builds each one itself; same output); `depth` batches are in flight at
    /// most (0: 2 for one worker, 3 for more).
    batch_loader(Source src, int batch, bool train, std::uint64_t seed, bool drop_last, int workers = 1, int depth = 0)
        : src_(std::move(src)),
          batch_(batch),
          train_(train),
          drop_last_(drop_last),
          seed_(seed),
          workers_(workers),
          depth_(depth > 0     ? depth
                 : workers > 1 ? 3
                               : 2) {
        require(batch > 0, "tricks::loader: batch = ", batch, "; expected > 0");
        require(workers >= 0, "tricks::loader: workers = ", workers, "; expected >= 0");
        const std::size_t n = src_.size();
        require<data_error>(n > 0 && src_.height() > 0 && src_.width() > 0 && src_.channels() > 0,
                            "tricks::loader: ", src_.name(), ": no images (", n, " of ", src_.height(), "x",
                            src_.width(), "x", src_.channels(), ")");
        require<data_error>(n <= 0xffffffffu, "tricks::loader: ", src_.name(), ": ", n,
                            " images; at most 2^32 - 1 are supported");
        require(!drop_last || n >= static_cast<std::size_t>(batch), "tricks::loader: ", src_.name(), ": batch ", batch,
                " exceeds its ", n, " images and drop_last is set, so an epoch would have no batches");
        order_.resize(n);
        if (workers_ > 0) {
            slots_.resize(static_cast<std::size_t>(depth_));
            // Every slot gets its full size now: the workers never allocate after construction.
            for (auto& s : slots_) {
                s.images.resize({batch_, src_.height(), src_.width(), src_.channels()});
                s.labels.resize(static_cast<std::size_t>(batch_));
            }
        }
    }

    batch_loader(const batch_loader&) = delete;
    batch_loader& operator=(const batch_loader&) = delete;
    ~batch_loader() { stop_workers(); }

    [[nodiscard]] const Source& source() const noexcept { return src_; }
    [[nodiscard]] std::size_t batches_per_epoch() const noexcept {
        const auto n = src_.size(), b = static_cast<std::size_t>(batch_);
        return drop_last_ ? n / b : (n + b - 1) / b;
    }
    /// Images in batch `b` of an epoch as this loader delivers it (the last one is short unless
    /// drop_last; a shard's batches have batch / ranks images).
    [[nodiscard]] int batch_size(std::size_t b) const noexcept {
        if (per_batch_ != batch_) return per_batch_;
        const std::size_t first = b * static_cast<std::size_t>(batch_);
        return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(batch_), src_.size() - first));
    }

    /// Data parallelism (docs/design.md, "Data-parallel training"): from now on every batch is
    /// rank `rank`'s share of the global batch, its images at positions [rank, rank + 1) x batch /
    /// ranks of it. The order, the augmentation and the batch boundaries stay those of the global
    /// batch (functions of seed, epoch and position), so the ranks' shards together are exactly
    /// the batch one process would train on. Needs drop_last and a batch divisible by `ranks`;
    /// call it before start_epoch().
    void shard(int rank, int ranks) {
        require(ranks >= 1 && rank >= 0 && rank < ranks, "tricks::loader: shard ", rank, " of ", ranks, " ranks");
        require(drop_last_, "tricks::loader: ", src_.name(),
                ": sharding needs drop_last (every rank trains full batches)");
        require(batch_ % ranks == 0, "tricks::loader: ", src_.name(), ": batch ", batch_, " is not divisible by ",
                ranks, " ranks; data-parallel training needs a global batch that is");
        stop_workers();
        started_ = false;
        per_batch_ = batch_ / ranks;
        offset_ = rank * per_batch_;
        for (auto& s : slots_) {
            s.images.resize({per_batch_, src_.height(), src_.width(), src_.channels()});
            s.labels.resize(static_cast<std::size_t>(per_batch_));
        }
    }
    [[nodiscard]] int epoch() const noexcept { return epoch_; }
    [[nodiscard]] int workers() const noexcept { return workers_; }

    /// Begins `epoch` (>= 0) at batch `first_batch` (0: its first; a resumed run starts where the
    /// interrupted one stopped: the order and augmentation are functions of (seed, epoch, position),
    /// so the batches are those the whole epoch would have had there), abandoning whatever the
    /// previous epoch had left.
    void start_epoch(int epoch, std::size_t first_batch = 0) {
        require(epoch >= 0, "tricks::loader: epoch = ", epoch, "; expected >= 0");
        require(first_batch <= batches_per_epoch(), "tricks::loader: first batch ", first_batch, " of an epoch of ",
                batches_per_epoch(), " batches");
        stop_workers();
        epoch_ = epoch;
        epoch_order(seed_, epoch, train_, order_);
        consumed_ = first_batch;
        next_image_ = first_batch * static_cast<std::size_t>(per_batch_);
        stop_ = false;
        for (auto& s : slots_) {
            s.done = 0;
            s.failure = nullptr;
            s.failed_at = -1;
        }
        started_ = true;
        if (workers_ > 0 && first_batch < batches_per_epoch())
            for (int w = 0; w < workers_; ++w) threads_.emplace_back([this] { run_worker(); });
    }

    /// Fills `images` (resized to (b, h, w, c); its allocation is reused) and `labels` (size b)
    /// with the next batch of the current epoch; returns false once the epoch is exhausted.
    /// Rethrows the exception a worker hit while building this batch (the first image's, in batch
    /// order, if several failed); batches before it are delivered as usual.
    bool next(tensor<float>& images, std::vector<int>& labels) {
        require(started_, "tricks::loader: next() called before start_epoch()");
        if (consumed_ >= batches_per_epoch()) return false;
        const std::size_t b = consumed_;
        if (workers_ == 0) {
            try {
                make_batch(b, images, labels);
            } catch (...) {
                consumed_ = batches_per_epoch();  // as with workers: the epoch ends at a failed batch
                throw;
            }
            ++consumed_;
            return true;
        }
        slot& s = slots_[b % slots_.size()];
        const int count = batch_size(b);
        {
            std::unique_lock lock(mutex_);
            ready_.wait(lock, [&] { return s.done == count; });
            if (s.failure) {
                // The epoch cannot go on past this batch; the next start_epoch() starts afresh.
                std::exception_ptr f = s.failure;
                lock.unlock();
                stop_workers();
                consumed_ = batches_per_epoch();
                std::rethrow_exception(f);
            }
        }
        // Workers write a slot only for batches below consumed_ + depth, so this one is ours.
        images.resize({count, src_.height(), src_.width(), src_.channels()});
        std::copy_n(s.images.data(), images.size(), images.data());
        labels.assign(s.labels.begin(), s.labels.begin() + count);
        {
            std::lock_guard lock(mutex_);
            s.done = 0;
            ++consumed_;
        }
        freed_.notify_all();
        return true;
    }

    /// Builds batch `b` of the current epoch synchronously, without touching the loader's
    /// position: the reference the workers' output is tested against.
    void make_batch(std::size_t b, tensor<float>& images, std::vector<int>& labels) const {
        require(started_, "tricks::loader: make_batch() called before start_epoch()");
        require(b < batches_per_epoch(), "tricks::loader: batch ", b, " out of range; an epoch has ",
                batches_per_epoch());
        const int count = batch_size(b);
        images.resize({count, src_.height(), src_.width(), src_.channels()});
        labels.resize(static_cast<std::size_t>(count));
        for (int k = 0; k < count; ++k) build_image(b, k, images.data(), labels.data());
    }

private:
    struct slot {
        tensor<float> images;
        std::vector<int> labels;
        int done = 0;                // images of the slot's batch finished (or failed)
        std::exception_ptr failure;  // the failure of the lowest failed image, if any
        int failed_at = -1;
    };

    [[nodiscard]] std::size_t image_floats() const noexcept {
        return static_cast<std::size_t>(src_.height()) * static_cast<std::size_t>(src_.width()) *
               static_cast<std::size_t>(src_.channels());
    }

    /// Image k of batch b (of this loader's share of it) into images + k * image_floats(), its
    /// label into labels[k].
    void build_image(std::size_t b, int k, float* images, int* labels) const {
        const std::size_t pos = b * static_cast<std::size_t>(batch_) + static_cast<std::size_t>(offset_ + k);
        const std::uint32_t sample = order_[pos];
        rng r = train_ ? augment_rng(seed_, epoch_, pos) : rng();  // unused when evaluating
        src_.prepare(sample, train_, r, images + static_cast<std::size_t>(k) * image_floats());
        labels[k] = src_.label(sample);
    }

    void run_worker() {
        const std::size_t total_batches = batches_per_epoch();
        const auto per = static_cast<std::size_t>(per_batch_);
        const std::size_t total = drop_last_ ? total_batches * per : src_.size();
        const auto depth = slots_.size();
        for (;;) {
            std::size_t pos = 0;
            {
                std::unique_lock lock(mutex_);
                freed_.wait(lock,
                            [&] { return stop_ || next_image_ >= total || next_image_ / per < consumed_ + depth; });
                if (stop_ || next_image_ >= total) return;
                pos = next_image_++;
            }
            const std::size_t b = pos / per;
            const int k = static_cast<int>(pos % per);
            slot& s = slots_[b % depth];
            std::exception_ptr failure;
            try {
                build_image(b, k, s.images.data(), s.labels.data());
            } catch (...) {
                failure = std::current_exception();
            }
            bool complete = false;
            {
                std::lock_guard lock(mutex_);
                if (failure && (s.failed_at < 0 || k < s.failed_at)) {
                    s.failure = failure;
                    s.failed_at = k;
                }
                complete = ++s.done == batch_size(b);
            }
            if (complete) ready_.notify_all();
        }
    }

    void stop_workers() noexcept {
        if (threads_.empty()) return;
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
        }
        freed_.notify_all();
        for (auto& t : threads_) t.join();  // workers check stop_ between images
        threads_.clear();
    }

    Source src_;
    int batch_;
    bool train_, drop_last_;
    std::uint64_t seed_;
    int workers_, depth_;
    int per_batch_ = batch_, offset_ = 0;  // shard(): this rank's images of a batch, and the first
    std::vector<std::uint32_t> order_;
    int epoch_ = 0;
    bool started_ = false;

    std::vector<slot> slots_;
    std::vector<std::thread> threads_;
    std::mutex mutex_;
    std::condition_variable ready_;  // workers -> consumer: a batch is complete
    std::condition_variable freed_;  // consumer -> workers: a slot was freed, or stop requested
    // Guarded by mutex_ while workers run:
    std::size_t consumed_ = 0, next_image_ = 0;
    bool stop_ = false;
};

/// The loader of an in-memory dataset (the IDX path): one background worker by default.
class loader : public batch_loader<memory_source> {
public:
    /// `train` = shuffle + augment; drop_last defaults to `train`.
    loader(const dataset& ds, int batch, bool train, augment_options opts, std::uint64_t seed)
        : loader(ds, batch, train, std::move(opts), seed, train) {}

    /// `background` = false builds each batch inside next() (same output; for debugging and tests).
    /// `ds` must outlive the loader and stay unmodified while an epoch runs.
    loader(const dataset& ds, int batch, bool train, augment_options opts, std::uint64_t seed, bool drop_last,
           bool background = true)
        : batch_loader(checked(ds, std::move(opts)), batch, train, seed, drop_last, background ? 1 : 0) {}

    // The loader keeps a pointer to the dataset: a temporary would dangle after the full-expression.
    loader(const dataset&&, int, bool, augment_options, std::uint64_t) = delete;
    loader(const dataset&&, int, bool, augment_options, std::uint64_t, bool, bool = true) = delete;

    [[nodiscard]] const dataset& data() const noexcept { return *source().ds; }

private:
    static memory_source checked(const dataset& ds, augment_options opts) {
        require<data_error>(ds.n > 0 && ds.image_size() > 0, "tricks::loader: ", ds.name, ": dataset is empty");
        require<data_error>(ds.pixels.size() == static_cast<std::size_t>(ds.n) * ds.image_size() &&
                                ds.labels.size() == static_cast<std::size_t>(ds.n),
                            "tricks::loader: ", ds.name, ": ", ds.pixels.size(), " pixel bytes and ", ds.labels.size(),
                            " labels do not match n = ", ds.n, " images of ", ds.image_size(), " bytes");
        check_augment_options(opts, ds.c);
        return memory_source{&ds, std::move(opts)};
    }
};

}  // namespace tricks::data
