// Safetensors (tricks/io/safetensors.hpp): the writer's files read back (F32, F16, BF16, I64, empty
// tensors, scalars, metadata) and are laid out as the reference implementation lays them out; a
// file built here byte by byte, independently of the writer, reads to the expected values (known
// F16/BF16 bit patterns); every malformed file is refused with a message that names the file, the
// tensor and the offending values. Interop with PyTorch: tests/tools/safetensors_interop.py.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tricks/io/safetensors.hpp"
#include "helpers.hpp"

namespace {

namespace fs = std::filesystem;
using namespace tricks;
using namespace tricks_test;
using io::st_dtype;

/// A file: u64 little-endian header length, the header as given, the data.
std::string st_bytes(const std::string& header, const std::string& data = {}) {
    std::string out(8, '\0');
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xFF);
    return out + header + data;
}

template <class T>
std::string raw(std::initializer_list<T> values) {
    std::string out;
    for (const T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof v);
    return out;
}

constexpr const char* label = "case.safetensors";

/// The message of the data_error that reading `bytes` throws ("" if none).
std::string st_error(const std::string& bytes) {
    return error_of([&] { (void)io::safetensors_file::from_bytes(bytes, label); });
}

/// Checks that reading `bytes` fails with a message naming the file and every one of `parts`.
void refused(const std::string& bytes, std::initializer_list<std::string> parts) {
    const std::string msg = st_error(bytes);
    CAPTURE(msg);
    CHECK(contains(msg, "tricks::safetensors: case.safetensors: "));
    for (const auto& p : parts) CHECK(contains(msg, p));
}

std::uint16_t u16_at(std::span<const std::byte> b, std::size_t i) {
    std::uint16_t v;
    std::memcpy(&v, b.data() + 2 * i, 2);
    return v;
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("safetensors: dtype names and sizes are the format's") {
    const std::pair<st_dtype, std::pair<const char*, std::size_t>> all[] = {
        {st_dtype::boolean, {"BOOL", 1}}, {st_dtype::u8, {"U8", 1}},           {st_dtype::i8, {"I8", 1}},
        {st_dtype::u16, {"U16", 2}},      {st_dtype::i16, {"I16", 2}},         {st_dtype::u32, {"U32", 4}},
        {st_dtype::i32, {"I32", 4}},      {st_dtype::u64, {"U64", 8}},         {st_dtype::i64, {"I64", 8}},
        {st_dtype::f16, {"F16", 2}},      {st_dtype::bf16, {"BF16", 2}},       {st_dtype::f32, {"F32", 4}},
        {st_dtype::f64, {"F64", 8}},      {st_dtype::f8_e4m3, {"F8_E4M3", 1}}, {st_dtype::f8_e5m2, {"F8_E5M2", 1}},
    };
    for (const auto& [d, ns] : all) {
        CHECK(io::st_dtype_name(d) == ns.first);
        CHECK(io::st_dtype_size(d) == ns.second);
    }
}

TEST_CASE("safetensors: F32, F16, BF16, I64, empty and scalar tensors and metadata round-trip through a file") {
    temp_dir dir("tricks_test_st_");
    const fs::path p = dir / "sub" / "model.safetensors";  // parent directories are created
    const std::vector<float> w = {1.5f, -0.f, 1e-45f, std::numeric_limits<float>::infinity(), 3.4e38f, -7.25f};
    const std::vector<float> third = {1.f / 3, -2.f / 3, 65504.f, 1e-8f};
    const std::vector<std::int64_t> count = {std::numeric_limits<std::int64_t>::min()};
    io::safetensors_writer wr;
    wr.add("layer1.0.conv1.weight", {2, 3}, w);
    wr.add("half", {2, 2}, third, st_dtype::f16);
    wr.add("brain", {4}, third, st_dtype::bf16);
    wr.add_i64("bn1.num_batches_tracked", {}, count);
    wr.add("empty", {0, 3}, std::span<const float>{});
    wr.add("scalar", {}, std::vector<float>{42.f});
    wr.metadata("format", "pt");
    wr.metadata("note", "ünïcode, \"quotes\"\n");
    wr.commit(p);
    CHECK_FALSE(fs::exists(p.string() + ".tmp"));
    CHECK(read_file(p) == wr.bytes());

    const io::safetensors_file f(p);
    CHECK(f.path() == p.string());
    REQUIRE(f.tensors().size() == 6);
    const char* order[] = {"layer1.0.conv1.weight", "half", "brain", "bn1.num_batches_tracked", "empty", "scalar"};
    for (std::size_t i = 0; i < 6; ++i) CHECK(f.tensors()[i].name == order[i]);  // insertion order

    const auto& wi = f.info("layer1.0.conv1.weight");
    CHECK(wi.dtype == st_dtype::f32);
    CHECK(wi.shape == std::vector<std::int64_t>{2, 3});
    CHECK(wi.numel() == 6);
    CHECK(wi.begin == 0);
    CHECK(wi.end == 24);
    const std::vector<float> wr_back = f.floats("layer1.0.conv1.weight");
    REQUIRE(wr_back.size() == w.size());
    CHECK(std::memcmp(wr_back.data(), w.data(), w.size() * 4) == 0);  // bit for bit, -0 and denormals too

    CHECK(f.info("half").dtype == st_dtype::f16);
    CHECK(f.info("brain").dtype == st_dtype::bf16);
    const auto h = f.floats("half");
    const auto b = f.floats("brain");
    for (std::size_t i = 0; i < third.size(); ++i) {
        CHECK(h[i] == round_to<half>(third[i]));
        CHECK(b[i] == round_to<bfloat16>(third[i]));
    }
    CHECK(h[2] == 65504.f);  // F16's largest finite value
    const auto nb = f.info("bn1.num_batches_tracked");
    CHECK(nb.dtype == st_dtype::i64);
    CHECK(nb.shape.empty());
    CHECK(nb.numel() == 1);
    const auto nbb = f.bytes("bn1.num_batches_tracked");
    REQUIRE(nbb.size() == 8);
    std::int64_t c;
    std::memcpy(&c, nbb.data(), 8);
    CHECK(c == count[0]);
    CHECK(f.info("empty").numel() == 0);
    CHECK(f.floats("empty").empty());
    CHECK(f.bytes("empty").empty());
    CHECK(f.floats("scalar") == std::vector<float>{42.f});
    CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "ünïcode, \"quotes\"\n"}});
    CHECK(f.contains("half"));
    CHECK_FALSE(f.contains("hal"));
    CHECK_FALSE(f.contains("__metadata__"));

    // the layout of the reference implementation: header padded with spaces to a multiple of 8,
    // tensors back to back in the data buffer
    const std::string all = wr.bytes();
    std::uint64_t n;
    std::memcpy(&n, all.data(), 8);
    CHECK(n % 8 == 0);
    CHECK(all[8] == '{');
    CHECK(all.size() == 8 + n + 24 + 8 + 8 + 8 + 0 + 4);
    const std::string header = all.substr(8, n);
    CHECK(header.find_last_not_of(' ') == header.rfind('}'));

    // a rewrite replaces the file
    io::safetensors_writer small;
    small.add("x", {1}, std::vector<float>{2.f});
    small.commit(p);
    CHECK(io::safetensors_file(p).tensors().size() == 1);
}

