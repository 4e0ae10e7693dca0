// Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/), with the library's own
// writers where it has them (IDX, checkpoints, the trainer's save, safetensors) and libjpeg/libpng
// for images of the kinds the decoder handles specially. Run once; the output is committed:
//   scripts/fuzz.sh --make-corpus     (every target; make_corpus DIR TARGET... writes only those)
// The files are tiny on purpose (all of them together are a few tens of kB): libFuzzer mutates
// small inputs faster, and its length limit follows the largest seed.
#include <png.h>
#include <unistd.h>
#include <stdio.h>  // jpeglib.h needs FILE and size_t declared before it
#include <jpeglib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "fuzz_trainer.hpp"
#include "tricks/data/idx.hpp"
#include "tricks/io/checkpoint.hpp"
#include "tricks/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
using bytes = std::vector<std::uint8_t>;

bytes read_all(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_all(const fs::path& p, const bytes& b) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    if (!f) {
        std::cerr << "make_corpus: cannot write " << p << "\n";
        std::exit(1);
    }
}
bytes cat(bytes a, const bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}
bytes text(const std::string& s) { return {s.begin(), s.end()}; }

/// w x h x c bytes of a smooth pattern with some detail, so the compressors have work to do.
bytes pattern(int w, int h, int c) {
    bytes px;
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < c; ++ch)
                px.push_back(static_cast<std::uint8_t>(x * 37 + y * 23 + ch * 71 + ((x ^ y) & 3) * 9));
    return px;
}

// ---- IDX ------------------------------------------------------------------------------------------

void idx_seeds(const fs::path& dir) {
    using tricks::data::idx_array;
    const idx_array labels{.dims = {6}, .values = {0, 1, 2, 3, 9, 255}};
    const idx_array images{.dims = {2, 3, 3}, .values = pattern(3, 6, 1)};
    const idx_array rank4{.dims = {1, 2, 2, 2}, .values = {1, 2, 3, 4, 5, 6, 7, 8}};
    tricks::data::write_idx(dir / "labels.idx", labels, false);
    tricks::data::write_idx(dir / "images.idx", images, false);
    tricks::data::write_idx(dir / "images.idx.gz", images, true);
    tricks::data::write_idx(dir / "rank4.idx.gz", rank4, true);
}

// ---- checkpoints: a mode byte (0: the whole file, 1: the payload), then the bytes -------------------

void checkpoint_seed(const fs::path& dir, const std::string& name, const fs::path& file) {
    const bytes all = read_all(file);
    constexpr std::size_t header = 20, trailer = 8;
    write_all(dir / (name + ".file"), cat({0}, all));
    write_all(dir / (name + ".payload"), cat({1}, bytes(all.begin() + header, all.end() - trailer)));
}

void checkpoint_seeds(const fs::path& dir, const fs::path& scratch) {
    {
        tricks::io::checkpoint_writer w;
        w.u64("u", 0xFFFFFFFFFFFFFFFFull);
        w.i64("i", -5);
        w.f64("pi", 3.141592653589793);
        w.str("text", "abc");
        w.str("", "");
        const float fl[] = {1.5f, -0.f, 1e-45f};
        w.floats("floats", fl);
        w.commit(scratch / "container.ckpt");
        checkpoint_seed(dir, "container", scratch / "container.ckpt");
    }
    {
        // One step of the tiny trainer, stopped after its first epoch: model, run settings,
        // momentum, scaler, normalisation and one history row, as an interrupted run leaves them.
        tricks::data::dataset d;
        d.name = "corpus";
        d.n = 8;
        d.h = d.w = 8;
        d.c = 1;
        d.classes = 4;
        d.pixels = pattern(8, 8 * 8, 1);
        d.labels = {0, 1, 2, 3, 0, 1, 2, 3};
        tricks::options o = tricks_fuzz::tiny_options();
        o.checkpoint = scratch / "trainer.ckpt";
        o.stop_after_epochs = 1;
        tricks_fuzz::tiny_trainer t(o);
        (void)t.fit(d, d);
        checkpoint_seed(dir, "trainer", scratch / "trainer.ckpt");
    }
}

