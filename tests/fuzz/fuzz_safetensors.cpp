// Fuzz target: the safetensors reader (tricks/io/safetensors.hpp) on any bytes, and the writer on
// what the reader accepted. See fuzz_common.hpp for the rule.
//
// Input: one mode byte, then the rest. Mode bit 0 clear: the rest is the whole file. Set: the rest
// is the JSON header, a NUL byte, then the data buffer; this target prepends the header's length,
// so that mutations of the JSON are not all refused by a length that no longer fits. Mode bit 1:
// read through a path (the constructor's file reading) instead of from_bytes.
// corpus/fuzz_safetensors holds seeds of both kinds.
//
// A file the reader accepts is also written back with safetensors_writer (its F32, F16, BF16 and
// I64 tensors, and the metadata) and read again: the values must survive bit for bit (NaN payloads
// aside). A mismatch is a finding (abort).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "tricks/io/safetensors.hpp"

namespace {

namespace io = tricks::io;

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "fuzz_safetensors: %s\n", what.c_str());
    std::abort();
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::isnan(a[i]) && std::isnan(b[i])) continue;
        if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) return false;
    }
    return true;
}

void rewrite(const io::safetensors_file& f);

void exercise(const io::safetensors_file& f) {
    for (const auto& t : f.tensors()) {
        if (!f.contains(t.name) || &f.info(t.name) != &t) finding("info() does not find tensor " + t.name);
        if (f.bytes(t.name).size() != t.end - t.begin) finding("bytes() size differs for " + t.name);
        tricks_fuzz::expect_only_tricks_errors([&] {
            const std::vector<float> v = f.floats(t.name);
            if (v.size() != static_cast<std::size_t>(t.numel())) finding("floats() size differs for " + t.name);
        });
    }
    (void)f.contains("");
    tricks_fuzz::expect_only_tricks_errors([&] { (void)f.info("\xff no such tensor"); });

    // write back what the writer can store, read it again; a refusal is a finding too
    try {
        rewrite(f);
    } catch (const tricks::error& e) {
        finding(std::string("the writer refused what the reader accepted: ") + e.what());
    }
}

void rewrite(const io::safetensors_file& f) {
    io::safetensors_writer w;
    std::vector<std::string> kept;
    for (const auto& t : f.tensors()) {
        if (t.dtype == io::st_dtype::f32 || t.dtype == io::st_dtype::f16 || t.dtype == io::st_dtype::bf16) {
            w.add(t.name, t.shape, f.floats(t.name), t.dtype);
        } else if (t.dtype == io::st_dtype::i64) {
            const auto b = f.bytes(t.name);
            std::vector<std::int64_t> v(b.size() / 8);
            if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
            w.add_i64(t.name, t.shape, v);
        } else {
            continue;
        }
        kept.push_back(t.name);
    }
    for (const auto& [k, v] : f.metadata()) w.metadata(k, v);
    const auto g = io::safetensors_file::from_bytes(w.bytes(), "rewritten");
    if (g.tensors().size() != kept.size() || g.metadata() != f.metadata()) finding("the rewritten file differs");
    for (std::size_t i = 0; i < kept.size(); ++i) {
        const auto& a = f.info(kept[i]);
        const auto& b = g.tensors()[i];
        if (b.name != a.name || b.dtype != a.dtype || b.shape != a.shape)
            finding("tensor " + a.name + " rewritten differently");
        if (a.dtype == io::st_dtype::i64) {
            const auto x = f.bytes(a.name), y = g.bytes(b.name);
            if (x.size() != y.size() || (!x.empty() && std::memcmp(x.data(), y.data(), x.size()) != 0))
                finding("I64 tensor " + a.name + " changed");
        } else if (!same(f.floats(a.name), g.floats(b.name))) {
            finding("tensor " + a.name + " changed values");
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static tricks_fuzz::memory_file file("fuzz_safetensors");
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    std::string bytes;
    if (data[0] & 1) {
        const std::size_t nul = rest.find('\0');
        const std::string_view header = rest.substr(0, nul);
        const std::uint64_t n = header.size();
        bytes.assign(reinterpret_cast<const char*>(&n), 8);
        bytes += header;
        if (nul != std::string_view::npos) bytes += rest.substr(nul + 1);
    } else {
        bytes.assign(rest);
    }
    tricks_fuzz::expect_only_tricks_errors([&] {
        if (data[0] & 2) {
            const auto& path = file.hold(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
            exercise(io::safetensors_file(path));
        } else {
            exercise(io::safetensors_file::from_bytes(bytes, "fuzz"));
        }
    });
    return 0;
}
