// Throughput of the image-folder data pipeline (read, decode, augment, normalise; no model): the
// batches of data::batch_loader<data::folder_source<>> over DIR/train at batch 64, in training mode
// (the paper's augmentation) or evaluation mode (resize 256 + centre crop). A benchmark, not a
// test: nothing here asserts a speed. bench/data_compare.sh runs it against PyTorch's DataLoader.
//   bench_data_pipeline DIR [--workers N] [--epochs E] [--size 224] [--batch 64] [--warmup B] [--eval]
//                           [--phases N]
// Warm-up: the first B batches of epoch 0 (the files enter the page cache, the workers start),
// then epochs 1..E are timed from start_epoch() to their last batch. Prints a readable summary and
// one machine-readable line:
//   tricks_data images_per_s=... per_core=... workers=... size=224 mode=train
// per_core is images_per_s / workers (the consuming thread only copies batches out).
// --phases N: also times each step of prepare() on one thread over the first N images of the
// epoch order (read, header, decode, resample, colour), to show where the time goes.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <tricks/core/tensor.hpp>
#include <tricks/data/image_folder.hpp>
#include <tricks/data/loader.hpp>

namespace t = tricks;
namespace d = tricks::data;
using clock_type = std::chrono::steady_clock;

namespace {

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// Times each step of folder_source::prepare() on this thread for the first n images of epoch 1's
// order, with the loader's own per-image generators: the same work as the loader, step by step.
void phases(const d::image_folder& folder, const d::image_transform_options& opts, bool train, std::uint64_t seed,
            std::size_t n) {
    using loader = d::batch_loader<d::folder_source<>>;
    std::vector<std::uint32_t> order(folder.size());
    loader::epoch_order(seed, 1, train, order);
    n = std::min(n, order.size());
    const std::size_t px = static_cast<std::size_t>(opts.size) * static_cast<std::size_t>(opts.size);
    std::vector<float> out(px * 3);
    double t_read = 0, t_header = 0, t_decode = 0, t_resample = 0, t_colour = 0, t_full = 0, t_prepare = 0;
    double bytes = 0, full_px = 0, decoded_px = 0;
    std::map<int, int> scales;
    const d::folder_source<> src{&folder, opts};
    for (std::size_t pos = 0; pos < n; ++pos) {
        const std::uint32_t i = order[pos];
        const std::string name = folder.files[i].string();
        t::rng r = train ? loader::augment_rng(seed, 1, pos) : t::rng();
        auto t0 = clock_type::now();
        const std::vector<std::uint8_t> file = d::read_file(folder.files[i]);
        t_read += seconds_since(t0);
        t0 = clock_type::now();
        const d::image_header h = d::read_header(file, name);
        t_header += seconds_since(t0);
        d::train_draw draw;
        d::crop_box box;
        if (train) {
            draw = d::draw_train<d::aug::paper_train>(h.width, h.height, opts, r);
            box = draw.box;
        } else {
            box = d::eval_crop_box(h.width, h.height, opts);
        }
        t0 = clock_type::now();
        const d::decoded_region region = d::decode_region(file, name, box, opts.size, opts.size);
        t_decode += seconds_since(t0);
        // Resampling and colour separately (apply_train / apply_eval fuse them; their sum is the same work).
        t0 = clock_type::now();
        d::resample_bilinear(region, opts.size, opts.size, out.data());
        t_resample += seconds_since(t0);
        t0 = clock_type::now();
        d::apply_color_affine(d::make_color_affine(draw, train, train, opts), out.data(), px);
        t_colour += seconds_since(t0);
        // Reference points: a whole decode at full scale, and prepare() end to end.
        t0 = clock_type::now();
        (void)d::decode_image(file, name);
        t_full += seconds_since(t0);
        t::rng r2 = train ? loader::augment_rng(seed, 1, pos) : t::rng();
        t0 = clock_type::now();
        src.prepare(i, train, r2, out.data());
        t_prepare += seconds_since(t0);
        bytes += static_cast<double>(file.size());
        full_px += static_cast<double>(h.width) * h.height;
        decoded_px += static_cast<double>(region.image.w) * region.image.h;
        ++scales[region.scale_denom];
    }
    const double k = 1e3 / static_cast<double>(n);  // ms per image
    const double sum = t_read + t_header + t_decode + t_resample + t_colour;
    std::printf("phases (%s, one thread, %zu images, mean %.0f kB, %.0f kpx; ms per image):\n",
                train ? "train" : "eval", n, bytes / n / 1e3, full_px / n / 1e3);
    std::printf("  read      %7.3f\n  header    %7.3f\n", t_read * k, t_header * k);
    std::printf("  decode    %7.3f  (region at DCT scale; decoded %.0f kpx per image; scales:", t_decode * k,
                decoded_px / n / 1e3);
    for (const auto& [s, c] : scales) std::printf(" 1/%d x%d", s, c);
    std::printf(")\n  resample  %7.3f\n  colour    %7.3f\n  sum       %7.3f  (%.0f images/s)\n", t_resample * k,
                t_colour * k, sum * k, n / sum);
    std::printf("  prepare() %7.3f  (end to end, %.0f images/s)\n", t_prepare * k, n / t_prepare);
    std::printf("  decode_image, whole file at full scale: %.3f (for comparison)\n", t_full * k);
}

}  // namespace

