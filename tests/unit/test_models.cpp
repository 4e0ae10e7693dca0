// Model types at run time: forward shapes, parameter roles, zero-gamma init (and its meaning: a
// residual block starts as the identity), the structural differences of ResNet-A/B/C/D,
// determinism, an end-to-end finite-difference gradient check, and evaluation mode.
// Compile-time facts (parameter counts, MACs) are in tests/static/models_static.cpp.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tricks/models/cifar_resnet.hpp"
#include "tricks/models/inference.hpp"
#include "tricks/models/introspection.hpp"
#include "tricks/models/resnet.hpp"

namespace {

namespace m = tricks::models;
namespace nn = tricks::nn;
namespace tw = tricks::tweak;
using tricks::classes;
using tricks::in_channels;
using tricks::rng;
using tricks::shape4;
using tricks::tensor;
using tricks::width;

using r18_small = m::resnet<18, in_channels<1>, classes<10>>;
using r50d_small = m::resnet<50, tw::stride_on_3x3, tw::deep_stem, tw::avg_down, in_channels<1>, classes<10>>;
using cifar20 = m::cifar_resnet<20, in_channels<1>, classes<10>>;
using cifar20d = m::cifar_resnet<20, in_channels<1>, classes<10>, tw::stride_on_3x3, tw::deep_stem, tw::avg_down>;
using cifar20_zg = m::cifar_resnet<20, in_channels<1>, classes<10>, tricks::init::zero_gamma>;
// The smallest net with every ResNet-D part: deep stem (2, 2, 4 channels), one block per stage,
// avg-pool shortcuts. Used where a test runs many forward passes.
using tiny_d = m::cifar_resnet<8, width<4>, in_channels<1>, classes<3>, tw::avg_down, tw::deep_stem>;

/// Standard-normal values from a fixed stream: tests do not depend on <random>'s implementation.
tensor<float> random_tensor(shape4 s, std::uint64_t seed) {
    tensor<float> t(s);
    rng r(seed, /*stream*/ 99);
    for (auto& v : t.span()) v = static_cast<float>(r.normal());
    return t;
}

bool all_finite(const tensor<float>& t) {
    return std::all_of(t.span().begin(), t.span().end(), [](float v) { return std::isfinite(v); });
}

bool same_bits(const tensor<float>& a, const tensor<float>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

template <class Net>
std::int64_t runtime_parameter_count(Net& net) {
    std::int64_t n = 0;
    net.for_each_parameter([&](nn::parameter& p) {
        CHECK(p.grad.size() == p.value.size());
        n += static_cast<std::int64_t>(p.value.size());
    });
    return n;
}

/// All parameter values of a model, concatenated in visiting order.
template <class Net>
std::vector<float> flat_values(Net& net) {
    std::vector<float> v;
    net.for_each_parameter([&](nn::parameter& p) { v.insert(v.end(), p.value.span().begin(), p.value.span().end()); });
    return v;
}

/// The body (a sequential) of a model type: network<Body, ...> derives from it.
template <class Body, int I, int C, bool Z>
Body& body_of(m::network<Body, I, C, Z>& net) {
    return net;
}

// ---- a walker over the composition types, to find "the last BN of each residual branch" --------
template <class T>
struct is_sequential : std::false_type {};
template <class... Ls>
struct is_sequential<nn::sequential<Ls...>> : std::true_type {};
template <class T>
struct is_repeat : std::false_type {};
template <class L, int N>
struct is_repeat<nn::repeat<L, N>> : std::true_type {};
template <class T>
struct is_residual : std::false_type {};
template <class B, class S>
struct is_residual<nn::residual<B, S>> : std::true_type {};
template <class T>
struct is_bn : std::false_type {};
template <int C>
struct is_bn<nn::batch_norm<C>> : std::true_type {};

/// Calls f(bn, ends_a_residual_branch) for every batch_norm, in parameter-visiting order.
template <class L, class F>
void visit_bn(L& l, bool last_of_branch, F& f) {
    if constexpr (is_bn<L>::value) {
        f(l, last_of_branch);
    } else if constexpr (is_sequential<L>::value) {
        std::apply([&](auto&... x) { (visit_bn(x, false, f), ...); }, l.layers);
    } else if constexpr (is_repeat<L>::value) {
        for (auto& x : l.items) visit_bn(x, false, f);
    } else if constexpr (is_residual<L>::value) {
        constexpr std::size_t n = std::remove_cvref_t<decltype(l.branch)>::size;
        std::size_t i = 0;
        std::apply([&](auto&... x) { (visit_bn(x, ++i == n, f), ...); }, l.branch.layers);
        visit_bn(l.shortcut, false, f);
    }
}

struct gamma_census {
    int last_bns = 0, other_bns = 0;   // batch norms found
    int last_zero = 0, other_one = 0;  // of which initialised as expected by zero_gamma
    int last_one = 0;                  // last BNs with gamma 1 (expected without zero_gamma)
    int beta_zero = 0;                 // BNs with beta 0
};

/// What zero_gamma must have done, counted over the BNs of any composition.
template <class L>
gamma_census census_of(L& layer) {
    gamma_census c;
    auto f = [&](auto& bn, bool last) {
        const auto g = bn.gamma.value.span();
        const auto b = bn.beta.value.span();
        const bool zeros = std::all_of(g.begin(), g.end(), [](float v) { return v == 0.f; });
        const bool ones = std::all_of(g.begin(), g.end(), [](float v) { return v == 1.f; });
        c.beta_zero += std::all_of(b.begin(), b.end(), [](float v) { return v == 0.f; });
        if (last) {
            ++c.last_bns;
            c.last_zero += zeros;
            c.last_one += ones;
        } else {
            ++c.other_bns;
            c.other_one += ones;
        }
    };
    visit_bn(layer, false, f);
    return c;
}

template <class Net>
gamma_census census(Net& net) {
    return census_of(body_of(net));
}

template <class Net>
int count_role(Net& net, nn::role r, std::int64_t* elements = nullptr) {
    int tensors = 0;
    std::int64_t n = 0;
    net.for_each_parameter([&](nn::parameter& p) {
        if (p.kind != r) return;
        ++tensors;
        n += static_cast<std::int64_t>(p.value.size());
    });
    if (elements) *elements = n;
    return tensors;
}

/// Sets the OpenMP thread count for a scope.
struct omp_threads {
    int before = omp_get_max_threads();
    explicit omp_threads(int n) { omp_set_num_threads(n); }
    ~omp_threads() { omp_set_num_threads(before); }
    omp_threads(const omp_threads&) = delete;
    omp_threads& operator=(const omp_threads&) = delete;
};

int count_substr(const std::string& s, const std::string& sub) {
    int n = 0;
    for (auto pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size())) ++n;
    return n;
}

}  // namespace

// =================================================================================================
// (a) forward shapes, run-time parameter counts, parameter roles
// =================================================================================================

TEST_CASE("models: resnet<18> and resnet-50-D on 1x28x28 give (n, 1, 1, classes) finite logits") {
    const tensor<float> x = random_tensor({2, 28, 28, 1}, 1);
    const nn::context ctx{};
    {
        auto net = std::make_unique<r18_small>();
        net->init(1);
        const tensor<float>& y = net->forward(x, ctx);
        CHECK(y.shape() == shape4{2, 1, 1, 10});
        CHECK(all_finite(y));
        CHECK(runtime_parameter_count(*net) == tricks::parameter_count_v<r18_small>);
    }
    {
        auto net = std::make_unique<r50d_small>();
        net->init(1);
        const tensor<float>& y = net->forward(x, ctx);
        CHECK(y.shape() == shape4{2, 1, 1, 10});
        CHECK(all_finite(y));
        CHECK(runtime_parameter_count(*net) == tricks::parameter_count_v<r50d_small>);
    }
}

