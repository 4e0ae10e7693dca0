#pragma once
// Scratch memory for CPU kernels. A workspace is a list of slots (one per thread, or per partial sum,
// as the kernel numbers them) that grow on the first call with a given shape and are reused
// afterwards, so a training step allocates nothing once warmed up. The kernels take a workspace&;
// the layers do not own one: they pass thread_scratch() below, the calling thread's workspace, which
// every layer that thread runs shares (docs/design.md, "The CPU path").
#include <omp.h>

#include <cstddef>
#include <vector>

#include "tricks/core/tensor.hpp"

namespace tricks::backend::host {

class workspace {
public:
    /// Slot `i` holds at least n floats (contents unspecified). Slots are per thread or per task.
    float* get(std::size_t slot, std::size_t n) {
        if (slots_.size() <= slot) slots_.resize(slot + 1);
        auto& t = slots_[slot];
        if (t.size() < n) t.resize(shape4{1, 1, 1, static_cast<int>(n)});
        return t.data();
    }
    /// Slots are grown outside parallel regions: reserve before entering one.
    void reserve(std::size_t slots, std::size_t n) {
        for (std::size_t s = 0; s < slots; ++s) get(s, n);
    }
    [[nodiscard]] std::size_t bytes() const noexcept {
        std::size_t b = 0;
        for (auto& t : slots_) b += t.size() * sizeof(float);
        return b;
    }

private:
    std::vector<tensor<float>> slots_;
};

inline int max_threads() noexcept { return omp_get_max_threads(); }

/// The calling thread's scratch for kernels whose workspace holds nothing from one call to the next
/// (the convolutions': padded images, im2col tiles, Winograd blocks, partial sums). The layers a
/// thread runs share it, so it grows to the largest layer's need instead of every layer keeping its
/// own (per-layer workspaces cost much more peak memory: docs/design.md, "Measurements"). Threads
/// that run networks side by side (models::inference_pool's copies) each have their own.
inline workspace& thread_scratch() {
    thread_local workspace ws;
    return ws;
}

/// Below this many elements (or ~8x this many MACs) a kernel runs on the calling thread: waking
/// a thread team costs more than the work, and much more when the cores are oversubscribed.
/// Only who runs a tile changes, never the tiles, so results are the same either way.
inline constexpr std::size_t parallel_grain = std::size_t{1} << 15;

/// The product of counts as a size (pixels x channels, rows x in x out), for the thresholds above:
/// one call in an OpenMP `if` clause instead of casts (which clang-format spaces apart there).
template <class... Counts>
constexpr std::size_t work_size(Counts... n) noexcept {
    return (std::size_t{1} * ... * static_cast<std::size_t>(n));
}

}  // namespace tricks::backend::host
