#pragma once
// ONNX export of any model type: export_onnx(model, "net.onnx") writes the evaluation-mode network
// as an ONNX graph in NCHW (the ONNX convention; tricks runs NHWC), checked against ONNX Runtime
// and onnx.checker by tests/examples/onnx_parity.sh.
//
//   input  "input"  float32 [N, C, H, W], N symbolic ("N"), H and W symbolic ("H", "W") unless the
//                   options fix them; the images normalised as in training (the graph holds no
//                   normalisation: (pixel / 255 - mean) / std per channel, the training set's
//                   statistics for IDX data, the paper's ImageNet mean/std for image folders)
//   output "logits" float32 [N, classes] (no softmax)
//
// Nodes: Conv (weights converted from HWIO to OIHW; with options.fold_batch_norm, the default, the
// batch norm after it folded into its weights and a bias), BatchNormalization (fold_batch_norm =
// false), Relu, MaxPool, AveragePool (ResNet-D's shortcut: ceil_mode 1, count_include_pad 0), Add
// and Relu for a residual block, GlobalAveragePool, Flatten and Gemm for the classifier.
//
// The walk builds a plain graph (io/onnx_graph.hpp, no protobuf in sight); write_onnx() serialises
// it with libprotobuf and the onnx.proto of Debian's python3-onnx. It lives in the static library
// tricks::onnx (CMake: TRICKS_ONNX, built when protobuf, protoc and onnx.proto are found): a program
// that calls export_onnx links tricks::onnx. docs/design.md, "ONNX export".
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/io/onnx_graph.hpp"
#include "tricks/nn/visit.hpp"

namespace tricks::io {

struct onnx_export_options {
    /// Fold each batch norm into the convolution before it (weights scaled per output channel, a
    /// bias added); false keeps BatchNormalization nodes with the running statistics.
    bool fold_batch_norm = true;
    /// The default ONNX opset ("ai.onnx" domain); 11 to 21 are written (onnx.checker 1.12, Debian 12's,
    /// knows opsets up to 17). The IR version follows the opset.
    int opset = 13;
    /// Fixed input dimensions; 0 leaves the dimension symbolic ("N", "H", "W").
    int batch = 0, height = 0, width = 0;
};

// ---- layout conversions ------------------------------------------------------------------------

/// tricks' [K][K][Cin][Cout] (HWIO) convolution weights as ONNX's [Cout][Cin][K][K] (OIHW).
inline std::vector<float> hwio_to_oihw(const float* w, int k, int cin, int cout) {
    std::vector<float> o(static_cast<std::size_t>(k) * k * cin * cout);
    for (int kh = 0; kh < k; ++kh)
        for (int kw = 0; kw < k; ++kw)
            for (int i = 0; i < cin; ++i)
                for (int c = 0; c < cout; ++c)
                    o[((static_cast<std::size_t>(c) * cin + i) * k + kh) * k + kw] =
                        w[((static_cast<std::size_t>(kh) * k + kw) * cin + i) * cout + c];
    return o;
}

namespace detail {

template <class>
inline constexpr bool onnx_unknown_layer = false;

inline std::string onnx_child(const std::string& path, std::size_t i) {
    return path.empty() ? std::to_string(i) : path + "." + std::to_string(i);
}

inline onnx_attribute onnx_int(std::string name, std::int64_t v) {
    return {std::move(name), onnx_attribute::kind::integer, v, 0, {}};
}
inline onnx_attribute onnx_ints(std::string name, std::vector<std::int64_t> v) {
    return {std::move(name), onnx_attribute::kind::integers, 0, 0, std::move(v)};
}
inline onnx_attribute onnx_real(std::string name, float v) {
    return {std::move(name), onnx_attribute::kind::real, 0, v, {}};
}

/// Builds the graph in forward order. Values are named by the path of the layer that produced them
/// ("1.0.branch.3": body element 1, its element 0, the residual's branch, its element 3); the model's
/// last value is renamed "logits". A convolution is held back until the next layer is seen, so a
/// batch norm right after it can be folded into it.
class onnx_builder {
public:
    onnx_builder(onnx_graph& g, const onnx_export_options& o)
        : g_(g), o_(o), cur_(g.input.name), fixed_(o.height > 0 && o.width > 0), dims_{o.height, o.width} {}

