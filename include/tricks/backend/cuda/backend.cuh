#pragma once
// backend::cuda — cuDNN (convolution, batch norm, pooling), cuBLAS (classifier) and a few small
// kernels (element-wise, pooling variants cuDNN lacks, loss, fused optimizer, overflow check).
// Header-only: compile the including translation unit with nvcc and link tricks::cuda.
//
// Contract (docs/design.md, "The CUDA path"): each function in tricks::backend::gpu has the name,
// geometry, argument order and semantics of its backend/cpu counterpart, with
//   - device pointers, element type T in {float, __half} for activations/weights/gradients
//     (BN parameters and statistics, master weights, momentum, soft targets: float);
//   - a gpu::context& as the last argument where the CPU kernel takes workspace& or nothing;
//   - convolution filters in KRSC ([cout][kh][kw][cin], cuDNN's NHWC filter layout) instead of
//     the CPU's HWIO (layout.cuh converts);
//   - max_pool_backward(g, x, y, dy, dx, ctx) instead of the CPU's argmax form.
// Work is queued on the context's stream; only functions that return a host value synchronise.
//
// The functions live in namespace `gpu` (not `cuda`, which is the tag type below).
#include "tricks/backend/cuda/batch_norm.cuh"
#include "tricks/backend/cuda/common.cuh"
#include "tricks/backend/cuda/context.cuh"
#include "tricks/backend/cuda/conv.cuh"
#include "tricks/backend/cuda/elementwise.cuh"
#include "tricks/backend/cuda/error.cuh"
#include "tricks/backend/cuda/layout.cuh"
#include "tricks/backend/cuda/linear.cuh"
#include "tricks/backend/cuda/loss.cuh"
#include "tricks/backend/cuda/optim.cuh"
#include "tricks/backend/cuda/pool.cuh"
#include "tricks/backend/cuda/raii.cuh"

namespace tricks::backend {

struct cuda {
    static constexpr const char* name = "cuda";
    using context = gpu::context;
    using options = gpu::context_options;
    /// Whether a CUDA device is usable from this process (never throws).
    static bool available() noexcept { return gpu::device_count() > 0; }
};

}  // namespace tricks::backend
