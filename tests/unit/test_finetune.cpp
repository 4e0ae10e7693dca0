// PyTorch weight names/layouts (io/torch_weights.hpp) and fine-tuning (train/finetune.hpp):
// frozen parts, frozen batch-norm statistics, the backbone's lr scale, init_weights.
// (Parity of the logits with PyTorch itself: ctest interop.torch_weights.)
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "tricks/io/torch_weights.hpp"
#include "tricks/models/cifar_resnet.hpp"
#include "tricks/models/introspection.hpp"
#include "tricks/models/resnet.hpp"
#include "tricks/train/finetune.hpp"
#include "tricks/train/trainer.hpp"

using namespace tricks;
using tricks_test::contains;
using tricks_test::error_of;
using tricks_test::same_bits;
using tricks_test::state_of;
using tricks_test::temp_dir;

namespace {

template <class Model>
std::map<std::string, std::vector<std::int64_t>> names_and_shapes(Model& m) {
    std::map<std::string, std::vector<std::int64_t>> out;
    for (const auto& t : io::torch_state(m)) {
        CHECK_MESSAGE(!out.contains(t.name), "duplicate name ", t.name);
        std::int64_t n = 1;
        for (auto d : t.shape) n *= d;
        CHECK_MESSAGE(std::size_t(n) == t.count, t.name);
        out[t.name] = t.shape;
    }
    return out;
}

using Shape = std::vector<std::int64_t>;

// The network of the trainer tests (test_train.cpp): ResNet-8, widths 8/16/32, ResNet-D shortcuts.
using ft_net = models::cifar_resnet<8, width<8>, in_channels<1>, classes<10>, tweak::avg_down, init::zero_gamma>;

/// Values per body part of ft_net (stem, layer1, layer2, layer3, gap, fc): parameters and BN statistics.
std::vector<std::vector<float>> part_states(ft_net& m) {
    std::vector<std::vector<float>> out;
    std::apply(
        [&](auto&... part) {
            (([&](auto& l) {
                 std::vector<float> v;
                 l.for_each_parameter(
                     [&](nn::parameter& p) { v.insert(v.end(), p.value.span().begin(), p.value.span().end()); });
                 l.for_each_buffer([&](tensor<float>& b) { v.insert(v.end(), b.span().begin(), b.span().end()); });
                 out.push_back(std::move(v));
             }(part)),
             ...);
        },
        static_cast<ft_net::body_type&>(m).layers);
    return out;
}

options ft_options() {
    return {.epochs = 1, .batch = 32, .lr = 0.2, .seed = 11, .progress = false, .max_steps_per_epoch = 3};
}

}  // namespace

