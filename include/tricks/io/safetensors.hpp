#pragma once
// Safetensors files (Hugging Face's format for tensors, https://github.com/huggingface/safetensors):
// read and validated whole, written atomically and durably (io/durable_file.hpp).
//
// Layout: u64 little-endian N | N bytes of UTF-8 JSON (an object) | the data buffer. The JSON maps
// each tensor's name to {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, offsets
// relative to the start of the data buffer, plus an optional "__metadata__": {string: string}.
// Tensors are stored C-contiguous (row-major), little-endian.
//
// The reader refuses what the reference implementation (the Rust crate) refuses, with a message
// that names the file, the tensor and the offending values: a header over 100 MB or past the end,
// JSON that is not an object, a missing or mistyped field, an unknown dtype, negative dimensions,
// element counts that overflow, offsets outside the buffer or that disagree with shape x dtype
// size, tensors that overlap, bytes of the buffer no tensor covers, and duplicate keys (which JSON
// parsers, nlohmann's included, otherwise resolve silently).
//
//   io::safetensors_file f("model.safetensors");
//   for (const auto& t : f.tensors()) std::vector<float> v = f.floats(t.name);  // F32/F16/BF16/F64
//   io::safetensors_writer w;
//   w.add("fc.weight", {10, 64}, weights);                 // F32; st_dtype::f16/bf16 round (RNE)
//   w.add_i64("bn1.num_batches_tracked", {}, std::vector<std::int64_t>{0});
//   w.commit("out.safetensors");
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "tricks/core/dtype.hpp"
#include "tricks/core/error.hpp"
#include "tricks/io/durable_file.hpp"

namespace tricks::io {

static_assert(std::endian::native == std::endian::little,
              "tricks::io: safetensors files assume a little-endian machine");

/// The element types of the format (the reference implementation's names by st_dtype_name).
enum class st_dtype : std::uint8_t {
    boolean,
    u8,
    i8,
    u16,
    i16,
    u32,
    i32,
    u64,
    i64,
    f16,
    bf16,
    f32,
    f64,
    f8_e4m3,
    f8_e5m2
};

}  // namespace tricks::io

// Helpers in tricks::detail (not tricks::io::detail, which would hide tricks::detail::cat from
// unqualified detail::cat anywhere in tricks::io).
namespace tricks::detail {
struct st_dtype_entry {
    std::string_view name;
    std::size_t size;
};
/// Indexed by st_dtype's value.
inline constexpr st_dtype_entry st_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"U16", 2}, {"I16", 2}, {"U32", 4},     {"I32", 4},     {"U64", 8},
    {"I64", 8},  {"F16", 2}, {"BF16", 2}, {"F32", 4}, {"F64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};
inline constexpr std::size_t st_dtype_count = sizeof st_dtypes / sizeof st_dtypes[0];
static_assert(st_dtype_count == static_cast<std::size_t>(io::st_dtype::f8_e5m2) + 1);

inline std::optional<io::st_dtype> st_dtype_from_name(std::string_view name) noexcept {
    for (std::size_t i = 0; i < st_dtype_count; ++i)
        if (st_dtypes[i].name == name) return static_cast<io::st_dtype>(i);
    return std::nullopt;
}

/// A JSON value shown in a message: compact, cut after 80 characters.
inline std::string st_show(const nlohmann::json& v) {
    std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (s.size() > 80) s = s.substr(0, 77) + "...";
    return s;
}

/// A non-negative JSON integer (also written as -0), or nothing.
inline std::optional<std::uint64_t> st_uint(const nlohmann::json& v) {
    if (v.is_number_unsigned()) return v.get<std::uint64_t>();
    if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
    return std::nullopt;
}

/// Whether `s` is valid UTF-8 (what a JSON string must be).
inline bool st_valid_utf8(const std::string& s) {
    try {
        (void)nlohmann::json(s).dump();
        return true;
    } catch (const nlohmann::json::exception&) {
        return false;
    }
}

}  // namespace tricks::detail

