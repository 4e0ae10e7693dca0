#pragma once
// Decoding the JPEG (libjpeg-turbo) and PNG (libpng) files of an image-folder data set: the whole
// image, or only the part of it that a random-resized crop needs, at the coarsest JPEG DCT scale
// that the crop's final resize allows.
//
// Every decoded image is 8-bit RGB (image_u8 with c = 3) in display orientation:
//  - JPEG: grey is replicated to RGB; CMYK and YCCK are converted as described at cmyk_to_rgb;
//    the EXIF orientation (APP1 "Exif", IFD0 tag 0x0112) is applied.
//  - PNG: palette and grey (1 to 16 bits) become RGB; 16-bit samples are scaled to 8 bits with
//    png_set_scale_16 (rounded, v * 255 / 65535, where png_set_strip_16 would truncate); alpha,
//    whether a channel or a tRNS entry, is stripped, not composited on a background (as PIL's
//    convert("RGB") drops it, the usual torchvision loading). Ancillary chunks other than tRNS
//    are not processed, among them gAMA/iCCP/sRGB (no gamma or colour management, as in PIL) and
//    eXIf: a PNG's orientation is always 1 (camera images, which carry an orientation, are JPEGs;
//    and libpng's eXIf checks would otherwise reject images whose pixels are fine).
//
// Errors: every failure throws tricks::data_error "tricks::image: <name>: <reason>", the reason
// being the decoder's own message where the decoder found it. Nothing is printed and nothing
// exits. Every decoder warning counts as an error (libjpeg's "Premature end of JPEG file" for a
// truncated file, "Corrupt JPEG data: ...", libpng's CRC warnings and "benign" errors): a truncated
// or corrupt file never yields a partly grey image. libjpeg and libpng report errors through callbacks that must
// not return; ours longjmp back to detail::run_guarded, and the C++ code above it throws.
// Images over 65535 pixels a side or 2^28 pixels in all are refused from the header, before any
// pixel buffer is allocated (decompression bombs).
#include <cstddef>  // before jpeglib.h, which uses size_t and FILE without including their headers
#include <cstdio>

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/data/image.hpp"