TEST_CASE("torch names: torchvision's resnet50 and timm's resnet50d state dicts, with PyTorch's shapes") {
    auto a = std::make_unique<models::resnet50b>();
    const auto tv = names_and_shapes(*a);
    // torchvision resnet50: 320 state-dict entries, of which 53 are num_batches_tracked (one per BN)
    CHECK(tv.size() == 320 - 53);
    CHECK(tv.at("conv1.weight") == Shape{64, 3, 7, 7});
    CHECK(tv.at("bn1.running_var") == Shape{64});
    CHECK(tv.at("layer1.0.conv1.weight") == Shape{64, 64, 1, 1});
    CHECK(tv.at("layer1.0.downsample.0.weight") == Shape{256, 64, 1, 1});
    CHECK(tv.at("layer1.0.downsample.1.bias") == Shape{256});
    CHECK(tv.at("layer3.5.conv2.weight") == Shape{256, 256, 3, 3});
    CHECK(tv.at("layer4.2.bn3.running_mean") == Shape{2048});
    CHECK(tv.at("fc.weight") == Shape{1000, 2048});
    CHECK(tv.at("fc.bias") == Shape{1000});
    CHECK(!tv.contains("layer1.1.downsample.0.weight"));

    auto d = std::make_unique<models::resnet50d>();
    const auto timm = names_and_shapes(*d);
    CHECK(timm.size() == 332 - 55);  // timm's resnet50d: 332 entries, 55 BNs
    CHECK(timm.at("conv1.0.weight") == Shape{32, 3, 3, 3});
    CHECK(timm.at("conv1.1.weight") == Shape{32});
    CHECK(timm.at("conv1.3.weight") == Shape{32, 32, 3, 3});
    CHECK(timm.at("conv1.4.running_mean") == Shape{32});
    CHECK(timm.at("conv1.6.weight") == Shape{64, 32, 3, 3});
    CHECK(timm.at("bn1.weight") == Shape{64});
    CHECK(timm.at("layer1.0.downsample.1.weight") == Shape{256, 64, 1, 1});   // .0 is timm's Identity at stride 1
    CHECK(timm.at("layer2.0.downsample.1.weight") == Shape{512, 256, 1, 1});  // .0 the 2x2 average pool
    CHECK(timm.at("layer2.0.downsample.2.running_var") == Shape{512});
    CHECK(!timm.contains("layer2.0.downsample.0.weight"));

    std::int64_t params = 0;
    for (const auto& t : io::torch_state(*d))
        if (!t.name.ends_with("running_mean") && !t.name.ends_with("running_var")) params += std::int64_t(t.count);
    CHECK(params == parameter_count_v<models::resnet50d>);  // 25,576,264 = timm's resnet50d
}

TEST_CASE("torch layouts: OIHW filters and [out][in] classifier weights land where a naive loop puts them") {
    using net = models::resnet<18, classes<7>>;
    auto m = std::make_unique<net>();
    temp_dir dir;
    // Every tensor gets values that encode their PyTorch index: v = tensor number + index * 1e-6
    // would lose bits; instead each element's value is its own flat PyTorch index (exact in float
    // below 2^24) plus 0.5 * tensor number.
    io::safetensors_writer w;
    const auto state = io::torch_state(*m);
    for (std::size_t k = 0; k < state.size(); ++k) {
        std::vector<float> v(state[k].count);
        for (std::size_t i = 0; i < v.size(); ++i) v[i] = float(i) + 0.5f * float(k % 2);
        w.add(state[k].name, state[k].shape, v);
    }
    w.commit(dir / "w.safetensors");
    io::load_torch_weights(*m, dir / "w.safetensors");

    auto& stem = m->template get<0>().template get<0>();  // conv 3 -> 64, 7x7: ours [y][x][ci][co]
    for (int co : {0, 5, 63})
        for (int ci : {0, 2})
            for (int y : {0, 3, 6})
                for (int x : {0, 1, 6}) {
                    const float ours = stem.weight.value.data()[((y * 7 + x) * 3 + ci) * 64 + co];
                    CHECK(ours == float(((co * 3 + ci) * 7 + y) * 7 + x));
                }
    auto& fc = m->template get<6>();  // linear 512 -> 7: ours [in][out], PyTorch [out][in]
    for (int o : {0, 3, 6})
        for (int i : {0, 100, 511})
            CHECK(fc.weight.value.data()[i * 7 + o] == float(o * 512 + i) + 0.5f * float((state.size() - 2) % 2));

    // save_torch_weights writes the same bytes back (PyTorch's layout), plus num_batches_tracked
    io::save_torch_weights(*m, dir / "back.safetensors");
    const io::safetensors_file a(dir / "w.safetensors"), b(dir / "back.safetensors");
    for (const auto& t : a.tensors()) {
        CHECK(b.info(t.name).shape == t.shape);
        CHECK(b.floats(t.name) == a.floats(t.name));
    }
    CHECK(b.contains("bn1.num_batches_tracked"));
    CHECK(b.info("layer4.1.bn2.num_batches_tracked").dtype == io::st_dtype::i64);
    CHECK(b.metadata().at("format") == "pt");
    // and a reload of our own file into a differently initialised model gives the same state
    auto m2 = std::make_unique<net>();
    m2->init(99);
    io::load_torch_weights(*m2, dir / "back.safetensors");
    CHECK(same_bits(state_of(*m2), state_of(*m)));
}