TEST_CASE("safetensors: F16 and BF16 round to nearest even") {
    // 1 + 2^-11 lies halfway between F16's 1 and 1 + 2^-10: even is 1 (0x3C00); 1 + 3 x 2^-11
    // lies halfway between 1 + 2^-10 and 1 + 2^-9: even is 1 + 2^-9 (0x3C02). BF16 likewise at 2^-8.
    const std::vector<float> f16_in = {1.f + 0x1p-11f, 1.f + 3 * 0x1p-11f, 65520.f, -0.f, 0x1p-24f};
    const std::vector<float> bf16_in = {1.f + 0x1p-8f, 1.f + 3 * 0x1p-8f, -1.f, std::nanf("")};
    io::safetensors_writer w;
    w.add("h", {5}, f16_in, st_dtype::f16);
    w.add("b", {4}, bf16_in, st_dtype::bf16);
    const auto f = io::safetensors_file::from_bytes(w.bytes(), "rne");
    const auto h = f.bytes("h");
    CHECK(u16_at(h, 0) == 0x3C00);
    CHECK(u16_at(h, 1) == 0x3C02);
    CHECK(u16_at(h, 2) == 0x7C00);  // 65520 is halfway to the next power: rounds to infinity
    CHECK(u16_at(h, 3) == 0x8000);
    CHECK(u16_at(h, 4) == 0x0001);  // the smallest subnormal
    const auto b = f.bytes("b");
    CHECK(u16_at(b, 0) == 0x3F80);
    CHECK(u16_at(b, 1) == 0x3F82);
    CHECK(u16_at(b, 2) == 0xBF80);
    CHECK((u16_at(b, 3) & 0x7F80) == 0x7F80);
    CHECK((u16_at(b, 3) & 0x007F) != 0);  // still a NaN
    CHECK(std::isnan(f.floats("b")[3]));
}