    template <class L>
    void walk(L& l, const std::string& path) {
        if constexpr (nn::is_leaf_v<L>) {
            if (fixed_) {
                dims_ = L::out_dims(dims_);
                require<error>(dims_.h >= 1 && dims_.w >= 1, "tricks::onnx: a ", o_.height, "x", o_.width,
                               " input is too small: ", path, " (", L::describe(), ") has no output pixels");
            }
        }
        if constexpr (nn::model_type<L>) {
            walk(static_cast<typename L::body_type&>(l), path);
        } else if constexpr (nn::is_sequential_v<L>) {
            std::size_t i = 0;
            std::apply([&](auto&... child) { (walk(child, onnx_child(path, i++)), ...); }, l.layers);
        } else if constexpr (nn::is_repeat_v<L>) {
            for (std::size_t i = 0; i < l.items.size(); ++i) walk(l.items[i], onnx_child(path, i));
        } else if constexpr (nn::is_residual_v<L>) {
            // relu(branch(x) + shortcut(x))
            const std::string x = value();
            const dims in = dims_;
            walk(l.branch, path + ".branch");
            const std::string a = value();
            const dims out = dims_;
            cur_ = x;
            dims_ = in;
            walk(l.shortcut, path + ".shortcut");
            const std::string s = value();
            require<error>(!fixed_ || (dims_.h == out.h && dims_.w == out.w), "tricks::onnx: at a ", o_.height, "x",
                           o_.width, " input, the block ", path, " has a ", out.h, "x", out.w, " branch and a ",
                           dims_.h, "x", dims_.w, " shortcut");
            node("Add", path + ".add", {a, s}, {});
            node("Relu", path + ".relu", {cur_}, {});
        } else if constexpr (nn::is_conv_v<L>) {
            flush();
            conv_ = pending_conv{path,
                                 value(),
                                 hwio_to_oihw(l.weight.value.data(), L::kernel, L::in_channels, L::out_channels),
                                 {},
                                 L::out_channels,
                                 L::in_channels,
                                 L::kernel,
                                 L::stride,
                                 L::pad};
        } else if constexpr (nn::is_batch_norm_v<L>) {
            batch_norm(l, path);
        } else if constexpr (nn::is_relu_v<L>) {
            node("Relu", path, {value()}, {});
        } else if constexpr (nn::is_max_pool_v<L>) {
            node("MaxPool", path, {value()}, window(L::kernel, L::stride, L::pad));
        } else if constexpr (nn::is_avg_pool_v<L>) {
            auto a = window(L::kernel, L::stride, L::pad);
            a.push_back(onnx_int("ceil_mode", L::ceil_mode ? 1 : 0));
            a.push_back(onnx_int("count_include_pad", L::count_include_pad ? 1 : 0));
            node("AveragePool", path, {value()}, std::move(a));
        } else if constexpr (nn::is_global_avg_pool_v<L>) {
            node("GlobalAveragePool", path, {value()}, {});
        } else if constexpr (nn::is_linear_v<L>) {
            // [N, In, 1, 1] -> [N, In]; Gemm with B = the weights as [Out][In] (transB, PyTorch's layout)
            node("Flatten", path + ".flatten", {value()}, {onnx_int("axis", 1)});
            constexpr int in = L::in_channels, out = L::out_channels;
            std::vector<float> wt(static_cast<std::size_t>(in) * out);
            const float* w = l.weight.value.data();  // [In][Out]
            for (int i = 0; i < in; ++i)
                for (int c = 0; c < out; ++c)
                    wt[static_cast<std::size_t>(c) * in + i] = w[static_cast<std::size_t>(i) * out + c];
            init(path + ".weight", {out, in}, std::move(wt));
            init(path + ".bias", {out}, span_copy(l.bias.value));
            node("Gemm", path, {cur_, path + ".weight", path + ".bias"}, {onnx_int("transB", 1)});
        } else if constexpr (nn::is_identity_v<L>) {
            // no node: the value passes through
        } else {
            static_assert(
                onnx_unknown_layer<L>,
                "tricks::io::export_onnx: a layer type the ONNX exporter does not know; add it to io/onnx.hpp");
        }
    }

    /// The current value's name, after writing a held-back convolution.
    std::string value() {
        flush();
        return cur_;
    }

private:
    struct pending_conv {
        std::string path, input;
        std::vector<float> w;     // OIHW
        std::vector<float> bias;  // empty: none
        int cout, cin, k, stride, pad;
    };

    template <class BN>
    void batch_norm(BN& bn, const std::string& path) {
        constexpr int c = BN::in_channels;
        const float* gamma = bn.gamma.value.data();
        const float* beta = bn.beta.value.data();
        const float* mean = bn.running_mean.data();
        const float* var = bn.running_var.data();
        if (conv_ && o_.fold_batch_norm) {
            // y = gamma (conv(x) - mean) / sqrt(var + eps) + beta = conv_{w a}(x) + (beta - mean a),
            // a = gamma / sqrt(var + eps) per output channel, in double
            auto& p = *conv_;
            const std::size_t per = static_cast<std::size_t>(p.cin) * p.k * p.k;
            p.bias.resize(c);
            for (int o = 0; o < c; ++o) {
                const double a = double(gamma[o]) / std::sqrt(double(var[o]) + double(bn.eps));
                for (std::size_t j = 0; j < per; ++j) p.w[o * per + j] = static_cast<float>(p.w[o * per + j] * a);
                p.bias[o] = static_cast<float>(double(beta[o]) - double(mean[o]) * a);
            }
            flush();
            return;
        }
        const std::string x = value();
        init(path + ".weight", {c}, {gamma, gamma + c});
        init(path + ".bias", {c}, {beta, beta + c});
        init(path + ".running_mean", {c}, {mean, mean + c});
        init(path + ".running_var", {c}, {var, var + c});
        node("BatchNormalization", path,
             {x, path + ".weight", path + ".bias", path + ".running_mean", path + ".running_var"},
             {onnx_real("epsilon", bn.eps)});
    }

