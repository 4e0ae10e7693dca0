// ONNX export (io/onnx.hpp): the file parsed back with libprotobuf (onnx.proto's generated classes):
// the node sequence of a small ResNet-D with and without batch-norm folding, initializer shapes in
// OIHW and their values against naive loops over tricks' HWIO / In x Out layouts, the folded
// weights and biases, ResNet-D's AveragePool attributes, symbolic and fixed input dimensions,
// opsets and IR versions, and errors that name the file. Numerics against ONNX Runtime:
// tests/examples/onnx_parity.sh. Built into tricks_onnx_tests (linked with tricks::onnx), not
// into tricks_tests, which does not link protobuf.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <onnx/onnx.pb.h>

#include "tricks/io/onnx.hpp"
#include "tricks/models/cifar_resnet.hpp"
#include "tricks/models/introspection.hpp"
#include "tricks/models/resnet.hpp"
#include "helpers.hpp"

namespace {

namespace t = tricks;
using namespace tricks_test;

// Depth 8: one basic block per stage; width 8 (deep stem 4, 4, 8); stages 2 and 3 downsample with
// ResNet-D's avg-pool shortcut.
using small =
    t::models::cifar_resnet<8, t::width<8>, t::in_channels<3>, t::classes<5>, t::tweak::deep_stem, t::tweak::avg_down>;

onnx::ModelProto read_model(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    onnx::ModelProto m;
    REQUIRE(m.ParseFromString(bytes));
    return m;
}

std::vector<std::string> op_types(const onnx::GraphProto& g) {
    std::vector<std::string> ops;
    for (const auto& n : g.node()) ops.push_back(n.op_type());
    return ops;
}

const onnx::TensorProto& initializer(const onnx::GraphProto& g, const std::string& name) {
    for (const auto& t : g.initializer())
        if (t.name() == name) return t;
    FAIL("no initializer " << name);
    throw;
}

std::vector<float> floats_of(const onnx::TensorProto& t) {
    REQUIRE(t.data_type() == onnx::TensorProto::FLOAT);
    std::vector<float> v(t.raw_data().size() / sizeof(float));
    std::memcpy(v.data(), t.raw_data().data(), t.raw_data().size());
    return v;
}

std::vector<std::int64_t> dims_of(const onnx::TensorProto& t) { return {t.dims().begin(), t.dims().end()}; }

std::map<std::string, const onnx::AttributeProto*> attributes(const onnx::NodeProto& n) {
    std::map<std::string, const onnx::AttributeProto*> a;
    for (const auto& x : n.attribute()) a[x.name()] = &x;
    return a;
}

/// BN statistics away from their defaults, so folding changes the weights.
template <class Model>
void randomise_batch_norms(Model& m, std::uint64_t seed) {
    t::rng r(seed, 7);
    t::nn::visit_leaves(m, [&]<class L>(L& l) {
        if constexpr (t::nn::is_batch_norm_v<L>) {
            for (auto& v : l.gamma.value.span()) v = 0.5f + r.uniform();
            for (auto& v : l.beta.value.span()) v = 0.2f * static_cast<float>(r.normal());
            for (auto& v : l.running_mean.span()) v = 0.2f * static_cast<float>(r.normal());
            for (auto& v : l.running_var.span()) v = 0.5f + r.uniform();
        }
    });
}

const std::vector<std::string> stem_folded = {"Conv", "Relu", "Conv", "Relu", "Conv", "Relu"};
const std::vector<std::string> identity_block_folded = {"Conv", "Relu", "Conv", "Add", "Relu"};
const std::vector<std::string> avg_down_block_folded = {"Conv", "Relu", "Conv", "AveragePool", "Conv", "Add", "Relu"};

}  // namespace

