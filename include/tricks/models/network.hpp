#pragma once
// network<Body>: what every model type derives from. Adds the model-level API on top of a
// sequential body: seeded initialisation, names, a structural fingerprint, and parameter access.
#include <cstdint>
#include <string>
#include <vector>

#include "tricks/core/rng.hpp"
#include "tricks/nn/sequential.hpp"

namespace tricks::models {

/// FNV-1a, 64 bit: a stable hash of a model's structure (checkpoint fingerprints).
constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
    std::uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char ch : s) {
        h ^= ch;
        h *= 0x100000001b3ull;
    }
    return h;
}

template <class Body, int InChannels, int Classes, bool ZeroGamma>
struct network : Body {
    using body_type = Body;
    static constexpr int classes = Classes;
    static constexpr int input_channels = InChannels;
    static constexpr bool zero_gamma = ZeroGamma;

    /// Initialises every parameter from `seed` (Kaiming normal convs, BN gamma 1 / beta 0, zero
    /// gamma for the last BN of each branch when the model asks for it).
    void init(std::uint64_t seed) {
        rng r(seed, /*stream: model init*/ 0x1417);
        Body::init(r, nn::init_options{ZeroGamma});
    }
    using Body::init;

    /// The body's structure as a string; two model types with equal structure are interchangeable.
    static std::string structure() { return Body::describe(); }
    static std::uint64_t fingerprint() { return fnv1a(structure()); }

    std::vector<nn::parameter*> parameters() {
        std::vector<nn::parameter*> ps;
        this->for_each_parameter([&](nn::parameter& p) { ps.push_back(&p); });
        return ps;
    }
    std::vector<tensor<float>*> buffers() {
        std::vector<tensor<float>*> bs;
        this->for_each_buffer([&](tensor<float>& b) { bs.push_back(&b); });
        return bs;
    }
};

}  // namespace tricks::models
