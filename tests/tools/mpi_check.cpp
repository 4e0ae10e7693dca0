// Data-parallel training over real MPI ranks (ctest runs it under `mpirun -np N --oversubscribe`;
// tests/examples/mpi_checks.sh). Every rank runs the same mode and exits non-zero on a failed
// check; rank 0 prints one line per check.
//
//   sum         distributed::mpi_world::sum against the rank-order sum each rank computes
//               alone from every rank's inputs: the same bits, floats and doubles, sizes around the
//               chunk and bucket boundaries
//   gradient    one data-parallel step: every rank's gradient is the mean of the shards' gradients
//               that one process computes shard by shard (the same bits), every rank holds the
//               same weights and BN statistics after it; with batch norms on frozen statistics
//               (no batch coupling), it is the one-process gradient of the whole global batch
//               within rounding; with synchronised batch norms, so are the gradient and the
//               running statistics
//   train DIR   a short data-parallel fit, run with 1 and then 2 OpenMP threads per rank: the same
//               weights on every rank and for both thread counts; rank 0 writes DIR/weights.hash
//               (the script compares reruns)
//   settings    rank 1 starts with another lr: every rank refuses, rank 1 naming lr and both values
//   resume DIR  a checkpoint of a 2-rank run refuses to resume alone (world_size is fixed)
//   fail        rank 1's fit() throws while rank 0 waits in a collective; rank 1 calls abort() as
//               examples/train does: the script checks the job ends with rank 1's reason instead of
//               hanging
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "../unit/helpers.hpp"
#include "tricks/distributed/mpi.hpp"
#include "tricks/tricks.hpp"

