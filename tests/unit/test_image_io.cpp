// Image decoding (image_io.hpp): JPEG and PNG files written in memory with libjpeg and libpng,
// decoded back and compared with known pixels; EXIF orientation; errors and warnings as
// data_error with nothing on stderr; decode_region against whole-image decodes.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstddef>  // before jpeglib.h, which uses size_t and FILE without including their headers
#include <cstdio>

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tricks/data/image_io.hpp"
#include "helpers.hpp"

using namespace tricks::data;
using tricks_test::error_of;
using bytes = std::vector<std::uint8_t>;

namespace {

bytes noise(std::size_t n, std::uint32_t seed) {
    std::mt19937 gen(seed);
    bytes b(n);
    for (auto& v : b) v = static_cast<std::uint8_t>(gen() >> 24);
    return b;
}

image_u8 make_image(int w, int h, int c, bytes pixels) {
    image_u8 img;
    img.w = w;
    img.h = h;
    img.c = c;
    img.pixels = std::move(pixels);
    return img;
}

/// Largest absolute difference between two images of the same size (255 + 1 when sizes differ).
int max_abs_diff(const image_u8& a, const image_u8& b) {
    if (a.w != b.w || a.h != b.h || a.c != b.c || a.pixels.size() != b.pixels.size()) return 256;
    int m = 0;
    for (std::size_t i = 0; i < a.pixels.size(); ++i) m = std::max(m, std::abs(int(a.pixels[i]) - int(b.pixels[i])));
    return m;
}

bool same_image(const image_u8& a, const image_u8& b) { return max_abs_diff(a, b) == 0; }

/// The w x h window of `img` at (x, y).
image_u8 window(const image_u8& img, int x, int y, int w, int h) {
    image_u8 out = make_image(w, h, img.c, bytes(static_cast<std::size_t>(w * h * img.c)));
    for (int j = 0; j < h; ++j)
        std::memcpy(out.pixels.data() + static_cast<std::size_t>(j * w * img.c), img.at(y + j, x),
                    static_cast<std::size_t>(w * img.c));
    return out;
}

// ---- orientation, restated independently of the library: PIL's exif_transpose operations --------

image_u8 remap(const image_u8& s, int w, int h, auto source_of) {
    image_u8 out = make_image(w, h, s.c, bytes(static_cast<std::size_t>(w * h * s.c)));
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            const auto [sx, sy] = source_of(x, y);
            std::memcpy(out.pixels.data() + static_cast<std::size_t>((y * w + x) * s.c), s.at(sy, sx),
                        static_cast<std::size_t>(s.c));
        }
    return out;
}
image_u8 flip_lr(const image_u8& s) {
    return remap(s, s.w, s.h, [&](int x, int y) { return std::pair{s.w - 1 - x, y}; });
}
image_u8 flip_tb(const image_u8& s) {
    return remap(s, s.w, s.h, [&](int x, int y) { return std::pair{x, s.h - 1 - y}; });
}
image_u8 transpose(const image_u8& s) {
    return remap(s, s.h, s.w, [](int x, int y) { return std::pair{y, x}; });
}
/// A stored image as displayed under EXIF orientation o (6: rotate 90 degrees clockwise, 8: counter-).
image_u8 oriented(const image_u8& s, int o) {
    switch (o) {
        case 2:
            return flip_lr(s);
        case 3:
            return flip_tb(flip_lr(s));
        case 4:
            return flip_tb(s);
        case 5:
            return transpose(s);
        case 6:
            return flip_lr(transpose(s));
        case 7:
            return flip_tb(flip_lr(transpose(s)));
        case 8:
            return flip_tb(transpose(s));
        default:
            return s;
    }
}
/// Whether displayed x (y) runs backwards along the stored axis it shows, under orientation o.
bool reverses_x(int o) { return o == 2 || o == 3 || o == 6 || o == 7; }
bool reverses_y(int o) { return o == 3 || o == 4 || o == 7 || o == 8; }

// ---- EXIF blocks -------------------------------------------------------------------------------------

void put16(bytes& b, std::size_t at, unsigned v, bool little) {
    b[at + (little ? 0 : 1)] = static_cast<std::uint8_t>(v & 0xFF);
    b[at + (little ? 1 : 0)] = static_cast<std::uint8_t>(v >> 8);
}
void put32(bytes& b, std::size_t at, std::uint32_t v, bool little) {
    put16(b, at + (little ? 0 : 2), v & 0xFFFF, little);
    put16(b, at + (little ? 2 : 0), v >> 16, little);
}

/// An APP1 Exif block as cameras write it: IFD0 with Make (ASCII, stored after the IFD) and
/// Orientation (SHORT `value`, type `type`), then a zero next-IFD offset.
bytes exif_block(unsigned value, bool little, unsigned type = 3) {
    bytes b{'E', 'x', 'i', 'f', 0, 0};
    bytes t(8 + 2 + 2 * 12 + 4 + 8, 0);
    t[0] = t[1] = little ? 'I' : 'M';
    put16(t, 2, 42, little);
    put32(t, 4, 8, little);
    put16(t, 8, 2, little);
    const std::size_t e0 = 10, e1 = 22, text = 38;
    put16(t, e0, 0x010F, little);  // Make
    put16(t, e0 + 2, 2, little);   // ASCII
    put32(t, e0 + 4, 7, little);
    put32(t, e0 + 8, static_cast<std::uint32_t>(text), little);
    put16(t, e1, 0x0112, little);  // Orientation
    put16(t, e1 + 2, type, little);
    put32(t, e1 + 4, 1, little);
    put16(t, e1 + 8, value, little);  // a SHORT value sits in the field's first two bytes
    put32(t, 34, 0, little);
    std::memcpy(t.data() + text, "tricks", 7);
    b.insert(b.end(), t.begin(), t.end());
    return b;
}

// ---- writing JPEG with libjpeg ---------------------------------------------------------------------

struct jpeg_spec {
    int w = 0, h = 0;
    J_COLOR_SPACE in = JCS_RGB;          ///< JCS_RGB, JCS_GRAYSCALE or JCS_CMYK
    J_COLOR_SPACE stored = JCS_UNKNOWN;  ///< colour space in the file when not libjpeg's default (JCS_YCCK)
    bytes pixels{};                      ///< h x w x components
    int quality = 100;
    int h_samp = 1, v_samp = 1;  ///< luma sampling: 1x1 = 4:4:4, 2x1 = 4:2:2, 2x2 = 4:2:0
    bool progressive = false;
    bool arithmetic = false;
    int restart_rows = 0;
    bool adobe_marker = true;   ///< CMYK: write Adobe's APP14 marker (inverted CMYK)
    std::vector<bytes> app1{};  ///< APP1 markers, in this order
};

int components_of(J_COLOR_SPACE s) { return s == JCS_GRAYSCALE ? 1 : s == JCS_CMYK ? 4 : 3; }

bytes write_jpeg(const jpeg_spec& s) {
    jpeg_compress_struct c{};
    jpeg_error_mgr err{};
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char* buffer = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buffer, &size);
    c.image_width = static_cast<JDIMENSION>(s.w);
    c.image_height = static_cast<JDIMENSION>(s.h);
    c.input_components = components_of(s.in);
    c.in_color_space = s.in;
    jpeg_set_defaults(&c);
    if (s.stored != JCS_UNKNOWN) jpeg_set_colorspace(&c, s.stored);
    jpeg_set_quality(&c, s.quality, TRUE);
    for (int i = 0; i < c.num_components; ++i) {  // luma (and YCCK's K) as asked, the rest 1x1
        const bool full = i == 0 || (c.jpeg_color_space == JCS_YCCK && i == 3);
        c.comp_info[i].h_samp_factor = full ? s.h_samp : 1;
        c.comp_info[i].v_samp_factor = full ? s.v_samp : 1;
    }
    if (s.in == JCS_CMYK) c.write_Adobe_marker = s.adobe_marker ? TRUE : FALSE;
    if (s.progressive) jpeg_simple_progression(&c);
    c.arith_code = s.arithmetic ? TRUE : FALSE;
    c.restart_in_rows = s.restart_rows;
    jpeg_start_compress(&c, TRUE);
    for (const bytes& m : s.app1) jpeg_write_marker(&c, JPEG_APP0 + 1, m.data(), static_cast<unsigned>(m.size()));
    const auto row_size = static_cast<std::size_t>(s.w * c.input_components);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = const_cast<JSAMPLE*>(s.pixels.data() + c.next_scanline * row_size);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    bytes out(buffer, buffer + size);
    std::free(buffer);
    jpeg_destroy_compress(&c);
    return out;
}