TEST_CASE("load_torch_weights: missing, unexpected and misshapen tensors are refused by name, nothing loaded") {
    using net = models::resnet<18, classes<7>>;
    auto m = std::make_unique<net>();
    m->init(3);
    temp_dir dir;
    const auto state = io::torch_state(*m);
    const auto write = [&](const std::string& file, auto&& edit) {
        io::safetensors_writer w;
        for (const auto& t : state) {
            std::string name = t.name;
            std::vector<std::int64_t> shape = t.shape;
            std::vector<float> v(t.count, 0.25f);
            if (!edit(name, shape, v)) continue;
            w.add(name, shape, v);
        }
        w.commit(dir / file);
        return dir / file;
    };
    const auto before = state_of(*m);
    const auto missing =
        write("missing.safetensors", [](std::string& n, auto&, auto&) { return n != "layer2.1.bn1.running_var"; });
    std::string msg = error_of([&] { io::load_torch_weights(*m, missing); });
    CHECK(contains(msg, "missing.safetensors"));
    CHECK(contains(msg, "'layer2.1.bn1.running_var'"));
    CHECK(contains(msg, "[128]"));

    const auto extra = write("extra.safetensors", [](std::string& n, auto&, auto&) {
        if (n == "layer1.0.conv1.weight") n = "layer1.0.conv9.weight";
        return true;
    });
    msg = error_of([&] { io::load_torch_weights(*m, extra); });
    CHECK(contains(msg, "layer1.0.conv1.weight"));  // reported missing first; the unexpected one after
    const auto unexpected = write("unexpected.safetensors", [](std::string&, auto&, auto&) { return true; });
    {
        io::safetensors_writer w;  // every tensor, plus one the model lacks
        for (const auto& t : state) w.add(t.name, t.shape, std::vector<float>(t.count, 0.f));
        w.add("layer5.0.conv1.weight", {1}, std::vector<float>{1.f});
        w.commit(dir / "plus.safetensors");
    }
    msg = error_of([&] { io::load_torch_weights(*m, dir / "plus.safetensors"); });
    CHECK(contains(msg, "unexpected tensor 'layer5.0.conv1.weight'"));

    const auto shape =
        write("shape.safetensors", [](std::string& n, std::vector<std::int64_t>& s, std::vector<float>& v) {
            if (n == "layer3.0.conv2.weight") {
                s = {256, 256, 1, 9};
            }
            (void)v;
            return true;
        });
    msg = error_of([&] { io::load_torch_weights(*m, shape); });
    CHECK(contains(msg, "'layer3.0.conv2.weight'"));
    CHECK(contains(msg, "[256, 256, 1, 9]"));
    CHECK(contains(msg, "[256, 256, 3, 3]"));
    CHECK(same_bits(state_of(*m), before));  // every refusal left the model as it was

    // another number of classes: refused unless the classifier is skipped, which keeps ours
    const auto classes1000 =
        write("fc1000.safetensors", [](std::string& n, std::vector<std::int64_t>& s, std::vector<float>& v) {
            if (n == "fc.weight") s = {1000, 512}, v.assign(512000, 0.25f);
            if (n == "fc.bias") s = {1000}, v.assign(1000, 0.25f);
            return true;
        });
    msg = error_of([&] { io::load_torch_weights(*m, classes1000); });
    CHECK(contains(msg, "'fc.weight'"));
    CHECK(contains(msg, "skip_classifier"));
    const std::vector<float> fc_before(m->template get<6>().weight.value.span().begin(),
                                       m->template get<6>().weight.value.span().end());
    io::load_torch_weights(*m, classes1000, {.skip_classifier = true});
    CHECK(m->template get<6>().weight.value.span()[5] == fc_before[5]);
    CHECK(m->template get<0>().template get<0>().weight.value.span()[5] == 0.25f);
    (void)unexpected;
}