int main(int argc, char** argv) {
    std::string dir;
    int workers = 1, epochs = 2, size = 224, batch = 64, warmup = 2, phase_images = 0;
    bool train = true;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--eval")
            train = false;
        else if (a == "--train")
            train = true;
        else if (has_value && a == "--workers")
            workers = std::atoi(argv[++i]);
        else if (has_value && a == "--epochs")
            epochs = std::atoi(argv[++i]);
        else if (has_value && a == "--size")
            size = std::atoi(argv[++i]);
        else if (has_value && a == "--batch")
            batch = std::atoi(argv[++i]);
        else if (has_value && a == "--warmup")
            warmup = std::atoi(argv[++i]);
        else if (has_value && a == "--phases")
            phase_images = std::atoi(argv[++i]);
        else if (has_value && a == "--threads")
            ++i;  // OpenMP threads: no model here, accepted and ignored
        else if (dir.empty() && !a.starts_with("--"))
            dir = a;
        else {
            std::fprintf(stderr,
                         "usage: bench_data_pipeline DIR [--workers N] [--epochs E] [--size 224] [--batch 64] "
                         "[--warmup B] [--eval] [--phases N]\n  DIR holds train/<class>/*.jpg "
                         "(bench/make_photo_folder.py makes one)\n");
            return 2;
        }
    }
    if (dir.empty() || workers < 1 || epochs < 1 || size < 1 || batch < 1 || warmup < 0 || phase_images < 0) {
        std::fprintf(stderr,
                     "bench_data_pipeline: need DIR, --workers, --epochs, --size, --batch >= 1, --warmup and "
                     "--phases >= 0\n");
        return 2;
    }
    try {
        const d::image_folder folder = d::scan_image_folder(std::filesystem::path(dir) / "train");
        d::image_transform_options opts;
        opts.size = size;
        opts.resize = std::max(opts.resize, size);
        constexpr std::uint64_t seed = 1;
        d::batch_loader<d::folder_source<>> loader(d::folder_source<>{&folder, opts}, batch, train, seed, train,
                                                   workers);
        t::tensor<float> images;
        std::vector<int> labels;
        loader.start_epoch(0);
        for (int b = 0; b < warmup && loader.next(images, labels); ++b) {}
        std::size_t count = 0;
        const auto t0 = clock_type::now();
        for (int e = 1; e <= epochs; ++e) {
            loader.start_epoch(e);
            while (loader.next(images, labels)) count += labels.size();
        }
        const double s = seconds_since(t0);
        const double ips = static_cast<double>(count) / s;
        std::printf("folder           %s (%zu images, %d classes)\n", folder.name.c_str(), folder.size(),
                    folder.classes());
        std::printf("transform        %s\n", train ? loader.source().describe().c_str() : "eval: resize + centre crop");
        std::printf("timed            %zu images in %.2f s (%d epochs after %d warm-up batches), batch %d\n", count, s,
                    epochs, warmup, batch);
        std::printf("tricks_data images_per_s=%.1f per_core=%.1f workers=%d size=%d mode=%s\n", ips, ips / workers,
                    workers, size, train ? "train" : "eval");
        if (phase_images > 0) phases(folder, opts, train, seed, static_cast<std::size_t>(phase_images));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_data_pipeline: %s\n", e.what());
        return 1;
    }
    return 0;
}
