#pragma once
// tricks::trainer<Model, Recipe, Backend>: trains a model type with a recipe type on a dataset.
//
//   auto t = trainer<net, recipe<lr::warmup<>, lr::cosine, loss::label_smoothing>>{options{.epochs = 10}};
//   history h = t.fit(data::fashion_mnist::train(), data::fashion_mnist::test());
//
// Every random draw is a pure function of (seed, what, where): the data order and augmentation of
// (epoch, position), the mixup draw of the global step, the weight init of the layer. So the same
// seed and build give the same bits, and a run resumed from a checkpoint continues exactly as the
// uninterrupted run would have, from an epoch's end or from inside an epoch: SIGINT/SIGTERM during
// fit() finish the step, save the position and throw tricks::interrupted (train/interrupt.hpp).
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <thread>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tricks/backend/cpu.hpp"
#include "tricks/data/loader.hpp"
#include "tricks/io/checkpoint.hpp"
#include "tricks/models/inference.hpp"
#include "tricks/train/finetune.hpp"
#include "tricks/train/gradient_buckets.hpp"
#include "tricks/train/interrupt.hpp"
#include "tricks/train/loss.hpp"
#include "tricks/train/optim.hpp"
#include "tricks/train/options.hpp"
#include "tricks/train/precision.hpp"
#include "tricks/train/progress.hpp"
#include "tricks/train/recipe.hpp"
#include "tricks/train/schedule.hpp"
#include "tricks/train/settings.hpp"

namespace tricks {

struct epoch_record {
    int epoch = 0;                   // 1-based
    double train_loss = 0;           // mean over the epoch's steps (the loss that was optimised)
    double test_top1 = 0;            // fraction in [0, 1]
    double test_loss = 0;            // plain cross-entropy on the test set
    double lr = 0;                   // lr of the epoch's last step
    double images_per_s = 0;         // training throughput (forward + backward + update)
    double seconds = 0;              // wall time of the epoch including evaluation
    std::int64_t skipped_steps = 0;  // fp16_mixed: steps skipped on gradient overflow (cumulative)
    double loss_scale = 1;
    double peak_rss_mib = 0;  // the process's peak resident memory at the epoch's end (MiB; the
                              // high-water mark since the process started: growth means a leak)
};

namespace detail {
/// The process's peak resident set size so far, in MiB (getrusage: ru_maxrss is in KiB on Linux,
/// in bytes on macOS); 0 when unknown.
inline double peak_rss_mib() noexcept {
    rusage u{};
    if (::getrusage(RUSAGE_SELF, &u) != 0) return 0;
#if defined(__APPLE__)
    return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);
#else
    return static_cast<double>(u.ru_maxrss) / 1024.0;
#endif
}

template <class T>
struct record_column {
    const char* name;
    T epoch_record::*member;
};
template <class T>
constexpr record_column<T> column(const char* name, T epoch_record::*member) noexcept {
    return {name, member};
}
}  // namespace detail

/// The columns of an epoch_record, in order: the checkpoint's history fields ("history.<name>")
/// and the CSV and JSON reports are named from this list.
inline constexpr auto epoch_columns = std::tuple{
    detail::column("epoch", &epoch_record::epoch),
    detail::column("train_loss", &epoch_record::train_loss),
    detail::column("test_top1", &epoch_record::test_top1),
    detail::column("test_loss", &epoch_record::test_loss),
    detail::column("lr", &epoch_record::lr),
    detail::column("images_per_s", &epoch_record::images_per_s),
    detail::column("seconds", &epoch_record::seconds),
    detail::column("skipped_steps", &epoch_record::skipped_steps),
    detail::column("loss_scale", &epoch_record::loss_scale),
    detail::column("peak_rss_mib", &epoch_record::peak_rss_mib),
};
static_assert(std::tuple_size_v<decltype(epoch_columns)> == detail::member_count<epoch_record>(),
              "tricks::epoch_columns: every field of tricks::epoch_record needs a column");

struct history {
    std::vector<epoch_record> epochs;
    [[nodiscard]] double final_top1() const noexcept { return epochs.empty() ? 0.0 : epochs.back().test_top1; }
};

struct evaluation {
    double top1 = 0, loss = 0;
    std::size_t images = 0;
};

namespace detail {

/// What every backend's trainer shares: options, the host model (the owner of record), the data
/// pipeline, targets, mixup, the lr schedule, progress, history, evaluation and checkpoints. The
/// backend's trainer (Derived) supplies the numerics through a few hooks:
///   double train_step(tensor<float>& x, const tensor<float>& q, double lr, long t, int e, long s)
///       one step on a batch (x is mixed, q its soft targets); returns the loss that was optimised;
///   void eval_begin()     before a run of eval_logits calls, with the weights they are to use;
///   const float* eval_logits(tensor<float>& x)   host logits (n x classes) of a batch in eval mode;
///   void sync_to_host()   before save(): model, momentum (velocity()) and scaler_ current on the host;
///   void sync_to_device() after resume(): the restored model, momentum and scaler_ to the backend;
///   void teacher_loaded() after fit() loaded the distillation teacher's checkpoint;
///   void sync_scaler()    scaler_ current (for the epoch record);
///   std::vector<tensor<float>>& velocity()   momentum, one tensor per parameter in host order.
template <class Derived, class Model, class Recipe>
class trainer_base {
protected:
    using teacher_type = typename Recipe::teacher;
    using teacher_slot =
        std::conditional_t<Recipe::distills, teacher_type, Model>;  // Model when not distilling (unused)

public:
    using model_type = Model;
    using recipe_type = Recipe;

    explicit trainer_base(options o) : opt_(std::move(o)), model_(std::make_unique<Model>()) {
        require<error>(opt_.epochs > 0, "tricks::trainer: options.epochs must be > 0, got ", opt_.epochs);
        require<error>(opt_.batch > 0, "tricks::trainer: options.batch must be > 0, got ", opt_.batch);
        require<error>(opt_.label_smoothing >= 0 && opt_.label_smoothing < 1,
                       "tricks::trainer: options.label_smoothing must be in [0, 1), got ", opt_.label_smoothing);
        require<error>(opt_.threads >= 0, "tricks::trainer: options.threads must be >= 0, got ", opt_.threads);
        if (opt_.threads > 0) omp_set_num_threads(opt_.threads);
        model_->init(opt_.seed);
        params_ = model_->parameters();
        prepare_finetune(*model_, opt_);  // frozen parts and batch-norm statistics (init_weights: fit())
        lr_scales_ = finetune_lr_scales(*model_, opt_);
        scaler_.scale = Recipe::fp16 ? opt_.loss_scale : 1.0;
        scaler_.window = opt_.loss_scale_window;
        if constexpr (Recipe::distills) teacher_ = std::make_unique<teacher_type>();
    }