TEST_CASE(
    "batch_norm with frozen statistics: the evaluation forward, running stats unchanged, dx = gamma * inv_std * dy") {
    constexpr int C = 5;
    nn::batch_norm<C> bn;
    rng r(7, 1);
    for (int c = 0; c < C; ++c) {
        bn.gamma.value.data()[c] = 0.5f + float(c) * 0.2f;
        bn.beta.value.data()[c] = 0.1f * float(c) - 0.2f;
        bn.running_mean.data()[c] = 0.3f * float(c) - 0.5f;
        bn.running_var.data()[c] = 0.5f + 0.4f * float(c);
    }
    bn.frozen_stats = true;
    tensor<float> x({3, 4, 2, C}), dy({3, 4, 2, C});
    for (auto& v : x.span()) v = float(r.normal());
    for (auto& v : dy.span()) v = float(r.normal());
    const std::vector<float> mean0(bn.running_mean.span().begin(), bn.running_mean.span().end());
    const nn::context train{nn::mode::train}, eval{nn::mode::eval, nn::storage::fp32, false};
    const tensor<float> y = bn.forward(x, train);
    CHECK(std::vector<float>(bn.running_mean.span().begin(), bn.running_mean.span().end()) == mean0);
    nn::batch_norm<C> ev = bn;
    ev.frozen_stats = false;
    const tensor<float> ye = ev.forward(x, eval);
    CHECK(same_bits({y.span().begin(), y.span().end()}, {ye.span().begin(), ye.span().end()}));
    const tensor<float> dx = bn.backward(dy, train, true);
    // float64 closed form: y = gamma * (x - m) / sqrt(v + eps) + beta with m, v constants
    for (int c = 0; c < C; ++c) {
        const double is = 1 / std::sqrt(double(bn.running_var.data()[c]) + 1e-5), g = bn.gamma.value.data()[c];
        double dg = 0, db = 0;
        for (std::size_t p = 0; p < x.size() / C; ++p) {
            const double d = dy.data()[p * C + c], xv = x.data()[p * C + c];
            dg += d * (xv - bn.running_mean.data()[c]) * is;
            db += d;
            CHECK(dx.data()[p * C + c] == doctest::Approx(g * is * d).epsilon(1e-6));
        }
        CHECK(bn.gamma.grad.data()[c] == doctest::Approx(dg).epsilon(1e-5));
        CHECK(bn.beta.grad.data()[c] == doctest::Approx(db).epsilon(1e-5));
    }
    // with the fused ReLU: the same values as the layers one by one (the mask applied to dy)
    nn::relu<C> act;
    nn::batch_norm<C> fused = bn;
    fused.forward_relu(x, train, act.output());
    const tensor<float> dxf = fused.backward_relu(dy, act.output(), train);
    for (std::size_t i = 0; i < x.size(); ++i) {
        const bool on = y.data()[i] > 0;
        CHECK(act.output().data()[i] == (on ? y.data()[i] : 0.f));
        const int c = int(i % C);
        const double is = 1 / std::sqrt(double(bn.running_var.data()[c]) + 1e-5);
        CHECK(dxf.data()[i] == doctest::Approx(on ? bn.gamma.value.data()[c] * is * dy.data()[i] : 0.0).epsilon(1e-6));
    }
}

TEST_CASE("sequential::backward_from_layer: the later layers' gradients bit for bit, none for the earlier ones") {
    auto a = std::make_unique<ft_net>(), b = std::make_unique<ft_net>();
    a->init(5);
    b->init(5);
    tensor<float> x({4, 28, 28, 1});
    rng r(3, 3);
    for (auto& v : x.span()) v = float(r.normal());
    const nn::context ctx{nn::mode::train};
    const auto& za = a->forward(x, ctx);
    tensor<float> dz(za.shape());
    for (auto& v : dz.span()) v = float(r.normal());
    a->backward(dz, ctx, false);
    (void)b->forward(x, ctx);
    b->backward_from_layer(dz, ctx, 2);  // stem and layer1 frozen
    const auto pa = tricks::parts_of(*a);
    const auto ga = a->parameters(), gb = b->parameters();
    for (std::size_t i = 0; i < ga.size(); ++i) {
        const std::vector<float> va(ga[i]->grad.span().begin(), ga[i]->grad.span().end()),
            vb(gb[i]->grad.span().begin(), gb[i]->grad.span().end());
        if (pa.part_of_parameter[i] >= 2)
            CHECK(same_bits(va, vb));
        else
            CHECK(std::all_of(vb.begin(), vb.end(), [](float v) { return v == 0.f; }));
    }
}

