#pragma once
// The types that the image decoders (image_io.hpp) and the image transforms (image_transform.hpp)
// share: an 8-bit interleaved image, a crop box in the pixel grid of a whole image, and a decoded
// region of an image together with where the box lies inside it.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tricks::data {

/// An 8-bit image, rows top to bottom, pixels interleaved (h x w x c bytes; c = 3 is RGB).
struct image_u8 {
    int h = 0, w = 0, c = 0;
    std::vector<std::uint8_t> pixels;

    [[nodiscard]] std::size_t size() const noexcept {
        return static_cast<std::size_t>(h) * static_cast<std::size_t>(w) * static_cast<std::size_t>(c);
    }
    [[nodiscard]] const std::uint8_t* at(int y, int x) const noexcept {
        return pixels.data() +
               (static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x)) *
                   static_cast<std::size_t>(c);
    }
};

/// A rectangle of whole pixels, [x, x + w) x [y, y + h), in the coordinates of the full-resolution
/// image as it is displayed (after EXIF orientation).
struct crop_box {
    int x = 0, y = 0, w = 0, h = 0;
    friend bool operator==(const crop_box&, const crop_box&) = default;
};

/// A decoded part of an image: `image` (RGB) covers the requested box and a margin around it,
/// possibly at a reduced scale (JPEG DCT scaling); the box lies at [x0, x1) x [y0, y1) in
/// `image`'s pixel coordinates (fractional when the scale does not divide the box's edges).
/// Resampling the box of `image` to the target size approximates resampling the box of the
/// full-resolution image (exactly so when scale_denom == 1).
struct decoded_region {
    image_u8 image;
    double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
    int scale_denom = 1;  ///< 1, 2, 4 or 8: the image was decoded at 1/scale_denom of full size
};

}  // namespace tricks::data