TEST_CASE("safetensors: a file built byte by byte reads to the expected values") {
    // Header order differs from offset order on purpose (tensors() keeps the header's); the
    // header is not padded (valid: the padding is the writer's convention, not a rule).
    const std::string header = R"({"b16":{"dtype":"BF16","shape":[3],"data_offsets":[24,30]},)"
                               R"("__metadata__":{"format":"pt","k":"v"},)"
                               R"("h16":{"shape":[2,3],"dtype":"F16","data_offsets":[12,24]},)"
                               R"("f32":{"dtype":"F32","shape":[1,3],"data_offsets":[0,12]},)"
                               R"("f64":{"dtype":"F64","shape":[2],"data_offsets":[30,46]},)"
                               R"("steps":{"dtype":"I64","shape":[],"data_offsets":[46,54]},)"
                               R"("mask":{"dtype":"BOOL","shape":[2],"data_offsets":[54,56]},)"
                               R"("none":{"dtype":"F8_E4M3","shape":[5,0],"data_offsets":[56,56]}})"
                               "   ";
    const std::string data = raw<float>({1.5f, -2.f, 0.1f}) +
                             // F16: 1, -2, 65504, 2^-24, inf, 0.333251953125
                             raw<std::uint16_t>({0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3555}) +
                             raw<std::uint16_t>({0x3F80, 0x4049, 0xC2F7}) +  // BF16: 1, 3.140625, -123.5
                             raw<double>({0.1, -1e300}) + raw<std::int64_t>({1234567890123}) +
                             std::string("\x01\x00", 2);
    const auto f = io::safetensors_file::from_bytes(st_bytes(header, data), "bytes");
    REQUIRE(f.tensors().size() == 7);
    const char* order[] = {"b16", "h16", "f32", "f64", "steps", "mask", "none"};
    for (std::size_t i = 0; i < 7; ++i) CHECK(f.tensors()[i].name == order[i]);
    CHECK(f.floats("f32") == std::vector<float>{1.5f, -2.f, 0.1f});
    CHECK(f.info("h16").shape == std::vector<std::int64_t>{2, 3});
    CHECK(f.floats("h16") ==
          std::vector<float>{1.f, -2.f, 65504.f, 0x1p-24f, std::numeric_limits<float>::infinity(), 0.333251953125f});
    CHECK(f.floats("b16") == std::vector<float>{1.f, 3.140625f, -123.5f});
    CHECK(f.floats("f64") == std::vector<float>{0.1f, -std::numeric_limits<float>::infinity()});
    const auto steps = f.bytes("steps");
    std::int64_t s;
    REQUIRE(steps.size() == 8);
    std::memcpy(&s, steps.data(), 8);
    CHECK(s == 1234567890123);
    CHECK(f.info("mask").dtype == st_dtype::boolean);
    CHECK(static_cast<int>(f.bytes("mask")[0]) == 1);
    CHECK(f.info("none").dtype == st_dtype::f8_e4m3);
    CHECK(f.info("none").numel() == 0);
    CHECK(f.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"k", "v"}});
    CHECK(io::safetensors_file::from_bytes(st_bytes("{}"), "x").tensors().empty());  // no tensors at all
    // floats() of another dtype and an unknown name say what was asked and what there is
    const std::string not_float = error_of([&] { (void)f.floats("steps"); });
    CHECK(contains(not_float, "tricks::safetensors: bytes: tensor 'steps' has dtype I64"));
    const std::string missing = error_of([&] { (void)f.info("fc.weight"); });
    CHECK(
        contains(missing, "tricks::safetensors: bytes: no tensor 'fc.weight' (the file holds 7 tensors: 'b16', 'h16'"));
    CHECK(contains(error_of([&] { (void)f.bytes("x"); }), "no tensor 'x'"));
}