    Model& model() noexcept { return *model_; }
    const options& config() const noexcept { return opt_; }
    const lr_schedule& schedule() const noexcept { return sched_; }
    const loss_scaler& scaler() const noexcept { return scaler_; }
    const history& past() const noexcept { return hist_; }

    /// The storage precision the recipe asks for.
    static constexpr nn::storage storage() noexcept {
        return Recipe::fp16 ? nn::storage::fp16 : Recipe::bf16 ? nn::storage::bf16 : nn::storage::fp32;
    }

    /// Trains for options.epochs (from where a resumed checkpoint left off) and returns the
    /// history, one record per epoch. In-memory datasets (the IDX path) are normalised with the
    /// training set's per-channel statistics and augmented by pad-and-crop (augment.hpp).
    history fit(const data::dataset& train, const data::dataset& test) {
        if (aug_.mean.empty()) {  // fresh run: normalise with the training set's statistics
            require<error>(train.n > 0, "tricks::trainer: dataset '", train.name, "' is empty");
            const auto st = data::compute_stats(train);
            aug_.mean = st.mean;
            aug_.stddev = st.stddev;
        }
        aug_.crop_padding = opt_.crop_padding;
        aug_.horizontal_flip = opt_.horizontal_flip;
        return fit(data::memory_source{&train, aug_}, data::memory_source{&test, aug_});
    }

    /// Trains on any loader source (data::batch_source), e.g. data::folder_source for image
    /// folders, which normalise and augment images themselves; options.data_workers threads
    /// prepare the batches. While it runs, SIGINT and SIGTERM are handled (the previous handlers
    /// are put back at its end): the first finishes the current step, writes the checkpoint with
    /// the position inside the epoch, prints where the run stopped and throws tricks::interrupted;
    /// a second ends the process at once with status 128 + signal.
    template <data::batch_source Train, data::batch_source Test>
    history fit(const Train& train, const Test& test) {
        check_policy_numbers();
        check_source(train);
        check_source(test);
        require<error>(train.height() == test.height() && train.width() == test.width(),
                       "tricks::trainer: training images (", train.name(), ") are ", train.height(), "x", train.width(),
                       ", test images (", test.name(), ") ", test.height(), "x", test.width(),
                       "; both need the same size");
        require<error>(train.size() >= static_cast<std::size_t>(opt_.batch), "tricks::trainer: batch ", opt_.batch,
                       " is larger than the training set (", train.size(), " images)");
        if constexpr (requires { train.normalisation(); }) {
            const auto [mean, stddev] = train.normalisation();
            aug_.mean = mean;
            aug_.stddev = stddev;
        }
        data_classes_ = train.classes();
        note_training_data(train);
        check_same_settings_on_every_rank();
        if (resumed_from_.empty() && !init_loaded_) {
            // a fresh run starts from the pretrained weights (a resumed one from its checkpoint)
            load_init_weights(*model_, opt_);
            init_loaded_ = true;
            if (!opt_.init_weights.empty()) self().sync_to_device();
        }
        if constexpr (Recipe::distills) {
            require<error>(!opt_.teacher_checkpoint.empty(), "tricks::trainer: loss::distill<", teacher_type::name(),
                           "> needs options.teacher_checkpoint (a checkpoint of the teacher)");
            io::load_model(opt_.teacher_checkpoint, *teacher_);
            self().teacher_loaded();
        }

        data::batch_loader<Train> train_loader(train, opt_.batch, true, opt_.seed, true, data_workers(train));
        if (world_size() > 1) train_loader.shard(world_rank(), world_size());  // this rank's images of each batch
        long steps = static_cast<long>(train_loader.batches_per_epoch());
        if (opt_.max_steps_per_epoch > 0) steps = std::min<long>(steps, opt_.max_steps_per_epoch);
        build_schedule(steps);

        progress_printer progress(opt_.progress && leader());
        tensor<float> x, q, mix_scratch;
        std::vector<int> labels;
        mixup_draw draw;
        const int K = Model::classes;
        const auto run_start = std::chrono::steady_clock::now();
        const int first_epoch = static_cast<int>(hist_.epochs.size());
        long steps_run = 0;                       // by this call (for the ETA)
        const detail::stop_signal_scope signals;  // SIGINT/SIGTERM: finish the step, save, throw interrupted

        const int last_epoch = opt_.stop_after_epochs > 0 ? std::min(opt_.epochs, opt_.stop_after_epochs) : opt_.epochs;
        for (int e = first_epoch; e < last_epoch; ++e) {
            const auto t0 = std::chrono::steady_clock::now();
            // A checkpoint written inside this epoch resumes at its position with the epoch's sums so
            // far: the batches from there on are the whole epoch's (loader.hpp), so are the bits.
            const epoch_progress from = std::exchange(partial_, epoch_progress{});
            require<data_error>(from.steps <= steps, "tricks::trainer: the checkpoint stopped after step ", from.steps,
                                " of epoch ", e + 1, ", which has ", steps, " steps in this run");
            train_loader.start_epoch(e, static_cast<std::size_t>(from.steps));
            double loss_sum = from.loss_sum;
            long s = from.steps;
            double train_seconds = from.train_seconds;
            const auto epoch_seconds = [&] {
                return from.seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            };
            for (; s < steps; ++s) {
                const long t = static_cast<long>(e) * steps + s;
                if (opt_.stop_after_steps > 0 && t >= opt_.stop_after_steps) {
                    stop_inside_epoch({s, loss_sum, train_seconds, epoch_seconds()});
                    return hist_;
                }
                if (!train_loader.next(x, labels)) break;
                const auto ts = std::chrono::steady_clock::now();
                const int n = x.shape().n;
                make_targets(labels, K, Recipe::label_smoothing ? opt_.label_smoothing : 0.0, q, data_classes_);
                if constexpr (Recipe::mixup) {
                    rng r = rng(opt_.seed, mixup_stream).fork(static_cast<std::uint64_t>(t));
                    draw_mixup(opt_.mixup_alpha, n, r, draw);
                    apply_mixup(draw, x, mix_scratch);
                    apply_mixup(draw, q, mix_scratch);
                }
                const double lr = sched_.at(t);
                const double loss = self().train_step(x, q, lr, t, e, s);
                loss_sum += std::isfinite(loss) ? loss : 0.0;
                train_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - ts).count();
                ++steps_run;
                const double left = static_cast<double>(static_cast<long>(opt_.epochs) * steps - t - 1);
                const double elapsed =
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
                progress.step(
                    e, opt_.epochs, s, steps, loss_sum / static_cast<double>(s + 1), lr,
                    static_cast<double>(opt_.batch) * static_cast<double>(s + 1) / std::max(train_seconds, 1e-9),
                    elapsed / static_cast<double>(steps_run) * left);
                if (const int sig = agreed_stop_signal(); sig != 0) {
                    stop_inside_epoch({s + 1, loss_sum, train_seconds, epoch_seconds()});
                    stopped_by_signal(sig, e, s + 1, steps);
                }
            }
            const evaluation ev = evaluate(test);
            epoch_record rec;
            rec.epoch = e + 1;
            rec.train_loss = loss_sum / static_cast<double>(std::max(s, 1L));
            rec.test_top1 = ev.top1;
            rec.test_loss = ev.loss;
            rec.lr = sched_.at(static_cast<long>(e) * steps + steps - 1);
            rec.images_per_s = static_cast<double>(s) * opt_.batch / std::max(train_seconds, 1e-9);
            rec.seconds = epoch_seconds();
            self().sync_scaler();
            rec.skipped_steps = scaler_.skipped;
            rec.loss_scale = scaler_.scale;
            rec.peak_rss_mib = detail::peak_rss_mib();
            hist_.epochs.push_back(rec);
            const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
            progress.epoch_done(e, opt_.epochs, rec.train_loss, rec.test_top1, rec.lr, rec.images_per_s, rec.seconds,
                                elapsed / (e + 1 - first_epoch) * (opt_.epochs - e - 1));
            if (!opt_.checkpoint.empty() && leader()) save(opt_.checkpoint);
            if (const int sig = agreed_stop_signal(); sig != 0 && e + 1 < last_epoch)
                stopped_by_signal(sig, e, steps, steps);
        }
        return hist_;
    }

