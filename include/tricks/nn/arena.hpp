#pragma once
// activation_arena: buffers that the layers of a forward (evaluation) or a backward pass lend to
// each other. Layers own their outputs so that the backward pass can read them; a forward that no
// backward follows (inference) needs an output only until the next layer has read it, and a
// backward pass needs each input gradient only until the layer before has read it. With
// nn::context::arena set, the composites (sequential, repeat, residual) hand such an inner buffer
// back to the arena once its last reader has run, and a layer takes its output (evaluation) or its
// input gradient from the arena when its own buffer is too small. The arena then holds about the
// most buffers alive at one time (a residual block's input, shortcut and branch) instead of one per
// layer; the values are the same bits (only where they are stored changes). The sequence of sizes
// is the same on every pass of a model; the model's own output keeps the buffer it took, so the
// first passes may add or grow a buffer, and then the arena allocates nothing (tested: settled by
// the third forward, the fifth training step).
#include <cstddef>
#include <vector>

#include "tricks/core/tensor.hpp"

namespace tricks::nn {

class activation_arena {
public:
    /// Gives `t` the shape s (contents stale, as tensor::resize). When t's own buffer is too small it
    /// swaps it for the smallest free buffer that fits or, when none fits, for the largest, which
    /// then grows: the count grows only when none is free (or t brings a too-small buffer of its own).
    void take(tensor<float>& t, shape4 s) {
        const std::size_t need = s.size();
        if (t.capacity() < need && !free_.empty()) {
            std::size_t fit = free_.size(), largest = 0;
            for (std::size_t i = 0; i < free_.size(); ++i) {
                const std::size_t c = free_[i].capacity();
                if (c >= need && (fit == free_.size() || c < free_[fit].capacity())) fit = i;
                if (c > free_[largest].capacity()) largest = i;
            }
            const std::size_t pick = fit < free_.size() ? fit : largest;
            std::swap(t, free_[pick]);
            if (free_[pick].capacity() == 0) {  // t had no buffer of its own
                std::swap(free_[pick], free_.back());
                free_.pop_back();
            }
        }
        t.resize(s);
    }

    /// Takes t's buffer back (t is left empty): the forward has read t for the last time.
    void give(tensor<float>& t) {
        if (t.capacity() > 0) free_.push_back(std::move(t));
        t = tensor<float>();
    }

    /// Free buffers and the floats they hold (tests, memory reports).
    [[nodiscard]] std::size_t buffers() const noexcept { return free_.size(); }
    [[nodiscard]] std::size_t floats() const noexcept {
        std::size_t n = 0;
        for (const auto& b : free_) n += b.capacity();
        return n;
    }
    /// Frees every buffer the arena holds.
    void clear() noexcept { free_.clear(); }

private:
    std::vector<tensor<float>> free_;
};

}  // namespace tricks::nn