TEST_CASE("fine-tuning: frozen parts keep their weights and BN statistics; the rest trains; lr scale 0 freezes") {
    const auto train = tricks_test::synthetic_digits(128, 1, 71), test = tricks_test::synthetic_digits(32, 2, 71);
    tricks_test::omp_threads_guard guard;
    using R = recipe<>;
    trainer<ft_net, R> ref(ft_options());
    const auto init = part_states(ref.model());
    (void)ref.fit(train, test);
    const auto plain = part_states(ref.model());

    options o = ft_options();
    o.freeze_stages = 2;  // stem + layer1
    trainer<ft_net, R> frozen(o);
    (void)frozen.fit(train, test);
    const auto f = part_states(frozen.model());
    REQUIRE(f.size() == 6);
    CHECK(same_bits(f[0], init[0]));
    CHECK(same_bits(f[1], init[1]));
    CHECK(!same_bits(f[2], init[2]));
    CHECK(!same_bits(f[5], init[5]));
    CHECK(!same_bits(f[3], plain[3]));  // layer2 saw other inputs' gradients than with nothing frozen

    o = ft_options();
    o.backbone_lr_scale = 0;  // only the classifier moves (BN statistics still follow the data)
    trainer<ft_net, R> head_only(o);
    (void)head_only.fit(train, test);
    const auto h = part_states(head_only.model());
    for (int p = 0; p < 4; ++p) {
        std::vector<float> params_only;
        int i = 0;
        std::apply(
            [&](auto&... part) {
                (([&](auto& l) {
                     if (i++ == p)
                         l.for_each_parameter([&](nn::parameter& q) {
                             params_only.insert(params_only.end(), q.value.span().begin(), q.value.span().end());
                         });
                 }(part)),
                 ...);
            },
            static_cast<ft_net::body_type&>(head_only.model()).layers);
        CHECK(std::equal(params_only.begin(), params_only.end(), init[std::size_t(p)].begin()));
    }
    CHECK(!same_bits(h[5], init[5]));

    o = ft_options();
    o.freeze_bn_stats = true;  // every BN keeps its statistics (here: mean 0, var 1), weights train
    trainer<ft_net, R> bnf(o);
    (void)bnf.fit(train, test);
    for (auto* b : bnf.model().buffers()) {
        const bool is_mean_or_var = std::all_of(b->span().begin(), b->span().end(), [](float v) { return v == 0.f; }) ||
                                    std::all_of(b->span().begin(), b->span().end(), [](float v) { return v == 1.f; });
        CHECK(is_mean_or_var);
    }
    CHECK(!same_bits(part_states(bnf.model())[1], init[1]));
}