namespace tricks::io {

/// "F32", "BF16", "I64", ... ("?" for a value outside the enumeration).
inline std::string_view st_dtype_name(st_dtype d) noexcept {
    const auto i = static_cast<std::size_t>(d);
    return i < tricks::detail::st_dtype_count ? tricks::detail::st_dtypes[i].name : std::string_view("?");
}

/// Bytes per element (0 for a value outside the enumeration).
inline std::size_t st_dtype_size(st_dtype d) noexcept {
    const auto i = static_cast<std::size_t>(d);
    return i < tricks::detail::st_dtype_count ? tricks::detail::st_dtypes[i].size : 0;
}

/// One tensor of a file: [begin, end) are byte offsets into the data buffer.
struct st_tensor_info {
    std::string name;
    st_dtype dtype = st_dtype::f32;
    std::vector<std::int64_t> shape;  // [] is a scalar (one element)
    std::uint64_t begin = 0, end = 0;

    /// The product of the dimensions (1 for a scalar). The reader has checked that it fits; for an
    /// info built by hand it is computed modulo 2^64, never undefined.
    [[nodiscard]] std::int64_t numel() const noexcept {
        std::uint64_t n = 1;
        for (const std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);
        return static_cast<std::int64_t>(n);
    }
};

/// A safetensors file, read into memory and validated whole by the constructor: every accessor
/// after it works on a file known to be consistent.
class safetensors_file {
public:
    /// The reference implementation's limit on the header (its MAX_HEADER_SIZE).
    static constexpr std::uint64_t max_header_bytes = 100'000'000;

    explicit safetensors_file(const std::filesystem::path& path) : path_(path.string()) {
        std::error_code ec;
        require<data_error>(!std::filesystem::is_directory(path, ec), "tricks::safetensors: ", path_,
                            " is a directory");
        std::ifstream f(path, std::ios::binary);
        require<data_error>(static_cast<bool>(f), "tricks::safetensors: cannot open ", path_);
        std::size_t got = 0, chunk = std::size_t{1} << 16;
        for (;;) {
            all_.resize(got + chunk);
            f.read(all_.data() + got, static_cast<std::streamsize>(chunk));
            got += static_cast<std::size_t>(f.gcount());
            if (!f) break;
            chunk = std::min<std::size_t>(chunk * 2, std::size_t{1} << 28);
        }
        require<data_error>(!f.bad(), "tricks::safetensors: reading ", path_, " failed");
        all_.resize(got);
        all_.shrink_to_fit();
        parse();
    }

    /// The file whose content is `bytes`; `label` stands for the path in messages.
    static safetensors_file from_bytes(std::string bytes, std::string label) {
        safetensors_file f;
        f.path_ = std::move(label);
        f.all_ = std::move(bytes);
        f.parse();
        return f;
    }

    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// Every tensor, in the order of the header.
    [[nodiscard]] const std::vector<st_tensor_info>& tensors() const noexcept { return tensors_; }
    [[nodiscard]] bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
    [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

    [[nodiscard]] const st_tensor_info& info(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) {
            std::string some;
            for (std::size_t i = 0; i < tensors_.size() && i < 5; ++i)
                some += (i ? ", '" : "'") + tensors_[i].name + "'";
            if (tensors_.size() > 5) some += ", ...";
            throw data_error(tricks::detail::cat("tricks::safetensors: ", path_, ": no tensor '", name,
                                                 "' (the file holds ", tensors_.size(), " tensor",
                                                 tensors_.size() == 1 ? "" : "s", some.empty() ? "" : ": ", some, ")"));
        }
        return tensors_[it->second];
    }

    /// The tensor's raw little-endian bytes, row-major.
    [[nodiscard]] std::span<const std::byte> bytes(std::string_view name) const {
        const st_tensor_info& t = info(name);
        return {reinterpret_cast<const std::byte*>(all_.data() + data_start_ + t.begin),
                static_cast<std::size_t>(t.end - t.begin)};
    }

