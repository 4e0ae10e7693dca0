#pragma once
// backend::cpu — the default backend: our register-blocked kernels, Winograd and packed GEMMs, OpenMP
// over the cores. The tag type only names the backend (trainer<Model, Recipe, backend::cpu>); it has no
// member functions. The kernels are free functions in namespace tricks::backend::host (the headers
// below), and the tricks::nn layers call them directly. backend::cuda's kernels (namespace backend::gpu) have
// the same names, geometry and argument order, and are called by the layers' device twins
// (backend/cuda/model.cuh). See docs/design.md, "The CPU path".
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