    void flush() {
        if (!conv_) return;
        pending_conv p = std::move(*conv_);
        conv_.reset();
        init(p.path + ".weight", {p.cout, p.cin, p.k, p.k}, std::move(p.w));
        std::vector<std::string> in{p.input, p.path + ".weight"};
        if (!p.bias.empty()) {
            init(p.path + ".bias", {p.cout}, std::move(p.bias));
            in.push_back(p.path + ".bias");
        }
        auto a = window(p.k, p.stride, p.pad);
        a.insert(a.begin(), onnx_ints("dilations", {1, 1}));
        a.push_back(onnx_int("group", 1));
        node("Conv", p.path, std::move(in), std::move(a));
    }

    static std::vector<onnx_attribute> window(std::int64_t k, std::int64_t s, std::int64_t p) {
        return {onnx_ints("kernel_shape", {k, k}), onnx_ints("strides", {s, s}), onnx_ints("pads", {p, p, p, p})};
    }
    static std::vector<float> span_copy(const tensor<float>& t) { return {t.data(), t.data() + t.size()}; }

    void init(std::string name, std::vector<std::int64_t> dims, std::vector<float> data) {
        g_.initializers.push_back({std::move(name), std::move(dims), std::move(data)});
    }
    void node(std::string op, std::string name, std::vector<std::string> in, std::vector<onnx_attribute> attrs) {
        cur_ = name;
        g_.nodes.push_back({std::move(op), name, std::move(in), {std::move(name)}, std::move(attrs)});
    }

    onnx_graph& g_;
    const onnx_export_options& o_;
    std::string cur_;
    bool fixed_;  // height and width given: sizes are checked layer by layer
    dims dims_;
    std::optional<pending_conv> conv_;
};

}  // namespace detail

/// The evaluation-mode graph of `m` (see the top of this file); what export_onnx writes.
template <nn::model_type Model>
onnx_graph build_onnx_graph(Model& m, const onnx_export_options& o = {}) {
    require<error>(o.opset >= 11 && o.opset <= 21, "tricks::onnx: opset ", o.opset, " is not supported (11 to 21)");
    require<error>(o.batch >= 0 && o.height >= 0 && o.width >= 0, "tricks::onnx: negative input dimension (batch ",
                   o.batch, ", height ", o.height, ", width ", o.width, "); 0 leaves one symbolic");
    onnx_graph g;
    g.name = Model::name();
    g.opset = o.opset;
    g.ir_version = onnx_ir_version(o.opset);
    g.doc = Model::name() + ", exported by tricks in evaluation mode" +
            (o.fold_batch_norm ? " (batch norms folded into the convolutions)" : "") +
            ". Input: float32 NCHW images normalised as in training, (pixel / 255 - mean) / std per channel; "
            "the graph holds no normalisation. Output: logits, no softmax.";
    auto dim = [](int v, const char* name) { return v > 0 ? onnx_dim{v, {}} : onnx_dim{0, name}; };
    g.input = {"input",
               {dim(o.batch, "N"), onnx_dim{Model::input_channels, {}}, dim(o.height, "H"), dim(o.width, "W")}};
    g.output = {"logits", {dim(o.batch, "N"), onnx_dim{Model::classes, {}}}};
    g.metadata = {{"tricks.model", Model::name()},
                  {"tricks.fingerprint", std::to_string(Model::fingerprint())},
                  {"tricks.structure", Model::structure()},
                  {"tricks.batch_norm", o.fold_batch_norm ? "folded" : "kept"},
                  {"tricks.input", "float32 NCHW, normalised as in training (no normalisation in the graph)"}};
    detail::onnx_builder b(g, o);
    b.walk(m, "");
    b.value();
    require<error>(!g.nodes.empty(), "tricks::onnx: ", Model::name(), " has no layers to export");
    g.nodes.back().outputs.front() = g.output.name;
    return g;
}

/// Writes `m` as an ONNX model to `out` (atomically; errors name the file). Needs tricks::onnx.
template <nn::model_type Model>
void export_onnx(Model& m, const std::filesystem::path& out, const onnx_export_options& o = {}) {
    write_onnx(build_onnx_graph(m, o), out);
}

}  // namespace tricks::io