    /// Top-1 accuracy and cross-entropy on a dataset, in evaluation mode (running BN statistics),
    /// with the training set's normalisation.
    evaluation evaluate(const data::dataset& d) {
        require<error>(!aug_.mean.empty(),
                       "tricks::trainer: evaluate() before fit() or resume(): the input normalisation is unknown");
        return evaluate(data::memory_source{&d, aug_});
    }

    /// Top-1 accuracy and cross-entropy on any loader source, in evaluation mode. In a
    /// data-parallel run (options.communicator) every rank must call it: each evaluates its slice
    /// of the images ([size r / W, size (r + 1) / W) on rank r of W) and the counts and loss sums
    /// are added over the ranks. An image's logits are the same bits in any batch, so top-1 is
    /// exactly one process's; the loss may differ from it by the rounding of its sum.
    template <data::batch_source Source>
    evaluation evaluate(const Source& d) {
        check_source(d);
        if (world_size() == 1) return evaluate_part(d).result();
        const auto W = static_cast<std::size_t>(world_size()), r = static_cast<std::size_t>(world_rank());
        const std::size_t n = d.size();
        partial_evaluation part = evaluate_part(data::slice_source<Source>(d, n * r / W, n * (r + 1) / W));
        double sums[3] = {part.loss, static_cast<double>(part.correct), static_cast<double>(part.images)};
        opt_.communicator->sum(std::span<double>(sums));  // exact for counts below 2^53
        return partial_evaluation{sums[0], static_cast<std::size_t>(sums[1]), static_cast<std::size_t>(sums[2])}
            .result();
    }

private:
    struct partial_evaluation {
        double loss = 0;  // summed over the images
        std::size_t correct = 0, images = 0;
        [[nodiscard]] evaluation result() const {
            evaluation ev;
            ev.images = images;
            ev.top1 = images ? static_cast<double>(correct) / static_cast<double>(images) : 0.0;
            ev.loss = images ? loss / static_cast<double>(images) : 0.0;
            return ev;
        }
    };
    template <data::batch_source Source>
    partial_evaluation evaluate_part(const Source& d) {
        partial_evaluation ev;
        self().eval_begin();
        if (d.size() == 0) return ev;
        // At most ~64 MB of input per batch (500 images at 28x28, 111 at 224x224).
        const std::size_t image_bytes = static_cast<std::size_t>(d.height()) * static_cast<std::size_t>(d.width()) *
                                        static_cast<std::size_t>(d.channels()) * sizeof(float);
        const int batch = static_cast<int>(std::clamp<std::size_t>((std::size_t{64} << 20) / image_bytes, 1, 500));
        data::batch_loader<Source> l(d, batch, false, opt_.seed, false, data_workers(d));
        l.start_epoch(0);
        tensor<float> x, q;
        std::vector<int> labels;
        const int K = Model::classes;
        while (l.next(x, labels)) {
            const float* z = self().eval_logits(x);
            make_targets(labels, K, 0.0, q);
            const int n = x.shape().n;
            ev.loss += backend::host::softmax_cross_entropy(n, K, z, q.data(), nullptr) * n;
            for (int i = 0; i < n; ++i) {
                const float* zi = z + static_cast<std::size_t>(i) * K;
                int best = 0;
                for (int k = 1; k < K; ++k)
                    if (zi[k] > zi[best]) best = k;
                ev.correct += best == labels[static_cast<std::size_t>(i)];
            }
            ev.images += static_cast<std::size_t>(n);
        }
        return ev;
    }

public:
    /// The run's settings (train/settings.hpp), by name: every field of options (warmup_epochs and
    /// step_milestones as the run uses them: -1 and empty stand for the recipe type's values), the
    /// model, the recipe, and the identity of the training data once fit() or resume() knows it.
    /// Checkpoints store them, resume() compares them, the reports list them.
    [[nodiscard]] std::vector<setting> settings() const { return settings_for(opt_, data_settings_); }