namespace tricks::data {

enum class image_format { jpeg, png };

/// What a file's header says, read without decoding pixels.
struct image_header {
    int width = 0, height = 0;                ///< as displayed, i.e. after the EXIF orientation
    int stored_width = 0, stored_height = 0;  ///< as coded (width, height are these swapped for orientations 5-8)
    image_format format = image_format::jpeg;
    int orientation = 1;  ///< EXIF orientation 1..8; 1 when absent, malformed, or PNG
    int channels = 0;     ///< in the file: JPEG components; PNG 1 (grey, palette) to 4
};

namespace detail {

inline constexpr int max_image_side = 65535;
inline constexpr std::uint64_t max_image_pixels = std::uint64_t{1} << 28;

inline std::string image_where(const std::string& name) { return "tricks::image: " + name + ": "; }

inline int ceil_div(int a, int b) noexcept { return (a + b - 1) / b; }  // a >= 0, b > 0

/// A rectangle [x0, x1) x [y0, y1): whole pixels (int) or positions between pixels (double).
template <class T>
struct rect {
    T x0 = 0, y0 = 0, x1 = 0, y1 = 0;
};

// ---- EXIF orientation ---------------------------------------------------------------------------

/// How an EXIF orientation turns the stored pixel grid into the displayed one: with `transpose`,
/// displayed x runs along stored y (and y along x); a flipped displayed axis runs backwards along
/// its stored axis. The eight cases of the EXIF standard (tag 0x0112; PIL's exif_transpose).
struct orientation_axes {
    bool transpose = false, flip_x = false, flip_y = false;
};

inline orientation_axes axes_of(int orientation) noexcept {
    switch (orientation) {
        case 2:
            return {false, true, false};  // mirrored left-right
        case 3:
            return {false, true, true};  // rotated 180 degrees
        case 4:
            return {false, false, true};  // mirrored top-bottom
        case 5:
            return {true, false, false};  // transposed (mirrored along the main diagonal)
        case 6:
            return {true, true, false};  // displayed rotated 90 degrees clockwise
        case 7:
            return {true, true, true};  // transversed (mirrored along the other diagonal)
        case 8:
            return {true, false, true};  // displayed rotated 90 degrees counter-clockwise
        default:
            return {};
    }
}

/// The interval [a, b) of an axis of length `length`, seen from that axis's other end when `flip`.
template <class T>
std::array<T, 2> reflect_if(bool flip, T a, T b, T length) noexcept {
    if (flip) return {length - b, length - a};
    return {a, b};
}

/// The stored-grid rectangle holding the displayed rectangle `d` of an image stored as sw x sh.
template <class T>
rect<T> displayed_to_stored(rect<T> d, orientation_axes o, T sw, T sh) noexcept {
    const auto [ax0, ax1] = reflect_if(o.flip_x, d.x0, d.x1, o.transpose ? sh : sw);
    const auto [ay0, ay1] = reflect_if(o.flip_y, d.y0, d.y1, o.transpose ? sw : sh);
    if (o.transpose) return {ay0, ax0, ay1, ax1};
    return {ax0, ay0, ax1, ay1};
}

/// The displayed rectangle shown by the stored rectangle `s` of an image stored as sw x sh
/// (the inverse of displayed_to_stored).
template <class T>
rect<T> stored_to_displayed(rect<T> s, orientation_axes o, T sw, T sh) noexcept {
    if (o.transpose) s = {s.y0, s.x0, s.y1, s.x1};  // now along the displayed axes
    const auto [x0, x1] = reflect_if(o.flip_x, s.x0, s.x1, o.transpose ? sh : sw);
    const auto [y0, y1] = reflect_if(o.flip_y, s.y0, s.y1, o.transpose ? sw : sh);
    return {x0, y0, x1, y1};
}

/// `img` (stored orientation) as displayed: out(x, y) = img(the stored position of (x, y)).
/// The one orientation transform for both formats, whole images and regions alike.
inline image_u8 to_display(image_u8 img, orientation_axes o) {
    if (!o.transpose && !o.flip_x && !o.flip_y) return img;
    image_u8 out;
    out.c = img.c;
    out.w = o.transpose ? img.h : img.w;
    out.h = o.transpose ? img.w : img.h;
    out.pixels.resize(out.size());
    const auto c = static_cast<std::size_t>(img.c);
    std::uint8_t* dst = out.pixels.data();
    for (int y = 0; y < out.h; ++y) {
        const int b = o.flip_y ? out.h - 1 - y : y;
        for (int x = 0; x < out.w; ++x, dst += c) {
            const int a = o.flip_x ? out.w - 1 - x : x;
            std::memcpy(dst, o.transpose ? img.at(a, b) : img.at(b, a), c);
        }
    }
    return out;
}

/// Whether an APP1 block is Exif (it may also be XMP, among others).
inline bool is_exif_block(std::span<const std::uint8_t> block) noexcept {
    constexpr std::array<std::uint8_t, 6> signature{'E', 'x', 'i', 'f', 0, 0};
    return block.size() >= signature.size() && std::equal(signature.begin(), signature.end(), block.begin());
}

/// The orientation (1..8) in an APP1 Exif block ("Exif\0\0" then a TIFF structure), read from
/// IFD0's tag 0x0112 (type SHORT), in either byte order. A block that has no such tag, holds a
/// value outside 1..8 or is malformed in any way (every offset is checked against the block's
/// length, so a bad one is never followed) gives 1: orientation is advisory, the pixels are fine.
inline int exif_orientation(std::span<const std::uint8_t> block) noexcept {
    if (!is_exif_block(block)) return 1;
    const std::span<const std::uint8_t> tiff = block.subspan(6);
    if (tiff.size() < 8) return 1;
    bool little = false;
    if (tiff[0] == 'I' && tiff[1] == 'I')
        little = true;
    else if (tiff[0] != 'M' || tiff[1] != 'M')
        return 1;
    // Callers check that [at, at + 2) or [at, at + 4) lies inside `tiff`.
    auto u16 = [&](std::size_t at) -> std::uint32_t {
        return little ? tiff[at] | (std::uint32_t{tiff[at + 1]} << 8) : (std::uint32_t{tiff[at]} << 8) | tiff[at + 1];
    };
    auto u32 = [&](std::size_t at) -> std::uint32_t {
        return little ? u16(at) | (u16(at + 2) << 16) : (u16(at) << 16) | u16(at + 2);
    };
    if (u16(2) != 42) return 1;
    const std::size_t ifd = u32(4);
    if (ifd > tiff.size() || tiff.size() - ifd < 2) return 1;
    const std::size_t entries = u16(ifd);
    for (std::size_t i = 0; i < entries; ++i) {
        const std::size_t at = ifd + 2 + 12 * i;
        if (tiff.size() - at < 12) return 1;  // at <= tiff.size() holds: the previous entry fitted
        if (u16(at) != 0x0112) continue;
        constexpr std::uint32_t type_short = 3;
        if (u16(at + 2) != type_short || u32(at + 4) < 1) return 1;
        const std::uint32_t v = u16(at + 8);  // a SHORT sits in the first two bytes of the value field
        return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
    }
    return 1;
}

// ---- header and geometry helpers shared by the formats -------------------------------------------

/// The header of a stored sw x sh image; throws data_error when the image is too large to decode.
inline image_header make_header(const std::string& name, image_format format, std::uint64_t sw, std::uint64_t sh,
                                int orientation, int channels) {
    require<data_error>(
        sw >= 1 && sh >= 1 && sw <= max_image_side && sh <= max_image_side && sw * sh <= max_image_pixels,
        image_where(name), "the image is ", sw, "x", sh, " pixels; refused as a possible decompression",
        " bomb (at most ", max_image_side, " pixels a side and 2^28 pixels in all)");
    image_header h;
    h.format = format;
    h.stored_width = static_cast<int>(sw);
    h.stored_height = static_cast<int>(sh);
    h.orientation = orientation;
    h.channels = channels;
    const bool transposed = axes_of(orientation).transpose;
    h.width = transposed ? h.stored_height : h.stored_width;
    h.height = transposed ? h.stored_width : h.stored_height;
    return h;
}

/// The largest d in {1, 2, 4, 8} (at most max_denom) with box.w / d >= target_w and
/// box.h / d >= target_h: decoding at 1/d is never coarser than the final resize needs.
inline int choose_scale_denom(crop_box box, int target_w, int target_h, int max_denom) noexcept {
    int d = 1;
    for (int c = 2; c <= max_denom; c *= 2)
        if (std::int64_t{c} * target_w <= box.w && std::int64_t{c} * target_h <= box.h) d = c;
    return d;
}

/// Pixels of margin (at the 1/d scale) around the box: the support of a resampling filter that
/// shrinks by up to the larger of the two factors, 2 * ceil(factor) + 2.
inline int resample_margin(crop_box box, int target_w, int target_h, int d) noexcept {
    const std::int64_t fx = (box.w + std::int64_t{d} * target_w - 1) / (std::int64_t{d} * target_w);
    const std::int64_t fy = (box.h + std::int64_t{d} * target_h - 1) / (std::int64_t{d} * target_h);
    return static_cast<int>(2 * std::max(fx, fy) + 2);
}

// ---- error callbacks: longjmp back to run_guarded ------------------------------------------------

/// Where a decoder callback leaves its message before jumping back to run_guarded.
struct decode_failure {
    std::jmp_buf jump;
    char message[256];
};
static_assert(sizeof(decode_failure::message) >= JMSG_LENGTH_MAX);

/// Runs f() under setjmp: a libjpeg/libpng callback that longjmps to `jump` makes this return
/// false. The jump leaves f's frame and the C frames below it, so f must not hold an object with
/// a non-trivial destructor ([csetjmp.syn] makes that undefined): f only calls the C libraries
/// and writes through pointers into buffers its caller allocated. After a jump the caller only
/// throws, reading nothing f changed, so no variable needs to be volatile.
template <class F>
bool run_guarded(std::jmp_buf& jump, F& f) {
    if (setjmp(jump) != 0) return false;
    f();
    return true;
}

[[noreturn]] inline void jpeg_fail(j_common_ptr cinfo) {
    auto* failure = static_cast<decode_failure*>(cinfo->client_data);
    (*cinfo->err->format_message)(cinfo, failure->message);
    std::longjmp(failure->jump, 1);
}
/// Level -1 is a warning (corrupt or truncated data), a failure here; levels >= 0 are traces.
inline void jpeg_emit(j_common_ptr cinfo, int level) {
    if (level < 0) jpeg_fail(cinfo);
}
inline void jpeg_silent(j_common_ptr) {}

[[noreturn]] inline void png_fail(png_structp png, png_const_charp message) {
    auto* failure = static_cast<decode_failure*>(png_get_error_ptr(png));
    std::snprintf(failure->message, sizeof failure->message, "%s", message ? message : "unknown error");
    std::longjmp(failure->jump, 1);
}
/// libpng's warnings are failures here: with ancillary chunks skipped, they are about the data.
inline void png_warn(png_structp png, png_const_charp message) { png_fail(png, message); }

/// The bytes libpng reads, from memory; running out is an error (a truncated file).
struct png_source {
    const std::uint8_t* data = nullptr;
    std::size_t size = 0, pos = 0;
};
inline void png_read_bytes(png_structp png, png_bytep out, std::size_t n) {
    auto* s = static_cast<png_source*>(png_get_io_ptr(png));
    if (s->size - s->pos < n) png_error(png, "unexpected end of file (truncated PNG)");
    std::memcpy(out, s->data + s->pos, n);
    s->pos += n;
}

/// Common part of the two decoders: the name for messages and the guarded call.
class guarded_decoder {
public:
    explicit guarded_decoder(const std::string& name) : name_(name) {}

protected:
    /// Runs f under run_guarded; a decoder error or warning inside it throws data_error.
    template <class F>
    void guarded(const char* library, F&& f) {
        if (!run_guarded(failure_.jump, f))
            throw data_error(
                tricks::detail::cat(image_where(name_), library, ": ", static_cast<const char*>(failure_.message)));
    }
    std::string name_;
    decode_failure failure_{};
};

// ---- JPEG ------------------------------------------------------------------------------------------

/// libjpeg's CMYK samples to RGB. Adobe (Photoshop) stores CMYK inverted, 255 meaning no ink, and
/// marks its files with an APP14 "Adobe" marker (YCCK files always carry it); other writers store
/// ink amounts. With ink amounts c, k in 0..255, R = round((255 - c) * (255 - k) / 255), which on
/// inverted samples C, K is R = round(C * K / 255) (G and B alike from m and y); no colour
/// management. For Adobe files this is what PIL gives; PIL reads every CMYK JPEG as inverted,
/// also those without the marker, which here count as ink amounts.
inline void cmyk_to_rgb(const std::uint8_t* in, std::uint8_t* out, int n, bool inverted) noexcept {
    for (int i = 0; i < n; ++i, in += 4, out += 3) {
        const unsigned k = inverted ? in[3] : 255u - in[3];
        for (int ch = 0; ch < 3; ++ch) {
            const unsigned v = inverted ? in[ch] : 255u - in[ch];
            out[ch] = static_cast<std::uint8_t>((v * k + 127) / 255);  // round(v * k / 255); no ties since 255 is odd
        }
    }
}

/// A JPEG file's decompressor, its header read at construction.
class jpeg_decoder : guarded_decoder {
public:
    static constexpr int max_scale_denom = 8;