TEST_CASE("models: cifar_resnet20-D gives (n, 1, 1, 10) logits for batch 1, 3 and 32x32 input") {
    auto net = std::make_unique<cifar20d>();
    net->init(2);
    const nn::context ctx{};
    for (shape4 s : {shape4{3, 28, 28, 1}, shape4{1, 28, 28, 1}, shape4{2, 32, 32, 1}}) {
        CAPTURE(s);
        const tensor<float> x = random_tensor(s, 3);
        const tensor<float>& y = net->forward(x, ctx);
        CHECK(y.shape() == shape4{s.n, 1, 1, 10});
        CHECK(all_finite(y));
    }
    CHECK(runtime_parameter_count(*net) == tricks::parameter_count_v<cifar20d>);
    CHECK(net->parameters().size() ==
          static_cast<std::size_t>(count_role(*net, nn::role::weight) + count_role(*net, nn::role::bias) +
                                   count_role(*net, nn::role::bn_gamma) + count_role(*net, nn::role::bn_beta)));
}

TEST_CASE("models: parameter roles of cifar_resnet20 (the only bias is the classifier's)") {
    auto net = std::make_unique<cifar20>();
    std::int64_t w = 0, b = 0, g = 0, be = 0;
    // 21 convs (stem, 9 blocks x 2, 2 projection shortcuts) + the linear layer.
    CHECK(count_role(*net, nn::role::weight, &w) == 22);
    CHECK(count_role(*net, nn::role::bias, &b) == 1);
    // One BN after every conv.
    CHECK(count_role(*net, nn::role::bn_gamma, &g) == 21);
    CHECK(count_role(*net, nn::role::bn_beta, &be) == 21);
    // Elements: convs 9*1*16 + 6*9*16*16 + (9*16*32 + 5*9*32*32) + 16*32 + (9*32*64 + 5*9*64*64)
    // + 32*64, linear 64*10; BN channels 16 + 6*16 + 6*32 + 32 + 6*64 + 64.
    CHECK(w == 144 + 13824 + 50688 + 512 + 202752 + 2048 + 640);
    CHECK(b == 10);
    CHECK(g == 784);
    CHECK(be == 784);
    CHECK(w + b + g + be == tricks::parameter_count_v<cifar20>);
    // The bias is the last parameter visited: the classifier ends the network.
    CHECK(net->parameters().back()->kind == nn::role::bias);
    CHECK(net->parameters().back()->value.size() == 10);
}

TEST_CASE("models: a wrong number of input channels is a shape_error naming the expected count") {
    auto net = std::make_unique<cifar20>();
    net->init(1);
    const tensor<float> x = random_tensor({2, 28, 28, 3}, 4);
    std::string what;
    try {
        (void)net->forward(x, nn::context{});
    } catch (const tricks::shape_error& e) {
        what = e.what();
    }
    CHECK_MESSAGE(what.find("expected 1 input channels") != std::string::npos, what);
    CHECK_THROWS_AS((void)net->forward(x, nn::context{}), tricks::error);  // shape_error is a tricks::error

    auto big = std::make_unique<r18_small>();
    CHECK_THROWS_AS((void)big->forward(x, nn::context{}), tricks::shape_error);
    // An empty batch is refused too.
    const tensor<float> empty(shape4{0, 28, 28, 1});
    CHECK_THROWS_AS((void)net->forward(empty, nn::context{}), tricks::shape_error);
}

// =================================================================================================
// (b) zero_gamma (paper §3.1)
// =================================================================================================

TEST_CASE("models: zero_gamma zeroes the last BN gamma of every residual branch, nothing else") {
    SUBCASE("cifar_resnet20 (basic blocks)") {
        auto net = std::make_unique<cifar20_zg>();
        net->init(5);
        const gamma_census c = census(*net);
        CHECK(c.last_bns == 9);        // 3 stages x 3 blocks
        CHECK(c.other_bns == 21 - 9);  // stem, first BN of each branch, projection shortcuts
        CHECK(c.last_zero == 9);
        CHECK(c.other_one == c.other_bns);
        CHECK(c.beta_zero == 21);
        CHECK(c.last_bns + c.other_bns == count_role(*net, nn::role::bn_gamma));  // the walker saw every BN
    }
    SUBCASE("a ResNet-D bottleneck stage (what resnet<50+> is made of)") {
        // The first block (stride 2, avg-pool shortcut with its own BN) and 3 repeated ones. The
        // model level is network<>::init, shared by resnet and cifar_resnet (tested above); a whole
        // resnet50 would spend a second drawing 25M weights.
        using stage = m::bottleneck_stage<64, 16, 2, 4, /*B*/ true, /*D*/ true>;
        auto st = std::make_unique<stage>();
        rng r(5, 1);
        st->init(r, nn::init_options{.zero_gamma = true});
        const gamma_census c = census_of(*st);
        CHECK(c.last_bns == 4);
        CHECK(c.last_zero == 4);
        CHECK(c.other_bns == 4 * 2 + 1);  // two inner BNs per block, and the shortcut's BN keeps gamma 1
        CHECK(c.other_one == c.other_bns);
    }
    SUBCASE("without zero_gamma every gamma is 1") {
        auto net = std::make_unique<cifar20>();
        net->init(5);
        const gamma_census c = census(*net);
        CHECK(c.last_bns == 9);
        CHECK(c.last_zero == 0);
        CHECK(c.last_one == 9);
        CHECK(c.other_one == c.other_bns);
    }
}

TEST_CASE("models: under zero_gamma a residual block starts as the identity (paper §3.1)") {
    auto net = std::make_unique<cifar20_zg>();
    net->init(6);
    const nn::context ctx{};
    auto& body = body_of(*net);
    const tensor<float> x = random_tensor({2, 28, 28, 1}, 7);

    // The stem output is post-ReLU, hence non-negative: a non-downsampling block (identity
    // shortcut) must return it unchanged, bit for bit, and so must the whole first stage.
    const tensor<float> s = body.get<0>().forward(x, ctx);
    REQUIRE(std::all_of(s.span().begin(), s.span().end(), [](float v) { return v >= 0.f; }));
    auto& stage1 = body.get<1>();
    CHECK(same_bits(stage1.get<0>().forward(s, ctx), s));
    const tensor<float> s1 = stage1.forward(s, ctx);
    CHECK(same_bits(s1, s));

    // On an input of both signs the block is relu(input).
    const tensor<float> t = random_tensor({2, 28, 28, 16}, 8);
    tensor<float> relu_t = t;
    for (auto& v : relu_t.span()) v = std::max(v, 0.f);
    CHECK(same_bits(stage1.get<0>().forward(t, ctx), relu_t));

    // A downsampling block starts as relu(shortcut(x)).
    auto& down = body.get<2>().get<0>();
    const tensor<float> y = down.forward(s1, ctx);
    tensor<float> relu_sc = down.shortcut.forward(s1, ctx);
    for (auto& v : relu_sc.span()) v = std::max(v, 0.f);
    CHECK(same_bits(y, relu_sc));

    // Without zero_gamma the same block is not the identity (so the checks above can fail).
    auto plain = std::make_unique<cifar20>();
    plain->init(6);
    auto& pbody = body_of(*plain);
    const tensor<float> ps = pbody.get<0>().forward(x, ctx);
    CHECK_FALSE(same_bits(pbody.get<1>().get<0>().forward(ps, ctx), ps));
}

// =================================================================================================
// (c) structure: the tweaks change exactly what the paper says
// =================================================================================================

