// export: a model of examples/train's table as an ONNX file (io/onnx.hpp), from a checkpoint that
// train wrote (its model section), from a .safetensors file with PyTorch's names
// (io/torch_weights.hpp), or freshly initialised from a seed (benchmarks, tests).
//   export --model cifar_resnet20d --checkpoint out/train/model.ckpt --out out/model.onnx
// The head (input channels, classes and, for the CIFAR-style nets, the width) is the one train uses
// for the data: Fashion-MNIST's IDX files 1 channel and 10 classes; image folders 3 channels and 10
// or 100 classes (CIFAR-style nets) or 1000 (ImageNet ResNets). With --checkpoint the head whose
// structure matches the file is picked (the fingerprint), so the flags only narrow the choice.
// Only structure, parameter loading and export are instantiated here, never training.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <tricks/io/checkpoint.hpp>
#include <tricks/io/torch_weights.hpp>
#include <tricks/io/onnx.hpp>
#include <tricks/models/introspection.hpp>

#include "cli.hpp"
#include "train_models.hpp"

namespace t = tricks;
namespace fs = std::filesystem;

namespace {

/// Where the weights come from. A new source (e.g. PyTorch weights) is one more kind, one more flag
/// in parse() and one more case in load().
struct weights_source {
    enum class kind { none, checkpoint, weights, init } type = kind::none;
    fs::path file;           // checkpoint, weights
    std::uint64_t seed = 0;  // init
};

struct cli {
    std::string model;
    weights_source source;
    fs::path out;
    int classes = 0, in_channels = 0, width = 0;  // 0: not given
    t::io::onnx_export_options onnx;
};

constexpr const char* usage =
    "usage: export --model NAME (--checkpoint FILE | --weights FILE | --random SEED) --out FILE.onnx [options]\n"
    "Writes a model of examples/train's table as an ONNX graph (opset 13 by default) for ONNX Runtime and\n"
    "other ONNX tools: input \"input\" float32 [N, C, H, W] (NCHW; N, H and W symbolic unless given),\n"
    "output \"logits\" [N, classes]. The input is the normalised image, as in training: (pixel / 255 - mean)\n"
    "/ std per channel (Fashion-MNIST: the training set's statistics; image folders: the paper's ImageNet\n"
    "mean and std); the graph holds no normalisation and no softmax.\n"
    "\n"
    "  --model NAME        the network, a name of train's table (train --help lists them)\n"
    "  --checkpoint FILE   the weights: a checkpoint written by train (its model section)\n"
    "  --weights FILE      the weights: a .safetensors file with PyTorch's names (train's OUT/model.safetensors,\n"
    "                      torchvision's or timm's via scripts/torch_to_safetensors.py; io::load_torch_weights);\n"
    "                      the head (classes, input channels) is read from its fc and first conv\n"
    "  --random SEED       the weights: freshly initialised from SEED (benchmarks)\n"
    "  --out FILE          the .onnx file to write (atomically: FILE.tmp, then renamed)\n"
    "  --classes K         the head: 10 or 100 (cifar_resnet*), 1000 (resnet*); default: the checkpoint's,\n"
    "                      else 10 / 1000\n"
    "  --in-channels C     1 (Fashion-MNIST IDX) or 3 (image folders); default: the checkpoint's, else 1 for\n"
    "                      cifar_resnet* and 3 for resnet*\n"
    "  --width 16|32       base width of the CIFAR-style nets; default: the checkpoint's, else 16\n"
    "  --no-fold-bn        keep BatchNormalization nodes (default: folded into the convolutions)\n"
    "  --opset N           ONNX opset, 11 to 21 (default 13)\n"
    "  --batch N           fixed batch size in the graph (default: symbolic)\n"
    "  --image-size N      fixed N x N input in the graph (default: symbolic height and width)\n"
    "  --help              this text\n";

[[noreturn]] void fail(const std::string& msg) { examples::cli_fail("export", msg); }

template <class T>
T number(std::string_view flag, const char* v) {
    return examples::cli_number<T>("export", flag, v);
}

cli parse(int argc, char** argv) {
    cli c;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        auto take = [&] {
            ++i;
            return v;
        };
        auto set_source = [&](weights_source s) {
            if (c.source.type != weights_source::kind::none) fail("give one of --checkpoint, --weights and --random");
            c.source = std::move(s);
        };
        if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            std::fputs(train_example::model_help().c_str(), stdout);
            std::exit(0);
        } else if (a == "--model") {
            if (!v) fail("--model needs a name");
            c.model = take();
        } else if (a == "--checkpoint") {
            if (!v) fail("--checkpoint needs a file");
            set_source({weights_source::kind::checkpoint, take(), 0});
        } else if (a == "--weights") {
            if (!v) fail("--weights needs a .safetensors file");
            set_source({weights_source::kind::weights, take(), 0});
        } else if (a == "--random")
            set_source({weights_source::kind::init, {}, number<std::uint64_t>(a, take())});
        else if (a == "--out") {
            if (!v) fail("--out needs a file");
            c.out = take();
        } else if (a == "--classes")
            c.classes = number<int>(a, take());
        else if (a == "--in-channels")
            c.in_channels = number<int>(a, take());
        else if (a == "--width")
            c.width = number<int>(a, take());
        else if (a == "--no-fold-bn")
            c.onnx.fold_batch_norm = false;
        else if (a == "--opset")
            c.onnx.opset = number<int>(a, take());
        else if (a == "--batch")
            c.onnx.batch = number<int>(a, take());
        else if (a == "--image-size")
            c.onnx.height = c.onnx.width = number<int>(a, take());
        else
            fail("unknown option '" + std::string(a) + "'");
    }
    if (c.model.empty()) fail("--model is required" + train_example::model_help());
    if (!train_example::known_model(c.model))
        fail("--model: '" + c.model + "' is not a model of the table" + train_example::model_help());
    if (c.source.type == weights_source::kind::none)
        fail("the weights: give --checkpoint FILE, --weights FILE or --random SEED");
    if (c.out.empty()) fail("--out is required");
    if (c.width != 0 && c.width != 16 && c.width != 32) fail("--width must be 16 or 32");
    if (c.in_channels != 0 && c.in_channels != 1 && c.in_channels != 3) fail("--in-channels must be 1 or 3");
    if (c.classes < 0) fail("--classes must be positive");
    if (c.onnx.opset < 11 || c.onnx.opset > 21) fail("--opset must be 11 to 21");
    if (c.onnx.batch < 0) fail("--batch must be positive");
    if (c.onnx.height < 0 || c.onnx.height == 1) fail("--image-size must be at least 2");
    return c;
}