    jpeg_decoder(std::span<const std::uint8_t> bytes, const std::string& name) : guarded_decoder(name) {
        j_decompress_ptr c = &handle_.cinfo;
        c->err = jpeg_std_error(&errors_);
        errors_.error_exit = &jpeg_fail;
        errors_.emit_message = &jpeg_emit;
        errors_.output_message = &jpeg_silent;
        c->client_data = &failure_;
        guarded("libjpeg", [&] {
            jpeg_create_decompress(c);
            jpeg_mem_src(c, bytes.data(), static_cast<unsigned long>(bytes.size()));
            jpeg_save_markers(c, JPEG_APP0 + 1, 0xFFFF);
            jpeg_read_header(c, TRUE);
        });
        int orientation = 1;
        for (jpeg_saved_marker_ptr m = c->marker_list; m != nullptr; m = m->next) {
            const std::span<const std::uint8_t> block(m->data, m->data_length);
            if (m->marker == JPEG_APP0 + 1 && is_exif_block(block)) {
                orientation = exif_orientation(block);  // the first Exif block decides
                break;
            }
        }
        header_ =
            make_header(name, image_format::jpeg, c->image_width, c->image_height, orientation, c->num_components);
    }

    [[nodiscard]] const image_header& header() const noexcept { return header_; }

