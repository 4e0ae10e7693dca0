#pragma once
// The ONNX exporter's graph before serialisation (io/onnx.hpp builds it from a model type) and
// write_onnx(), which serialises it with protobuf: defined in the tricks::onnx library
// (src/onnx_writer.cpp), the one translation unit that includes protobuf's and onnx.proto's
// headers. This header includes no model or kernel code, so the library compiles none.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace tricks::io {

struct onnx_attribute {
    enum class kind : std::uint8_t { integer, real, integers };
    std::string name;
    kind type = kind::integer;
    std::int64_t i = 0;
    float f = 0;
    std::vector<std::int64_t> ints;
};

struct onnx_node {
    std::string op, name;
    std::vector<std::string> inputs, outputs;
    std::vector<onnx_attribute> attributes;
};

/// A float32 initializer; dims in ONNX order (a convolution's weights OIHW).
struct onnx_tensor {
    std::string name;
    std::vector<std::int64_t> dims;
    std::vector<float> data;
};

/// One dimension of a graph input or output: a number, or symbolic (param non-empty).
struct onnx_dim {
    std::int64_t value = 0;
    std::string param;
};

struct onnx_value {
    std::string name;
    std::vector<onnx_dim> dims;
};

struct onnx_graph {
    std::string name, doc;
    int opset = 13;
    std::int64_t ir_version = 7;
    onnx_value input, output;
    std::vector<onnx_node> nodes;  // in topological (forward) order
    std::vector<onnx_tensor> initializers;
    std::vector<std::pair<std::string, std::string>> metadata;  // ModelProto.metadata_props
};

/// The ONNX IR version that goes with an opset (onnx/helper.py's VERSION_TABLE).
constexpr std::int64_t onnx_ir_version(int opset) noexcept {
    return opset <= 10 ? 5 : opset == 11 ? 6 : opset <= 14 ? 7 : opset <= 18 ? 8 : opset <= 20 ? 9 : 10;
}

/// Serialises `g` (an onnx.ModelProto) to `out`, atomically: a temporary file next to it, flushed
/// to disk, then renamed over `out` (its directory is created when missing; io/durable_file.hpp).
/// Errors throw tricks::data_error naming the file. Defined in the tricks::onnx library
/// (src/onnx_writer.cpp).
void write_onnx(onnx_graph g, const std::filesystem::path& out);

}  // namespace tricks::io
