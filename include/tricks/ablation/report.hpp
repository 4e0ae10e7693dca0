#pragma once
// Writes ablation results: a Markdown table per study (config, top-1 mean ± std, delta vs the
// study's first row, params, MACs, train images/s, wall time), and all studies as CSV and JSON
// (the JSON also holds every seed's learning curve).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tricks/ablation/result.hpp"
#include "tricks/core/error.hpp"

namespace tricks::ablation {

/// Facts about the whole run, printed above the tables and stored in the JSON.
struct run_meta {
    std::string command;
    std::string dataset;
    long train_images = 0, test_images = 0;
    int epochs = 0, batch = 0, seeds = 0, threads = 0;
    double lr = 0, weight_decay = 0;
    double total_seconds = 0;
    std::string teacher, teacher_recipe, teacher_checkpoint;  // empty: no distillation row was run
    double teacher_top1 = -1;                                 // < 0: unknown (loaded, not trained here)
    std::vector<std::string> notes;                           // Markdown paragraphs
};

namespace detail {

/// A cell of a Markdown table: '|' would end the cell, even inside a code span.
inline std::string md_cell(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '|') o += '\\';
        o += c;
    }
    return o;
}

inline std::string csv_field(const std::string& s) {
    std::string o = "\"";
    for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
    return o + "\"";
}

inline std::string json_string(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') {
            o += '\\';
            o += c;
        } else if (c == '\n')
            o += "\\n";
        else if (static_cast<unsigned char>(c) < 0x20)
            o += ' ';
        else
            o += c;
    }
    return o + "\"";
}

inline std::string fixed(double v, int digits) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
}

/// 273874 -> "273,874"
inline std::string grouped(std::int64_t v) {
    std::string d = std::to_string(v < 0 ? -v : v), o;
    for (std::size_t i = 0; i < d.size(); ++i) {
        if (i > 0 && (d.size() - i) % 3 == 0) o += ',';
        o += d[i];
    }
    return v < 0 ? "-" + o : o;
}

/// 83.4 -> "1:23", 3723 -> "1:02:03"
inline std::string clock(double seconds) {
    const long s = seconds > 0 ? static_cast<long>(seconds + 0.5) : 0;
    char b[32];
    if (s >= 3600)
        std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        std::snprintf(b, sizeof b, "%ld:%02ld", s / 60, s % 60);
    return b;
}

inline std::ofstream open(const std::filesystem::path& p) {
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    std::ofstream f(p);
    require<error>(static_cast<bool>(f), "tricks::ablation: cannot write ", p.string());
    f << std::setprecision(10);
    return f;
}

}  // namespace detail

/// What row `r` changes relative to the row before it, from the parts of their model and recipe
/// types (result::parts): "+deep_stem", "+cosine -step", "+mixup -distill"; the first row is
/// "baseline". A distillation teacher is named only when it differs from the previous row's teacher.
inline std::string change_label(const result* previous, const result& r) {
    if (previous == nullptr) return "baseline";
    const std::set<std::string> b(previous->parts.begin(), previous->parts.end()), n(r.parts.begin(), r.parts.end());
    std::string s;
    for (const auto& t : r.parts)
        if (!b.count(t)) s += (s.empty() ? "+" : " +") + t;
    for (const auto& t : previous->parts)
        if (!n.count(t)) s += (s.empty() ? "-" : " -") + t;
    if (!previous->teacher.empty() && !r.teacher.empty() && previous->teacher != r.teacher)
        s += (s.empty() ? "(teacher " : " (teacher ") + r.teacher + ")";
    return s.empty() ? "(same)" : s;
}

/// Change in top-1 (fraction) of row i against the study's first row.
inline double delta_vs_first(const study& s, std::size_t i) {
    return s.rows.empty() ? 0.0 : s.rows[i].top1_mean() - s.rows.front().top1_mean();
}