TEST_CASE("safetensors: a short file, a bad header length, JSON that is not a header object") {
    refused("", {"truncated: 0 bytes"});
    refused("abcdefg", {"truncated: 7 bytes"});
    std::string huge = st_bytes("{}");
    const std::uint64_t n = 100'000'001;
    std::memcpy(huge.data(), &n, 8);
    refused(huge, {"header length 100000001 exceeds the limit of 100000000 bytes"});
    std::string past = st_bytes("{}");
    past[0] = 3;
    refused(past, {"header length 3 runs past the end of the file (2 bytes after the length)"});
    refused(st_bytes(R"({"w":)"), {"the 5-byte header is not valid JSON", "parse error"});
    refused(st_bytes(""), {"not valid JSON"});
    refused(st_bytes("{\"w\xff\":1}"), {"not valid JSON"});  // not UTF-8
    refused(st_bytes(R"({} x)"), {"not valid JSON"});
    refused(st_bytes(R"([1,2])"), {"the header is not a JSON object but a array"});
    refused(st_bytes(R"("x")"), {"not a JSON object but a string"});
}

TEST_CASE("safetensors: a malformed tensor entry is refused, naming the tensor and the values") {
    const std::string d4(4, '\0');
    refused(st_bytes(R"({"w":5})"), {"tensor 'w': the entry must be an object", "found number 5"});
    refused(st_bytes(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", d4), {"tensor 'w': \"dtype\" is missing"});
    refused(st_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", d4), {"tensor 'w': \"shape\" is missing"});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[1]}})", d4), {"tensor 'w': \"data_offsets\" is missing"});
    refused(st_bytes(R"({"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", d4),
            {"tensor 'w': \"dtype\" must be a string, found number 32"});
    refused(st_bytes(R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", d4),
            {"tensor 'w': unknown dtype \"F17\" (known: BOOL, U8", "F8_E5M2)"});
    refused(st_bytes(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", d4), {"unknown dtype \"f32\""});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", d4),
            {"tensor 'w': \"shape\" must be an array of integers, found string \"1\""});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,4]}})", d4),
            {"tensor 'w': shape [2,-1]: dimension 1 is negative"});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})", d4),
            {"tensor 'w': shape [1.0]: dimension 0 is not an integer but a number"});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]}})", d4),
            {"tensor 'w': shape [9223372036854775808]: dimension 0 is too large"});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})"),
            {"tensor 'w': shape [4294967296,4294967296,0] of F32: the element or byte count overflows 64 bits"});
    refused(st_bytes(R"({"w":{"dtype":"I64","shape":[4611686018427387904],"data_offsets":[0,0]}})"),
            {"tensor 'w': shape [4611686018427387904] of I64: the element or byte count overflows"});
    for (const char* off : {R"("0,4")", "[0]", "[0,4,8]", "[-1,3]", "[0,4.0]", "[0,18446744073709551616]", "null"}) {
        CAPTURE(off);
        refused(st_bytes(std::string(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":)") + off + "}}", d4),
                {"tensor 'w': \"data_offsets\" must be [begin, end], two non-negative integers, found "});
    }
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", d4),
            {"tensor 'w': data_offsets [4, 0]: begin is after end"});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", d4),
            {"tensor 'w': data_offsets [0, 8] run past the end of the data buffer (4 bytes)"});
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,4]}})", d4),
            {"tensor 'w': data_offsets [0, 4] hold 4 bytes, but shape [2,3] of F32 needs 24 (6 x 4)"});
    refused(st_bytes(R"({"w":{"dtype":"F16","shape":[],"data_offsets":[0,4]}})", d4),
            {"tensor 'w': data_offsets [0, 4] hold 4 bytes, but shape [] of F16 needs 2 (1 x 2)"});
}

TEST_CASE("safetensors: overlapping tensors, uncovered bytes and duplicate keys are refused") {
    const std::string d12(12, '\0');
    refused(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     d12),
            {"tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a' (data_offsets [0, 8])"});
    refused(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                     std::string(4, '\0')),
            {"tensor 'b' (data_offsets [0, 4]) overlaps tensor 'a'"});
    // the reference implementation refuses bytes that no tensor covers: a gap, or bytes at the end
    refused(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                     d12),
            {"bytes [4, 8) of the data buffer belong to no tensor (a gap before tensor 'b')"});
    refused(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')),
            {"bytes [0, 4) of the data buffer belong to no tensor (a gap before tensor 'a')"});
    refused(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(5, '\0')),
            {"bytes [4, 5) at the end of the data buffer belong to no tensor"});
    refused(st_bytes("{}", "x"), {"bytes [0, 1) at the end of the data buffer belong to no tensor"});
    // zero-size tensors may share an offset with anything that starts there
    CHECK(io::safetensors_file::from_bytes(st_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
                                                    R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                                    R"("c":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}})",
                                                    std::string(4, '\0')),
                                           "ok")
              .tensors()
              .size() == 3);
    // duplicate keys: JSON parsers keep one silently; the reader refuses the file
    refused(st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                     std::string(4, '\0')),
            {"key 'w' appears twice in the header"});
    refused(st_bytes(R"({"w":{"dtype":"F32","dtype":"I64","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')),
            {"key 'dtype' appears twice in the entry of 'w'"});
    refused(st_bytes(R"({"__metadata__":{"a":"1","a":"2"}})"),
            {"key 'a' appears twice in the entry of '__metadata__'"});
    // __metadata__ is an object of strings
    refused(st_bytes(R"({"__metadata__":["a"]})"),
            {"\"__metadata__\" must be an object of strings, found array [\"a\"]"});
    refused(st_bytes(R"({"__metadata__":{"epoch":3}})"),
            {"\"__metadata__\" key 'epoch' must map to a string, found number 3"});
}

