// Writes Fashion-MNIST as an image folder (DIR/train/<class>/*.jpg|png, DIR/val/<class>/...): a
// small RGB data set of real images for the image-folder pipeline's end-to-end test and examples.
// Each 28x28 grey image is upscaled (bilinear) to --size and tinted by a colour drawn per image
// (not per class, so colour says nothing about the label), then stored as JPEG or PNG.
//
//   build/examples/make_image_folder --out out/fmnist-folder --train 6000 --val 1000 --size 32
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include <tricks/core/rng.hpp>
#include <tricks/data/fashion_mnist.hpp>
#include <tricks/data/image_write.hpp>

#include "cli.hpp"

namespace {

namespace t = tricks;
namespace fs = std::filesystem;

constexpr const char* usage =
    "usage: make_image_folder --out DIR [options]\n"
    "Writes Fashion-MNIST as DIR/train/<class>/NNNNN.{jpg,png} and DIR/val/<class>/..., RGB.\n\n"
    "  --out DIR      output folder (required; existing files are overwritten)\n"
    "  --data DIR     Fashion-MNIST IDX files (default as examples/train)\n"
    "  --train N      images from the training split (default 6000; the first N)\n"
    "  --val N        images from the test split (default 1000; the first N)\n"
    "  --size S       side of the written images (default 32; 28 keeps the original size)\n"
    "  --format F     jpg, png, or mix (every other image; default mix)\n"
    "  --quality Q    JPEG quality (default 90)\n"
    "  --seed N       seed of the tints (default 1)\n";

[[noreturn]] void fail(const std::string& msg) { examples::cli_fail("make_image_folder", msg); }

/// "T-shirt/top" -> "T-shirt_top": a class name usable as a folder name.
std::string folder_name(std::string_view s) {
    std::string o(s);
    std::replace(o.begin(), o.end(), '/', '_');
    return o;
}

/// Image i of `d`, bilinearly resized to size x size (pixel centres at i + 0.5) and tinted.
t::data::image_u8 make_image(const t::data::dataset& d, std::size_t i, int size, std::uint64_t seed) {
    t::rng r(seed, 0x74696e74ull);  // "tint"
    r = r.fork(i);
    std::array<float, 3> tint{};
    for (auto& v : tint) v = 0.35f + 0.65f * r.uniform();
    t::data::image_u8 img;
    img.h = img.w = size;
    img.c = 3;
    img.pixels.resize(img.size());
    const std::uint8_t* src = d.image(i);
    const float scale = static_cast<float>(d.w) / static_cast<float>(size);
    for (int y = 0; y < size; ++y) {
        const float sy = std::clamp((static_cast<float>(y) + 0.5f) * scale - 0.5f, 0.0f, static_cast<float>(d.h - 1));
        const int y0 = static_cast<int>(sy), y1 = std::min(y0 + 1, d.h - 1);
        const float fy = sy - static_cast<float>(y0);
        for (int x = 0; x < size; ++x) {
            const float sx =
                std::clamp((static_cast<float>(x) + 0.5f) * scale - 0.5f, 0.0f, static_cast<float>(d.w - 1));
            const int x0 = static_cast<int>(sx), x1 = std::min(x0 + 1, d.w - 1);
            const float fx = sx - static_cast<float>(x0);
            auto at = [&](int yy, int xx) { return static_cast<float>(src[yy * d.w + xx]); };
            const float v =
                (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
            for (int ch = 0; ch < 3; ++ch)
                img.pixels[(static_cast<std::size_t>(y) * size + x) * 3 + ch] = static_cast<std::uint8_t>(
                    std::lround(std::clamp(v * tint[static_cast<std::size_t>(ch)], 0.0f, 255.0f)));
        }
    }
    return img;
}

void write_split(const t::data::dataset& d, long count, const fs::path& dir, int size, std::string_view format,
                 int quality, std::uint64_t seed) {
    for (const auto& name : t::data::fashion_mnist::class_names) fs::create_directories(dir / folder_name(name));
    for (long i = 0; i < count; ++i) {
        const auto k = static_cast<std::size_t>(i);
        const bool jpg = format == "jpg" || (format == "mix" && i % 2 == 0);
        char file[32];
        std::snprintf(file, sizeof file, "%05ld.%s", i, jpg ? "jpg" : "png");
        const fs::path p = dir / folder_name(t::data::fashion_mnist::class_names[d.labels[k]]) / file;
        const t::data::image_u8 img = make_image(d, k, size, seed);
        if (jpg)
            t::data::write_jpeg(p, img, quality);
        else
            t::data::write_png(p, img);
    }
}

}  // namespace

int main(int argc, char** argv) {
    fs::path out, data = t::data::fashion_mnist::default_dir();
    long train = 6000, val = 1000;
    int size = 32, quality = 90;
    std::uint64_t seed = 1;
    std::string format = "mix";
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        auto take = [&] {
            ++i;
            return v;
        };
        if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            return 0;
        } else if (a == "--out") {
            if (!v) fail("--out needs a folder");
            out = take();
        } else if (a == "--data") {
            if (!v) fail("--data needs a folder");
            data = take();
        } else if (a == "--train")
            train = examples::cli_number<long>("make_image_folder", a, take());
        else if (a == "--val")
            val = examples::cli_number<long>("make_image_folder", a, take());
        else if (a == "--size")
            size = examples::cli_number<int>("make_image_folder", a, take());
        else if (a == "--quality")
            quality = examples::cli_number<int>("make_image_folder", a, take());
        else if (a == "--seed")
            seed = examples::cli_number<std::uint64_t>("make_image_folder", a, take());
        else if (a == "--format") {
            if (!v) fail("--format needs jpg, png or mix");
            format = take();
        } else
            fail("unknown option '" + std::string(a) + "'");
    }
    if (out.empty()) fail("--out is required");
    if (format != "jpg" && format != "png" && format != "mix")
        fail("--format: '" + format + "' is not jpg, png or mix");
    if (size < 1 || size > 4096) fail("--size must be 1 to 4096");
    if (quality < 1 || quality > 100) fail("--quality must be 1 to 100");
    try {
        const t::data::dataset tr = t::data::fashion_mnist::train(data), te = t::data::fashion_mnist::test(data);
        if (train < 1 || train > tr.n) fail("--train must be 1 to " + std::to_string(tr.n));
        if (val < 1 || val > te.n) fail("--val must be 1 to " + std::to_string(te.n));
        write_split(tr, train, out / "train", size, format, quality, seed);
        write_split(te, val, out / "val", size, format, quality, seed + 1);
        std::printf("wrote %ld training and %ld validation images (%dx%d RGB, %s) to %s\n", train, val, size, size,
                    format.c_str(), out.string().c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_image_folder: %s\n", e.what());
        return 1;
    }
    return 0;
}
