// Training tricks, each pinned to the paper's definition with exact numbers (docs/design.md, "Tests";
// He et al. 2019): the lr schedule (linear scaling, linear warmup, cosine, step), recipe flags, label
// smoothing, mixup, Beta/Gamma draws, the distillation term, SGD (plain, Nesterov, no-bias-decay),
// dynamic loss scaling; then the trainer: an end-to-end run on real Fashion-MNIST that must beat a
// clear bar, bit-for-bit determinism, the non-finite-loss error, and fp16_mixed overflow handling.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numbers>
#include <numeric>
#include <regex>
#include <string>
#include <type_traits>
#include <vector>

#include "tricks/data/fashion_mnist.hpp"
#include "tricks/models/cifar_resnet.hpp"
#include "tricks/train/loss.hpp"
#include "tricks/train/optim.hpp"
#include "tricks/train/policies.hpp"
#include "tricks/train/precision.hpp"
#include "tricks/train/recipe.hpp"
#include "tricks/train/report.hpp"
#include "tricks/train/schedule.hpp"
#include "tricks/train/trainer.hpp"
#include "helpers.hpp"

namespace {

using namespace tricks;
using namespace tricks_test;
namespace nn = tricks::nn;

// ------------------------------------------------------------------------------------------------
// helpers

/// Relative-or-absolute closeness for values computed along different float paths.
bool near_rel(double a, double b, double rel, double abs_tol = 0) {
    return std::fabs(a - b) <= abs_tol + rel * std::max(std::fabs(a), std::fabs(b));
}

template <class Model>
std::vector<float> parameter_values(Model& m) {
    std::vector<float> all;
    for (auto* p : m.parameters()) all.insert(all.end(), p->value.span().begin(), p->value.span().end());
    return all;
}

/// Fashion-MNIST loaded once per process (decompressing 47 MB takes a moment), or nothing when the
/// data set is not installed.
struct fmnist_cache {
    bool available = false;
    std::string why;
    data::dataset train, test;
};
const fmnist_cache& fmnist() {
    static const fmnist_cache c = [] {
        fmnist_cache f;
        try {
            f.train = data::fashion_mnist::train();
            f.test = data::fashion_mnist::test();
            f.available = true;
        } catch (const data_error& e) {
            f.why = e.what();
        }
        return f;
    }();
    return c;
}

// The network every trainer test uses (one instantiation keeps the compile time down): ResNet-8
// for 28x28 grey input, widths 8/16/32, ResNet-D shortcuts, zero-gamma init.
using small_net = models::cifar_resnet<8, width<8>, in_channels<1>, classes<10>, tweak::avg_down, init::zero_gamma>;

/// True when fitting small_net with recipe R and options `o` throws a training_error whose message
/// contains `part` (checked, with the message captured for the report).
template <class R>
bool fit_refused(const options& o, const data::dataset& train, const data::dataset& test, const std::string& part) {
    trainer<small_net, R> t(o);
    try {
        (void)t.fit(train, test);
    } catch (const training_error& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find(part) != std::string::npos);
        return true;
    }
    return false;
}
// The paper's training refinements together (§3.1, §5.1, §5.2, §5.4).
using full_recipe = recipe<lr::warmup<epochs<1>>, lr::cosine, loss::label_smoothing, mix::mixup, decay::no_bias_decay>;

options quiet_options() {
    options o;
    o.progress = false;
    return o;
}

/// One epoch of 4 steps at batch 32 from seed 11: runs compared bit for bit.
options short_run_options() {
    return {.epochs = 1, .batch = 32, .lr = 0.2, .seed = 11, .progress = false, .max_steps_per_epoch = 4};
}

}  // namespace

// ================================================================================================
// lr schedule (paper §3.1 linear scaling and warmup, §5.1 cosine, the step baseline)

TEST_CASE("lr_schedule: linear scaling rule lr = base * batch / B") {
    lr_schedule s;
    s.base_lr = 0.1;
    s.batch = 1024;
    s.scaling_reference = 256;
    CHECK(s.peak() == 0.4);  // 0.1 * 1024 / 256: the paper's example for batch 1024 (exact: a power-of-2 factor)
    s.batch = 128;
    CHECK(s.peak() == 0.05);
    s.batch = 256;
    CHECK(s.peak() == 0.1);
    s.batch = 1000;
    CHECK(s.peak() == doctest::Approx(0.390625).epsilon(1e-15));
    s.scaling_reference = 0;  // no lr::linear_scaling: the base lr is the peak whatever the batch
    CHECK(s.peak() == 0.1);
    // and the constant schedule is the peak at every step
    s.total_steps = 10;
    for (long t = 0; t < 10; ++t) CHECK(s.at(t) == 0.1);
}

TEST_CASE("lr_schedule: warmup is linear from 0 and reaches the peak at its last step") {
    lr_schedule s;
    s.base_lr = 0.4;
    s.warmup_steps = 10;
    s.total_steps = 100;
    s.decay = lr_schedule::decay_kind::cosine;
    const double p = 0.4;
    for (long t = 0; t < 10; ++t) CHECK(s.at(t) == doctest::Approx(p * static_cast<double>(t + 1) / 10).epsilon(1e-15));
    CHECK(s.at(0) == doctest::Approx(0.04).epsilon(1e-15));  // first step: peak / W, not 0 and not the peak
    CHECK(s.at(4) == doctest::Approx(0.2).epsilon(1e-15));
    CHECK(s.at(9) == p);  // t = W - 1: exactly the peak
    // constant increments (linear, not quadratic or exponential)
    for (long t = 1; t < 10; ++t) CHECK(s.at(t) - s.at(t - 1) == doctest::Approx(0.04).epsilon(1e-12));
    // the first post-warmup step starts the decay at the peak: no jump
    CHECK(s.at(10) == p);

    // warmup followed by step decay: the warmup ramp first, then the peak until the first milestone
    lr_schedule st = s;
    st.decay = lr_schedule::decay_kind::step;
    st.steps_per_epoch = 5;
    st.milestones = {4};
    CHECK(st.at(0) == doctest::Approx(0.04).epsilon(1e-15));
    CHECK(st.at(10) == p);
    CHECK(st.at(19) == p);
    CHECK(st.at(20) == doctest::Approx(0.04).epsilon(1e-15));
}

TEST_CASE("lr_schedule: cosine decay (paper eq. 1) starts at the peak, halves midway and reaches 0") {
    lr_schedule s;
    s.base_lr = 0.1;
    s.batch = 512;
    s.scaling_reference = 256;  // peak 0.2
    s.warmup_steps = 20;
    s.total_steps = 120;  // T = 100 cosine steps
    s.decay = lr_schedule::decay_kind::cosine;
    const double p = 0.2;
    CHECK(s.at(20) == p);                                           // t' = 0: cos 0 = 1, exactly the peak
    CHECK(s.at(20 + 50) == doctest::Approx(p / 2).epsilon(1e-14));  // t' = T/2: cos(pi/2) = 0
    CHECK(s.at(120) == 0.0);                                        // t' = T: exactly 0 at the end of training
    CHECK(s.at(121) == 0.0);
    CHECK(s.at(119) > 0.0);       // the last training step still moves
    CHECK(s.at(119) < 1e-3 * p);  // 0.5 (1 + cos(0.99 pi)) = 2.47e-4
    // closed form at a few points: lr = 1/2 (1 + cos(pi t' / T)) peak
    for (long tp : {1L, 10L, 25L, 33L, 75L, 99L})
        CHECK(s.at(20 + tp) == doctest::Approx(0.5 * (1 + std::cos(std::numbers::pi * tp / 100.0)) * p).epsilon(1e-14));
    CHECK(s.at(20 + 25) == doctest::Approx(p * (2 + std::numbers::sqrt2) / 4).epsilon(1e-14));  // cos(pi/4)
    // symmetric around the midpoint: lr(T/2 + d) + lr(T/2 - d) = peak
    for (long d : {1L, 7L, 30L}) CHECK(s.at(70 + d) + s.at(70 - d) == doctest::Approx(p).epsilon(1e-14));
    // monotone non-increasing after warmup
    for (long t = 21; t <= 120; ++t) CHECK(s.at(t) <= s.at(t - 1));

    // without warmup the first step is the peak
    lr_schedule c = s;
    c.warmup_steps = 0;
    CHECK(c.at(0) == p);
    CHECK(c.at(60) == doctest::Approx(p / 2).epsilon(1e-14));
    CHECK(c.at(120) == 0.0);
}