// ---- images: 10 parameter bytes (fuzz_image.cpp: box width, height, x, y as big-endian u16, then
// the target width and height less one), then the file --------------------------------------------

struct jpeg_spec {
    int w = 16, h = 16;
    J_COLOR_SPACE in = JCS_RGB;
    J_COLOR_SPACE stored = JCS_UNKNOWN;  // JCS_YCCK for YCCK; otherwise libjpeg's default
    int quality = 75;
    int h_samp = 2, v_samp = 2;  // luma: 4:2:0 unless asked otherwise
    bool progressive = false, arithmetic = false;
    int restart_rows = 0;
    bytes app1{};  // one APP1 marker when not empty
};

bytes write_jpeg(const jpeg_spec& s) {
    jpeg_compress_struct c{};
    jpeg_error_mgr err{};
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char* buffer = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buffer, &size);
    const int comps = s.in == JCS_GRAYSCALE ? 1 : s.in == JCS_CMYK ? 4 : 3;
    c.image_width = static_cast<JDIMENSION>(s.w);
    c.image_height = static_cast<JDIMENSION>(s.h);
    c.input_components = comps;
    c.in_color_space = s.in;
    jpeg_set_defaults(&c);
    if (s.stored != JCS_UNKNOWN) jpeg_set_colorspace(&c, s.stored);
    jpeg_set_quality(&c, s.quality, TRUE);
    for (int i = 0; i < c.num_components; ++i) {
        const bool full = i == 0 || (c.jpeg_color_space == JCS_YCCK && i == 3);
        c.comp_info[i].h_samp_factor = full ? s.h_samp : 1;
        c.comp_info[i].v_samp_factor = full ? s.v_samp : 1;
    }
    if (s.progressive) jpeg_simple_progression(&c);
    c.arith_code = s.arithmetic ? TRUE : FALSE;
    c.restart_in_rows = s.restart_rows;
    jpeg_start_compress(&c, TRUE);
    if (!s.app1.empty()) jpeg_write_marker(&c, JPEG_APP0 + 1, s.app1.data(), static_cast<unsigned>(s.app1.size()));
    const bytes px = pattern(s.w, s.h, comps);
    const auto row_size = static_cast<std::size_t>(s.w * comps);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = const_cast<JSAMPLE*>(px.data() + c.next_scanline * row_size);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    bytes out(buffer, buffer + size);
    std::free(buffer);
    jpeg_destroy_compress(&c);
    return out;
}

/// An APP1 Exif block, little-endian TIFF, IFD0 with the orientation tag only.
bytes exif_orientation_block(unsigned orientation) {
    return {'E',
            'x',
            'i',
            'f',
            0,
            0,  // signature
            'I',
            'I',
            42,
            0,
            8,
            0,
            0,
            0,  // TIFF header, IFD0 at 8
            1,
            0,  // one entry
            0x12,
            0x01,
            3,
            0,
            1,
            0,
            0,
            0,  // tag 0x0112, SHORT, count 1
            static_cast<std::uint8_t>(orientation),
            0,
            0,
            0,  // the value
            0,
            0,
            0,
            0};  // no next IFD
}

struct png_spec {
    int w = 5, h = 4;
    int color_type = PNG_COLOR_TYPE_RGB;
    int bit_depth = 8;
    bool interlaced = false;
    bool trns = false;  // palette: the first two entries half transparent
};

void png_write_to_vector(png_structp png, png_bytep data, png_size_t n) {
    auto* out = static_cast<bytes*>(png_get_io_ptr(png));
    out->insert(out->end(), data, data + n);
}

