#pragma once
// backend::cpu — the default backend: Eigen GEMM + OpenMP over the cores.
// The backend is a tag type; layers call its static functions. backend::cuda has the same contract.
#include "tricks/backend/cpu/batch_norm.hpp"
#include "tricks/backend/cpu/conv.hpp"
#include "tricks/backend/cpu/elementwise.hpp"
#include "tricks/backend/cpu/linear.hpp"
#include "tricks/backend/cpu/loss.hpp"
#include "tricks/backend/cpu/pool.hpp"
#include "tricks/backend/cpu/workspace.hpp"

namespace tricks::backend {

struct cpu {
    static constexpr const char* name = "cpu";
};

}  // namespace tricks::backend