TEST_CASE("lr_schedule: step decay multiplies by 0.1 at each milestone epoch") {
    lr_schedule s;
    s.base_lr = 0.1;
    s.steps_per_epoch = 50;
    s.total_steps = 50 * 90;
    s.decay = lr_schedule::decay_kind::step;
    s.milestones = {30, 60, 80};  // the paper's ResNet baseline schedule (epochs)
    CHECK(s.at(0) == 0.1);
    CHECK(s.at(30 * 50 - 1) == 0.1);                               // last step of epoch 29
    CHECK(s.at(30 * 50) == doctest::Approx(0.01).epsilon(1e-15));  // first step of epoch 30
    CHECK(s.at(60 * 50 - 1) == doctest::Approx(0.01).epsilon(1e-15));
    CHECK(s.at(60 * 50) == doctest::Approx(0.001).epsilon(1e-15));
    CHECK(s.at(80 * 50) == doctest::Approx(0.0001).epsilon(1e-15));
    CHECK(s.at(90 * 50 - 1) == doctest::Approx(0.0001).epsilon(1e-15));
    // the milestones are epochs: the same schedule with other steps per epoch moves them in steps
    s.steps_per_epoch = 7;
    CHECK(s.at(30 * 7 - 1) == 0.1);
    CHECK(s.at(30 * 7) == doctest::Approx(0.01).epsilon(1e-15));
}

TEST_CASE("lr_schedule: validate rejects a warmup longer than the run, no steps, and a bad lr") {
    lr_schedule s;
    s.total_steps = 100;
    s.warmup_steps = 100;  // the whole run is warmup: allowed
    CHECK_NOTHROW(s.validate());
    s.warmup_steps = 101;
    CHECK_THROWS_AS(s.validate(), training_error);
    CHECK_THROWS_WITH(s.validate(), doctest::Contains("warmup of 101 steps is longer than the whole run (100 steps)"));
    s.warmup_steps = 0;
    s.total_steps = 0;
    CHECK_THROWS_AS(s.validate(), training_error);
    s.total_steps = 10;
    s.base_lr = std::nan("");
    CHECK_THROWS_AS(s.validate(), training_error);
    s.base_lr = -0.1;
    CHECK_THROWS_AS(s.validate(), training_error);
}

TEST_CASE("trainer builds the schedule from the recipe: warmup epochs x steps, cosine over the rest") {
    // 8 steps per epoch (256 images / batch 32), 3 epochs, lr::warmup<epochs<1>>, linear scaling <64>
    const auto train = synthetic_digits(256, 1, 99), test = synthetic_digits(40, 2, 99);
    options o = quiet_options();
    o.epochs = 3;
    o.batch = 32;
    o.lr = 0.2;
    o.max_steps_per_epoch = 1;  // only the schedule is of interest here; train 1 step per epoch
    const omp_threads_guard keep_threads;
    o.threads = 1;  // fast and steady on a shared machine (see the end-to-end test)
    trainer<small_net, recipe<lr::linear_scaling<64>, lr::warmup<epochs<1>>, lr::cosine>> t(o);
    (void)t.fit(train, test);
    const lr_schedule& s = t.schedule();
    CHECK(s.steps_per_epoch == 1);
    CHECK(s.total_steps == 3);
    CHECK(s.warmup_steps == 1);
    CHECK(s.peak() == doctest::Approx(0.1).epsilon(1e-15));  // 0.2 * 32 / 64
    CHECK(s.decay == lr_schedule::decay_kind::cosine);
    // options.warmup_epochs overrides the recipe type's default at run time
    options o2 = o;
    o2.warmup_epochs = 2;
    trainer<small_net, recipe<lr::linear_scaling<64>, lr::warmup<epochs<1>>, lr::cosine>> t2(o2);
    (void)t2.fit(train, test);
    CHECK(t2.schedule().warmup_steps == 2);
    // a warmup longer than the run is an error before any step
    options o3 = o;
    o3.warmup_epochs = 4;
    trainer<small_net, recipe<lr::linear_scaling<64>, lr::warmup<epochs<1>>, lr::cosine>> t3(o3);
    CHECK_THROWS_AS((void)t3.fit(train, test), training_error);
}

TEST_CASE("trainer: options.step_milestones replaces lr::step's epochs at run time, and bad ones are refused") {
    const auto train = synthetic_digits(64, 1, 97), test = synthetic_digits(20, 2, 97);
    options o = quiet_options();
    o.epochs = 4;
    o.batch = 32;
    o.lr = 0.1;
    o.max_steps_per_epoch = 1;
    const omp_threads_guard keep_threads;
    o.threads = 1;
    using stepped = recipe<lr::step<epochs<30>, epochs<60>, epochs<90>>>;
    {
        trainer<small_net, stepped> t(o);  // the type's milestones
        const history h = t.fit(train, test);
        CHECK(t.schedule().milestones == std::vector<int>{30, 60, 90});
        CHECK(h.epochs.back().lr == doctest::Approx(0.1).epsilon(1e-15));
    }
    o.step_milestones = {1, 2, 3};  // the paper's 1/4, 1/2, 3/4 of a 4-epoch run
    {
        trainer<small_net, stepped> t(o);
        const history run = t.fit(train, test);
        CHECK(t.schedule().milestones == std::vector<int>{1, 2, 3});
        const auto& h = run.epochs;  // one step per epoch, so each record's lr is its only step's
        REQUIRE(h.size() == 4);
        CHECK(h[0].lr == doctest::Approx(0.1).epsilon(1e-15));
        CHECK(h[1].lr == doctest::Approx(0.01).epsilon(1e-15));
        CHECK(h[2].lr == doctest::Approx(0.001).epsilon(1e-15));
        CHECK(h[3].lr == doctest::Approx(0.0001).epsilon(1e-15));
    }
    const auto refused = [&](auto tag, std::vector<int> m, const std::string& part) {
        options b = o;
        b.step_milestones = std::move(m);
        return fit_refused<typename decltype(tag)::type>(b, train, test, part);
    };
    CHECK(refused(std::type_identity<stepped>{}, {2, 2},
                  "step_milestones = 2,2: milestones must be epochs >= 1 in increasing order (entry 1 is 2)"));
    CHECK(refused(std::type_identity<stepped>{}, {0, 2}, "(entry 0 is 0)"));
    CHECK(refused(std::type_identity<recipe<lr::cosine>>{}, {1, 2},
                  "step_milestones = 1,2 given, but the recipe has no lr::step decay"));
}