bytes write_png(const png_spec& s) {
    bytes out;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        std::cerr << "make_corpus: libpng failed\n";
        std::exit(1);
    }
    png_set_write_fn(png, &out, &png_write_to_vector, nullptr);
    png_set_IHDR(png, info, static_cast<png_uint_32>(s.w), static_cast<png_uint_32>(s.h), s.bit_depth, s.color_type,
                 s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s.color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
        png_set_PLTE(png, info, pal, 4);
        if (s.trns) {
            png_byte alpha[2] = {128, 0};
            png_set_tRNS(png, info, alpha, 2, nullptr);
        }
    }
    png_write_info(png, info);
    const int channels = png_get_channels(png, info);
    const std::size_t row_bytes = (static_cast<std::size_t>(s.w) * channels * s.bit_depth + 7) / 8;
    bytes rows = pattern(static_cast<int>(row_bytes), s.h, 1);
    if (s.color_type == PNG_COLOR_TYPE_PALETTE)  // indices below the palette's 4 entries
        for (auto& b : rows) b &= s.bit_depth == 8 ? 0x03 : s.bit_depth == 4 ? 0x33 : s.bit_depth == 2 ? 0x55 : 0xFF;
    std::vector<png_bytep> ptrs;
    for (int y = 0; y < s.h; ++y) ptrs.push_back(rows.data() + static_cast<std::size_t>(y) * row_bytes);
    png_write_image(png, ptrs.data());
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return out;
}

bytes params(unsigned w, unsigned h, unsigned x, unsigned y, unsigned tw, unsigned th) {
    auto hi = [](unsigned v) { return static_cast<std::uint8_t>(v >> 8); };
    auto lo = [](unsigned v) { return static_cast<std::uint8_t>(v); };
    return {hi(w), lo(w), hi(h), lo(h), hi(x), lo(x), hi(y), lo(y), lo(tw - 1), lo(th - 1)};
}

void image_seeds(const fs::path& dir) {
    auto seed = [&](const std::string& name, const bytes& p, const bytes& file) {
        write_all(dir / name, cat(p, file));
    };
    // box width and height are 1 + w % width, 1 + h % height: whole(w, h) is the whole image
    auto whole = [](unsigned w, unsigned h) { return params(w - 1, h - 1, 0, 0, 16, 16); };
    const bytes crop = params(9, 7, 3, 5, 4, 2);  // a 10x8 crop at (3, 5): JPEG decodes it at 1/2
    seed("rgb420.jpg", crop, write_jpeg({}));
    seed("grey.jpg", whole(8, 8), write_jpeg({.w = 8, .h = 8, .in = JCS_GRAYSCALE, .h_samp = 1, .v_samp = 1}));
    seed("progressive.jpg", crop, write_jpeg({.w = 24, .h = 16, .progressive = true}));
    seed("cmyk_adobe.jpg", whole(8, 8), write_jpeg({.w = 8, .h = 8, .in = JCS_CMYK, .h_samp = 1, .v_samp = 1}));
    seed("ycck.jpg", crop, write_jpeg({.in = JCS_CMYK, .stored = JCS_YCCK, .h_samp = 2, .v_samp = 1}));
    seed("exif6.jpg", crop, write_jpeg({.w = 16, .h = 24, .app1 = exif_orientation_block(6)}));
    seed("arith_restart.jpg", whole(16, 32),
         write_jpeg({.w = 16, .h = 32, .h_samp = 2, .v_samp = 1, .arithmetic = true, .restart_rows = 1}));
    seed("rgb.png", params(2, 2, 1, 1, 2, 2), write_png({}));
    seed("grey1.png", whole(9, 3), write_png({.w = 9, .h = 3, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 1}));
    seed("palette_trns.png", params(3, 1, 1, 2, 1, 1),
         write_png({.w = 6, .h = 4, .color_type = PNG_COLOR_TYPE_PALETTE, .bit_depth = 4, .trns = true}));
    seed("rgba16_adam7.png", params(4, 3, 2, 4, 3, 3),
         write_png({.w = 7, .h = 9, .color_type = PNG_COLOR_TYPE_RGB_ALPHA, .bit_depth = 16, .interlaced = true}));
}

// ---- image lists: paths relative to fuzz_image_list's folder (a.png, "sub dir/b b.png") ----------

