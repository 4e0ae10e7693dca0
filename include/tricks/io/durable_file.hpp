#pragma once
// Atomic, durable file writes, shared by every writer of tricks' files (checkpoints, safetensors):
// the bytes go to `path.tmp`, which is fsync'ed, renamed over `path`, and the directory fsync'ed.
//
// The rename alone makes a killed process harmless (the kernel finishes the writes it was given;
// `path` is the old file or the new one, never a mix), but not a power loss or a kernel crash:
// without the fsync before it, the rename can reach the disk before the data (a zero-length or
// partial file under the real name after a reboot, on ext4 without auto_da_alloc, XFS, btrfs ...);
// without the directory's fsync, the rename itself can be lost.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "tricks/core/error.hpp"

// Helpers live in tricks::detail, not tricks::io::detail: a nested detail would hide
// tricks::detail (detail::cat) from unqualified use anywhere in tricks::io.
namespace tricks::detail {

/// A file descriptor that says which file and what failed (prefixed by `who`, e.g.
/// "tricks::checkpoint"), closed at scope exit.
class posix_file {
public:
    posix_file(int fd, const std::filesystem::path& p, const char* what, const char* who)
        : fd_(fd), path_(p.string()), who_(who) {
        require<data_error>(fd_ >= 0, who_, ": ", what, " ", path_, ": ", std::strerror(errno));
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
            require<data_error>(w > 0, who_, ": writing ", path_,
                                " failed (disk full?): ", w < 0 ? std::strerror(errno) : "nothing written");
            p += w;
            n -= static_cast<std::size_t>(w);
        }
    }
    /// fsync; for a directory, a file system that cannot sync directories (EINVAL) is not an error.
    void sync(bool directory = false) const {
        int rc;
        do rc = ::fsync(fd_);
        while (rc != 0 && errno == EINTR);
        require<data_error>(rc == 0 || (directory && errno == EINVAL), who_, ": fsync of ", path_,
                            " failed: ", std::strerror(errno));
    }
    void close() const {
        const int fd = std::exchange(fd_, -1);
        require<data_error>(::close(fd) == 0 || errno == EINTR, who_, ": closing ", path_,
                            " failed: ", std::strerror(errno));
    }

private:
    mutable int fd_;
    std::string path_;
    const char* who_;
};

}  // namespace tricks::detail

namespace tricks::io {

/// Writes the concatenation of `parts` to `path` atomically and durably (see the top of this file),
/// creating missing parent directories. Errors are tricks::data_error whose message starts with
/// `who` ("tricks::checkpoint") and names the file and what failed. On an error the temporary is
/// removed (best effort) and `path` is untouched.
inline void write_file_durably(const std::filesystem::path& path, std::span<const std::string_view> parts,
                               const char* who) {
    if (std::error_code dir_ec;
        path.has_parent_path() && !std::filesystem::create_directories(path.parent_path(), dir_ec) && dir_ec)
        throw data_error(tricks::detail::cat(who, ": cannot create directory ", path.parent_path().string(), " for ",
                                             path.string(), ": ", dir_ec.message()));
    const auto tmp = std::filesystem::path(path.string() + ".tmp");
    {
        const tricks::detail::posix_file f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), tmp,
                                           "cannot write", who);
        try {
            for (const std::string_view part : parts) f.write(part.data(), part.size());
            f.sync();
            f.close();
        } catch (...) {
            std::error_code ignored;  // a full disk should not also keep the partial temporary
            std::filesystem::remove(tmp, ignored);
            throw;
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    require<data_error>(!ec, who, ": cannot rename ", tmp.string(), " to ", path.string(), ": ", ec.message());
    const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    const tricks::detail::posix_file d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC), dir,
                                       "cannot open the directory", who);
    d.sync(true);
    d.close();
}

/// The same for one buffer.
inline void write_file_durably(const std::filesystem::path& path, std::string_view bytes, const char* who) {
    write_file_durably(path, std::span<const std::string_view>(&bytes, 1), who);
}

}  // namespace tricks::io
