// Checkpoints: the container (round trip of every field kind, atomic write, truncation, corruption,
// bad magic and version, wrong field names and sizes), model sections (fingerprints: loading into
// another model type is an error naming both), and the trainer's resume: an interrupted run resumed
// from its checkpoint ends with the same bits as the uninterrupted run.
#include <doctest/doctest.h>
#include <omp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <span>
#include <stdexcept>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tricks/io/checkpoint.hpp"
#include "tricks/models/cifar_resnet.hpp"
#include "tricks/train/report.hpp"
#include "tricks/train/trainer.hpp"
#include "helpers.hpp"

namespace {

namespace fs = std::filesystem;
using namespace tricks;
using namespace tricks_test;

/// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct ck_temp_dir {
    fs::path path;
    ck_temp_dir() {
        std::random_device rd;
        path = fs::temp_directory_path() /
               ("tricks_test_ckpt_" + std::to_string(::getpid()) + "_" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~ck_temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    ck_temp_dir(const ck_temp_dir&) = delete;
    ck_temp_dir& operator=(const ck_temp_dir&) = delete;
    fs::path operator/(const std::string& name) const { return path / name; }
};

std::string read_all(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_all(const fs::path& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(f.good());
}

/// The message of the tricks::data_error that opening `p` throws ("" if none is thrown).
std::string open_error(const fs::path& p) {
    try {
        io::checkpoint_reader r(p);
    } catch (const data_error& e) {
        return e.what();
    }
    return "";
}

/// One file with every field kind, including awkward values.
void write_sample(const fs::path& p) {
    io::checkpoint_writer w;
    w.u64("u", std::numeric_limits<std::uint64_t>::max());
    w.i64("i", std::numeric_limits<std::int64_t>::min());
    w.f64("pi", 3.141592653589793);
    w.f64("negzero", -0.0);
    w.str("text", std::string("with\0nul and \xff bytes", 20));
    w.str("empty", "");
    const float fl[] = {1.5f, -0.f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::infinity(),
                        std::numeric_limits<float>::max()};
    w.floats("floats", fl);
    w.floats("none", std::span<const float>{});
    w.commit(p);
}

// header: magic (8) + version (4) + payload bytes (8); trailer: checksum (8)
constexpr std::size_t header_bytes = 20, trailer_bytes = 8;

using ck_net = models::cifar_resnet<8, width<8>, in_channels<1>, classes<10>, tweak::avg_down, init::zero_gamma>;
using ck_other_net =
    models::cifar_resnet<8, width<8>, in_channels<1>, classes<10>>;  // projection shortcuts, not avg_down
using ck_recipe = recipe<lr::warmup<epochs<1>>, lr::cosine, loss::label_smoothing, mix::mixup, decay::no_bias_decay>;

/// One thread: this small net gains nothing from two, and on a shared 2-core machine two OpenMP
/// threads slow to a crawl whenever another process holds a core (libgomp spin-waits).
options resume_options() {
    return {.epochs = 2, .batch = 32, .lr = 0.2, .seed = 21, .threads = 1, .progress = false, .max_steps_per_epoch = 8};
}

}  // namespace

TEST_CASE("checkpoint: every field kind round-trips bit for bit") {
    ck_temp_dir dir;
    const fs::path p = dir / "sample.ckpt";
    write_sample(p);
    io::checkpoint_reader r(p);
    CHECK(r.path() == p.string());
    CHECK(r.u64("u") == std::numeric_limits<std::uint64_t>::max());
    CHECK(r.i64("i") == std::numeric_limits<std::int64_t>::min());
    CHECK(r.f64("pi") == 3.141592653589793);
    const double nz = r.f64("negzero");
    CHECK(nz == 0.0);
    CHECK(std::signbit(nz));
    CHECK(r.str("text") == std::string("with\0nul and \xff bytes", 20));
    CHECK(r.str("empty").empty());
    float fl[5] = {};
    r.floats("floats", fl);
    CHECK(fl[0] == 1.5f);
    CHECK((fl[1] == 0.f && std::signbit(fl[1])));
    CHECK(fl[2] == std::numeric_limits<float>::denorm_min());
    CHECK(fl[3] == std::numeric_limits<float>::infinity());
    CHECK(fl[4] == std::numeric_limits<float>::max());
    CHECK_FALSE(r.at_end());
    r.floats("none", std::span<float>{});
    CHECK(r.at_end());
    // reading past the last field names the field that was wanted
    CHECK_THROWS_WITH_AS(r.u64("more"), doctest::Contains("ends before field 'more'"), data_error);
}

TEST_CASE("checkpoint: written atomically, no temporary left; a rewrite replaces the file") {
    ck_temp_dir dir;
    const fs::path p = dir / "sub" / "dir" / "a.ckpt";  // parent directories are created
    write_sample(p);
    CHECK(fs::exists(p));
    CHECK_FALSE(fs::exists(p.string() + ".tmp"));
    io::checkpoint_writer w;
    w.i64("only", 7);
    w.commit(p);
    CHECK_FALSE(fs::exists(p.string() + ".tmp"));
    io::checkpoint_reader r(p);
    CHECK(r.i64("only") == 7);
    CHECK(r.at_end());
    CHECK(fs::file_size(p) ==
          header_bytes + (4 + 4 + 8 + 8) + trailer_bytes);  // one field: name length, name, size, value
    // a stale temporary from a crashed writer is simply overwritten
    write_all(p.string() + ".tmp", "garbage");
    w.commit(p);
    CHECK_FALSE(fs::exists(p.string() + ".tmp"));
    CHECK(io::checkpoint_reader(p).i64("only") == 7);
    // an unwritable destination is a tricks::data_error naming the file, not a crash
    const std::string dir_msg = "cannot create directory " + p.string();
    CHECK_THROWS_WITH_AS(w.commit(p / "inside_a_file.ckpt"), doctest::Contains(dir_msg.c_str()), data_error);
}

TEST_CASE("checkpoint: a truncated file is reported with the path, at every cut") {
    ck_temp_dir dir;
    const fs::path good = dir / "good.ckpt";
    write_sample(good);
    const std::string bytes = read_all(good);
    REQUIRE(bytes.size() > header_bytes + trailer_bytes + 40);
    const fs::path cut = dir / "cut.ckpt";
    for (std::size_t len :
         {std::size_t{0}, std::size_t{5}, std::size_t{8}, std::size_t{19}, std::size_t{27},
          header_bytes + trailer_bytes, header_bytes + 10, bytes.size() / 2, bytes.size() - 9, bytes.size() - 1}) {
        CAPTURE(len);
        write_all(cut, bytes.substr(0, len));
        const std::string msg = open_error(cut);
        CHECK(msg.find("truncated") != std::string::npos);
        CHECK(msg.find(cut.string()) != std::string::npos);
    }
    // and an extra byte at the end is not silently ignored either
    write_all(cut, bytes + "x");
    CHECK(open_error(cut).find("1 unexpected bytes after the end") != std::string::npos);
    CHECK_THROWS_WITH_AS(io::checkpoint_reader(dir / "missing.ckpt"), doctest::Contains("cannot open"), data_error);
}

TEST_CASE("checkpoint: a flipped byte anywhere in the payload or checksum is a checksum mismatch") {
    ck_temp_dir dir;
    const fs::path good = dir / "good.ckpt";
    write_sample(good);
    const std::string bytes = read_all(good);
    const fs::path bad = dir / "bad.ckpt";
    for (std::size_t at : {header_bytes, header_bytes + 4, header_bytes + 30, bytes.size() / 2,
                           bytes.size() - trailer_bytes - 1, bytes.size() - 1}) {
        CAPTURE(at);
        std::string b = bytes;
        b[at] = static_cast<char>(b[at] ^ 0x10);
        write_all(bad, b);
        const std::string msg = open_error(bad);
        CHECK(msg.find("checksum mismatch") != std::string::npos);
        CHECK(msg.find(bad.string()) != std::string::npos);
    }
}

TEST_CASE("checkpoint: bad magic and another format version") {
    ck_temp_dir dir;
    const fs::path good = dir / "good.ckpt";
    write_sample(good);
    const std::string bytes = read_all(good);
    const fs::path bad = dir / "bad.ckpt";
    std::string b = bytes;
    b[0] = 'X';
    write_all(bad, b);
    CHECK(open_error(bad).find("not a tricks checkpoint (bad magic)") != std::string::npos);
    write_all(bad, std::string(bytes.size(), '\0'));
    CHECK(open_error(bad).find("bad magic") != std::string::npos);
    b = bytes;
    b[8] = 2;  // version 2
    write_all(bad, b);
    CHECK(open_error(bad).find("format version 2, this build reads version 1") != std::string::npos);
}

TEST_CASE("checkpoint: a wrong field name, size or count names what was expected and found") {
    ck_temp_dir dir;
    const fs::path p = dir / "f.ckpt";
    io::checkpoint_writer w;
    w.u64("alpha", 1);
    w.str("name", "abc");
    const float v[3] = {1, 2, 3};
    w.floats("vec", v);
    w.commit(p);
    {
        io::checkpoint_reader r(p);
        CHECK_THROWS_WITH_AS(r.u64("beta"), doctest::Contains("expected field 'beta', found 'alpha'"), data_error);
    }
    {
        io::checkpoint_reader r(p);
        (void)r.u64("alpha");
        CHECK_THROWS_WITH_AS(r.f64("name"), doctest::Contains("field 'name' has 3 bytes, expected 8"), data_error);
    }
    {
        io::checkpoint_reader r(p);
        (void)r.u64("alpha");
        (void)r.str("name");
        float four[4];
        CHECK_THROWS_WITH_AS(r.floats("vec", four), doctest::Contains("field 'vec' holds 3 floats, expected 4"),
                             data_error);
    }
}

TEST_CASE("checkpoint: a model round-trips; another model type is refused, naming both") {
    ck_temp_dir dir;
    const fs::path p = dir / "model.ckpt";
    ck_net a;
    a.init(5);
    // make the BN running statistics non-trivial so buffers are checked too
    for (auto* b : a.buffers())
        for (std::size_t i = 0; i < b->size(); ++i) (*b)[i] += 0.001f * static_cast<float>(i + 1);
    {
        io::checkpoint_writer w;
        io::save_model(w, a);
        w.commit(p);
    }
    ck_net b;
    b.init(6);
    CHECK_FALSE(same_bits(state_of(a), state_of(b)));
    io::load_model(p, b);
    CHECK(same_bits(state_of(a), state_of(b)));

    ck_other_net other;
    other.init(5);
    const std::vector<float> before = state_of(other);
    REQUIRE(ck_net::fingerprint() != ck_other_net::fingerprint());
    try {
        io::load_model(p, other);
        FAIL("loading a " << ck_net::name() << " into a " << ck_other_net::name() << " succeeded");
    } catch (const data_error& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(msg.find("cannot be loaded into") != std::string::npos);
        CHECK(msg.find(ck_net::name()) != std::string::npos);
        CHECK(msg.find(ck_other_net::name()) != std::string::npos);
        CHECK(msg.find(p.string()) != std::string::npos);
    }
    CHECK(same_bits(state_of(other), before));  // nothing was half-loaded
}

TEST_CASE("trainer resume: interrupted after epoch 1 and resumed gives the uninterrupted run's bits") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(512, 1, 98), test = synthetic_digits(64, 2, 98);
    const fs::path p = dir / "run.ckpt";

    // A: 2 epochs straight (warmup over epoch 1, cosine over epoch 2, label smoothing, mixup)
    trainer<ck_net, ck_recipe> a(resume_options());
    const history ha = a.fit(train, test);
    REQUIRE(ha.epochs.size() == 2);

    // B: the same run, stopped after epoch 1 (its checkpoint is what an interrupted run leaves)
    options ob = resume_options();
    ob.checkpoint = p;
    ob.stop_after_epochs = 1;
    trainer<ck_net, ck_recipe> b(ob);
    const history hb = b.fit(train, test);
    REQUIRE(hb.epochs.size() == 1);
    REQUIRE(fs::exists(p));
    CHECK_FALSE(fs::exists(p.string() + ".tmp"));
    CHECK(hb.epochs[0].train_loss == ha.epochs[0].train_loss);
    CHECK_FALSE(same_bits(state_of(b.model()), state_of(a.model())));  // B really stopped early

    // C: a fresh trainer resumes from B's checkpoint and finishes the run
    trainer<ck_net, ck_recipe> c(resume_options());
    c.resume(p);
    REQUIRE(c.past().epochs.size() == 1);
    CHECK(c.past().epochs[0].train_loss == ha.epochs[0].train_loss);
    const history hc = c.fit(train, test);
    REQUIRE(hc.epochs.size() == 2);
    CHECK(same_bits(state_of(c.model()), state_of(a.model())));
    for (std::size_t e = 0; e < 2; ++e) {
        CAPTURE(e);
        CHECK(hc.epochs[e].train_loss == ha.epochs[e].train_loss);
        CHECK(hc.epochs[e].test_top1 == ha.epochs[e].test_top1);
        CHECK(hc.epochs[e].test_loss == ha.epochs[e].test_loss);
        CHECK(hc.epochs[e].lr == ha.epochs[e].lr);
    }
    // evaluation after the resumed run uses the restored normalisation: same numbers
    const evaluation ea = a.evaluate(test), ec = c.evaluate(test);
    CHECK(ea.top1 == ec.top1);
    CHECK(ea.loss == ec.loss);
}

TEST_CASE("trainer resume: a step-decay run resumes only with the same options.step_milestones") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(64, 3, 96), test = synthetic_digits(16, 4, 96);
    const fs::path p = dir / "stepped.ckpt";
    using stepped = recipe<lr::step<epochs<3>, epochs<6>>>;
    options o = resume_options();
    o.max_steps_per_epoch = 1;
    o.step_milestones = {1};
    o.checkpoint = p;
    o.stop_after_epochs = 1;
    {
        trainer<ck_net, stepped> t(o);
        (void)t.fit(train, test);
    }
    o.checkpoint.clear();
    o.stop_after_epochs = 0;
    {
        trainer<ck_net, stepped> same(o);
        CHECK_NOTHROW(same.resume(p));
    }
    options other = o;
    other.step_milestones.clear();  // the type's 3, 6
    trainer<ck_net, stepped> t(other);
    CHECK_THROWS_WITH_AS(t.resume(p), doctest::Contains("was written with step_milestones = 1, this run has 3,6"),
                         data_error);
}