namespace {

using namespace tricks;
using net = models::cifar_resnet<8, width<8>, in_channels<1>, classes<10>, tweak::avg_down, init::zero_gamma>;

int failures = 0;
std::shared_ptr<distributed::mpi_world> world;

void check(bool ok, const std::string& what) {
    // every rank's verdict, so rank 0 reports a failure on any rank
    double bad = ok ? 0.0 : 1.0;
    world->sum(std::span<double>(&bad, 1));
    if (!ok) std::fprintf(stderr, "mpi_check: rank %d: FAILED: %s\n", world->rank(), what.c_str());
    if (bad > 0) ++failures;
    if (world->rank() == 0) std::printf("%s %s\n", bad > 0 ? "FAIL" : "ok  ", what.c_str());
}

/// Rank r's input value i: distinct per rank, with magnitudes that make the order of additions matter.
template <class T>
T input(int r, std::size_t i) {
    rng g(1000 + static_cast<std::uint64_t>(r), i / 4096);
    const double u = (static_cast<double>(g.fork(i % 4096).below(1u << 30)) / (1u << 30) - 0.5);
    return static_cast<T>(u * (r % 2 ? 1e-3 : 1e4) * (1.0 + static_cast<double>(i % 7)));
}

template <class T>
void check_sum(std::size_t n) {
    std::vector<T> mine(n), want(n);
    for (std::size_t i = 0; i < n; ++i) {
        mine[i] = input<T>(world->rank(), i);
        T acc = input<T>(0, i);
        for (int r = 1; r < world->size(); ++r) acc += input<T>(r, i);
        want[i] = acc;
    }
    world->sum(std::span<T>(mine));
    check(std::memcmp(mine.data(), want.data(), n * sizeof(T)) == 0,
          detail::cat("sum of ", n, sizeof(T) == 4 ? " floats" : " doubles", " over ", world->size(),
                      " ranks = rank-order sum, bit for bit"));
}

/// start_sum(): several sums in flight at once (more rounds than mpi_world's lanes, one longer than
/// a round), each with the bits of the rank-order sum.
void check_started_sums() {
    const std::vector<std::size_t> sizes = {1, 7, 1000003, 3, distributed::mpi_world::bucket + 5, 64, 9, 5, 2};
    std::vector<std::vector<float>> mine(sizes.size()), want(sizes.size());
    for (std::size_t k = 0; k < sizes.size(); ++k) {
        mine[k].resize(sizes[k]);
        want[k].resize(sizes[k]);
        for (std::size_t i = 0; i < sizes[k]; ++i) {
            mine[k][i] = input<float>(world->rank(), i + 7 * k);
            float acc = input<float>(0, i + 7 * k);
            for (int r = 1; r < world->size(); ++r) acc += input<float>(r, i + 7 * k);
            want[k][i] = acc;
        }
    }
    for (std::size_t k = 0; k < sizes.size(); ++k) {
        world->start_sum(std::span<float>(mine[k]));
        world->progress();
    }
    world->finish_sums();
    bool same = true;
    for (std::size_t k = 0; k < sizes.size(); ++k)
        same = same && std::memcmp(mine[k].data(), want[k].data(), sizes[k] * sizeof(float)) == 0;
    check(same, detail::cat(sizes.size(), " started sums in flight at once over ", world->size(),
                            " ranks = rank-order sums, bit for bit"));
}

options small_options() {
    options o;
    o.epochs = 2;
    o.batch = 32;
    o.lr = 0.1;
    o.max_steps_per_epoch = 4;
    o.progress = false;
    o.threads = 1;
    o.communicator = world;
    return o;
}

std::vector<float> grads_of(net& m) {
    std::vector<float> g;
    for (auto* p : m.parameters()) g.insert(g.end(), p->grad.span().begin(), p->grad.span().end());
    return g;
}

std::uint64_t hash_of(const std::vector<float>& v) {
    std::uint64_t h = 1469598103934665603ull;
    const auto* b = reinterpret_cast<const unsigned char*>(v.data());
    for (std::size_t i = 0; i < v.size() * sizeof(float); ++i) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/// Whether every rank has the same bits in `v` (compared through rank 0's hash).
bool same_on_every_rank(const std::vector<float>& v) {
    std::string h = std::to_string(hash_of(v));
    const std::string mine = h;
    world->broadcast(h, 0);
    return h == mine;
}

/// One data-parallel step. Batch norm per rank: the rank's gradient is the mean of the shards'
/// gradients computed one shard at a time by one process, bit for bit (the ranks' batch statistics
/// differ from the global batch's, so that is the exact property). Frozen batch norms (running
/// statistics, as options::freeze_bn_stats) couple no samples: then it is also the gradient of the
/// global batch's mean loss computed in one pass, equal up to the order of the sums. Synchronised
/// batch norms (options::sync_batch_norm): the one-pass gradient and running statistics too.
enum class bn_kind { per_rank, frozen, synced };
void gradient_check(bn_kind kind) {
    const bool frozen_bn = kind == bn_kind::frozen;
    const auto train = tricks_test::synthetic_digits(256, 1, 91), test = tricks_test::synthetic_digits(32, 2, 91);
    options o = small_options();
    o.epochs = 1;
    o.max_steps_per_epoch = 1;
    o.momentum = 0;
    o.weight_decay = 0;
    o.freeze_bn_stats = frozen_bn;
    o.sync_batch_norm = kind == bn_kind::synced;
    trainer<net, recipe<>> t(o);
    (void)t.fit(train, test);
    const std::vector<float> got = grads_of(t.model());

    // One process: the batch the loader makes for one process, split into the ranks' rows.
    const auto st = data::compute_stats(train);
    data::augment_options aug;
    aug.crop_padding = o.crop_padding;
    aug.horizontal_flip = o.horizontal_flip;
    aug.mean = st.mean;
    aug.stddev = st.stddev;
    data::batch_loader<data::memory_source> whole(data::memory_source{&train, aug}, o.batch, true, o.seed, true, 0);
    whole.start_epoch(0);
    tensor<float> x;
    std::vector<int> labels;
    whole.make_batch(0, x, labels);
    options plain;
    plain.freeze_bn_stats = frozen_bn;
    const auto fresh = [&] {
        auto m = std::make_unique<net>();
        m->init(o.seed);
        prepare_finetune(*m, plain);
        return m;
    };
    auto m = fresh();
    const int W = world->size(), per = o.batch / W, hw = x.shape().h * x.shape().w * x.shape().c;
    const nn::context ctx{.phase = nn::mode::train, .store = nn::storage::fp32, .conv = o.conv_algorithm};
    std::vector<float> mean;
    tensor<float> xs, q, dz;
    for (int r = 0; r < W && kind != bn_kind::synced; ++r) {
        xs.resize({per, x.shape().h, x.shape().w, x.shape().c});
        std::copy_n(x.data() + static_cast<std::size_t>(r) * per * hw, xs.size(), xs.data());
        make_targets(
            std::span<const int>(labels).subspan(static_cast<std::size_t>(r * per), static_cast<std::size_t>(per)), 10,
            0.0, q, 10);
        const tensor<float>& z = m->forward(xs, ctx);
        dz.resize(z.shape());
        (void)backend::host::softmax_cross_entropy(per, 10, z.data(), q.data(), dz.data());
        m->backward(dz, ctx, false);
        const std::vector<float> g = grads_of(*m);
        if (r == 0)
            mean = g;
        else
            for (std::size_t i = 0; i < g.size(); ++i) mean[i] += g[i];  // rank order, as sum() adds
    }
    for (auto& v : mean) v /= static_cast<float>(W);
    const char* bn = frozen_bn ? " (frozen batch norms)" : kind == bn_kind::synced ? " (synchronised batch norms)" : "";
    if (kind != bn_kind::synced)
        check(tricks_test::same_bits(got, mean),
              detail::cat("one step's gradient on rank ", world->rank(), " = mean of the ", W,
                          " shards' gradients, bit for bit", bn));
    check(same_on_every_rank(tricks_test::state_of(t.model())),
          detail::cat("after a step every rank holds the same weights and BN statistics", bn));
    if (kind == bn_kind::per_rank) return;

    // The whole global batch in one forward and backward pass.
    m = fresh();
    make_targets(labels, 10, 0.0, q, 10);
    const tensor<float>& z = m->forward(x, ctx);
    dz.resize(z.shape());
    (void)backend::host::softmax_cross_entropy(o.batch, 10, z.data(), q.data(), dz.data());
    m->backward(dz, ctx, false);
    const std::vector<float> one_pass = grads_of(*m);
    double worst = 0, scale = 0;
    for (std::size_t i = 0; i < one_pass.size(); ++i) {
        worst = std::max(worst, std::abs(double(got[i]) - double(one_pass[i])));
        scale = std::max(scale, std::abs(double(one_pass[i])));
    }
    check(got.size() == one_pass.size() && scale > 0 && worst <= 1e-5 * scale,
          detail::cat("one step's gradient on rank ", world->rank(), " = the one-pass gradient of the global batch of ",
                      o.batch, bn, ": max difference ", worst, " of max |g| ", scale));
    if (kind != bn_kind::synced) return;
    double worst_stat = 0;
    const auto mine = t.model().buffers(), want = m->buffers();
    for (std::size_t b = 0; b < want.size(); ++b)
        for (std::size_t i = 0; i < want[b]->size(); ++i)
            worst_stat = std::max(worst_stat, std::abs(double(mine[b]->data()[i]) - double(want[b]->data()[i])) /
                                                  std::max(1.0, std::abs(double(want[b]->data()[i]))));
    check(mine.size() == want.size() && worst_stat <= 1e-5,
          detail::cat("BN running statistics on rank ", world->rank(), " = those of one pass over the global batch", bn,
                      ": max relative difference ", worst_stat));
}

/// The sharded evaluation of a data-parallel trainer (each rank a slice of the test set, counts
/// summed) against this rank evaluating every test image itself: the same top-1, exactly, and the
/// same loss up to the order of its sum. The test set's size is not divisible by the ranks.
template <class Trainer>
void evaluation_check(Trainer& t, const data::dataset& train, const data::dataset& test) {
    const evaluation sharded = t.evaluate(test);
    const auto st = data::compute_stats(train);
    data::augment_options aug;
    aug.mean = st.mean;
    aug.stddev = st.stddev;
    data::batch_loader<data::memory_source> all(data::memory_source{&test, aug}, 7, false, 1, false, 0);
    all.start_epoch(0);
    models::inference_pool<net> pool;
    pool.load(t.model());
    const nn::context ctx{.phase = nn::mode::eval, .store = nn::storage::fp32};
    tensor<float> x, q;
    std::vector<int> labels;
    std::size_t correct = 0, images = 0;
    double loss = 0;
    while (all.next(x, labels)) {
        const tensor<float>& z = pool.forward(x, ctx);
        const int n = x.shape().n;
        make_targets(labels, 10, 0.0, q, 10);
        loss += backend::host::softmax_cross_entropy(n, 10, z.data(), q.data(), nullptr) * n;
        for (int i = 0; i < n; ++i) {
            const float* zi = z.data() + static_cast<std::size_t>(i) * 10;
            correct += std::max_element(zi, zi + 10) - zi == labels[static_cast<std::size_t>(i)];
        }
        images += static_cast<std::size_t>(n);
    }
    const double top1 = static_cast<double>(correct) / static_cast<double>(images);
    check(sharded.images == images && sharded.top1 == top1 && std::abs(sharded.loss - loss / images) <= 1e-6 * loss,
          detail::cat("evaluation over ", world->size(), " ranks of ", test.n, " images = one process's: top-1 ",
                      sharded.top1, " vs ", top1, ", loss ", sharded.loss, " vs ", loss / images));
}

/// The trainer's gradient buckets (train/gradient_buckets.hpp) with buckets small enough for ~10
/// of them, started from the layers' ready calls during a real backward pass (a residual's shortcut
/// finishes after its branch: not in parameter order): every gradient and running statistic is
/// the mean over the ranks of one blocking sum of everything, bit for bit. Then with the first
/// layers frozen (their buckets never fill and start at the end).
void bucket_check() {
    const auto data = tricks_test::synthetic_digits(16, 5, 93);
    tensor<float> x({16, data.h, data.w, 1});
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(data.pixels[i]) / 255.0f - 0.3f;
    tensor<float> q;
    const std::vector<int> labels(data.labels.begin(), data.labels.end());
    make_targets(labels, 10, 0.0, q, 10);
    for (const auto& [frozen, store] :
         {std::pair{std::size_t{0}, nn::storage::fp32}, std::pair{std::size_t{2}, nn::storage::fp32},
          std::pair{std::size_t{0}, nn::storage::fp16}}) {
        std::vector<float> via_buckets, via_one_sum;
        for (bool buckets_on : {true, false}) {
            net m;
            m.init(3);
            detail::gradient_buckets buckets(200);
            const nn::context ctx{
                .phase = nn::mode::train, .store = store, .gradients = buckets_on ? &buckets : nullptr};
            // the ranks' inputs differ: rank r's images are shifted by r
            tensor<float> xr = x;
            for (auto& v : xr.span()) v += 0.1f * static_cast<float>(world->rank());
            const tensor<float>& z = m.forward(xr, ctx);
            tensor<float> dz(z.shape());
            (void)backend::host::softmax_cross_entropy(16, 10, z.data(), q.data(), dz.data());
            const auto params = m.parameters();
            const auto buffers = m.buffers();
            if (buckets_on) buckets.begin(*world, ctx, params, buffers);
            if (frozen > 0)
                m.backward_from_layer(dz, ctx, frozen);
            else
                m.backward(dz, ctx, false);
            std::vector<float> all;
            if (buckets_on) {
                buckets.finish(world->size());
                check(buckets.buckets() > 2 * distributed::mpi_world::lanes,
                      detail::cat("the bucket check has ", buckets.buckets(), " buckets"));
            } else {
                for (auto* p : params) {
                    ctx.round(p->grad);  // FP16: the gradients as FP16 buffers hold them, as the trainer sends them
                    all.insert(all.end(), p->grad.span().begin(), p->grad.span().end());
                }
                for (auto* b : buffers) all.insert(all.end(), b->span().begin(), b->span().end());
                world->sum(std::span<float>(all));
                std::size_t at = 0;
                for (auto* p : params)
                    for (auto& v : p->grad.span()) v = all[at++] / static_cast<float>(world->size());
                for (auto* b : buffers)
                    for (auto& v : b->span()) v = all[at++] / static_cast<float>(world->size());
            }
            std::vector<float>& out = buckets_on ? via_buckets : via_one_sum;
            out = grads_of(m);
            for (auto* b : buffers) out.insert(out.end(), b->span().begin(), b->span().end());
        }
        check(tricks_test::same_bits(via_buckets, via_one_sum),
              detail::cat("gradients and running statistics summed in buckets during the backward pass",
                          frozen ? " (first 2 layers frozen)" : "", store == nn::storage::fp16 ? " (FP16)" : "",
                          " = one sum after it, bit for bit"));
    }
}

void train_check(const std::filesystem::path& dir) {
    const auto train = tricks_test::synthetic_digits(512, 3, 92), test = tricks_test::synthetic_digits(67, 4, 92);
    std::vector<float> by_threads[2];
    double top1 = 0;
    for (int threads : {1, 2}) {
        options o = small_options();
        o.threads = threads;
        trainer<net, recipe<optim::sgd<optim::nesterov>, lr::cosine, loss::label_smoothing, mix::mixup>> t(o);
        const history h = t.fit(train, test);
        by_threads[threads - 1] = tricks_test::state_of(t.model());
        top1 = h.final_top1();
        if (threads == 1) evaluation_check(t, train, test);
        check(same_on_every_rank(by_threads[threads - 1]),
              detail::cat("a 2-epoch fit with ", threads, " thread(s) per rank: every rank holds the same model"));
    }
    check(tricks_test::same_bits(by_threads[0], by_threads[1]),
          "1 and 2 threads per rank: the same weights, bit for bit");
    if (world->rank() == 0) {
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash_of(by_threads[0])));
        std::ofstream(dir / "weights.hash") << hex << "\n";
        std::printf("     (final top-1 %.4f, weights hash %s)\n", top1, hex);
    }
}