TEST_CASE("onnx: folded graph of a small ResNet-D: node sequence, OIHW shapes, symbolic dims") {
    temp_dir dir("tricks_test_onnx_");
    small m;
    m.init(3);
    randomise_batch_norms(m, 4);
    t::io::export_onnx(m, dir / "small.onnx");
    const onnx::ModelProto model = read_model(dir / "small.onnx");
    CHECK(model.ir_version() == 7);
    REQUIRE(model.opset_import_size() == 1);
    CHECK(model.opset_import(0).domain().empty());
    CHECK(model.opset_import(0).version() == 13);
    CHECK(model.producer_name() == "tricks");
    const auto& g = model.graph();
    CHECK(g.name() == small::name());

    std::vector<std::string> expect = stem_folded;
    for (const auto* block : {&identity_block_folded, &avg_down_block_folded, &avg_down_block_folded})
        expect.insert(expect.end(), block->begin(), block->end());
    expect.insert(expect.end(), {"GlobalAveragePool", "Flatten", "Gemm"});
    CHECK(op_types(g) == expect);

    // input [N, 3, H, W] with N, H, W symbolic; output [N, 5]
    REQUIRE(g.input_size() == 1);
    REQUIRE(g.output_size() == 1);
    CHECK(g.input(0).name() == "input");
    CHECK(g.output(0).name() == "logits");
    CHECK(g.input(0).type().tensor_type().elem_type() == onnx::TensorProto::FLOAT);
    const auto& in = g.input(0).type().tensor_type().shape();
    REQUIRE(in.dim_size() == 4);
    CHECK(in.dim(0).dim_param() == "N");
    CHECK(in.dim(1).dim_value() == 3);
    CHECK(in.dim(2).dim_param() == "H");
    CHECK(in.dim(3).dim_param() == "W");
    const auto& out = g.output(0).type().tensor_type().shape();
    REQUIRE(out.dim_size() == 2);
    CHECK(out.dim(0).dim_param() == "N");
    CHECK(out.dim(1).dim_value() == 5);
    CHECK(g.node(g.node_size() - 1).output(0) == "logits");
    CHECK(g.node(0).input(0) == "input");

    // Every node's inputs are the graph input, an initializer or an earlier node's output.
    std::map<std::string, int> known{{"input", 1}};
    for (const auto& i : g.initializer()) known[i.name()] = 1;
    for (const auto& n : g.node()) {
        for (const auto& i : n.input())
            CHECK_MESSAGE(known.count(i), n.name() << " reads " << i << " before it is written");
        for (const auto& o : n.output()) known[o] = 1;
    }

    // The stem's first conv (3 -> 4, 3x3) as OIHW with its folded bias; the classifier [5][32].
    CHECK(dims_of(initializer(g, "0.0.0.weight")) == std::vector<std::int64_t>{4, 3, 3, 3});
    CHECK(dims_of(initializer(g, "0.0.0.bias")) == std::vector<std::int64_t>{4});
    CHECK(dims_of(initializer(g, "5.weight")) == std::vector<std::int64_t>{5, 32});
    CHECK(dims_of(initializer(g, "5.bias")) == std::vector<std::int64_t>{5});
    // stage 2's first block: 3x3 stride-2 conv 8 -> 16; its shortcut's 1x1 conv after the avg pool
    CHECK(dims_of(initializer(g, "2.0.branch.0.weight")) == std::vector<std::int64_t>{16, 8, 3, 3});
    CHECK(dims_of(initializer(g, "2.0.shortcut.1.weight")) == std::vector<std::int64_t>{16, 8, 1, 1});

    for (const auto& n : g.node()) {
        const auto a = attributes(n);
        if (n.op_type() == "AveragePool") {  // ResNet-D's shortcut: 2x2 stride 2, ceil mode, padding not counted
            REQUIRE(a.size() == 5);
            CHECK(std::vector<std::int64_t>(a.at("kernel_shape")->ints().begin(), a.at("kernel_shape")->ints().end()) ==
                  std::vector<std::int64_t>{2, 2});
            CHECK(std::vector<std::int64_t>(a.at("strides")->ints().begin(), a.at("strides")->ints().end()) ==
                  std::vector<std::int64_t>{2, 2});
            CHECK(std::vector<std::int64_t>(a.at("pads")->ints().begin(), a.at("pads")->ints().end()) ==
                  std::vector<std::int64_t>{0, 0, 0, 0});
            CHECK(a.at("ceil_mode")->type() == onnx::AttributeProto::INT);
            CHECK(a.at("ceil_mode")->i() == 1);
            CHECK(a.at("count_include_pad")->i() == 0);
        }
        if (n.name() == "2.0.branch.0") {  // Conv: stride 2, pad 1, kernel 3, folded bias input
            REQUIRE(n.op_type() == "Conv");
            CHECK(n.input_size() == 3);
            CHECK(a.at("strides")->ints(0) == 2);
            CHECK(a.at("pads")->ints(3) == 1);
            CHECK(a.at("kernel_shape")->ints(1) == 3);
        }
        if (n.op_type() == "Gemm") CHECK(a.at("transB")->i() == 1);
    }
}