/// The test's own CMYK -> RGB: ink amounts unless Adobe-inverted (then 255 means no ink).
std::uint8_t cmyk_channel(int v, int k, bool inverted) {
    if (!inverted) {
        v = 255 - v;
        k = 255 - k;
    }
    return static_cast<std::uint8_t>(std::lround(v * k / 255.0));
}

/// Reference: the whole stored image decoded by plain libjpeg at 1/denom (no crop, no skip), RGB.
image_u8 libjpeg_whole(const bytes& jpg, int denom) {
    jpeg_decompress_struct c{};
    jpeg_error_mgr err{};
    c.err = jpeg_std_error(&err);
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, jpg.data(), static_cast<unsigned long>(jpg.size()));
    jpeg_read_header(&c, TRUE);
    const bool cmyk = c.jpeg_color_space == JCS_CMYK || c.jpeg_color_space == JCS_YCCK;
    const bool inverted = c.saw_Adobe_marker;
    c.scale_num = 1;
    c.scale_denom = static_cast<unsigned>(denom);
    c.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&c);
    const int w = static_cast<int>(c.output_width), h = static_cast<int>(c.output_height), n = c.output_components;
    bytes raw(static_cast<std::size_t>(w * h * n));
    while (c.output_scanline < c.output_height) {
        JSAMPROW row = raw.data() + static_cast<std::size_t>(c.output_scanline) * static_cast<std::size_t>(w * n);
        jpeg_read_scanlines(&c, &row, 1);
    }
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    if (!cmyk) return make_image(w, h, 3, std::move(raw));
    bytes rgb(static_cast<std::size_t>(w * h * 3));
    for (std::size_t i = 0; i < static_cast<std::size_t>(w * h); ++i)
        for (int ch = 0; ch < 3; ++ch) rgb[3 * i + ch] = cmyk_channel(raw[4 * i + ch], raw[4 * i + 3], inverted);
    return make_image(w, h, 3, std::move(rgb));
}

// ---- writing PNG with libpng -----------------------------------------------------------------------

struct png_spec {
    int w = 0, h = 0, color_type = PNG_COLOR_TYPE_RGB, bit_depth = 8;
    bytes rows{};  ///< as PNG stores them: depths < 8 packed high bits first, 16 bits big-endian
    bool interlaced = false;
    std::vector<png_color> palette{};
    bytes palette_alpha{};    ///< tRNS of a palette image
    bool colour_key = false;  ///< tRNS of a grey or RGB image: `key`
    png_color_16 key{};
};

int png_channels(int color_type) {
    switch (color_type) {
        case PNG_COLOR_TYPE_GRAY:
        case PNG_COLOR_TYPE_PALETTE:
            return 1;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            return 2;
        case PNG_COLOR_TYPE_RGB:
            return 3;
        default:
            return 4;
    }
}
std::size_t png_row_bytes(const png_spec& s) {
    return (static_cast<std::size_t>(s.w) * png_channels(s.color_type) * s.bit_depth + 7) / 8;
}

void append_to_vector(png_structp png, png_bytep data, std::size_t n) {
    auto* out = static_cast<bytes*>(png_get_io_ptr(png));
    out->insert(out->end(), data, data + n);
}
void no_flush(png_structp) {}

bytes write_png(const png_spec& s) {
    bytes out;
    std::vector<png_bytep> rows(static_cast<std::size_t>(s.h));
    for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = const_cast<png_bytep>(s.rows.data() + y * png_row_bytes(s));
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png)) != 0) {
        png_destroy_write_struct(&png, &info);
        throw std::runtime_error("libpng could not write the test image");
    }
    png_set_write_fn(png, &out, &append_to_vector, &no_flush);
    png_set_IHDR(png, info, static_cast<png_uint_32>(s.w), static_cast<png_uint_32>(s.h), s.bit_depth, s.color_type,
                 s.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (!s.palette.empty()) png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
    if (!s.palette_alpha.empty())
        png_set_tRNS(png, info, s.palette_alpha.data(), static_cast<int>(s.palette_alpha.size()), nullptr);
    if (s.colour_key) png_set_tRNS(png, info, nullptr, 1, &s.key);
    png_write_info(png, info);
    png_write_image(png, rows.data());
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return out;
}

/// CRC-32 as PNG chunks carry it (the zlib/ISO-HDLC polynomial), bit by bit.
std::uint32_t crc32_of(const std::uint8_t* p, std::size_t n) {
    std::uint32_t c = 0xFFFFFFFFu;
    for (std::size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

/// A PNG chunk: length, type, data, CRC.
void append_chunk(bytes& out, const char* type, const bytes& data) {
    const auto n = static_cast<std::uint32_t>(data.size());
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<std::uint8_t>(n >> shift));
    const std::size_t start = out.size();
    out.insert(out.end(), type, type + 4);
    out.insert(out.end(), data.begin(), data.end());
    const std::uint32_t crc = crc32_of(out.data() + start, out.size() - start);
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<std::uint8_t>(crc >> shift));
}

/// Offset of the first chunk of `type` (its length field), or 0.
std::size_t find_chunk(const bytes& png, const char* type) {
    for (std::size_t at = 8; at + 8 <= png.size();) {
        const std::uint32_t n = (std::uint32_t{png[at]} << 24) | (std::uint32_t{png[at + 1]} << 16) |
                                (std::uint32_t{png[at + 2]} << 8) | png[at + 3];
        if (std::memcmp(png.data() + at + 4, type, 4) == 0) return at;
        at += 12 + n;
    }
    return 0;
}

/// Everything written to stderr (fd 2) while alive: the decoders must print nothing.
class stderr_capture {
public:
    stderr_capture() : file_(std::tmpfile()) {
        std::fflush(stderr);
        saved_ = dup(2);
        dup2(fileno(file_), 2);
    }
    stderr_capture(const stderr_capture&) = delete;
    stderr_capture& operator=(const stderr_capture&) = delete;
    ~stderr_capture() {
        restore();
        std::fclose(file_);
    }
    std::string text() {
        restore();
        std::string s;
        std::rewind(file_);
        for (int ch; (ch = std::fgetc(file_)) != EOF;) s.push_back(static_cast<char>(ch));
        return s;
    }

private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        dup2(saved_, 2);
        close(saved_);
        saved_ = -1;
    }
    std::FILE* file_;
    int saved_ = -1;
};

/// An image of 16x16 flat blocks, colour of block (bx, by) = colours[by * blocks_x + bx].
bytes blocks(int blocks_x, int blocks_y, int c, const std::vector<std::array<std::uint8_t, 4>>& colours) {
    const int w = 16 * blocks_x, h = 16 * blocks_y;
    bytes b(static_cast<std::size_t>(w * h * c));
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int ch = 0; ch < c; ++ch)
                b[static_cast<std::size_t>((y * w + x) * c + ch)] =
                    colours[static_cast<std::size_t>((y / 16) * blocks_x + x / 16)][static_cast<std::size_t>(ch)];
    return b;
}