TEST_CASE("options.gradient_transport: names parse both ways; the CPU trainer refuses the device transports") {
    using gt = distributed::gradient_transport;
    for (gt v : {gt::automatic, gt::host, gt::nccl, gt::mpi}) {
        gt back = v == gt::host ? gt::nccl : gt::host;
        CHECK(distributed::parse(distributed::to_string(v), back));
        CHECK(back == v);
    }
    gt untouched = gt::mpi;
    CHECK_FALSE(distributed::parse("NCCL", untouched));
    CHECK_FALSE(distributed::parse("", untouched));
    CHECK(untouched == gt::mpi);
    CHECK(std::string(distributed::to_string(gt::automatic)) == "auto");

    const auto error_text = [](auto&& make) -> std::string {
        try {
            make();
        } catch (const error& e) {
            return e.what();
        }
        return "";
    };
    for (gt v : {gt::nccl, gt::mpi}) {
        options o = quiet_options();
        o.gradient_transport = v;
        const std::string msg = error_text([&] { trainer<small_net, recipe<>> t(o); });
        CAPTURE(msg);
        CHECK(msg.find(std::string("options.gradient_transport = ") + distributed::to_string(v) +
                       " moves gradients between GPUs (backend::cuda only)") != std::string::npos);
    }
    options o = quiet_options();
    o.gradient_transport = gt::host;
    CHECK(error_text([&] { trainer<small_net, recipe<>> t(o); }).empty());
    const auto s = option_settings(o);
    const setting* x = find_setting(s, "gradient_transport");
    REQUIRE(x != nullptr);
    CHECK(x->value == "host");
    CHECK(x->rule == on_resume::may_change);
}

TEST_CASE("trainer: a run-time number given for a policy the recipe lacks is refused, naming the policy to add") {
    const auto train = synthetic_digits(64, 1, 91), test = synthetic_digits(16, 2, 91);
    const omp_threads_guard keep_threads;
    options base = quiet_options();
    base.epochs = 1;
    base.batch = 32;
    base.max_steps_per_epoch = 1;
    base.threads = 1;
    const auto refused = [&](auto tag, auto options::*field, auto value, const std::string& part) {
        options o = base;
        o.*field = value;
        return fit_refused<typename decltype(tag)::type>(o, train, test, part);
    };
    using plain = std::type_identity<recipe<>>;
    CHECK(refused(plain{}, &options::mixup_alpha, 0.4,
                  "options.mixup_alpha = 0.4 given, but the recipe has no mixup (mix::mixup); add it to the recipe or "
                  "leave options.mixup_alpha at its default (0.2). Recipe: sgd"));
    CHECK(refused(plain{}, &options::label_smoothing, 0.2,
                  "label_smoothing = 0.2 given, but the recipe has no label smoothing (loss::label_smoothing)"));
    CHECK(refused(
        plain{}, &options::distill_temperature, 4.0,
        "distill_temperature = 4 given, but the recipe has no knowledge distillation (loss::distill<Teacher>)"));
    CHECK(refused(
        plain{}, &options::teacher_checkpoint, std::filesystem::path("t.ckpt"),
        "teacher_checkpoint = t.ckpt given, but the recipe has no knowledge distillation (loss::distill<Teacher>)"));
    CHECK(refused(plain{}, &options::loss_scale, 1024.0,
                  "loss_scale = 1024 given, but the recipe has no FP16 loss scaling (precision::fp16_mixed)"));
    CHECK(refused(std::type_identity<recipe<precision::bf16_mixed>>{}, &options::loss_scale_window, 100,
                  "loss_scale_window = 100 given, but the recipe has no FP16 loss scaling (precision::fp16_mixed)"));
    CHECK(refused(std::type_identity<recipe<lr::cosine>>{}, &options::warmup_epochs, 0,
                  "warmup_epochs = 0 given, but the recipe has no lr warmup (lr::warmup<epochs<m>>)"));
    CHECK(refused(plain{}, &options::step_milestones, std::vector<int>{1},
                  "step_milestones = 1 given, but the recipe has no lr::step decay (lr::step<epochs<e>...>)"));
    // the same numbers with their policies are taken; the defaults without them too
    options all = base;
    all.mixup_alpha = 0.4;
    all.label_smoothing = 0.2;
    all.loss_scale = 1024;
    all.loss_scale_window = 100;
    all.warmup_epochs = 0;
    trainer<small_net, recipe<lr::warmup<>, mix::mixup, loss::label_smoothing, precision::fp16_mixed>> t(all);
    CHECK(t.fit(train, test).epochs.size() == 1);
    trainer<small_net, recipe<>> p(base);
    CHECK(p.fit(train, test).epochs.size() == 1);
    // and resume() checks them too (before it reads the file)
    options mixed = base;
    mixed.mixup_alpha = 0.4;
    trainer<small_net, recipe<>> r(mixed);
    CHECK_THROWS_WITH_AS(r.resume("no-such-file.ckpt"), doctest::Contains("options.mixup_alpha = 0.4 given"),
                         training_error);
}

// ================================================================================================
// recipe flags

namespace {
struct teacher_tag {};
}  // namespace

TEST_CASE("recipe<>: the plain defaults") {
    using r = recipe<>;
    static_assert(std::is_same_v<r::optimizer, optim::sgd<>>);
    static_assert(std::is_same_v<r::precision_policy, precision::fp32>);
    CHECK_FALSE(r::nesterov);
    CHECK_FALSE(r::linear_scaling);
    CHECK(r::scaling_reference_batch == 0);
    CHECK_FALSE(r::warmup);
    CHECK(r::default_warmup_epochs == 0);
    CHECK_FALSE(r::cosine);
    CHECK_FALSE(r::step);
    CHECK_FALSE(r::no_bias_decay);
    CHECK_FALSE(r::label_smoothing);
    CHECK_FALSE(r::mixup);
    CHECK_FALSE(r::distills);
    CHECK_FALSE(r::fp16);
    CHECK_FALSE(r::bf16);
    CHECK(r::milestone_count() == 0);
    CHECK(r::describe() == "sgd");
    CHECK(trainer<small_net, r>::storage() == nn::storage::fp32);
}

TEST_CASE("recipe with every policy sets every flag, in any order") {
    using r =
        recipe<precision::fp16_mixed, mix::mixup, loss::label_smoothing, decay::no_bias_decay, lr::cosine,
               lr::warmup<epochs<3>>, lr::linear_scaling<256>, optim::sgd<optim::nesterov>, loss::distill<teacher_tag>>;
    CHECK(r::nesterov);
    CHECK(r::linear_scaling);
    CHECK(r::scaling_reference_batch == 256);
    CHECK(r::warmup);
    CHECK(r::default_warmup_epochs == 3);
    CHECK(r::cosine);
    CHECK_FALSE(r::step);
    CHECK(r::no_bias_decay);
    CHECK(r::label_smoothing);
    CHECK(r::mixup);
    CHECK(r::distills);
    static_assert(std::is_same_v<r::teacher, teacher_tag>);
    CHECK(r::fp16);
    CHECK_FALSE(r::bf16);
    CHECK(r::describe() ==
          "sgd(nesterov) + linear_scaling<256> + warmup + cosine + no_bias_decay + label_smoothing + distill + mixup + "
          "fp16_mixed");
    CHECK(trainer<small_net, recipe<precision::fp16_mixed>>::storage() == nn::storage::fp16);
    CHECK(trainer<small_net, recipe<precision::bf16_mixed>>::storage() == nn::storage::bf16);
    CHECK(recipe<precision::bf16_mixed>::describe() == "sgd + bf16_mixed");
}

TEST_CASE("recipe: warmup epochs and step milestones come from the types") {
    CHECK(recipe<lr::warmup<epochs<3>>>::default_warmup_epochs == 3);
    CHECK(recipe<lr::warmup<>>::default_warmup_epochs == 5);  // the paper's 5 epochs
    CHECK(recipe<lr::warmup<epochs<0>>>::warmup);
    using st = recipe<lr::step<epochs<30>, epochs<60>, epochs<80>>>;
    CHECK(st::step);
    CHECK_FALSE(st::cosine);
    REQUIRE(st::milestone_count() == 3);
    CHECK(st::milestones()[0] == 30);
    CHECK(st::milestones()[1] == 60);
    CHECK(st::milestones()[2] == 80);
    CHECK(st::describe() == "sgd + step");
    CHECK(recipe<optim::sgd<>, lr::linear_scaling<64>>::describe() == "sgd + linear_scaling<64>");
}

