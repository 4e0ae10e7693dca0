// The paper's two cumulative ablations (He et al. 2019, Table 5: model tweaks; Table 6: training
// refinements) on Fashion-MNIST with cifar_resnet<20>. Each study is a list of types; each row is
// one typed trainer<Model, Recipe>. Writes a Markdown report, CSV, JSON, and gnuplot plots
// (learning curves and deltas) to --out; --quick is a smoke run that writes every file in seconds.
//
// Building with -DTRICKS_ABLATION_CONFIGS=N keeps the first N distinct configurations (the
// compile-cost benchmark, bench/compile/run.sh); the default builds all of them.
#include <omp.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <tricks/ablation.hpp>

#include "cli.hpp"

namespace t = tricks;
namespace ab = tricks::ablation;

namespace {

// ---- models: ResNet-20 for 28x28 grey images, 10 classes ----------------------------------------
// Zero-gamma is part of the paper's efficient setting (Table 3), which is the baseline of both of
// its ablation tables, so every model here has it.
template <class... Tweaks>
using net = t::models::cifar_resnet<20, t::in_channels<1>, t::classes<10>, t::init::zero_gamma, Tweaks...>;
using net_a = net<>;                                         // ResNet-A (the original)
using net_c = net<t::tweak::deep_stem>;                      // + ResNet-C: three 3x3 stem convs
using net_d = net<t::tweak::deep_stem, t::tweak::avg_down>;  // + ResNet-D: avg-pool shortcut
// ResNet-B (tweak::stride_on_3x3) is not a row: it moves a bottleneck's stride from the 1x1 to the
// 3x3 conv, and cifar_resnet's basic blocks already stride on their first conv, a 3x3. The type
// would build the same network as A; listing it is a compile error ("two configurations train the
// same network with the same recipe").

// The distillation teacher: the D model at twice the width. Stronger (4x the parameters and MACs,
// 1.09 M vs 0.27 M parameters) but affordable on a CPU: wider convs are bigger GEMMs, which run
// closer to peak, so a teacher epoch costs about 2.5-3x a student epoch, where the deeper
// cifar_resnet<56> (also ~3x the MACs, but 3x as many small layers) costs more wall time per MAC.
// The same family as the student, as in the paper (ResNet-152-D teaching ResNet-50-D, §5.3).
using teacher = t::models::cifar_resnet<20, t::width<32>, t::in_channels<1>, t::classes<10>, t::init::zero_gamma,
                                        t::tweak::deep_stem, t::tweak::avg_down>;

// ---- recipes -------------------------------------------------------------------------------------
using sgd = t::optim::sgd<t::optim::nesterov>;  // the paper's baseline optimizer is NAG (§2.1)
using scaling = t::lr::linear_scaling<256>;
using warmup = t::lr::warmup<t::epochs<1>>;
// The paper's baseline decays the lr x0.1 at epochs 30, 60 and 90 of 120; scaled to the default
// 12 epochs, that is 3, 6 and 9 (the type's milestones). With another --epochs the run moves them
// to the same fractions, 1/4, 1/2 and 3/4 of the run (options.step_milestones), and says so.
using step = t::lr::step<t::epochs<3>, t::epochs<6>, t::epochs<9>>;

/// The paper's milestones (1/4, 1/2, 3/4 of the run) for a run of `epochs` epochs, rounded to the
/// nearest epoch (halves up), each at least 1 and after the one before; empty when the run is too
/// short to hold three distinct ones (then the type's 3, 6, 9 apply) or has the type's 12 epochs.
std::vector<int> scaled_milestones(int epochs) {
    if (epochs == 12 || epochs < 4) return {};
    std::vector<int> m;
    for (int k = 1; k <= 3; ++k) m.push_back((2 * epochs * k + 4) / 8);
    return m;
}
using nbd = t::decay::no_bias_decay;
using cosine = t::lr::cosine;
using smooth = t::loss::label_smoothing;
using distill = t::loss::distill<teacher>;
using mixup = t::mix::mixup;

// The efficient baseline of Table 3/6 (FP16 is left out: on this CPU it is an emulation that only
// costs time, and the paper uses it for speed, see docs/tricks/fp16_mixed.md).
using efficient = t::recipe<sgd, scaling, warmup, step, nbd>;
using plus_cosine = t::recipe<sgd, scaling, warmup, cosine, nbd>;
using plus_smoothing = t::recipe<sgd, scaling, warmup, cosine, nbd, smooth>;
using plus_distill = t::recipe<sgd, scaling, warmup, cosine, nbd, smooth, distill>;
using plus_mixup = t::recipe<sgd, scaling, warmup, cosine, nbd, smooth, mixup>;
using plus_distill_mixup = t::recipe<sgd, scaling, warmup, cosine, nbd, smooth, distill, mixup>;
// The teacher's recipe: cosine decay and label smoothing, as the paper's teacher (§5.3). The best
// rows of Table 6 add distillation (which needs this teacher) or mixup (which needs more epochs
// than a short run has to pay off), so neither is used for the teacher.
using teacher_recipe = plus_smoothing;

// ---- the two studies -----------------------------------------------------------------------------
using model_tweaks = ab::grid<ab::axis<net_a, net_c, net_d>, ab::axis<efficient>>;
using refinements =
    ab::rows<ab::config<net_d, efficient>, ab::config<net_d, plus_cosine>, ab::config<net_d, plus_smoothing>,
             ab::config<net_d, plus_distill>, ab::config<net_d, plus_mixup>, ab::config<net_d, plus_distill_mixup>>;
// Table 6 starts where Table 5 ends: the same type, so it is trained once and reused.
static_assert(std::is_same_v<ab::at_t<model_tweaks, 2>, ab::at_t<refinements, 0>>);

// ---- how many configurations this build holds (compile-cost benchmark) --------------------------
#ifdef TRICKS_ABLATION_CONFIGS
inline constexpr std::size_t config_limit = TRICKS_ABLATION_CONFIGS;
static_assert(config_limit >= 1, "ablation: TRICKS_ABLATION_CONFIGS must be at least 1");
#else
inline constexpr std::size_t config_limit = ab::size_v<model_tweaks> + ab::size_v<refinements> - 1;  // all
#endif
inline constexpr std::size_t tweak_rows = std::min(config_limit, ab::size_v<model_tweaks>);
// The refinements' first row is the tweaks' last one, so it adds no configuration.
inline constexpr std::size_t refinement_rows =
    config_limit <= ab::size_v<model_tweaks>
        ? 0
        : std::min(config_limit - ab::size_v<model_tweaks> + 1, ab::size_v<refinements>);
using tweaks_built = ab::first_t<model_tweaks, tweak_rows>;
using refinements_built = ab::first_t<refinements, refinement_rows>;

template <class G>
constexpr bool any_distills() {
    bool any = false;
    ab::for_each<G>([&]<class M, class R>() { any = any || R::distills; });
    return any;
}
inline constexpr bool needs_teacher = any_distills<refinements_built>();

// ---- command line --------------------------------------------------------------------------------
struct cli {
    t::options opt;
    int seeds = 1;
    int teacher_epochs = 0;  // 0: --epochs
    long train_images = 0;   // 0: all 60,000
    long test_images = 0;    // 0: all 10,000
    bool quick = false;
    bool list = false;
    std::string gnuplot = "gnuplot";
    std::filesystem::path data_dir = t::data::fashion_mnist::default_dir();
    std::filesystem::path out_dir = "out/ablation";
    std::filesystem::path teacher_checkpoint;  // given: use it instead of training a teacher
    std::string command;
};

const char* usage =
    "usage: ablation [options]\n"
    "Runs the paper's two cumulative ablations (He et al. 2019, Tables 5 and 6) on Fashion-MNIST with\n"
    "cifar_resnet<20>: (1) model tweaks A, +C (deep stem), +D (avg-down shortcut); (2) training\n"
    "refinements on the D model: efficient baseline (linear scaling, warmup, zero-gamma, no bias decay,\n"
    "step decay), +cosine, +label smoothing, +distillation, +mixup, +distillation and mixup. Writes\n"
    "ablation.md, ablation.csv, ablation.json and plots (gnuplot: SVG and PNG) to --out.\n\n"
    "  --seeds N          seeds per configuration; N > 1 reports mean ± std (default 1)\n"
    "  --epochs N         training epochs per run (default 12); the baseline's step decay is at 1/4, 1/2\n"
    "                     and 3/4 of the run (3, 6, 9 of 12), as the paper's 30/60/90 of 120\n"
    "  --batch N          batch size (default 128)\n"
    "  --lr X             base learning rate at batch 256 (linear scaling; default 0.4)\n"
    "  --wd X             weight decay (default 5e-5)\n"
    "  --teacher FILE     distillation teacher checkpoint (a trainer checkpoint of "
    "cifar_resnet20w32+deep_stem\n"
    "                     +avg_down+zero_gamma); default: train one first and write <out>/teacher.ckpt\n"
    "  --teacher-epochs N epochs of the teacher's training (default: --epochs)\n"
    "  --quick            smoke run: 512 train and 500 test images, 1 epoch of 4 steps of batch 64\n"
    "                     (flags given with it override these)\n"
    "  --train-images N   train on the first N images only\n"
    "  --test-images N    evaluate on the first N test images only\n"
    "  --steps N          at most N steps per epoch\n"
    "  --data DIR         Fashion-MNIST IDX files (default $TRICKS_FASHION_MNIST_DIR or\n"
    "                     /usr/share/datasets/fashion-mnist, Debian package dataset-fashion-mnist)\n"
    "  --out DIR          output folder (default out/ablation)\n"
    "  --threads N        CPU threads (default: all cores)\n"
    "  --conv ALGO        CPU convolutions: winograd (default) or direct (no Winograd)\n"
    "  --gnuplot PROGRAM  the gnuplot to render plots with (default gnuplot; 'none': write scripts only)\n"
    "  --list             print the configurations of this build and exit\n"
    "  --quiet            no per-epoch progress from the trainer\n"
    "  --help             this text\n";

[[noreturn]] void fail(const std::string& msg) { examples::cli_fail("ablation", msg); }

template <class T>
T number(std::string_view flag, const char* v) {
    return examples::cli_number<T>("ablation", flag, v);
}

cli parse(int argc, char** argv) {
    cli c;
    c.opt.epochs = 12;
    c.opt.batch = 128;
    c.opt.lr = 0.4;
    c.opt.weight_decay = 5e-5;
    for (int i = 0; i < argc; ++i) c.command += (i ? " " : "") + std::string(argv[i]);
    // --quick sets defaults first, so that flags next to it (in any order) override them.
    for (int i = 1; i < argc; ++i)
        if (std::string_view(argv[i]) == "--quick") {
            c.quick = true;
            c.train_images = 512;
            c.test_images = 500;
            c.opt.epochs = 1;
            c.opt.batch = 64;
            c.opt.max_steps_per_epoch = 4;
        }
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        auto take = [&] {
            ++i;
            return v;
        };
        if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            std::exit(0);
        } else if (a == "--quick")
            continue;
        else if (a == "--seeds")
            c.seeds = number<int>(a, take());
        else if (a == "--epochs")
            c.opt.epochs = number<int>(a, take());
        else if (a == "--batch")
            c.opt.batch = number<int>(a, take());
        else if (a == "--lr")
            c.opt.lr = number<double>(a, take());
        else if (a == "--wd")
            c.opt.weight_decay = number<double>(a, take());
        else if (a == "--teacher-epochs")
            c.teacher_epochs = number<int>(a, take());
        else if (a == "--train-images")
            c.train_images = number<long>(a, take());
        else if (a == "--test-images")
            c.test_images = number<long>(a, take());
        else if (a == "--steps")
            c.opt.max_steps_per_epoch = number<int>(a, take());
        else if (a == "--threads")
            c.opt.threads = number<int>(a, take());
        else if (a == "--conv")
            c.opt.conv_algorithm = examples::cli_conv_algo("ablation", a, take());
        else if (a == "--data") {
            if (!v) fail("--data needs a folder");
            c.data_dir = take();
        } else if (a == "--out") {
            if (!v) fail("--out needs a folder");
            c.out_dir = take();
        } else if (a == "--teacher") {
            if (!v) fail("--teacher needs a file");
            c.teacher_checkpoint = take();
        } else if (a == "--gnuplot") {
            if (!v) fail("--gnuplot needs a program");
            c.gnuplot = take();
        } else if (a == "--list")
            c.list = true;
        else if (a == "--quiet")
            c.opt.progress = false;
        else
            fail("unknown option '" + std::string(a) + "'");
    }
    if (c.seeds < 1) fail("--seeds must be at least 1");
    if (c.opt.epochs < 1) fail("--epochs must be at least 1");
    if (c.teacher_epochs < 0) fail("--teacher-epochs must be at least 1");
    if (c.opt.batch < 1) fail("--batch must be at least 1");
    if (c.opt.threads < 0) fail("--threads must be >= 0");
    if (c.train_images < 0 || c.test_images < 0) fail("--train-images and --test-images must be >= 0");
    if (c.opt.max_steps_per_epoch < 0) fail("--steps must be >= 0");
    if (c.teacher_epochs == 0) c.teacher_epochs = c.opt.epochs;
    c.opt.step_milestones = scaled_milestones(c.opt.epochs);  // only the step-decay recipe reads them
    return c;
}