TEST_CASE("safetensors: the reader's file errors name the path") {
    temp_dir dir("tricks_test_st_");
    const std::string missing = error_of([&] { io::safetensors_file f(dir / "missing.safetensors"); });
    CHECK(contains(missing, "tricks::safetensors: cannot open " + (dir / "missing.safetensors").string()));
    CHECK(contains(error_of([&] { io::safetensors_file f(dir.path); }), dir.path.string() + " is a directory"));
    const fs::path cut = dir / "cut.safetensors";
    io::safetensors_writer w;
    w.add("w", {3}, std::vector<float>{1, 2, 3});
    const std::string all = w.bytes();
    { std::ofstream(cut, std::ios::binary) << all.substr(0, all.size() - 1); }
    const std::string msg = error_of([&] { io::safetensors_file f(cut); });
    CHECK(
        contains(msg, "tricks::safetensors: " + cut.string() + ": tensor 'w': data_offsets [0, 12] run past the end"));
}

TEST_CASE("safetensors: the writer refuses duplicate names, wrong counts and what it cannot store, naming the key") {
    io::safetensors_writer w;
    const std::vector<float> six(6, 1.f);
    w.add("a", {2, 3}, six);
    CHECK(contains(error_of([&] { w.add("a", {6}, six); }), "tricks::safetensors: tensor 'a': added twice"));
    CHECK(contains(error_of([&] { w.add_i64("a", {}, std::vector<std::int64_t>{0}); }), "tensor 'a': added twice"));
    CHECK(contains(error_of([&] { w.add("b", {4}, six); }),
                   "tensor 'b': shape [4] holds 4 elements, but 6 values were given"));
    CHECK(contains(error_of([&] { w.add("b", {}, six); }),
                   "tensor 'b': shape [] holds 1 elements, but 6 values were given"));
    CHECK(contains(error_of([&] { w.add("b", {-2, -3}, six); }), "tensor 'b': shape [-2,-3] has a negative dimension"));
    CHECK(contains(error_of([&] {
                       w.add("b", {1 << 30, 1 << 30, 1 << 30}, six);
                   }),
                   "tensor 'b': shape [1073741824,1073741824,1073741824]: the element count overflows"));
    CHECK(contains(error_of([&] { w.add_i64("n", {2}, std::vector<std::int64_t>{0}); }),
                   "tensor 'n': shape [2] holds 2 elements, but 1 values"));
    CHECK(contains(error_of([&] { w.add("c", {6}, six, st_dtype::i64); }),
                   "tensor 'c': floats are stored as F32, F16 or BF16, not I64"));
    CHECK(contains(error_of([&] { w.add("__metadata__", {6}, six); }), "tensor '__metadata__': the name is reserved"));
    CHECK(contains(error_of([&] { w.add("bad\xff", {6}, six); }), "the name is not valid UTF-8"));
    w.metadata("format", "pt");
    CHECK(contains(error_of([&] { w.metadata("format", "np"); }),
                   "tricks::safetensors: metadata key 'format' is set twice"));
    CHECK(contains(error_of([&] { w.metadata("k", "\xc3"); }), "metadata key 'k': key and value must be valid UTF-8"));
    // the refused calls left nothing behind
    const auto f = io::safetensors_file::from_bytes(w.bytes(), "w");
    REQUIRE(f.tensors().size() == 1);
    CHECK(f.metadata().size() == 1);
    // an unwritable destination is a data_error naming the file, not a crash
    temp_dir dir("tricks_test_st_");
    const fs::path file = dir / "a.safetensors";
    w.commit(file);
    const std::string msg = error_of([&] { w.commit(file / "inside_a_file.safetensors"); });
    CHECK(contains(msg, "tricks::safetensors: cannot create directory " + file.string()));
}