// ================================================================================================
// label smoothing (paper §5.2) and the soft-target cross-entropy

TEST_CASE("label smoothing: q = 1 - eps for the label, eps / (K - 1) elsewhere") {
    float q[10];
    smoothed_target(2, 10, 0.1, q);
    for (int k = 0; k < 10; ++k) {
        if (k == 2)
            CHECK(q[k] == 0.9f);
        else
            CHECK(q[k] == static_cast<float>(0.1 / 9));  // 0.0111..., as the paper writes it (not eps / K)
    }
    CHECK(std::accumulate(q, q + 10, 0.0) == doctest::Approx(1.0).epsilon(1e-6));
    // eps = 0: one-hot, exactly
    smoothed_target(7, 10, 0.0, q);
    for (int k = 0; k < 10; ++k) CHECK(q[k] == (k == 7 ? 1.f : 0.f));

    // make_targets: one row per label, (n, 1, 1, K)
    tensor<float> t;
    const std::vector<int> labels{2, 0, 9};
    make_targets(labels, 10, 0.1, t);
    CHECK(t.shape() == shape4{3, 1, 1, 10});
    for (int i = 0; i < 3; ++i) {
        double sum = 0;
        for (int k = 0; k < 10; ++k) {
            const float v = t[static_cast<std::size_t>(i) * 10 + k];
            sum += v;
            CHECK(v == (k == labels[static_cast<std::size_t>(i)] ? 0.9f : static_cast<float>(0.1 / 9)));
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
    }
}

TEST_CASE("make_targets rejects labels outside [0, K)") {
    tensor<float> t;
    const std::vector<int> bad_hi{1, 10}, bad_lo{-1};
    CHECK_THROWS_AS(make_targets(bad_hi, 10, 0.1, t), error);
    CHECK_THROWS_WITH(make_targets(bad_hi, 10, 0.1, t),
                      doctest::Contains("label 10 at batch index 1 is outside [0, 10)"));
    CHECK_THROWS_AS(make_targets(bad_lo, 10, 0.0, t), error);
}

TEST_CASE("make_targets with a padded head: smoothing over the data's classes, 0 beyond them") {
    tensor<float> q;
    const std::vector<int> labels{0, 3};
    make_targets(labels, 10, 0.3, q, 4);
    REQUIRE(q.shape() == shape4{2, 1, 1, 10});
    for (int i = 0; i < 2; ++i) {
        double sum = 0;
        for (int k = 0; k < 10; ++k) {
            const float v = q.data()[i * 10 + k];
            const float want = k == labels[static_cast<std::size_t>(i)] ? 0.7f
                               : k < 4                                  ? static_cast<float>(0.3 / 3)
                                                                        : 0.0f;
            CHECK(v == want);
            sum += v;
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));
    }
    const std::vector<int> outside{4};
    CHECK_THROWS_WITH(make_targets(outside, 10, 0.1, q, 4),
                      doctest::Contains("label 4 at batch index 0 is outside [0, 4)"));
    CHECK_THROWS_WITH(make_targets(labels, 3, 0.1, q, 4),
                      doctest::Contains("the data has 4 classes, the model 3 outputs"));
}

TEST_CASE("softmax cross-entropy with label-smoothed targets equals its closed form") {
    const int n = 4, K = 10;
    const double eps = 0.1;
    rng r(5, 1);
    std::vector<float> z(n * K);
    for (auto& v : z) v = static_cast<float>(2 * r.normal());
    const std::vector<int> labels{2, 0, 9, 5};
    tensor<float> q;
    make_targets(labels, K, eps, q);
    std::vector<float> dz(n * K);
    const double loss = backend::host::softmax_cross_entropy(n, K, z.data(), q.data(), dz.data());
    // closed form: -sum_k q_k log p_k = lse(z) - (1 - eps) z_y - eps / (K - 1) sum_{k != y} z_k
    double expect = 0;
    for (int i = 0; i < n; ++i) {
        const float* zi = z.data() + i * K;
        double se = 0, others = 0;
        for (int k = 0; k < K; ++k) se += std::exp(static_cast<double>(zi[k]));
        for (int k = 0; k < K; ++k)
            if (k != labels[static_cast<std::size_t>(i)]) others += zi[k];
        expect += std::log(se) - (1 - eps) * zi[labels[static_cast<std::size_t>(i)]] - eps / (K - 1) * others;
        // gradient (p - q) / n
        for (int k = 0; k < K; ++k) {
            const double p = std::exp(static_cast<double>(zi[k])) / se;
            const double qk = k == labels[static_cast<std::size_t>(i)] ? 1 - eps : eps / (K - 1);
            CHECK(dz[static_cast<std::size_t>(i * K + k)] == doctest::Approx((p - qk) / n).epsilon(1e-5).scale(1e-6));
        }
    }
    expect /= n;
    CHECK(loss == doctest::Approx(expect).epsilon(1e-6));

    // pinned numbers: a uniform prediction costs log K whatever the smoothing ...
    std::vector<float> zero(n * K, 0.f);
    CHECK(backend::host::softmax_cross_entropy(n, K, zero.data(), q.data(), nullptr) ==
          doctest::Approx(std::log(10.0)).epsilon(1e-6));
    // ... and the best possible prediction, softmax(z) = q, costs the entropy of q:
    // -(0.9 ln 0.9 + 9 (0.1/9) ln(0.1/9)) = 0.544805..., with zero gradient
    std::vector<float> zq(n * K);
    for (int i = 0; i < n * K; ++i) zq[static_cast<std::size_t>(i)] = std::log(q[static_cast<std::size_t>(i)]);
    const double hq = -(0.9 * std::log(0.9) + 0.1 * std::log(0.1 / 9));
    CHECK(hq == doctest::Approx(0.5448054311).epsilon(1e-9));
    CHECK(backend::host::softmax_cross_entropy(n, K, zq.data(), q.data(), dz.data()) ==
          doctest::Approx(hq).epsilon(1e-6));
    for (float g : dz) CHECK(std::fabs(g) < 1e-7);
}

// ================================================================================================
// mixup (paper §5.4) and the Beta / Gamma draws behind it

TEST_CASE("mixup draw: lambda in (0, 1) and a uniform-looking permutation of the batch") {
    rng r(42, 7);
    mixup_draw d;
    int identity_draws = 0;
    for (int trial = 0; trial < 50; ++trial) {
        draw_mixup(0.2, 16, r, d);
        CHECK(d.lambda > 0.0);
        CHECK(d.lambda < 1.0);
        REQUIRE(d.partner.size() == 16);
        std::vector<std::uint32_t> sorted = d.partner;
        std::sort(sorted.begin(), sorted.end());
        for (std::uint32_t i = 0; i < 16; ++i) CHECK(sorted[i] == i);  // a permutation
        bool identity = true;
        for (std::uint32_t i = 0; i < 16; ++i) identity = identity && d.partner[i] == i;
        identity_draws += identity;
    }
    CHECK(identity_draws == 0);  // a shuffled pairing, not "mix every image with itself"
    // the same generator state gives the same draw
    rng a(3, 4), b(3, 4);
    mixup_draw da, db;
    draw_mixup(0.2, 32, a, da);
    draw_mixup(0.2, 32, b, db);
    CHECK(da.lambda == db.lambda);
    CHECK(da.partner == db.partner);
    CHECK_THROWS_AS(draw_mixup(0.0, 4, a, da), error);
    CHECK_THROWS_AS(draw_mixup(-1.0, 4, a, da), error);
}

