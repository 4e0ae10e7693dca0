#pragma once
// tricks::distributed::mpi_world: the communicator (distributed/communicator.hpp) of the processes
// an MPI launcher started (`mpirun -np N program ...`). Needs <mpi.h> and linking MPI: the CMake
// target tricks::distributed, defined when MPI is found (the rest of the library needs no MPI).
//
// sum() is a fixed-order reduction built from data movement only: an MPI_Alltoallv hands rank c
// every rank's piece of chunk c, rank c adds the pieces in rank order, and an MPI_Allgatherv
// gives every rank every summed chunk. MPI_Allreduce would be as fast but its order of additions
// is the library's choice (and may depend on the message size or the process placement); this
// way the bits are the same for any MPI, any placement and any timing. It moves the same bytes as
// a ring all-reduce: 2 (n-1)/n of the data per rank.
// MPI's C API only: Open MPI's and MPICH's deprecated C++ bindings stay out (they warn under -Wextra).
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#if defined(__has_include)
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>  // Open MPI's extensions: MPIX_CUDA_AWARE_SUPPORT, MPIX_Query_cuda_support()
#endif
#endif

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <climits>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/distributed/communicator.hpp"

namespace tricks::distributed {

namespace detail {

inline void mpi_check(int rc, const char* who, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw error(tricks::detail::cat(who, ": ", what, " failed: ", std::string(text, len)));
}

/// Whether this MPI moves device memory itself: built CUDA-aware (Open MPI's mpi-ext.h says so at
/// compile time) and the library loaded at run time says so too.
[[nodiscard]] inline bool mpi_cuda_aware() noexcept {
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    return MPIX_Query_cuda_support() == 1;
#else
    return false;
#endif
}

/// device_exchange over a CUDA-aware MPI: blocking MPI_Alltoall / MPI_Allgather on device
/// addresses, on its own duplicate of MPI_COMM_WORLD (the caller waits for its stream first).
class mpi_device_exchange final : public device_exchange {
public:
    mpi_device_exchange(int rank, int size) : rank_(rank), size_(size) {
        mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), who, "MPI_Comm_dup");
    }
    mpi_device_exchange(const mpi_device_exchange&) = delete;
    mpi_device_exchange& operator=(const mpi_device_exchange&) = delete;
    ~mpi_device_exchange() override {
        int finalised = 0;
        MPI_Finalized(&finalised);
        if (!finalised) MPI_Comm_free(&comm_);
    }
    [[nodiscard]] int rank() const noexcept override { return rank_; }
    [[nodiscard]] int size() const noexcept override { return size_; }
    [[nodiscard]] const char* name() const noexcept override { return "mpi"; }
    [[nodiscard]] bool stream_ordered() const noexcept override { return false; }
    void all_to_all(const float* sent, float* received, std::size_t m, void*) override {
        mpi_check(MPI_Alltoall(sent, count(m), MPI_FLOAT, received, count(m), MPI_FLOAT, comm_), who, "MPI_Alltoall");
    }
    void all_gather(float* data, std::size_t m, void*) override {
        mpi_check(MPI_Allgather(MPI_IN_PLACE, 0, MPI_FLOAT, data, count(m), MPI_FLOAT, comm_), who, "MPI_Allgather");
    }

private:
    static constexpr const char* who = "tricks::distributed::mpi_device_exchange";
    int count(std::size_t m) const {
        require(m <= static_cast<std::size_t>(INT_MAX) / static_cast<std::size_t>(size_), who, ": blocks of ", m,
                " floats over ", size_, " ranks exceed MPI's int counts");
        return static_cast<int>(m);
    }
    int rank_ = 0, size_ = 1;
    MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace detail

class mpi_world final : public communicator {
public:
    /// Initialises MPI (MPI_THREAD_FUNNELED: only the thread that trains calls MPI; loader and
    /// OpenMP threads never do) unless the program already has, and takes MPI_COMM_WORLD.
    explicit mpi_world(int* argc = nullptr, char*** argv = nullptr) {
        int initialised = 0;
        MPI_Initialized(&initialised);
        if (!initialised) {
            int provided = 0;
            if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
                throw error("tricks::distributed::mpi_world: MPI_Init_thread failed");
            owns_ = true;
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
    }
    mpi_world(const mpi_world&) = delete;
    mpi_world& operator=(const mpi_world&) = delete;
    /// Finalises MPI if this object initialised it. Destroyed while an exception propagates (a
    /// rank failed and nothing caught it), it aborts the whole job instead: the other ranks would
    /// otherwise wait for this one in their next collective forever.
    ~mpi_world() override {
        // (started sums still in flight: their requests cannot be freed, and the other ranks wait for them)
        if ((std::uncaught_exceptions() > 0 || !flights_.empty()) && size_ > 1) MPI_Abort(MPI_COMM_WORLD, 1);
        int finalised = 0;
        MPI_Finalized(&finalised);
        if (finalised) return;
        for (auto& c : lane_comms_) MPI_Comm_free(&c);
        if (owns_) MPI_Finalize();
    }

    /// Whether an MPI launcher started this process (Open MPI, MPICH/Hydra, PMIx and Slurm set
    /// these): programs that also run alone only initialise MPI when it did.
    [[nodiscard]] static bool launched() noexcept {
        for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
            if (std::getenv(v) != nullptr) return true;
        return false;
    }

    [[nodiscard]] int rank() const noexcept override { return rank_; }
    [[nodiscard]] int size() const noexcept override { return size_; }

    void sum(std::span<float> data) override { fixed_order_sum(data, MPI_FLOAT); }
    void sum(std::span<double> data) override { fixed_order_sum(data, MPI_DOUBLE); }

    void start_sum(std::span<float> data) override {
        if (size_ == 1) return;
        if (lane_comms_.empty()) {  // collective, and every rank's first start_sum is the same call
            lane_comms_.resize(lanes, MPI_COMM_NULL);
            for (auto& c : lane_comms_) check(MPI_Comm_dup(MPI_COMM_WORLD, &c), "MPI_Comm_dup");
        }
        for (std::size_t at = 0; at < data.size(); at += bucket) {
            flights_.emplace_back(round_plan<float>(data.data() + at, std::min(bucket, data.size() - at),
                                                    static_cast<std::size_t>(size_), static_cast<std::size_t>(rank_)),
                                  rounds_++ % lanes);
        }
        advance();
    }
    void progress() override {
        if (!flights_.empty()) advance();
    }
    void finish_sums() override {
        while (!flights_.empty()) {
            advance();
            if (flights_.empty()) break;
            in_flight& f = flights_.front();  // the first round never waits for a lane: its request is live
            check(MPI_Wait(&f.request, MPI_STATUS_IGNORE), "MPI_Wait");
            // MPI_Wait left a null request, which tests as complete: advance() takes the next stage
        }
    }

    void broadcast(std::string& text, int root) override {
        require(root >= 0 && root < size_, "tricks::distributed::mpi_world::broadcast: root ", root, " of ", size_,
                " ranks");
        unsigned long long n = text.size();
        check(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
        text.resize(static_cast<std::size_t>(n));
        for (std::size_t at = 0; at < text.size(); at += chunk_limit) {
            const int count = static_cast<int>(std::min<std::size_t>(chunk_limit, text.size() - at));
            check(MPI_Bcast(text.data() + at, count, MPI_CHAR, root, MPI_COMM_WORLD), "MPI_Bcast");
        }
    }

    /// A CUDA-aware MPI's device exchange (collective: every rank calls it at the same point), or
    /// null when this MPI cannot move device memory.
    [[nodiscard]] bool moves_device_memory() const noexcept override { return detail::mpi_cuda_aware(); }
    [[nodiscard]] std::shared_ptr<device_exchange> device_memory_exchange() override {
        if (!moves_device_memory()) return nullptr;
        return std::make_shared<detail::mpi_device_exchange>(rank_, size_);
    }

    [[noreturn]] void abort(const std::string& reason, int code) override {
        std::fprintf(stderr, "tricks: rank %d of %d: %s; ending every rank of the job\n", rank_, size_, reason.c_str());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
        std::_Exit(code);  // MPI_Abort does not return; should a broken MPI return, this rank still ends
    }

    /// Elements per reduction round: bounds the receive buffer (size() x this / size() elements).
    static constexpr std::size_t bucket = std::size_t{1} << 22;
    /// start_sum(): how many rounds may be in flight at once (each on its own duplicate of
    /// MPI_COMM_WORLD).
    static constexpr std::size_t lanes = 4;

private:
    static constexpr std::size_t chunk_limit = std::size_t{1} << 30;

    static void check(int rc, const char* what) { detail::mpi_check(rc, "tricks::distributed::mpi_world", what); }

    /// One round of a fixed-order sum: n elements at d, split into size() chunks; rank c sums chunk c.
    template <class T>
    struct round_plan {
        T* d = nullptr;
        std::size_t mine = 0, first = 0;  // this rank's chunk: elements [first, first + mine)
        std::vector<int> counts, displs, recv_counts, recv_displs;

        round_plan(T* data, std::size_t n, std::size_t W, std::size_t me)
            : d(data), counts(W), displs(W), recv_counts(W), recv_displs(W) {
            const auto lo = [&](std::size_t c) { return n * c / W; };
            for (std::size_t c = 0; c < W; ++c) {
                counts[c] = static_cast<int>(lo(c + 1) - lo(c));
                displs[c] = static_cast<int>(lo(c));
            }
            first = lo(me);
            mine = lo(me + 1) - first;
            for (std::size_t r = 0; r < W; ++r) {
                recv_counts[r] = static_cast<int>(mine);
                recv_displs[r] = static_cast<int>(r * mine);
            }
        }
        /// This rank's chunk := the ranks' pieces of it added in rank order.
        void add_pieces(const T* pieces, std::size_t W) const {
            T* out = d + first;
            for (std::size_t i = 0; i < mine; ++i) {
                T acc = pieces[i];
                for (std::size_t r = 1; r < W; ++r) acc += pieces[r * mine + i];  // rank order
                out[i] = acc;
            }
        }
    };

    template <class T>
    void fixed_order_sum(std::span<T> data, MPI_Datatype type) {
        if (size_ == 1) return;
        const auto W = static_cast<std::size_t>(size_), me = static_cast<std::size_t>(rank_);
        std::vector<T>& pieces = buffer(T{});
        for (std::size_t at = 0; at < data.size(); at += bucket) {
            const round_plan<T> p(data.data() + at, std::min(bucket, data.size() - at), W, me);
            pieces.resize(W * p.mine);
            check(MPI_Alltoallv(p.d, p.counts.data(), p.displs.data(), type, pieces.data(), p.recv_counts.data(),
                                p.recv_displs.data(), type, MPI_COMM_WORLD),
                  "MPI_Alltoallv");
            p.add_pieces(pieces.data(), W);
            check(MPI_Allgatherv(MPI_IN_PLACE, 0, type, p.d, p.counts.data(), p.displs.data(), type, MPI_COMM_WORLD),
                  "MPI_Allgatherv");
        }
    }

    // start_sum(): each round is an `in_flight` on one of `lanes` duplicates of MPI_COMM_WORLD
    // (round k on lane k mod lanes). MPI wants the collectives of a communicator started in the
    // same order on every rank; a round starts its MPI_Ialltoallv only once the round before it on
    // its lane has finished its MPI_Iallgatherv, so each lane sees the rounds' two collectives in
    // start order on every rank, however the ranks' timing differs, while up to `lanes` rounds
    // overlap.
    struct in_flight {
        in_flight(round_plan<float> p, std::size_t l) : plan(std::move(p)), lane(l) {}
        round_plan<float> plan;
        std::size_t lane = 0;
        int stage = 0;  // 0 waits for its lane, 1 exchanging pieces, 2 gathering sums, 3 done
        MPI_Request request = MPI_REQUEST_NULL;
        std::vector<float> pieces;
    };

    /// Advances every started round as far as it can go without waiting.
    void advance() {
        const auto W = static_cast<std::size_t>(size_);
        std::size_t busy = 0;  // bit l: an earlier round still holds lane l
        for (in_flight& f : flights_) {
            const std::size_t bit = std::size_t{1} << f.lane;
            if (f.stage == 0 && (busy & bit) == 0) {
                f.pieces.resize(W * f.plan.mine);
                check(MPI_Ialltoallv(f.plan.d, f.plan.counts.data(), f.plan.displs.data(), MPI_FLOAT, f.pieces.data(),
                                     f.plan.recv_counts.data(), f.plan.recv_displs.data(), MPI_FLOAT,
                                     lane_comms_[f.lane], &f.request),
                      "MPI_Ialltoallv");
                f.stage = 1;
            }
            if (f.stage == 1 && completed(f.request)) {
                f.plan.add_pieces(f.pieces.data(), W);
                check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, f.plan.d, f.plan.counts.data(), f.plan.displs.data(),
                                      MPI_FLOAT, lane_comms_[f.lane], &f.request),
                      "MPI_Iallgatherv");
                f.stage = 2;
            }
            if (f.stage == 2 && completed(f.request)) f.stage = 3;
            if (f.stage != 3) busy |= bit;
        }
        while (!flights_.empty() && flights_.front().stage == 3) flights_.pop_front();
    }
    bool completed(MPI_Request& r) {
        int done = 0;
        check(MPI_Test(&r, &done, MPI_STATUS_IGNORE), "MPI_Test");
        return done != 0;
    }

    std::vector<float>& buffer(float) noexcept { return float_pieces_; }
    std::vector<double>& buffer(double) noexcept { return double_pieces_; }

    int rank_ = 0, size_ = 1;
    bool owns_ = false;
    std::vector<float> float_pieces_;
    std::vector<double> double_pieces_;
    std::vector<MPI_Comm> lane_comms_;  // start_sum()'s duplicates of MPI_COMM_WORLD
    std::deque<in_flight> flights_;     // started rounds, in start order
    std::size_t rounds_ = 0;
};

}  // namespace tricks::distributed
