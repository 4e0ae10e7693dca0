#pragma once
// Writes a run's metrics: CSV (one row per epoch), JSON (run facts + epochs) and a Markdown report.
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>

#include "tricks/core/error.hpp"
#include "tricks/train/trainer.hpp"

namespace tricks {

struct run_facts {
    std::string model, recipe, dataset;
    std::int64_t parameters = 0, macs = 0;
    int threads = 0;
    double total_seconds = 0;
    std::string device = "cpu";  // "cpu", or "cuda: <GPU name>"
};

namespace detail {
inline std::string json_escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            o += ' ';
            continue;
        }
        o += c;
    }
    return o;
}
inline std::ofstream open_out(const std::filesystem::path& p) {
    std::ofstream f(p);
    require<error>(static_cast<bool>(f), "tricks::report: cannot write ", p.string());
    f << std::setprecision(10);
    return f;
}
}  // namespace detail

inline void write_csv(const std::filesystem::path& p, const history& h) {
    auto f = detail::open_out(p);
    f << "epoch,train_loss,test_top1,test_loss,lr,images_per_s,seconds,skipped_steps,loss_scale\n";
    for (const auto& r : h.epochs)
        f << r.epoch << ',' << r.train_loss << ',' << r.test_top1 << ',' << r.test_loss << ',' << r.lr << ','
          << r.images_per_s << ',' << r.seconds << ',' << r.skipped_steps << ',' << r.loss_scale << '\n';
}

inline void write_json(const std::filesystem::path& p, const run_facts& facts, const options& o, const history& h) {
    auto f = detail::open_out(p);
    f << "{\n  \"model\": \"" << detail::json_escape(facts.model) << "\",\n  \"recipe\": \"" << detail::json_escape(facts.recipe)
      << "\",\n  \"dataset\": \"" << detail::json_escape(facts.dataset) << "\",\n  \"parameters\": " << facts.parameters
      << ",\n  \"macs_per_image\": " << facts.macs << ",\n  \"threads\": " << facts.threads
      << ",\n  \"device\": \"" << detail::json_escape(facts.device) << "\""
      << ",\n  \"total_seconds\": " << facts.total_seconds << ",\n  \"final_test_top1\": " << h.final_top1()
      << ",\n  \"options\": {\"epochs\": " << o.epochs << ", \"batch\": " << o.batch << ", \"lr\": " << o.lr
      << ", \"momentum\": " << o.momentum << ", \"weight_decay\": " << o.weight_decay << ", \"warmup_epochs\": " << o.warmup_epochs
      << ", \"step_milestones\": [" << epoch_list(o.step_milestones) << "]"
      << ", \"conv_algorithm\": \"" << backend::to_string(o.conv_algorithm) << "\""
      << ", \"label_smoothing\": " << o.label_smoothing << ", \"mixup_alpha\": " << o.mixup_alpha << ", \"seed\": " << o.seed
      << "},\n  \"epochs\": [\n";
    for (std::size_t i = 0; i < h.epochs.size(); ++i) {
        const auto& r = h.epochs[i];
        f << "    {\"epoch\": " << r.epoch << ", \"train_loss\": " << r.train_loss << ", \"test_top1\": " << r.test_top1
          << ", \"test_loss\": " << r.test_loss << ", \"lr\": " << r.lr << ", \"images_per_s\": " << r.images_per_s
          << ", \"seconds\": " << r.seconds << ", \"skipped_steps\": " << r.skipped_steps << ", \"loss_scale\": " << r.loss_scale
          << "}" << (i + 1 < h.epochs.size() ? "," : "") << "\n";
    }
    f << "  ]\n}\n";
}

inline std::string markdown_report(const run_facts& facts, const options& o, const history& h) {
    std::ostringstream s;
    s << std::fixed;
    s << "# tricks training report\n\n"
      << "| | |\n|---|---|\n"
      << "| model | " << facts.model << " |\n| recipe | " << facts.recipe << " |\n| data | " << facts.dataset << " |\n"
      << "| parameters | " << facts.parameters << " |\n| MACs / image | " << facts.macs << " |\n"
      << "| epochs x batch | " << o.epochs << " x " << o.batch << " |\n| base lr, wd | " << o.lr << ", " << o.weight_decay << " |\n"
      << "| seed, threads | " << o.seed << ", " << facts.threads << " |\n"
      << "| CPU convolutions | " << backend::to_string(o.conv_algorithm) << " |\n"
      << "| device | " << facts.device << " |\n"
      << "| wall time | " << std::setprecision(1) << facts.total_seconds << " s |\n"
      << "| **final test top-1** | **" << std::setprecision(2) << 100 * h.final_top1() << "%** |\n\n"
      << "| epoch | train loss | test top-1 | test loss | lr | images/s | seconds |\n|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& r : h.epochs)
        s << "| " << r.epoch << " | " << std::setprecision(4) << r.train_loss << " | " << std::setprecision(2) << 100 * r.test_top1
          << "% | " << std::setprecision(4) << r.test_loss << " | " << std::setprecision(5) << r.lr << " | " << std::setprecision(0)
          << r.images_per_s << " | " << std::setprecision(1) << r.seconds << " |\n";
    return s.str();
}

}  // namespace tricks