TEST_CASE("fine-tuning: backbone_lr_scale scales the backbone's first update; bad values are refused by name") {
    const auto train = tricks_test::synthetic_digits(64, 1, 73), test = tricks_test::synthetic_digits(16, 2, 73);
    tricks_test::omp_threads_guard guard;
    using R = recipe<>;
    options o = ft_options();
    o.max_steps_per_epoch = 1;
    o.momentum = 0;
    o.weight_decay = 0;
    trainer<ft_net, R> one(o);
    const auto w0 = state_of(one.model());
    (void)one.fit(train, test);
    o.backbone_lr_scale = 0.25;
    trainer<ft_net, R> quarter(o);
    (void)quarter.fit(train, test);
    // one plain SGD step from the same weights and batch: w - lr*s*g, so the backbone moved s times as far
    const auto pa = parts_of(one.model());
    const auto p1 = one.model().parameters(), p4 = quarter.model().parameters();
    std::size_t offset = 0;
    int checked = 0;
    for (std::size_t i = 0; i < p1.size(); ++i) {
        const double s = pa.part_of_parameter[i] == pa.classifier ? 1.0 : 0.25;
        for (std::size_t j = 0; j < p1[i]->value.size(); ++j) {
            const double d1 = double(p1[i]->value.data()[j]) - w0[offset + j],
                         d4 = double(p4[i]->value.data()[j]) - w0[offset + j];
            if (std::abs(d1) > 1e-3) {
                CHECK(d4 == doctest::Approx(s * d1).epsilon(5e-3));
                ++checked;
            }
        }
        offset += p1[i]->value.size();
    }
    CHECK(checked > 50);

    const auto refused = [&](options bad, const std::string& part) {
        std::string msg;
        try {
            trainer<ft_net, R> t(bad);
            (void)t.fit(train, test);
        } catch (const error& e) {
            msg = e.what();
        }
        CAPTURE(msg);
        CHECK(contains(msg, part));
    };
    options bad = ft_options();
    bad.freeze_stages = 6;
    refused(bad, "options.freeze_stages = 6");
    bad = ft_options();
    bad.backbone_lr_scale = -1;
    refused(bad, "options.backbone_lr_scale = -1");
    bad = ft_options();
    bad.init_skip_classifier = true;
    refused(bad, "init_weights is empty");
    bad = ft_options();
    bad.init_weights = "/nonexistent/w.safetensors";
    refused(bad, "/nonexistent/w.safetensors");
}

TEST_CASE("fine-tuning: options.init_weights is what a fresh fit() starts from; the settings record it") {
    const auto train = tricks_test::synthetic_digits(64, 1, 75), test = tricks_test::synthetic_digits(16, 2, 75);
    tricks_test::omp_threads_guard guard;
    temp_dir dir;
    auto donor = std::make_unique<ft_net>();
    donor->init(1234);
    for (auto* b : donor->buffers())  // statistics a fresh model does not have
        for (auto& v : b->span()) v += 0.125f;
    io::save_torch_weights(*donor, dir / "donor.safetensors");
    options o = ft_options();
    o.init_weights = dir / "donor.safetensors";
    o.freeze_stages = 5;  // everything but the classifier: those parts must be the donor's after training
    trainer<ft_net, recipe<>> t(o);
    (void)t.fit(train, test);
    const auto got = part_states(t.model()), want = part_states(*donor);
    for (int p = 0; p < 5; ++p) CHECK(same_bits(got[std::size_t(p)], want[std::size_t(p)]));
    CHECK(!same_bits(got[5], want[5]));  // the classifier trained from the donor's
    const auto s = option_settings(t.config());
    REQUIRE(find_setting(s, "init_weights") != nullptr);
    CHECK(contains(find_setting(s, "init_weights")->value, "donor.safetensors"));
    CHECK(find_setting(s, "freeze_stages")->rule == on_resume::must_match);

    // a file for another network is refused by fit(), naming the file, the tensor and both shapes
    io::safetensors_writer w;
    w.add("conv1.weight", {64, 3, 7, 7}, std::vector<float>(64 * 3 * 49, 0.f));
    w.commit(dir / "other.safetensors");
    options bad = ft_options();
    bad.init_weights = dir / "other.safetensors";
    trainer<ft_net, recipe<>> refused(bad);
    std::string msg;
    try {
        (void)refused.fit(train, test);
    } catch (const data_error& e) {
        msg = e.what();
    }
    CHECK(contains(msg, "other.safetensors"));
    INFO(msg);
    CHECK(contains(msg, "'conv1.weight' has shape [64, 3, 7, 7]"));
    CHECK(contains(msg, "expects [8, 1, 3, 3]"));
}
