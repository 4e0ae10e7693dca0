// Data pipeline: IDX reading/validation, datasets, Fashion-MNIST, augmentation, the loader.
#include <doctest/doctest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tricks/data/augment.hpp"
#include "tricks/data/dataset.hpp"
#include "tricks/data/fashion_mnist.hpp"
#include "tricks/data/idx.hpp"
#include "tricks/data/loader.hpp"
#include "helpers.hpp"

namespace fs = std::filesystem;
using namespace tricks::data;
using tricks_test::contains;
using tricks_test::error_of;
using bytes = std::vector<std::uint8_t>;

namespace {

struct temp_dir : tricks_test::temp_dir {
    temp_dir() : tricks_test::temp_dir("tricks_test_data_") {}
};

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
void write_raw(const fs::path& p, const bytes& b) {
    std::ofstream f(p, std::ios::binary);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    REQUIRE(f.good());
}

void write_raw_gz(const fs::path& p, const bytes& b) {
    gzFile f = gzopen(p.c_str(), "wb");
    REQUIRE(f != nullptr);
    REQUIRE(gzwrite(f, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
    REQUIRE(gzclose(f) == Z_OK);
}

bytes read_raw(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return bytes(std::istreambuf_iterator<char>(f), {});
}

/// An IDX header: magic 0 0 type rank, then big-endian extents.
bytes idx_header(std::vector<std::uint32_t> dims, std::uint8_t type = 0x08) {
    bytes h{0, 0, type, static_cast<std::uint8_t>(dims.size())};
    for (auto d : dims)
        h.insert(h.end(), {std::uint8_t(d >> 24), std::uint8_t(d >> 16), std::uint8_t(d >> 8), std::uint8_t(d)});
    return h;
}

bytes concat(bytes a, const bytes& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

bytes pattern(std::size_t n, std::uint32_t seed = 1) {
    bytes v(n);
    tricks::rng r(seed, 99);
    for (auto& x : v) x = static_cast<std::uint8_t>(r.next_u32());
    return v;
}

/// Images whose first two bytes encode their index (hi, lo), the rest a fixed pattern; label = index % classes.
dataset indexed_dataset(int n, int h, int w, int c, int classes = 7) {
    dataset d;
    d.name = "synthetic";
    d.n = n;
    d.h = h;
    d.w = w;
    d.c = c;
    d.classes = classes;
    d.pixels = pattern(static_cast<std::size_t>(n) * d.image_size(), 5);
    d.labels.resize(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        std::uint8_t* img = d.pixels.data() + static_cast<std::size_t>(i) * d.image_size();
        img[0] = static_cast<std::uint8_t>(i >> 8);
        img[1] = static_cast<std::uint8_t>(i & 0xFF);
        d.labels[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i % classes);
    }
    return d;
}

/// Index of the image in a batch produced with no augmentation and no normalisation (x = v/255).
int decode_index(const float* img) {
    return static_cast<int>(std::lround(img[0] * 255.0f)) * 256 + static_cast<int>(std::lround(img[1] * 255.0f));
}

augment_options plain_options() {
    augment_options o;
    o.crop_padding = 0;
    o.horizontal_flip = false;
    return o;
}

augment_options full_options(int channels) {
    augment_options o;
    o.crop_padding = 2;
    o.horizontal_flip = true;
    o.mean.assign(static_cast<std::size_t>(channels), 0.3f);
    o.stddev.assign(static_cast<std::size_t>(channels), 0.25f);
    return o;
}

bool same_bits(const tricks::tensor<float>& a, const tricks::tensor<float>& b) {
    return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct batch {
    tricks::tensor<float> images;
    std::vector<int> labels;
};

std::vector<batch> drain(loader& l, int epoch, std::chrono::microseconds pause = {}) {
    l.start_epoch(epoch);
    std::vector<batch> out;
    batch b;
    while (l.next(b.images, b.labels)) {
        out.push_back(b);
        if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
    return out;
}

bool same_batches(const std::vector<batch>& a, const std::vector<batch>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (!same_bits(a[i].images, b[i].images) || a[i].labels != b[i].labels) return false;
    return true;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
TEST_CASE("idx: write/read round trip, plain and gzip, ranks 1 to 4") {
    temp_dir dir;
    const std::vector<std::vector<int>> shapes{{17}, {5, 3, 4}, {2, 3, 4, 3}, {300, 28, 28}};
    for (bool gz : {false, true}) {
        for (const auto& dims : shapes) {
            idx_array a;
            a.dims = dims;
            a.values = pattern(a.element_count(), static_cast<std::uint32_t>(dims.size()));
            // Appended piecewise: "a" + std::to_string(...) trips GCC 12's false -Wrestrict (PR 105329).
            std::string name = std::to_string(dims.size());
            name.append(gz ? ".idx.gz" : ".idx");
            const fs::path p = dir / name;
            write_idx(p, a, gz);
            const bytes raw = read_raw(p);
            if (gz) {
                REQUIRE(raw.size() >= 2);
                CHECK(raw[0] == 0x1f);  // really a gzip stream
                CHECK(raw[1] == 0x8b);
            } else {
                CHECK(raw == concat(idx_header({dims.begin(), dims.end()}), a.values));
            }
            const idx_array b = read_idx(p);
            CHECK(b.dims == a.dims);
            CHECK(b.values == a.values);
            CHECK(b.source == p);
        }
    }
}

TEST_CASE("idx: truncated data names the file and both byte counts") {
    temp_dir dir;
    const fs::path p = dir / "short-images-idx3-ubyte";
    write_raw(p, concat(idx_header({10, 3, 3}), pattern(50)));
    const std::string msg = error_of([&] { read_idx(p); });
    CHECK(contains(msg, "tricks::idx: "));
    CHECK(contains(msg, p.string()));
    CHECK(contains(msg, "truncated"));
    CHECK(contains(msg, "90"));
    CHECK(contains(msg, "50"));

    SUBCASE("gzip of a short payload") {
        const fs::path q = dir / "short-images-idx3-ubyte.gz";
        write_raw_gz(q, concat(idx_header({10, 3, 3}), pattern(50)));
        const std::string m = error_of([&] { read_idx(q); });
        CHECK(contains(m, q.string()));
        CHECK(contains(m, "truncated"));
        CHECK(contains(m, "decompressed"));
    }
    SUBCASE("gzip stream cut short") {
        idx_array a{{400, 28, 28}, pattern(400 * 28 * 28)};
        const fs::path full = dir / "full.gz";
        write_idx(full, a, true);
        bytes raw = read_raw(full);
        raw.resize(raw.size() / 2);
        const fs::path q = dir / "cut.gz";
        write_raw(q, raw);
        const std::string m = error_of([&] { read_idx(q); });
        CHECK(contains(m, q.string()));
        CHECK(contains(m, "truncated"));
    }
    SUBCASE("corrupt gzip stream") {
        idx_array a{{400, 28, 28}, pattern(400 * 28 * 28)};
        const fs::path full = dir / "full.gz";
        write_idx(full, a, true);
        bytes raw = read_raw(full);
        std::fill(raw.begin() + static_cast<std::ptrdiff_t>(raw.size() / 2),
                  raw.begin() + static_cast<std::ptrdiff_t>(raw.size() / 2 + 64), std::uint8_t{0xAA});
        const fs::path q = dir / "corrupt.gz";
        write_raw(q, raw);
        const std::string m = error_of([&] { read_idx(q); });
        INFO(m);
        CHECK(contains(m, "tricks::idx: " + q.string() + ": corrupt gzip stream: "));
    }
    SUBCASE("header cut inside the magic") {
        write_raw(p, {0, 0});
        const std::string m = error_of([&] { read_idx(p); });
        CHECK(contains(m, "truncated"));
        CHECK(contains(m, "magic"));
    }
    SUBCASE("header cut inside the dimensions") {
        bytes h = idx_header({10, 3, 3});
        h.resize(9);
        write_raw(p, h);
        const std::string m = error_of([&] { read_idx(p); });
        CHECK(contains(m, "truncated"));
        CHECK(contains(m, "dimension bytes"));
    }
    SUBCASE("empty file") {
        write_raw(p, {});
        CHECK(contains(error_of([&] { read_idx(p); }), "truncated"));
    }
}

TEST_CASE("idx: bad magic, element type, rank and extents are reported by field") {
    temp_dir dir;
    const fs::path p = dir / "bad.idx";
    SUBCASE("magic") {
        bytes b = concat(idx_header({4}), pattern(4));
        b[0] = 0x12;
        write_raw(p, b);
        const std::string m = error_of([&] { read_idx(p); });
        CHECK(contains(m, p.string()));
        CHECK(contains(m, "bad magic"));
        CHECK(contains(m, "0x12"));
    }
    SUBCASE("element type float32") {
        write_raw(p, concat(idx_header({4}, 0x0D), pattern(16)));
        const std::string m = error_of([&] { read_idx(p); });
        CHECK(contains(m, p.string()));
        CHECK(contains(m, "element type 0x0d"));
        CHECK(contains(m, "float32"));
    }
    SUBCASE("rank 0 and rank 5") {
        write_raw(p, idx_header({}));
        CHECK(contains(error_of([&] { read_idx(p); }), "rank 0"));
        write_raw(p, concat(idx_header({1, 1, 1, 1, 1}), pattern(1)));
        CHECK(contains(error_of([&] { read_idx(p); }), "rank 5"));
    }
    SUBCASE("zero extent") {
        write_raw(p, idx_header({3, 0, 2}));
        CHECK(contains(error_of([&] { read_idx(p); }), "dimension 1 is 0"));
    }
    SUBCASE("extent beyond int") {
        write_raw(p, idx_header({0x80000000u}));
        CHECK(contains(error_of([&] { read_idx(p); }), "dimension 0 is 2147483648"));
    }
    SUBCASE("header promising far more than the file holds fails as truncation, not bad_alloc") {
        write_raw(p, concat(idx_header({0x7fffffffu, 0x7fffffffu}), pattern(10)));
        CHECK(contains(error_of([&] { read_idx(p); }), "truncated"));
    }
}

TEST_CASE("idx: trailing bytes after the data are an error") {
    temp_dir dir;
    for (bool gz : {false, true}) {
        const fs::path p = dir / (gz ? "t.idx.gz" : "t.idx");
        const bytes b = concat(idx_header({2, 2}), pattern(4 + 3));
        gz ? write_raw_gz(p, b) : write_raw(p, b);
        const std::string m = error_of([&] { read_idx(p); });
        CHECK(contains(m, p.string()));
        CHECK(contains(m, "trailing bytes: 3 bytes"));
    }
}

TEST_CASE("idx: missing file and directory") {
    temp_dir dir;
    const fs::path p = dir / "nope-idx1-ubyte.gz";
    const std::string m = error_of([&] { read_idx(p); });
    CHECK(contains(m, p.string()));
    CHECK(contains(m, "no such file"));
    CHECK(contains(error_of([&] { read_idx(dir.path); }), "is a directory"));
}

TEST_CASE("idx: write_idx rejects inconsistent arrays") {
    temp_dir dir;
    CHECK(contains(error_of([&] { write_idx(dir / "x", idx_array{{3, 2}, pattern(5)}, false); }), "holds 5"));
    CHECK(contains(error_of([&] { write_idx(dir / "x", idx_array{{}, {}}, false); }), "rank 0"));
    CHECK(contains(error_of([&] { write_idx(dir / "x", idx_array{{2, -1}, {}}, false); }), "dimension 1"));
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("dataset: make_dataset accepts rank 3 and 4 images") {
    const dataset g = make_dataset("grey", idx_array{{3, 2, 2}, pattern(12)}, idx_array{{3}, {0, 1, 2}}, 3);
    CHECK(g.n == 3);
    CHECK(g.h == 2);
    CHECK(g.w == 2);
    CHECK(g.c == 1);
    CHECK(g.classes == 3);
    CHECK(g.pixels == pattern(12));
    CHECK(g.labels == bytes{0, 1, 2});

    const dataset rgb = make_dataset("rgb", idx_array{{2, 2, 3, 3}, pattern(36)}, idx_array{{2}, {4, 0}}, 5);
    CHECK(rgb.c == 3);
    CHECK(rgb.image_size() == 18);
    CHECK(rgb.image(1) == rgb.pixels.data() + 18);
}

TEST_CASE("dataset: count mismatch names both counts and both files") {
    temp_dir dir;
    const fs::path ip = dir / "imgs-idx3-ubyte", lp = dir / "lbls-idx1-ubyte.gz";
    write_idx(ip, idx_array{{4, 2, 2}, pattern(16)}, false);
    write_idx(lp, idx_array{{3}, {0, 1, 2}}, true);
    const std::string m = error_of([&] { make_dataset("pair", read_idx(ip), read_idx(lp), 10); });
    CHECK(contains(m, "tricks::dataset: pair"));
    CHECK(contains(m, "image count 4"));
    CHECK(contains(m, "label count 3"));
    CHECK(contains(m, ip.string()));
    CHECK(contains(m, lp.string()));
}

TEST_CASE("dataset: label out of range names index and value") {
    const std::string m = error_of([&] {
        make_dataset("d", idx_array{{3, 1, 1}, {1, 2, 3}}, idx_array{{3}, {0, 9, 10}}, 10);
    });
    CHECK(contains(m, "label 2"));
    CHECK(contains(m, "is 10"));
    CHECK(contains(m, "0 to 9"));
}

TEST_CASE("dataset: wrong ranks and inconsistent arrays") {
    CHECK(contains(error_of([&] {
                       make_dataset("d", idx_array{{3, 4}, pattern(12)}, idx_array{{3}, {0, 0, 0}}, 2);
                   }),
                   "rank 2"));
    CHECK(contains(error_of([&] {
                       make_dataset("d", idx_array{{3, 2, 2}, pattern(12)}, idx_array{{3, 1}, {0, 0, 0}}, 2);
                   }),
                   "labels in memory have rank 2"));
    CHECK(contains(error_of([&] {
                       make_dataset("d", idx_array{{3, 2, 2}, pattern(11)}, idx_array{{3}, {0, 0, 0}}, 2);
                   }),
                   "holds 11"));
    CHECK(contains(error_of([&] {
                       make_dataset("d", idx_array{{1, 1, 1}, {0}}, idx_array{{1}, {0}}, 0);
                   }),
                   "classes = 0"));
}

TEST_CASE("dataset: subset copies a contiguous range") {
    const dataset d = indexed_dataset(10, 3, 2, 2);
    const dataset s = d.subset(4, 3);
    CHECK(s.n == 3);
    CHECK(s.h == 3);
    CHECK(s.w == 2);
    CHECK(s.c == 2);
    CHECK(s.classes == d.classes);
    CHECK(s.pixels == bytes(d.image(4), d.image(7)));
    CHECK(s.labels == bytes(d.labels.begin() + 4, d.labels.begin() + 7));
    CHECK(d.subset(10, 0).n == 0);
    CHECK(contains(error_of([&] { (void)d.subset(8, 3); }), "[8, 11) out of range"));
}

TEST_CASE("dataset: compute_stats per channel") {
    dataset d;
    d.name = "stats";
    d.n = 2;
    d.h = 1;
    d.w = 2;
    d.c = 2;
    d.classes = 1;
    // channel 0: 0, 255, 0, 255 -> mean 0.5, std 0.5; channel 1: 51 everywhere -> mean 0.2, std 0
    d.pixels = {0, 51, 255, 51, 0, 51, 255, 51};
    d.labels = {0, 0};
    const channel_stats s = compute_stats(d);
    REQUIRE(s.mean.size() == 2);
    REQUIRE(s.stddev.size() == 2);
    CHECK(s.mean[0] == doctest::Approx(0.5).epsilon(1e-7));
    CHECK(s.stddev[0] == doctest::Approx(0.5).epsilon(1e-7));
    CHECK(s.mean[1] == doctest::Approx(0.2).epsilon(1e-7));
    CHECK(s.stddev[1] == 0.0f);
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("fashion_mnist: the installed data set loads") {
    const fs::path dir = fashion_mnist::default_dir();
    if (!fs::is_directory(dir)) {
        MESSAGE("skipped: ", dir.string(),
                " is missing (install dataset-fashion-mnist or set TRICKS_FASHION_MNIST_DIR)");
        return;
    }
    const dataset train = fashion_mnist::train(dir);
    const dataset test = fashion_mnist::test(dir);
    CHECK(train.name == "fashion-mnist/train");
    CHECK(train.n == 60000);
    CHECK(train.h == 28);
    CHECK(train.w == 28);
    CHECK(train.c == 1);
    CHECK(train.classes == 10);
    CHECK(train.pixels.size() == 60000u * 784u);
    CHECK(test.n == 10000);
    CHECK(test.pixels.size() == 10000u * 784u);

    std::array<int, 10> train_count{}, test_count{};
    for (auto l : train.labels) ++train_count.at(l);
    for (auto l : test.labels) ++test_count.at(l);
    for (int k = 0; k < 10; ++k) {
        CHECK(train_count[static_cast<std::size_t>(k)] == 6000);
        CHECK(test_count[static_cast<std::size_t>(k)] == 1000);
    }
    // The commonly quoted normalisation constants of Fashion-MNIST's training set.
    const channel_stats s = compute_stats(train);
    CHECK(s.mean[0] == doctest::Approx(0.2860).epsilon(1e-3));
    CHECK(s.stddev[0] == doctest::Approx(0.3530).epsilon(1e-3));
    CHECK(fashion_mnist::class_names[9] == "Ankle boot");
}

TEST_CASE("fashion_mnist: missing directory or files say how to install") {
    temp_dir dir;
    const std::string m = error_of([&] { fashion_mnist::train(dir / "absent"); });
    CHECK(contains(m, "tricks::fashion_mnist: "));
    CHECK(contains(m, "dataset-fashion-mnist"));
    CHECK(contains(m, "TRICKS_FASHION_MNIST_DIR"));

    // Plain and gzip files may be mixed; only the missing one is reported.
    write_idx(dir / "t10k-images-idx3-ubyte", idx_array{{2, 28, 28}, pattern(2 * 784)}, false);
    const std::string m2 = error_of([&] { fashion_mnist::test(dir.path); });
    CHECK(contains(m2, (dir / "t10k-labels-idx1-ubyte.gz").string()));
    CHECK(contains(m2, "dataset-fashion-mnist"));

    write_idx(dir / "t10k-labels-idx1-ubyte.gz", idx_array{{2}, {3, 9}}, true);
    const dataset t = fashion_mnist::test(dir.path);
    CHECK(t.n == 2);
    CHECK(t.labels == bytes{3, 9});

    write_idx(dir / "train-images-idx3-ubyte", idx_array{{2, 27, 28}, pattern(2 * 27 * 28)}, false);
    write_idx(dir / "train-labels-idx1-ubyte", idx_array{{2}, {3, 9}}, false);
    CHECK(contains(error_of([&] { fashion_mnist::train(dir.path); }), "expected 28x28x1"));
}

TEST_CASE("fashion_mnist: default_dir honours TRICKS_FASHION_MNIST_DIR") {
    const char* old = std::getenv("TRICKS_FASHION_MNIST_DIR");
    const std::optional<std::string> saved = old ? std::optional<std::string>(old) : std::nullopt;
    ::setenv("TRICKS_FASHION_MNIST_DIR", "/some/where", 1);
    CHECK(fashion_mnist::default_dir() == fs::path("/some/where"));
    ::unsetenv("TRICKS_FASHION_MNIST_DIR");
    CHECK(fashion_mnist::default_dir() == fs::path("/usr/share/datasets/fashion-mnist"));
    if (saved) ::setenv("TRICKS_FASHION_MNIST_DIR", saved->c_str(), 1);
}

// ------------------------------------------------------------------------------------------------
namespace {
/// Reference crop+flip of a 1-channel byte image through an explicitly padded copy.
std::vector<int> reference_crop(const dataset& d, std::size_t index, int p, int oy, int ox, bool flip) {
    const int ph = d.h + 2 * p, pw = d.w + 2 * p;
    std::vector<int> padded(static_cast<std::size_t>(ph * pw), 0);
    for (int y = 0; y < d.h; ++y)
        for (int x = 0; x < d.w; ++x)
            padded[static_cast<std::size_t>((y + p) * pw + x + p)] = d.image(index)[y * d.w + x];
    std::vector<int> out(static_cast<std::size_t>(d.h * d.w));
    for (int y = 0; y < d.h; ++y)
        for (int x = 0; x < d.w; ++x) {
            const int wx = flip ? d.w - 1 - x : x;
            out[static_cast<std::size_t>(y * d.w + x)] = padded[static_cast<std::size_t>((y + oy) * pw + wx + ox)];
        }
    return out;
}

dataset tiny_image(int h, int w, int c) {
    dataset d;
    d.name = "tiny";
    d.n = 2;
    d.h = h;
    d.w = w;
    d.c = c;
    d.classes = 2;
    d.pixels.resize(2 * d.image_size());
    for (std::size_t i = 0; i < d.pixels.size(); ++i)
        d.pixels[i] = static_cast<std::uint8_t>(10 + i);  // all distinct, none 0
    d.labels = {0, 1};
    return d;
}
}  // namespace

TEST_CASE("augment: evaluation only normalises, exactly, and leaves the rng alone") {
    const dataset d = tiny_image(3, 4, 3);
    augment_options o;
    o.mean = {0.1f, 0.5f, 0.9f};
    o.stddev = {0.2f, 0.3f, 0.7f};
    tricks::rng r(7, 1);
    const auto before = r.save();
    std::vector<float> out(d.image_size());
    prepare_image(d, 1, o, false, r, out.data());
    for (std::size_t i = 0; i < d.image_size(); ++i) {
        const std::size_t ch = i % 3;
        const float expect = (static_cast<float>(d.image(1)[i]) / 255.0f - o.mean[ch]) / o.stddev[ch];
        CHECK(out[i] == expect);  // bit-exact: same float expression
    }
    const auto after = r.save();
    CHECK(after.counter == before.counter);
    CHECK(after.have == before.have);

    // Empty mean/std: plain [0,1] scaling.
    prepare_image(d, 0, augment_options{}, false, r, out.data());
    for (std::size_t i = 0; i < d.image_size(); ++i) CHECK(out[i] == static_cast<float>(d.image(0)[i]) / 255.0f);
}

TEST_CASE("augment: crop offsets are two below(2p+1) draws into the zero-padded image") {
    const dataset d = tiny_image(3, 4, 1);
    augment_options o;
    o.crop_padding = 1;
    o.horizontal_flip = false;
    std::set<std::pair<int, int>> seen;
    std::vector<float> out(d.image_size());
    for (std::uint64_t seed = 0; seed < 200; ++seed) {
        tricks::rng r(seed, 3), predict = r;
        const int oy = static_cast<int>(predict.below(3)), ox = static_cast<int>(predict.below(3));
        seen.insert({oy, ox});
        prepare_image(d, 1, o, true, r, out.data());
        const auto ref = reference_crop(d, 1, 1, oy, ox, false);
        for (std::size_t i = 0; i < out.size(); ++i) CHECK(out[i] == static_cast<float>(ref[i]) / 255.0f);
        // Exactly the two offset draws were consumed.
        CHECK(r.next_u32() == predict.next_u32());
    }
    CHECK(seen.size() == 9);  // every offset in [0,2]x[0,2] occurs

    // Pin one case by hand: offset (0, 0) shows the top-left corner of the padded image.
    //   padded (p=1) image 1 of tiny(3,4):   0  0  0  0  0  0
    //                                        0 22 23 24 25  0
    //                                        0 26 27 28 29  0 ...
    const auto ref = reference_crop(d, 1, 1, 0, 0, false);
    CHECK(ref == std::vector<int>{0, 0, 0, 0, 0, 22, 23, 24, 0, 26, 27, 28});
}

TEST_CASE("augment: offsets are uniform over [0,2p]^2") {
    const dataset d = tiny_image(5, 5, 1);
    augment_options o;
    o.crop_padding = 2;
    o.horizontal_flip = false;
    std::map<std::pair<int, int>, int> count;
    std::vector<float> out(d.image_size());
    for (std::uint64_t i = 0; i < 5000; ++i) {
        tricks::rng r(11, i), predict = r;
        const int oy = static_cast<int>(predict.below(5)), ox = static_cast<int>(predict.below(5));
        ++count[{oy, ox}];
        prepare_image(d, 0, o, true, r, out.data());
    }
    CHECK(count.size() == 25);
    for (const auto& [k, v] : count) {  // expected 200 each; 6 sigma is about 83
        CHECK(v > 110);
        CHECK(v < 290);
    }
}

TEST_CASE("augment: horizontal flip mirrors whole pixels exactly, half the time") {
    const dataset d = tiny_image(3, 5, 3);
    augment_options o;
    o.crop_padding = 0;
    o.horizontal_flip = true;
    std::vector<float> out(d.image_size());
    int flips = 0;
    const int trials = 2000;
    for (int t = 0; t < trials; ++t) {
        tricks::rng r(5, static_cast<std::uint64_t>(t)), predict = r;
        const bool flip = predict.below(2) == 1;
        prepare_image(d, 1, o, true, r, out.data());
        flips += flip;
        for (int y = 0; y < 3; ++y)
            for (int x = 0; x < 5; ++x)
                for (int ch = 0; ch < 3; ++ch) {
                    const int sx = flip ? 4 - x : x;
                    const float expect = static_cast<float>(d.image(1)[(y * 5 + sx) * 3 + ch]) / 255.0f;
                    CHECK(out[static_cast<std::size_t>((y * 5 + x) * 3 + ch)] == expect);
                }
        CHECK(r.next_u32() == predict.next_u32());  // one draw for the coin
    }
    CHECK(flips > 900);
    CHECK(flips < 1100);
}

TEST_CASE("augment: crop then flip, padding normalised like a black pixel") {
    const dataset d = tiny_image(4, 4, 1);
    augment_options o;
    o.crop_padding = 2;
    o.horizontal_flip = true;
    o.mean = {0.25f};
    o.stddev = {0.5f};
    std::vector<float> out(d.image_size());
    bool saw_flip = false, saw_pad = false;
    for (std::uint64_t seed = 0; seed < 100; ++seed) {
        tricks::rng r(seed, 8), predict = r;
        const int oy = static_cast<int>(predict.below(5)), ox = static_cast<int>(predict.below(5));
        const bool flip = predict.below(2) == 1;
        prepare_image(d, 0, o, true, r, out.data());
        const auto ref = reference_crop(d, 0, 2, oy, ox, flip);
        for (std::size_t i = 0; i < out.size(); ++i) {
            CHECK(out[i] == (static_cast<float>(ref[i]) / 255.0f - 0.25f) / 0.5f);
            if (ref[i] == 0) {
                CHECK(out[i] == -0.5f);  // (0 - 0.25) / 0.5
                saw_pad = true;
            }
        }
        saw_flip |= flip;
    }
    CHECK(saw_flip);
    CHECK(saw_pad);
}

TEST_CASE("augment: option and index validation") {
    const dataset d = tiny_image(2, 2, 3);
    std::vector<float> out(d.image_size());
    tricks::rng r(1, 1);
    augment_options o;
    o.mean = {0.5f};
    CHECK_THROWS_WITH_AS(prepare_image(d, 0, o, false, r, out.data()), doctest::Contains("mean has 1 values"),
                         tricks::error);
    o.mean.clear();
    o.stddev = {1.0f, 0.0f, 1.0f};
    CHECK_THROWS_WITH_AS(prepare_image(d, 0, o, false, r, out.data()), doctest::Contains("stddev[1] = 0"),
                         tricks::error);
    o.stddev.clear();
    o.crop_padding = -1;
    CHECK_THROWS_WITH_AS(prepare_image(d, 0, o, true, r, out.data()), doctest::Contains("crop_padding = -1"),
                         tricks::error);
    CHECK(contains(error_of([&] { prepare_image(d, 2, augment_options{}, false, r, out.data()); }),
                   "image 2 out of range"));
}

// ------------------------------------------------------------------------------------------------
TEST_CASE("loader: every sample exactly once per epoch, orders differ between epochs and seeds") {
    const dataset d = indexed_dataset(1000, 3, 3, 1);
    loader l(d, 32, true, plain_options(), 42, /*drop_last=*/false);
    CHECK(l.batches_per_epoch() == 32);  // 31 full + 8
    std::vector<std::vector<int>> orders;
    for (int epoch = 0; epoch < 3; ++epoch) {
        const auto batches = drain(l, epoch);
        REQUIRE(batches.size() == 32);
        std::vector<int> order;
        for (const auto& b : batches) {
            CHECK(b.images.shape().h == 3);
            CHECK(b.images.shape().w == 3);
            CHECK(b.images.shape().c == 1);
            for (int k = 0; k < b.images.shape().n; ++k) {
                const int idx = decode_index(b.images.data() + static_cast<std::size_t>(k) * 9);
                order.push_back(idx);
                CHECK(b.labels[static_cast<std::size_t>(k)] == d.labels[static_cast<std::size_t>(idx)]);
            }
        }
        CHECK(batches.back().images.shape().n == 8);
        std::vector<int> sorted = order;
        std::sort(sorted.begin(), sorted.end());
        std::vector<int> all(1000);
        std::iota(all.begin(), all.end(), 0);
        CHECK(sorted == all);
        CHECK(order != all);  // shuffled
        orders.push_back(order);
    }
    CHECK(orders[0] != orders[1]);
    CHECK(orders[1] != orders[2]);

    loader other(d, 32, true, plain_options(), 43, false);
    const auto b = drain(other, 0);
    std::vector<int> order;
    for (const auto& x : b)
        for (int k = 0; k < x.images.shape().n; ++k) order.push_back(decode_index(x.images.data() + k * 9));
    CHECK(order != orders[0]);  // another seed, another order
}

TEST_CASE("loader: shuffle is a uniform permutation") {
    std::map<std::vector<std::uint32_t>, int> count;
    std::vector<std::uint32_t> order(4);
    for (int e = 0; e < 4800; ++e) {
        loader::epoch_order(9, e, true, order);
        ++count[order];
    }
    CHECK(count.size() == 24);
    for (const auto& [k, v] : count) {  // expected 200 each
        CHECK(v > 110);
        CHECK(v < 290);
    }
    loader::epoch_order(9, 0, false, order);
    CHECK(order == std::vector<std::uint32_t>{0, 1, 2, 3});
}

TEST_CASE("loader: same seed gives bit-identical batches; background equals synchronous") {
    const dataset d = indexed_dataset(203, 6, 5, 3);
    const augment_options o = full_options(3);
    loader a(d, 16, true, o, 7);
    loader b(d, 16, true, o, 7);
    loader sync(d, 16, true, o, 7, /*drop_last=*/true, /*background=*/false);
    CHECK(a.batches_per_epoch() == 12);
    for (int epoch : {0, 1, 5}) {
        const auto ba = drain(a, epoch);
        // A slow consumer lets the worker run ahead and wait on full slots.
        const auto bb = drain(b, epoch, std::chrono::microseconds(300));
        const auto bs = drain(sync, epoch);
        REQUIRE(ba.size() == 12);
        CHECK(same_batches(ba, bb));
        CHECK(same_batches(ba, bs));

        // Independent recomputation from the documented derivation (order + per-position rng).
        std::vector<std::uint32_t> order(203);
        loader::epoch_order(7, epoch, true, order);
        std::vector<float> img(d.image_size());
        for (std::size_t bi = 0; bi < ba.size(); ++bi)
            for (std::size_t k = 0; k < 16; ++k) {
                const std::size_t pos = bi * 16 + k;
                tricks::rng r = loader::augment_rng(7, epoch, pos);
                prepare_image(d, order[pos], o, true, r, img.data());
                CHECK(std::memcmp(img.data(), ba[bi].images.data() + k * d.image_size(), img.size() * sizeof(float)) ==
                      0);
                CHECK(ba[bi].labels[k] == d.labels[order[pos]]);
            }
    }
    const auto e0 = drain(a, 0), e1 = drain(a, 1);
    CHECK(!same_batches(e0, e1));
}

TEST_CASE("loader: make_batch reproduces next() and the caller's buffer is reused") {
    const dataset d = indexed_dataset(100, 4, 4, 2);
    loader l(d, 10, true, full_options(2), 3);
    l.start_epoch(2);
    tricks::tensor<float> images, ref;
    std::vector<int> labels, ref_labels;
    const float* first_buffer = nullptr;
    for (std::size_t b = 0; l.next(images, labels); ++b) {
        if (b == 0) first_buffer = images.data();
        CHECK(images.data() == first_buffer);  // no reallocation after the first batch
        l.make_batch(b, ref, ref_labels);
        CHECK(same_bits(images, ref));
        CHECK(labels == ref_labels);
    }
    CHECK_FALSE(l.next(images, labels));  // stays exhausted
}

TEST_CASE("loader: evaluation keeps the order, does not augment, keeps the short last batch") {
    const dataset d = indexed_dataset(10, 2, 3, 1);
    augment_options o = plain_options();
    o.crop_padding = 4;  // ignored when not training
    loader l(d, 4, false, o, 1);
    CHECK(l.batches_per_epoch() == 3);
    const auto batches = drain(l, 0);
    REQUIRE(batches.size() == 3);
    CHECK(batches[0].images.shape() == tricks::shape4{4, 2, 3, 1});
    CHECK(batches[2].images.shape() == tricks::shape4{2, 2, 3, 1});
    int expect = 0;
    for (const auto& b : batches)
        for (int k = 0; k < b.images.shape().n; ++k) {
            const float* img = b.images.data() + k * 6;
            CHECK(decode_index(img) == expect);
            for (int i = 0; i < 6; ++i)
                CHECK(img[i] == static_cast<float>(d.image(static_cast<std::size_t>(expect))[i]) / 255.0f);
            ++expect;
        }
    CHECK(expect == 10);
}

TEST_CASE("loader: drop_last") {
    const dataset d = indexed_dataset(10, 2, 2, 1);
    CHECK(loader(d, 4, true, plain_options(), 1).batches_per_epoch() == 2);   // train default: drop
    CHECK(loader(d, 4, false, plain_options(), 1).batches_per_epoch() == 3);  // eval default: keep
    CHECK(loader(d, 5, true, plain_options(), 1).batches_per_epoch() == 2);   // exact fit
    CHECK(loader(d, 4, true, plain_options(), 1, false).batches_per_epoch() == 3);

    loader l(d, 4, true, plain_options(), 1, true);
    const auto batches = drain(l, 0);
    REQUIRE(batches.size() == 2);
    std::set<int> seen;
    for (const auto& b : batches) {
        CHECK(b.images.shape().n == 4);
        for (int k = 0; k < 4; ++k) seen.insert(decode_index(b.images.data() + k * 4));
    }
    CHECK(seen.size() == 8);  // no repeats; two samples sit out this epoch

    CHECK_THROWS_WITH_AS(loader(d, 11, true, plain_options(), 1), doctest::Contains("no batches"), tricks::error);
    CHECK(loader(d, 11, false, plain_options(), 1).batches_per_epoch() == 1);
    CHECK_THROWS_WITH_AS(loader(d, 0, true, plain_options(), 1), doctest::Contains("batch = 0"), tricks::error);
}

TEST_CASE("loader: restart mid-epoch, destroy mid-epoch, misuse") {
    const dataset d = indexed_dataset(64, 3, 3, 1);
    const auto reference = [&] {
        loader l(d, 4, true, full_options(1), 5);
        return drain(l, 3);
    }();
    {
        loader l(d, 4, true, full_options(1), 5);
        tricks::tensor<float> images;
        std::vector<int> labels;
        CHECK_THROWS_WITH_AS(l.next(images, labels), doctest::Contains("before start_epoch"), tricks::error);
        l.start_epoch(0);
        REQUIRE(l.next(images, labels));
        l.start_epoch(3);  // abandons epoch 0 with the worker mid-flight
        CHECK(same_batches(drain(l, 3), reference));
        l.start_epoch(1);
        REQUIRE(l.next(images, labels));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));  // worker now blocked on full slots
    }                                                               // destructor must stop it without deadlock
    {
        loader l(d, 4, true, full_options(1), 5);
        l.start_epoch(0);  // destroyed before any next()
    }
    CHECK_THROWS_WITH_AS(loader(d, 4, true, full_options(1), 5).start_epoch(-1), doctest::Contains("epoch = -1"),
                         tricks::error);
}

TEST_CASE("loader: a failure in the worker is rethrown by next()") {
    for (bool background : {true, false}) {
        dataset d = indexed_dataset(20, 2, 2, 1);
        loader l(d, 4, true, plain_options(), 1, true, background);
        d.pixels.resize(4 * 3);  // only images 0..2 remain: some batch must fail
        l.start_epoch(0);
        tricks::tensor<float> images;
        std::vector<int> labels;
        bool threw = false;
        try {
            while (l.next(images, labels)) {}
        } catch (const tricks::data_error& e) {
            threw = true;
            CHECK(contains(e.what(), "too few for image"));
        }
        CHECK(threw);
        d.pixels = indexed_dataset(20, 2, 2, 1).pixels;  // repaired: the next epoch works again
        CHECK(drain(l, 1).size() == 5);
    }
}

// ------------------------------------------------------------------------------------------------
// batch_loader over a source, with several workers
namespace {

/// A source whose prepare() is slow for some images and can be told to fail on one: workers finish
/// out of order, yet batches must come out in order and bit-identical.
struct jittery_source : tricks::data::memory_source {
    std::size_t fail_at = static_cast<std::size_t>(-1);
    void prepare(std::size_t i, bool train, tricks::rng& r, float* out) const {
        if (i % 7 == 3) std::this_thread::sleep_for(std::chrono::microseconds(200));
        tricks::require<tricks::data_error>(i != fail_at, "jittery_source: image ", i, " is bad");
        memory_source::prepare(i, train, r, out);
    }
};
static_assert(tricks::data::batch_source<jittery_source>);
static_assert(tricks::data::batch_source<tricks::data::memory_source>);

template <class Source>
std::vector<batch> drain_source(tricks::data::batch_loader<Source>& l, int epoch) {
    l.start_epoch(epoch);
    std::vector<batch> out;
    batch b;
    while (l.next(b.images, b.labels)) out.push_back(b);
    return out;
}

}  // namespace

TEST_CASE("batch_loader: the same bits for 0, 1, 2, 3 and 5 workers, in training and evaluation") {
    const dataset d = indexed_dataset(150, 5, 4, 3);
    const jittery_source src{{&d, full_options(3)}};
    for (bool train : {true, false}) {
        tricks::data::batch_loader<jittery_source> ref(src, 16, train, 11, train, 0);
        const auto reference = drain_source(ref, 2);
        REQUIRE(reference.size() == (train ? 9u : 10u));
        // The synchronous loader is itself the plain loop over prepare(): check one batch by hand.
        std::vector<std::uint32_t> order(150);
        tricks::data::batch_loader<jittery_source>::epoch_order(11, 2, train, order);
        std::vector<float> img(5 * 4 * 3);
        tricks::rng r = train ? tricks::data::batch_loader<jittery_source>::augment_rng(11, 2, 16 + 5) : tricks::rng();
        src.prepare(order[16 + 5], train, r, img.data());
        CHECK(std::memcmp(img.data(), reference[1].images.data() + 5 * img.size(), img.size() * sizeof(float)) == 0);
        CHECK(reference[1].labels[5] == d.labels[order[16 + 5]]);
        for (int workers : {1, 2, 3, 5}) {
            tricks::data::batch_loader<jittery_source> l(src, 16, train, 11, train, workers);
            CHECK(same_batches(drain_source(l, 2), reference));
            CHECK(same_batches(drain_source(l, 2), reference));  // restarted: the same again
        }
    }
}

TEST_CASE("batch_loader: a failing image surfaces at its batch, after the batches before it, for any worker count") {
    const dataset d = indexed_dataset(64, 3, 3, 1);
    for (int workers : {0, 1, 2, 4}) {
        jittery_source src{{&d, full_options(1)}};
        std::vector<std::uint32_t> order(64);
        tricks::data::batch_loader<jittery_source>::epoch_order(5, 0, true, order);
        src.fail_at = order[37];  // position 37: batch 4 of 8-image batches
        tricks::data::batch_loader<jittery_source> l(src, 8, true, 5, true, workers);
        l.start_epoch(0);
        batch b;
        int delivered = 0;
        bool threw = false;
        try {
            while (l.next(b.images, b.labels)) ++delivered;
        } catch (const tricks::data_error& e) {
            threw = true;
            CHECK(contains(e.what(), "image " + std::to_string(order[37]) + " is bad"));
        }
        CHECK(threw);
        CHECK(delivered == 4);
        CHECK_FALSE(l.next(b.images, b.labels));  // the failed epoch is over
    }
}

TEST_CASE("batch_loader: argument errors") {
    const dataset d = indexed_dataset(10, 2, 2, 1);
    const tricks::data::memory_source src{&d, plain_options()};
    CHECK_THROWS_WITH_AS(tricks::data::batch_loader<tricks::data::memory_source>(src, 4, true, 1, true, -1),
                         doctest::Contains("workers = -1"), tricks::error);
    const dataset empty;
    CHECK_THROWS_WITH_AS(
        tricks::data::batch_loader<tricks::data::memory_source>({&empty, plain_options()}, 4, true, 1, true),
        doctest::Contains("no images"), tricks::data_error);
}

TEST_CASE("batch_loader: the ranks' shards of a batch are its rows, for any worker count, also mid-epoch") {
    const dataset d = indexed_dataset(150, 5, 4, 3);
    const jittery_source src{{&d, full_options(3)}};
    tricks::data::batch_loader<jittery_source> whole(src, 24, true, 11, true, 0);
    const auto reference = drain_source(whole, 3);
    REQUIRE(reference.size() == 6u);
    const std::size_t image = 5 * 4 * 3;
    for (int ranks : {1, 2, 3, 4}) {
        const int per = 24 / ranks;
        for (int workers : {0, 2}) {
            for (int rank = 0; rank < ranks; ++rank) {
                tricks::data::batch_loader<jittery_source> l(src, 24, true, 11, true, workers);
                l.shard(rank, ranks);
                CHECK(l.batches_per_epoch() == 6u);
                CHECK(l.batch_size(0) == per);
                const auto mine = drain_source(l, 3);
                REQUIRE(mine.size() == reference.size());
                for (std::size_t b = 0; b < mine.size(); ++b) {
                    CAPTURE(ranks);
                    CAPTURE(rank);
                    CAPTURE(b);
                    REQUIRE(mine[b].images.shape().n == per);
                    CHECK(std::memcmp(mine[b].images.data(),
                                      reference[b].images.data() + static_cast<std::size_t>(rank * per) * image,
                                      static_cast<std::size_t>(per) * image * sizeof(float)) == 0);
                    CHECK(std::equal(mine[b].labels.begin(), mine[b].labels.end(),
                                     reference[b].labels.begin() + rank * per));
                }
                l.start_epoch(3, 4);  // a resumed run: batch 4 onwards, the same shard
                batch b;
                REQUIRE(l.next(b.images, b.labels));
                CHECK(std::memcmp(b.images.data(),
                                  reference[4].images.data() + static_cast<std::size_t>(rank * per) * image,
                                  static_cast<std::size_t>(per) * image * sizeof(float)) == 0);
            }
        }
    }
    tricks::data::batch_loader<jittery_source> l(src, 24, true, 11, true, 1);
    CHECK_THROWS_WITH_AS(l.shard(0, 5), doctest::Contains("batch 24 is not divisible by 5 ranks"), tricks::error);
    CHECK_THROWS_WITH_AS(l.shard(2, 2), doctest::Contains("shard 2 of 2 ranks"), tricks::error);
    tricks::data::batch_loader<jittery_source> eval(src, 24, false, 11, false, 1);
    CHECK_THROWS_WITH_AS(eval.shard(0, 2), doctest::Contains("sharding needs drop_last"), tricks::error);
}