/// Largest distance between `img` and the flat colour expected at each pixel.
int max_block_error(const image_u8& img, auto expected_at) {
    int m = 0;
    for (int y = 0; y < img.h; ++y)
        for (int x = 0; x < img.w; ++x) {
            const std::array<std::uint8_t, 3> e = expected_at(x, y);
            for (int ch = 0; ch < 3; ++ch)
                m = std::max(m, std::abs(int(img.at(y, x)[ch]) - int(e[static_cast<std::size_t>(ch)])));
        }
    return m;
}

const std::vector<std::array<std::uint8_t, 4>> six_colours{{{200, 40, 40, 0}},  {{40, 200, 40, 0}},
                                                           {{40, 40, 200, 0}},  {{220, 220, 60, 0}},
                                                           {{60, 220, 220, 0}}, {{120, 120, 120, 0}}};

}  // namespace

// ---- format sniffing and files ------------------------------------------------------------------------

TEST_CASE("image_io: sniff_format goes by the first bytes, not the name") {
    const bytes jpg = write_jpeg({.w = 8, .h = 8, .pixels = bytes(192, 128)});
    const bytes png = write_png({.w = 2, .h = 1, .rows = bytes(6, 7)});
    CHECK(sniff_format(jpg, "picture.png") == image_format::jpeg);
    CHECK(sniff_format(png, "picture.jpg") == image_format::png);
    const std::string empty = error_of([] { (void)sniff_format({}, "empty.jpg"); });
    CHECK(empty.find("empty.jpg") != std::string::npos);
    CHECK(empty.find("not a JPEG or PNG") != std::string::npos);
    const std::string gif = error_of([] {
        const bytes g{'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
        (void)sniff_format(g, "anim.gif");
    });
    CHECK(gif.find("anim.gif") != std::string::npos);
    CHECK(gif.find("not a JPEG or PNG") != std::string::npos);
    // Two of the three JPEG magic bytes, seven of the eight PNG ones: neither.
    CHECK_THROWS_AS((void)sniff_format(bytes{0xFF, 0xD8}, "x"), tricks::data_error);
    CHECK_THROWS_AS((void)sniff_format(bytes(png.begin(), png.begin() + 7), "x"), tricks::data_error);
}

TEST_CASE("image_io: read_file returns the whole file; a missing file names the path and the reason") {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("tricks_image_io_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const bytes content = noise(200'003, 5);
    {
        std::ofstream f(dir / "a.bin", std::ios::binary);
        f.write(reinterpret_cast<const char*>(content.data()), static_cast<std::streamsize>(content.size()));
    }
    CHECK(read_file(dir / "a.bin") == content);
    { std::ofstream f(dir / "empty.bin", std::ios::binary); }
    CHECK(read_file(dir / "empty.bin").empty());

    const std::string missing = error_of([&] { (void)read_file(dir / "missing.jpg"); });
    CHECK(missing.find((dir / "missing.jpg").string()) != std::string::npos);
    CHECK(missing.find("No such file or directory") != std::string::npos);
    const std::string directory = error_of([&] { (void)read_file(dir); });
    CHECK(directory.find(dir.string()) != std::string::npos);
    CHECK(directory.find("Is a directory") != std::string::npos);
    std::filesystem::remove_all(dir);
}

// ---- PNG: lossless, so exact pixels ---------------------------------------------------------------------

TEST_CASE("image_io: PNG colour types and bit depths decode to the exact RGB pixels") {
    const int w = 13, h = 7;  // 13: packed rows of 1/2/4 bits end in a partial byte
    const auto n = static_cast<std::size_t>(w * h);
    std::mt19937 gen(11);

    SUBCASE("RGB, grey, grey+alpha, RGBA at 8 bits") {
        for (int type :
             {PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB_ALPHA}) {
            CAPTURE(type);
            const int c = png_channels(type);
            const bytes raw = noise(n * static_cast<std::size_t>(c), static_cast<std::uint32_t>(type + 1));
            const bytes file = write_png({.w = w, .h = h, .color_type = type, .rows = raw});
            bytes want(n * 3);
            for (std::size_t i = 0; i < n; ++i)
                for (int ch = 0; ch < 3; ++ch)
                    want[3 * i + ch] =
                        raw[i * static_cast<std::size_t>(c) + (c >= 3 ? static_cast<std::size_t>(ch) : 0)];
            const image_u8 img = decode_image(file, "t.png");
            CHECK(img.w == w);
            CHECK(img.h == h);
            CHECK(img.c == 3);
            CHECK(img.pixels == want);
            const image_header hd = read_header(file, "t.png");
            CHECK(hd.format == image_format::png);
            CHECK(hd.channels == c);
            CHECK(hd.width == w);
            CHECK(hd.height == h);
            CHECK(hd.orientation == 1);
        }
    }
    SUBCASE("palette with tRNS (alpha stripped), at 8 and 4 bits") {
        std::vector<png_color> pal;
        for (int i = 0; i < 16; ++i)
            pal.push_back(
                {static_cast<png_byte>(i * 16), static_cast<png_byte>(255 - i * 9), static_cast<png_byte>(i * 5 + 3)});
        const bytes alpha{0, 50, 100, 255, 7};
        for (int depth : {8, 4}) {
            CAPTURE(depth);
            bytes index(n);
            for (auto& v : index) v = static_cast<std::uint8_t>(gen() % 16);
            png_spec s{.w = w,
                       .h = h,
                       .color_type = PNG_COLOR_TYPE_PALETTE,
                       .bit_depth = depth,
                       .palette = pal,
                       .palette_alpha = alpha};
            s.rows.assign(png_row_bytes(s) * h, 0);
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x) {
                    const std::uint8_t v = index[static_cast<std::size_t>(y * w + x)];
                    auto& byte = s.rows[png_row_bytes(s) * y + static_cast<std::size_t>(x * depth / 8)];
                    byte = depth == 8 ? v : static_cast<std::uint8_t>(byte | v << (4 - 4 * (x % 2)));
                }
            bytes want;
            for (std::uint8_t v : index) want.insert(want.end(), {pal[v].red, pal[v].green, pal[v].blue});
            const bytes file = write_png(s);
            CHECK(decode_image(file, "p.png").pixels == want);
            CHECK(read_header(file, "p.png").channels == 1);
        }
    }
    SUBCASE("grey at 1, 2 and 4 bits expands to 0..255 (v * 255 / (2^bits - 1))") {
        for (int depth : {1, 2, 4}) {
            CAPTURE(depth);
            const int levels = 1 << depth;
            png_spec s{.w = w, .h = h, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = depth};
            s.rows.assign(png_row_bytes(s) * h, 0);
            bytes want;
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x) {
                    const int v = static_cast<int>(gen() % static_cast<unsigned>(levels));
                    const int per_byte = 8 / depth;
                    s.rows[png_row_bytes(s) * y + static_cast<std::size_t>(x / per_byte)] |=
                        static_cast<std::uint8_t>(v << (8 - depth * (x % per_byte + 1)));
                    const auto g = static_cast<std::uint8_t>(v * 255 / (levels - 1));
                    want.insert(want.end(), {g, g, g});
                }
            CHECK(decode_image(write_png(s), "g.png").pixels == want);
        }
    }
    SUBCASE("colour-key tRNS on grey and RGB leaves the pixels as they are") {
        const bytes grey = noise(n, 3);
        png_spec g{.w = w, .h = h, .color_type = PNG_COLOR_TYPE_GRAY, .rows = grey, .colour_key = true};
        g.key.gray = grey[0];
        bytes want;
        for (std::uint8_t v : grey) want.insert(want.end(), {v, v, v});
        CHECK(decode_image(write_png(g), "k.png").pixels == want);
        const bytes rgb = noise(n * 3, 4);
        png_spec c{.w = w, .h = h, .color_type = PNG_COLOR_TYPE_RGB, .rows = rgb, .colour_key = true};
        c.key.red = rgb[0];
        c.key.green = rgb[1];
        c.key.blue = rgb[2];
        CHECK(decode_image(write_png(c), "k.png").pixels == rgb);
    }
    SUBCASE("interlaced (Adam7) RGB and 4-bit palette equal the known pixels") {
        const bytes rgb = noise(n * 3, 8);
        CHECK(decode_image(write_png({.w = w, .h = h, .rows = rgb, .interlaced = true}), "i.png").pixels == rgb);
        std::vector<png_color> pal{{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
        png_spec s{
            .w = w, .h = h, .color_type = PNG_COLOR_TYPE_PALETTE, .bit_depth = 4, .interlaced = true, .palette = pal};
        s.rows.assign(png_row_bytes(s) * h, 0);
        bytes want;
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) {
                const int v = (x * 3 + y) % 4;
                s.rows[png_row_bytes(s) * y + static_cast<std::size_t>(x / 2)] |=
                    static_cast<std::uint8_t>(v << (4 - 4 * (x % 2)));
                want.insert(want.end(), {pal[static_cast<std::size_t>(v)].red, pal[static_cast<std::size_t>(v)].green,
                                         pal[static_cast<std::size_t>(v)].blue});
            }
        CHECK(decode_image(write_png(s), "i4.png").pixels == want);
    }
}

TEST_CASE("image_io: PNG ancillary chunks other than tRNS are skipped, malformed or not; eXIf is ignored") {
    const bytes rgb = noise(5 * 4 * 3, 31);
    const bytes plain = write_png({.w = 5, .h = 4, .rows = rgb});
    const std::size_t idat = find_chunk(plain, "IDAT");
    REQUIRE(idat > 0);
    bytes file(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(idat));
    append_chunk(file, "gAMA", {1, 2, 3});             // wrong length: libpng would call it invalid
    append_chunk(file, "iCCP", {'x', 0, 0, 1, 2, 3});  // not a deflated ICC profile
    const bytes exif = exif_block(6, true);
    append_chunk(file, "eXIf", bytes(exif.begin() + 6, exif.end()));  // a valid orientation 6, ignored
    append_chunk(file, "prVt", {1, 2, 3});                            // private, unknown to libpng
    file.insert(file.end(), plain.begin() + static_cast<std::ptrdiff_t>(idat), plain.end());
    stderr_capture captured;
    CHECK(decode_image(file, "meta.png").pixels == rgb);
    const image_header h = read_header(file, "meta.png");
    CHECK(h.orientation == 1);
    CHECK(h.width == 5);
    // A skipped chunk's CRC is still checked; libpng only warns about an ancillary one, which
    // counts as an error here: the file is damaged.
    bytes bad_crc(plain.begin(), plain.begin() + static_cast<std::ptrdiff_t>(idat));
    append_chunk(bad_crc, "tEXt", {'k', 0, 'v'});
    bad_crc.back() ^= 1;
    bad_crc.insert(bad_crc.end(), plain.begin() + static_cast<std::ptrdiff_t>(idat), plain.end());
    const std::string m = error_of([&] { (void)read_header(bad_crc, "crc.png"); });
    CHECK(m.find("crc.png") != std::string::npos);
    CHECK(m.find("tEXt: CRC error") != std::string::npos);
    CHECK(captured.text().empty());
}

TEST_CASE("image_io: 16-bit PNG samples scale to 8 bits rounded (png_set_scale_16), all 65536 values") {
    // v * 255 / 65535 = v / 257, rounded; never a tie, since 257 is odd.
    png_spec s{.w = 256, .h = 256, .color_type = PNG_COLOR_TYPE_GRAY, .bit_depth = 16};
    for (unsigned v = 0; v < 65536; ++v)
        s.rows.insert(s.rows.end(), {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)});
    const image_u8 img = decode_image(write_png(s), "g16.png");
    REQUIRE(img.pixels.size() == 65536u * 3);
    int wrong = 0;
    for (unsigned v = 0; v < 65536; ++v) {
        const auto want = static_cast<std::uint8_t>((v + 128) / 257);
        for (int ch = 0; ch < 3; ++ch) wrong += img.pixels[3 * v + static_cast<unsigned>(ch)] != want;
    }
    CHECK(wrong == 0);
    // png_set_strip_16 would keep the high byte: 0x0081 -> 0 and 0xFF00 -> 255; rounded, 1 and 254.
    CHECK(img.pixels[3 * 0x0081] == 1);
    CHECK(img.pixels[3 * 0xFF00] == 254);

    // RGBA at 16 bits: scaled and alpha stripped.
    const bytes raw = noise(5 * 3 * 8, 21);
    const bytes file =
        write_png({.w = 5, .h = 3, .color_type = PNG_COLOR_TYPE_RGB_ALPHA, .bit_depth = 16, .rows = raw});
    bytes want;
    for (std::size_t p = 0; p < 15; ++p)
        for (std::size_t ch = 0; ch < 3; ++ch) {
            const unsigned v = (unsigned{raw[8 * p + 2 * ch]} << 8) | raw[8 * p + 2 * ch + 1];
            want.push_back(static_cast<std::uint8_t>((v + 128) / 257));
        }
    CHECK(decode_image(file, "rgba16.png").pixels == want);
    CHECK(read_header(file, "rgba16.png").channels == 4);
}