void image_list_seeds(const fs::path& dir) {
    write_all(dir / "simple.txt", text("a.png 0\nsub dir/b b.png 1\n"));
    write_all(dir / "comments_crlf.txt", text("# path label\r\n\r\n  a.png   2\r\nsub dir/b b.png\t0\r\n"));
    write_all(dir / "one.txt", text("a.png 0\n# the other is not listed\n"));
}

// ---- safetensors: a mode byte (fuzz_safetensors.cpp: bit 0 clear, the whole file; set, the JSON
// header, a NUL, the data), then the bytes ---------------------------------------------------------

void safetensors_seed(const fs::path& dir, const std::string& name, const std::string& file) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint8_t>(file[static_cast<std::size_t>(i)]);
    const std::string header = file.substr(8, n), data = file.substr(8 + n);
    write_all(dir / (name + ".file"), cat({0}, text(file)));
    write_all(dir / (name + ".split"), cat(cat({1}, text(header)), cat({0}, text(data))));
}

void safetensors_seeds(const fs::path& dir) {
    {
        // the writer's: every dtype it writes, a scalar, an empty tensor, metadata
        tricks::io::safetensors_writer w;
        const std::vector<float> v = {1.5f, -0.f, 1e-45f, 65520.f, 1.f / 3, -7.25f};
        w.add("conv.weight", {2, 1, 3}, v);
        w.add("half", {3, 2}, v, tricks::io::st_dtype::f16);
        w.add("brain", {6}, v, tricks::io::st_dtype::bf16);
        w.add_i64("bn.num_batches_tracked", {}, std::vector<std::int64_t>{7});
        w.add("empty", {0, 4}, std::span<const float>{});
        w.metadata("format", "pt");
        safetensors_seed(dir, "writer", w.bytes());
    }
    {
        // by hand: the other dtypes, header order unlike offset order, no padding
        const std::string header =
            R"({"__metadata__":{"k":"v"},"d":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},)"
            R"("b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]},"u":{"dtype":"U16","shape":[],"data_offsets":[2,4]},)"
            R"("i":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},"e":{"dtype":"F8_E5M2","shape":[0],"data_offsets":[16,16]}})";
        std::string file(8, '\0');
        const std::uint64_t n = header.size();
        std::memcpy(file.data(), &n, 8);
        const double d = 0.1;
        file += header + std::string("\x01\x00\x34\x12\xff\xff\xff\xff", 8) +
                std::string(reinterpret_cast<const char*>(&d), 8);
        safetensors_seed(dir, "dtypes", file);
    }
    safetensors_seed(dir, "empty", std::string("\x08\0\0\0\0\0\0\0{}      ", 16));
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: make_corpus CORPUS_DIR [TARGET ...] (tests/fuzz/corpus; default: every target)\n";
        return 2;
    }
    const fs::path root = argv[1];
    const fs::path scratch = fs::temp_directory_path() / ("tricks_make_corpus_" + std::to_string(::getpid()));
    const std::vector<std::string> all = {"fuzz_idx", "fuzz_checkpoint", "fuzz_image", "fuzz_image_list",
                                          "fuzz_safetensors"};
    std::vector<std::string> wanted(argv + 2, argv + argc);
    if (wanted.empty()) wanted = all;
    for (const auto& t : wanted) {
        if (std::find(all.begin(), all.end(), t) == all.end()) {
            std::cerr << "make_corpus: unknown target " << t << "\n";
            return 2;
        }
        fs::remove_all(root / t);
        fs::create_directories(root / t);
    }
    const auto want = [&](const char* t) { return std::find(wanted.begin(), wanted.end(), t) != wanted.end(); };
    fs::create_directories(scratch);
    if (want("fuzz_idx")) idx_seeds(root / "fuzz_idx");
    if (want("fuzz_checkpoint")) checkpoint_seeds(root / "fuzz_checkpoint", scratch);
    if (want("fuzz_image")) image_seeds(root / "fuzz_image");
    if (want("fuzz_image_list")) image_list_seeds(root / "fuzz_image_list");
    if (want("fuzz_safetensors")) safetensors_seeds(root / "fuzz_safetensors");
    fs::remove_all(scratch);
    return 0;
}