TEST_CASE("checkpoint_reader::next_is peeks at the next field's name without reading it") {
    ck_temp_dir dir;
    const fs::path p = dir / "peek.ckpt";
    io::checkpoint_writer w;
    w.i64("a", 1);
    w.str("bb", "x");
    w.commit(p);
    io::checkpoint_reader r(p);
    CHECK(r.next_is("a"));
    CHECK_FALSE(r.next_is("b"));
    CHECK_FALSE(r.next_is("aa"));
    CHECK(r.i64("a") == 1);
    CHECK(r.next_is("bb"));
    CHECK(r.str("bb") == "x");
    CHECK_FALSE(r.next_is("bb"));  // at the end
    CHECK(r.at_end());
}

TEST_CASE("trainer resume: other run settings or another model type are refused, naming the field") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(128, 3, 98), test = synthetic_digits(32, 4, 98);
    const fs::path p = dir / "run.ckpt";
    options o = resume_options();
    o.max_steps_per_epoch = 1;
    o.checkpoint = p;
    o.stop_after_epochs = 1;
    {
        trainer<ck_net, ck_recipe> t(o);
        (void)t.fit(train, test);
    }
    REQUIRE(fs::exists(p));
    o.checkpoint.clear();
    o.stop_after_epochs = 0;
    {
        trainer<ck_net, ck_recipe> ok(o);
        CHECK_NOTHROW(ok.resume(p));
    }
    const auto refused = [&](options changed, const std::string& field) {
        trainer<ck_net, ck_recipe> t(changed);
        try {
            t.resume(p);
        } catch (const data_error& e) {
            const std::string msg = e.what();
            CAPTURE(msg);
            CHECK(msg.find("written with " + field + " = ") != std::string::npos);
            CHECK(msg.find(p.string()) != std::string::npos);
            return true;
        }
        return false;
    };
    options s = o;
    s.seed = 22;
    CHECK(refused(s, "seed"));
    options bt = o;
    bt.batch = 16;
    CHECK(refused(bt, "batch"));
    options ep = o;
    ep.epochs = 3;
    CHECK(refused(ep, "epochs"));
    options wd = o;
    wd.weight_decay *= 2;
    CHECK(refused(wd, "weight_decay"));
    options mx = o;
    mx.mixup_alpha = 0.5;
    CHECK(refused(mx, "mixup_alpha"));
    options ls = o;
    ls.label_smoothing = 0.2;
    CHECK(refused(ls, "label_smoothing"));
    options lr = o;
    lr.lr = 0.1;
    CHECK(refused(lr, "lr"));

    trainer<ck_other_net, ck_recipe> other(o);
    CHECK_THROWS_WITH_AS(other.resume(p), doctest::Contains("cannot be loaded into"), data_error);
    // a corrupted trainer checkpoint is an error, never a crash
    std::string bytes = read_all(p);
    bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 1);
    write_all(p, bytes);
    trainer<ck_net, ck_recipe> t(o);
    CHECK_THROWS_WITH_AS(t.resume(p), doctest::Contains("checksum mismatch"), data_error);
}