    /// The tensor's values as floats, row-major: F32 as stored, F16 and BF16 exactly, F64 rounded
    /// to nearest (beyond float's range: ±inf). Other dtypes are an error naming the dtype.
    [[nodiscard]] std::vector<float> floats(std::string_view name) const {
        const st_tensor_info& t = info(name);
        const char* p = all_.data() + data_start_ + t.begin;
        const auto n = static_cast<std::size_t>(t.numel());
        std::vector<float> out(n);
        switch (t.dtype) {
            case st_dtype::f32:
                if (n > 0) std::memcpy(out.data(), p, n * sizeof(float));
                break;
            case st_dtype::f16:
            case st_dtype::bf16:
                for (std::size_t i = 0; i < n; ++i) {
                    std::uint16_t bits;
                    std::memcpy(&bits, p + 2 * i, 2);
                    out[i] = t.dtype == st_dtype::f16 ? static_cast<float>(Eigen::numext::bit_cast<half>(bits))
                                                      : static_cast<float>(Eigen::numext::bit_cast<bfloat16>(bits));
                }
                break;
            case st_dtype::f64:
                for (std::size_t i = 0; i < n; ++i) {
                    double d;
                    std::memcpy(&d, p + 8 * i, 8);
                    out[i] = static_cast<float>(d);  // IEEE 754 (is_iec559): rounds, overflows to ±inf
                }
                break;
            default:
                throw data_error(tricks::detail::cat(
                    "tricks::safetensors: ", path_, ": tensor '", name, "' has dtype ", st_dtype_name(t.dtype),
                    "; floats() reads F32, F16, BF16 and F64 (bytes() gives the raw data)"));
        }
        return out;
    }

private:
    safetensors_file() = default;
    static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559);

    [[nodiscard]] std::string where() const { return tricks::detail::cat("tricks::safetensors: ", path_, ": "); }

    void parse() {
        using nlohmann::json;
        require<data_error>(all_.size() >= 8, where(), "truncated: ", all_.size(),
                            " bytes, a safetensors file starts with an 8-byte header length");
        std::uint64_t n;
        std::memcpy(&n, all_.data(), 8);
        require<data_error>(n <= max_header_bytes, where(), "header length ", n, " exceeds the limit of ",
                            max_header_bytes, " bytes (not a safetensors file?)");
        require<data_error>(n <= all_.size() - 8, where(), "header length ", n, " runs past the end of the file (",
                            all_.size() - 8, " bytes after the length)");
        data_start_ = 8 + static_cast<std::size_t>(n);
        const std::uint64_t buffer = all_.size() - data_start_;

        // nlohmann keeps the last of duplicate keys: the callback sees every key, so it catches
        // them, and it records the order of the tensors (json's objects are sorted by key).
        struct object_keys {
            std::set<std::string, std::less<>> keys;
            std::string owner;  // the key whose value the object is ("" for the top level)
        };
        std::vector<object_keys> open;
        std::vector<std::string> order;
        std::string last_key, duplicate;
        const auto callback = [&](int, json::parse_event_t event, json& parsed) {
            switch (event) {
                case json::parse_event_t::object_start:
                    open.push_back({{}, open.empty() ? std::string() : last_key});
                    break;
                case json::parse_event_t::object_end:
                    if (!open.empty()) open.pop_back();
                    break;
                case json::parse_event_t::key:
                    last_key = parsed.get<std::string>();
                    if (!open.empty() && !open.back().keys.insert(last_key).second && duplicate.empty())
                        duplicate = open.size() == 1
                                        ? tricks::detail::cat("key '", last_key, "' appears twice in the header")
                                        : tricks::detail::cat("key '", last_key, "' appears twice in the entry of '",
                                                              open.back().owner, "'");
                    if (open.size() == 1) order.push_back(last_key);
                    break;
                default:
                    break;
            }
            return true;
        };
        json header;
        try {
            header = json::parse(all_.begin() + 8, all_.begin() + static_cast<std::ptrdiff_t>(data_start_), callback);
        } catch (const json::exception& e) {
            throw data_error(tricks::detail::cat(where(), "the ", n, "-byte header is not valid JSON: ", e.what()));
        }
        require<data_error>(header.is_object(), where(), "the header is not a JSON object but a ", header.type_name());
        require<data_error>(duplicate.empty(), where(), duplicate);

        for (const std::string& key : order) {
            const json& v = header.find(key).value();
            if (key == "__metadata__") {
                read_metadata(v);
                continue;
            }
            tensors_.push_back(read_entry(key, v, buffer));
            index_.emplace(key, tensors_.size() - 1);
        }
        check_coverage(buffer);
    }

