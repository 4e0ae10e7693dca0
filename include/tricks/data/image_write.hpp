#pragma once
// Writing 8-bit images as PNG (libpng) or JPEG (libjpeg-turbo): to look at what the augmentation
// produced, and to build image-folder data sets (examples/make_image_folder writes Fashion-MNIST
// as one). Grey (c = 1) and RGB (c = 3) images; the file is written to a temporary name and
// renamed, so a reader never sees half a file. Errors throw tricks::data_error naming the file.
#include <png.h>
#include <stdio.h>  // jpeglib.h needs FILE and size_t declared before it
#include <jpeglib.h>

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/data/image.hpp"

namespace tricks::data {

namespace detail {

inline void check_writable(const image_u8& img, const std::filesystem::path& p) {
    require<data_error>(img.h > 0 && img.w > 0 && (img.c == 1 || img.c == 3), "tricks::image_write: ", p.string(),
                        ": image is ", img.h, "x", img.w, "x", img.c,
                        "; expected a non-empty grey (c = 1) or RGB (c = 3) image");
    require<data_error>(img.pixels.size() == img.size(), "tricks::image_write: ", p.string(), ": ", img.pixels.size(),
                        " pixel bytes for a ", img.h, "x", img.w, "x", img.c, " image");
}

/// Opens `p`'s temporary sibling for writing; commit_file renames it over `p`.
inline std::FILE* open_temp(const std::filesystem::path& p) {
    const std::filesystem::path tmp = p.string() + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    require<data_error>(f != nullptr, "tricks::image_write: cannot create ", tmp.string(), ": ", std::strerror(errno));
    return f;
}

inline void commit_file(std::FILE* f, const std::filesystem::path& p) {
    const std::filesystem::path tmp = p.string() + ".tmp";
    const bool ok = std::fflush(f) == 0 && !std::ferror(f);
    std::fclose(f);
    std::error_code ec;
    if (!ok) {
        std::filesystem::remove(tmp, ec);
        throw data_error("tricks::image_write: writing " + tmp.string() + " failed: " + std::strerror(errno));
    }
    std::filesystem::rename(tmp, p, ec);
    require<data_error>(!ec, "tricks::image_write: cannot rename ", tmp.string(), " to ", p.string(), ": ",
                        ec.message());
}

struct jpeg_write_error {
    jpeg_error_mgr mgr;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

}  // namespace detail

/// Writes `img` as an 8-bit PNG (grey or RGB, no interlacing).
inline void write_png(const std::filesystem::path& p, const image_u8& img) {
    detail::check_writable(img, p);
    std::FILE* f = detail::open_temp(p);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png ? png_create_info_struct(png) : nullptr;
    std::vector<png_bytep> rows(static_cast<std::size_t>(img.h));
    for (int y = 0; y < img.h; ++y)
        rows[static_cast<std::size_t>(y)] =
            const_cast<png_bytep>(img.pixels.data() + static_cast<std::size_t>(y) * img.w * img.c);
    bool failed = png == nullptr || info == nullptr;
    if (!failed) {
        if (setjmp(png_jmpbuf(png))) {
            failed = true;
        } else {
            png_init_io(png, f);
            png_set_IHDR(png, info, static_cast<png_uint_32>(img.w), static_cast<png_uint_32>(img.h), 8,
                         img.c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                         PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
            png_write_info(png, info);
            png_write_image(png, rows.data());
            png_write_end(png, nullptr);
        }
    }
    png_destroy_write_struct(png ? &png : nullptr, info ? &info : nullptr);
    if (failed) {
        std::fclose(f);
        std::error_code ec;
        std::filesystem::remove(p.string() + ".tmp", ec);
        throw data_error("tricks::image_write: libpng failed writing " + p.string());
    }
    detail::commit_file(f, p);
}

/// Writes `img` as a baseline JPEG of `quality` (1-100) with 4:2:0 chroma subsampling for RGB
/// (libjpeg's default, as most photographs are stored).
inline void write_jpeg(const std::filesystem::path& p, const image_u8& img, int quality = 90) {
    detail::check_writable(img, p);
    require<data_error>(quality >= 1 && quality <= 100, "tricks::image_write: ", p.string(), ": quality ", quality,
                        "; expected 1 to 100");
    std::FILE* f = detail::open_temp(p);
    jpeg_compress_struct cinfo{};
    detail::jpeg_write_error err{};
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = [](j_common_ptr c) {
        auto* e = reinterpret_cast<detail::jpeg_write_error*>(c->err);
        (*c->err->format_message)(c, e->message);
        std::longjmp(e->jump, 1);
    };
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        std::fclose(f);
        std::error_code ec;
        std::filesystem::remove(p.string() + ".tmp", ec);
        throw data_error(std::string("tricks::image_write: libjpeg failed writing ") + p.string() + ": " + err.message);
    }
    jpeg_create_compress(&cinfo);
    jpeg_stdio_dest(&cinfo, f);
    cinfo.image_width = static_cast<JDIMENSION>(img.w);
    cinfo.image_height = static_cast<JDIMENSION>(img.h);
    cinfo.input_components = img.c;
    cinfo.in_color_space = img.c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        auto* row =
            const_cast<JSAMPROW>(img.pixels.data() + static_cast<std::size_t>(cinfo.next_scanline) * img.w * img.c);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    detail::commit_file(f, p);
}

}  // namespace tricks::data