TEST_CASE("mixup mixes images and targets with the same lambda and the same pairing") {
    const int n = 6, h = 2, w = 3, K = 10;
    // Powers of two make lambda * x exact, so the mixed value has exactly one rounding whether or not
    // the compiler fuses the multiply-add: the comparison can be ==.
    tensor<float> x({n, h, w, 1});
    for (int i = 0; i < n; ++i)
        for (int j = 0; j < h * w; ++j)
            x[static_cast<std::size_t>(i * h * w + j)] = std::ldexp(j % 2 ? -1.f : 1.f, (i * 3 + j) % 7 - 3);
    const std::vector<int> labels{0, 3, 3, 7, 9, 1};
    tensor<float> q;
    make_targets(labels, K, 0.0, q);  // one-hot: mixed targets are exactly lambda and 1 - lambda
    const tensor<float> x0 = x, q0 = q;

    rng r(2024, 1);
    mixup_draw d;
    draw_mixup(0.2, n, r, d);
    // force a pairing with no fixed points, so every row really mixes two images
    d.partner = {3, 0, 5, 1, 2, 4};
    tensor<float> scratch;
    apply_mixup(d, x, scratch);
    apply_mixup(d, q, scratch);
    const float l = static_cast<float>(d.lambda), m = 1.f - l;
    for (int i = 0; i < n; ++i) {
        const int p = static_cast<int>(d.partner[static_cast<std::size_t>(i)]);
        for (int j = 0; j < h * w; ++j)
            CHECK(x[static_cast<std::size_t>(i * h * w + j)] ==
                  l * x0[static_cast<std::size_t>(i * h * w + j)] + m * x0[static_cast<std::size_t>(p * h * w + j)]);
        const int yi = labels[static_cast<std::size_t>(i)], yp = labels[static_cast<std::size_t>(p)];
        for (int k = 0; k < K; ++k) {
            const float expect = (k == yi ? l : 0.f) + (k == yp ? m : 0.f);
            CHECK(q[static_cast<std::size_t>(i * K + k)] == expect);
        }
    }

    // arbitrary values and label-smoothed targets: the same relation, up to float rounding
    tensor<float> xr({n, h, w, 2}), qs;
    rng g(9, 9);
    for (auto& v : xr.span()) v = static_cast<float>(g.normal());
    make_targets(labels, K, 0.1, qs);
    const tensor<float> xr0 = xr, qs0 = qs;
    draw_mixup(1.0, n, r, d);
    apply_mixup(d, xr, scratch);
    apply_mixup(d, qs, scratch);
    const double lam = d.lambda;
    const std::size_t rx = static_cast<std::size_t>(h * w * 2);
    for (int i = 0; i < n; ++i) {
        const std::size_t p = d.partner[static_cast<std::size_t>(i)];
        for (std::size_t j = 0; j < rx; ++j)
            CHECK(near_rel(xr[i * rx + j], lam * xr0[i * rx + j] + (1 - lam) * xr0[p * rx + j], 1e-6, 1e-7));
        double sum = 0;
        for (int k = 0; k < K; ++k) {
            const std::size_t a = static_cast<std::size_t>(i * K + k), b = p * K + static_cast<std::size_t>(k);
            CHECK(near_rel(qs[a], lam * qs0[a] + (1 - lam) * qs0[b], 1e-6, 1e-8));
            sum += qs[a];
        }
        CHECK(sum == doctest::Approx(1.0).epsilon(1e-6));  // still a distribution
    }
    // a draw for another batch size is refused
    tensor<float> wrong({n + 1, 1, 1, 1});
    CHECK_THROWS_AS(apply_mixup(d, wrong, scratch), error);
}

TEST_CASE("mixup lambda ~ Beta(alpha, alpha): mean 1/2, variance 1 / (4 (2 alpha + 1))") {
    const int N = 20000;
    for (double alpha : {0.2, 1.0}) {
        CAPTURE(alpha);
        rng r(17, 3);
        mixup_draw d;
        double s1 = 0, s2 = 0;
        int below_01 = 0, above_09 = 0;
        for (int i = 0; i < N; ++i) {
            draw_mixup(alpha, 2, r, d);
            s1 += d.lambda;
            s2 += d.lambda * d.lambda;
            below_01 += d.lambda < 0.1;
            above_09 += d.lambda > 0.9;
        }
        const double mean = s1 / N, var = s2 / N - mean * mean;
        const double var_expect = 1 / (4 * (2 * alpha + 1));  // 0.17857 for alpha 0.2, 1/12 for alpha 1
        // standard errors at N = 20000: mean <= 0.003, variance <= 0.001; tolerances are ~4 sigma
        CHECK(std::fabs(mean - 0.5) < 0.012);
        CHECK(std::fabs(var - var_expect) < 0.005);
        if (alpha == 1.0) {  // uniform: 10% of the mass in each tail decile
            CHECK(std::fabs(below_01 / double(N) - 0.1) < 0.01);
            CHECK(std::fabs(above_09 / double(N) - 0.1) < 0.01);
        } else {  // U-shaped: Beta(0.2, 0.2) puts ~35% of its mass below 0.1 (and as much above 0.9)
            CHECK(below_01 / double(N) > 0.3);
            CHECK(above_09 / double(N) > 0.3);
        }
    }
}

TEST_CASE("rng::gamma has mean and variance k; rng::beta has mean a / (a + b)") {
    const int N = 20000;
    for (double k : {0.2, 1.0, 3.5}) {
        CAPTURE(k);
        rng r(8, 8);
        double s1 = 0, s2 = 0;
        bool positive = true;
        for (int i = 0; i < N; ++i) {
            const double g = r.gamma(k);
            positive = positive && g > 0 && std::isfinite(g);
            s1 += g;
            s2 += g * g;
        }
        const double mean = s1 / N, var = s2 / N - mean * mean;
        CHECK(positive);
        // sd of the mean is sqrt(k / N): <= 0.0133 for k = 3.5; 4 sigma tolerances
        CHECK(std::fabs(mean - k) < 4 * std::sqrt(k / N) + 1e-3);
        CHECK(std::fabs(var - k) < 0.06 * k + 0.01);
    }
    rng r(9, 9);
    double s = 0;
    for (int i = 0; i < N; ++i) s += r.beta(2, 5);
    CHECK(std::fabs(s / N - 2.0 / 7.0) < 0.005);  // sd of Beta(2,5) is 0.16; SE 0.0011
}

// ================================================================================================
// knowledge distillation (paper §5.3)

namespace {
/// T^2 * mean_i CE(softmax(r_i / T), softmax(z_i / T)), all in double.
double distill_reference(int n, int k, const std::vector<double>& z, const std::vector<float>& r, double T) {
    double total = 0;
    for (int i = 0; i < n; ++i) {
        double mr = -1e300, mz = -1e300;
        for (int j = 0; j < k; ++j) {
            mr = std::max(mr, static_cast<double>(r[static_cast<std::size_t>(i * k + j)]));
            mz = std::max(mz, z[static_cast<std::size_t>(i * k + j)]);
        }
        double sr = 0, sz = 0;
        for (int j = 0; j < k; ++j) {
            sr += std::exp((r[static_cast<std::size_t>(i * k + j)] - mr) / T);
            sz += std::exp((z[static_cast<std::size_t>(i * k + j)] - mz) / T);
        }
        for (int j = 0; j < k; ++j) {
            const double pr = std::exp((r[static_cast<std::size_t>(i * k + j)] - mr) / T) / sr;
            const double log_pz = (z[static_cast<std::size_t>(i * k + j)] - mz) / T - std::log(sz);
            total -= pr * log_pz;
        }
    }
    return T * T * total / n;
}
}  // namespace

