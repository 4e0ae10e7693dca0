#pragma once
// Checkpoint files: a small binary container, written atomically and durably (temporary file,
// fsync, rename, fsync of the directory: io/durable_file.hpp) and closed by a checksum, so a crash
// never leaves a half-written checkpoint under the real name and a truncated or corrupted file is
// reported, never half-loaded.
//
// Layout: "TRICKSCK" | u32 version | u64 payload bytes | payload | u64 FNV-1a(payload)
// The payload is a sequence of named fields; readers check each name, so a file from another
// version or another model type fails with a message that says which field differs.
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/io/durable_file.hpp"
#include "tricks/models/network.hpp"

namespace tricks::io {

static_assert(std::endian::native == std::endian::little, "tricks::io: checkpoints assume a little-endian machine");

inline constexpr char checkpoint_magic[8] = {'T', 'R', 'I', 'C', 'K', 'S', 'C', 'K'};
inline constexpr std::uint32_t checkpoint_version = 1;

class checkpoint_writer {
public:
    void u64(std::string_view name, std::uint64_t v) { field(name, &v, sizeof v); }
    void i64(std::string_view name, std::int64_t v) { field(name, &v, sizeof v); }
    void f64(std::string_view name, double v) { field(name, &v, sizeof v); }
    void str(std::string_view name, std::string_view s) { field(name, s.data(), s.size()); }
    void floats(std::string_view name, std::span<const float> v) { field(name, v.data(), v.size_bytes()); }

    /// Writes the file atomically and durably (io/durable_file.hpp): `path.tmp` is written and
    /// fsync'ed, renamed over `path`, and the directory fsync'ed, so `path` is the old file or the
    /// new one, never a mix, even after a power loss.
    void commit(const std::filesystem::path& path) const {
        const std::uint32_t ver = checkpoint_version;
        const std::uint64_t size = payload_.size();
        const std::uint64_t sum = models::fnv1a(payload_);
        const std::string_view parts[] = {std::string_view(checkpoint_magic, 8), bytes_of(ver), bytes_of(size),
                                          payload_, bytes_of(sum)};
        write_file_durably(path, parts, "tricks::checkpoint");
    }

private:
    template <class T>
    static std::string_view bytes_of(const T& v) {
        return {reinterpret_cast<const char*>(&v), sizeof v};
    }

    void field(std::string_view name, const void* data, std::size_t bytes) {
        const std::uint32_t nl = static_cast<std::uint32_t>(name.size());
        const std::uint64_t bl = bytes;
        append(&nl, sizeof nl);
        append(name.data(), name.size());
        append(&bl, sizeof bl);
        append(data, bytes);
    }
    void append(const void* p, std::size_t n) { payload_.append(static_cast<const char*>(p), n); }
    std::string payload_;
};

class checkpoint_reader {
public:
    explicit checkpoint_reader(const std::filesystem::path& path) : path_(path.string()) {
        std::ifstream f(path, std::ios::binary);
        require<data_error>(static_cast<bool>(f), "tricks::checkpoint: cannot open ", path_);
        std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        constexpr std::size_t header = 8 + 4 + 8, trailer = 8;
        require<data_error>(all.size() >= header + trailer, "tricks::checkpoint: ", path_, ": truncated (", all.size(),
                            " bytes, a checkpoint has at least ", header + trailer, ")");
        require<data_error>(std::memcmp(all.data(), checkpoint_magic, 8) == 0, "tricks::checkpoint: ", path_,
                            ": not a tricks checkpoint (bad magic)");
        std::uint32_t ver;
        std::uint64_t size;
        std::memcpy(&ver, all.data() + 8, 4);
        std::memcpy(&size, all.data() + 12, 8);
        require<data_error>(ver == checkpoint_version, "tricks::checkpoint: ", path_, ": format version ", ver,
                            ", this build reads version ", checkpoint_version);
        const std::size_t holds = all.size() - header - trailer;
        require<data_error>(holds >= size, "tricks::checkpoint: ", path_, ": truncated: header says ", size,
                            " payload bytes, file holds ", holds);
        require<data_error>(holds == size, "tricks::checkpoint: ", path_, ": ", holds - size,
                            " unexpected bytes after the end of the checkpoint");
        payload_ = all.substr(header, size);
        std::uint64_t sum;
        std::memcpy(&sum, all.data() + header + size, 8);
        require<data_error>(sum == models::fnv1a(payload_), "tricks::checkpoint: ", path_,
                            ": checksum mismatch (the file is corrupted)");
    }

