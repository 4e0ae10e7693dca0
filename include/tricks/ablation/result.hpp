#pragma once
// What an ablation run measures: one seed_run per (configuration, seed), gathered into one result
// per configuration, and results into studies (one table each). Plain data: report.hpp writes it
// out, runner.hpp fills it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace tricks::ablation {

/// One training run of one configuration with one seed.
struct seed_run {
    std::uint64_t seed = 0;
    double top1 = 0;                       // final test top-1, fraction in [0, 1]
    double images_per_s = 0;               // training throughput over the whole run
    double seconds = 0;                    // wall time of fit() (training and evaluation)
    std::vector<double> top1_curve;        // test top-1 after each epoch
    std::vector<double> train_loss_curve;  // mean training loss of each epoch
};

/// One configuration: its facts (from its types) and its runs.
struct result {
    std::string name;                // config_name<Model, Recipe>()
    std::string model;               // Model::name()
    std::string recipe;              // Recipe::describe()
    std::string teacher;             // the distillation teacher's Model::name(), or empty
    std::vector<std::string> parts;  // Model::parts() then Recipe::parts(): what change labels compare
    std::int64_t parameters = 0;
    std::int64_t macs = 0;  // forward multiply-accumulates per image at the study's input size
    std::vector<seed_run> runs;

    [[nodiscard]] double top1_mean() const noexcept {
        if (runs.empty()) return 0;
        double s = 0;
        for (const auto& r : runs) s += r.top1;
        return s / static_cast<double>(runs.size());
    }
    /// Sample standard deviation (n - 1) of the final top-1 over seeds; 0 for a single run.
    [[nodiscard]] double top1_std() const noexcept {
        if (runs.size() < 2) return 0;
        const double m = top1_mean();
        double s = 0;
        for (const auto& r : runs) s += (r.top1 - m) * (r.top1 - m);
        return std::sqrt(s / static_cast<double>(runs.size() - 1));
    }
    [[nodiscard]] double images_per_s() const noexcept {
        if (runs.empty()) return 0;
        double s = 0;
        for (const auto& r : runs) s += r.images_per_s;
        return s / static_cast<double>(runs.size());
    }
    /// Mean wall time of one run (one seed).
    [[nodiscard]] double seconds() const noexcept {
        if (runs.empty()) return 0;
        double s = 0;
        for (const auto& r : runs) s += r.seconds;
        return s / static_cast<double>(runs.size());
    }
    /// Per-epoch mean and sample std of test top-1 over the seeds (as long as the shortest run).
    [[nodiscard]] std::vector<double> curve_mean() const {
        std::vector<double> m(shortest(), 0.0);
        for (const auto& r : runs)
            for (std::size_t e = 0; e < m.size(); ++e) m[e] += r.top1_curve[e] / static_cast<double>(runs.size());
        return m;
    }
    [[nodiscard]] std::vector<double> curve_std() const {
        const auto m = curve_mean();
        std::vector<double> s(m.size(), 0.0);
        if (runs.size() < 2) return s;
        for (const auto& r : runs)
            for (std::size_t e = 0; e < s.size(); ++e) s[e] += (r.top1_curve[e] - m[e]) * (r.top1_curve[e] - m[e]);
        for (auto& v : s) v = std::sqrt(v / static_cast<double>(runs.size() - 1));
        return s;
    }

private:
    [[nodiscard]] std::size_t shortest() const noexcept {
        if (runs.empty()) return 0;
        std::size_t n = runs.front().top1_curve.size();
        for (const auto& r : runs) n = std::min(n, r.top1_curve.size());
        return n;
    }
};

/// One table: rows in order; deltas are against the first row (the study's baseline).
struct study {
    std::string id;     // file stem of its outputs, e.g. "model_tweaks"
    std::string title;  // e.g. "Model tweaks (cumulative, cf. paper Table 5)"
    std::string note;   // Markdown printed under the table
    std::vector<result> rows;
};

}  // namespace tricks::ablation