/// The study's Markdown table (with its title as a heading and its note below).
inline std::string markdown_table(const study& s) {
    std::ostringstream o;
    std::size_t seeds = 0;
    for (const auto& r : s.rows) seeds = std::max(seeds, r.runs.size());
    o << "## " << s.title << "\n\n"
      << "| # | change | configuration | top-1 (%) | Δ vs row 1 (pp) | params | MACs | train img/s | wall time |\n"
      << "|---:|---|---|---:|---:|---:|---:|---:|---:|\n";
    for (std::size_t i = 0; i < s.rows.size(); ++i) {
        const result& r = s.rows[i];
        std::string top1 = detail::fixed(100 * r.top1_mean(), 2);
        if (r.runs.size() > 1) top1 += " ± " + detail::fixed(100 * r.top1_std(), 2);
        const double d = 100 * delta_vs_first(s, i);
        o << "| " << i + 1 << " | " << detail::md_cell(change_label(i ? &s.rows[i - 1] : nullptr, r)) << " | `"
          << detail::md_cell(r.name) << "` | " << top1 << " | "
          << (i == 0 ? std::string("—") : (d >= 0 ? "+" : "") + detail::fixed(d, 2)) << " | "
          << detail::grouped(r.parameters) << " | " << detail::fixed(static_cast<double>(r.macs) / 1e6, 1) << " M | "
          << detail::fixed(r.images_per_s(), 0) << " | " << detail::clock(r.seconds()) << " |\n";
    }
    o << "\nTop-1: final test accuracy, " << (seeds > 1 ? "mean ± sample standard deviation over " : "")
      << (seeds > 1 ? std::to_string(seeds) + " seeds" : "one seed")
      << "; Δ in percentage points against row 1; MACs: forward multiply-accumulates per image; wall time: one "
         "run (training and evaluation)"
      << (seeds > 1 ? ", mean over seeds" : "") << ".\n";
    if (!s.note.empty()) o << "\n" << s.note << "\n";
    return o.str();
}

/// The whole report: facts of the run, then every study's table.
inline std::string markdown_report(const std::vector<study>& studies, const run_meta& m) {
    std::ostringstream o;
    o << "# tricks ablation on " << m.dataset << "\n\n"
      << "| | |\n|---|---|\n"
      << "| command | `" << detail::md_cell(m.command) << "` |\n"
      << "| data | " << m.train_images << " train, " << m.test_images << " test images |\n"
      << "| epochs x batch | " << m.epochs << " x " << m.batch << " |\n"
      << "| base lr (at batch 256), weight decay | " << m.lr << ", " << m.weight_decay << " |\n"
      << "| seeds | " << m.seeds << " |\n| threads | " << m.threads << " |\n"
      << "| total wall time | " << detail::clock(m.total_seconds) << " |\n";
    if (!m.teacher.empty()) {
        o << "| distillation teacher | `" << detail::md_cell(m.teacher) << "` |\n| teacher recipe | `"
          << detail::md_cell(m.teacher_recipe) << "` |\n";
        if (m.teacher_top1 >= 0) o << "| teacher test top-1 | " << detail::fixed(100 * m.teacher_top1, 2) << "% |\n";
        o << "| teacher checkpoint | " << m.teacher_checkpoint << " |\n";
    }
    o << "\n";
    for (const auto& n : m.notes) o << n << "\n\n";
    for (const auto& s : studies) o << markdown_table(s) << "\n";
    return o.str();
}

inline void write_markdown(const std::filesystem::path& p, const std::vector<study>& studies, const run_meta& m) {
    detail::open(p) << markdown_report(studies, m);
}

/// One line per (study, row); top1_runs lists every seed's final top-1, separated by ';'.
inline void write_csv(const std::filesystem::path& p, const std::vector<study>& studies) {
    auto f = detail::open(p);
    f << "study,row,change,config,model,recipe,teacher,seeds,top1_mean,top1_std,delta_vs_first,parameters,macs,"
         "train_images_per_s,seconds_per_run,top1_runs\n";
    for (const auto& s : studies)
        for (std::size_t i = 0; i < s.rows.size(); ++i) {
            const result& r = s.rows[i];
            std::string runs;
            for (const auto& x : r.runs) runs += (runs.empty() ? "" : ";") + detail::fixed(x.top1, 6);
            f << detail::csv_field(s.id) << ',' << i + 1 << ','
              << detail::csv_field(change_label(i ? &s.rows[i - 1] : nullptr, r)) << ',' << detail::csv_field(r.name)
              << ',' << detail::csv_field(r.model) << ',' << detail::csv_field(r.recipe) << ','
              << detail::csv_field(r.teacher) << ',' << r.runs.size() << ',' << r.top1_mean() << ',' << r.top1_std()
              << ',' << delta_vs_first(s, i) << ',' << r.parameters << ',' << r.macs << ',' << r.images_per_s() << ','
              << r.seconds() << ',' << detail::csv_field(runs) << '\n';
        }
}