// ================================================================================================
// run settings (train/settings.hpp): one list for the checkpoint, resume() and the reports

namespace {

/// A recipe with every policy that reads a run-time number, so every option is in use.
using every_number_recipe = recipe<lr::warmup<epochs<1>>, lr::step<epochs<1>>, loss::label_smoothing,
                                   loss::distill<ck_net>, mix::mixup, precision::fp16_mixed>;

/// Another value of the same type, valid for the trainer (ranges kept).
int changed(int v) { return v + 1; }
long changed(long v) { return v + 1; }
std::uint64_t changed(std::uint64_t v) { return v + 1; }
double changed(double v) { return v / 2; }
bool changed(bool v) { return !v; }
backend::conv_algo changed(backend::conv_algo v) {
    return v == backend::conv_algo::winograd ? backend::conv_algo::direct : backend::conv_algo::winograd;
}
distributed::gradient_transport changed(distributed::gradient_transport v) {  // the CPU trainer's two
    return v == distributed::gradient_transport::host ? distributed::gradient_transport::automatic
                                                      : distributed::gradient_transport::host;
}
fs::path changed(const fs::path& v) { return v.string() + ".other"; }
std::vector<int> changed(const std::vector<int>&) { return {2}; }
std::vector<std::string> changed(const std::vector<std::string>&) { return {"epochs"}; }
/// Two ranks for the settings checks, which never communicate (tests/tools/mpi_check.cpp runs real ones).
struct two_ranks final : distributed::communicator {
    [[nodiscard]] int rank() const noexcept override { return 0; }
    [[nodiscard]] int size() const noexcept override { return 2; }
    void sum(std::span<float>) override { throw std::logic_error("two_ranks: no communication in settings checks"); }
    void sum(std::span<double>) override { throw std::logic_error("two_ranks: no communication in settings checks"); }
    void broadcast(std::string&, int) override {
        throw std::logic_error("two_ranks: no communication in settings checks");
    }
    [[noreturn]] void abort(const std::string&, int) override { throw std::logic_error("two_ranks: no abort either"); }
};
std::shared_ptr<distributed::communicator> changed(const std::shared_ptr<distributed::communicator>&) {
    return std::make_shared<two_ranks>();
}

/// The message of resuming `p` with options `o` ("" when it is accepted).
template <class Recipe>
std::string resume_error(const options& o, const fs::path& p) {
    trainer<ck_net, Recipe> t(o);
    try {
        t.resume(p);
    } catch (const error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE(
    "trainer resume: every must-match setting changed is refused with its name and both values; allowed, it is "
    "accepted") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(64, 3, 95), test = synthetic_digits(16, 4, 95);
    const fs::path teacher = dir / "teacher.ckpt", p = dir / "run.ckpt";
    {
        ck_net t;
        t.init(9);
        io::checkpoint_writer w;
        io::save_model(w, t);
        w.commit(teacher);
    }
    options o = resume_options();
    o.max_steps_per_epoch = 1;
    o.teacher_checkpoint = teacher;
    o.checkpoint = p;
    o.stop_after_epochs = 1;
    {
        trainer<ck_net, every_number_recipe> t(o);
        (void)t.fit(train, test);
    }
    REQUIRE(fs::exists(p));
    const trainer<ck_net, every_number_recipe> saved(o);
    CHECK(resume_error<every_number_recipe>(o, p).empty());
    int must_match = 0, fixed = 0, may_change = 0;
    std::apply(
        [&](const auto&... f) {
            const auto one = [&](const auto& field) {
                options c = o;
                c.*(field.member) = changed(o.*(field.member));
                const std::string name = field.name;
                CAPTURE(name);
                const trainer<ck_net, every_number_recipe> probe(c);
                const std::vector<setting> before = saved.settings(), after = probe.settings();
                const setting* was = find_setting(before, name);
                const setting* now = find_setting(after, name);
                REQUIRE(was);
                REQUIRE(now);
                CHECK(was->value != now->value);  // the change is visible in the setting
                const std::string msg = resume_error<every_number_recipe>(c, p);
                CAPTURE(msg);
                const std::string values =
                    "was written with " + name + " = " + was->value + ", this run has " + now->value;
                if (field.rule == on_resume::may_change) {
                    ++may_change;
                    CHECK(msg.empty());
                    return;
                }
                CHECK(contains(msg, values));
                CHECK(contains(msg, p.string()));
                c.resume_allow = {name};
                const std::string allowed = resume_error<every_number_recipe>(c, p);
                CAPTURE(allowed);
                if (field.rule == on_resume::must_match) {
                    ++must_match;
                    CHECK(contains(msg, "options.resume_allow"));
                    CHECK(allowed.empty());
                } else {
                    ++fixed;
                    CHECK(contains(allowed, "'" + name + "', which can never change on resume"));
                }
            };
            (one(f), ...);
        },
        option_fields);
    CHECK(must_match == 22);
    CHECK(fixed == 3);  // batch, max_steps_per_epoch, world_size
    CHECK(may_change ==
          8);  // threads, data_workers, progress, checkpoint, stop_after_*, gradient_transport, resume_allow

    // names in resume_allow are checked: unknown, or a setting that may change anyway
    options u = o;
    u.resume_allow = {"epoch"};
    CHECK(contains(resume_error<every_number_recipe>(u, p),
                   "options.resume_allow names 'epoch', which is not a run setting"));
    u.resume_allow = {"threads"};
    CHECK(contains(resume_error<every_number_recipe>(u, p), "names 'threads', which may change anyway"));
    // another recipe: fixed (the model section is the same type, so this is the settings' check)
    CHECK(contains(
        resume_error<recipe<lr::warmup<epochs<1>>, lr::step<epochs<1>>, loss::label_smoothing, loss::distill<ck_net>,
                            mix::mixup>>(o, p),
        "was written with recipe = sgd + warmup + step + label_smoothing + distill + mixup + fp16_mixed, this run "
        "has sgd + warmup + step + label_smoothing + distill + mixup; this setting cannot change on resume"));
}

TEST_CASE("trainer resume: a refused resume leaves the trainer as it was; the data must be the same") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(128, 3, 94), test = synthetic_digits(32, 4, 94);
    const fs::path p = dir / "run.ckpt";
    options o = resume_options();
    o.max_steps_per_epoch = 2;
    o.checkpoint = p;
    o.stop_after_epochs = 1;
    {
        trainer<ck_net, ck_recipe> t(o);
        (void)t.fit(train, test);
    }
    o.checkpoint.clear();
    o.stop_after_epochs = 0;
    options other = o;
    other.lr = 0.3;
    trainer<ck_net, ck_recipe> t(other);
    const std::vector<float> before = state_of(t.model());
    CHECK_THROWS_WITH_AS(t.resume(p), doctest::Contains("was written with lr = 0.2, this run has 0.3"), data_error);
    CHECK(same_bits(state_of(t.model()), before));
    CHECK(t.past().epochs.empty());

    // the training data's identity is checked by fit(), which sees the data: size, classes, labels
    const auto fewer = synthetic_digits(96, 3, 94), relabelled = synthetic_digits(128, 5, 94);
    {
        trainer<ck_net, ck_recipe> r(o);
        r.resume(p);
        CHECK_THROWS_WITH_AS(
            (void)r.fit(fewer, test),
            doctest::Contains("was written with data.train_images = 128, this run has 96; this setting cannot "
                              "change on resume"),
            data_error);
    }
    {
        trainer<ck_net, ck_recipe> r(o);
        r.resume(p);
        CHECK_THROWS_WITH_AS((void)r.fit(relabelled, test), doctest::Contains("was written with data.labels_fnv1a = "),
                             data_error);
    }
    trainer<ck_net, ck_recipe> r(o);
    r.resume(p);
    CHECK(r.fit(train, test).epochs.size() == 2);
}

TEST_CASE("trainer resume: options.resume_allow = {\"epochs\"} extends a finished run") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(128, 3, 93), test = synthetic_digits(32, 4, 93);
    const fs::path p = dir / "run.ckpt";
    options o = resume_options();
    o.epochs = 1;
    o.max_steps_per_epoch = 2;
    o.checkpoint = p;
    {
        trainer<ck_net, ck_recipe> t(o);
        REQUIRE(t.fit(train, test).epochs.size() == 1);
    }
    o.epochs = 3;
    CHECK_THROWS_WITH_AS((trainer<ck_net, ck_recipe>(o).resume(p)),
                         doctest::Contains("was written with epochs = 1, this run has 3"), data_error);
    o.resume_allow = {"epochs"};
    trainer<ck_net, ck_recipe> t(o);
    t.resume(p);
    const history h = t.fit(train, test);
    REQUIRE(h.epochs.size() == 3);
    CHECK(h.epochs[2].epoch == 3);
    o.resume_allow.clear();
    CHECK(resume_error<ck_recipe>(o, p).empty());  // the checkpoint now says epochs = 3
}