void settings_check() {
    const auto train = tricks_test::synthetic_digits(64, 5, 93), test = tricks_test::synthetic_digits(16, 6, 93);
    options o = small_options();
    if (world->rank() == 1) o.lr = 0.2;
    std::string msg;
    try {
        trainer<net, recipe<>> t(o);
        (void)t.fit(train, test);
    } catch (const error& e) {
        msg = e.what();
    }
    check(!msg.empty(), "different settings on the ranks: every rank refuses to train");
    if (world->rank() == 1)
        check(tricks_test::contains(msg, "rank 1 of") && tricks_test::contains(msg, "lr = 0.2 where rank 0 has 0.1"),
              "rank 1 names the setting and both values: " + msg);
    else
        check(tricks_test::contains(msg, "other rank(s)"), "rank 0 says another rank differs: " + msg);
    o = small_options();
    o.batch = 33;
    msg.clear();
    try {
        trainer<net, recipe<>> t(o);
        (void)t.fit(train, test);
    } catch (const error& e) {
        msg = e.what();
    }
    check(tricks_test::contains(msg, "batch 33 is not divisible by the 2 ranks"),
          "an odd global batch is refused: " + msg);
}

void resume_check(const std::filesystem::path& dir) {
    const auto train = tricks_test::synthetic_digits(128, 7, 94), test = tricks_test::synthetic_digits(16, 8, 94);
    options o = small_options();
    o.epochs = 1;
    o.checkpoint = dir / "two_ranks.ckpt";
    {
        trainer<net, recipe<>> t(o);
        (void)t.fit(train, test);
    }
    double written = 0;  // rank 0 wrote it; the others wait for the file to be complete
    world->sum(std::span<double>(&written, 1));
    o.communicator = nullptr;
    std::string msg;
    try {
        trainer<net, recipe<>> alone(o);
        alone.resume(o.checkpoint);
    } catch (const error& e) {
        msg = e.what();
    }
    check(tricks_test::contains(msg, "world_size = 2, this run has 1"),
          "a 2-rank checkpoint does not resume alone: " + msg);
    o.communicator = world;
    o.epochs = 2;
    o.resume_allow = {"epochs"};
    msg.clear();
    try {
        trainer<net, recipe<>> again(o);
        again.resume(o.checkpoint);
        (void)again.fit(train, test);
    } catch (const error& e) {
        msg = e.what();
    }
    check(msg.empty(), "it resumes on 2 ranks (and trains on): " + msg);
}