TEST_CASE("distillation term equals T^2 CE(softmax(r/T), softmax(z/T)) and its gradient matches finite differences") {
    const int n = 3, k = 5;
    for (double T : {1.0, 2.0, 20.0}) {
        CAPTURE(T);
        rng g(11, static_cast<std::uint64_t>(T));
        std::vector<float> z(n * k), r(n * k), dz(n * k);
        for (auto& v : z) v = static_cast<float>(3 * g.normal());
        for (auto& v : r) v = static_cast<float>(3 * g.normal());
        for (std::size_t i = 0; i < dz.size(); ++i) dz[i] = 0.25f * static_cast<float>(i % 3);  // it adds into dz
        const std::vector<float> dz0 = dz;
        tensor<float> pz, pr;
        const double term = distillation_term(n, k, z.data(), r.data(), T, dz.data(), pz, pr);
        std::vector<double> zd(z.begin(), z.end());
        const double ref = distill_reference(n, k, zd, r, T);
        CHECK(term == doctest::Approx(ref).epsilon(1e-5));
        // gradient: what the function added to dz vs central differences of the double formula
        for (int i = 0; i < n * k; ++i) {
            const double h = 1e-4;
            std::vector<double> zp = zd, zm = zd;
            zp[static_cast<std::size_t>(i)] += h;
            zm[static_cast<std::size_t>(i)] -= h;
            const double fd = (distill_reference(n, k, zp, r, T) - distill_reference(n, k, zm, r, T)) / (2 * h);
            const double added =
                static_cast<double>(dz[static_cast<std::size_t>(i)]) - dz0[static_cast<std::size_t>(i)];
            CHECK(added == doctest::Approx(fd).epsilon(1e-4).scale(1e-5));
        }
    }
}

TEST_CASE("distillation term with r == z is T^2 times the entropy of softmax(z/T), with zero gradient") {
    const int n = 2, k = 10;
    const double T = 20;  // the paper's temperature
    rng g(12, 1);
    std::vector<float> z(n * k), dz(n * k, 0.5f);
    for (auto& v : z) v = static_cast<float>(5 * g.normal());
    tensor<float> pz, pr;
    const double term = distillation_term(n, k, z.data(), z.data(), T, dz.data(), pz, pr);
    double entropy = 0;
    for (int i = 0; i < n; ++i) {
        double m = -1e300, s = 0;
        for (int j = 0; j < k; ++j) m = std::max(m, static_cast<double>(z[static_cast<std::size_t>(i * k + j)]));
        for (int j = 0; j < k; ++j) s += std::exp((z[static_cast<std::size_t>(i * k + j)] - m) / T);
        for (int j = 0; j < k; ++j) {
            const double p = std::exp((z[static_cast<std::size_t>(i * k + j)] - m) / T) / s;
            entropy -= p * std::log(p);
        }
    }
    CHECK(term == doctest::Approx(T * T * entropy / n).epsilon(1e-5));
    for (float v : dz) CHECK(v == 0.5f);  // added exactly zero
}

// ================================================================================================
// SGD (PyTorch's form) and no-bias-decay (paper §3.1)

namespace {
nn::parameter make_param(nn::role role, std::initializer_list<float> values, std::initializer_list<float> grads) {
    nn::parameter p;
    p.allocate(role, static_cast<int>(values.size()));
    std::copy(values.begin(), values.end(), p.value.data());
    std::copy(grads.begin(), grads.end(), p.grad.data());
    return p;
}
}  // namespace

TEST_CASE("sgd: momentum 0.9, one and two steps, hand-computed") {
    // w = 1, grad 0.5 on both steps, lr 0.1, no decay.
    //  plain:    v1 = 0.5,  w1 = 1 - 0.1 * 0.5 = 0.95;  v2 = 0.9 * 0.5 + 0.5 = 0.95,  w2 = 0.95 - 0.095 = 0.855
    //  nesterov: v1 = 0.5,  w1 = 1 - 0.1 * (0.5 + 0.45) = 0.905;  v2 = 0.95,  w2 = 0.905 - 0.1 * (0.5 + 0.855) = 0.7695
    for (bool nesterov : {false, true}) {
        CAPTURE(nesterov);
        nn::parameter p = make_param(nn::role::weight, {1.f, -2.f}, {0.5f, 0.25f});
        sgd_optimizer opt({&p}, sgd_config{0.9, 0.0, nesterov, false});
        opt.step(0.1);
        CHECK(p.value[0] == doctest::Approx(nesterov ? 0.905 : 0.95).epsilon(1e-6));
        // second element: w = -2, grad 0.25: plain w1 = -2.025; nesterov w1 = -2 - 0.1 * (0.25 + 0.225) = -2.0475
        CHECK(p.value[1] == doctest::Approx(nesterov ? -2.0475 : -2.025).epsilon(1e-6));
        CHECK(opt.velocity()[0][0] == doctest::Approx(0.5).epsilon(1e-7));
        opt.step(0.1);
        CHECK(p.value[0] == doctest::Approx(nesterov ? 0.7695 : 0.855).epsilon(1e-6));
        // plain w2 = -2.025 - 0.1 * 0.475 = -2.0725; nesterov w2 = -2.0475 - 0.1 * (0.25 + 0.4275) = -2.11525
        CHECK(p.value[1] == doctest::Approx(nesterov ? -2.11525 : -2.0725).epsilon(1e-6));
        CHECK(opt.velocity()[0][0] == doctest::Approx(0.95).epsilon(1e-7));
        CHECK(opt.velocity()[0][1] == doctest::Approx(0.475).epsilon(1e-7));
    }
    // weight decay enters the gradient (coupled, as PyTorch's SGD): g = grad + wd * w
    //   w = 1, grad 0.5, wd 0.1: g = 0.6, w1 = 1 - 0.1 * 0.6 = 0.94; v1 = 0.6
    //   step 2 (grad 0.5): g = 0.5 + 0.094 = 0.594, v2 = 0.54 + 0.594 = 1.134, w2 = 0.94 - 0.1134 = 0.8266
    nn::parameter p = make_param(nn::role::weight, {1.f}, {0.5f});
    sgd_optimizer opt({&p}, sgd_config{0.9, 0.1, false, false});
    opt.step(0.1);
    CHECK(p.value[0] == doctest::Approx(0.94).epsilon(1e-6));
    opt.step(0.1);
    CHECK(p.value[0] == doctest::Approx(0.8266).epsilon(1e-6));
}

