#pragma once
// IDX files (the MNIST / Fashion-MNIST container, http://yann.lecun.com/exdb/mnist/), plain or gzip.
//
// Layout: two zero bytes, one element-type byte, one rank byte, `rank` big-endian uint32 extents,
// then the elements in row-major order. Only unsigned bytes (type 0x08) are read: every data set
// this library trains on stores pixels and labels that way, and a wider reader would be untested.
//
// Both kinds of file go through zlib's gz* functions, which read a file without a gzip header
// verbatim; so `foo` and `foo.gz` take one code path and no name-based guessing is needed.
#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "tricks/core/error.hpp"

namespace tricks::data {

/// The contents of one IDX file of unsigned bytes.
struct idx_array {
    std::vector<int> dims;              ///< extents, outermost first (e.g. {60000, 28, 28})
    std::vector<std::uint8_t> values;   ///< product(dims) bytes, row-major
    std::filesystem::path source = {};  ///< file it was read from; empty when built in memory

    /// product(dims), or 0 for an empty rank.
    [[nodiscard]] std::size_t element_count() const noexcept {
        if (dims.empty()) return 0;
        std::size_t p = 1;
        for (int d : dims) p *= static_cast<std::size_t>(d < 0 ? 0 : d);
        return p;
    }
};

namespace detail {

struct gz_closer {
    void operator()(gzFile_s* f) const noexcept { gzclose(f); }
};
using gz_file = std::unique_ptr<gzFile_s, gz_closer>;

/// Human name of an IDX element-type byte, so a wrong file is recognisable from the message.
inline const char* idx_type_name(std::uint8_t t) noexcept {
    switch (t) {
        case 0x08:
            return "unsigned byte";
        case 0x09:
            return "signed byte";
        case 0x0B:
            return "int16";
        case 0x0C:
            return "int32";
        case 0x0D:
            return "float32";
        case 0x0E:
            return "float64";
        default:
            return "unknown";
    }
}

inline std::string hex_byte(unsigned v) {
    constexpr char digits[] = "0123456789abcdef";
    return std::string("0x") + digits[(v >> 4) & 0xF] + digits[v & 0xF];
}

/// Reads up to n bytes; returns how many arrived (short only at end of data or on a gzip error,
/// which the caller inspects with gzerror). gzread takes an unsigned count, hence the chunks.
inline std::size_t gz_read_some(gzFile_s* f, std::uint8_t* dst, std::size_t n) {
    constexpr std::size_t chunk = std::size_t{1} << 24;
    std::size_t got = 0;
    while (got < n) {
        const auto want = static_cast<unsigned>(std::min(n - got, chunk));
        const int r = gzread(f, dst + got, want);
        if (r <= 0) break;
        got += static_cast<std::size_t>(r);
        if (static_cast<unsigned>(r) < want) break;
    }
    return got;
}

/// Non-empty when zlib reports a real decoding error. Z_BUF_ERROR only means the compressed
/// stream ended early, which the callers report as truncation with byte counts instead.
inline std::string gz_hard_error(gzFile_s* f, const std::string& path) {
    int errnum = Z_OK;
    const char* msg = gzerror(f, &errnum);
    if (errnum == Z_OK || errnum == Z_BUF_ERROR) return {};
    std::string m = msg ? msg : "unknown zlib error";
    // zlib prefixes "path: ", which our own prefix already says.
    if (m.starts_with(path + ": ")) m.erase(0, path.size() + 2);
    return m;
}

}  // namespace detail

/// Reads an IDX file of unsigned bytes, gzip-compressed or not.
/// Throws tricks::data_error naming the path and the offending field when the file is missing,
/// unreadable, has the wrong magic or element type, a rank outside 1..4, a zero or overflowing
/// extent, fewer data bytes than the header declares, or bytes after the data.
inline idx_array read_idx(const std::filesystem::path& path) {
    const std::string where = "tricks::idx: " + path.string() + ": ";
    std::error_code ec;
    require<data_error>(std::filesystem::exists(path, ec), where, "no such file");
    require<data_error>(!std::filesystem::is_directory(path, ec), where, "is a directory, expected an IDX file");

    detail::gz_file f(gzopen(path.c_str(), "rb"));
    require<data_error>(f != nullptr, where, "cannot open for reading");
    // A 128 KiB input buffer instead of zlib's 8 KiB default: fewer syscalls on 47 MB of pixels.
    gzbuffer(f.get(), 128 * 1024);
    auto check_stream = [&] {
        const std::string hard = detail::gz_hard_error(f.get(), path.string());
        require<data_error>(hard.empty(), where, "corrupt gzip stream: ", hard);
    };

    std::array<std::uint8_t, 4> magic{};
    const std::size_t got_magic = detail::gz_read_some(f.get(), magic.data(), magic.size());
    check_stream();
    // gzdirect is meaningful once something was read: byte counts below are after decompression.
    const char* decompressed = gzdirect(f.get()) ? "" : " (decompressed)";
    require<data_error>(got_magic == magic.size(), where, "truncated: an IDX header needs 4 magic bytes, file has ",
                        got_magic, decompressed);
    require<data_error>(magic[0] == 0 && magic[1] == 0, where, "bad magic: first two bytes are ",
                        detail::hex_byte(magic[0]), " ", detail::hex_byte(magic[1]),
                        ", an IDX file starts with 0x00 0x00");
    require<data_error>(magic[2] == 0x08, where, "unsupported element type ", detail::hex_byte(magic[2]), " (",
                        detail::idx_type_name(magic[2]), "); only 0x08 (unsigned byte) is supported");
    const int rank = magic[3];
    require<data_error>(rank >= 1 && rank <= 4, where, "rank ", rank, " out of range; expected 1 to 4");

    std::array<std::uint8_t, 16> raw_dims{};
    const std::size_t dim_bytes = 4 * static_cast<std::size_t>(rank);
    const std::size_t got_dims = detail::gz_read_some(f.get(), raw_dims.data(), dim_bytes);
    check_stream();
    require<data_error>(got_dims == dim_bytes, where, "truncated: rank ", rank, " needs ", dim_bytes,
                        " dimension bytes, file has ", got_dims, decompressed);

    idx_array out;
    out.source = path;
    out.dims.resize(static_cast<std::size_t>(rank));
    std::size_t expected = 1;
    for (int i = 0; i < rank; ++i) {
        const auto* b = raw_dims.data() + 4 * i;
        const std::uint32_t d = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
                                std::uint32_t{b[3]};
        require<data_error>(d > 0, where, "dimension ", i, " is 0; every extent must be positive");
        require<data_error>(d <= static_cast<std::uint32_t>(INT_MAX), where, "dimension ", i, " is ", d,
                            ", larger than ", INT_MAX);
        require<data_error>(expected <= std::numeric_limits<std::size_t>::max() / d, where, "dimension ", i, " = ", d,
                            " makes the element count overflow");
        expected *= d;
        out.dims[static_cast<std::size_t>(i)] = static_cast<int>(d);
    }

    // Grow while reading instead of trusting a header that may be corrupt: a bogus extent then
    // costs a truncation error, not a multi-gigabyte allocation. Real files fit the first reserve.
    constexpr std::size_t reserve_cap = std::size_t{1} << 28;
    constexpr std::size_t chunk = std::size_t{1} << 24;
    out.values.reserve(std::min(expected, reserve_cap));
    std::size_t got = 0;
    while (got < expected) {
        const std::size_t want = std::min(expected - got, chunk);
        out.values.resize(got + want);
        const std::size_t r = detail::gz_read_some(f.get(), out.values.data() + got, want);
        got += r;
        if (r < want) break;
    }
    out.values.resize(got);
    check_stream();
    require<data_error>(got == expected, where, "truncated: header says ", expected, " data bytes, file has ", got,
                        decompressed);

    // Trailing bytes mean the header and the payload disagree: the file is not what it claims.
    std::array<std::uint8_t, 4096> scratch{};
    std::size_t extra = 0;
    for (;;) {
        const std::size_t r = detail::gz_read_some(f.get(), scratch.data(), scratch.size());
        extra += r;
        if (r < scratch.size()) break;
    }
    check_stream();
    require<data_error>(extra == 0, where, "trailing bytes: ", extra, " bytes after the ", expected,
                        " data bytes the header declares");
    return out;
}

/// Writes `a` as an IDX file of unsigned bytes, gzip-compressed when `gzip` is true (used by the
/// tests to make fixtures, and by tools that export subsets). Throws tricks::data_error when the
/// array is inconsistent or the file cannot be written.
inline void write_idx(const std::filesystem::path& path, const idx_array& a, bool gzip) {
    const std::string where = "tricks::idx: " + path.string() + ": ";
    require<data_error>(!a.dims.empty() && a.dims.size() <= 4, where, "cannot write rank ", a.dims.size(),
                        "; expected 1 to 4");
    for (std::size_t i = 0; i < a.dims.size(); ++i)
        require<data_error>(a.dims[i] > 0, where, "cannot write dimension ", i, " = ", a.dims[i],
                            "; every extent must be positive");
    require<data_error>(a.element_count() == a.values.size(), where, "dims say ", a.element_count(),
                        " values, the array holds ", a.values.size());

    // "T" makes zlib write the bytes verbatim, so both variants share one code path.
    detail::gz_file f(gzopen(path.c_str(), gzip ? "wb6" : "wbT"));
    require<data_error>(f != nullptr, where, "cannot open for writing");

    std::vector<std::uint8_t> header{0, 0, 0x08, static_cast<std::uint8_t>(a.dims.size())};
    for (int d : a.dims) {
        const auto u = static_cast<std::uint32_t>(d);
        header.insert(header.end(), {static_cast<std::uint8_t>(u >> 24), static_cast<std::uint8_t>(u >> 16),
                                     static_cast<std::uint8_t>(u >> 8), static_cast<std::uint8_t>(u)});
    }
    auto write_all = [&](const std::uint8_t* p, std::size_t n) {
        constexpr std::size_t chunk = std::size_t{1} << 24;
        while (n > 0) {
            const auto want = static_cast<unsigned>(std::min(n, chunk));
            const int w = gzwrite(f.get(), p, want);
            require<data_error>(w == static_cast<int>(want), where, "write failed");
            p += want;
            n -= want;
        }
    };
    write_all(header.data(), header.size());
    write_all(a.values.data(), a.values.size());
    // gzclose flushes the compressor; its result is the only report of a failed final write.
    require<data_error>(gzclose(f.release()) == Z_OK, where, "write failed when closing");
}

}  // namespace tricks::data