    /// Writes model, settings, optimizer state, loss scaler, normalisation and history (the
    /// schedule position is the number of finished epochs) atomically to `path`. The file does not
    /// depend on the backend: a run saved on one resumes on the other.
    void save(const std::filesystem::path& path) {
        self().sync_to_host();
        io::checkpoint_writer w;
        io::save_model(w, *model_);
        w.i64("run.format", checkpoint_format);
        const std::vector<setting> s = settings();
        w.i64("run.settings", static_cast<std::int64_t>(s.size()));
        for (const auto& x : s) {
            w.str("setting.name", x.name);
            w.str("setting.value", x.value);
        }
        w.i64("run.epochs_done", static_cast<std::int64_t>(hist_.epochs.size()));
        w.i64("run.epoch_steps", partial_.steps);  // inside the next epoch: 0 at an epoch's end
        w.f64("run.epoch_loss_sum", partial_.loss_sum);
        w.f64("run.epoch_train_seconds", partial_.train_seconds);
        w.f64("run.epoch_seconds", partial_.seconds);
        for (auto& v : self().velocity()) w.floats("optim.velocity", v.span());
        w.f64("scaler.scale", scaler_.scale);
        w.i64("scaler.clean", scaler_.clean_steps);
        w.i64("scaler.skipped", scaler_.skipped);
        w.floats("data.mean", aug_.mean);
        w.floats("data.stddev", aug_.stddev);
        for (const auto& r : hist_.epochs)
            std::apply([&](const auto&... c) { (write_column(w, c.name, r.*(c.member)), ...); }, epoch_columns);
        w.commit(path);
    }

    /// Restores a checkpoint written by save() of the same model type and run settings; fit()
    /// then continues with the next epoch and ends with the same bits as the uninterrupted run.
    /// A setting that differs is refused with its name and both values (train/settings.hpp: a
    /// must-match one unless options.resume_allow names it, a fixed one always; the data's
    /// identity is compared when fit() sees the data). A refused or failed resume leaves the
    /// trainer as it was.
    void resume(const std::filesystem::path& path) {
        check_policy_numbers();
        check_resume_allow();
        io::checkpoint_reader r(path);
        std::vector<std::vector<float>> before;  // the model and momentum, put back if anything fails
        for (auto* p : params_) before.emplace_back(p->value.span().begin(), p->value.span().end());
        for (auto* b : model_->buffers()) before.emplace_back(b->span().begin(), b->span().end());
        for (auto& v : self().velocity()) before.emplace_back(v.span().begin(), v.span().end());
        try {
            restore(r, path);
        } catch (...) {
            std::size_t i = 0;
            for (auto* p : params_) std::copy(before[i].begin(), before[i].end(), p->value.span().begin()), ++i;
            for (auto* b : model_->buffers()) std::copy(before[i].begin(), before[i].end(), b->span().begin()), ++i;
            for (auto& v : self().velocity()) std::copy(before[i].begin(), before[i].end(), v.span().begin()), ++i;
            throw;
        }
        self().sync_to_device();
    }

protected:
    static constexpr std::uint64_t mixup_stream = 0x6d69787570ull;  // "mixup"
    /// The trainer's checkpoint format after the model section: 2 = settings and history by name.
    /// Format 1 (run.* fields in a fixed order, history as packed doubles; before settings.hpp)
    /// is not resumed; its model section still loads with io::load_model.
    static constexpr std::int64_t checkpoint_format = 2;

    static void write_column(io::checkpoint_writer& w, const char* name, double v) {
        w.f64(std::string("history.") + name, v);
    }
    static void write_column(io::checkpoint_writer& w, const char* name, std::integral auto v) {
        w.i64(std::string("history.") + name, static_cast<std::int64_t>(v));
    }
    template <class T>
    static void read_column(io::checkpoint_reader& r, const char* name, T& v) {
        const std::string field = std::string("history.") + name;
        if (!r.next_is(field)) return;  // a column added after the file was written keeps its default
        if constexpr (std::is_integral_v<T>)
            v = static_cast<T>(r.i64(field));
        else
            v = r.f64(field);
    }

    /// Where a run stopped inside an epoch: steps done and the epoch's sums so far.
    struct epoch_progress {
        long steps = 0;
        double loss_sum = 0, train_seconds = 0, seconds = 0;
    };

    /// Ends fit() inside an epoch: the checkpoint (if options.checkpoint is set) holds the position.
    void stop_inside_epoch(const epoch_progress& at) {
        partial_ = at;
        if (!opt_.checkpoint.empty() && leader()) save(opt_.checkpoint);
    }

    // Data parallelism (options.communicator; docs/design.md, "Data-parallel training").
    [[nodiscard]] int world_size() const noexcept { return opt_.communicator ? opt_.communicator->size() : 1; }
    [[nodiscard]] int world_rank() const noexcept { return opt_.communicator ? opt_.communicator->rank() : 0; }
    /// Rank 0, the one that writes checkpoints and shows progress (every rank holds the same model).
    [[nodiscard]] bool leader() const noexcept { return world_rank() == 0; }

    /// The stop signal of this step as every rank sees it: a signal on any rank stops them all at
    /// the same step (a rank that stopped alone would leave the others waiting in the next sum).
    int agreed_stop_signal() {
        const int own = detail::stop_signal.load();
        if (world_size() == 1) return own;
        double any = own != 0 ? 1.0 : 0.0;
        opt_.communicator->sum(std::span<double>(&any, 1));
        return any == 0 ? 0 : own != 0 ? own : SIGINT;
    }

    /// The mean of a per-rank value over the ranks (fixed order; the value itself with one rank).
    double mean_over_ranks(double v) {
        if (world_size() == 1) return v;
        opt_.communicator->sum(std::span<double>(&v, 1));
        return v / world_size();
    }

