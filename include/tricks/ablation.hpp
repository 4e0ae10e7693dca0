#pragma once
// tricks/ablation.hpp — ablation matrices: lists and grids of typed configurations, their runner,
// and what writes their results (Markdown/CSV/JSON tables, gnuplot plots). Separate from
// tricks/tricks.hpp (the training library), which does not pull this in, nor Boost.Hana.
#include "tricks/ablation/config.hpp"
#include "tricks/ablation/grid.hpp"
#include "tricks/ablation/plot.hpp"
#include "tricks/ablation/report.hpp"
#include "tricks/ablation/result.hpp"
#include "tricks/ablation/rows.hpp"
#include "tricks/ablation/runner.hpp"
#include "tricks/tricks.hpp"