/// A head of a table entry: what train builds for one kind of data.
struct head {
    int width, in_channels, classes;  // width 0: an ImageNet ResNet (64 wide)
    [[nodiscard]] std::string describe() const {
        return (width ? "width " + std::to_string(width) + ", " : std::string()) + std::to_string(in_channels) +
               (in_channels == 1 ? " channel, " : " channels, ") + std::to_string(classes) + " classes";
    }
};

/// Calls f.template operator()<Model>(head) for every head train builds for the family F.
template <class F, class Fn>
void for_each_head(Fn&& f) {
    if constexpr (F::imagenet) {
        f.template operator()<typename F::template type<3, 1000>>(head{0, 3, 1000});
    } else {
        f.template operator()<typename F::template type<16, 1, 10>>(head{16, 1, 10});
        f.template operator()<typename F::template type<16, 3, 10>>(head{16, 3, 10});
        f.template operator()<typename F::template type<16, 3, 100>>(head{16, 3, 100});
        f.template operator()<typename F::template type<32, 1, 10>>(head{32, 1, 10});
        f.template operator()<typename F::template type<32, 3, 10>>(head{32, 3, 10});
        f.template operator()<typename F::template type<32, 3, 100>>(head{32, 3, 100});
    }
}

/// Whether the flags allow head h; without a checkpoint to choose from, the defaults fill the rest.
bool allowed(const cli& c, const head& h, bool defaults) {
    const int width = c.width ? c.width : defaults ? 16 : 0;
    const int channels = c.in_channels ? c.in_channels : defaults ? (h.width ? 1 : 3) : 0;
    const int classes = c.classes ? c.classes : defaults ? (h.width ? 10 : 1000) : 0;
    return (!width || !h.width || h.width == width) && (!channels || h.in_channels == channels) &&
           (!classes || h.classes == classes);
}