// ---- JPEG: lossy, so known pixels within a tolerance ----------------------------------------------------

// Flat 16x16 blocks at quality 100 and 4:4:4: every 8x8 block holds only a DC coefficient,
// quantised with step 1, so the only errors left are the YCbCr <-> RGB conversions' rounding.
constexpr int flat_tolerance = 2;

TEST_CASE("image_io: RGB, grey, CMYK and YCCK JPEGs decode to RGB within the rounding of the colour transforms") {
    SUBCASE("RGB 4:4:4") {
        const bytes px = blocks(3, 2, 3, six_colours);
        const bytes file = write_jpeg({.w = 48, .h = 32, .pixels = px});
        const image_u8 img = decode_image(file, "rgb.jpg");
        CHECK(img.w == 48);
        CHECK(img.h == 32);
        CHECK(img.c == 3);
        CHECK(max_abs_diff(img, make_image(48, 32, 3, px)) <= flat_tolerance);
        const image_header hd = read_header(file, "rgb.jpg");
        CHECK(hd.format == image_format::jpeg);
        CHECK(hd.channels == 3);
        CHECK(hd.orientation == 1);
    }
    SUBCASE("grey replicates to R = G = B") {
        const bytes px = blocks(3, 2, 1, {{{10}}, {{60}}, {{110}}, {{160}}, {{210}}, {{250}}});
        const bytes file = write_jpeg({.w = 48, .h = 32, .in = JCS_GRAYSCALE, .pixels = px});
        const image_u8 img = decode_image(file, "grey.jpg");
        bool grey = true;
        int err = 0;
        for (std::size_t i = 0; i < px.size(); ++i) {
            grey = grey && img.pixels[3 * i] == img.pixels[3 * i + 1] && img.pixels[3 * i] == img.pixels[3 * i + 2];
            err = std::max(err, std::abs(int(img.pixels[3 * i]) - int(px[i])));
        }
        CHECK(grey);
        CHECK(err <= 1);  // no colour transform: only the DC's rounding
        CHECK(read_header(file, "grey.jpg").channels == 1);
    }
    SUBCASE("CMYK: ink amounts without an Adobe marker, inverted with one, and YCCK (always Adobe)") {
        const std::vector<std::array<std::uint8_t, 4>> cmyk{
            {{0, 0, 0, 0}}, {{255, 0, 0, 0}}, {{30, 120, 200, 60}}, {{200, 100, 50, 150}}};
        const bytes px = blocks(2, 2, 4, cmyk);
        auto expected = [&](bool inverted) {
            return [&cmyk, inverted](int x, int y) {
                const auto& k = cmyk[static_cast<std::size_t>((y / 16) * 2 + x / 16)];
                return std::array<std::uint8_t, 3>{cmyk_channel(k[0], k[3], inverted),
                                                   cmyk_channel(k[1], k[3], inverted),
                                                   cmyk_channel(k[2], k[3], inverted)};
            };
        };
        const bytes plain = write_jpeg({.w = 32, .h = 32, .in = JCS_CMYK, .pixels = px, .adobe_marker = false});
        const image_u8 a = decode_image(plain, "cmyk.jpg");
        CHECK(max_block_error(a, expected(false)) <= flat_tolerance);
        CHECK(a.at(0, 0)[0] >= 255 - flat_tolerance);  // no ink: white
        CHECK(read_header(plain, "cmyk.jpg").channels == 4);

        const bytes adobe = write_jpeg({.w = 32, .h = 32, .in = JCS_CMYK, .pixels = px, .adobe_marker = true});
        const image_u8 b = decode_image(adobe, "adobe.jpg");
        CHECK(max_block_error(b, expected(true)) <= flat_tolerance);
        CHECK(b.at(0, 0)[0] <= 1);  // all zero inverted: full ink, black

        const bytes ycck = write_jpeg({.w = 32, .h = 32, .in = JCS_CMYK, .stored = JCS_YCCK, .pixels = px});
        const image_u8 c = decode_image(ycck, "ycck.jpg");
        CHECK(max_block_error(c, expected(true)) <= flat_tolerance + 1);  // + the YCC transform's rounding
    }
}

