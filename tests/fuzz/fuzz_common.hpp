#pragma once
// What the fuzz targets (tests/fuzz/fuzz_*.cpp, built and run by scripts/fuzz.sh) share: the rule
// for exceptions, a file whose contents are the input for readers that take a path, and the tiny
// trainer whose checkpoints fuzz_checkpoint resumes from (make_corpus writes its seed).
//
// The rule: a reader given any bytes either succeeds or throws tricks::error (data_error is one);
// a crash, a sanitizer report, any other exception, a timeout or more than 2 GB of memory is a
// finding. So is a tricks::error that starts with the target's `internal` prefix (image_io.hpp's
// "tricks::image: NAME: internal error"): the library uses those words for states that input must
// never reach. A prefix, not a search: messages quote the input, and the fuzzer learns strings.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

#include "tricks/core/error.hpp"

namespace tricks_fuzz {

/// Runs f(); returns normally on success or on a tricks::error, aborts (a finding) otherwise.
template <class F>
void expect_only_tricks_errors(F&& f, const std::string& internal = {}) {
    try {
        f();
    } catch (const tricks::error& e) {
        if (!internal.empty() && std::string_view(e.what()).starts_with(internal)) {
            std::fprintf(stderr, "fuzz: tricks::error reports an internal error: %s\n", e.what());
            std::abort();
        }
    }
    // Anything else propagates: libFuzzer reports an uncaught exception as a crash ("deadly signal").
}

/// An anonymous in-memory file (memfd) reachable by a path, rewritten for every input: readers
/// that only take a path read the input from it without touching the disk.
class memory_file {
public:
    explicit memory_file(const char* name) : fd_(memfd_create(name, 0)) {
        if (fd_ < 0) {
            std::perror("fuzz: memfd_create");
            std::abort();
        }
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    memory_file(const memory_file&) = delete;
    memory_file& operator=(const memory_file&) = delete;
    ~memory_file() { ::close(fd_); }

    /// Makes the file's contents exactly data[0, size).
    const std::filesystem::path& hold(const std::uint8_t* data, std::size_t size) {
        if (::ftruncate(fd_, 0) != 0) std::abort();
        std::size_t done = 0;
        while (done < size) {
            const ssize_t w = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
            if (w <= 0) std::abort();
            done += static_cast<std::size_t>(w);
        }
        return path_;
    }
    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

private:
    int fd_;
    std::filesystem::path path_;
};

}  // namespace tricks_fuzz
