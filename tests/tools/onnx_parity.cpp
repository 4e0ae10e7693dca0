// The tricks side of tests/examples/onnx_parity.sh: for several model types, a seeded model with
// randomised batch-norm parameters and running statistics (so that folding changes the weights),
// its evaluation-mode logits for a random batch (model.forward), and its ONNX exports with and
// without batch-norm folding. The script runs the exports in ONNX Runtime and compares.
//   onnx_parity OUTDIR
// writes OUTDIR/manifest.tsv (one line per case: name n c h w classes) and per case
// NAME.input.f32 (the batch, NCHW float32), NAME.tricks.f32 (logits, n x classes float32),
// NAME.fold.onnx and NAME.keep.onnx.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <tricks/io/onnx.hpp>
#include <tricks/models/cifar_resnet.hpp>
#include <tricks/models/resnet.hpp>

namespace t = tricks;
namespace fs = std::filesystem;

namespace {

/// The main job's network (examples/train_common.hpp's net<16>): ResNet-20 with deep stem, avg-down
/// shortcuts and zero-gamma, 1 channel, 10 classes.
using main_net = t::models::cifar_resnet<20, t::width<16>, t::in_channels<1>, t::classes<10>, t::tweak::deep_stem,
                                         t::tweak::avg_down, t::init::zero_gamma>;
using cifar20_cd =
    t::models::cifar_resnet<20, t::in_channels<3>, t::classes<10>, t::tweak::deep_stem, t::tweak::avg_down>;

void write_floats(const fs::path& p, const std::vector<float>& v) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
    if (!f) throw t::data_error("onnx_parity: cannot write " + p.string());
}

template <class Model>
void run_case(const fs::path& dir, std::ofstream& manifest, const std::string& name, int n, int side,
              std::uint64_t seed) {
    auto m = std::make_unique<Model>();
    m->init(seed);
    // BN parameters and running statistics away from 1/0 (zero-gamma nets included)
    t::rng r(seed, 99);
    t::nn::visit_leaves(*m, [&]<class L>(L& l) {
        if constexpr (t::nn::is_batch_norm_v<L>) {
            for (auto& v : l.gamma.value.span()) v = 0.5f + r.uniform();
            for (auto& v : l.beta.value.span()) v = 0.2f * static_cast<float>(r.normal());
            for (auto& v : l.running_mean.span()) v = 0.2f * static_cast<float>(r.normal());
            for (auto& v : l.running_var.span()) v = 0.5f + r.uniform();
        }
    });
    constexpr int c = Model::input_channels, k = Model::classes;
    t::tensor<float> x({n, side, side, c});
    for (auto& v : x.span()) v = static_cast<float>(r.normal());
    const t::nn::context eval{.phase = t::nn::mode::eval};
    const t::tensor<float>& y = m->forward(x, eval);
    if (y.shape() != t::shape4{n, 1, 1, k}) throw t::shape_error("onnx_parity: unexpected logits shape");
    std::vector<float> nchw(x.size());
    for (int i = 0; i < n; ++i)
        for (int h = 0; h < side; ++h)
            for (int w = 0; w < side; ++w)
                for (int ch = 0; ch < c; ++ch)
                    nchw[((static_cast<std::size_t>(i) * c + ch) * side + h) * side + w] =
                        x.data()[((static_cast<std::size_t>(i) * side + h) * side + w) * c + ch];
    write_floats(dir / (name + ".input.f32"), nchw);
    write_floats(dir / (name + ".tricks.f32"), {y.data(), y.data() + y.size()});
    t::io::export_onnx(*m, dir / (name + ".fold.onnx"));
    t::io::export_onnx(*m, dir / (name + ".keep.onnx"), {.fold_batch_norm = false});
    manifest << name << '\t' << n << '\t' << c << '\t' << side << '\t' << side << '\t' << k << '\t' << Model::name()
             << '\n';
    std::printf("%-22s %-36s %d x %dx%dx%d -> %d logits\n", name.c_str(), Model::name().c_str(), n, c, side, side, k);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: onnx_parity OUTDIR\n");
        return 2;
    }
    try {
        const fs::path dir = argv[1];
        fs::create_directories(dir);
        std::ofstream manifest(dir / "manifest.tsv", std::ios::trunc);
        run_case<t::models::resnet18>(dir, manifest, "resnet18", 3, 64, 1);
        run_case<t::models::resnet50b>(dir, manifest, "resnet50b", 3, 64, 2);
        run_case<t::models::resnet50c>(dir, manifest, "resnet50c", 3, 64, 3);
        run_case<t::models::resnet50d>(dir, manifest, "resnet50d", 3, 64, 4);
        // 72x72: stages of 18, 9, 5, 3 pixels; the avg-pool shortcuts on 9 and 5 use ceil mode
        run_case<t::models::resnet50d>(dir, manifest, "resnet50d_72", 3, 72, 5);
        run_case<cifar20_cd>(dir, manifest, "cifar_resnet20_cd", 3, 32, 6);
        run_case<main_net>(dir, manifest, "main_net", 3, 28, 7);
        // 30x30: the second downsampling pools 15 -> 8 in ceil mode
        run_case<main_net>(dir, manifest, "main_net_30", 3, 30, 8);
        if (!manifest.flush()) throw t::data_error("onnx_parity: cannot write " + (dir / "manifest.tsv").string());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "onnx_parity: %s\n", e.what());
        return 1;
    }
    return 0;
}