TEST_CASE("models: ResNet-B moves the stride of the first bottleneck from the 1x1 to the 3x3 conv") {
    using stage2_a = std::remove_cvref_t<decltype(std::declval<m::resnet50&>().get<2>().get<0>())>;
    using stage2_b = std::remove_cvref_t<decltype(std::declval<m::resnet50b&>().get<2>().get<0>())>;
    using a1 = std::tuple_element_t<0, decltype(stage2_a::branch)::layer_types>;
    using a3 = std::tuple_element_t<3, decltype(stage2_a::branch)::layer_types>;
    using b1 = std::tuple_element_t<0, decltype(stage2_b::branch)::layer_types>;
    using b3 = std::tuple_element_t<3, decltype(stage2_b::branch)::layer_types>;
    CHECK(a1::kernel == 1);
    CHECK(a1::stride == 2);
    CHECK(a3::kernel == 3);
    CHECK(a3::stride == 1);
    CHECK(b1::kernel == 1);
    CHECK(b1::stride == 1);
    CHECK(b3::kernel == 3);
    CHECK(b3::stride == 2);

    const std::string sa = m::resnet50::structure(), sb = m::resnet50b::structure();
    CHECK(sa.find("res{seq[conv(256,128,k1,s2,p0) bn(128) relu conv(128,128,k3,s1,p1)") != std::string::npos);
    CHECK(sb.find("res{seq[conv(256,128,k1,s1,p0) bn(128) relu conv(128,128,k3,s2,p1)") != std::string::npos);
    CHECK(sa != sb);
    CHECK(m::resnet50::fingerprint() != m::resnet50b::fingerprint());

    // And by the sizes the kernels produce: on 8x8 input, A's first 1x1 conv already halves the
    // map, B's keeps it; the block's output is 4x4 in both.
    const tensor<float> x = random_tensor({2, 8, 8, 256}, 9);
    const nn::context ctx{};
    auto ba = std::make_unique<stage2_a>();
    auto bb = std::make_unique<stage2_b>();
    rng r(1, 2);
    ba->init(r, {});
    bb->init(r, {});
    CHECK(ba->branch.get<0>().forward(x, ctx).shape() == shape4{2, 4, 4, 128});
    CHECK(bb->branch.get<0>().forward(x, ctx).shape() == shape4{2, 8, 8, 128});
    CHECK(ba->forward(x, ctx).shape() == shape4{2, 4, 4, 512});
    CHECK(bb->forward(x, ctx).shape() == shape4{2, 4, 4, 512});
}

TEST_CASE("models: ResNet-C's deep stem is three 3x3 convs 32, 32, 64 (first with stride 2)") {
    const std::string c = m::resnet50c::structure();
    CHECK(c.rfind("seq[seq[seq[conv(3,32,k3,s2,p1) bn(32) relu] seq[conv(32,32,k3,s1,p1) bn(32) relu] "
                  "seq[conv(32,64,k3,s1,p1) bn(64) relu] maxpool(k3,s2,p1)]",
                  0) == 0);
    CHECK(m::resnet50b::structure().rfind("seq[seq[conv(3,64,k7,s2,p3) bn(64) relu maxpool(k3,s2,p1)]", 0) == 0);
    CHECK(count_substr(c, "k7") == 0);
    // Same stem for resnet<18> with the option, on one input channel.
    CHECK(m::resnet<18, tw::deep_stem, in_channels<1>>::structure().rfind("seq[seq[seq[conv(1,32,k3,s2,p1)", 0) == 0);
    // The CIFAR stem: three stride-1 3x3 convs to W/2, W/2, W, and no max-pool.
    const std::string t = tiny_d::structure();
    CHECK(t.rfind("seq[seq[seq[conv(1,2,k3,s1,p1) bn(2) relu] seq[conv(2,2,k3,s1,p1) bn(2) relu] "
                  "seq[conv(2,4,k3,s1,p1) bn(4) relu]]",
                  0) == 0);
    CHECK(count_substr(t, "maxpool") == 0);
}

TEST_CASE("models: ResNet-D's downsampling shortcut is avgpool(2, 2, ceil, padding not counted) + 1x1 conv") {
    const std::string d = m::resnet50d::structure(), c = m::resnet50c::structure();
    // Stages 2, 3, 4 downsample; stage 1 (stride 1, 64 -> 256) keeps a plain 1x1 projection.
    CHECK(count_substr(d, "avgpool(k2,s2,p0,ceil,nopad)") == 3);
    CHECK(count_substr(d, "|seq[avgpool(k2,s2,p0,ceil,nopad) conv(256,512,k1,s1,p0) bn(512)]}") == 1);
    CHECK(count_substr(d, "|seq[conv(64,256,k1,s1,p0) bn(256)]}") == 1);
    CHECK(count_substr(c, "avgpool") == 0);
    CHECK(count_substr(c, "|seq[conv(256,512,k1,s2,p0) bn(512)]}") == 1);
    // The CIFAR net's two downsampling shortcuts.
    CHECK(count_substr(cifar20d::structure(), "avgpool(k2,s2,p0,ceil,nopad)") == 2);
    CHECK(count_substr(cifar20::structure(), "avgpool") == 0);
}

TEST_CASE("models: the order of options does not matter, and names say what the type is") {
    using r50d_reordered = m::resnet<50, tw::avg_down, tw::deep_stem, tw::stride_on_3x3>;
    CHECK(r50d_reordered::structure() == m::resnet50d::structure());
    CHECK(r50d_reordered::fingerprint() == m::resnet50d::fingerprint());
    CHECK(r50d_reordered::name() == m::resnet50d::name());
    using c_reordered =
        m::cifar_resnet<20, tw::avg_down, classes<10>, tw::deep_stem, in_channels<1>, tw::stride_on_3x3>;
    CHECK(c_reordered::structure() == cifar20d::structure());

    CHECK(m::resnet50::name() == "resnet50");
    CHECK(m::resnet50b::name() == "resnet50-B");
    CHECK(m::resnet50c::name() == "resnet50-C");
    CHECK(m::resnet50d::name() == "resnet50-D");
    // zero_gamma changes the name and the initial values, not the structure.
    using r50d_zg = m::resnet<50, tw::stride_on_3x3, tw::deep_stem, tw::avg_down, tricks::init::zero_gamma>;
    CHECK(r50d_zg::structure() == m::resnet50d::structure());
    CHECK(r50d_zg::name() != m::resnet50d::name());
    // Every tweak changes the structure.
    CHECK(m::resnet50b::structure() != m::resnet50c::structure());
    CHECK(m::resnet50c::structure() != m::resnet50d::structure());
}

// =================================================================================================
// (d) determinism (docs/design.md, "Determinism": same seed, same build, same result, bit for bit on CPU)
// =================================================================================================

TEST_CASE("models: init and forward are deterministic") {
    auto a = std::make_unique<cifar20d>();
    auto b = std::make_unique<cifar20d>();
    auto c = std::make_unique<cifar20d>();
    a->init(7);
    b->init(7);
    c->init(8);
    const std::vector<float> va = flat_values(*a), vb = flat_values(*b), vc = flat_values(*c);
    REQUIRE(va.size() == static_cast<std::size_t>(tricks::parameter_count_v<cifar20d>));
    CHECK(std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(va.data(), vc.data(), va.size() * sizeof(float)) != 0);
    // Every conv and linear weight tensor depends on the seed (not only some of them).
    auto pa = a->parameters();
    auto pc = c->parameters();
    for (std::size_t i = 0; i < pa.size(); ++i)
        if (pa[i]->kind == nn::role::weight) CHECK_FALSE(same_bits(pa[i]->value, pc[i]->value));
    // Re-initialising resets to the same values.
    b->init(8);
    b->init(7);
    CHECK(flat_values(*b) == va);

    const tensor<float> x = random_tensor({4, 28, 28, 1}, 10);
    const nn::context ctx{};
    const tensor<float> y1 = a->forward(x, ctx);
    const tensor<float> y2 = a->forward(x, ctx);
    const tensor<float> y3 = b->forward(x, ctx);
    CHECK(same_bits(y1, y2));
    CHECK(same_bits(y1, y3));
    CHECK_FALSE(same_bits(y1, c->forward(x, ctx)));
}