TEST_CASE("trainer resume: a checkpoint from before the settings were saved by name is refused, naming the way out") {
    ck_temp_dir dir;
    const fs::path p = dir / "old.ckpt";
    ck_net m;
    m.init(3);
    io::checkpoint_writer w;
    io::save_model(w, m);
    w.u64("run.seed", 1);  // format 1 went on with the run's fields in a fixed order
    w.commit(p);
    trainer<ck_net, ck_recipe> t(resume_options());
    CHECK_THROWS_WITH_AS(t.resume(p), doctest::Contains("trainer checkpoint format 1"), data_error);
    CHECK_NOTHROW(io::load_model(p, m));  // its model still loads
}

TEST_CASE("reports: the JSON and Markdown reports list every setting by name; CSV and JSON every epoch column") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(64, 3, 92), test = synthetic_digits(16, 4, 92);
    options o = resume_options();
    o.epochs = 1;
    o.max_steps_per_epoch = 1;
    trainer<ck_net, ck_recipe> t(o);
    const history h = t.fit(train, test);
    run_facts facts;
    facts.settings = t.settings();
    write_json(dir / "m.json", facts, o, h);
    write_csv(dir / "m.csv", h);
    const std::string json = read_all(dir / "m.json"), csv = read_all(dir / "m.csv");
    const std::string md = markdown_report(facts, o, h);
    std::vector<std::string> names;
    std::apply([&](const auto&... f) { (names.push_back(f.name), ...); }, option_fields);
    for (const char* extra :
         {"model", "recipe", "data.train", "data.train_images", "data.classes", "data.image", "data.labels_fnv1a"})
        names.push_back(extra);
    CHECK(facts.settings.size() == names.size());
    for (const auto& n : names) {
        CAPTURE(n);
        CHECK(contains(json, "\"" + n + "\": "));
        CHECK(contains(md, "| " + n + " | "));
    }
    REQUIRE(h.epochs.size() == 1);
    CHECK(h.epochs[0].peak_rss_mib > 1);  // this process holds more than a MiB
    CHECK(contains(csv, "loss_scale,peak_rss_mib\n"));
    CHECK(contains(md, "| seconds | peak RSS (MiB) |"));
    CHECK(contains(json, "\"lr\": 0.2"));
    CHECK(contains(json, "\"warmup_epochs\": 1"));  // as the run used it: the recipe's lr::warmup<epochs<1>>
    CHECK(contains(json, "\"data.train_images\": 64"));
    CHECK(contains(md, "| batch | 32 | fixed |"));
    CHECK(contains(md, "| epochs | 1 | must match |"));
    CHECK(contains(md, "| threads | 1 | may change |"));
    std::vector<std::string> columns;
    std::apply([&](const auto&... c) { (columns.push_back(c.name), ...); }, epoch_columns);
    for (const auto& c : columns) {
        CAPTURE(c);
        CHECK(contains(csv.substr(0, csv.find('\n')), c));
        CHECK(contains(json, "\"" + c + "\": "));
    }
}

