// Fuzz target: the image decoders (tricks/data/image_io.hpp) on any bytes: read_header,
// decode_image and decode_region. See fuzz_common.hpp for the rule.
//
// Input: 10 parameter bytes, then the file. The parameters place decode_region's box inside the
// image the header describes (four big-endian u16: width, height, x, y) and pick the target size
// (two bytes: 1 to 256 a side), so mutations explore
// crops, skipped rows and the JPEG DCT scales as well as the file. The seeds in
// corpus/fuzz_image are real JPEG and PNG files with that prefix.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "fuzz_common.hpp"
#include "tricks/data/image_io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using namespace tricks::data;
    constexpr std::size_t params = 10;
    if (size < params) return 0;
    const std::uint8_t* p = data;
    const std::span<const std::uint8_t> file(data + params, size - params);
    const std::string internal = "tricks::image: fuzz: internal error";
    tricks_fuzz::expect_only_tricks_errors(
        [&] {
            const image_header h = read_header(file, "fuzz");
            if (h.width < 1 || h.height < 1) std::abort();  // read_header refuses such images
            auto u16 = [&](int i) { return (unsigned{p[i]} << 8) | p[i + 1]; };
            crop_box box;
            box.w = 1 + static_cast<int>(u16(0) % static_cast<unsigned>(h.width));
            box.h = 1 + static_cast<int>(u16(2) % static_cast<unsigned>(h.height));
            box.x = static_cast<int>(u16(4) % static_cast<unsigned>(h.width - box.w + 1));
            box.y = static_cast<int>(u16(6) % static_cast<unsigned>(h.height - box.h + 1));
            const decoded_region r = decode_region(file, "fuzz", box, 1 + p[8], 1 + p[9]);
            // What a successful decode promises: an RGB image holding the box.
            if (r.image.c != 3 || r.image.pixels.size() != r.image.size() || r.x0 < 0 || r.y0 < 0 || r.x1 > r.image.w ||
                r.y1 > r.image.h)
                std::abort();
        },
        internal);
    tricks_fuzz::expect_only_tricks_errors(
        [&] {
            const image_u8 img = decode_image(file, "fuzz");
            if (img.c != 3 || img.w < 1 || img.h < 1 || img.pixels.size() != img.size()) std::abort();
        },
        internal);
    return 0;
}