    void read_metadata(const nlohmann::json& v) {
        require<data_error>(v.is_object(), where(), "\"__metadata__\" must be an object of strings, found ",
                            v.type_name(), " ", tricks::detail::st_show(v));
        for (const auto& [k, s] : v.items()) {
            require<data_error>(s.is_string(), where(), "\"__metadata__\" key '", k, "' must map to a string, found ",
                                s.type_name(), " ", tricks::detail::st_show(s));
            metadata_.emplace(k, s.get<std::string>());
        }
    }

    [[nodiscard]] st_tensor_info read_entry(const std::string& key, const nlohmann::json& v,
                                            std::uint64_t buffer) const {
        using nlohmann::json;
        const std::string at = tricks::detail::cat(where(), "tensor '", key, "': ");
        require<data_error>(v.is_object(), at, "the entry must be an object with dtype, shape and data_offsets, found ",
                            v.type_name(), " ", tricks::detail::st_show(v));
        const auto field = [&](const char* name) -> const json& {
            const auto it = v.find(name);
            require<data_error>(it != v.end(), at, "\"", name, "\" is missing");
            return *it;
        };
        st_tensor_info t;
        t.name = key;

        const json& dt = field("dtype");
        require<data_error>(dt.is_string(), at, "\"dtype\" must be a string, found ", dt.type_name(), " ",
                            tricks::detail::st_show(dt));
        const auto d = tricks::detail::st_dtype_from_name(dt.get_ref<const std::string&>());
        if (!d) {
            std::string known;
            for (std::size_t i = 0; i < tricks::detail::st_dtype_count; ++i)
                known += (i ? ", " : "") + std::string(tricks::detail::st_dtypes[i].name);
            throw data_error(
                tricks::detail::cat(at, "unknown dtype ", tricks::detail::st_show(dt), " (known: ", known, ")"));
        }
        t.dtype = *d;

        const json& shape = field("shape");
        require<data_error>(shape.is_array(), at, "\"shape\" must be an array of integers, found ", shape.type_name(),
                            " ", tricks::detail::st_show(shape));
        // The element count as the reference computes it: a checked product, left to right.
        std::uint64_t numel = 1;
        bool overflow = false;
        for (std::size_t i = 0; i < shape.size(); ++i) {
            const json& e = shape[i];
            require<data_error>(e.is_number_integer(), at, "shape ", tricks::detail::st_show(shape), ": dimension ", i,
                                " is not an integer but a ", e.type_name());
            const auto dim = tricks::detail::st_uint(e);
            require<data_error>(dim.has_value(), at, "shape ", tricks::detail::st_show(shape), ": dimension ", i,
                                " is negative");
            require<data_error>(*dim <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()), at,
                                "shape ", tricks::detail::st_show(shape), ": dimension ", i, " is too large");
            if (*dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / *dim) overflow = true;
            numel *= *dim;
            t.shape.push_back(static_cast<std::int64_t>(*dim));
        }
        const std::uint64_t size = st_dtype_size(t.dtype);
        overflow = overflow || (numel != 0 && numel > std::numeric_limits<std::uint64_t>::max() / size);
        require<data_error>(!overflow, at, "shape ", tricks::detail::st_show(shape), " of ", st_dtype_name(t.dtype),
                            ": the element or byte count overflows 64 bits");