// ================================================================================================
// stopping inside an epoch: options.stop_after_steps, SIGINT/SIGTERM (train/interrupt.hpp)

namespace {

/// Options of the mid-epoch tests: 2 epochs of 8 steps (512 images, batch 32), one loader thread.
options mid_epoch_options() {
    options o = resume_options();
    o.data_workers = 1;
    return o;
}

/// Every epoch record field that does not measure time.
void check_same_records(const history& a, const history& b) {
    REQUIRE(a.epochs.size() == b.epochs.size());
    for (std::size_t e = 0; e < a.epochs.size(); ++e) {
        CAPTURE(e);
        CHECK(a.epochs[e].epoch == b.epochs[e].epoch);
        CHECK(a.epochs[e].train_loss == b.epochs[e].train_loss);
        CHECK(a.epochs[e].test_top1 == b.epochs[e].test_top1);
        CHECK(a.epochs[e].test_loss == b.epochs[e].test_loss);
        CHECK(a.epochs[e].lr == b.epochs[e].lr);
        CHECK(a.epochs[e].skipped_steps == b.epochs[e].skipped_steps);
        CHECK(a.epochs[e].loss_scale == b.epochs[e].loss_scale);
    }
}

/// An in-memory source that raises `sig` once, while a loader thread prepares training sample
/// `at`: a signal arriving from outside at an arbitrary moment of the run.
struct raising_source : data::memory_source {
    std::size_t at = 0;
    int sig = SIGINT;
    std::shared_ptr<std::atomic<bool>> armed = std::make_shared<std::atomic<bool>>(false);
    void prepare(std::size_t i, bool train, rng& r, float* out) const {
        if (train && i == at && armed->exchange(false)) std::raise(sig);
        memory_source::prepare(i, train, r, out);
    }
};

}  // namespace

