// Core: Philox against the Random123 known-answer vectors, rng streams, tensor, shapes.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <set>
#include <tricks/core/rng.hpp>
#include <tricks/core/shape.hpp>
#include <tricks/core/tensor.hpp>
#include <tricks/nn/arena.hpp>
#include <vector>

using tricks::philox;
using tricks::rng;

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors") {
    // Salmon et al. (SC'11), Random123 kat_vectors: counter words c0..c3, key words k0,k1.
    CHECK(philox(0, 0, 0) == std::array<std::uint32_t, 4>{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    CHECK(philox(~0ull, ~0ull, ~0ull) == std::array<std::uint32_t, 4>{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    CHECK(philox(0x299f31d0a4093822ull, 0x0370734413198a2eull, 0x85a308d3243f6a88ull) ==
          std::array<std::uint32_t, 4>{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("rng: a stream is a pure function of (seed, stream, counter)") {
    rng a(42, 7), b(42, 7), c(43, 7), d(42, 8);
    std::vector<std::uint32_t> va, vb, vc, vd;
    for (int i = 0; i < 64; ++i) {
        va.push_back(a.next_u32());
        vb.push_back(b.next_u32());
        vc.push_back(c.next_u32());
        vd.push_back(d.next_u32());
    }
    CHECK(va == vb);
    CHECK(va != vc);
    CHECK(va != vd);
    // Jumping to a counter gives the same words as drawing up to it.
    rng j(42, 7, 3);
    const auto w = philox(42, 7, 3);
    CHECK(j.next_u32() == w[0]);
    CHECK(va[12] == w[0]);
}

TEST_CASE("rng: save/restore resumes mid-block exactly") {
    rng a(1, 2);
    for (int i = 0; i < 5; ++i) a.next_u32();  // leaves 3 words of the second block
    const auto s = a.save();
    std::vector<std::uint32_t> rest;
    for (int i = 0; i < 10; ++i) rest.push_back(a.next_u32());
    rng b;
    b.restore(s);
    for (int i = 0; i < 10; ++i) CHECK(b.next_u32() == rest[i]);
}

TEST_CASE("rng: forks are independent and reproducible") {
    const rng base(9, 0);
    CHECK(base.fork(1).next_u64() == base.fork(1).next_u64());
    CHECK(base.fork(1).next_u64() != base.fork(2).next_u64());
}

TEST_CASE("rng: below() is in range and unbiased; uniform() in [0,1)") {
    rng r(5, 5);
    std::array<int, 6> counts{};
    const int n = 60000;
    for (int i = 0; i < n; ++i) {
        const auto v = r.below(6);
        REQUIRE(v < 6);
        ++counts[v];
    }
    for (int c : counts) CHECK(std::abs(c - n / 6) < 5 * std::sqrt(n / 6.0));  // 5 sigma
    double sum = 0;
    for (int i = 0; i < n; ++i) {
        const float u = r.uniform();
        REQUIRE(u >= 0.f);
        REQUIRE(u < 1.f);
        sum += u;
    }
    CHECK(std::abs(sum / n - 0.5) < 5 * std::sqrt(1.0 / 12 / n));
}

TEST_CASE("rng: normal() has mean 0 and variance 1") {
    rng r(11, 3);
    const int n = 100000;
    double s = 0, s2 = 0;
    for (int i = 0; i < n; ++i) {
        const double x = r.normal();
        s += x;
        s2 += x * x;
    }
    CHECK(std::abs(s / n) < 0.02);
    CHECK(std::abs(s2 / n - 1) < 0.02);
}

TEST_CASE("tensor: resize within capacity keeps the allocation; copies are deep") {
    tricks::tensor<float> t({2, 3, 4, 5});
    CHECK(t.size() == 120);
    const float* p = t.data();
    CHECK(reinterpret_cast<std::uintptr_t>(p) % 64 == 0);
    t.resize({1, 3, 4, 5});
    CHECK(t.data() == p);
    t.resize({2, 3, 4, 5});
    CHECK(t.data() == p);
    t.fill(2.f);
    tricks::tensor<float> u = t;
    u[0] = 5.f;
    CHECK(t[0] == 2.f);
    CHECK(t.index(1, 2, 3, 4) == 119);
    CHECK_THROWS_AS(t.resize({-1, 1, 1, 1}), tricks::shape_error);
}

TEST_CASE("tensor: a moved-from tensor is empty and allocates again on resize") {
    tricks::tensor<float> a({2, 2, 2, 2}, 1.f);
    tricks::tensor<float> b = std::move(a);
    CHECK(b.size() == 16);
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the state after a move is the contract
    CHECK(a.capacity() == 0);
    a.resize({1, 1, 1, 4});  // would write through a null buffer if the capacity had moved with it
    a.fill(3.f);
    CHECK(a[3] == 3.f);
    tricks::tensor<float> c;
    c = std::move(b);
    CHECK(b.capacity() == 0);  // NOLINT(bugprone-use-after-move)
    CHECK(c[15] == 1.f);
}

TEST_CASE("activation_arena: lends the smallest free buffer that fits, else grows the largest") {
    tricks::nn::activation_arena arena;
    tricks::tensor<float> a({1, 1, 1, 100}), b({1, 1, 1, 40}), c({1, 1, 1, 70});
    const float *pa = a.data(), *pb = b.data(), *pc = c.data();
    arena.give(a);
    arena.give(b);
    arena.give(c);
    CHECK(a.empty());
    CHECK(a.capacity() == 0);
    CHECK(arena.buffers() == 3);
    CHECK(arena.floats() == 210);
    tricks::tensor<float> t;
    arena.take(t, {1, 1, 1, 50});  // 70 is the smallest that fits (not 100)
    CHECK(t.data() == pc);
    CHECK(t.size() == 50);
    CHECK(arena.buffers() == 2);
    tricks::tensor<float> u({1, 1, 1, 10});  // has a buffer too small: swapped into the arena
    const float* pu = u.data();
    arena.take(u, {1, 1, 1, 90});
    CHECK(u.data() == pa);
    CHECK(arena.buffers() == 2);  // 40 and u's old 10
    CHECK(arena.floats() == 50);
    tricks::tensor<float> v;
    arena.take(v, {1, 1, 1, 60});  // none fits: the largest (40) is taken and grown
    CHECK(v.capacity() >= 60);
    CHECK(v.data() != pb);
    CHECK(arena.buffers() == 1);
    tricks::tensor<float> w({1, 1, 1, 8});
    arena.take(w, {1, 1, 1, 8});  // its own buffer fits: the arena is not touched
    CHECK(arena.buffers() == 1);
    arena.take(w, {1, 1, 1, 9});  // the last free buffer (u's old 10) fits
    CHECK(w.data() == pu);
    arena.clear();
    CHECK(arena.buffers() == 0);
}

TEST_CASE("window_out: floor and ceil modes") {
    using tricks::window_out;
    CHECK(window_out(28, 3, 1, 1) == 28);
    CHECK(window_out(28, 3, 2, 1) == 14);
    CHECK(window_out(7, 3, 2, 1) == 4);
    CHECK(window_out(7, 2, 2, 0) == 3);
    CHECK(window_out(7, 2, 2, 0, true) == 4);  // ResNet-D's avg pool keeps the last column
    CHECK(window_out(8, 2, 2, 0, true) == 4);
    CHECK(window_out(224, 7, 2, 3) == 112);
    CHECK(window_out(2, 3, 1, 0) == 0);
}