// ---- EXIF orientation --------------------------------------------------------------------------------------

TEST_CASE("image_io: EXIF orientations 1-8 display the stored pattern turned, in both byte orders") {
    // 3 x 2 blocks of distinct colours: asymmetric under every flip and rotation.
    const bytes px = blocks(3, 2, 3, six_colours);
    const bytes plain_file = write_jpeg({.w = 48, .h = 32, .pixels = px});
    const image_u8 plain = decode_image(plain_file, "plain.jpg");
    auto colour_of_block = [](int i) {
        const auto& c = six_colours[static_cast<std::size_t>(i)];
        return std::array<std::uint8_t, 3>{c[0], c[1], c[2]};
    };
    auto near = [](const std::uint8_t* p, std::array<std::uint8_t, 3> c) {
        return std::abs(p[0] - c[0]) <= flat_tolerance && std::abs(p[1] - c[1]) <= flat_tolerance &&
               std::abs(p[2] - c[2]) <= flat_tolerance;
    };
    for (bool little : {true, false})
        for (int o = 1; o <= 8; ++o) {
            CAPTURE(little);
            CAPTURE(o);
            const bytes file =
                write_jpeg({.w = 48, .h = 32, .pixels = px, .app1 = {exif_block(static_cast<unsigned>(o), little)}});
            const image_header hd = read_header(file, "o.jpg");
            CHECK(hd.orientation == o);
            CHECK(hd.stored_width == 48);
            CHECK(hd.stored_height == 32);
            CHECK(hd.width == (o >= 5 ? 32 : 48));
            CHECK(hd.height == (o >= 5 ? 48 : 32));
            const image_u8 img = decode_image(file, "o.jpg");
            CHECK(img.w == hd.width);
            CHECK(img.h == hd.height);
            CHECK(same_image(img, oriented(plain, o)));  // same coefficients: the same pixels, moved
        }
    // Readable anchors. Stored blocks: 0 1 2 / 3 4 5.
    auto displayed = [&](int o) {
        return decode_image(
            write_jpeg({.w = 48, .h = 32, .pixels = px, .app1 = {exif_block(static_cast<unsigned>(o), true)}}),
            "o.jpg");
    };
    const image_u8 r6 = displayed(6);  // rotated 90 degrees clockwise: stored top-left shows top-right
    CHECK(near(r6.at(0, 31), colour_of_block(0)));
    CHECK(near(r6.at(0, 0), colour_of_block(3)));
    CHECK(near(r6.at(47, 0), colour_of_block(5)));
    const image_u8 r8 = displayed(8);  // counter-clockwise: stored top-left shows bottom-left
    CHECK(near(r8.at(47, 0), colour_of_block(0)));
    CHECK(near(r8.at(0, 0), colour_of_block(2)));
    const image_u8 r3 = displayed(3);  // 180 degrees
    CHECK(near(r3.at(0, 0), colour_of_block(5)));
    CHECK(near(r3.at(31, 47), colour_of_block(0)));
    const image_u8 r2 = displayed(2);  // mirrored: stored top-right shows top-left
    CHECK(near(r2.at(0, 0), colour_of_block(2)));
}

TEST_CASE("image_io: the first Exif APP1 block decides; other APP1 blocks and malformed Exif give orientation 1") {
    const bytes px = blocks(3, 2, 3, six_colours);
    const bytes xmp_bytes = [] {
        const std::string s = "http://ns.adobe.com/xap/1.0/";
        bytes b(s.begin(), s.end());
        b.push_back(0);
        b.insert(b.end(), 40, 'x');
        return b;
    }();
    const bytes with_xmp = write_jpeg({.w = 48, .h = 32, .pixels = px, .app1 = {xmp_bytes, exif_block(6, false)}});
    CHECK(read_header(with_xmp, "x.jpg").orientation == 6);

    bytes bad_offset = exif_block(6, true);
    put32(bad_offset, 6 + 4, 0xFFFFFFF0u, true);
    const bytes file = write_jpeg({.w = 48, .h = 32, .pixels = px, .app1 = {bad_offset}});
    CHECK(read_header(file, "bad.jpg").orientation == 1);
    CHECK(
        same_image(decode_image(file, "bad.jpg"), decode_image(write_jpeg({.w = 48, .h = 32, .pixels = px}), "p.jpg")));
}

TEST_CASE("image_io: exif_orientation bounds-checks every offset of a malformed block") {
    using tricks::data::detail::exif_orientation;
    for (bool little : {true, false}) {
        CAPTURE(little);
        for (unsigned v = 1; v <= 8; ++v) CHECK(exif_orientation(exif_block(v, little)) == int(v));
        CHECK(exif_orientation(exif_block(0, little)) == 1);
        CHECK(exif_orientation(exif_block(9, little)) == 1);
        CHECK(exif_orientation(exif_block(6, little, 4)) == 1);  // type LONG, not SHORT
        bytes b = exif_block(6, little);
        b[6] = 'X';  // byte order
        CHECK(exif_orientation(b) == 1);
        b = exif_block(6, little);
        put16(b, 6 + 2, 43, little);  // not 42
        CHECK(exif_orientation(b) == 1);
        b = exif_block(6, little);
        put32(b, 6 + 4, static_cast<std::uint32_t>(b.size() - 6 - 1), little);  // IFD offset leaves 1 byte
        CHECK(exif_orientation(b) == 1);
        b = exif_block(6, little);
        put16(b, 6 + 8, 0xFFFF, little);   // 65535 entries in a 48-byte block,
        put16(b, 6 + 22, 0x0113, little);  // none of them the orientation
        CHECK(exif_orientation(b) == 1);
        b = exif_block(6, little);
        put32(b, 6 + 26, 0, little);  // count 0
        CHECK(exif_orientation(b) == 1);

        // Every truncation (an exact-size copy, so that ASan sees any read past the end).
        const bytes full = exif_block(7, little);
        for (std::size_t n = 0; n <= full.size(); ++n) {
            const bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
            const int o = exif_orientation(cut);
            CHECK((o == 1 || o == 7));
            if (n >= 6 + 34) CHECK(o == 7);  // the orientation entry is complete
        }
    }
    CHECK(exif_orientation(bytes{}) == 1);
    CHECK(exif_orientation(bytes{'E', 'x', 'i', 'f', 0, 0}) == 1);
    CHECK(exif_orientation(bytes{'J', 'F', 'I', 'F', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0}) == 1);

    // Random corruption: never outside 1..8, never a read out of bounds.
    std::mt19937 gen(3);
    int outside = 0;
    for (int trial = 0; trial < 20000; ++trial) {
        bytes b = exif_block(1 + gen() % 8, gen() % 2 == 0);
        for (int k = 1 + static_cast<int>(gen() % 4); k > 0; --k)
            b[gen() % b.size()] = static_cast<std::uint8_t>(gen());
        b.resize(gen() % (b.size() + 1));
        const int o = exif_orientation(b);
        outside += o < 1 || o > 8;
    }
    CHECK(outside == 0);
}