TEST_CASE(
    "trainer resume: stopped inside epochs (options.stop_after_steps) and resumed gives the uninterrupted run's bits") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(512, 1, 90), test = synthetic_digits(64, 2, 90);
    const fs::path p = dir / "run.ckpt";
    trainer<ck_net, ck_recipe> a(mid_epoch_options());
    const history ha = a.fit(train, test);
    REQUIRE(ha.epochs.size() == 2);

    // stop after step 3 of epoch 1, then after step 3 of epoch 2 (global step 11), then finish
    options o = mid_epoch_options();
    o.checkpoint = p;
    o.stop_after_steps = 3;
    {
        trainer<ck_net, ck_recipe> b(o);
        CHECK(b.fit(train, test).epochs.empty());
        CHECK_FALSE(same_bits(state_of(b.model()), state_of(a.model())));
    }
    o.stop_after_steps = 11;
    double peak_rss = 0;
    {
        trainer<ck_net, ck_recipe> b(o);
        b.resume(p);
        const history hb = b.fit(train, test);
        REQUIRE(hb.epochs.size() == 1);                             // epoch 1 ended inside this run
        CHECK(hb.epochs[0].train_loss == ha.epochs[0].train_loss);  // the epoch's loss sum went through the file
        peak_rss = hb.epochs[0].peak_rss_mib;
        CHECK(peak_rss > 0);
    }
    o.stop_after_steps = 0;
    trainer<ck_net, ck_recipe> c(o);
    c.resume(p);
    REQUIRE(c.past().epochs.size() == 1);
    CHECK(c.past().epochs[0].peak_rss_mib == peak_rss);  // every column round-trips
    const history hc = c.fit(train, test);
    CHECK(same_bits(state_of(c.model()), state_of(a.model())));
    check_same_records(hc, ha);
}