// ---- progress with an estimate of the remaining time ---------------------------------------------
// Work is counted in multiply-accumulates: a training image costs about 3x its forward MACs
// (forward, backward to activations, backward to weights), plus the teacher's forward when it
// distills. The ETA is elapsed time x work left / work done.
template <class M, class R>
constexpr double work_per_image() {
    double w = 3.0 * static_cast<double>(t::macs<M>(28, 28));
    if constexpr (R::distills) w += static_cast<double>(t::macs<typename R::teacher>(28, 28));
    return w;
}

struct progress {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    double total = 0, done = 0;
    int runs = 0, finished = 0;

    [[nodiscard]] double elapsed() const {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    [[nodiscard]] std::string eta() const {
        if (done <= 0) return "--:--";
        return ab::detail::clock(elapsed() * (total - done) / done);
    }
};

struct runner {
    cli& c;
    const t::data::dataset& train;
    const t::data::dataset& test;
    std::filesystem::path teacher_path;
    progress p;
    std::map<std::string, ab::result> done;  // by configuration name: rows shared between studies

    template <class M, class R>
    void plan() {
        if (done.count(ab::config_name<M, R>())) return;
        done.emplace(ab::config_name<M, R>(), ab::result{});
        p.total += c.seeds * work_per_image<M, R>();
        p.runs += c.seeds;
    }