template <class Model>
void load(Model& m, const weights_source& s) {
    switch (s.type) {
        case weights_source::kind::checkpoint:
            t::io::load_model(s.file, m);
            break;
        case weights_source::kind::weights:
            t::io::load_torch_weights(m, s.file);
            break;
        case weights_source::kind::init:
            m.init(s.seed);
            break;
        case weights_source::kind::none:
            break;
    }
}

template <class Model>
int export_model(const cli& c, const head& h) {
    auto m = std::make_unique<Model>();  // ImageNet ResNets hold tens of millions of parameters
    load(*m, c.source);
    t::io::onnx_graph g = t::io::build_onnx_graph(*m, c.onnx);
    m.reset();
    auto dim = [](const t::io::onnx_dim& d) { return d.param.empty() ? std::to_string(d.value) : d.param; };
    const std::string io = "input \"" + g.input.name + "\" float32 [" + dim(g.input.dims[0]) + ", " +
                           dim(g.input.dims[1]) + ", " + dim(g.input.dims[2]) + ", " + dim(g.input.dims[3]) +
                           "] (NCHW, normalised as in training) -> \"" + g.output.name + "\" [" +
                           dim(g.output.dims[0]) + ", " + dim(g.output.dims[1]) + "]";
    const std::size_t nodes = g.nodes.size(), inits = g.initializers.size();
    t::io::write_onnx(std::move(g), c.out);
    std::printf("export: wrote %s: %s (%s; %lld parameters), opset %d, %zu nodes, %zu initializers, batch norms %s\n",
                c.out.string().c_str(), Model::name().c_str(), h.describe().c_str(),
                static_cast<long long>(t::parameter_count_v<Model>), c.onnx.opset, nodes, inits,
                c.onnx.fold_batch_norm ? "folded into the convolutions" : "kept");
    std::printf("export: %s\n", io.c_str());
    return 0;
}

template <class E>
int run_entry(const cli& c) {
    using F = typename E::family;
    if (F::imagenet && c.width) fail("--width applies to the CIFAR-style networks; " + c.model + " is 64 wide");
    std::string heads;
    for_each_head<F>([&]<class Model>(const head& h) { heads += "\n  " + h.describe(); });
    if (c.source.type == weights_source::kind::checkpoint) {
        // the checkpoint's model section starts with the model's name and structure fingerprint
        t::io::checkpoint_reader r(c.source.file);
        const std::string name = r.str("model.name");
        const std::uint64_t fp = r.u64("model.fingerprint");
        int rc = -1;
        for_each_head<F>([&]<class Model>(const head& h) {
            if (rc < 0 && allowed(c, h, false) && Model::fingerprint() == fp) rc = export_model<Model>(c, h);
        });
        if (rc < 0)
            fail(c.source.file.string() + " holds a " + name + ", which is no head of --model " + c.model +
                 " that the flags allow; its heads (as train builds them):" + heads);
        return rc;
    }
    cli d = c;
    if (c.source.type == weights_source::kind::weights) {
        // the head as the file has it: classes from fc.bias, input channels from the first conv
        const t::io::safetensors_file f(c.source.file);
        const auto dim = [&](const char* key, std::size_t i) -> int {
            return f.contains(key) && f.info(key).shape.size() > i ? static_cast<int>(f.info(key).shape[i]) : 0;
        };
        if (!d.classes) d.classes = dim("fc.bias", 0);
        if (!d.in_channels) d.in_channels = dim("conv1.weight", 1) ? dim("conv1.weight", 1) : dim("conv1.0.weight", 1);
    }
    int rc = -1;
    for_each_head<F>([&]<class Model>(const head& h) {
        if (rc < 0 && allowed(d, h, true)) rc = export_model<Model>(d, h);
    });
    if (rc < 0) fail("--model " + c.model + " has no such head; its heads (as train builds them):" + heads);
    return rc;
}

int run(const cli& c) {
    int rc = -1;
    std::apply([&]<class... E>(E...) { ((E::name == c.model ? (rc = run_entry<E>(c), true) : false) || ...); },
               train_example::model_table{});
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    const cli c = parse(argc, argv);
    try {
        return run(c);
    } catch (const t::error& e) {
        std::fprintf(stderr, "export: %s\n", e.what());
        return 1;
    } catch (const fs::filesystem_error& e) {
        std::fprintf(stderr, "export: %s\n", e.what());
        return 1;
    }
}
