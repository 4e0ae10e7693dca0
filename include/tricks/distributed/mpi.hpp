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

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <span>
#include <string>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/distributed/communicator.hpp"

namespace tricks::distributed {

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
        if (std::uncaught_exceptions() > 0 && size_ > 1) MPI_Abort(MPI_COMM_WORLD, 1);
        if (!owns_) return;
        int finalised = 0;
        MPI_Finalized(&finalised);
        if (!finalised) MPI_Finalize();
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

    [[noreturn]] void abort(const std::string& reason, int code) override {
        std::fprintf(stderr, "tricks: rank %d of %d: %s; ending every rank of the job\n", rank_, size_, reason.c_str());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
        std::_Exit(code);  // MPI_Abort does not return; should a broken MPI return, this rank still ends
    }

    /// Elements per reduction round: bounds the receive buffer (size() x this / size() elements).
    static constexpr std::size_t bucket = std::size_t{1} << 22;

private:
    static constexpr std::size_t chunk_limit = std::size_t{1} << 30;

    static void check(int rc, const char* what) {
        if (rc == MPI_SUCCESS) return;
        char text[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, text, &len);
        throw error(tricks::detail::cat("tricks::distributed::mpi_world: ", what, " failed: ", std::string(text, len)));
    }

    template <class T>
    void fixed_order_sum(std::span<T> data, MPI_Datatype type) {
        if (size_ == 1) return;
        const auto W = static_cast<std::size_t>(size_), me = static_cast<std::size_t>(rank_);
        std::vector<int> counts(W), displs(W), recv_counts(W), recv_displs(W);
        std::vector<T>& pieces = buffer(T{});
        for (std::size_t at = 0; at < data.size(); at += bucket) {
            const std::size_t n = std::min(bucket, data.size() - at);
            T* d = data.data() + at;
            const auto lo = [&](std::size_t c) { return n * c / W; };
            for (std::size_t c = 0; c < W; ++c) {
                counts[c] = static_cast<int>(lo(c + 1) - lo(c));
                displs[c] = static_cast<int>(lo(c));
            }
            const std::size_t mine = lo(me + 1) - lo(me);
            for (std::size_t r = 0; r < W; ++r) {
                recv_counts[r] = static_cast<int>(mine);
                recv_displs[r] = static_cast<int>(r * mine);
            }
            pieces.resize(W * mine);
            check(MPI_Alltoallv(d, counts.data(), displs.data(), type, pieces.data(), recv_counts.data(),
                                recv_displs.data(), type, MPI_COMM_WORLD),
                  "MPI_Alltoallv");
            T* out = d + lo(me);
            for (std::size_t i = 0; i < mine; ++i) {
                T acc = pieces[i];
                for (std::size_t r = 1; r < W; ++r) acc += pieces[r * mine + i];  // rank order
                out[i] = acc;
            }
            check(MPI_Allgatherv(MPI_IN_PLACE, 0, type, d, counts.data(), displs.data(), type, MPI_COMM_WORLD),
                  "MPI_Allgatherv");
        }
    }
    std::vector<float>& buffer(float) noexcept { return float_pieces_; }
    std::vector<double>& buffer(double) noexcept { return double_pieces_; }

    int rank_ = 0, size_ = 1;
    bool owns_ = false;
    std::vector<float> float_pieces_;
    std::vector<double> double_pieces_;
};

}  // namespace tricks::distributed
