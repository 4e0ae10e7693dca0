#pragma once
// PyTorch weights in and out: a model's parameters and batch-norm statistics under the key names
// and layouts of torchvision's and timm's ResNet state dicts, in a safetensors file.
//
//   models::resnet50b net;                                   // torchvision's resnet50 is ResNet-B
//   io::load_torch_weights(net, "resnet50.safetensors");     // torchvision names, OIHW filters
//   models::resnet50d d;
//   io::load_torch_weights(d, "resnet50d.safetensors");      // timm's resnet50d names
//   io::save_torch_weights(d, "mine.safetensors");           // loads into timm's resnet50d, strict
//
// Names (the state dict of torchvision.models.resnetN / timm's resnetNd):
//   stem      conv1, bn1 (7x7); deep stem (tweak::deep_stem, ResNet-C/D, timm's stem_type="deep"):
//             conv1.0, conv1.1, conv1.3, conv1.4, conv1.6 (conv, BN, conv, BN, conv) and bn1
//   stage k   layer{k}.{i}.conv1/bn1/conv2/bn2[/conv3/bn3]; projection shortcut downsample.0 (conv)
//             and downsample.1 (BN); with tweak::avg_down (timm's avg_down) downsample.1 (conv) and
//             downsample.2 (BN) after the pool at .0, also where the pool is an identity (stride 1)
//   head      fc.weight, fc.bias
// A BN also has running_mean and running_var; PyTorch's num_batches_tracked is accepted and ignored
// on load, and written as 0 on save (so PyTorch's strict load accepts our files). The CIFAR-style
// ResNets use the same scheme (layer1..3), there being no standard.
//
// Which network the weights compute is not in the file: torchvision's resnet50/101/152 put the
// stride on the 3x3 conv ("ResNet v1.5"), which is ResNet-B here (resnet50b); loaded into
// resnet<50> (ResNet-A, stride on the first 1x1) the same weights compute another function. For
// resnet18/34 (basic blocks) A and B are the same network.
//
// Layouts: a conv filter is [K][K][Cin][Cout] here and [Cout][Cin][K][K] (OIHW) in PyTorch; the
// classifier's weight is [In][Out] here and [Out][In] there.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/io/safetensors.hpp"
#include "tricks/nn/visit.hpp"

namespace tricks::io {

/// One tensor of a model as PyTorch names and shapes it, bound to our storage.
struct torch_tensor {
    enum class layout : std::uint8_t { same, conv_filter, linear_weight };
    std::string name;
    std::vector<std::int64_t> shape;  // PyTorch's shape
    float* data = nullptr;            // our storage (parameter value or buffer)
    std::size_t count = 0;
    layout kind = layout::same;
    int k = 0, cin = 0, cout = 0;  // conv_filter: K, Cin, Cout; linear_weight: cin = In, cout = Out
    bool classifier = false;       // fc.weight / fc.bias
};

struct torch_load_options {
    /// Leave the classifier (fc.weight, fc.bias) as it is and ignore the file's: fine-tuning a
    /// pretrained backbone on data with another number of classes.
    bool skip_classifier = false;
};

namespace detail {

inline std::string shape_text(const std::vector<std::int64_t>& s) {
    std::string t = "[";
    for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
    return t + "]";
}

template <class Model>
constexpr bool timm_avg_down() {
    if constexpr (requires { Model::options::d; })
        return Model::options::d;
    else
        return false;
}

/// Builds the list of a model's tensors under PyTorch's names, in state-dict order.
template <class Model>
class torch_namer {
public:
    explicit torch_namer(Model& m) { walk_body(static_cast<typename Model::body_type&>(m)); }
    std::vector<torch_tensor> take() { return std::move(out_); }

private:
    template <class C>
    void add_conv(C& c, const std::string& prefix) {
        torch_tensor t{prefix + ".weight",
                       {C::out_channels, C::in_channels, C::kernel, C::kernel},
                       c.weight.value.data(),
                       c.weight.value.size(),
                       torch_tensor::layout::conv_filter,
                       C::kernel,
                       C::in_channels,
                       C::out_channels};
        out_.push_back(std::move(t));
    }
    template <class B>
    void add_bn(B& b, const std::string& prefix) {
        const std::int64_t n = B::out_channels;
        out_.push_back({prefix + ".weight", {n}, b.gamma.value.data(), b.gamma.value.size()});
        out_.push_back({prefix + ".bias", {n}, b.beta.value.data(), b.beta.value.size()});
        out_.push_back({prefix + ".running_mean", {n}, b.running_mean.data(), b.running_mean.size()});
        out_.push_back({prefix + ".running_var", {n}, b.running_var.data(), b.running_var.size()});
    }
    template <class L>
    void add_linear(L& l, const std::string& prefix) {
        torch_tensor w{prefix + ".weight",
                       {L::out_channels, L::in_channels},
                       l.weight.value.data(),
                       l.weight.value.size(),
                       torch_tensor::layout::linear_weight,
                       1,
                       L::in_channels,
                       L::out_channels,
                       true};
        torch_tensor b{prefix + ".bias", {L::out_channels}, l.bias.value.data(), l.bias.value.size()};
        b.classifier = true;
        out_.push_back(std::move(w));
        out_.push_back(std::move(b));
    }

