// Weight-import parity, tricks' side (PyTorch's side: tests/tools/torch_weights_ref.py).
//   torch_parity MODEL DIR
// loads DIR/MODEL.weights.safetensors (torchvision / timm names) into tricks' MODEL, runs it in
// evaluation mode on DIR/MODEL.ref.safetensors' input (NCHW, converted to NHWC), compares the
// logits with PyTorch's (max |ours - theirs| / max |theirs| <= 1e-4), then writes
// DIR/MODEL.saved.safetensors with save_torch_weights for the Python side's strict reload.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

#include <tricks/io/torch_weights.hpp>
#include <tricks/models/resnet.hpp>

namespace t = tricks;

template <class Model>
int run(const std::string& name, const std::string& dir) {
    auto net = std::make_unique<Model>();
    net->init(1);  // every tensor is overwritten by the load; a wrong key would leave these values
    t::io::load_torch_weights(*net, dir + "/" + name + ".weights.safetensors");
    const t::io::safetensors_file ref(dir + "/" + name + ".ref.safetensors");
    const auto& in = ref.info("input");
    const int n = int(in.shape[0]), c = int(in.shape[1]), h = int(in.shape[2]), w = int(in.shape[3]);
    const std::vector<float> x_nchw = ref.floats("input"), theirs = ref.floats("logits");
    t::tensor<float> x({n, h, w, c});
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int xx = 0; xx < w; ++xx)
                    x.data()[((std::size_t(i) * h + y) * w + xx) * c + ch] =
                        x_nchw[((std::size_t(i) * c + ch) * h + y) * w + xx];
    const t::nn::context eval{t::nn::mode::eval};
    const auto& y = net->forward(x, eval);
    if (y.size() != theirs.size()) {
        std::fprintf(stderr, "%s: %zu logits, PyTorch gave %zu\n", name.c_str(), y.size(), theirs.size());
        return 1;
    }
    double diff = 0, scale = 0;
    for (std::size_t i = 0; i < theirs.size(); ++i) {
        diff = std::max(diff, std::abs(double(y.data()[i]) - theirs[i]));
        scale = std::max(scale, std::abs(double(theirs[i])));
    }
    const double rel = diff / scale;
    std::printf("%-10s %-18s input %dx%dx%dx%d  max|diff| %.3g  max|logit| %.3g  relative %.3g  %s\n", name.c_str(),
                Model::name().c_str(), n, c, h, w, diff, scale, rel, rel <= 1e-4 ? "ok" : "FAIL");
    t::io::save_torch_weights(*net, dir + "/" + name + ".saved.safetensors");
    return rel <= 1e-4 ? 0 : 1;
}

int main(int argc, char** argv) try {
    if (argc != 3) {
        std::fprintf(stderr, "usage: torch_parity MODEL DIR\n");
        return 2;
    }
    const std::string m = argv[1], dir = argv[2];
    namespace mo = t::models;
    if (m == "resnet18") return run<mo::resnet18>(m, dir);
    if (m == "resnet50") return run<mo::resnet50>(m, dir);
    if (m == "resnet50b") return run<mo::resnet50b>(m, dir);
    if (m == "resnet50c") return run<mo::resnet50c>(m, dir);
    if (m == "resnet50d") return run<mo::resnet50d>(m, dir);
    if (m == "resnet34d") return run<mo::resnet<34, t::tweak::deep_stem, t::tweak::avg_down>>(m, dir);
    std::fprintf(stderr, "torch_parity: unknown model %s\n", m.c_str());
    return 2;
} catch (const std::exception& e) {
    std::fprintf(stderr, "torch_parity: %s\n", e.what());
    return 1;
}
