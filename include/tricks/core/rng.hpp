#pragma once
// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A draw is a pure function of
// (seed, stream, counter), so a result never depends on how work is split over threads: each
// consumer (weight init of layer i, augmentation of image j in epoch e, mixup of step t) owns a
// stream id and indexes draws by position, instead of sharing one sequential generator.
#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace tricks {

namespace detail {
constexpr void philox_round(std::array<std::uint32_t, 4>& c, std::array<std::uint32_t, 2> k) noexcept {
    constexpr std::uint64_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    const std::uint64_t p0 = m0 * c[0], p1 = m1 * c[2];
    c = {static_cast<std::uint32_t>(p1 >> 32) ^ c[1] ^ k[0], static_cast<std::uint32_t>(p1),
         static_cast<std::uint32_t>(p0 >> 32) ^ c[3] ^ k[1], static_cast<std::uint32_t>(p0)};
}
}  // namespace detail

/// Philox4x32-10: 128-bit counter, 64-bit key -> four 32-bit random words.
constexpr std::array<std::uint32_t, 4> philox(std::uint64_t key, std::uint64_t ctr_hi, std::uint64_t ctr_lo) noexcept {
    std::array<std::uint32_t, 4> c{static_cast<std::uint32_t>(ctr_lo), static_cast<std::uint32_t>(ctr_lo >> 32),
                                   static_cast<std::uint32_t>(ctr_hi), static_cast<std::uint32_t>(ctr_hi >> 32)};
    std::array<std::uint32_t, 2> k{static_cast<std::uint32_t>(key), static_cast<std::uint32_t>(key >> 32)};
    for (int r = 0; r < 10; ++r) {
        detail::philox_round(c, k);
        k[0] += 0x9E3779B9u;
        k[1] += 0xBB67AE85u;
    }
    return c;
}

/// A sequential view over one Philox stream: (seed, stream) fixed, the counter advances.
/// Its whole state is three integers, so checkpoints save and restore it exactly.
class rng {
public:
    constexpr rng() = default;
    constexpr rng(std::uint64_t seed, std::uint64_t stream, std::uint64_t counter = 0) noexcept
        : seed_(seed), stream_(stream), counter_(counter) {}

    /// An independent stream derived from this one's seed (e.g. one per layer or per epoch).
    [[nodiscard]] constexpr rng fork(std::uint64_t sub) const noexcept {
        const auto w = philox(seed_, stream_ ^ 0xA5A5A5A5A5A5A5A5ull, sub);
        return rng(seed_, (static_cast<std::uint64_t>(w[0]) << 32) | w[1], 0);
    }

    constexpr std::uint32_t next_u32() noexcept {
        if (have_ == 0) {
            block_ = philox(seed_, stream_, counter_++);
            have_ = 4;
        }
        return block_[4 - have_--];
    }
    constexpr std::uint64_t next_u64() noexcept {
        const std::uint64_t hi = next_u32();
        return (hi << 32) | next_u32();
    }
    /// Uniform in [0, 1) with 24 random bits (exactly representable floats).
    constexpr float uniform() noexcept { return static_cast<float>(next_u32() >> 8) * 0x1.0p-24f; }
    /// Uniform in [0, 1) with 53 random bits.
    constexpr double uniform_double() noexcept { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    /// Uniform integer in [0, n) without modulo bias (Lemire's method with rejection).
    constexpr std::uint32_t below(std::uint32_t n) noexcept {
        std::uint64_t m = static_cast<std::uint64_t>(next_u32()) * n;
        auto low = static_cast<std::uint32_t>(m);
        if (low < n) {
            const std::uint32_t t = (0u - n) % n;
            while (low < t) {
                m = static_cast<std::uint64_t>(next_u32()) * n;
                low = static_cast<std::uint32_t>(m);
            }
        }
        return static_cast<std::uint32_t>(m >> 32);
    }
    /// Standard normal (Box-Muller on 53-bit uniforms).
    double normal() noexcept {
        const double u1 = 1.0 - uniform_double();  // (0, 1]
        const double u2 = uniform_double();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    }
    /// Gamma(shape, 1) by Marsaglia & Tsang (2000); shape < 1 via the boost u^(1/shape).
    double gamma(double shape) noexcept {
        if (shape < 1.0) {
            const double u = 1.0 - uniform_double();
            return gamma(shape + 1.0) * std::pow(u, 1.0 / shape);
        }
        const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
        for (;;) {
            double x = normal(), v = 1.0 + c * x;
            if (v <= 0) continue;
            v = v * v * v;
            const double u = 1.0 - uniform_double();
            if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
        }
    }
    /// Beta(a, b) = X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).
    double beta(double a, double b) noexcept {
        const double x = gamma(a), y = gamma(b);
        return x / (x + y);
    }

    struct state {
        std::uint64_t seed, stream, counter;
        std::uint32_t have;
    };
    /// Exact position (the partially used block is recomputed from the counter on restore).
    [[nodiscard]] constexpr state save() const noexcept { return {seed_, stream_, counter_, have_}; }
    constexpr void restore(state s) noexcept {
        seed_ = s.seed;
        stream_ = s.stream;
        counter_ = s.counter;
        have_ = s.have;
        if (have_ != 0) block_ = philox(seed_, stream_, counter_ - 1);
    }

private:
    std::uint64_t seed_ = 0, stream_ = 0, counter_ = 0;
    std::array<std::uint32_t, 4> block_{};
    std::uint32_t have_ = 0;
};

}  // namespace tricks