    /// A data-parallel run needs the same settings on every rank (those that may change on resume
    /// aside: threads, workers, progress, ...). Refused on every rank, each naming its difference.
    void check_same_settings_on_every_rank() {
        if (world_size() == 1) return;
        require<error>(opt_.batch % world_size() == 0, "tricks::trainer: batch ", opt_.batch,
                       " is not divisible by the ", world_size(),
                       " ranks of this data-parallel run; the global batch is split evenly between them");
        std::vector<std::pair<std::string, std::string>> mine;
        std::string text;
        for (const auto& x : settings())
            if (x.rule != on_resume::may_change) {
                mine.emplace_back(x.name, x.value);
                text += x.name + '\x1f' + x.value + '\x1e';
            }
        std::string first = text;
        opt_.communicator->broadcast(first, 0);
        std::string why;
        if (first != text) {
            std::vector<std::pair<std::string, std::string>> theirs;
            for (std::size_t at = 0; at < first.size();) {
                const std::size_t us = first.find('\x1f', at), rs = first.find('\x1e', us);
                theirs.emplace_back(first.substr(at, us - at), first.substr(us + 1, rs - us - 1));
                at = rs + 1;
            }
            for (std::size_t i = 0; i < std::max(mine.size(), theirs.size()) && why.empty(); ++i)
                if (i >= mine.size() || i >= theirs.size() || mine[i] != theirs[i])
                    why =
                        i < mine.size() && i < theirs.size() && mine[i].first == theirs[i].first
                            ? detail::cat(mine[i].first, " = ", mine[i].second, " where rank 0 has ", theirs[i].second)
                            : detail::cat("other settings than rank 0 (", i < mine.size() ? mine[i].first : "-", " vs ",
                                          i < theirs.size() ? theirs[i].first : "-", ")");
        }
        double refused = why.empty() ? 0.0 : 1.0;
        opt_.communicator->sum(std::span<double>(&refused, 1));
        if (refused == 0) return;
        throw error(why.empty()
                        ? detail::cat("tricks::trainer: ", refused,
                                      " other rank(s) of this data-parallel run have settings ",
                                      "other than rank 0's (each names its own); every rank needs the same settings")
                        : detail::cat("tricks::trainer: rank ", world_rank(), " of ", world_size(), " has ", why,
                                      "; every rank of a data-parallel run needs the same settings"));
    }
    /// After the checkpoint of a stop on `sig`: says where the run stopped and how to go on (stderr
    /// and the exception's message).
    [[noreturn]] void stopped_by_signal(int sig, int e, long s, long steps) const {
        const std::string where =
            s < steps ? detail::cat("after step ", s, " of ", steps, " of epoch ", e + 1, "/", opt_.epochs)
                      : detail::cat("after epoch ", e + 1, "/", opt_.epochs);
        const std::string msg =
            opt_.checkpoint.empty()
                ? detail::cat("tricks::trainer: ", detail::signal_name(sig), ": stopped ", where,
                              "; no checkpoint was written (options.checkpoint is empty), so the run cannot be resumed")
                : detail::cat("tricks::trainer: ", detail::signal_name(sig), ": stopped ", where,
                              "; the run is saved in ", opt_.checkpoint.string(),
                              ": resume() from it with the same settings to continue exactly "
                              "where it stopped");
        std::fprintf(stderr, "%s\n", msg.c_str());
        std::fflush(stderr);
        throw interrupted(msg, sig);
    }