TEST_CASE("models: forward and backward do not depend on the thread count") {
    // Big enough for several conv tiles and batch-norm chunks (2x28x28 = 1568 pixels per BN).
    using net_t = m::cifar_resnet<8, in_channels<1>, classes<10>, tw::stride_on_3x3, tw::deep_stem, tw::avg_down>;
    auto net = std::make_unique<net_t>();
    net->init(11);
    const tensor<float> x = random_tensor({2, 28, 28, 1}, 12);
    const tensor<float> dy = random_tensor({2, 1, 1, 10}, 13);
    const nn::context ctx{};
    auto run = [&](int threads, tensor<float>& y, tensor<float>& dx, std::vector<float>& grads) {
        {
            const omp_threads scope(threads);
            y = net->forward(x, ctx);
            dx = net->backward(dy, ctx, true);
        }
        grads.clear();
        net->for_each_parameter(
            [&](nn::parameter& p) { grads.insert(grads.end(), p.grad.span().begin(), p.grad.span().end()); });
    };
    tensor<float> y1, dx1, y2, dx2;
    std::vector<float> g1, g2;
    run(1, y1, dx1, g1);
    run(std::max(2, omp_get_num_procs()), y2, dx2, g2);
    CHECK(same_bits(y1, y2));
    CHECK(same_bits(dx1, dx2));
    CHECK(g1 == g2);
}

TEST_CASE(
    "models: batch_norm + relu fused, and conv + batch_norm (+ relu) folded in evaluation (context::fuse), give the "
    "layer-by-layer bits") {
    using net_t = m::cifar_resnet<8, width<8>, in_channels<1>, classes<10>, tw::deep_stem, tw::avg_down>;
    // The fusion must happen where it should: a conv-BN-ReLU stem layer runs its ReLU inside the BN.
    using stem_t = nn::sequential<nn::conv<1, 8, 3, 1, 1>, nn::batch_norm<8>, nn::relu<8>>;
    static_assert(nn::fuses_with_next<nn::batch_norm<8>, nn::relu<8>>);
    static_assert(!nn::fuses_with_next<nn::relu<8>, nn::batch_norm<8>>);
    static_assert(!nn::fuses_with_next<nn::conv<8, 8, 3, 1, 1>, nn::batch_norm<8>>);
    {
        stem_t stem;
        rng r(5, 0);
        stem.init(r, {});
        const tensor<float> x = random_tensor({2, 6, 6, 1}, 7);
        const nn::context fused{};
        (void)stem.forward(x, fused);
        CHECK(stem.get<1>().forward_relu(stem.get<0>().forward(x, fused), fused, stem.get<2>().output()).data() ==
              stem.get<2>().output().data());  // the fused BN writes the ReLU's own buffer
        // evaluation with FP32 storage folds the BN (and the ReLU) into the conv: a fresh stem's BN
        // never runs, its buffer stays empty, and the result lands in the ReLU's buffer
        stem_t fresh;
        fresh.init(r, {});
        const nn::context eval{nn::mode::eval};
        const float* out = fresh.forward(x, eval).data();
        CHECK(out == fresh.get<2>().output().data());
        CHECK(fresh.get<1>().output().size() == 0);
        stem_t plain;
        plain.init(r, {});
        const nn::context eval_plain{nn::mode::eval, nn::storage::fp32, false};
        (void)plain.forward(x, eval_plain);
        CHECK(plain.get<1>().output().size() == x.size() * 8);
    }
    for (const auto store : {nn::storage::fp32, nn::storage::fp16}) {
        CAPTURE(static_cast<int>(store));
        auto net = std::make_unique<net_t>();
        net->init(21);
        // gamma away from 1 and beta away from 0 so that the ReLUs cut at different places
        int k = 0;
        net->for_each_parameter([&](nn::parameter& p) {
            if (p.kind == nn::role::bn_gamma || p.kind == nn::role::bn_beta)
                for (auto& v : p.value.span()) v += 0.3f * static_cast<float>((k++ % 7) - 3) / 3.f;
        });
        const tensor<float> x = random_tensor({3, 28, 28, 1}, 22);
        const tensor<float> dy = random_tensor({3, 1, 1, 10}, 23);
        auto run = [&](bool fuse, nn::mode phase, tensor<float>& y, tensor<float>& dx, std::vector<float>& grads) {
            const nn::context ctx{phase, store, fuse};
            y = net->forward(x, ctx);
            grads.clear();
            if (phase == nn::mode::eval) return;
            dx = net->backward(dy, ctx, true);
            net->for_each_parameter(
                [&](nn::parameter& p) { grads.insert(grads.end(), p.grad.span().begin(), p.grad.span().end()); });
        };
        tensor<float> y1, dx1, y2, dx2, e1, e2, unused;
        std::vector<float> g1, g2, none;
        // train mode updates the running statistics: run each variant on a fresh copy of the state
        std::vector<float> buffers;
        net->for_each_buffer(
            [&](tensor<float>& b) { buffers.insert(buffers.end(), b.span().begin(), b.span().end()); });
        const auto restore = [&] {
            std::size_t i = 0;
            net->for_each_buffer([&](tensor<float>& b) {
                for (auto& v : b.span()) v = buffers[i++];
            });
        };
        run(false, nn::mode::train, y1, dx1, g1);
        restore();
        run(true, nn::mode::train, y2, dx2, g2);
        CHECK(same_bits(y1, y2));
        CHECK(same_bits(dx1, dx2));
        REQUIRE(g1.size() == g2.size());
        CHECK(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(float)) == 0);
        run(false, nn::mode::eval, e1, unused, none);
        run(true, nn::mode::eval, e2, unused, none);
        CHECK(same_bits(e1, e2));
        // ... and the ReLUs did cut: some activations of the stem are exactly 0, some positive
        const tensor<float>& stem_out =
            net->template get<0>().template get<0>().template get<2>().output();  // stem, conv 1, relu
        const auto zeros = std::count(stem_out.span().begin(), stem_out.span().end(), 0.f);
        CHECK(zeros > 0);
        CHECK(static_cast<std::size_t>(zeros) < stem_out.size());
    }
}

// =================================================================================================
// (e) end-to-end finite-difference gradient check
// =================================================================================================

namespace {

/// Finite differences of a float network, made robust to ReLU kinks.
///
/// Rounding: the forward pass is float; the loss L = sum(logits * r) is O(1) and its rounding
/// error was measured at ~2e-7, so a difference quotient with step h carries ~3e-7 / h of noise:
/// <= 1.2e-3 at the smallest step used (2.5e-4). Truncation of a central difference, h^2 f'''/6,
/// is below 1e-4 at h = 1e-3. Hence the tolerance
///   |analytic - numeric| <= 2e-3 + 1e-2 * max(|analytic|, |numeric|),
/// tight next to the gradients checked (1e-2 .. 5 in magnitude).
///
/// Kinks: the net has ~2300 ReLU units, and train-mode batch norm couples the batch, so a change
/// of any parameter moves every unit downstream of it. The unit nearest to its kink is typically
/// ~1e-3 (in units of its own scale) away, so a step of 1e-2 nearly always crosses some kink and a
/// central difference across a kink returns the mean of the two one-sided slopes, while backprop
/// returns one of them (measured: errors up to 100% at h = 1e-2, so that step is not usable here).
/// Therefore each entry gets three steps h = 1e-3, 5e-4, 2.5e-4 and, at each, the central and both
/// one-sided differences; near a kink on one side the slope from the other side is exact up to
/// h f''/2. The analytic value passes when it matches one of these nine estimates. The function
/// counts as smooth on [-h, h] when its two one-sided slopes agree within the tolerance. Some
/// evaluation points sit next to the kink of a unit that much of the net feeds (measured at 16
/// random points: at 5 of them 1.5-12% of all entries have no smooth step, and most failures
/// come from those); if more than 10% of the sampled entries have no smooth step, the input is
/// redrawn. This choice of point never looks at the analytic gradient. At the points kept, 0-3
/// of all 5219 entries fail (two kinks within one step, one on each side), so one failure among
/// the 85 sampled entries is tolerated; the last checks show that wrong gradients are caught.
struct fd_probe {
    static constexpr double steps[3] = {1e-3, 5e-4, 2.5e-4};
    static constexpr double atol = 2e-3, rtol = 1e-2;
    double central[3]{}, plus[3]{}, minus[3]{};  // central and one-sided difference quotients
    bool smooth[3]{};