    /// The pixels r of the stored image decoded at 1/denom scale (r in that scale's pixel grid,
    /// ceil(stored_width / denom) x ceil(stored_height / denom)), RGB. Only r's rows are read, after
    /// jpeg_skip_scanlines over those above it; columns are cropped with jpeg_crop_scanline. One
    /// call per decoder.
    image_u8 decode(int denom, rect<int> r) {
        j_decompress_ptr c = &handle_.cinfo;
        const bool cmyk = c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK;
        const bool inverted = cmyk && c->saw_Adobe_marker;
        c->scale_num = 1;
        c->scale_denom = static_cast<unsigned>(denom);
        c->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;  // grey -> RGB replicates; CMYK converted below
        guarded("libjpeg", [&] { jpeg_start_decompress(c); });
        const auto full_w = static_cast<int>(c->output_width), full_h = static_cast<int>(c->output_height);
        require(r.x0 >= 0 && r.y0 >= 0 && r.x0 < r.x1 && r.y0 < r.y1 && r.x1 <= full_w && r.y1 <= full_h,
                image_where(name_), "internal error: region outside the ", full_w, "x", full_h, " scaled image");

        // jpeg_crop_scanline moves the left edge down to an iMCU column boundary and widens the
        // width to keep the right edge. Its output is not quite the full decode's next to the crop's
        // edges: fancy (triangle) chroma upsampling treats them as image edges. One iMCU column of
        // guard on either side keeps those pixels out of r, so r's pixels equal the full decode's.
        const int guard = c->max_h_samp_factor * c->min_DCT_scaled_size;
        auto crop_x = static_cast<JDIMENSION>(std::max(0, r.x0 - guard));
        auto crop_w = static_cast<JDIMENSION>(std::min(full_w, r.x1 + guard)) - crop_x;
        guarded("libjpeg", [&] {
            if (crop_w < c->output_width) jpeg_crop_scanline(c, &crop_x, &crop_w);
            if (r.y0 > 0) jpeg_skip_scanlines(c, static_cast<JDIMENSION>(r.y0));
        });

        const auto comps = static_cast<std::size_t>(c->output_components);  // 3 (RGB) or 4 (CMYK)
        std::vector<JSAMPLE> row(static_cast<std::size_t>(crop_w) * comps);
        image_u8 out;
        out.w = r.x1 - r.x0;
        out.h = r.y1 - r.y0;
        out.c = 3;
        out.pixels.resize(out.size());
        const JSAMPLE* from = row.data() + static_cast<std::size_t>(r.x0 - static_cast<int>(crop_x)) * comps;
        const std::size_t out_row = static_cast<std::size_t>(out.w) * 3;
        bool stalled = false;
        guarded("libjpeg", [&] {
            JSAMPROW p = row.data();
            for (int y = 0; y < out.h; ++y) {
                if (jpeg_read_scanlines(c, &p, 1) != 1) {
                    stalled = true;
                    return;
                }
                std::uint8_t* to = out.pixels.data() + static_cast<std::size_t>(y) * out_row;
                if (cmyk)
                    cmyk_to_rgb(from, to, out.w, inverted);
                else
                    std::memcpy(to, from, out_row);
            }
            // Reading on to the end of the file checks it (a missing EOI is truncation); rows that
            // are not needed are never read, so a file cut below r is not an error here.
            if (r.y1 == full_h)
                jpeg_finish_decompress(c);
            else
                jpeg_abort_decompress(c);
        });
        require<data_error>(!stalled, image_where(name_), "libjpeg stopped returning scanlines before row ", r.y1,
                            " of the 1/", denom, " scale");
        return out;
    }

private:
    struct handle {  // destroys the decompressor even when the constructor throws
        jpeg_decompress_struct cinfo{};
        handle() = default;
        handle(const handle&) = delete;
        handle& operator=(const handle&) = delete;
        ~handle() { jpeg_destroy_decompress(&cinfo); }  // safe on a never-created (zeroed) struct
    };
    jpeg_error_mgr errors_{};
    handle handle_;  // after errors_: destroyed first
    image_header header_;
};

// ---- PNG -------------------------------------------------------------------------------------------

/// A PNG file's reader, its header (the chunks up to the first IDAT) read at construction.
class png_decoder : guarded_decoder {
public:
    static constexpr int max_scale_denom = 1;