    std::uint64_t u64(std::string_view name) { return scalar<std::uint64_t>(name); }
    std::int64_t i64(std::string_view name) { return scalar<std::int64_t>(name); }
    double f64(std::string_view name) { return scalar<double>(name); }
    std::string str(std::string_view name) {
        auto [p, n] = field(name);
        return std::string(p, n);
    }
    void floats(std::string_view name, std::span<float> out) {
        auto [p, n] = field(name);
        require<data_error>(n == out.size_bytes(), "tricks::checkpoint: ", path_, ": field '", name, "' holds ", n / 4,
                            " floats, expected ", out.size());
        if (n > 0) std::memcpy(out.data(), p, n);  // an empty span's data() may be null: memcpy's UB
    }
    /// Whether the next field is called `name` (reads nothing): fields added in later releases
    /// are optional when reading, so older checkpoints stay readable.
    [[nodiscard]] bool next_is(std::string_view name) const noexcept {
        std::uint32_t nl;
        if (payload_.size() - pos_ < sizeof nl) return false;
        std::memcpy(&nl, payload_.data() + pos_, sizeof nl);
        return nl == name.size() && payload_.size() - pos_ - sizeof nl >= nl &&
               std::string_view(payload_.data() + pos_ + sizeof nl, nl) == name;
    }
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    [[nodiscard]] bool at_end() const noexcept { return pos_ == payload_.size(); }

private:
    template <class T>
    T scalar(std::string_view name) {
        auto [p, n] = field(name);
        require<data_error>(n == sizeof(T), "tricks::checkpoint: ", path_, ": field '", name, "' has ", n,
                            " bytes, expected ", sizeof(T));
        T v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    std::pair<const char*, std::size_t> field(std::string_view name) {
        std::uint32_t nl;
        take(&nl, sizeof nl, name);
        require<data_error>(nl < 4096 && pos_ + nl <= payload_.size(), "tricks::checkpoint: ", path_,
                            ": malformed field header where '", name, "' was expected");
        const std::string_view got(payload_.data() + pos_, nl);
        require<data_error>(got == name, "tricks::checkpoint: ", path_, ": expected field '", name, "', found '", got,
                            "'");
        pos_ += nl;
        std::uint64_t bl;
        take(&bl, sizeof bl, name);
        require<data_error>(bl <= payload_.size() - pos_, "tricks::checkpoint: ", path_, ": field '", name,
                            "' runs past the end");
        const char* p = payload_.data() + pos_;
        pos_ += bl;
        return {p, static_cast<std::size_t>(bl)};
    }
    void take(void* dst, std::size_t n, std::string_view name) {
        require<data_error>(pos_ + n <= payload_.size(), "tricks::checkpoint: ", path_, ": ends before field '", name,
                            "'");
        std::memcpy(dst, payload_.data() + pos_, n);
        pos_ += n;
    }
    std::string path_, payload_;
    std::size_t pos_ = 0;
};

/// Model section: structure fingerprint, then every parameter and buffer in visiting order.
template <class Model>
void save_model(checkpoint_writer& w, Model& m) {
    w.str("model.name", Model::name());
    w.u64("model.fingerprint", Model::fingerprint());
    for (auto* p : m.parameters()) w.floats("param", p->value.span());
    for (auto* b : m.buffers()) w.floats("buffer", b->span());
}

template <class Model>
void load_model(checkpoint_reader& r, Model& m) {
    const std::string name = r.str("model.name");
    const std::uint64_t fp = r.u64("model.fingerprint");
    require<data_error>(fp == Model::fingerprint(), "tricks::checkpoint: ", r.path(), " holds a ", name,
                        " (fingerprint ", fp, "), which cannot be loaded into a ", Model::name(), " (fingerprint ",
                        Model::fingerprint(), "): the model types differ");
    for (auto* p : m.parameters()) r.floats("param", p->value.span());
    for (auto* b : m.buffers()) r.floats("buffer", b->span());
}

/// Loads only the model of a checkpoint (the trainer's files start with the model section), e.g.
/// a teacher for distillation or a backbone for transfer.
template <class Model>
void load_model(const std::filesystem::path& path, Model& m) {
    checkpoint_reader r(path);
    load_model(r, m);
}

}  // namespace tricks::io
