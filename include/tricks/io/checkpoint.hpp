#pragma once
// Checkpoint files: a small binary container, written atomically and durably (temporary file,
// fsync, rename, fsync of the directory) and closed by a checksum, so a crash never leaves a
// half-written checkpoint under the real name and a truncated or corrupted file is reported, never
// half-loaded.
//
// Layout: "TRICKSCK" | u32 version | u64 payload bytes | payload | u64 FNV-1a(payload)
// The payload is a sequence of named fields; readers check each name, so a file from another
// version or another model type fails with a message that says which field differs.
#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
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

    /// Writes the file atomically and durably: `path.tmp` is written and fsync'ed, renamed over
    /// `path`, and the directory fsync'ed. The rename alone makes a killed process harmless (the
    /// kernel finishes the writes it was given; `path` is the old file or the new one, never a mix),
    /// but not a power loss or a kernel crash: without the fsync before it, the rename can reach
    /// the disk before the data (a zero-length or partial file under the real name after a reboot,
    /// on ext4 without auto_da_alloc, XFS, btrfs ...); without the directory's fsync, the rename
    /// itself can be lost.
    void commit(const std::filesystem::path& path) const {
        if (std::error_code dir_ec; path.has_parent_path() && !std::filesystem::create_directories(path.parent_path(), dir_ec) && dir_ec)
            throw data_error(detail::cat("tricks::checkpoint: cannot create directory ", path.parent_path().string(), " for ",
                                         path.string(), ": ", dir_ec.message()));
        const auto tmp = std::filesystem::path(path.string() + ".tmp");
        {
            const posix_file f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), tmp, "cannot write");
            const std::uint32_t ver = checkpoint_version;
            const std::uint64_t size = payload_.size();
            const std::uint64_t sum = models::fnv1a(payload_);
            f.write(checkpoint_magic, 8);
            f.write(&ver, sizeof ver);
            f.write(&size, sizeof size);
            f.write(payload_.data(), payload_.size());
            f.write(&sum, sizeof sum);
            f.sync();
            f.close();
        }
        std::error_code ec;
        std::filesystem::rename(tmp, path, ec);
        require<data_error>(!ec, "tricks::checkpoint: cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
        const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
        const posix_file d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), dir, "cannot open the directory");
        d.sync(true);
        d.close();
    }

private:
    /// A file descriptor that says which file and what failed, closed at scope exit.
    class posix_file {
    public:
        posix_file(int fd, const std::filesystem::path& p, const char* what) : fd_(fd), path_(p.string()) {
            require<data_error>(fd_ >= 0, "tricks::checkpoint: ", what, " ", path_, ": ", std::strerror(errno));
        }
        ~posix_file() {
            if (fd_ >= 0) ::close(fd_);
        }
        posix_file(const posix_file&) = delete;
        posix_file& operator=(const posix_file&) = delete;
        void write(const void* data, std::size_t n) const {
            const char* p = static_cast<const char*>(data);
            while (n > 0) {  // write() may write less than asked, or be interrupted by a signal
                const ssize_t w = ::write(fd_, p, n);
                if (w < 0 && errno == EINTR) continue;
                require<data_error>(w > 0, "tricks::checkpoint: writing ", path_, " failed (disk full?): ",
                                    w < 0 ? std::strerror(errno) : "nothing written");
                p += w;
                n -= static_cast<std::size_t>(w);
            }
        }
        /// fsync; for a directory, a file system that cannot sync directories (EINVAL) is not an error.
        void sync(bool directory = false) const {
            int rc;
            do rc = ::fsync(fd_);
            while (rc != 0 && errno == EINTR);
            require<data_error>(rc == 0 || (directory && errno == EINVAL), "tricks::checkpoint: fsync of ", path_,
                                " failed: ", std::strerror(errno));
        }
        void close() const {
            const int fd = std::exchange(fd_, -1);
            require<data_error>(::close(fd) == 0 || errno == EINTR, "tricks::checkpoint: closing ", path_, " failed: ",
                                std::strerror(errno));
        }

    private:
        mutable int fd_;
        std::string path_;
    };

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
        require<data_error>(n == sizeof(T), "tricks::checkpoint: ", path_, ": field '", name, "' has ", n, " bytes, expected ", sizeof(T));
        T v;
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    std::pair<const char*, std::size_t> field(std::string_view name) {
        std::uint32_t nl;
        take(&nl, sizeof nl, name);
        require<data_error>(nl < 4096 && pos_ + nl <= payload_.size(), "tricks::checkpoint: ", path_, ": malformed field header where '",
                            name, "' was expected");
        const std::string_view got(payload_.data() + pos_, nl);
        require<data_error>(got == name, "tricks::checkpoint: ", path_, ": expected field '", name, "', found '", got, "'");
        pos_ += nl;
        std::uint64_t bl;
        take(&bl, sizeof bl, name);
        require<data_error>(bl <= payload_.size() - pos_, "tricks::checkpoint: ", path_, ": field '", name, "' runs past the end");
        const char* p = payload_.data() + pos_;
        pos_ += bl;
        return {p, static_cast<std::size_t>(bl)};
    }
    void take(void* dst, std::size_t n, std::string_view name) {
        require<data_error>(pos_ + n <= payload_.size(), "tricks::checkpoint: ", path_, ": ends before field '", name, "'");
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