// ---- errors ----------------------------------------------------------------------------------------------------

TEST_CASE("image_io: empty, foreign, truncated and corrupt files throw data_error naming the file; nothing on stderr") {
    std::mt19937 gen(17);
    const bytes jpg = write_jpeg({.w = 64, .h = 64, .pixels = noise(64 * 64 * 3, 1), .quality = 90});
    const bytes png = write_png({.w = 64, .h = 64, .rows = noise(64 * 64 * 3, 2)});
    const std::size_t idat = find_chunk(png, "IDAT");
    REQUIRE(idat > 0);

    stderr_capture captured;
    struct expectation {
        std::string name, reason;
        bytes file;
    };
    std::vector<expectation> cases;
    cases.push_back({"empty.jpg", "not a JPEG or PNG", {}});
    cases.push_back({"noise.jpg", "not a JPEG or PNG", noise(1000, 9)});
    cases.push_back({"half.jpg", "Premature end of JPEG file",
                     bytes(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(jpg.size() / 2))});
    cases.push_back({"no_eoi.jpg", "Premature end of JPEG file", bytes(jpg.begin(), jpg.end() - 2)});
    cases.push_back(
        {"half.png", "truncated", bytes(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2))});
    cases.push_back({"no_iend.png", "truncated", bytes(png.begin(), png.end() - 12)});
    bytes data_byte = png;
    data_byte[idat + 8 + 100] ^= 0x40;
    cases.push_back({"idat_byte.png", "IDAT: ", data_byte});  // zlib's complaint or the CRC's, whichever first
    bytes crc_byte = png;
    const std::uint32_t idat_len = (std::uint32_t{png[idat]} << 24) | (std::uint32_t{png[idat + 1]} << 16) |
                                   (std::uint32_t{png[idat + 2]} << 8) | png[idat + 3];
    crc_byte[idat + 8 + idat_len] ^= 0x01;
    cases.push_back({"idat_crc.png", "CRC error", crc_byte});
    // A corrupt zlib stream under valid CRCs: zlib's own complaint, found after the last row.
    {
        bytes zdata;  // the IDAT chunks' data joined, into one IDAT
        for (std::size_t at = idat; std::memcmp(png.data() + at + 4, "IDAT", 4) == 0;) {
            const std::uint32_t n = (std::uint32_t{png[at]} << 24) | (std::uint32_t{png[at + 1]} << 16) |
                                    (std::uint32_t{png[at + 2]} << 8) | png[at + 3];
            zdata.insert(zdata.end(), png.begin() + static_cast<std::ptrdiff_t>(at + 8),
                         png.begin() + static_cast<std::ptrdiff_t>(at + 8 + n));
            at += 12 + n;
        }
        zdata.back() ^= 0x55;  // inside the Adler-32 checksum
        bytes rebuilt(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(idat));
        append_chunk(rebuilt, "IDAT", zdata);
        append_chunk(rebuilt, "IEND", {});
        cases.push_back({"adler.png", "IDAT: incorrect data check", rebuilt});
    }

    for (const auto& c : cases) {
        CAPTURE(c.name);
        const std::string m = error_of([&] { (void)decode_image(c.file, c.name); });
        CHECK(m.find(c.name) != std::string::npos);
        CHECK(m.find(c.reason) != std::string::npos);
        CHECK(m.find("tricks::image: ") == 0);
    }
    // The header alone is intact in a file cut in the middle of its pixels.
    CHECK(read_header(cases[2].file, "half.jpg").width == 64);
    CHECK(read_header(cases[4].file, "half.png").width == 64);
    // ... but not in one cut inside its headers.
    CHECK(error_of([&] { (void)read_header(bytes(jpg.begin(), jpg.begin() + 40), "head.jpg"); }).find("head.jpg") !=
          std::string::npos);
    CHECK(error_of([&] { (void)read_header(bytes(png.begin(), png.begin() + 20), "head.png"); }).find("head.png") !=
          std::string::npos);

    // Random damage anywhere: a valid image or a data_error, nothing else (ASan/UBSan watch the rest).
    for (const bytes* original : {&jpg, &png}) {
        int others = 0;
        for (int trial = 0; trial < 150; ++trial) {
            bytes b = *original;
            for (int k = 1 + static_cast<int>(gen() % 3); k > 0; --k)
                b[3 + gen() % (b.size() - 3)] = static_cast<std::uint8_t>(gen());
            if (trial % 3 == 0) b.resize(3 + gen() % (b.size() - 3));
            try {
                const image_u8 img = decode_image(b, "fuzz");
                others += img.size() != img.pixels.size() || img.c != 3;
                const decoded_region r = decode_region(b, "fuzz", {5, 7, 30, 20}, 10, 10);
                others += r.image.size() != r.image.pixels.size();
            } catch (const tricks::data_error&) {
            } catch (...) {
                ++others;
            }
        }
        CHECK(others == 0);
    }
    const std::string printed = captured.text();
    CHECK_MESSAGE(printed.empty(), printed);
}