    png_decoder(std::span<const std::uint8_t> bytes, const std::string& name)
        : guarded_decoder(name), source_{bytes.data(), bytes.size(), 0} {
        guarded("libpng", [&] {
            // Our error functions from the start: libpng may warn while it creates the struct.
            handle_.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure_, &png_fail, &png_warn);
            if (handle_.png == nullptr) return;
            handle_.info = png_create_info_struct(handle_.png);
            if (handle_.info == nullptr) return;
            png_set_read_fn(handle_.png, &source_, &png_read_bytes);
            // Skip every ancillary chunk but tRNS (num_chunks < 0: all chunks but IHDR, PLTE, tRNS,
            // IDAT, IEND), CRCs still checked. libpng's "benign" errors (a bad zlib checksum, say)
            // arrive at png_warn as warnings, so they are errors too.
            png_set_keep_unknown_chunks(handle_.png, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
            png_read_info(handle_.png, handle_.info);
        });
        require<data_error>(handle_.png != nullptr && handle_.info != nullptr, image_where(name),
                            "libpng could not allocate its reader");
        header_ = make_header(name, image_format::png, png_get_image_width(handle_.png, handle_.info),
                              png_get_image_height(handle_.png, handle_.info), 1,
                              png_get_channels(handle_.png, handle_.info));
    }