TEST_CASE("no_bias_decay: weights decay by lr * wd * w; biases and BN gamma/beta are untouched") {
    const double lr = 0.1, wd = 0.01;
    for (bool nbd : {true, false}) {
        CAPTURE(nbd);
        // zero gradients: any change is weight decay
        nn::parameter w = make_param(nn::role::weight, {2.f, -4.f, 0.5f}, {0.f, 0.f, 0.f});
        nn::parameter b = make_param(nn::role::bias, {0.7f, -0.3f}, {0.f, 0.f});
        nn::parameter gamma = make_param(nn::role::bn_gamma, {1.3f, 0.9f}, {0.f, 0.f});
        nn::parameter beta = make_param(nn::role::bn_beta, {-0.4f, 0.2f}, {0.f, 0.f});
        const std::vector<float> b0(b.value.span().begin(), b.value.span().end());
        const std::vector<float> g0(gamma.value.span().begin(), gamma.value.span().end());
        const std::vector<float> be0(beta.value.span().begin(), beta.value.span().end());
        sgd_optimizer opt({&w, &b, &gamma, &beta}, sgd_config{0.9, wd, false, nbd});
        opt.step(lr);
        // first step: w1 = w - lr * wd * w = 0.999 w  (2 -> 1.998, -4 -> -3.996, 0.5 -> 0.4995)
        CHECK(w.value[0] == doctest::Approx(1.998).epsilon(1e-7));
        CHECK(w.value[1] == doctest::Approx(-3.996).epsilon(1e-7));
        CHECK(w.value[2] == doctest::Approx(0.4995).epsilon(1e-7));
        const auto bits_equal = [](const nn::parameter& p, const std::vector<float>& v0) {
            return std::memcmp(p.value.data(), v0.data(), v0.size() * sizeof(float)) == 0;
        };
        if (nbd) {
            CHECK(bits_equal(b, b0));
            CHECK(bits_equal(gamma, g0));
            CHECK(bits_equal(beta, be0));
            opt.step(lr);  // and still after a second step (no momentum builds up)
            CHECK(bits_equal(b, b0));
            CHECK(bits_equal(gamma, g0));
            CHECK(bits_equal(beta, be0));
            for (std::size_t i = 1; i < 4; ++i)
                for (float v : opt.velocity()[i].span()) CHECK(v == 0.f);
        } else {  // without the trick every parameter decays the same way
            CHECK(b.value[0] == doctest::Approx(0.6993).epsilon(1e-7));
            CHECK(b.value[1] == doctest::Approx(-0.2997).epsilon(1e-7));
            CHECK(gamma.value[0] == doctest::Approx(1.2987).epsilon(1e-7));
            CHECK(beta.value[0] == doctest::Approx(-0.3996).epsilon(1e-7));
        }
    }
    CHECK(decays(nn::role::weight, true));
    CHECK_FALSE(decays(nn::role::bias, true));
    CHECK_FALSE(decays(nn::role::bn_gamma, true));
    CHECK_FALSE(decays(nn::role::bn_beta, true));
    CHECK(decays(nn::role::bias, false));
    CHECK(decays(nn::role::bn_gamma, false));
}

TEST_CASE("no_bias_decay acts on roles: a real model tags its conv/linear weights, biases and BN parameters") {
    // Under decay::no_bias_decay, weight decay reaches exactly the role::weight tensors.
    small_net net;
    int weights = 0, biases = 0, gammas = 0, betas = 0;
    for (auto* p : net.parameters()) {
        weights += p->kind == nn::role::weight;
        biases += p->kind == nn::role::bias;
        gammas += p->kind == nn::role::bn_gamma;
        betas += p->kind == nn::role::bn_beta;
    }
    CHECK(weights == 10);  // stem conv, 2 + 2 + 2 block convs, 2 shortcut 1x1 convs, the classifier
    CHECK(biases == 1);    // the classifier's (convs are followed by BN and have none)
    CHECK(gammas == 9);    // one BN per conv
    CHECK(betas == 9);
}

// ================================================================================================
// dynamic loss scaling (paper §3.2, Micikevicius et al. 2018)

TEST_CASE("loss_scaler: overflow skips the step and halves the scale; clean steps unscale exactly") {
    nn::parameter a = make_param(nn::role::weight, {0.f, 0.f}, {3.f, -1024.f});
    nn::parameter b = make_param(nn::role::bias, {0.f}, {0.5f});
    const std::vector<nn::parameter*> ps{&a, &b};
    loss_scaler s;
    s.scale = 1024;
    s.window = 3;
    // finite gradients: divided by the scale (a power of two, so exactly)
    CHECK(s.unscale_or_skip(ps));
    CHECK(a.grad[0] == 3.f / 1024);
    CHECK(a.grad[1] == -1.f);
    CHECK(b.grad[0] == 0.5f / 1024);
    CHECK(s.scale == 1024);
    CHECK(s.clean_steps == 1);
    CHECK(s.skipped == 0);
    // inf in any gradient: skip, halve, count, restart the clean window
    b.grad[0] = std::numeric_limits<float>::infinity();
    CHECK_FALSE(s.unscale_or_skip(ps));
    CHECK(s.scale == 512);
    CHECK(s.skipped == 1);
    CHECK(s.clean_steps == 0);
    a.grad[1] = std::nanf("");  // NaN counts as overflow too
    b.grad[0] = 1.f;
    CHECK_FALSE(s.unscale_or_skip(ps));
    CHECK(s.scale == 256);
    CHECK(s.skipped == 2);
    // recovery: `window` clean steps double it
    a.grad[1] = 1.f;
    CHECK(s.unscale_or_skip(ps));
    CHECK(s.unscale_or_skip(ps));
    CHECK(s.scale == 256);
    CHECK(s.unscale_or_skip(ps));
    CHECK(s.scale == 512);
    CHECK(s.clean_steps == 0);
    for (int i = 0; i < 3; ++i) CHECK(s.unscale_or_skip(ps));
    CHECK(s.scale == 1024);  // back where it started
    CHECK(s.skipped == 2);
    // an overflow in the middle of a window restarts it
    CHECK(s.unscale_or_skip(ps));
    CHECK(s.unscale_or_skip(ps));
    a.grad[0] = -std::numeric_limits<float>::infinity();
    CHECK_FALSE(s.unscale_or_skip(ps));
    a.grad[0] = 1.f;
    CHECK(s.unscale_or_skip(ps));
    CHECK(s.unscale_or_skip(ps));
    CHECK(s.scale == 512);  // only 2 clean steps since the overflow
    // the scale never drops below 1
    loss_scaler t;
    t.scale = 1;
    a.grad[0] = std::numeric_limits<float>::infinity();
    CHECK_FALSE(t.unscale_or_skip(ps));
    CHECK(t.scale == 1);
}

// ================================================================================================
// the trainer

TEST_CASE("trainer end to end on real Fashion-MNIST: the whole recipe learns") {
    const auto& fm = fmnist();
    if (!fm.available) {
        MESSAGE("Fashion-MNIST is not installed, skipping: " << fm.why);
        return;
    }
    // ResNet-8 (widths 8/16/32, ResNet-D shortcuts, zero-gamma) with warmup + cosine + label
    // smoothing + mixup + no-bias-decay, on the first 10,000 training images for 2 epochs of batch
    // 64 (312 steps, warmup over the first 156), tested on the first 1000 test images.
    //
    // What it reaches (measured): seeds 1/2/3/7 give 74.2/73.5/76.1/74.9% test top-1 at lr 0.4
    // (71-73% at lr 0.2). The bar, 60%, sits well below every measured seed, so another compiler's
    // rounding cannot fail it, while a run that does not learn (chance is 10%, an untrained net's
    // test loss is ln 10 = 2.30) or learns badly does: mixing the targets over another pairing than
    // the inputs drops it to 37% (measured by mutating the trainer).
    // Why 10,000 images and not 2,000: 2 epochs of 2,000 (62 steps) reach only 42-56% over the same
    // seeds, and a PyTorch 1.13 replica of this net, recipe and data reaches 37-46% there too: too
    // few steps for a bar that says much. On one thread the 10,000-image run costs ~12 s.
    // One thread: this 8-wide net's layers are too small to gain from two, and on a shared 2-core
    // machine two OpenMP threads crawl whenever another process holds a core (libgomp spin-waits).
    const omp_threads_guard keep_threads;
    const data::dataset train = fm.train.subset(0, 10000), test = fm.test.subset(0, 1000);
    const options o{.epochs = 2, .batch = 64, .lr = 0.4, .seed = 1, .threads = 1, .progress = false};
    trainer<small_net, full_recipe> t(o);
    const auto t0 = std::chrono::steady_clock::now();
    const history h = t.fit(train, test);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(h.epochs.size() == 2);
    MESSAGE("end-to-end Fashion-MNIST: test top-1 "
            << h.epochs[0].test_top1 << " -> " << h.final_top1() << ", test loss " << h.epochs[1].test_loss
            << ", train loss " << h.epochs[0].train_loss << " -> " << h.epochs[1].train_loss << ", " << secs << " s");
    CHECK(h.final_top1() > 0.60);
    CHECK(h.epochs[1].test_loss < 1.2);  // measured 0.79 (seed 1); an untrained net scores ln 10 = 2.30
    CHECK(h.epochs[1].train_loss < h.epochs[0].train_loss);
    for (const auto& r : h.epochs) {
        CHECK(std::isfinite(r.train_loss));
        CHECK(r.images_per_s > 0);
        CHECK(r.skipped_steps == 0);
    }
    CHECK(h.epochs[0].lr == doctest::Approx(0.4).epsilon(1e-12));  // the last warmup step is the peak
    CHECK(h.epochs[1].lr < 1e-3 * 0.4);                            // cosine ends near 0
    const evaluation ev = t.evaluate(test);                        // evaluate() agrees with the history
    CHECK(ev.top1 == h.final_top1());
    CHECK(ev.images == 1000);
}