TEST_CASE(
    "trainer: SIGINT during fit() finishes the step, saves the position, throws tricks::interrupted; resume gives the "
    "same bits") {
    const omp_threads_guard keep_threads;
    ck_temp_dir dir;
    const auto train = synthetic_digits(512, 1, 89), test = synthetic_digits(64, 2, 89);
    const fs::path p = dir / "run.ckpt";
    const options o = mid_epoch_options();
    const auto st = data::compute_stats(train);
    const data::augment_options aug{
        .crop_padding = o.crop_padding, .horizontal_flip = o.horizontal_flip, .mean = st.mean, .stddev = st.stddev};
    raising_source src;
    src.ds = &train;
    src.opts = aug;
    const data::memory_source test_src{&test, aug};

    trainer<ck_net, ck_recipe> a(o);
    const history ha = a.fit(src, test_src);  // not armed: the uninterrupted run
    REQUIRE(ha.epochs.size() == 2);

    struct sigaction before {};
    REQUIRE(::sigaction(SIGINT, nullptr, &before) == 0);
    // raised while batch 1 of epoch 1 is prepared (position 40: each sample comes once per epoch)
    std::vector<std::uint32_t> order(static_cast<std::size_t>(train.n));
    data::batch_loader<raising_source>::epoch_order(o.seed, 0, true, order);
    src.at = order[40];
    src.armed->store(true);
    options ob = o;
    ob.checkpoint = p;
    trainer<ck_net, ck_recipe> b(ob);
    try {
        (void)b.fit(src, test_src);
        FAIL("fit() did not stop on SIGINT");
    } catch (const interrupted& e) {
        const std::string msg = e.what();
        CAPTURE(msg);
        CHECK(e.signal == SIGINT);
        CHECK(contains(msg, "SIGINT: stopped after step "));
        CHECK(contains(msg, " of 8 of epoch 1/2; the run is saved in " + p.string()));
    }
    CHECK_FALSE(src.armed->load());
    CHECK(b.past().epochs.empty());
    struct sigaction after {};
    REQUIRE(::sigaction(SIGINT, nullptr, &after) == 0);
    CHECK((after.sa_handler == before.sa_handler));  // the handler fit() installed is gone again
    CHECK(detail::stop_signal.load() == 0);

    trainer<ck_net, ck_recipe> c(o);
    c.resume(p);
    const history hc = c.fit(src, test_src);
    CHECK(same_bits(state_of(c.model()), state_of(a.model())));
    check_same_records(hc, ha);

    // SIGTERM: the same, named
    raising_source term = src;
    term.sig = SIGTERM;
    term.armed = std::make_shared<std::atomic<bool>>(true);
    trainer<ck_net, ck_recipe> d(ob);
    try {
        (void)d.fit(term, test_src);
        FAIL("fit() did not stop on SIGTERM");
    } catch (const interrupted& e) {
        CHECK(e.signal == SIGTERM);
        CHECK(contains(e.what(), "SIGTERM: stopped after "));
    }
}

