// Regression tests for what the fuzz targets (tests/fuzz/, scripts/fuzz.sh) found: every finding
// gets a case here that fails (in the sanitizer build, scripts/test.sh --sanitize, where the
// finding was a sanitizer report) before its fix. Inputs are written out byte for byte, minimised.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tricks/io/checkpoint.hpp"

namespace {

namespace fs = std::filesystem;
using namespace tricks;

/// A file under the system temp dir holding `bytes`, removed at scope exit.
struct fuzz_temp_file {
    fs::path path;
    explicit fuzz_temp_file(const std::string& bytes) {
        std::random_device rd;
        path = fs::temp_directory_path() /
               ("tricks_test_fuzz_" + std::to_string(::getpid()) + "_" + std::to_string(rd()) + std::to_string(rd()));
        std::ofstream f(path, std::ios::binary | std::ios::trunc);
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        REQUIRE(f.good());
    }
    ~fuzz_temp_file() {
        std::error_code ec;
        fs::remove(path, ec);
    }
    fuzz_temp_file(const fuzz_temp_file&) = delete;
    fuzz_temp_file& operator=(const fuzz_temp_file&) = delete;
};

/// A checkpoint file around `payload`, with a valid header and checksum.
std::string checkpoint_file(const std::string& payload) {
    std::string file(io::checkpoint_magic, 8);
    const std::uint32_t version = io::checkpoint_version;
    const std::uint64_t size = payload.size();
    const std::uint64_t sum = models::fnv1a(payload);
    file.append(reinterpret_cast<const char*>(&version), 4);
    file.append(reinterpret_cast<const char*>(&size), 8);
    file.append(payload);
    file.append(reinterpret_cast<const char*>(&sum), 8);
    return file;
}

}  // namespace

// fuzz_checkpoint, its first run (on the seed corpus): checkpoint_reader::floats into an empty
// span called memcpy(nullptr, p, 0), undefined behaviour that UBSan reports (nonnull argument).
TEST_CASE("fuzz regression: checkpoint_reader::floats reads an empty field into an empty span") {
    // one field: name length 0, no name, value length 0
    const fuzz_temp_file f(checkpoint_file(std::string(4 + 8, '\0')));
    io::checkpoint_reader r(f.path);
    r.floats("", std::span<float>{});
    CHECK(r.at_end());
}