/// Everything: the run's facts, every row's summary and every seed's run with its curves.
inline void write_json(const std::filesystem::path& p, const std::vector<study>& studies, const run_meta& m) {
    using detail::json_string;
    auto f = detail::open(p);
    auto numbers = [&](const std::vector<double>& v) {
        f << '[';
        for (std::size_t i = 0; i < v.size(); ++i) f << (i ? ", " : "") << v[i];
        f << ']';
    };
    f << "{\n  \"meta\": {\"command\": " << json_string(m.command) << ", \"dataset\": " << json_string(m.dataset)
      << ", \"train_images\": " << m.train_images << ", \"test_images\": " << m.test_images
      << ", \"epochs\": " << m.epochs << ", \"batch\": " << m.batch << ", \"lr\": " << m.lr
      << ", \"weight_decay\": " << m.weight_decay << ", \"seeds\": " << m.seeds << ", \"threads\": " << m.threads
      << ", \"total_seconds\": " << m.total_seconds << ", \"teacher\": " << json_string(m.teacher)
      << ", \"teacher_recipe\": " << json_string(m.teacher_recipe)
      << ", \"teacher_checkpoint\": " << json_string(m.teacher_checkpoint) << ", \"teacher_top1\": ";
    if (m.teacher_top1 >= 0)
        f << m.teacher_top1;
    else
        f << "null";
    f << ", \"notes\": [";
    for (std::size_t i = 0; i < m.notes.size(); ++i) f << (i ? ", " : "") << json_string(m.notes[i]);
    f << "]},\n  \"studies\": [\n";
    for (std::size_t si = 0; si < studies.size(); ++si) {
        const study& s = studies[si];
        f << "    {\"id\": " << json_string(s.id) << ", \"title\": " << json_string(s.title)
          << ", \"note\": " << json_string(s.note) << ", \"rows\": [\n";
        for (std::size_t i = 0; i < s.rows.size(); ++i) {
            const result& r = s.rows[i];
            f << "      {\"row\": " << i + 1
              << ", \"change\": " << json_string(change_label(i ? &s.rows[i - 1] : nullptr, r))
              << ", \"config\": " << json_string(r.name) << ", \"model\": " << json_string(r.model)
              << ", \"recipe\": " << json_string(r.recipe) << ", \"teacher\": " << json_string(r.teacher)
              << ", \"parameters\": " << r.parameters << ", \"macs\": " << r.macs
              << ", \"top1_mean\": " << r.top1_mean() << ", \"top1_std\": " << r.top1_std()
              << ", \"delta_vs_first\": " << delta_vs_first(s, i) << ", \"train_images_per_s\": " << r.images_per_s()
              << ", \"seconds_per_run\": " << r.seconds() << ", \"top1_curve_mean\": ";
            numbers(r.curve_mean());
            f << ", \"top1_curve_std\": ";
            numbers(r.curve_std());
            f << ",\n       \"runs\": [";
            for (std::size_t k = 0; k < r.runs.size(); ++k) {
                const seed_run& x = r.runs[k];
                f << (k ? ",\n                " : "") << "{\"seed\": " << x.seed << ", \"top1\": " << x.top1
                  << ", \"train_images_per_s\": " << x.images_per_s << ", \"seconds\": " << x.seconds
                  << ", \"top1_curve\": ";
                numbers(x.top1_curve);
                f << ", \"train_loss_curve\": ";
                numbers(x.train_loss_curve);
                f << '}';
            }
            f << "]}" << (i + 1 < s.rows.size() ? "," : "") << "\n";
        }
        f << "    ]}" << (si + 1 < studies.size() ? "," : "") << "\n";
    }
    f << "  ]\n}\n";
}

}  // namespace tricks::ablation
