// The C++ side of the safetensors interop test (tests/tools/safetensors_interop.py, ctest
// interop.safetensors): reads files that Python wrote independently, and writes one for Python.
//   safetensors_interop dump FILE    prints FILE as JSON: the tensors in header order (name, dtype,
//                                    shape, offsets; float dtypes as float32 bit patterns through
//                                    floats(), others as hex bytes) and the metadata; on a
//                                    tricks::error prints it to stderr and exits 1
//   safetensors_interop write FILE   writes the fixed tensors the script checks
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tricks/io/safetensors.hpp"

namespace {

namespace io = tricks::io;

int dump(const char* path) {
    const io::safetensors_file f(path);
    nlohmann::ordered_json out;
    out["tensors"] = nlohmann::ordered_json::array();
    for (const auto& t : f.tensors()) {
        nlohmann::ordered_json j;
        j["name"] = t.name;
        j["dtype"] = io::st_dtype_name(t.dtype);
        j["shape"] = t.shape;
        j["data_offsets"] = {t.begin, t.end};
        if (t.dtype == io::st_dtype::f32 || t.dtype == io::st_dtype::f16 || t.dtype == io::st_dtype::bf16 ||
            t.dtype == io::st_dtype::f64) {
            std::vector<std::uint32_t> bits;
            for (const float v : f.floats(t.name)) {
                std::uint32_t u;
                std::memcpy(&u, &v, 4);
                bits.push_back(u);
            }
            j["f32bits"] = bits;
        }
        std::string hex;
        for (const std::byte b : f.bytes(t.name)) {
            char two[3];
            std::snprintf(two, sizeof two, "%02x", static_cast<unsigned>(b));
            hex += two;
        }
        j["hex"] = hex;
        out["tensors"].push_back(j);
    }
    out["metadata"] = f.metadata();
    std::cout << out.dump() << "\n";
    return 0;
}

/// Values around F16's and BF16's rounding boundaries (ties to even both ways, overflow, subnormals).
const std::vector<float> source = {0.f,
                                   -0.f,
                                   1.f,
                                   -2.5f,
                                   0.1f,
                                   1.f / 3,
                                   1.f + 0x1p-11f,
                                   1.f + 3 * 0x1p-11f,
                                   1.f + 0x1p-8f,
                                   1.f + 3 * 0x1p-8f,
                                   65504.f,
                                   65519.f,
                                   65520.f,
                                   70000.f,
                                   1e-8f,
                                   0x1p-24f,
                                   3e-5f,
                                   -1e30f,
                                   3.4e38f,
                                   1e-40f,
                                   123456.789f,
                                   -0.000123f,
                                   7.f,
                                   -8.f};

int write(const char* path) {
    io::safetensors_writer w;
    w.add("src", {2, 3, 4}, source);
    w.add("as_f16", {4, 6}, source, io::st_dtype::f16);
    w.add("as_bf16", {24}, source, io::st_dtype::bf16);
    w.add_i64("layer1.0.bn1.num_batches_tracked", {}, std::vector<std::int64_t>{42});
    w.add("empty", {0, 5}, std::span<const float>{});
    w.metadata("format", "pt");
    w.metadata("source", "tricks \xe2\x9c\x93");
    w.commit(path);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 || (std::string(argv[1]) != "dump" && std::string(argv[1]) != "write")) {
        std::cerr << "usage: safetensors_interop dump|write FILE\n";
        return 2;
    }
    try {
        return std::string(argv[1]) == "dump" ? dump(argv[2]) : write(argv[2]);
    } catch (const tricks::error& e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
}