    /// resume()'s reading: everything is checked and read into locals before the trainer changes.
    void restore(io::checkpoint_reader& r, const std::filesystem::path& path) {
        io::load_model(r, *model_);
        require<data_error>(r.next_is("run.format"), "tricks::trainer: ", path.string(),
                            " was written by an earlier tricks (trainer checkpoint format 1, before the run settings "
                            "were saved by name); this build resumes format ",
                            checkpoint_format, " only. Its model still loads with io::load_model");
        const std::int64_t format = r.i64("run.format");
        require<data_error>(format == checkpoint_format, "tricks::trainer: ", path.string(),
                            ": trainer checkpoint format ", format, ", this build resumes format ", checkpoint_format);
        const std::int64_t count = r.i64("run.settings");
        require<data_error>(count >= 0 && count <= 4096, "tricks::trainer: ", path.string(), ": ", count,
                            " run settings");
        std::vector<setting> saved;
        for (std::int64_t i = 0; i < count; ++i) {
            setting x;
            x.name = r.str("setting.name");
            x.value = r.str("setting.value");
            saved.push_back(std::move(x));
        }
        // Settings of this build that the file lacks (added later) are compared with their value
        // under a default options{}: what the run that wrote the file did without them.
        const std::vector<setting> now = settings(), defaults = settings_for(options{}, {});
        std::vector<setting> data;
        for (const auto& x : saved)
            if (x.name.starts_with("data.")) data.push_back(x);
        for (const auto& x : now) {
            if (x.name.starts_with("data.")) continue;  // checked by fit(), which knows the data
            const setting* was = find_setting(saved, x.name);
            if (!was) was = find_setting(defaults, x.name);
            check_setting(path, x, was ? was->value : std::string("(absent)"));
        }
        const std::int64_t done = r.i64("run.epochs_done");
        require<data_error>(done >= 0 && done <= 1'000'000, "tricks::trainer: ", path.string(), ": ", done,
                            " epochs done");
        epoch_progress inside;  // absent in the first format-2 files (no mid-epoch checkpoints then)
        if (r.next_is("run.epoch_steps")) {
            inside.steps = static_cast<long>(r.i64("run.epoch_steps"));
            inside.loss_sum = r.f64("run.epoch_loss_sum");
            inside.train_seconds = r.f64("run.epoch_train_seconds");
            inside.seconds = r.f64("run.epoch_seconds");
        }
        require<data_error>(inside.steps >= 0, "tricks::trainer: ", path.string(), ": ", inside.steps,
                            " steps into an epoch");
        for (auto& v : self().velocity()) r.floats("optim.velocity", v.span());
        loss_scaler scaler = scaler_;
        scaler.scale = r.f64("scaler.scale");
        scaler.clean_steps = static_cast<int>(r.i64("scaler.clean"));
        scaler.skipped = r.i64("scaler.skipped");
        // The normalisation of in-memory data; none (0 floats) for sources that normalise themselves.
        const auto normalisation = [&](const char* name) {
            const std::string bytes = r.str(name);
            const std::size_t channels = static_cast<std::size_t>(Model::input_channels);
            require<data_error>(bytes.empty() || bytes.size() == channels * sizeof(float),
                                "tricks::checkpoint: ", path.string(), ": field '", name, "' holds ",
                                bytes.size() / sizeof(float), " floats, expected 0 or ", channels);
            std::vector<float> v(bytes.size() / sizeof(float));
            if (!v.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
            return v;
        };
        std::vector<float> mean = normalisation("data.mean"), stddev = normalisation("data.stddev");
        history h;
        for (std::int64_t i = 0; i < done; ++i) {
            epoch_record rec;
            std::apply([&](const auto&... c) { (read_column(r, c.name, rec.*(c.member)), ...); }, epoch_columns);
            h.epochs.push_back(rec);
        }
        require<data_error>(r.at_end(), "tricks::checkpoint: ", path.string(),
                            ": unexpected data after the last field");
        scaler_ = scaler;
        aug_.mean = std::move(mean);
        aug_.stddev = std::move(stddev);
        hist_ = std::move(h);
        partial_ = inside;
        resumed_from_ = path;
        resumed_data_ = std::move(data);
        data_settings_ = resumed_data_;
    }

    /// The settings of a trainer of this type with options `opt` and training data `data`.
    static std::vector<setting> settings_for(const options& opt, const std::vector<setting>& data) {
        options o = opt;
        o.warmup_epochs = warmup_epochs_for(opt);
        o.step_milestones = milestones_for(opt);
        std::vector<setting> s = option_settings(o);
        s.push_back({"model", Model::name(), detail::json_string(Model::name()), on_resume::fixed});
        s.push_back({"recipe", Recipe::describe(), detail::json_string(Recipe::describe()), on_resume::fixed});
        s.insert(s.end(), data.begin(), data.end());
        return s;
    }

    /// Refuses `now` when the checkpoint's value differs and its rule does not let it.
    void check_setting(const std::filesystem::path& path, const setting& now, const std::string& saved) const {
        if (saved == now.value || now.rule == on_resume::may_change) return;
        if (now.rule == on_resume::must_match && allowed_to_change(now.name)) return;
        throw data_error(detail::cat(
            "tricks::trainer: ", path.string(), " was written with ", now.name, " = ", saved, ", this run has ",
            now.value,
            now.rule == on_resume::fixed
                ? std::string("; this setting cannot change on resume (it defines the model, the data or the steps "
                              "of the run the checkpoint is a point of)")
                : "; resuming needs the same value (to change it on purpose, name it in options.resume_allow: \"" +
                      now.name + "\")"));
    }
    [[nodiscard]] bool allowed_to_change(std::string_view name) const {
        for (const auto& a : opt_.resume_allow)
            if (a == name) return true;
        return false;
    }
    /// Every name in options.resume_allow must be a must-match setting of this trainer.
    void check_resume_allow() const {
        if (opt_.resume_allow.empty()) return;
        const std::vector<setting> s = settings();
        std::string valid;
        for (const auto& x : s)
            if (x.rule == on_resume::must_match) valid += (valid.empty() ? "" : ", ") + x.name;
        for (const auto& a : opt_.resume_allow) {
            const setting* x = find_setting(s, a);
            require<error>(x != nullptr || a.starts_with("data."), "tricks::trainer: options.resume_allow names '", a,
                           "', which is not a run setting; the settings that may be allowed to change are ", valid);
            require<error>(x != nullptr && x->rule == on_resume::must_match,
                           "tricks::trainer: options.resume_allow names '", a, "', which ",
                           x && x->rule == on_resume::may_change ? "may change anyway" : "can never change on resume",
                           "; the settings that may be allowed to change are ", valid);
        }
    }
    /// The identity of the training data: what the normalisation, the order and the position of a
    /// checkpoint refer to. A resumed run must train on the same data (fixed settings).
    template <class Source>
    void note_training_data(const Source& train) {
        std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a over the labels, in the source's order
        for (std::size_t i = 0; i < train.size(); ++i) {
            const auto l = static_cast<std::uint32_t>(train.label(i));
            for (int b = 0; b < 4; ++b) h = (h ^ ((l >> (8 * b)) & 0xff)) * 0x100000001b3ull;
        }
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
        const auto text = [](auto v) { return std::to_string(v); };
        const std::string image = text(train.height()) + "x" + text(train.width()) + "x" + text(train.channels());
        std::vector<setting> d = {
            {"data.train", train.name(), detail::json_string(train.name()), on_resume::may_change},
            {"data.train_images", text(train.size()), text(train.size()), on_resume::fixed},
            {"data.classes", text(train.classes()), text(train.classes()), on_resume::fixed},
            {"data.image", image, detail::json_string(image), on_resume::fixed},
            {"data.labels_fnv1a", hex, detail::json_string(hex), on_resume::fixed},
        };
        if (!resumed_from_.empty())
            for (const auto& x : d) {
                const setting* was = find_setting(resumed_data_, x.name);
                check_setting(resumed_from_, x, was ? was->value : std::string("(absent)"));
            }
        data_settings_ = std::move(d);
    }

    Derived& self() noexcept { return static_cast<Derived&>(*this); }

    /// Throws unless the model can take `d`'s images and labels.
    template <class Source>
    static void check_source(const Source& d) {
        require<error>(d.channels() == Model::input_channels, "tricks::trainer: ", Model::name(), " takes ",
                       Model::input_channels, " input channels, dataset '", d.name(), "' has ", d.channels());
        require<error>(d.classes() <= Model::classes, "tricks::trainer: dataset '", d.name(), "' has ", d.classes(),
                       " classes, ", Model::name(), " predicts ", Model::classes);
        require<error>(d.size() > 0, "tricks::trainer: dataset '", d.name(), "' is empty");
    }
    /// Loader threads: options.data_workers, or (0) one for in-memory data and all cores for
    /// sources that decode files.
    template <class Source>
    int data_workers(const Source& d) const {
        if (opt_.data_workers > 0) return opt_.data_workers;
        if constexpr (data::is_slice_source<Source>)  // its source's count
            return data_workers(d.src);
        else if constexpr (std::is_same_v<Source, data::memory_source>)
            return 1;
        else
            return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    }

    /// The error a non-finite loss raises under fp32 (fp16_mixed skips the step instead).
    [[noreturn]] static void non_finite_loss(double loss, int e, long s, long t, double lr) {
        throw training_error(cat("tricks::trainer: non-finite loss (", loss, ") at epoch ", e + 1, ", step ", s + 1,
                                 " (global step ", t + 1, "), lr ", lr, "; lower options.lr or use warmup"));
    }

    void build_schedule(long steps_per_epoch) {
        sched_.base_lr = opt_.lr;
        sched_.batch = opt_.batch;
        sched_.scaling_reference = Recipe::scaling_reference_batch;
        sched_.steps_per_epoch = steps_per_epoch;
        sched_.total_steps = steps_per_epoch * opt_.epochs;
        sched_.warmup_steps = Recipe::warmup ? steps_per_epoch * warmup_epochs_for(opt_) : 0;
        sched_.decay = Recipe::cosine ? lr_schedule::decay_kind::cosine
                       : Recipe::step ? lr_schedule::decay_kind::step
                                      : lr_schedule::decay_kind::constant;
        sched_.milestones = milestones_for(opt_);
        sched_.validate();
    }

    /// A run-time number given for a policy the recipe lacks would be silently ignored: refused,
    /// naming the policy to add. "Given" means different from a default options{} (options.hpp).
    void check_policy_numbers() const {
        const options plain;
        const auto check = [&](bool has_policy, const char* name, const auto& value, const auto& default_value,
                               const char* what, const char* policy) {
            if (has_policy || value == default_value) return;
            throw training_error(detail::cat(
                "tricks::trainer: options.", name, " = ", detail::setting_forms(value).first,
                " given, but the recipe has no ", what, " (", policy, "); add it to the recipe or leave options.", name,
                " at its default (", detail::setting_forms(default_value).first, "). Recipe: ", Recipe::describe()));
        };
        check(Recipe::mixup, "mixup_alpha", opt_.mixup_alpha, plain.mixup_alpha, "mixup", "mix::mixup");
        check(Recipe::label_smoothing, "label_smoothing", opt_.label_smoothing, plain.label_smoothing,
              "label smoothing", "loss::label_smoothing");
        constexpr const char* distill = "loss::distill<Teacher>";
        check(Recipe::distills, "distill_temperature", opt_.distill_temperature, plain.distill_temperature,
              "knowledge distillation", distill);
        check(Recipe::distills, "teacher_checkpoint", opt_.teacher_checkpoint, plain.teacher_checkpoint,
              "knowledge distillation", distill);
        constexpr const char* fp16 = "precision::fp16_mixed";
        check(Recipe::fp16, "loss_scale", opt_.loss_scale, plain.loss_scale, "FP16 loss scaling", fp16);
        check(Recipe::fp16, "loss_scale_window", opt_.loss_scale_window, plain.loss_scale_window, "FP16 loss scaling",
              fp16);
        check(Recipe::warmup, "warmup_epochs", opt_.warmup_epochs, plain.warmup_epochs, "lr warmup",
              "lr::warmup<epochs<m>>");
        check(Recipe::step, "step_milestones", opt_.step_milestones, plain.step_milestones, "lr::step decay",
              "lr::step<epochs<e>...>");
        require<training_error>(opt_.warmup_epochs >= -1,
                                "tricks::trainer: options.warmup_epochs = ", opt_.warmup_epochs,
                                "; expected >= 0, or -1 for the recipe's lr::warmup<epochs<m>>");
    }

    /// options.warmup_epochs when given (>= 0), else lr::warmup<epochs<m>>'s m (0 without warmup).
    static int warmup_epochs_for(const options& o) noexcept {
        return o.warmup_epochs >= 0 ? o.warmup_epochs : Recipe::default_warmup_epochs;
    }
    /// options.step_milestones when given (checked here, before any step), else lr::step's epochs.
    static std::vector<int> milestones_for(const options& o) {
        const auto& m = o.step_milestones;
        if (m.empty()) return recipe_milestones();
        require<training_error>(Recipe::step, "tricks::trainer: options.step_milestones = ", milestone_text(m),
                                " given, but the recipe has no lr::step decay (", Recipe::describe(), ")");
        for (std::size_t i = 0; i < m.size(); ++i)
            require<training_error>(m[i] >= 1 && (i == 0 || m[i] > m[i - 1]),
                                    "tricks::trainer: options.step_milestones = ", milestone_text(m),
                                    ": milestones must be epochs >= 1 in increasing order (entry ", i, " is ", m[i],
                                    ")");
        return m;
    }
    /// lr::step's epochs (none without lr::step).
    static std::vector<int> recipe_milestones() {
        return {Recipe::milestones(), Recipe::milestones() + Recipe::milestone_count()};
    }
    static std::string milestone_text(const std::vector<int>& m) { return m.empty() ? "none" : epoch_list(m, ","); }

    options opt_;
    std::filesystem::path resumed_from_;  // the checkpoint resume() read, if any
    std::vector<setting> resumed_data_;   // its data.* settings, compared by fit()
    std::vector<setting> data_settings_;  // the training data's identity (note_training_data)
    std::unique_ptr<Model> model_;
    std::unique_ptr<teacher_slot> teacher_;
    std::vector<nn::parameter*> params_;
    bool init_loaded_ = false;      // options.init_weights is loaded by the first fit() of a fresh run
    std::vector<float> lr_scales_;  // per parameter (finetune.hpp): 0 frozen, backbone_lr_scale, 1 the classifier
    loss_scaler scaler_;
    lr_schedule sched_;
    data::augment_options aug_;
    int data_classes_ = Model::classes;  // classes of the training data (<= the model's outputs)
    history hist_;
    epoch_progress partial_;  // a stop inside an epoch (fit(), resume()); consumed when fit() starts it
};

}  // namespace detail