        const json& off = field("data_offsets");
        std::optional<std::uint64_t> b, e;
        if (off.is_array() && off.size() == 2) b = tricks::detail::st_uint(off[0]), e = tricks::detail::st_uint(off[1]);
        require<data_error>(b && e, at, "\"data_offsets\" must be [begin, end], two non-negative integers, found ",
                            tricks::detail::st_show(off));
        t.begin = *b;
        t.end = *e;
        require<data_error>(t.begin <= t.end, at, "data_offsets [", t.begin, ", ", t.end, "]: begin is after end");
        require<data_error>(t.end <= buffer, at, "data_offsets [", t.begin, ", ", t.end,
                            "] run past the end of the data buffer (", buffer, " bytes)");
        require<data_error>(t.end - t.begin == numel * size, at, "data_offsets [", t.begin, ", ", t.end, "] hold ",
                            t.end - t.begin, " bytes, but shape ", tricks::detail::st_show(shape), " of ",
                            st_dtype_name(t.dtype), " needs ", numel * size, " (", numel, " x ", size, ")");
        return t;
    }

    /// The tensors must tile the data buffer: no overlaps, and no byte outside every tensor. The
    /// reference implementation refuses gaps and trailing bytes as well (its validate() requires
    /// each tensor, in offset order, to start where the previous one ended, and the last to end at
    /// the end of the file): bytes no tensor accounts for are a corrupt or a hand-crafted file.
    void check_coverage(std::uint64_t buffer) const {
        std::vector<std::size_t> by_offset(tensors_.size());
        std::iota(by_offset.begin(), by_offset.end(), std::size_t{0});
        std::sort(by_offset.begin(), by_offset.end(), [&](std::size_t a, std::size_t b) {
            const auto& x = tensors_[a];
            const auto& y = tensors_[b];
            return std::tie(x.begin, x.end, x.name) < std::tie(y.begin, y.end, y.name);
        });
        std::uint64_t covered = 0;  // every byte before this belongs to a tensor
        const st_tensor_info* last = nullptr;
        for (const std::size_t i : by_offset) {
            const st_tensor_info& t = tensors_[i];
            require<data_error>(t.begin >= covered, where(), "tensor '", t.name, "' (data_offsets [", t.begin, ", ",
                                t.end, "]) overlaps tensor '", last ? last->name : "", "' (data_offsets [",
                                last ? last->begin : 0, ", ", last ? last->end : 0, "])");
            require<data_error>(t.begin == covered, where(), "bytes [", covered, ", ", t.begin,
                                ") of the data buffer belong to no tensor (a gap before tensor '", t.name, "')");
            covered = t.end;
            last = &t;
        }
        require<data_error>(covered == buffer, where(), "bytes [", covered, ", ", buffer,
                            ") at the end of the data buffer belong to no tensor");
    }

    std::string path_;
    std::string all_;             // the whole file
    std::size_t data_start_ = 0;  // 8 + header length: where the data buffer starts in all_
    std::vector<st_tensor_info> tensors_;
    std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in tensors_
    std::map<std::string, std::string> metadata_;
};

/// Builds a safetensors file: tensors are laid out in the order they are added; the header is
/// padded with spaces to a multiple of 8 bytes, as the reference implementation does, so every
/// tensor of an 8-byte-aligned size starts 8-byte aligned in the file.
class safetensors_writer {
public:
    /// Adds a float tensor stored as F32, F16 or BF16 (both rounded to nearest even).
    void add(std::string name, std::vector<std::int64_t> shape, std::span<const float> values,
             st_dtype as = st_dtype::f32) {
        require<data_error>(as == st_dtype::f32 || as == st_dtype::f16 || as == st_dtype::bf16,
                            "tricks::safetensors: tensor '", name, "': floats are stored as F32, F16 or BF16, not ",
                            st_dtype_name(as));
        check(name, shape, values.size());
        std::string data;
        if (as == st_dtype::f32) {
            if (!values.empty()) data.assign(reinterpret_cast<const char*>(values.data()), values.size_bytes());
        } else {
            data.resize(values.size() * 2);
            for (std::size_t i = 0; i < values.size(); ++i) {
                const std::uint16_t bits = as == st_dtype::f16
                                               ? Eigen::numext::bit_cast<std::uint16_t>(half(values[i]))
                                               : Eigen::numext::bit_cast<std::uint16_t>(bfloat16(values[i]));
                std::memcpy(data.data() + 2 * i, &bits, 2);
            }
        }
        push(std::move(name), as, std::move(shape), std::move(data));
    }