    /// Body: stem, stages (layer1, layer2, ...), global pool, classifier.
    template <class Body>
    void walk_body(Body& body) {
        walk_body(body, std::make_index_sequence<Body::size>{});
    }
    template <class Body, std::size_t... I>
    void walk_body(Body& body, std::index_sequence<I...>) {
        int stage = 0;
        (
            [&](auto& c, auto position) {
                using T = std::remove_cvref_t<decltype(c)>;
                if constexpr (decltype(position)::value == 0)
                    walk_stem(c);
                else if constexpr (nn::is_linear_v<T>)
                    add_linear(c, "fc");
                else if constexpr (nn::is_global_avg_pool_v<T>) {
                } else
                    walk_stage(c, "layer" + std::to_string(++stage));
            }(std::get<I>(body.layers), std::integral_constant<std::size_t, I>{}),
            ...);
    }

    /// conv1/bn1, or the deep stem's conv1.{0,3,6}, conv1.{1,4} and bn1 (timm's numbering counts
    /// the ReLUs between them).
    template <class Stem>
    void walk_stem(Stem& stem) {
        int convs = 0;
        nn::visit_leaves(stem, [&](auto& l) {
            if constexpr (nn::is_conv_v<std::remove_cvref_t<decltype(l)>>) ++convs;
        });
        int conv = 0, bn = 0;
        nn::visit_leaves(stem, [&](auto& l) {
            using T = std::remove_cvref_t<decltype(l)>;
            if constexpr (nn::is_conv_v<T>) {
                add_conv(l, convs == 1 ? std::string("conv1") : "conv1." + std::to_string(3 * conv));
                ++conv;
            } else if constexpr (nn::is_batch_norm_v<T>) {
                ++bn;
                add_bn(l, bn == convs ? std::string("bn1") : "conv1." + std::to_string(3 * (bn - 1) + 1));
            } else if constexpr (nn::is_linear_v<T>) {
                static_assert(!nn::is_linear_v<T>, "tricks::io::torch weights: a classifier inside the stem");
            }
        });
    }

    /// A stage: its residual blocks in order, layer{k}.{i}.
    template <class Stage>
    void walk_stage(Stage& s, const std::string& prefix) {
        int block = 0;
        each_block(s, [&](auto& r) { walk_block(r, prefix + "." + std::to_string(block++)); });
    }
    template <class L, class F>
    static void each_block(L& l, F&& f) {
        if constexpr (nn::is_residual_v<L>)
            f(l);
        else if constexpr (nn::is_sequential_v<L>)
            std::apply([&](auto&... c) { (each_block(c, f), ...); }, l.layers);
        else if constexpr (nn::is_repeat_v<L>) {
            for (auto& c : l.items) each_block(c, f);
        } else
            static_assert(nn::is_residual_v<L>, "tricks::io::torch weights: a stage holds only residual blocks");
    }
    template <class R>
    void walk_block(R& r, const std::string& prefix) {
        int conv = 0, bn = 0;
        nn::visit_leaves(r.branch, [&](auto& l) {
            using T = std::remove_cvref_t<decltype(l)>;
            if constexpr (nn::is_conv_v<T>)
                add_conv(l, prefix + ".conv" + std::to_string(++conv));
            else if constexpr (nn::is_batch_norm_v<T>)
                add_bn(l, prefix + ".bn" + std::to_string(++bn));
        });
        // torchvision: downsample.0 conv, .1 BN; timm's avg_down: .0 pool (or identity), .1 conv, .2 BN
        int index = timm_avg_down<Model>() ? 1 : 0;
        nn::visit_leaves(r.shortcut, [&](auto& l) {
            using T = std::remove_cvref_t<decltype(l)>;
            if constexpr (nn::is_conv_v<T>)
                add_conv(l, prefix + ".downsample." + std::to_string(index++));
            else if constexpr (nn::is_batch_norm_v<T>)
                add_bn(l, prefix + ".downsample." + std::to_string(index++));
        });
    }