TEST_CASE("image_io: images over 65535 pixels a side or 2^28 pixels are refused from the header") {
    auto png_of = [](std::uint32_t w, std::uint32_t h) {
        bytes f{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
        bytes ihdr;
        for (std::uint32_t v : {w, h})
            for (int shift : {24, 16, 8, 0}) ihdr.push_back(static_cast<std::uint8_t>(v >> shift));
        ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, deflate, no filter method, no interlace
        append_chunk(f, "IHDR", ihdr);
        append_chunk(f, "IDAT", {});
        append_chunk(f, "IEND", {});
        return f;
    };
    for (auto [w, h] : {std::pair{70000u, 1u}, std::pair{1u, 70000u}, std::pair{20000u, 20000u}}) {
        const std::string size = std::to_string(w) + "x" + std::to_string(h);
        CAPTURE(size);
        const bytes f = png_of(w, h);
        const std::string m = error_of([&] { (void)read_header(f, "bomb.png"); });
        CHECK(m.find("bomb.png") != std::string::npos);
        CHECK(m.find(size) != std::string::npos);
        CHECK(m.find("decompression bomb") != std::string::npos);
        CHECK(error_of([&] { (void)decode_image(f, "bomb.png"); }).find(size) != std::string::npos);
    }
    // JPEG sides stop at 65500; the pixel count is the limit there. Patch SOF0's height and width.
    bytes jpg = write_jpeg({.w = 16, .h = 16, .pixels = bytes(16 * 16 * 3, 90)});
    std::size_t sof = 2;
    while (sof + 9 < jpg.size() && !(jpg[sof] == 0xFF && jpg[sof + 1] == 0xC0)) ++sof;
    REQUIRE(sof + 9 < jpg.size());
    for (std::size_t at : {sof + 5, sof + 7}) {
        jpg[at] = 20000 >> 8;
        jpg[at + 1] = 20000 & 0xFF;
    }
    const std::string m = error_of([&] { (void)read_header(jpg, "bomb.jpg"); });
    CHECK(m.find("bomb.jpg") != std::string::npos);
    CHECK(m.find("20000x20000") != std::string::npos);
    // At the limit: accepted.
    CHECK(read_header(write_png({.w = 65535, .h = 1, .rows = bytes(65535 * 3, 1)}), "wide.png").width == 65535);
}

// ---- decode_region ------------------------------------------------------------------------------------------------

namespace {

/// The scale the spec asks for: the largest d in {1, 2, 4, 8} with box.w / d >= tw, box.h / d >= th.
int expected_denom(crop_box b, int tw, int th, bool jpeg) {
    int d = 1;
    if (jpeg)
        for (int c : {2, 4, 8})
            if (b.w >= c * tw && b.h >= c * th) d = c;
    return d;
}

/// Checks `r` = decode_region(file, box, tw, th) against `ref`, the whole image decoded at 1/d and
/// turned to display: the region is the box widened by the margin and clipped, at the position the
/// box has in ref, and its pixels are ref's. Wd x Hd: the displayed full-resolution size.
void check_region(const decoded_region& r, const image_u8& ref, crop_box box, int tw, int th, int o, int Wd, int Hd) {
    const int d = r.scale_denom;
    const double dd = d;
    const int m = 2 * static_cast<int>(std::ceil(std::max(box.w / (dd * tw), box.h / (dd * th)))) + 2;
    // The displayed 1/d grid is the turned stored one: along an axis the orientation reverses, it
    // starts at the far end of the stored axis, so a size d does not divide shifts it.
    const int nx = (Wd + d - 1) / d, ny = (Hd + d - 1) / d;
    const double bx = (box.x + (reverses_x(o) ? nx * d - Wd : 0)) / dd;
    const double by = (box.y + (reverses_y(o) ? ny * d - Hd : 0)) / dd;
    const int rx0 = std::max(0, static_cast<int>(std::floor(bx)) - m);
    const int ry0 = std::max(0, static_cast<int>(std::floor(by)) - m);
    const int rx1 = std::min(nx, static_cast<int>(std::ceil(bx + box.w / dd)) + m);
    const int ry1 = std::min(ny, static_cast<int>(std::ceil(by + box.h / dd)) + m);
    REQUIRE(ref.w == nx);
    REQUIRE(ref.h == ny);
    CHECK(r.image.c == 3);
    CHECK(r.image.w == rx1 - rx0);
    CHECK(r.image.h == ry1 - ry0);
    CHECK(r.x0 == bx - rx0);
    CHECK(r.y0 == by - ry0);
    CHECK(r.x1 == r.x0 + box.w / dd);
    CHECK(r.y1 == r.y0 + box.h / dd);
    if (r.image.w == rx1 - rx0 && r.image.h == ry1 - ry0) {
        const image_u8 want = window(ref, rx0, ry0, rx1 - rx0, ry1 - ry0);
        CHECK_MESSAGE(same_image(r.image, want), "max difference ", max_abs_diff(r.image, want));
    }
}

/// Boxes over a Wd x Hd image with targets: the whole image, the four borders and corners, a
/// single pixel, thin strips, then random ones; targets chosen to reach every scale.
struct region_case {
    crop_box box;
    int tw, th;  // the target size
};
std::vector<region_case> region_cases(int Wd, int Hd, std::uint32_t seed, int random_count) {
    std::vector<region_case> cases{
        {{0, 0, Wd, Hd}, Wd, Hd},              // d = 1, nothing to crop
        {{0, 0, Wd, Hd}, Wd / 2, Hd / 2},      // d = 2
        {{0, 0, Wd, Hd}, Wd / 8, Hd / 8},      // d = 8
        {{0, 0, 40, 30}, 40, 30},              // top-left corner
        {{Wd - 40, Hd - 30, 40, 30}, 20, 15},  // bottom-right corner, d = 2
        {{Wd - 64, 0, 64, 64}, 16, 16},        // top-right, d = 4
        {{0, Hd - 64, 64, 64}, 8, 8},          // bottom-left, d = 8
        {{Wd / 2, Hd / 2, 1, 1}, 1, 1},        // one pixel
        {{0, 17, Wd, 3}, 50, 3},               // a full-width strip
        {{33, 0, 5, Hd}, 5, 20},               // a full-height strip
        {{17, 23, Wd - 30, Hd - 40}, 13, 11},  // d = 8 with a big margin
    };
    std::mt19937 gen(seed);
    for (int i = 0; i < random_count; ++i) {
        const int w = 1 + static_cast<int>(gen() % static_cast<unsigned>(Wd));
        const int h = 1 + static_cast<int>(gen() % static_cast<unsigned>(Hd));
        const int x = static_cast<int>(gen() % static_cast<unsigned>(Wd - w + 1));
        const int y = static_cast<int>(gen() % static_cast<unsigned>(Hd - h + 1));
        const int shrink = 1 << (gen() % 5);  // 1..16: targets around every scale
        cases.push_back({{x, y, w, h}, std::max(1, w / shrink), std::max(1, h / shrink)});
    }
    return cases;
}

/// Runs every case of region_cases on a JPEG (stored sw x sh, orientation o) against libjpeg's
/// whole-image decodes at each scale.
void check_jpeg_regions(const bytes& file, int sw, int sh, int o, std::uint32_t seed, int random_count) {
    const int Wd = o >= 5 ? sh : sw, Hd = o >= 5 ? sw : sh;
    std::map<int, image_u8> ref;  // scale -> the whole image at that scale, displayed
    ref[1] = decode_image(file, "r.jpg");
    CHECK(same_image(ref[1], oriented(libjpeg_whole(file, 1), o)));
    for (const region_case& c : region_cases(Wd, Hd, seed, random_count)) {
        CAPTURE(c.box.x);
        CAPTURE(c.box.y);
        CAPTURE(c.box.w);
        CAPTURE(c.box.h);
        CAPTURE(c.tw);
        CAPTURE(c.th);
        const decoded_region r = decode_region(file, "r.jpg", c.box, c.tw, c.th);
        CHECK(r.scale_denom == expected_denom(c.box, c.tw, c.th, true));
        if (!ref.contains(r.scale_denom)) ref[r.scale_denom] = oriented(libjpeg_whole(file, r.scale_denom), o);
        check_region(r, ref[r.scale_denom], c.box, c.tw, c.th, o, Wd, Hd);
    }
}

}  // namespace

TEST_CASE("image_io: decode_region picks the scale and margin of the spec") {
    const bytes file = write_jpeg({.w = 640, .h = 480, .pixels = bytes(640 * 480 * 3, 100), .quality = 50});
    struct row {
        crop_box box;
        int tw, th, d;
    };
    for (const row& c :
         {row{{0, 0, 640, 480}, 224, 224, 2}, row{{0, 0, 447, 448}, 224, 224, 1}, row{{0, 0, 448, 448}, 224, 224, 2},
          row{{0, 0, 600, 400}, 75, 50, 8}, row{{0, 0, 600, 400}, 76, 50, 4}, row{{10, 10, 100, 100}, 224, 224, 1},
          row{{0, 0, 640, 480}, 1, 1, 8}}) {
        CAPTURE(c.box.w);
        CAPTURE(c.box.h);
        CAPTURE(c.tw);
        const decoded_region r = decode_region(file, "s.jpg", c.box, c.tw, c.th);
        CHECK(r.scale_denom == c.d);
    }
    // PNG has no scaled decoding.
    const bytes png = write_png({.w = 64, .h = 64, .rows = bytes(64 * 64 * 3, 5)});
    CHECK(decode_region(png, "s.png", {0, 0, 64, 64}, 8, 8).scale_denom == 1);

    // Margin 2 * ceil(factor) + 2, clipped: 100 -> 224 (factor < 1) has 4 pixels a side.
    const decoded_region inner = decode_region(file, "s.jpg", {100, 50, 100, 80}, 224, 224);
    CHECK(inner.image.w == 108);
    CHECK(inner.image.h == 88);
    CHECK(inner.x0 == 4);
    CHECK(inner.y0 == 4);
    CHECK(inner.x1 == 104);
    CHECK(inner.y1 == 84);
    const decoded_region corner = decode_region(file, "s.jpg", {0, 0, 100, 80}, 224, 224);
    CHECK(corner.x0 == 0);
    CHECK(corner.y0 == 0);
    CHECK(corner.image.w == 104);
    CHECK(corner.image.h == 84);
    const decoded_region far = decode_region(file, "s.jpg", {540, 400, 100, 80}, 224, 224);
    CHECK(far.x0 == 4);
    CHECK(far.image.w == 104);
    CHECK(far.image.h == 84);
    // 600x400 -> 75x50 at d = 8: factor 1 at that scale, margin 4; box edges at 1/8 are fractional.
    const decoded_region coarse = decode_region(file, "s.jpg", {101, 3, 600 - 64, 400}, 67, 50);
    CHECK(coarse.scale_denom == 8);
    CHECK(coarse.x0 == doctest::Approx(101 / 8.0 - (12 - 4)));
    CHECK(coarse.y0 == 3 / 8.0);
    CHECK(coarse.x1 - coarse.x0 == (600 - 64) / 8.0);
}

TEST_CASE("image_io: decode_region refuses boxes outside the image and non-positive targets") {
    const bytes file = write_jpeg(
        {.w = 40, .h = 30, .pixels = bytes(40 * 30 * 3, 100), .app1 = {exif_block(6, true)}});  // displayed 30 x 40
    for (const crop_box b : {crop_box{0, 0, 31, 10}, crop_box{-1, 0, 5, 5}, crop_box{0, 0, 0, 5},
                             crop_box{29, 39, 2, 1}, crop_box{0, 0, 40, 30}}) {
        CAPTURE(b.x);
        CAPTURE(b.w);
        const std::string m = error_of([&] { (void)decode_region(file, "box.jpg", b, 10, 10); });
        CHECK(m.find("box.jpg") != std::string::npos);
        CHECK(m.find("crop box {x=" + std::to_string(b.x) + ", y=" + std::to_string(b.y)) != std::string::npos);
        CHECK(m.find("30x40 image") != std::string::npos);
    }
    const decoded_region whole = decode_region(file, "box.jpg", {0, 0, 30, 40}, 10, 10);  // d = 2
    CHECK(whole.image.w == 15);
    CHECK(whole.image.h == 20);
    CHECK(error_of([&] {
              (void)decode_region(file, "t.jpg", {0, 0, 5, 5}, 0, 5);
          }).find("target size 0x5") != std::string::npos);
}

TEST_CASE("image_io: decode_region equals the whole-image decode at d = 1 and libjpeg's 1/d decode at d > 1") {
    const int sw = 203, sh = 157;  // sizes no iMCU or scale divides
    const bytes px = noise(static_cast<std::size_t>(sw * sh * 3), 42);
    SUBCASE("JPEG sampling variants, progressive, arithmetic, restart markers, grey, CMYK") {
        struct variant {
            const char* name;
            jpeg_spec spec;
        };
        const bytes grey = noise(static_cast<std::size_t>(sw * sh), 43);
        const bytes cmyk = noise(static_cast<std::size_t>(sw * sh * 4), 44);
        const std::vector<variant> variants{
            {"4:2:0", {.w = sw, .h = sh, .pixels = px, .quality = 90, .h_samp = 2, .v_samp = 2}},
            {"4:2:2", {.w = sw, .h = sh, .pixels = px, .quality = 90, .h_samp = 2, .v_samp = 1}},
            {"4:4:4", {.w = sw, .h = sh, .pixels = px, .quality = 90}},
            {"4:4:0", {.w = sw, .h = sh, .pixels = px, .quality = 90, .h_samp = 1, .v_samp = 2}},
            {"4:1:1", {.w = sw, .h = sh, .pixels = px, .quality = 90, .h_samp = 4, .v_samp = 1}},
            {"4:2:0 progressive",
             {.w = sw, .h = sh, .pixels = px, .quality = 90, .h_samp = 2, .v_samp = 2, .progressive = true}},
            {"4:2:0 arithmetic",
             {.w = sw, .h = sh, .pixels = px, .quality = 90, .h_samp = 2, .v_samp = 2, .arithmetic = true}},
            {"4:2:0 restarts",
             {.w = sw, .h = sh, .pixels = px, .quality = 90, .h_samp = 2, .v_samp = 2, .restart_rows = 1}},
            {"grey", {.w = sw, .h = sh, .in = JCS_GRAYSCALE, .pixels = grey, .quality = 90}},
            {"CMYK Adobe", {.w = sw, .h = sh, .in = JCS_CMYK, .pixels = cmyk, .quality = 90}},
        };
        for (std::size_t i = 0; i < variants.size(); ++i) {
            CAPTURE(variants[i].name);
            check_jpeg_regions(write_jpeg(variants[i].spec), sw, sh, 1, static_cast<std::uint32_t>(i), 25);
        }
    }
    SUBCASE("every EXIF orientation: the stored region is decoded, turned, and placed") {
        for (int o = 1; o <= 8; ++o)
            for (bool progressive : {false, true}) {
                CAPTURE(o);
                CAPTURE(progressive);
                const bytes file = write_jpeg({.w = sw,
                                               .h = sh,
                                               .pixels = px,
                                               .quality = 90,
                                               .h_samp = 2,
                                               .v_samp = 2,
                                               .progressive = progressive,
                                               .app1 = {exif_block(static_cast<unsigned>(o), o % 2 == 0)}});
                check_jpeg_regions(file, sw, sh, o, static_cast<std::uint32_t>(100 + o), 15);
            }
    }
    SUBCASE("PNG, plain and interlaced: always d = 1, pixels equal decode_image's") {
        for (bool interlaced : {false, true}) {
            CAPTURE(interlaced);
            const bytes file = write_png({.w = sw, .h = sh, .rows = px, .interlaced = interlaced});
            const image_u8 whole = decode_image(file, "r.png");
            CHECK(whole.pixels == px);
            for (const region_case& c : region_cases(sw, sh, 7, 25)) {
                CAPTURE(c.box.x);
                CAPTURE(c.box.y);
                CAPTURE(c.box.w);
                CAPTURE(c.box.h);
                const decoded_region r = decode_region(file, "r.png", c.box, c.tw, c.th);
                CHECK(r.scale_denom == 1);
                check_region(r, whole, c.box, c.tw, c.th, 1, sw, sh);
            }
        }
    }
}

TEST_CASE("image_io: decode_region reads a truncated JPEG above the cut and refuses regions below it") {
    const int w = 64, h = 512;
    const bytes file = write_jpeg({.w = w,
                                   .h = h,
                                   .pixels = noise(static_cast<std::size_t>(w * h * 3), 77),
                                   .quality = 90,
                                   .h_samp = 2,
                                   .v_samp = 2});
    const bytes half(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(file.size() / 2));
    const decoded_region top = decode_region(half, "cut.jpg", {0, 0, w, 16}, w, 16);
    const decoded_region whole_top = decode_region(file, "full.jpg", {0, 0, w, 16}, w, 16);
    CHECK(top.image.h == 20);
    CHECK(same_image(top.image, whole_top.image));
    const std::string m = error_of([&] { (void)decode_region(half, "cut.jpg", {0, h - 16, w, 16}, w, 16); });
    CHECK(m.find("cut.jpg") != std::string::npos);
    CHECK(m.find("Premature end of JPEG file") != std::string::npos);
    // A region that ends at the last row reads the file to its end.
    const bytes no_eoi(file.begin(), file.end() - 2);
    CHECK(error_of([&] {
              (void)decode_region(no_eoi, "e.jpg", {0, h - 16, w, 16}, w, 16);
          }).find("e.jpg") != std::string::npos);
    CHECK(decode_region(no_eoi, "e.jpg", {0, 0, w, 16}, w, 16).image.h == 20);
}
