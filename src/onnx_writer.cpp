// tricks::io::write_onnx (include/tricks/io/onnx_graph.hpp): an onnx_graph as an onnx.ModelProto, with
// the C++ classes protoc generates from the onnx.proto of Debian's python3-onnx (compiled into the
// tricks::onnx library; cmake/tricks_onnx.cmake). The only translation unit that sees protobuf.
#include <bit>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <onnx/onnx.pb.h>

#include "tricks/core/error.hpp"
#include "tricks/io/durable_file.hpp"
#include "tricks/io/onnx_graph.hpp"

#ifndef TRICKS_VERSION
#define TRICKS_VERSION "unknown"
#endif

namespace tricks::io {

namespace {

void set_shape(onnx::ValueInfoProto& v, const onnx_value& from) {
    v.set_name(from.name);
    auto* t = v.mutable_type()->mutable_tensor_type();
    t->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = t->mutable_shape();
    for (const onnx_dim& d : from.dims) {
        auto* dim = shape->add_dim();
        if (d.param.empty())
            dim->set_dim_value(d.value);
        else
            dim->set_dim_param(d.param);
    }
}

}  // namespace

void write_onnx(onnx_graph g, const std::filesystem::path& out) {
    onnx::ModelProto m;
    m.set_ir_version(g.ir_version);
    m.set_producer_name("tricks");
    m.set_producer_version(TRICKS_VERSION);
    m.set_model_version(1);
    m.set_doc_string(g.doc);
    auto* opset = m.add_opset_import();
    opset->set_domain("");
    opset->set_version(g.opset);
    for (auto& [k, v] : g.metadata) {
        auto* p = m.add_metadata_props();
        p->set_key(k);
        p->set_value(v);
    }
    auto* graph = m.mutable_graph();
    graph->set_name(g.name);
    set_shape(*graph->add_input(), g.input);
    set_shape(*graph->add_output(), g.output);
    for (auto& n : g.nodes) {
        auto* node = graph->add_node();
        node->set_op_type(n.op);
        node->set_name(n.name);
        for (auto& i : n.inputs) node->add_input(i);
        for (auto& o : n.outputs) node->add_output(o);
        for (auto& a : n.attributes) {
            auto* attr = node->add_attribute();
            attr->set_name(a.name);
            switch (a.type) {
                case onnx_attribute::kind::integer:
                    attr->set_type(onnx::AttributeProto::INT);
                    attr->set_i(a.i);
                    break;
                case onnx_attribute::kind::real:
                    attr->set_type(onnx::AttributeProto::FLOAT);
                    attr->set_f(a.f);
                    break;
                case onnx_attribute::kind::integers:
                    attr->set_type(onnx::AttributeProto::INTS);
                    for (auto v : a.ints) attr->add_ints(v);
                    break;
            }
        }
    }
    for (auto& t : g.initializers) {
        auto* init = graph->add_initializer();
        init->set_name(t.name);
        init->set_data_type(onnx::TensorProto::FLOAT);
        for (auto d : t.dims) init->add_dims(d);
        // raw_data is little-endian IEEE 754, the layout of float on the machines tricks runs on
        static_assert(std::endian::native == std::endian::little,
                      "tricks::onnx: raw_data needs a little-endian machine");
        init->set_raw_data(reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float));
        std::vector<float>().swap(t.data);  // one copy of the weights at a time
    }
    std::string bytes;
    require<data_error>(m.SerializeToString(&bytes), "tricks::onnx: cannot serialise ", g.name, " for ", out.string(),
                        " (over protobuf's 2 GiB message limit?)");
    m.Clear();
    write_file_durably(out, bytes, "tricks::onnx");  // temporary, fsync, rename, directory fsync
}

}  // namespace tricks::io