    template <class M, class R>
    void row(ab::study& s, std::size_t index, std::size_t count) {
        ab::result r = ab::describe<M, R>();
        auto& cached = done[r.name];
        if (!cached.runs.empty()) {
            std::fprintf(stderr,
                         "[%s %zu/%zu] %s\n  the same configuration as in an earlier study: reused, not retrained\n",
                         s.id.c_str(), index, count, r.name.c_str());
            r.runs = cached.runs;
            s.rows.push_back(r);
            return;
        }
        for (int seed = 1; seed <= c.seeds; ++seed) {
            std::fprintf(stderr, "[run %d/%d | %s %zu/%zu | seed %d/%d] %s\n", p.finished + 1, p.runs, s.id.c_str(),
                         index, count, seed, c.seeds, r.name.c_str());
            t::options o = c.opt;
            if constexpr (!R::step) o.step_milestones.clear();  // the trainer refuses them without lr::step
            if constexpr (R::distills) o.teacher_checkpoint = teacher_path;
            r.runs.push_back(ab::run_seed<M, R>(o, static_cast<std::uint64_t>(seed), train, test));
            p.done += work_per_image<M, R>();
            ++p.finished;
            const auto& x = r.runs.back();
            std::fprintf(stderr, "  top-1 %.2f%%  %.0f img/s  %s | %d/%d runs done, elapsed %s, ETA %s\n", 100 * x.top1,
                         x.images_per_s, ab::detail::clock(x.seconds).c_str(), p.finished, p.runs,
                         ab::detail::clock(p.elapsed()).c_str(), p.eta().c_str());
        }
        cached = r;
        s.rows.push_back(r);
    }