    [[nodiscard]] const image_header& header() const noexcept { return header_; }

    /// The pixels r of the image (denom is 1: PNG has no scaled decoding), RGB. Rows below r are
    /// not read (except in an interlaced file, whose last pass spans every row). One call per decoder.
    image_u8 decode(int denom, rect<int> r) {
        png_structp png = handle_.png;
        png_infop info = handle_.info;
        const int w = header_.stored_width, h = header_.stored_height;
        require(denom == 1 && r.x0 >= 0 && r.y0 >= 0 && r.x0 < r.x1 && r.y0 < r.y1 && r.x1 <= w && r.y1 <= h,
                image_where(name_), "internal error: region outside the ", w, "x", h, " image");
        int passes = 1;
        std::size_t rowbytes = 0;
        int channels = 0, depth = 0;
        guarded("libpng", [&] {
            const int type = png_get_color_type(png, info);
            const int bits = png_get_bit_depth(png, info);
            if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
            if (type == PNG_COLOR_TYPE_GRAY && bits < 8) png_set_expand_gray_1_2_4_to_8(png);
            if (bits == 16) png_set_scale_16(png);
            if ((type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
            png_set_strip_alpha(png);
            passes = png_set_interlace_handling(png);
            png_read_update_info(png, info);
            rowbytes = png_get_rowbytes(png, info);
            channels = png_get_channels(png, info);
            depth = png_get_bit_depth(png, info);
        });
        const std::size_t row_size = static_cast<std::size_t>(w) * 3;
        require<data_error>(channels == 3 && depth == 8 && rowbytes == row_size, image_where(name_),
                            "libpng's conversion gave ", channels, " channels of ", depth, " bits, not 8-bit RGB");

        image_u8 out;
        out.w = r.x1 - r.x0;
        out.h = r.y1 - r.y0;
        out.c = 3;
        out.pixels.resize(out.size());
        const std::size_t out_row = static_cast<std::size_t>(out.w) * 3;
        const std::size_t skip = static_cast<std::size_t>(r.x0) * 3;
        if (passes > 1) {
            // Adam7: every pass spans the whole image, so the image is decoded whole, then cut.
            std::vector<std::uint8_t> all(row_size * static_cast<std::size_t>(h));
            std::vector<png_bytep> rows(static_cast<std::size_t>(h));
            for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = all.data() + y * row_size;
            guarded("libpng", [&] {
                png_read_image(png, rows.data());
                png_read_end(png, nullptr);
            });
            for (int y = 0; y < out.h; ++y)
                std::memcpy(out.pixels.data() + static_cast<std::size_t>(y) * out_row,
                            rows[static_cast<std::size_t>(r.y0 + y)] + skip, out_row);
            return out;
        }
        std::vector<std::uint8_t> row(row_size);
        guarded("libpng", [&] {
            for (int y = 0; y < r.y1; ++y) {  // rows above r too: the zlib stream is sequential
                png_read_row(png, row.data(), nullptr);
                if (y >= r.y0)
                    std::memcpy(out.pixels.data() + static_cast<std::size_t>(y - r.y0) * out_row, row.data() + skip,
                                out_row);
            }
            if (r.y1 == h) png_read_end(png, nullptr);  // checks the rest of the file (CRCs, IEND)
        });
        return out;
    }

private:
    struct handle {  // destroys the reader even when the constructor throws
        png_structp png = nullptr;
        png_infop info = nullptr;
        handle() = default;
        handle(const handle&) = delete;
        handle& operator=(const handle&) = delete;
        ~handle() {
            if (png != nullptr) png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr);
        }
    };
    png_source source_;
    handle handle_;
    image_header header_;
};

}  // namespace detail

/// The whole of a file. Throws data_error naming the path and the system's reason.
inline std::vector<std::uint8_t> read_file(const std::filesystem::path& p) {
    struct closer {
        void operator()(std::FILE* f) const noexcept { std::fclose(f); }
    };
    const std::unique_ptr<std::FILE, closer> f(std::fopen(p.c_str(), "rb"));
    if (!f) {
        const int e = errno;
        throw data_error(
            tricks::detail::cat(detail::image_where(p.string()), "cannot open: ", std::generic_category().message(e)));
    }
    std::error_code ec;
    const std::uintmax_t size = std::filesystem::file_size(p, ec);
    // One byte more than the size, so the end of the file shows without a second read.
    std::size_t want = ec ? std::size_t{1} << 16 : static_cast<std::size_t>(size) + 1;
    std::vector<std::uint8_t> bytes;
    for (;;) {
        const std::size_t old = bytes.size();
        bytes.resize(old + want);
        const std::size_t got = std::fread(bytes.data() + old, 1, want, f.get());
        bytes.resize(old + got);
        if (got < want) break;
        want = std::max(want, std::size_t{1} << 16);
    }
    if (std::ferror(f.get())) {
        const int e = errno;
        throw data_error(
            tricks::detail::cat(detail::image_where(p.string()), "cannot read: ", std::generic_category().message(e)));
    }
    return bytes;
}

/// JPEG or PNG, by the file's first bytes (FF D8 FF; the 8-byte PNG signature), not its name.
inline image_format sniff_format(std::span<const std::uint8_t> bytes, const std::string& name) {
    constexpr std::array<std::uint8_t, 3> jpeg{0xFF, 0xD8, 0xFF};
    constexpr std::array<std::uint8_t, 8> png{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    auto starts_with = [&](const auto& magic) {
        return bytes.size() >= magic.size() && std::equal(magic.begin(), magic.end(), bytes.begin());
    };
    if (starts_with(jpeg)) return image_format::jpeg;
    if (starts_with(png)) return image_format::png;
    throw data_error(tricks::detail::cat(detail::image_where(name), "not a JPEG or PNG (",
                                         bytes.empty() ? std::string("empty file") : "unrecognised first bytes", ")"));
}

namespace detail {
/// f(decoder) with the decoder for the bytes' format, its header already read.
template <class F>
auto with_decoder(std::span<const std::uint8_t> bytes, const std::string& name, F&& f) {
    if (sniff_format(bytes, name) == image_format::jpeg) {
        jpeg_decoder d(bytes, name);
        return f(d);
    }
    png_decoder d(bytes, name);
    return f(d);
}
}  // namespace detail

/// The file's size, format, EXIF orientation and channels, without decoding pixels.
inline image_header read_header(std::span<const std::uint8_t> bytes, const std::string& name) {
    return detail::with_decoder(bytes, name, [](auto& d) { return d.header(); });
}

/// The whole image, RGB, in display orientation.
inline image_u8 decode_image(std::span<const std::uint8_t> bytes, const std::string& name) {
    return detail::with_decoder(bytes, name, [](auto& d) {
        const image_header& h = d.header();
        return detail::to_display(d.decode(1, {0, 0, h.stored_width, h.stored_height}), detail::axes_of(h.orientation));
    });
}

/// The part of the image that resampling `box` (displayed full-resolution coordinates; must lie
/// inside the image) to target_w x target_h reads, decoded at the coarsest scale 1/d that keeps at
/// least the target's resolution (d in {1, 2, 4, 8}, see detail::choose_scale_denom; always 1 for
/// PNG), with a margin of detail::resample_margin pixels at that scale around the box, clipped to
/// the image. For an EXIF-oriented JPEG the matching stored region is decoded, then turned.
///
/// The result's image is RGB in display orientation; [x0, x1) x [y0, y1) is the box in its pixel
/// grid (x1 - x0 = box.w / d). Its pixels are those of the whole image decoded at 1/d and turned
/// (decode_image's when d = 1), bit for bit. At d > 1 the 1/d grid is the stored image's, so for an
/// axis the orientation reverses, a stored size that d does not divide shifts the displayed box by
/// a fraction of a pixel, which x0/y0 include. Only rows up to the region's last are decoded: a file
/// truncated below them is not an error here, one truncated within or above them is.
inline decoded_region decode_region(std::span<const std::uint8_t> bytes, const std::string& name, crop_box box,
                                    int target_w, int target_h) {
    return detail::with_decoder(bytes, name, [&](auto& d) {
        const image_header& h = d.header();
        const std::string where = detail::image_where(name);
        require<data_error>(target_w > 0 && target_h > 0, where, "target size ", target_w, "x", target_h,
                            " is not positive");
        require<data_error>(
            box.w > 0 && box.h > 0 && box.x >= 0 && box.y >= 0 && box.x <= h.width - box.w && box.y <= h.height - box.h,
            where, "crop box {x=", box.x, ", y=", box.y, ", w=", box.w, ", h=", box.h, "} does not lie inside the ",
            h.width, "x", h.height, " image");
        const int denom = detail::choose_scale_denom(box, target_w, target_h, d.max_scale_denom);
        const int margin = detail::resample_margin(box, target_w, target_h, denom);
        const detail::orientation_axes o = detail::axes_of(h.orientation);

        // The box in the stored grid, then the region around it in the stored 1/denom grid.
        const detail::rect<int> s = detail::displayed_to_stored(
            detail::rect<int>{box.x, box.y, box.x + box.w, box.y + box.h}, o, h.stored_width, h.stored_height);
        const detail::rect<int> r{
            std::max(0, s.x0 / denom - margin), std::max(0, s.y0 / denom - margin),
            std::min(detail::ceil_div(h.stored_width, denom), detail::ceil_div(s.x1, denom) + margin),
            std::min(detail::ceil_div(h.stored_height, denom), detail::ceil_div(s.y1, denom) + margin)};

        decoded_region out;
        out.image = detail::to_display(d.decode(denom, r), o);
        out.scale_denom = denom;
        // The box inside the stored region (exact: multiples of 1/denom), then turned with it.
        const double q = denom;
        const detail::rect<double> in_region{s.x0 / q - r.x0, s.y0 / q - r.y0, s.x1 / q - r.x0, s.y1 / q - r.y0};
        const detail::rect<double> shown =
            detail::stored_to_displayed(in_region, o, double(r.x1 - r.x0), double(r.y1 - r.y0));
        out.x0 = shown.x0;
        out.y0 = shown.y0;
        out.x1 = shown.x1;
        out.y1 = shown.y1;
        return out;
    });
}

}  // namespace tricks::data
