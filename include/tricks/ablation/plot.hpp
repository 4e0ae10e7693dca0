#pragma once
// Plots of a study, drawn by gnuplot (Debian package gnuplot-nox): learning curves (test top-1
// per epoch, one line per configuration) and a bar chart of each row's delta against the first.
// The data (.dat) and the scripts (.gp) are always written, so a machine without gnuplot can
// still render them later with `gnuplot <study>_curves.gp`; each script writes an SVG and a PNG.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tricks/ablation/report.hpp"
#include "tricks/ablation/result.hpp"

namespace tricks::ablation {

struct plot_files {
    std::vector<std::filesystem::path> data, scripts, images;
};

namespace detail {

/// A string inside a gnuplot double-quoted literal.
inline std::string gp_string(const std::string& s) {
    std::string o = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        o += c;
    }
    return o + "\"";
}

/// A path for sh, single-quoted.
inline std::string sh_quote(const std::string& s) {
    std::string o = "'";
    for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return o + "'";
}

/// Sets an SVG terminal for <stem>.svg, draws, then the same plot again as PNG (cairo when
/// this gnuplot has it, else libgd's png).
inline std::string gp_outputs(const std::string& stem, const std::string& plot) {
    return "set terminal svg size 960,600 dynamic noenhanced font 'sans,12' background rgb 'white'\n"
           "set output " +
           gp_string(stem + ".svg") + "\n" + plot +
           "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
           "    set terminal pngcairo size 960,600 noenhanced font 'sans,11' background rgb 'white'\n"
           "} else {\n"
           "    set terminal png size 960,600 noenhanced\n"
           "}\n"
           "set output " +
           gp_string(stem + ".png") + "\n" + plot + "set output\n";
}

}  // namespace detail

/// Writes <dir>/<id>_curves.{dat,gp} and <dir>/<id>_deltas.{dat,gp}; returns the files, with the
/// images the scripts will produce.
inline plot_files write_plots(const std::filesystem::path& dir, const study& s) {
    using detail::gp_string;
    plot_files out;
    std::size_t seeds = 1, epochs = 0;
    for (const auto& r : s.rows) {
        seeds = std::max(seeds, r.runs.size());
        epochs = std::max(epochs, r.curve_mean().size());
    }
    std::vector<std::string> labels;
    for (std::size_t i = 0; i < s.rows.size(); ++i)
        labels.push_back(std::to_string(i + 1) + ": " + change_label(i ? &s.rows[i - 1] : nullptr, s.rows[i]));

    // ---- learning curves: one data block per row (gnuplot's `index i`) ----
    const std::string curves = s.id + "_curves";
    {
        auto f = detail::open(dir / (curves + ".dat"));
        f << "# " << s.title << ": test top-1 (%) after each epoch, mean and sample std over seeds\n"
          << "# one block per configuration (gnuplot: index i), columns: epoch top1_mean top1_std\n";
        for (std::size_t i = 0; i < s.rows.size(); ++i) {
            const auto m = s.rows[i].curve_mean(), sd = s.rows[i].curve_std();
            f << (i ? "\n\n" : "") << "# " << labels[i] << " | " << s.rows[i].name << "\n";
            for (std::size_t e = 0; e < m.size(); ++e) f << e + 1 << ' ' << 100 * m[e] << ' ' << 100 * sd[e] << '\n';
            if (m.empty()) f << "# (no epochs)\n";
        }
    }
    {
        std::string plot = "plot ";
        for (std::size_t i = 0; i < s.rows.size(); ++i)
            plot += std::string(i ? ", \\\n     " : "") + gp_string(curves + ".dat") + " index " + std::to_string(i) +
                    (seeds > 1 ? " using 1:2:3 with yerrorlines" : " using 1:2 with linespoints") +
                    " lw 2 pt 7 title " + gp_string(labels[i]);
        plot += "\n";
        auto f = detail::open(dir / (curves + ".gp"));
        f << "# " << s.title << ": learning curves. Run from this folder: gnuplot " << curves << ".gp\n"
          << "set encoding utf8\nset title " << gp_string(s.title + ": test top-1 per epoch") << "\n"
          << "set xlabel 'epoch'\nset ylabel 'test top-1 (%)" << (seeds > 1 ? ", mean ± std over seeds" : "") << "'\n"
          << "set key below\nset bmargin 7\nset grid\nset xtics 1\nset xrange [0.5:" << epochs + 0.5 << "]\n"
          << detail::gp_outputs(curves, plot);
    }

    // ---- deltas: one bar per row ----
    const std::string deltas = s.id + "_deltas";
    {
        auto f = detail::open(dir / (deltas + ".dat"));
        f << "# " << s.title << ": change of final test top-1 against row 1, percentage points\n"
          << "# columns: row label delta_pp top1_std_pp top1_mean_pct\n";
        for (std::size_t i = 0; i < s.rows.size(); ++i)
            f << i + 1 << ' ' << gp_string(labels[i]) << ' ' << 100 * delta_vs_first(s, i) << ' '
              << 100 * s.rows[i].top1_std() << ' ' << 100 * s.rows[i].top1_mean() << '\n';
    }
    {
        const std::string dat = gp_string(deltas + ".dat");
        const std::string plot =
            "plot " + dat + (seeds > 1 ? " using 1:3:4:xtic(2) with boxerrorbars" : " using 1:3:xtic(2) with boxes") +
            " lc rgb '#4477aa' notitle, \\\n     " + dat +
            " using 1:3:(sprintf('%+.2f', $3)) with labels offset 0,char 0.8 notitle\n";
        auto f = detail::open(dir / (deltas + ".gp"));
        f << "# " << s.title << ": deltas against row 1. Run from this folder: gnuplot " << deltas << ".gp\n"
          << "set encoding utf8\nset title " << gp_string(s.title + ": Δ test top-1 against row 1") << "\n"
          << "set ylabel 'Δ top-1 (percentage points)'\nset style fill solid 0.7 border -1\nset boxwidth 0.6\n"
          << "set xtics rotate by 25 right\nset grid ytics\nset xzeroaxis lt -1\nset lmargin 14\nset bmargin 7\n"
          << "set xrange [0.4:" << s.rows.size() + 0.6 << "]\nset offsets 0, 0, graph 0.12, graph 0.12\n"
          << detail::gp_outputs(deltas, plot);
    }
    for (const auto& stem : {curves, deltas}) {
        out.data.push_back(dir / (stem + ".dat"));
        out.scripts.push_back(dir / (stem + ".gp"));
        out.images.push_back(dir / (stem + ".svg"));
        out.images.push_back(dir / (stem + ".png"));
    }
    return out;
}

/// Whether `program` can be run (`command -v`), e.g. "gnuplot".
inline bool program_available(const std::string& program) {
    if (program.empty()) return false;
    const std::string cmd = "command -v " + detail::sh_quote(program) + " >/dev/null 2>&1";
    return std::system(cmd.c_str()) == 0;
}

/// Runs `program script` inside the script's folder (the scripts name their files relative to
/// it); returns true when it exited with 0.
inline bool render(const std::filesystem::path& script, const std::string& program = "gnuplot") {
    const std::filesystem::path dir = script.has_parent_path() ? script.parent_path() : std::filesystem::path(".");
    const std::string cmd = "cd " + detail::sh_quote(dir.string()) + " && " + detail::sh_quote(program) + " " +
                            detail::sh_quote(script.filename().string()) + " 2>&1";
    return std::system(cmd.c_str()) == 0;
}

}  // namespace tricks::ablation