/// The trainer of a backend. backend::cpu here; backend::cuda in tricks/train/cuda_trainer.cuh
/// (a partial specialisation: include <tricks/cuda.cuh> from a CUDA translation unit).
template <class Model, class Recipe, class Backend = backend::cpu>
class trainer : public detail::trainer_base<trainer<Model, Recipe, Backend>, Model, Recipe> {
    static_assert(std::is_same_v<Backend, backend::cpu>,
                  "tricks::trainer: this translation unit has the backend::cpu trainer only; for backend::cuda "
                  "include <tricks/cuda.cuh>, compile with nvcc and link tricks::cuda");
    using base = detail::trainer_base<trainer, Model, Recipe>;
    friend base;

public:
    explicit trainer(options o = {}) : base(std::move(o)) {
        using gt = distributed::gradient_transport;
        require<error>(this->opt_.gradient_transport == gt::automatic || this->opt_.gradient_transport == gt::host,
                       "tricks::trainer<..., backend::cpu>: options.gradient_transport = ",
                       distributed::to_string(this->opt_.gradient_transport),
                       " moves gradients between GPUs (backend::cuda only); the CPU trainer sums on the host: leave "
                       "it auto or host");
        opt_state_ = sgd_optimizer(this->params_, sgd_config{this->opt_.momentum, this->opt_.weight_decay,
                                                             Recipe::nesterov, Recipe::no_bias_decay});
        opt_state_.set_lr_scales(this->lr_scales_);
    }