TEST_CASE("onnx: weights in OIHW and In x Out -> [Out][In], and batch norms folded, against naive loops") {
    temp_dir dir("tricks_test_onnx_");
    small m;
    m.init(5);
    randomise_batch_norms(m, 6);
    t::io::export_onnx(m, dir / "fold.onnx");
    t::io::export_onnx(m, dir / "keep.onnx", {.fold_batch_norm = false});
    const auto folded = read_model(dir / "fold.onnx").graph();
    const auto kept = read_model(dir / "keep.onnx").graph();

    // The deep stem's second conv (4 -> 4, 3x3) and the BN after it.
    auto& conv = m.get<0>().get<1>().get<0>();
    auto& bn = m.get<0>().get<1>().get<1>();
    constexpr int K = 3, Ci = 4, Co = 4;
    const float* w = conv.weight.value.data();  // [K][K][Ci][Co]
    const std::vector<float> oihw = floats_of(initializer(kept, "0.1.0.weight"));
    const std::vector<float> wf = floats_of(initializer(folded, "0.1.0.weight"));
    const std::vector<float> bf = floats_of(initializer(folded, "0.1.0.bias"));
    REQUIRE(oihw.size() == std::size_t{K * K * Ci * Co});
    for (int o = 0; o < Co; ++o) {
        const double a = double(bn.gamma.value.data()[o]) / std::sqrt(double(bn.running_var.data()[o]) + bn.eps);
        CHECK(bf[o] == doctest::Approx(bn.beta.value.data()[o] - bn.running_mean.data()[o] * a).epsilon(1e-6));
        for (int i = 0; i < Ci; ++i)
            for (int kh = 0; kh < K; ++kh)
                for (int kw = 0; kw < K; ++kw) {
                    const float hwio = w[((kh * K + kw) * Ci + i) * Co + o];
                    const std::size_t at = ((o * Ci + i) * K + kh) * K + kw;
                    CHECK(oihw[at] == hwio);  // exact: a permutation
                    CHECK(wf[at] == doctest::Approx(hwio * a).epsilon(1e-6));
                }
    }
    // kept: the BN's own node and tensors, epsilon 1e-5
    CHECK(floats_of(initializer(kept, "0.1.1.running_var")) ==
          std::vector<float>(bn.running_var.data(), bn.running_var.data() + Co));
    CHECK(floats_of(initializer(kept, "0.1.1.weight")) ==
          std::vector<float>(bn.gamma.value.data(), bn.gamma.value.data() + Co));
    int bns = 0;
    for (const auto& n : kept.node())
        if (n.op_type() == "BatchNormalization") {
            ++bns;
            CHECK(n.input_size() == 5);
            CHECK(attributes(n).at("epsilon")->f() == doctest::Approx(1e-5));
        }
    CHECK(bns == 3 + 2 + 3 + 3);  // stem 3, identity block 2, two downsampling blocks 3 each
    for (const auto& n : folded.node()) CHECK(n.op_type() != "BatchNormalization");
    const std::vector<std::string> kept_stem = {"Conv", "BatchNormalization", "Relu"};
    const std::vector<std::string> kept_ops = op_types(kept);
    CHECK(std::vector<std::string>(kept_ops.begin(), kept_ops.begin() + 3) == kept_stem);

    // classifier: tricks' [In=32][Out=5] as [Out][In]
    auto& fc = m.get<5>();
    const std::vector<float> gw = floats_of(initializer(kept, "5.weight"));
    for (int o = 0; o < 5; ++o)
        for (int i = 0; i < 32; ++i) CHECK(gw[o * 32 + i] == fc.weight.value.data()[i * 5 + o]);
    CHECK(floats_of(initializer(kept, "5.bias")) == std::vector<float>(fc.bias.value.data(), fc.bias.value.data() + 5));

    // the hwio_to_oihw helper itself on a non-square case (Ci != Co)
    std::vector<float> h(2 * 2 * 3 * 5);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i);
    const auto o = t::io::hwio_to_oihw(h.data(), 2, 3, 5);
    for (int co = 0; co < 5; ++co)
        for (int ci = 0; ci < 3; ++ci)
            for (int kh = 0; kh < 2; ++kh)
                for (int kw = 0; kw < 2; ++kw)
                    CHECK(o[((co * 3 + ci) * 2 + kh) * 2 + kw] == h[((kh * 2 + kw) * 3 + ci) * 5 + co]);
}