TEST_CASE("trainer: same seed, same bits (on any thread count); another seed, other bits") {
    const auto train = synthetic_digits(512, 3, 99), test = synthetic_digits(64, 4, 99);
    options o = short_run_options();
    // a: OpenMP's default thread count (2 here), b: one thread. The thread count is not part of the
    // result: every draw is a pure function of (seed, what, where) and the kernels split work the
    // same way on any count, so a race or an order-dependent reduction shows up as a difference.
    trainer<small_net, full_recipe> a(o);
    const history ha = a.fit(train, test);
    const omp_threads_guard keep_threads;
    o.threads = 1;
    trainer<small_net, full_recipe> b(o);
    const history hb = b.fit(train, test);
    CHECK(same_bits(state_of(a.model()), state_of(b.model())));  // parameters and BN statistics
    REQUIRE(ha.epochs.size() == 1);
    CHECK(ha.epochs[0].train_loss == hb.epochs[0].train_loss);
    CHECK(ha.epochs[0].test_top1 == hb.epochs[0].test_top1);
    CHECK(ha.epochs[0].test_loss == hb.epochs[0].test_loss);
    o.seed = 12;
    trainer<small_net, full_recipe> c(o);
    const history hc = c.fit(train, test);
    CHECK_FALSE(same_bits(parameter_values(a.model()), parameter_values(c.model())));
    CHECK(ha.epochs[0].train_loss != hc.epochs[0].train_loss);
}

TEST_CASE(
    "trainer: options.conv_algorithm reaches the convolutions (Winograd and direct: other bits, the same training)") {
    const auto train = synthetic_digits(512, 5, 99), test = synthetic_digits(64, 6, 99);
    options o = short_run_options();
    REQUIRE(o.conv_algorithm == backend::conv_algo::winograd);  // the default
    trainer<small_net, full_recipe> w(o);
    const history hw = w.fit(train, test);
    o.conv_algorithm = backend::conv_algo::direct;
    trainer<small_net, full_recipe> d(o);
    const history hd = d.fit(train, test);
    trainer<small_net, full_recipe> d2(o);
    const history hd2 = d2.fit(train, test);
    // small_net's 3x3 stride-1 convs (8 channels) run F(4x4, 3x3) by default: the option changes the bits
    CHECK_FALSE(same_bits(parameter_values(w.model()), parameter_values(d.model())));
    CHECK(same_bits(parameter_values(d.model()), parameter_values(d2.model())));  // each is deterministic
    REQUIRE(hw.epochs.size() == 1);
    CHECK(hw.epochs[0].train_loss == doctest::Approx(hd.epochs[0].train_loss).epsilon(1e-4));
    // the report says which ran
    const std::string md = markdown_report(run_facts{}, o, hd);
    CHECK(md.find("| CPU convolutions | direct |") != std::string::npos);
}

TEST_CASE("trainer: a non-finite loss under fp32 stops training with an error naming the step") {
    const auto train = synthetic_digits(256, 5, 99), test = synthetic_digits(32, 6, 99);
    options o = quiet_options();
    o.epochs = 1;
    o.batch = 32;
    o.lr = 1e30;
    const omp_threads_guard keep_threads;
    o.threads = 1;
    trainer<small_net, recipe<>> t(o);
    try {
        (void)t.fit(train, test);
        FAIL("training with lr 1e30 did not stop");
    } catch (const training_error& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find("non-finite loss") != std::string::npos);
        std::smatch m;
        REQUIRE(std::regex_search(msg, m, std::regex(R"(at epoch 1, step ([0-9]+) \(global step ([0-9]+)\))")));
        CHECK(std::stoi(m[1]) >= 2);  // the first step starts from finite initial weights
        CHECK(m[1] == m[2]);
    }
}

TEST_CASE("trainer fp16_mixed: an overflowing loss scale skips the step and halves the scale") {
    const auto train = synthetic_digits(256, 7, 99), test = synthetic_digits(32, 8, 99);
    options o = quiet_options();
    o.epochs = 1;
    o.batch = 32;
    o.lr = 0.1;
    o.loss_scale = 1e30;  // the scaled gradients exceed FP16's 65504: every gradient buffer overflows
    o.max_steps_per_epoch = 1;
    const omp_threads_guard keep_threads;
    o.threads = 1;
    trainer<small_net, recipe<precision::fp16_mixed>> t(o);
    const std::vector<float> before = parameter_values(t.model());
    const history h = t.fit(train, test);
    CHECK(same_bits(parameter_values(t.model()), before));  // the step was skipped: nothing moved
    CHECK(t.scaler().skipped == 1);
    CHECK(t.scaler().scale == 5e29);
    CHECK(h.epochs[0].skipped_steps == 1);
    CHECK(h.epochs[0].loss_scale == 5e29);
    CHECK(std::isfinite(h.epochs[0].train_loss));
}

TEST_CASE("trainer fp16_mixed trains at a normal loss scale, close to but not bit-equal with fp32") {
    const auto train = synthetic_digits(512, 9, 99), test = synthetic_digits(64, 10, 99);
    options o = quiet_options();
    o.epochs = 2;
    o.batch = 32;
    o.lr = 0.1;
    o.max_steps_per_epoch = 6;
    const omp_threads_guard keep_threads;
    o.threads = 1;
    trainer<small_net, recipe<precision::fp16_mixed>> t(o);
    const history h = t.fit(train, test);
    REQUIRE(h.epochs.size() == 2);
    MESSAGE("fp16_mixed: train loss " << h.epochs[0].train_loss << " -> " << h.epochs[1].train_loss << ", skipped "
                                      << t.scaler().skipped << ", scale " << t.scaler().scale);
    // measured: 2.03 -> 1.38 (fp32 alike); the synthetic classes are easy
    CHECK(h.epochs[1].train_loss < h.epochs[0].train_loss - 0.3);
    CHECK(t.scaler().skipped < 6);  // most steps were applied
    const std::vector<float> w = parameter_values(t.model());
    CHECK(std::all_of(w.begin(), w.end(), [](float v) { return std::isfinite(v); }));
    // the same run in fp32: FP16 storage rounds weights, activations and gradients, so the bits
    // differ (the precision policy is not silently ignored) while the losses stay close
    trainer<small_net, recipe<>> f(o);
    const history hf = f.fit(train, test);
    CHECK_FALSE(same_bits(parameter_values(t.model()), parameter_values(f.model())));
    for (std::size_t e = 0; e < 2; ++e)
        CHECK(h.epochs[e].train_loss == doctest::Approx(hf.epochs[e].train_loss).epsilon(0.02));
}