    /// Data parallelism: wall seconds this rank's training thread spent on the gradient sums since
    /// the trainer was made: copying buckets out, starting and advancing their sums during the
    /// backward pass, and waiting after it (for the other ranks too); 0 with one rank.
    [[nodiscard]] double communication_seconds() const noexcept { return buckets_.seconds(); }

private:
    double train_step(tensor<float>& x, const tensor<float>& q, double lr, long t, int e, long s) {
        const nn::context ctx{.phase = nn::mode::train,
                              .store = base::storage(),
                              .conv = this->opt_.conv_algorithm,
                              .sync_batch_norm = sync_batch_norm() ? this->opt_.communicator.get() : nullptr,
                              .gradients = this->world_size() > 1 ? &buckets_ : nullptr,
                              .arena = &arena_};
        const int n = x.shape().n, K = Model::classes;
        ctx.round(x);  // the input as the storage precision holds it
        const tensor<float>& z = this->model_->forward(x, ctx);
        dz_.resize(z.shape());
        double loss = backend::host::softmax_cross_entropy(n, K, z.data(), q.data(), dz_.data());
        if constexpr (Recipe::distills) {
            const nn::context teacher_ctx{
                .phase = nn::mode::eval, .store = nn::storage::fp32, .conv = this->opt_.conv_algorithm};
            const tensor<float>& r = teacher_pool_.forward(x, teacher_ctx);
            loss += distillation_term(n, K, z.data(), r.data(), this->opt_.distill_temperature, dz_.data(), pz_, pr_);
        }
        loss = this->mean_over_ranks(loss);  // every rank judges the same loss
        if (!std::isfinite(loss) && !Recipe::fp16) base::non_finite_loss(loss, e, s, t, lr);
        if constexpr (Recipe::fp16) {
            const float S = static_cast<float>(this->scaler_.scale);
            for (auto& v : dz_.span()) v *= S;
        }
        if (this->world_size() > 1)  // the running statistics' sum starts now, the gradients' during the backward
            buckets_.begin(*this->opt_.communicator, ctx, this->params_,
                           sync_batch_norm() ? std::vector<tensor<float>*>{} : this->model_->buffers());
        if (this->opt_.freeze_stages > 0)  // no gradients for the frozen parts (finetune.hpp)
            this->model_->backward_from_layer(dz_, ctx, static_cast<std::size_t>(this->opt_.freeze_stages));
        else
            this->model_->backward(dz_, ctx, false);
        bool apply = true;
        // Gradients as FP16/BF16 buffers hold them: with several ranks the buckets round each one
        // before sending it, and the mean over the ranks is rounded again here.
        if (this->world_size() > 1) buckets_.finish(this->world_size());
        if constexpr (Recipe::fp16 || Recipe::bf16)
            for (auto* p : this->params_) ctx.round(p->grad);
        if constexpr (Recipe::fp16) apply = this->scaler_.unscale_or_skip(this->params_) && std::isfinite(loss);
        if (apply) opt_state_.step(lr);
        return loss;
    }
    /// Evaluation runs through an inference_pool (a model copy per thread over small sub-batches, the
    /// same bits as model_->forward), loaded with the weights of the moment.
    void eval_begin() { eval_pool_.load(*this->model_); }
    const float* eval_logits(tensor<float>& x) {
        const nn::context ctx{.phase = nn::mode::eval, .store = base::storage(), .conv = this->opt_.conv_algorithm};
        ctx.round(x);
        return eval_pool_.forward(x, ctx).data();
    }
    [[nodiscard]] bool sync_batch_norm() const noexcept { return this->opt_.sync_batch_norm && this->world_size() > 1; }
    void sync_to_host() {}
    void sync_to_device() {}
    /// The teacher's weights never change: its pool keeps their transformed filters for the whole run.
    void teacher_loaded() {
        if constexpr (Recipe::distills) teacher_pool_.load(*this->teacher_);
    }
    void sync_scaler() {}
    std::vector<tensor<float>>& velocity() noexcept { return opt_state_.velocity(); }

    sgd_optimizer opt_state_;
    tensor<float> dz_, pz_, pr_;
    /// The backward pass's input gradients, lent from layer to layer (nn/arena.hpp): the model holds
    /// a few gradient buffers at a time instead of one per layer.
    nn::activation_arena arena_;
    /// Data parallelism: every rank's gradients (each the mean over its batch / ranks images)
    /// become their mean over the ranks, the gradient of the global batch's mean loss; the batch
    /// norms' running statistics become their mean too, so every rank holds the same model after
    /// every step (and a checkpoint of rank 0 is every rank's). Fixed-order sums in buckets that
    /// start during the backward pass (gradient_buckets.hpp). Synchronised batch norms computed
    /// their running statistics from the global batch, the same bits on every rank: those are left
    /// as they are (a mean of n equal values may round).
    detail::gradient_buckets buckets_;
    models::inference_pool<Model> eval_pool_;
    models::inference_pool<typename base::teacher_slot> teacher_pool_;
};

}  // namespace tricks