TEST_CASE("onnx: ImageNet ResNet-50-D: stem max pool, fixed dimensions, opset and IR version, metadata") {
    temp_dir dir("tricks_test_onnx_");
    auto m = std::make_unique<t::models::resnet50d>();  // 25.6M parameters: on the heap
    m->init(1);
    t::io::export_onnx(*m, dir / "r50d.onnx", {.opset = 17, .batch = 2, .height = 224, .width = 224});
    const onnx::ModelProto model = read_model(dir / "r50d.onnx");
    CHECK(model.ir_version() == 8);
    CHECK(model.opset_import(0).version() == 17);
    const auto& g = model.graph();
    const auto& in = g.input(0).type().tensor_type().shape();
    CHECK(in.dim(0).dim_value() == 2);
    CHECK(in.dim(1).dim_value() == 3);
    CHECK(in.dim(2).dim_value() == 224);
    CHECK(in.dim(3).dim_value() == 224);
    CHECK(g.output(0).type().tensor_type().shape().dim(1).dim_value() == 1000);
    // every parameter is exported once: folded, the conv weights + one bias per folded BN + the classifier
    std::int64_t params = 0;
    for (const auto& i : g.initializer()) {
        std::int64_t n = 1;
        for (auto d : i.dims()) n *= d;
        CHECK(static_cast<std::size_t>(n) * sizeof(float) == i.raw_data().size());
        params += n;
    }
    std::int64_t bn_channels = 0;
    t::nn::visit_leaves(*m, [&]<class L>(L&) {
        if constexpr (t::nn::is_batch_norm_v<L>) bn_channels += L::in_channels;
    });
    CHECK(bn_channels == 26'624);
    CHECK(params ==
          t::parameter_count_v<t::models::resnet50d> - bn_channels);  // each BN's 2C parameters become C biases
    std::map<std::string, int> ops;
    for (const auto& n : g.node()) ++ops[n.op_type()];
    CHECK(ops["Conv"] == 3 + 16 * 3 + 4);  // deep stem, 16 bottlenecks, 4 projection shortcuts
    CHECK(ops["MaxPool"] == 1);
    CHECK(ops["AveragePool"] == 3);  // stages 2-4's first shortcut (stage 1 has stride 1)
    CHECK(ops["Add"] == 16);
    CHECK(ops["Relu"] == 3 + 16 * 3);
    for (const auto& n : g.node())
        if (n.op_type() == "MaxPool") {
            const auto a = attributes(n);
            CHECK(a.at("kernel_shape")->ints(0) == 3);
            CHECK(a.at("strides")->ints(0) == 2);
            CHECK(a.at("pads")->ints(0) == 1);
        }
    std::map<std::string, std::string> meta;
    for (const auto& p : model.metadata_props()) meta[p.key()] = p.value();
    CHECK(meta["tricks.model"] == "resnet50-D");
    CHECK(meta["tricks.fingerprint"] == std::to_string(t::models::resnet50d::fingerprint()));
    CHECK(meta["tricks.batch_norm"] == "folded");
}

TEST_CASE("onnx: errors name the file or the option; a failed write leaves no file") {
    temp_dir dir("tricks_test_onnx_");
    small m;
    m.init(1);
    { std::ofstream(dir / "plain_file") << "x"; }
    const auto bad = dir / "plain_file" / "net.onnx";  // a path below a regular file
    std::string msg;
    try {
        t::io::export_onnx(m, bad);
    } catch (const t::data_error& e) {
        msg = e.what();
    }
    CHECK(contains(msg, "tricks::onnx:"));
    CHECK(contains(msg, bad.string()));
    std::string opset_msg;
    try {
        t::io::export_onnx(m, dir / "x.onnx", {.opset = 9});
    } catch (const t::error& e) {
        opset_msg = e.what();
    }
    CHECK(contains(opset_msg, "opset 9 is not supported"));
    CHECK(!std::filesystem::exists(dir / "x.onnx"));
    std::string small_msg;
    try {
        t::io::export_onnx(m, dir / "x.onnx", {.height = 1, .width = 1});
    } catch (const t::error& e) {
        small_msg = e.what();
    }
    CHECK(contains(small_msg, "too small"));

    // over an existing file: replaced whole, no temporary left behind
    { std::ofstream(dir / "net.onnx") << "old"; }
    t::io::export_onnx(m, dir / "net.onnx");
    CHECK(read_model(dir / "net.onnx").graph().node_size() > 0);
    CHECK(!std::filesystem::exists(dir / "net.onnx.tmp"));
}
