// tricks::ablation: for_each visits every configuration once, in order; names are derived from
// the types and unique; results reduce to mean ± std and curves; the report (Markdown, CSV, JSON)
// and plot files are written; and a tiny two-configuration study trains end to end on a
// Fashion-MNIST subset (skipped when the data set is not installed).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "tricks/ablation/grid.hpp"
#include "tricks/ablation/plot.hpp"
#include "tricks/ablation/report.hpp"
#include "tricks/ablation/rows.hpp"
#include "tricks/ablation/runner.hpp"
#include "tricks/data/fashion_mnist.hpp"
#include "tricks/models/cifar_resnet.hpp"
#include "tricks/models/resnet.hpp"
#include "tricks/train/recipe.hpp"

namespace fs = std::filesystem;
namespace ab = tricks::ablation;
namespace m = tricks::models;
namespace tw = tricks::tweak;
using tricks::recipe;
namespace lr = tricks::lr;
namespace loss = tricks::loss;

namespace {

using r0 = recipe<>;
using r1 = recipe<lr::cosine>;
using r2 = recipe<lr::cosine, loss::label_smoothing>;
using design_grid = ab::grid<ab::axis<m::resnet50, m::resnet50b, m::resnet50c, m::resnet50d>, ab::axis<r0, r1, r2>>;

// Small nets for 28x28 grey images: cheap enough to train a few steps in a unit test.
using tiny_a = m::cifar_resnet<8, tricks::width<8>, tricks::in_channels<1>, tricks::classes<10>>;
using tiny_d =
    m::cifar_resnet<8, tricks::width<8>, tricks::in_channels<1>, tricks::classes<10>, tw::deep_stem, tw::avg_down>;
using tiny_teacher = m::cifar_resnet<8, tricks::width<16>, tricks::in_channels<1>, tricks::classes<10>>;

struct temp_dir : tricks_test::temp_dir {
    temp_dir() : tricks_test::temp_dir("tricks_ablation_") {}
};

std::string slurp(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::size_t count_lines(const std::string& s) {
    std::size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

ab::seed_run fake_run(std::uint64_t seed, std::vector<double> curve) {
    ab::seed_run r;
    r.seed = seed;
    r.top1 = curve.back();
    r.images_per_s = 100.0 * static_cast<double>(seed);
    r.seconds = 10.0 * static_cast<double>(seed);
    r.top1_curve = curve;
    r.train_loss_curve.assign(curve.size(), 1.0);
    return r;
}

}  // namespace

TEST_CASE("ablation: for_each visits every configuration of a grid once, row-major") {
    std::vector<std::string> seen;
    ab::for_each<design_grid>(
        [&]<class Net, class Recipe>() { seen.push_back(Net::name() + " / " + Recipe::describe()); });
    const std::vector<std::string> models{"resnet50", "resnet50-B", "resnet50-C", "resnet50-D"};
    const std::vector<std::string> recipes{"sgd", "sgd + cosine", "sgd + cosine + label_smoothing"};
    REQUIRE(seen.size() == 12);
    for (std::size_t i = 0; i < 12; ++i) CHECK(seen[i] == models[i / 3] + " / " + recipes[i % 3]);
}

TEST_CASE("ablation: for_each over rows keeps the written order; a lambda sees the types") {
    using table = ab::rows<ab::config<tiny_d, r2>, ab::config<tiny_a, r0>, ab::config<tiny_d, r1>>;
    std::vector<std::string> seen;
    int distilling = 0;
    ab::for_each<table>([&]<class Net, class Recipe>() {
        static_assert(Net::classes == 10);
        seen.push_back(ab::config_name<Net, Recipe>());
        distilling += Recipe::distills;
    });
    CHECK(distilling == 0);
    CHECK(seen == std::vector<std::string>{ab::config<tiny_d, r2>::name(), ab::config<tiny_a, r0>::name(),
                                           ab::config<tiny_d, r1>::name()});
    CHECK(ab::names<table>() == seen);
}

TEST_CASE("ablation: a configuration's name is Model::name() | Recipe::describe() [| teacher T]") {
    CHECK(ab::config_name<tiny_d, r2>() == "cifar_resnet8w8+deep_stem+avg_down | sgd + cosine + label_smoothing");
    CHECK(ab::config_name<tiny_d, r2>() == tiny_d::name() + " | " + r2::describe());
    using kd = recipe<lr::cosine, loss::distill<tiny_teacher>>;
    CHECK(ab::config_name<tiny_a, kd>() ==
          tiny_a::name() + " | " + kd::describe() + " | teacher " + tiny_teacher::name());
}

TEST_CASE("ablation: the names of a grid's configurations are unique") {
    const auto names = ab::names<design_grid>();
    CHECK(names.size() == ab::size_v<design_grid>);
    CHECK(std::set<std::string>(names.begin(), names.end()).size() == names.size());
}

TEST_CASE("ablation: describe() takes the facts from the types") {
    const ab::result r = ab::describe<tiny_d, r1>();
    CHECK(r.name == ab::config_name<tiny_d, r1>());
    CHECK(r.model == tiny_d::name());
    CHECK(r.recipe == r1::describe());
    CHECK(r.teacher.empty());
    CHECK(r.parameters == tricks::parameter_count_v<tiny_d>);
    CHECK(r.macs == tricks::macs<tiny_d>(28, 28));
    CHECK(r.runs.empty());
    CHECK(ab::describe<tiny_a, recipe<loss::distill<tiny_teacher>>>().teacher == tiny_teacher::name());
}

TEST_CASE("ablation: a result's mean, sample std and mean curve over seeds") {
    ab::result r;
    r.runs = {fake_run(1, {0.5, 0.8}), fake_run(2, {0.7, 0.9}), fake_run(3, {0.6, 1.0})};
    CHECK(r.top1_mean() == doctest::Approx(0.9));
    CHECK(r.top1_std() == doctest::Approx(0.1));  // sample std (n - 1) of 0.8, 0.9, 1.0
    CHECK(r.images_per_s() == doctest::Approx(200));
    CHECK(r.seconds() == doctest::Approx(20));
    const auto m = r.curve_mean(), s = r.curve_std();
    REQUIRE(m.size() == 2);
    CHECK(m[0] == doctest::Approx(0.6));
    CHECK(m[1] == doctest::Approx(0.9));
    CHECK(s[0] == doctest::Approx(0.1));
    ab::result one;
    one.runs = {fake_run(1, {0.5})};
    CHECK(one.top1_std() == 0.0);
    CHECK(ab::result{}.top1_mean() == 0.0);
}

TEST_CASE("ablation: change labels say what a row adds and removes, from the types") {
    using zg = m::cifar_resnet<20, tricks::init::zero_gamma>;
    using zg_c = m::cifar_resnet<20, tw::deep_stem, tricks::init::zero_gamma>;
    using step = lr::step<tricks::epochs<3>>;
    using big = m::cifar_resnet<20, tricks::width<32>>;
    using bigger = m::cifar_resnet<20, tricks::width<64>>;
    const auto a = ab::describe<zg, recipe<lr::warmup<>, step>>();
    const auto c = ab::describe<zg_c, recipe<lr::warmup<>, step>>();
    const auto d_cos = ab::describe<zg_c, recipe<lr::warmup<>, lr::cosine>>();
    const auto d_kd = ab::describe<zg_c, recipe<lr::warmup<>, lr::cosine, loss::distill<big>>>();
    const auto d_mix = ab::describe<zg_c, recipe<lr::cosine, tricks::mix::mixup, lr::warmup<>>>();
    CHECK(a.parts == std::vector<std::string>{"cifar_resnet20", "zero_gamma", "sgd", "warmup", "step"});
    CHECK(ab::change_label(nullptr, a) == "baseline");
    CHECK(ab::change_label(&a, c) == "+deep_stem");
    CHECK(ab::change_label(&c, d_cos) == "+cosine -step");
    CHECK(ab::change_label(&d_cos, d_kd) == "+distill");
    CHECK(ab::change_label(&d_kd, d_mix) == "+mixup -distill");  // the recipe's order does not matter
    const auto other_teacher = ab::describe<zg_c, recipe<lr::warmup<>, lr::cosine, loss::distill<bigger>>>();
    CHECK(ab::change_label(&d_kd, other_teacher) == "(teacher cifar_resnet20w64)");
    CHECK(ab::change_label(&a, a) == "(same)");
    // A word in a model name is no separator: the labels come from the parts, not the names' text.
    const auto d50 = ab::describe<m::resnet50d, recipe<>>(), a50 = ab::describe<m::resnet50, recipe<>>();
    CHECK(d50.parts == std::vector<std::string>{"resnet50-D", "sgd"});
    CHECK(ab::change_label(&a50, d50) == "+resnet50-D -resnet50");
    const auto odd = ab::describe<m::resnet<18, tw::avg_down, tricks::init::zero_gamma>, recipe<>>();
    CHECK(odd.parts == std::vector<std::string>{"resnet18", "avg_down", "zero_gamma", "sgd"});
    CHECK(odd.model == "resnet18+avg_down+zero_gamma");
}

TEST_CASE("ablation: the report writes a Markdown table, CSV, JSON and gnuplot data and scripts") {
    ab::study s{"tweaks", "Model tweaks", "A note.", {}};
    s.rows.resize(2);
    s.rows[0].name = "net | sgd + step";
    s.rows[0].parts = {"net", "sgd", "step"};
    s.rows[0].parameters = 273874;
    s.rows[0].macs = 32'320'256;
    s.rows[0].runs = {fake_run(1, {0.80, 0.90}), fake_run(2, {0.82, 0.92})};
    s.rows[1].name = "net+deep_stem | sgd + step";
    s.rows[1].parts = {"net", "deep_stem", "sgd", "step"};
    s.rows[1].runs = {fake_run(1, {0.81, 0.93}), fake_run(2, {0.83, 0.95})};
    CHECK(ab::delta_vs_first(s, 0) == 0.0);
    CHECK(ab::delta_vs_first(s, 1) == doctest::Approx(0.03));

    const std::string md = ab::markdown_table(s);
    CHECK(md.find("## Model tweaks") != std::string::npos);
    CHECK(md.find("| 1 | baseline | `net \\| sgd + step` | 91.00 ± 1.41 | — | 273,874 | 32.3 M | 150 | 0:15 |") !=
          std::string::npos);
    CHECK(md.find("| 2 | +deep_stem | `net+deep_stem \\| sgd + step` | 94.00 ± 1.41 | +3.00 |") != std::string::npos);
    CHECK(md.find("over 2 seeds") != std::string::npos);
    CHECK(md.find("A note.") != std::string::npos);

    temp_dir tmp;
    ab::run_meta meta;
    meta.command = "ablation --quick";
    meta.dataset = "Fashion-MNIST";
    meta.seeds = 2;
    ab::write_markdown(tmp.path / "a.md", {s}, meta);
    ab::write_csv(tmp.path / "a.csv", {s});
    ab::write_json(tmp.path / "a.json", {s}, meta);
    const std::string csv = slurp(tmp.path / "a.csv"), json = slurp(tmp.path / "a.json");
    CHECK(count_lines(csv) == 3);  // header + 2 rows
    CHECK(csv.rfind("study,row,change,config,", 0) == 0);
    CHECK(csv.find("\"tweaks\",2,\"+deep_stem\",\"net+deep_stem | sgd + step\"") != std::string::npos);
    CHECK(slurp(tmp.path / "a.md").find("| command | `ablation --quick` |") != std::string::npos);
    CHECK(json.find("\"studies\": [") != std::string::npos);
    CHECK(json.find("\"top1_curve\": [0.81, 0.93]") != std::string::npos);
    CHECK(json.find("\"teacher_top1\": null") != std::string::npos);
    // Brackets and braces balance (a cheap well-formedness check; no string here contains them).
    int depth = 0, min_depth = 0;
    for (char c : json) {
        depth += (c == '{' || c == '[') - (c == '}' || c == ']');
        min_depth = std::min(min_depth, depth);
    }
    CHECK(depth == 0);
    CHECK(min_depth == 0);

    const ab::plot_files pf = ab::write_plots(tmp.path, s);
    REQUIRE(pf.data.size() == 2);
    REQUIRE(pf.scripts.size() == 2);
    CHECK(pf.images.size() == 4);
    for (const auto& f : pf.data) CHECK(fs::is_regular_file(f));
    for (const auto& f : pf.scripts) CHECK(fs::is_regular_file(f));
    const std::string curves = slurp(tmp.path / "tweaks_curves.dat");
    CHECK(curves.find("1 81 1.414") != std::string::npos);             // epoch 1 of row 1: mean 81%, std 1.414
    CHECK(curves.find("\n\n\n# 2: +deep_stem") != std::string::npos);  // blocks separated for gnuplot's index
    const std::string gp = slurp(tmp.path / "tweaks_curves.gp");
    CHECK(gp.find("set output \"tweaks_curves.svg\"") != std::string::npos);
    CHECK(gp.find("set output \"tweaks_curves.png\"") != std::string::npos);
    CHECK(slurp(tmp.path / "tweaks_deltas.dat").find("2 \"2: +deep_stem\" 3") != std::string::npos);
    CHECK_FALSE(ab::program_available("tricks-no-such-program-here"));
}

TEST_CASE("ablation: a two-configuration study trains end to end on a Fashion-MNIST subset") {
    const fs::path dir = tricks::data::fashion_mnist::default_dir();
    if (!fs::is_directory(dir)) {
        MESSAGE("skipped: ", dir.string(),
                " is missing (install dataset-fashion-mnist or set TRICKS_FASHION_MNIST_DIR)");
        return;
    }
    const auto train = tricks::data::fashion_mnist::train(dir).subset(0, 256);
    const auto test = tricks::data::fashion_mnist::test(dir).subset(0, 200);
    tricks::options o;
    o.epochs = 2;
    o.batch = 32;
    o.lr = 0.05;
    o.max_steps_per_epoch = 3;
    o.progress = false;
    // One thread: these nets are too small to gain from two, and OpenMP's spinning barriers make
    // tiny layers very slow on a loaded machine. The trainer sets the thread count globally, so
    // the previous count is restored for the tests that follow.
    o.threads = 1;
    struct restore_threads {
        int n = omp_get_max_threads();
        ~restore_threads() { omp_set_num_threads(n); }
    } restore;
    using study = ab::rows<ab::config<tiny_a, recipe<>>, ab::config<tiny_d, recipe<lr::cosine, loss::label_smoothing>>>;

    std::vector<ab::result> rows;
    ab::for_each<study>([&]<class Net, class Recipe>() {
        ab::result r = ab::describe<Net, Recipe>();
        for (std::uint64_t seed : {1, 2}) r.runs.push_back(ab::run_seed<Net, Recipe>(o, seed, train, test));
        rows.push_back(r);
    });

    REQUIRE(rows.size() == 2);
    CHECK(rows[0].name == ab::config_name<tiny_a, recipe<>>());
    CHECK(rows[1].name == ab::config_name<tiny_d, recipe<lr::cosine, loss::label_smoothing>>());
    CHECK(rows[0].parameters == tricks::parameter_count_v<tiny_a>);
    CHECK(rows[1].parameters == tricks::parameter_count_v<tiny_d>);
    for (const auto& r : rows) {
        REQUIRE(r.runs.size() == 2);
        for (const auto& run : r.runs) {
            CHECK(run.top1_curve.size() == 2);
            CHECK(run.train_loss_curve.size() == 2);
            CHECK(run.top1 == run.top1_curve.back());
            CHECK(run.top1 >= 0.0);
            CHECK(run.top1 <= 1.0);
            CHECK(std::isfinite(run.train_loss_curve.back()));
            CHECK(run.images_per_s > 0);
            CHECK(run.seconds > 0);
        }
        CHECK(r.runs[0].seed == 1);
        CHECK(r.runs[1].seed == 2);
        CHECK(r.top1_std() >= 0);
    }
    // Same configuration, same seed: the same numbers (the trainer is deterministic on the CPU).
    const ab::seed_run again = ab::run_seed<tiny_a, recipe<>>(o, 1, train, test);
    CHECK(again.top1_curve == rows[0].runs[0].top1_curve);
    CHECK(again.train_loss_curve == rows[0].runs[0].train_loss_curve);
}