    std::vector<torch_tensor> out_;
};

/// PyTorch's layout -> ours.
inline void from_torch_layout(const torch_tensor& t, const std::vector<float>& src) {
    switch (t.kind) {
        case torch_tensor::layout::same:
            std::copy(src.begin(), src.end(), t.data);
            break;
        case torch_tensor::layout::conv_filter:  // [co][ci][y][x] -> [y][x][ci][co]
            for (int co = 0; co < t.cout; ++co)
                for (int ci = 0; ci < t.cin; ++ci)
                    for (int y = 0; y < t.k; ++y)
                        for (int x = 0; x < t.k; ++x)
                            t.data[((std::size_t(y) * t.k + x) * t.cin + ci) * t.cout + co] =
                                src[((std::size_t(co) * t.cin + ci) * t.k + y) * t.k + x];
            break;
        case torch_tensor::layout::linear_weight:  // [out][in] -> [in][out]
            for (int o = 0; o < t.cout; ++o)
                for (int i = 0; i < t.cin; ++i) t.data[std::size_t(i) * t.cout + o] = src[std::size_t(o) * t.cin + i];
            break;
    }
}

/// Ours -> PyTorch's layout.
inline std::vector<float> to_torch_layout(const torch_tensor& t) {
    std::vector<float> dst(t.count);
    switch (t.kind) {
        case torch_tensor::layout::same:
            std::copy(t.data, t.data + t.count, dst.begin());
            break;
        case torch_tensor::layout::conv_filter:
            for (int co = 0; co < t.cout; ++co)
                for (int ci = 0; ci < t.cin; ++ci)
                    for (int y = 0; y < t.k; ++y)
                        for (int x = 0; x < t.k; ++x)
                            dst[((std::size_t(co) * t.cin + ci) * t.k + y) * t.k + x] =
                                t.data[((std::size_t(y) * t.k + x) * t.cin + ci) * t.cout + co];
            break;
        case torch_tensor::layout::linear_weight:
            for (int o = 0; o < t.cout; ++o)
                for (int i = 0; i < t.cin; ++i) dst[std::size_t(o) * t.cin + i] = t.data[std::size_t(i) * t.cout + o];
            break;
    }
    return dst;
}

inline bool is_num_batches_tracked(std::string_view key) {
    constexpr std::string_view suffix = ".num_batches_tracked";
    return key.size() > suffix.size() && key.substr(key.size() - suffix.size()) == suffix;
}

}  // namespace detail

/// The model's tensors under PyTorch's names and shapes, in state-dict order (bound to the model:
/// valid while it lives).
template <class Model>
std::vector<torch_tensor> torch_state(Model& m) {
    return detail::torch_namer<Model>(m).take();
}

/// Loads a safetensors file with PyTorch's names and layouts into `m` (F32, F16 or BF16 tensors).
/// Every tensor of the model must be in the file with its PyTorch shape, and every tensor of the
/// file must belong to the model (num_batches_tracked aside); otherwise a data_error names the key
/// and, for a shape mismatch, both shapes. Nothing is changed in `m` unless everything matches.
template <class Model>
void load_torch_weights(Model& m, const std::filesystem::path& path, const torch_load_options& o = {}) {
    const safetensors_file f(path);
    const std::vector<torch_tensor> want = torch_state(m);
    const std::string file = f.path();
    std::set<std::string, std::less<>> known;
    for (const auto& t : want) {
        known.insert(t.name);
        if (o.skip_classifier && t.classifier) continue;
        require<data_error>(
            f.contains(t.name), "tricks::io::load_torch_weights: ", file, " has no tensor '", t.name, "' (",
            Model::name(), " needs it with shape ", detail::shape_text(t.shape), ")",
            t.classifier ? "; torch_load_options::skip_classifier loads everything but the classifier" : "");
        const auto& info = f.info(t.name);
        require<data_error>(info.shape == t.shape, "tricks::io::load_torch_weights: ", file, ": tensor '", t.name,
                            "' has shape ", detail::shape_text(info.shape), ", ", Model::name(), " expects ",
                            detail::shape_text(t.shape),
                            t.classifier ? " (another number of classes? torch_load_options::skip_classifier)" : "");
    }
    for (const auto& info : f.tensors()) {
        if (known.contains(info.name) || detail::is_num_batches_tracked(info.name)) continue;
        throw data_error(tricks::detail::cat("tricks::io::load_torch_weights: ", file, ": unexpected tensor '",
                                             info.name, "' ", detail::shape_text(info.shape), ", which ", Model::name(),
                                             " does not have (another architecture or naming?)"));
    }
    // Everything checked: convert (a conversion error, e.g. an integer dtype, names the key).
    std::vector<std::vector<float>> values;
    values.reserve(want.size());
    for (const auto& t : want)
        values.push_back(o.skip_classifier && t.classifier ? std::vector<float>{} : f.floats(t.name));
    for (std::size_t i = 0; i < want.size(); ++i)
        if (!(o.skip_classifier && want[i].classifier)) detail::from_torch_layout(want[i], values[i]);
}

/// Writes `m` as a safetensors file with PyTorch's names and layouts (loads strictly into the
/// torchvision/timm module of the same architecture). `as`: F32, F16 or BF16.
template <class Model>
void save_torch_weights(Model& m, const std::filesystem::path& path, st_dtype as = st_dtype::f32) {
    safetensors_writer w;
    std::int64_t zero = 0;
    for (const auto& t : torch_state(m)) {
        const std::vector<float> v = detail::to_torch_layout(t);
        w.add(t.name, t.shape, v, as);
        constexpr std::string_view var = ".running_var";
        if (t.name.size() > var.size() && t.name.ends_with(var))
            w.add_i64(t.name.substr(0, t.name.size() - var.size()) + ".num_batches_tracked", {},
                      std::span<const std::int64_t>(&zero, 1));
    }
    w.metadata("format", "pt");
    w.metadata("tricks.model", Model::name());
    w.commit(path);
}

}  // namespace tricks::io