TEST_CASE("trainer: a second signal while stopping ends the process at once with 128 + signal") {
    for (const int sig : {SIGINT, SIGTERM}) {
        CAPTURE(sig);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {  // no threads here: only the handler and _exit run
            const detail::stop_signal_scope scope;
            std::raise(sig);  // the first: a flag
            if (detail::stop_signal.load() != sig) ::_exit(3);
            std::raise(sig);  // the second: _exit(128 + sig)
            ::_exit(4);
        }
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 128 + sig);
    }
}

TEST_CASE(
    "checkpoint: a writer killed (SIGKILL) at random moments leaves the old or the new file, never a partial one") {
    ck_temp_dir dir;
    const fs::path p = dir / "killed.ckpt";
    // 4 MB per file: each commit (checksum, write, fsync, rename) takes milliseconds, so kills land inside
    const std::size_t floats = std::size_t{1} << 20;
    const auto write_one = [&](std::uint64_t i, std::vector<float>& buf) {
        std::fill(buf.begin(), buf.end(), static_cast<float>(i));
        io::checkpoint_writer w;
        w.u64("i", i);
        w.floats("data", buf);
        w.commit(p);
    };
    std::vector<float> buf(floats);
    const auto start = std::chrono::steady_clock::now();
    write_one(0, buf);  // the checkpoint a run already had
    // kill moments spread over about three commits, so some land before, inside and after a rename
    const auto commit_us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
    std::mt19937 pick(std::random_device{}());
    std::uniform_int_distribution<long> delay_us(0, std::clamp<long>(3 * commit_us, 1000, 250'000));
    int kills = 0, mid_write = 0;
    std::uint64_t last = 0;
    // A fixed number of kills (no time bound: the test asserts what survives, never how fast;
    // each round waits at most 250 ms, so the loop stays within seconds even under sanitizers).
    for (; kills < 25; ++kills) {
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {  // writes newer checkpoints until killed; touches nothing the parent's threads hold
            for (std::uint64_t i = last + 1;; ++i) write_one(i, buf);
        }
        ::usleep(static_cast<useconds_t>(delay_us(pick)));
        REQUIRE(::kill(child, SIGKILL) == 0);
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        REQUIRE(WIFSIGNALED(status));
        mid_write += fs::exists(p.string() + ".tmp");
        io::checkpoint_reader r(p);  // throws on a partial or corrupted file
        const std::uint64_t i = r.u64("i");
        std::vector<float> got(floats);
        r.floats("data", got);
        CHECK(r.at_end());
        CHECK(i >= last);
        CHECK(std::all_of(got.begin(), got.end(), [&](float v) { return v == static_cast<float>(i); }));
        last = i;
    }
    MESSAGE(kills << " kills, " << mid_write << " with a temporary file left (killed while writing), a commit takes "
                  << commit_us << " us, last checkpoint " << last);
}