    static double tol(double a, double b) { return atol + rtol * std::max(std::abs(a), std::abs(b)); }
    static bool close(double a, double b) { return std::abs(a - b) <= tol(a, b); }
    [[nodiscard]] bool any_smooth() const { return smooth[0] || smooth[1] || smooth[2]; }
    /// Does the analytic value g agree with the numeric derivative?
    [[nodiscard]] bool accepts(double g) const {
        for (int k = 0; k < 3; ++k)
            if (close(g, central[k]) || close(g, plus[k]) || close(g, minus[k])) return true;
        return false;
    }
};

template <class Loss>
fd_probe probe(float& v, double l0, Loss&& loss) {
    fd_probe p;
    const float v0 = v;
    for (int k = 0; k < 3; ++k) {
        const double h = fd_probe::steps[k];
        v = static_cast<float>(v0 + h);
        const double hp = static_cast<double>(v) - v0;  // the step actually taken in float
        const double lp = loss();
        v = static_cast<float>(v0 - h);
        const double hm = v0 - static_cast<double>(v);
        const double lm = loss();
        v = v0;
        p.plus[k] = (lp - l0) / hp;
        p.minus[k] = (l0 - lm) / hm;
        p.central[k] = (lp - lm) / (hp + hm);
        p.smooth[k] = fd_probe::close(p.plus[k], p.minus[k]);
    }
    return p;
}

struct fd_entry {
    std::string what;
    double analytic;
    fd_probe numeric;
};

struct fd_run {
    std::vector<fd_entry> entries;
    std::vector<std::size_t> group_heads;  // per parameter tensor (and the input): its largest entry
    int not_smooth = 0;
    std::uint64_t input_seed = 0;
};

/// One evaluation point: loss, backward, and the sampled entries' numeric derivatives.
template <class Net>
fd_run gradient_probe(Net& net, std::uint64_t input_seed) {
    fd_run run;
    run.input_seed = input_seed;
    // Batch 2, 7x7: odd sizes, so stage 2's stride-2 conv gives 4x4 and ResNet-D's ceil-mode
    // avg pool has a partial last window (7 -> 4, padding not counted).
    tensor<float> x = random_tensor({2, 7, 7, 1}, input_seed);
    const tensor<float> rw = random_tensor({2, 1, 1, 3}, input_seed + 1000);
    const nn::context ctx{};  // training mode: batch norm's backward needs its batch statistics
    auto loss = [&] {
        const tensor<float>& y = net.forward(x, ctx);
        double s = 0;
        for (std::size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * rw[i];
        return s;
    };
    const double l0 = loss();
    const tensor<float> dx = net.backward(rw, ctx, /*need_dx*/ true);
    REQUIRE(dx.shape() == x.shape());

    // The sample: in every parameter tensor (conv weights, BN gamma and beta, linear weight and
    // bias: 35 tensors) the entry with the largest gradient and one drawn at random; in the input
    // the largest, two corners of each image and random pixels.
    rng pick(input_seed, 6);
    auto add = [&](const std::string& what, const tensor<float>& g, float* values, std::vector<std::size_t> idx) {
        std::size_t big = 0;
        for (std::size_t i = 1; i < g.size(); ++i)
            if (std::abs(g[i]) > std::abs(g[big])) big = i;
        idx.insert(idx.begin(), big);
        run.group_heads.push_back(run.entries.size());
        for (std::size_t i : idx) {
            run.entries.push_back({what + "[" + std::to_string(i) + "]", g[i], probe(values[i], l0, loss)});
            run.not_smooth += !run.entries.back().numeric.any_smooth();
        }
    };
    auto params = net.parameters();
    for (std::size_t t = 0; t < params.size(); ++t) {
        nn::parameter& p = *params[t];
        const tensor<float> g = p.grad;  // a copy: the probes' forwards do not touch it, but be safe
        add(std::string(nn::role_name(p.kind)) + " #" + std::to_string(t), g, p.value.data(),
            {pick.below(static_cast<std::uint32_t>(g.size()))});
    }
    std::vector<std::size_t> idx{0, 48, 49, 97};  // corners (0,0) and (6,6) of both images
    while (idx.size() < 14) idx.push_back(pick.below(static_cast<std::uint32_t>(x.size())));
    add("input", dx, x.data(), idx);
    return run;
}

}  // namespace

TEST_CASE("models: end-to-end gradient of cifar_resnet<8, width<4>, D> matches finite differences") {
    // ~1000 forward passes of a net with a few hundred values per layer: one thread, since thread
    // hand-offs would cost more than the work (results do not depend on the thread count).
    const omp_threads one(1);
    auto net = std::make_unique<tiny_d>();
    net->init(3);
    // Random BN affine parameters, so a gamma/beta mix-up cannot hide behind gamma = 1, beta = 0.
    rng r(3, 5);
    for (nn::parameter* p : net->parameters()) {
        if (p->kind == nn::role::bn_gamma)
            for (auto& v : p->value.span()) v = 0.5f + r.uniform();
        if (p->kind == nn::role::bn_beta)
            for (auto& v : p->value.span()) v = r.uniform() - 0.5f;
    }
    REQUIRE(net->parameters().size() == 35);

    // A point away from kinks (see fd_probe): at most 10% of entries without a smooth step.
    fd_run run;
    for (std::uint64_t seed = 14; seed < 18; ++seed) {
        run = gradient_probe(*net, seed);
        if (run.not_smooth * 10 <= static_cast<int>(run.entries.size())) break;
    }
    const auto& entries = run.entries;
    CAPTURE(run.input_seed);
    CAPTURE(run.not_smooth);
    REQUIRE(entries.size() == 35 * 2 + 15);  // 35 tensors x 2, the input x 15 (largest + 14)
    CHECK(run.not_smooth * 10 <= static_cast<int>(entries.size()));

    // The judge, for any candidate gradient (the analytic one, or a corrupted copy).
    auto failures = [&](auto&& candidate) {
        int n = 0;
        for (std::size_t e = 0; e < entries.size(); ++e) n += !entries[e].numeric.accepts(candidate(e));
        return n;
    };
    for (const fd_entry& e : entries) {
        if (!e.numeric.accepts(e.analytic)) {
            const fd_probe& p = e.numeric;
            MESSAGE(e.what << ": analytic " << e.analytic << "; central " << p.central[0] << " " << p.central[1] << " "
                           << p.central[2] << "; from above " << p.plus[0] << " " << p.plus[1] << " " << p.plus[2]
                           << "; from below " << p.minus[0] << " " << p.minus[1] << " " << p.minus[2]);
        }
    }
    CHECK(failures([&](std::size_t e) { return entries[e].analytic; }) <= 1);

    // The check has teeth. A sign flip of any one tensor's gradient is caught on that tensor's
    // largest entry (whenever it exceeds the tolerance); flipping everything, or a 10% error
    // everywhere, fails most entries.
    int flips_caught = 0, flips_possible = 0;
    for (std::size_t head : run.group_heads) {
        const fd_entry& e = entries[head];
        if (std::abs(e.analytic) <= 2 * fd_probe::atol) continue;
        ++flips_possible;
        flips_caught += !e.numeric.accepts(-e.analytic);
    }
    CHECK(flips_possible >= 30);
    CHECK(flips_caught == flips_possible);
    const int n = static_cast<int>(entries.size());
    CHECK(failures([&](std::size_t e) { return -entries[e].analytic; }) > n / 2);
    CHECK(failures([&](std::size_t e) { return 1.1 * entries[e].analytic; }) > n / 2);
}

// =================================================================================================
// (f) evaluation mode uses the running statistics
// =================================================================================================

TEST_CASE("models: eval mode normalises with the running statistics, train mode with the batch's") {
    auto net = std::make_unique<cifar20d>();
    net->init(21);
    const nn::context train{}, eval{nn::mode::eval};
    tensor<float> x = random_tensor({2, 28, 28, 1}, 22);
    tensor<float> x2 = x;  // same first image, different second image
    for (std::size_t i = x2.size() / 2; i < x2.size(); ++i) x2[i] = -x2[i];

    const tensor<float> e0 = net->forward(x, eval);   // fresh running statistics: mean 0, var 1
    const tensor<float> t1 = net->forward(x, train);  // updates them (momentum 0.1)
    const tensor<float> e1 = net->forward(x, eval);
    CHECK(all_finite(e0));
    CHECK(all_finite(e1));
    CHECK_FALSE(same_bits(e1, t1));               // eval does not use the batch statistics
    CHECK_FALSE(same_bits(e1, e0));               // it uses the running ones, which the train step moved
    CHECK(same_bits(net->forward(x, eval), e1));  // and eval forwards leave them alone

    // In eval mode an image's logits do not depend on the rest of the batch; in train mode they do.
    const tensor<float> e2 = net->forward(x2, eval);
    for (int c = 0; c < 10; ++c) CHECK(e2.at(0, 0, 0, c) == e1.at(0, 0, 0, c));
    const tensor<float> t2 = net->forward(x2, train);
    bool differs = false;
    for (int c = 0; c < 10; ++c) differs |= t2.at(0, 0, 0, c) != t1.at(0, 0, 0, c);
    CHECK(differs);

    // The running statistics after one step are (1 - 0.1) * init + 0.1 * batch statistics
    // (unbiased variance, as PyTorch): checked on the first BN of the stem.
    auto fresh = std::make_unique<cifar20d>();
    fresh->init(21);
    auto& stem_unit = body_of(*fresh).get<0>().get<0>();  // conv_bn_relu of the deep stem
    const tensor<float> z = stem_unit.get<0>().forward(x, train);
    (void)fresh->forward(x, train);
    auto& bn = stem_unit.get<1>();
    const int C = z.shape().c;
    const double m = static_cast<double>(z.shape().pixels());
    for (int c = 0; c < C; ++c) {
        double s = 0, s2 = 0;
        for (std::size_t p = 0; p < z.shape().pixels(); ++p) s += z[p * C + c];
        const double mean = s / m;
        for (std::size_t p = 0; p < z.shape().pixels(); ++p) s2 += (z[p * C + c] - mean) * (z[p * C + c] - mean);
        CHECK(bn.running_mean[c] == doctest::Approx(0.1 * mean).epsilon(1e-4));
        CHECK(bn.running_var[c] == doctest::Approx(0.9 + 0.1 * s2 / (m - 1)).epsilon(1e-4));
    }
}

TEST_CASE("models: inference_pool gives model.forward's evaluation bits for any sub-batch size and thread count") {
    // The main job's net (deep stem, avg-down, Winograd for its 3x3 stride-1 convs) with moved
    // running statistics, so the folded batch norms are not the identity.
    using net_t = m::cifar_resnet<20, in_channels<1>, classes<10>, tw::deep_stem, tw::avg_down>;
    auto net = std::make_unique<net_t>();
    net->init(31);
    const tensor<float> x = random_tensor({21, 28, 28, 1}, 32);  // 21: every chunk size leaves a remainder
    for (int i = 0; i < 2; ++i) (void)net->forward(random_tensor({8, 28, 28, 1}, 33 + i), nn::context{});
    const omp_threads keep(omp_get_max_threads());
    for (const auto algo : {tricks::backend::conv_algo::winograd, tricks::backend::conv_algo::direct}) {
        for (const auto store : {nn::storage::fp32, nn::storage::fp16}) {
            const nn::context eval{.phase = nn::mode::eval, .store = store, .conv = algo};
            const std::string algo_name = tricks::backend::to_string(algo);
            CAPTURE(algo_name);
            CAPTURE(static_cast<int>(store));
            tensor<float> ref;
            {
                const omp_threads scope(2);
                ref = net->forward(x, eval);
            }
            for (const int chunk : {0, 1, 5, 8, 16, 64}) {  // 0: measured on the first batch
                m::inference_pool<net_t> pool(chunk);
                pool.load(*net);
                for (const int threads : {1, 2, 3}) {
                    CAPTURE(chunk);
                    CAPTURE(threads);
                    omp_set_num_threads(threads);
                    const tensor<float>& y = pool.forward(x, eval);
                    CHECK(y.shape() == ref.shape());
                    CHECK(same_bits(y, ref));
                    CHECK(omp_get_max_threads() == threads);  // the copies' one-thread setting stays inside
                    if (chunk == 0)
                        CHECK((pool.chunk() >= 2 && pool.chunk() <= std::min(16, (21 + threads - 1) / threads)));
                    // One set of prepared filters: the first copy's (Winograd's U here); the others read it.
                    // (After measuring, chunk 0, the pool has dropped its copies.)
                    if (chunk == 0) continue;
                    const auto held = pool.prepared_floats();
                    REQUIRE(!held.empty());
                    CHECK((held[0] > 0) == (algo == tricks::backend::conv_algo::winograd));
                    for (std::size_t i = 1; i < held.size(); ++i) CHECK(held[i] == 0);
                }
            }
        }
    }
}

TEST_CASE("models: inference_pool's copies share the first copy's prepared filters across loads and image sizes") {
    // ResNet-50-D: Winograd U for the stride-1 3x3 layers and GEMM panels for the wide 1x1 and strided
    // layers. The first copy prepares them on the first sub-batch alone; the others read them. A new
    // image size, FP16 storage, new weights (load) and a forward that threw part-way (a 16x16 image:
    // the last stage's 2x2 average pool meets a 1x1 map, after earlier layers re-prepared for 16x16)
    // each make the first copy prepare again first.
    auto net = std::make_unique<r50d_small>();
    net->init(51);
    for (int i = 0; i < 2; ++i) (void)net->forward(random_tensor({4, 32, 32, 1}, 52 + i), nn::context{});
    const omp_threads keep(2);
    m::inference_pool<r50d_small> pool(2);
    pool.load(*net);
    const nn::context eval{.phase = nn::mode::eval}, eval16{.phase = nn::mode::eval, .store = nn::storage::fp16};
    for (int round = 0; round < 2; ++round) {
        for (const int size : {32, 40, 16, 32}) {
            const tensor<float> x = random_tensor({5, size, size, 1}, 60 + size);
            for (const nn::context& ctx : {eval, eval16}) {
                CAPTURE(round);
                CAPTURE(size);
                CAPTURE(static_cast<int>(ctx.store));
                if (size == 16) {
                    CHECK_THROWS_WITH_AS(pool.forward(x, ctx), doctest::Contains("avg_pool"), tricks::error);
                    continue;
                }
                tensor<float> ref;
                {
                    const omp_threads one(1);
                    ref = net->forward(x, ctx);
                }
                CHECK(same_bits(pool.forward(x, ctx), ref));
                CHECK(same_bits(pool.forward(x, ctx), ref));  // the second time: no first sub-batch alone
                const auto held = pool.prepared_floats();
                REQUIRE(held.size() == 2);
                CHECK(held[0] > 0);
                CHECK(held[1] == 0);
            }
        }
        net->init(70 + round);  // new weights, loaded: the first copy prepares them again
        pool.load(*net);
    }
}

TEST_CASE("models: inference_pool runs the weights of its last load(), and refuses what it cannot run") {
    using net_t = m::cifar_resnet<8, in_channels<1>, classes<10>, tw::avg_down>;
    auto net = std::make_unique<net_t>();
    net->init(41);
    const tensor<float> x = random_tensor({6, 28, 28, 1}, 42);
    const nn::context eval{.phase = nn::mode::eval};
    m::inference_pool<net_t> pool(4);
    CHECK_THROWS_WITH_AS(pool.forward(x, eval), doctest::Contains("before load()"), tricks::error);
    pool.load(*net);
    const tensor<float> y1 = pool.forward(x, eval);
    CHECK(same_bits(y1, net->forward(x, eval)));
    net->init(43);  // new weights: the pool keeps its snapshot until the next load()
    const tensor<float> y2 = net->forward(x, eval);
    CHECK_FALSE(same_bits(y1, y2));
    CHECK(same_bits(pool.forward(x, eval), y1));
    pool.load(*net);
    CHECK(same_bits(pool.forward(x, eval), y2));
    // Moved batch-norm statistics are part of the snapshot too, and so is a batch norm's eps.
    (void)net->forward(x, nn::context{});
    body_of(*net).get<0>().get<1>().eps = 0.25f;  // the stem's BN
    pool.load(*net);
    CHECK(same_bits(pool.forward(x, eval), net->forward(x, eval)));
    // One pool, FP32 then FP16 storage (the copies' kept filters are per precision).
    const nn::context eval16{.phase = nn::mode::eval, .store = nn::storage::fp16};
    CHECK(same_bits(pool.forward(x, eval16), net->forward(x, eval16)));
    CHECK(same_bits(pool.forward(x, eval), net->forward(x, eval)));

    CHECK_THROWS_WITH_AS(pool.forward(x, nn::context{}), doctest::Contains("evaluation mode only"), tricks::error);
    CHECK_THROWS_WITH_AS(pool.forward(random_tensor({2, 28, 28, 3}, 44), eval), doctest::Contains("1 channels"),
                         tricks::shape_error);
    CHECK_THROWS_WITH_AS(m::inference_pool<net_t>(-1), doctest::Contains("chunk must be >= 1 (or 0: measure), got -1"),
                         tricks::error);
    // An error inside a copy (here a 2x2 input: the shortcut's 2x2 average pool meets a 1x1 map) reaches the caller.
    CHECK_THROWS_WITH_AS(pool.forward(random_tensor({3, 2, 2, 1}, 45), eval),
                         doctest::Contains("avg_pool: window 2 is larger"), tricks::error);
}

TEST_CASE("models: a convolution keeps its transformed filter while context::weights_version stays the same") {
    nn::conv<16, 16, 3> c;
    rng r(51, 0);
    c.init(r, {});
    const tensor<float> x = random_tensor({2, 14, 14, 16}, 52);  // F(4x4, 3x3)
    const tensor<float> x5 = random_tensor({2, 5, 5, 16}, 53);   // a 5x5 output: F(2x2, 3x3), another U
    const nn::context none{.phase = nn::mode::eval}, v7{.phase = nn::mode::eval, .weights_version = 7},
        v8{.phase = nn::mode::eval, .weights_version = 8};
    const tensor<float> y = c.forward(x, none);
    CHECK(same_bits(c.forward(x, v7), y));  // the first call with a version transforms, as without one
    CHECK(same_bits(c.forward(x, v7), y));  // the second reuses it: same bits

    for (auto& w : c.weight.value.span()) w *= 2.f;  // breaks version 7's promise on purpose:
    CHECK(same_bits(c.forward(x, v7), y));           // the kept filter runs (this is what is cached)
    const tensor<float> y2 = c.forward(x, none);
    CHECK_FALSE(same_bits(y2, y));
    CHECK(same_bits(c.forward(x, v8), y2));  // a new version transforms the new weights
    // Same version, other tile size: transformed again, not read with the wrong layout.
    CHECK(same_bits(c.forward(x5, v8), c.forward(x5, none)));
    CHECK(same_bits(c.forward(x, v8), y2));
    // Same version, other storage precision: the kernels read the weights rounded to FP16, so the
    // kept FP32 filter must not serve. Weights of 3e-8 round to FP16's smallest subnormal, 2^-24 (2x):
    // a difference the FP16 rounding of the outputs cannot hide.
    nn::conv<16, 16, 3> d;
    for (auto& w : d.weight.value.span()) w = 3e-8f;
    tensor<float> xb = random_tensor({1, 8, 8, 16}, 54);
    for (auto& v : xb.span()) v *= 1e4f;
    const nn::context v9{.phase = nn::mode::eval, .weights_version = 9},
        v9_fp16{.phase = nn::mode::eval, .store = nn::storage::fp16, .weights_version = 9},
        fp16{.phase = nn::mode::eval, .store = nn::storage::fp16};
    const tensor<float> d32 = d.forward(xb, none), d16 = d.forward(xb, fp16);
    CHECK_FALSE(same_bits(d32, d16));
    CHECK(same_bits(d.forward(xb, v9), d32));
    CHECK(same_bits(d.forward(xb, v9_fp16), d16));
    CHECK(same_bits(d.forward(xb, v9), d32));

    tricks::backend::host::prepared_filter p;
    const tricks::backend::conv_geometry g{{1, 14, 14, 16}, 16, 3, 3, 1, 1};
    CHECK_THROWS_WITH_AS(
        tricks::backend::host::prepare_filter(g, c.weight.value.data(), tricks::backend::conv_algo::winograd, 0, p),
        doctest::Contains("version 0"), tricks::error);
    CHECK(tricks::backend::host::prepare_filter(g, c.weight.value.data(), tricks::backend::conv_algo::direct, 1, p) ==
          nullptr);
}

TEST_CASE("models: in evaluation a residual block's add and ReLU run in its last convolution's epilogue") {
    using net_t = m::cifar_resnet<8, in_channels<1>, classes<10>, tw::avg_down>;
    auto net = std::make_unique<net_t>();
    net->init(61);
    const tensor<float> x = random_tensor({2, 28, 28, 1}, 62);
    (void)net->forward(x, nn::context{});           // training mode: moves the statistics, writes every buffer
    auto& block = body_of(*net).get<1>().get<0>();  // stage 1's residual block
    static_assert(std::remove_reference_t<decltype(block.branch)>::folds_residual());
    tensor<float>& bn_out = block.branch.get<4>().output();  // where the branch's last BN writes layer by layer
    REQUIRE(!bn_out.empty());
    bn_out.fill(std::numeric_limits<float>::quiet_NaN());
    const tensor<float> folded = net->forward(x, nn::context{.phase = nn::mode::eval});
    CHECK(std::all_of(bn_out.span().begin(), bn_out.span().end(), [](float v) { return std::isnan(v); }));  // not run
    const tensor<float> layered = net->forward(x, nn::context{.phase = nn::mode::eval, .fuse = false});
    CHECK(std::none_of(bn_out.span().begin(), bn_out.span().end(), [](float v) { return std::isnan(v); }));
    CHECK(same_bits(folded, layered));
}

/// `to` gets `from`'s parameter values and buffers (the running statistics).
template <class Net>
void copy_state(Net& from, Net& to) {
    std::vector<tensor<float>*> src, dst;
    from.for_each_parameter([&](nn::parameter& p) { src.push_back(&p.value); });
    from.for_each_buffer([&](tensor<float>& t) { src.push_back(&t); });
    to.for_each_parameter([&](nn::parameter& p) { dst.push_back(&p.value); });
    to.for_each_buffer([&](tensor<float>& t) { dst.push_back(&t); });
    REQUIRE(src.size() == dst.size());
    for (std::size_t i = 0; i < src.size(); ++i) *dst[i] = *src[i];
}

/// Evaluation with an arena against evaluation without one, on a fresh copy of `net` each time (a
/// model whose layers own no buffers yet, as the inference pool's copies): same bits, and the arena
/// holds at most `most_buffers` buffers (the activations alive at one time), fewer floats than the
/// layers own when every one keeps its output (`owned`, summed below from the model run without).
template <class Net>
void check_lent_forward(Net& net, std::size_t most_buffers) {
    const tensor<float> x = random_tensor({3, 28, 28, 1}, 72);
    (void)net.forward(x, nn::context{});  // moves the running statistics
    for (const bool fuse : {true, false})
        for (const auto store : {nn::storage::fp32, nn::storage::fp16}) {
            CAPTURE(fuse);
            CAPTURE(static_cast<int>(store));
            const nn::context eval{.phase = nn::mode::eval, .store = store, .fuse = fuse};
            const tensor<float> ref = net.forward(x, eval);
            auto copy = std::make_unique<Net>();
            copy_state(net, *copy);
            nn::activation_arena arena;
            nn::context lend = eval;
            lend.arena = &arena;
            CHECK(same_bits(copy->forward(x, lend), ref));
            // Again, on the arena's buffers. The model's output keeps the buffer it took, so the next
            // forwards may add or grow a buffer; then they settle (measured: by the third).
            CHECK(same_bits(copy->forward(x, lend), ref));
            CHECK(same_bits(copy->forward(x, lend), ref));
            const std::size_t buffers = arena.buffers(), floats = arena.floats();
            CHECK(buffers > 0);              // inner outputs went back
            CHECK(buffers <= most_buffers);  // each no larger than the largest activation
            for (int k = 0; k < 2; ++k) {
                CHECK(same_bits(copy->forward(x, lend), ref));
                CHECK(arena.buffers() == buffers);  // nothing new allocated
                CHECK(arena.floats() == floats);
            }
            CHECK(same_bits(copy->forward(random_tensor({1, 28, 28, 1}, 73), lend),
                            net.forward(random_tensor({1, 28, 28, 1}, 73), eval)));
            CHECK(arena.buffers() == buffers);  // a smaller batch fits in the same buffers
            // No backward after a lent forward; a forward without the arena runs as before.
            CHECK_THROWS_WITH_AS(copy->backward(ref, nn::context{}, false), doctest::Contains("lent its activations"),
                                 tricks::error);
            CHECK(same_bits(copy->forward(x, eval), ref));
        }
}

TEST_CASE("models: an evaluation forward lending its activations through an arena gives the same bits") {
    // Bottleneck ResNet-50-D (projection shortcuts with average pools, deep stem), basic-block
    // ResNet-18 and the main job's net; folded and layer by layer, FP32 and FP16 storage.
    {
        auto net = std::make_unique<r50d_small>();
        net->init(71);
        check_lent_forward(*net, 8);
    }
    {
        auto net = std::make_unique<r18_small>();
        net->init(74);
        check_lent_forward(*net, 8);
    }
    {
        auto net = std::make_unique<m::cifar_resnet<20, in_channels<1>, classes<10>, tw::deep_stem, tw::avg_down>>();
        net->init(75);
        check_lent_forward(*net, 8);
    }
}

TEST_CASE("models: after a lent evaluation forward, training forward and backward are unchanged") {
    auto a = std::make_unique<cifar20d>(), b = std::make_unique<cifar20d>();
    a->init(81);
    b->init(81);
    const tensor<float> x = random_tensor({4, 28, 28, 1}, 82), dy = random_tensor({4, 1, 1, 10}, 83);
    nn::activation_arena arena;
    (void)b->forward(x, nn::context{.phase = nn::mode::eval, .arena = &arena});
    const tensor<float> ya = a->forward(x, nn::context{}), yb = b->forward(x, nn::context{});
    CHECK(same_bits(ya, yb));
    const tensor<float> da = a->backward(dy, nn::context{}, true), db = b->backward(dy, nn::context{}, true);
    CHECK(same_bits(da, db));
    std::vector<float> ga, gb;
    a->for_each_parameter([&](nn::parameter& p) { ga.insert(ga.end(), p.grad.data(), p.grad.data() + p.grad.size()); });
    b->for_each_parameter([&](nn::parameter& p) { gb.insert(gb.end(), p.grad.data(), p.grad.data() + p.grad.size()); });
    CHECK(ga == gb);
}

TEST_CASE("models: a max pool that lent its output keeps no argmax and refuses a backward pass") {
    nn::max_pool<3, 3, 2, 1> pool;
    const tensor<float> x = random_tensor({2, 9, 7, 3}, 84), dy = random_tensor({2, 5, 4, 3}, 85);
    CHECK_THROWS_WITH_AS(pool.backward(dy, nn::context{}, true), doctest::Contains("before any forward"),
                         tricks::error);
    const tensor<float> y = pool.forward(x, nn::context{});
    const tensor<float> dx = pool.backward(dy, nn::context{}, true);
    nn::activation_arena arena;
    const nn::context lend{.phase = nn::mode::eval, .arena = &arena};
    CHECK(same_bits(pool.forward(x, lend), y));
    CHECK_THROWS_WITH_AS(pool.backward(dy, nn::context{}, true), doctest::Contains("lent its buffers"), tricks::error);
    (void)pool.forward(x, nn::context{.phase = nn::mode::eval});  // no arena: routed as before
    CHECK(same_bits(pool.backward(dy, nn::context{}, true), dx));
    (void)pool.forward(x, nn::context{});
    CHECK_THROWS_WITH_AS(pool.backward(random_tensor({2, 4, 4, 3}, 86), nn::context{}, true),
                         doctest::Contains("backward got dy"), tricks::shape_error);
}

/// Training forward and backward with the input gradients lent through an arena against the same
/// without one, on two copies of `net`: the same outputs, input gradient and parameter gradients, bit
/// for bit, over several steps (and from a frozen-stage start); the arena settles on at most
/// `most_buffers` buffers.
template <class Net>
void check_lent_backward(Net& net, std::size_t most_buffers) {
    const tensor<float> x = random_tensor({3, 28, 28, 1}, 91), dy = random_tensor({3, 1, 1, 10}, 92);
    auto grads = [](Net& n) {
        std::vector<float> g;
        n.for_each_parameter(
            [&](nn::parameter& p) { g.insert(g.end(), p.grad.data(), p.grad.data() + p.grad.size()); });
        return g;
    };
    for (const bool fuse : {true, false})
        for (const auto store : {nn::storage::fp32, nn::storage::fp16})
            for (const std::size_t first : {std::size_t{0}, std::size_t{2}}) {
                CAPTURE(fuse);
                CAPTURE(static_cast<int>(store));
                CAPTURE(first);
                auto a = std::make_unique<Net>(), b = std::make_unique<Net>();
                copy_state(net, *a);
                copy_state(net, *b);
                nn::activation_arena arena;
                const nn::context own{.phase = nn::mode::train, .store = store, .fuse = fuse};
                nn::context lend = own;
                lend.arena = &arena;
                std::size_t buffers = 0, floats = 0;
                for (int step = 0; step < 7; ++step) {
                    CAPTURE(step);
                    CHECK(same_bits(a->forward(x, own), b->forward(x, lend)));
                    if (first == 0) {
                        const tensor<float> da = a->backward(dy, own, true);
                        CHECK(same_bits(da, b->backward(dy, lend, true)));
                    } else {
                        (void)a->backward_from_layer(dy, own, first);
                        (void)b->backward_from_layer(dy, lend, first);
                    }
                    CHECK(grads(*a) == grads(*b));
                    if (step == 4) {  // the sizes settle within a few steps (measured: by the fourth)
                        buffers = arena.buffers();
                        floats = arena.floats();
                        CHECK(buffers > 0);
                        CHECK(buffers <= most_buffers);
                    } else if (step > 4) {
                        CHECK(arena.buffers() == buffers);  // settled: nothing new allocated
                        CHECK(arena.floats() == floats);
                    }
                }
            }
}

TEST_CASE("models: a backward pass lending its gradients through an arena gives the same gradients") {
    {
        auto net = std::make_unique<r50d_small>();
        net->init(93);
        check_lent_backward(*net, 8);
    }
    {
        auto net = std::make_unique<r18_small>();
        net->init(94);
        check_lent_backward(*net, 8);
    }
    {
        auto net = std::make_unique<cifar20d>();
        net->init(95);
        check_lent_backward(*net, 8);
    }
}