    /// Adds an I64 tensor (PyTorch's num_batches_tracked, shape {}).
    void add_i64(std::string name, std::vector<std::int64_t> shape, std::span<const std::int64_t> values) {
        check(name, shape, values.size());
        std::string data;
        if (!values.empty()) data.assign(reinterpret_cast<const char*>(values.data()), values.size_bytes());
        push(std::move(name), st_dtype::i64, std::move(shape), std::move(data));
    }

    /// One "__metadata__" entry (each key once).
    void metadata(std::string key, std::string value) {
        require<data_error>(tricks::detail::st_valid_utf8(key) && tricks::detail::st_valid_utf8(value),
                            "tricks::safetensors: metadata key '", key, "': key and value must be valid UTF-8");
        require<data_error>(!metadata_.contains(key), "tricks::safetensors: metadata key '", key, "' is set twice");
        metadata_.emplace(std::move(key), std::move(value));
    }

    /// The whole file.
    [[nodiscard]] std::string bytes() const {
        std::string out = header();
        for (const auto& e : entries_) out += e.data;
        return out;
    }

    /// Writes the file atomically and durably (io/durable_file.hpp), without a copy of the data.
    void commit(const std::filesystem::path& path) const {
        const std::string h = header();
        std::vector<std::string_view> parts{h};
        for (const auto& e : entries_) parts.emplace_back(e.data);
        write_file_durably(path, parts, "tricks::safetensors");
    }

private:
    struct entry {
        std::string name;
        st_dtype dtype;
        std::vector<std::int64_t> shape;
        std::string data;
    };

    void check(const std::string& name, const std::vector<std::int64_t>& shape, std::size_t count) const {
        const std::string at = tricks::detail::cat("tricks::safetensors: tensor '", name, "': ");
        require<data_error>(name != "__metadata__", at, "the name is reserved for the metadata");
        require<data_error>(tricks::detail::st_valid_utf8(name), at, "the name is not valid UTF-8");
        require<data_error>(!names_.contains(name), at, "added twice");
        std::uint64_t numel = 1;
        for (const std::int64_t d : shape) {
            require<data_error>(d >= 0, at, "shape ", nlohmann::json(shape).dump(), " has a negative dimension");
            const auto u = static_cast<std::uint64_t>(d);
            require<data_error>(u == 0 || numel <= std::numeric_limits<std::uint64_t>::max() / u, at, "shape ",
                                nlohmann::json(shape).dump(), ": the element count overflows 64 bits");
            numel *= u;
        }
        require<data_error>(numel == count, at, "shape ", nlohmann::json(shape).dump(), " holds ", numel,
                            " elements, but ", count, " values were given");
    }

    void push(std::string name, st_dtype dtype, std::vector<std::int64_t> shape, std::string data) {
        names_.insert(name);
        entries_.push_back({std::move(name), dtype, std::move(shape), std::move(data)});
    }

    /// Length, JSON and padding: everything before the data buffer. The JSON is assembled entry by
    /// entry (nlohmann escapes the strings), which keeps the tensors in insertion order in O(n).
    [[nodiscard]] std::string header() const {
        std::string json = "{";
        if (!metadata_.empty()) json += "\"__metadata__\":" + nlohmann::json(metadata_).dump();
        std::uint64_t offset = 0;
        for (const auto& e : entries_) {
            nlohmann::ordered_json t = nlohmann::ordered_json::object();
            t["dtype"] = st_dtype_name(e.dtype);
            t["shape"] = e.shape;
            t["data_offsets"] = nlohmann::ordered_json::array({offset, offset + e.data.size()});
            offset += e.data.size();
            if (json.size() > 1) json += ',';
            json += nlohmann::json(e.name).dump() + ":" + t.dump();
        }
        json += '}';
        json.append((8 - json.size() % 8) % 8, ' ');
        const std::uint64_t n = json.size();
        return std::string(reinterpret_cast<const char*>(&n), 8) + json;
    }

    std::vector<entry> entries_;
    std::set<std::string, std::less<>> names_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace tricks::io