void fail_check() {
    const auto train = tricks_test::synthetic_digits(64, 9, 95), test = tricks_test::synthetic_digits(16, 10, 95);
    options o = small_options();
    o.epochs = 50;
    o.max_steps_per_epoch = 0;
    // rank 1's training images have another size: its fit() refuses them while rank 0 goes on into
    // the settings check, where it would wait for rank 1 forever
    data::dataset mine = train;
    if (world->rank() == 1) {
        mine.h = mine.w = 14;
        mine.pixels.resize(static_cast<std::size_t>(mine.n) * 14 * 14);
    }
    trainer<net, recipe<>> t(o);
    (void)t.fit(mine, test);
}

}  // namespace

int main(int argc, char** argv) {
    world = std::make_shared<distributed::mpi_world>(&argc, &argv);
    const std::string mode = argc > 1 ? argv[1] : "";
    const std::filesystem::path dir = argc > 2 ? argv[2] : ".";
    if (mode == "sum") {
        for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{1000003},
                              distributed::mpi_world::bucket + 5}) {
            check_sum<float>(n);
            check_sum<double>(n);
        }
        check_started_sums();
    } else if (mode == "gradient") {
        gradient_check(bn_kind::per_rank);
        gradient_check(bn_kind::frozen);
        gradient_check(bn_kind::synced);
        bucket_check();
    } else if (mode == "train") {
        train_check(dir);
    } else if (mode == "settings") {
        settings_check();
    } else if (mode == "resume") {
        resume_check(dir);
    } else if (mode == "fail") {
        try {
            fail_check();
        } catch (const std::exception& e) {  // as examples/train does: end every rank, with the reason
            world->abort(e.what(), 3);
        }
    } else {
        std::fprintf(stderr, "usage: mpirun -np N mpi_check sum|gradient|train DIR|settings|resume DIR|fail\n");
        return 2;
    }
    return failures == 0 ? 0 : 1;
}