    template <class G>
    ab::study run_study(std::string id, std::string title, std::string note) {
        ab::study s{std::move(id), std::move(title), std::move(note), {}};
        std::size_t i = 0;
        ab::for_each<G>([&]<class M, class R>() { row<M, R>(s, ++i, ab::size_v<G>); });
        return s;
    }
};

std::string step_decay_note(int epochs, const std::vector<int>& scaled) {
    const std::string run = std::to_string(epochs) + (epochs > 1 ? " epochs" : " epoch");
    if (scaled.empty())
        return "The baseline's step decay is at epochs 3, 6, 9 (the paper's 30/60/90 of 120, scaled to 12 epochs); "
               "this run has " +
               run + ", too short for three distinct milestones, so they stay at 3, 6, 9.";
    return "The baseline's step decay (lr x 0.1) is at epochs " + t::epoch_list(scaled) +
           ": the paper's 30/60/90 of 120, i.e. 1/4, 1/2 and 3/4 of this run's " + run + ".";
}

template <class G>
void require_unique_names(const char* study) {
    const auto names = ab::names<G>();
    std::set<std::string> seen;
    for (const auto& n : names)
        if (!seen.insert(n).second)
            throw t::error(std::string("ablation: two configurations of study '") + study + "' have the same name '" +
                           n + "'; names must tell rows apart");
}

int run(cli& c) {
    require_unique_names<tweaks_built>("model tweaks");
    require_unique_names<refinements_built>("refinements");
    if (c.list) {
        std::puts("model tweaks:");
        for (const auto& n : ab::names<tweaks_built>()) std::printf("  %s\n", n.c_str());
        std::puts("training refinements:");
        for (const auto& n : ab::names<refinements_built>()) std::printf("  %s\n", n.c_str());
        if constexpr (needs_teacher)
            std::printf("teacher:\n  %s\n", ab::config_name<teacher, teacher_recipe>().c_str());
        return 0;
    }

    const auto start = std::chrono::steady_clock::now();
    if (c.opt.threads > 0) omp_set_num_threads(c.opt.threads);
    t::data::dataset train = t::data::fashion_mnist::train(c.data_dir);
    t::data::dataset test = t::data::fashion_mnist::test(c.data_dir);
    if (c.train_images > 0 && c.train_images < train.n)
        train = train.subset(0, static_cast<std::size_t>(c.train_images));
    if (c.test_images > 0 && c.test_images < test.n) test = test.subset(0, static_cast<std::size_t>(c.test_images));
    std::filesystem::create_directories(c.out_dir);

    ab::run_meta meta;
    meta.command = c.command;
    meta.dataset = "Fashion-MNIST";
    meta.train_images = train.n;
    meta.test_images = test.n;
    meta.epochs = c.opt.epochs;
    meta.batch = c.opt.batch;
    meta.seeds = c.seeds;
    meta.threads = omp_get_max_threads();
    meta.lr = c.opt.lr;
    meta.weight_decay = c.opt.weight_decay;

    runner r{c, train, test, {}, {}, {}};
    ab::for_each<tweaks_built>([&]<class M, class R>() { r.template plan<M, R>(); });
    ab::for_each<refinements_built>([&]<class M, class R>() { r.template plan<M, R>(); });
    const bool train_teacher = needs_teacher && c.teacher_checkpoint.empty();
    if (train_teacher) {
        r.p.total += static_cast<double>(c.teacher_epochs) / c.opt.epochs * work_per_image<teacher, teacher_recipe>();
        r.p.runs += 1;
    }
    r.done.clear();

    std::fprintf(
        stderr,
        "ablation: Fashion-MNIST (%d train, %d test images), %d epoch%s x batch %d, %d seed%s, %d threads, %d runs\n"
        "ablation: ResNet-B is omitted: tweak::stride_on_3x3 moves a bottleneck's stride from its 1x1 to its 3x3\n"
        "          conv; cifar_resnet's basic blocks already stride on a 3x3, so B would be A again\n",
        train.n, test.n, c.opt.epochs, c.opt.epochs > 1 ? "s" : "", c.opt.batch, c.seeds, c.seeds > 1 ? "s" : "",
        meta.threads, r.p.runs);
    const std::string step_note = step_decay_note(c.opt.epochs, c.opt.step_milestones);
    if (c.opt.epochs != 12) std::fprintf(stderr, "ablation: note: %s\n", step_note.c_str());

    // ---- the teacher ----
    if constexpr (needs_teacher) {
        meta.teacher = teacher::name();
        meta.teacher_recipe = teacher_recipe::describe();
        if (train_teacher) {
            r.teacher_path = c.out_dir / "teacher.ckpt";
            std::fprintf(stderr, "[run %d/%d | teacher | seed 1] %s (%lld parameters, %.1f MMACs/image), %d epoch(s)\n",
                         r.p.finished + 1, r.p.runs, ab::config_name<teacher, teacher_recipe>().c_str(),
                         static_cast<long long>(t::parameter_count_v<teacher>),
                         static_cast<double>(t::macs<teacher>(28, 28)) / 1e6, c.teacher_epochs);
            t::options o = c.opt;
            o.epochs = c.teacher_epochs;
            o.step_milestones.clear();  // cosine decay
            o.seed = 1;
            o.checkpoint = r.teacher_path;
            t::trainer<teacher, teacher_recipe> tt(o);
            const t::history h = tt.fit(train, test);
            meta.teacher_top1 = h.final_top1();
            r.p.done +=
                static_cast<double>(c.teacher_epochs) / c.opt.epochs * work_per_image<teacher, teacher_recipe>();
            ++r.p.finished;
            std::fprintf(stderr, "  teacher top-1 %.2f%%, wrote %s | %d/%d runs done, elapsed %s, ETA %s\n",
                         100 * meta.teacher_top1, r.teacher_path.string().c_str(), r.p.finished, r.p.runs,
                         ab::detail::clock(r.p.elapsed()).c_str(), r.p.eta().c_str());
        } else {
            r.teacher_path = c.teacher_checkpoint;
        }
        meta.teacher_checkpoint = r.teacher_path.string();
    }

    // ---- the studies ----
    std::vector<ab::study> studies;
    if constexpr (ab::size_v < tweaks_built >> 0)
        studies.push_back(r.run_study<tweaks_built>(
            "model_tweaks", "Model tweaks, cumulative (cf. paper Table 5)",
            "Rows: ResNet-A, +C (tweak::deep_stem: three 3x3 stem convs), +D (tweak::avg_down: 2x2 average pool before "
            "the 1x1 shortcut conv), all with zero-gamma and the efficient baseline recipe. ResNet-B "
            "(tweak::stride_on_3x3) is omitted: it moves a bottleneck's stride from the first 1x1 conv to the 3x3; "
            "cifar_resnet has basic blocks, whose first conv already is the 3x3, so B builds the same network as A "
            "(tricks::ablation rejects listing both as the same configuration)."));
    if constexpr (ab::size_v < refinements_built >> 0)
        studies.push_back(r.run_study<refinements_built>(
            "refinements", "Training refinements on ResNet-D, cumulative (cf. paper Table 6)",
            "Row 1 is the efficient baseline: Nesterov SGD, linear lr scaling (lr x batch/256), 1 warmup epoch, "
            "step decay, no bias decay, zero-gamma. Then cosine decay replaces the step decay, then label smoothing "
            "(e = 0.1), distillation (T = 20) from the teacher, mixup (alpha = 0.2) without distillation, and both. "
            "The "
            "teacher is trained once (seed 1) and shared by every seed; row 1 is the last row of the model tweaks "
            "(the same type), reused."));

    // ---- outputs ----
    meta.total_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (c.quick)
        meta.notes.push_back(
            "**--quick smoke run**: a few steps on a small subset; the numbers say nothing about the tricks.");
    if (c.opt.epochs != 12) meta.notes.push_back(step_note);
    std::vector<ab::plot_files> plots;
    for (const auto& s : studies) plots.push_back(ab::write_plots(c.out_dir, s));
    const bool can_render = c.gnuplot != "none" && ab::program_available(c.gnuplot);
    bool rendered = can_render;
    if (can_render)
        for (const auto& pf : plots)
            for (const auto& script : pf.scripts) rendered = ab::render(script, c.gnuplot) && rendered;
    std::string plot_note;
    if (rendered) {
        plot_note = "Plots (gnuplot): ";
        for (const auto& s : studies)
            plot_note +=
                "[" + s.id + " curves](" + s.id + "_curves.svg), [" + s.id + " deltas](" + s.id + "_deltas.svg); ";
        plot_note += "PNG next to each SVG.";
    } else {
        plot_note = can_render ? "gnuplot failed on some plot scripts (see the run's output); "
                               : "gnuplot was not found (Debian package gnuplot-nox), so no images were drawn; ";
        plot_note += "the data (*.dat) and scripts (*.gp) are written: `cd " + c.out_dir.string() +
                     " && for f in *.gp; do gnuplot $f; done`.";
    }
    meta.notes.push_back(plot_note);

    ab::write_markdown(c.out_dir / "ablation.md", studies, meta);
    ab::write_csv(c.out_dir / "ablation.csv", studies);
    ab::write_json(c.out_dir / "ablation.json", studies, meta);

    std::cout << ab::markdown_report(studies, meta);
    std::cout << "\nwrote " << (c.out_dir / "ablation.md").string() << ", ablation.csv, ablation.json";
    for (const auto& pf : plots)
        for (const auto& f : pf.data) std::cout << ", " << f.filename().string();
    for (const auto& pf : plots)
        for (const auto& f : pf.scripts) std::cout << ", " << f.filename().string();
    if (rendered)
        for (const auto& pf : plots)
            for (const auto& f : pf.images) std::cout << ", " << f.filename().string();
    if (train_teacher) std::cout << ", teacher.ckpt";
    std::cout << "\n";
    if (!rendered)
        std::cout << (can_render ? "ablation: gnuplot failed; "
                                 : "ablation: gnuplot not found (apt install gnuplot-nox); ")
                  << "wrote the .dat data and .gp scripts, no SVG/PNG images\n";
    std::cout << "total wall time " << ab::detail::clock(meta.total_seconds) << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    cli c = parse(argc, argv);
    try {
        return run(c);
    } catch (const t::error& e) {
        std::fprintf(stderr, "ablation: %s\n", e.what());
        return 1;
    } catch (const std::filesystem::filesystem_error& e) {  // e.g. --out names an existing file
        std::fprintf(stderr, "ablation: %s\n", e.what());
        return 1;
    }
}
