#pragma once
// Writes a run's metrics: CSV (one row per epoch), JSON (run facts, settings, epochs) and a Markdown
// report. Columns come from epoch_columns and settings from train/settings.hpp, so each is named once.
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/train/settings.hpp"
#include "tricks/train/trainer.hpp"

namespace tricks {

struct run_facts {
    std::string model, recipe, dataset;
    std::int64_t parameters = 0, macs = 0;
    int threads = 0;
    double total_seconds = 0;
    std::string device = "cpu";  // "cpu", or "cuda: <GPU name>"
    /// The run's settings (trainer::settings(): options, model, recipe, data); empty: the
    /// options' fields alone (option_settings).
    std::vector<setting> settings{};
};

namespace detail {
inline std::ofstream open_out(const std::filesystem::path& p) {
    std::ofstream f(p);
    require<error>(static_cast<bool>(f), "tricks::report: cannot write ", p.string());
    f << std::setprecision(10);
    return f;
}
inline std::vector<setting> report_settings(const run_facts& facts, const options& o) {
    return facts.settings.empty() ? option_settings(o) : facts.settings;
}
}  // namespace detail

/// One row per epoch, a column per field of epoch_record (epoch_columns).
inline void write_csv(const std::filesystem::path& p, const history& h) {
    auto f = detail::open_out(p);
    std::apply(
        [&](const auto&... c) {
            const char* sep = "";
            ((f << sep << c.name, sep = ","), ...);
        },
        epoch_columns);
    f << '\n';
    for (const auto& r : h.epochs) {
        std::apply(
            [&](const auto&... c) {
                const char* sep = "";
                ((f << sep << r.*(c.member), sep = ","), ...);
            },
            epoch_columns);
        f << '\n';
    }
}

/// The run's facts, every setting by name ("settings"), and the epochs (epoch_columns).
inline void write_json(const std::filesystem::path& p, const run_facts& facts, const options& o, const history& h) {
    auto f = detail::open_out(p);
    f << "{\n  \"model\": " << detail::json_string(facts.model)
      << ",\n  \"recipe\": " << detail::json_string(facts.recipe)
      << ",\n  \"dataset\": " << detail::json_string(facts.dataset) << ",\n  \"parameters\": " << facts.parameters
      << ",\n  \"macs_per_image\": " << facts.macs << ",\n  \"threads\": " << facts.threads
      << ",\n  \"device\": " << detail::json_string(facts.device) << ",\n  \"total_seconds\": " << facts.total_seconds
      << ",\n  \"final_test_top1\": " << h.final_top1() << ",\n  \"settings\": {";
    const std::vector<setting> settings = detail::report_settings(facts, o);
    for (std::size_t i = 0; i < settings.size(); ++i)
        f << (i ? ", " : "") << detail::json_string(settings[i].name) << ": " << settings[i].json;
    f << "},\n  \"epochs\": [\n";
    for (std::size_t i = 0; i < h.epochs.size(); ++i) {
        const auto& r = h.epochs[i];
        f << "    {";
        std::apply(
            [&](const auto&... c) {
                const char* sep = "";
                ((f << sep << '"' << c.name << "\": " << r.*(c.member), sep = ", "), ...);
            },
            epoch_columns);
        f << "}" << (i + 1 < h.epochs.size() ? "," : "") << "\n";
    }
    f << "  ]\n}\n";
}

/// A readable report: the run's facts, the epochs, and every setting by name with its rule on resume.
inline std::string markdown_report(const run_facts& facts, const options& o, const history& h) {
    std::ostringstream s;
    s << std::fixed;
    s << "# tricks training report\n\n"
      << "| | |\n|---|---|\n"
      << "| model | " << facts.model << " |\n| recipe | " << facts.recipe << " |\n| data | " << facts.dataset << " |\n"
      << "| parameters | " << facts.parameters << " |\n| MACs / image | " << facts.macs << " |\n"
      << "| epochs x batch | " << o.epochs << " x " << o.batch << " |\n| base lr, wd | " << o.lr << ", "
      << o.weight_decay << " |\n"
      << "| seed, threads | " << o.seed << ", " << facts.threads << " |\n"
      << "| CPU convolutions | " << backend::to_string(o.conv_algorithm) << " |\n"
      << "| device | " << facts.device << " |\n"
      << "| wall time | " << std::setprecision(1) << facts.total_seconds << " s |\n"
      << "| **final test top-1** | **" << std::setprecision(2) << 100 * h.final_top1() << "%** |\n\n"
      << "| epoch | train loss | test top-1 | test loss | lr | images/s | seconds | peak RSS (MiB) |\n"
      << "|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& r : h.epochs)
        s << "| " << r.epoch << " | " << std::setprecision(4) << r.train_loss << " | " << std::setprecision(2)
          << 100 * r.test_top1 << "% | " << std::setprecision(4) << r.test_loss << " | " << std::setprecision(5) << r.lr
          << " | " << std::setprecision(0) << r.images_per_s << " | " << std::setprecision(1) << r.seconds << " | "
          << std::setprecision(0) << r.peak_rss_mib << " |\n";
    s << "\n## Settings\n\n| setting | value | on resume |\n|---|---|---|\n";
    for (const auto& x : detail::report_settings(facts, o))
        s << "| " << x.name << " | " << x.value << " | " << to_string(x.rule) << " |\n";
    return s.str();
}

}  // namespace tricks
