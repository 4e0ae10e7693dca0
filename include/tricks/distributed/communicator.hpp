#pragma once
// tricks::distributed::communicator: what the trainer needs of a group of processes that train one
// model together (data parallelism, docs/design.md, "Data-parallel training"). The interface has
// no MPI in it, so the training library builds without MPI; distributed/mpi.hpp implements it
// over MPI (built when MPI is found).
//
// Determinism: sum() adds the ranks' values in rank order (rank 0 + rank 1 + ... + rank n-1) on
// every element, whatever the transport does underneath, so a run's bits depend on the seed and
// the number of ranks only, never on timing or the MPI library's reduction algorithm.
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "tricks/distributed/device_exchange.hpp"

namespace tricks::distributed {

class communicator {
public:
    virtual ~communicator() = default;
    /// This process's index, 0 <= rank() < size().
    [[nodiscard]] virtual int rank() const noexcept = 0;
    /// The number of processes.
    [[nodiscard]] virtual int size() const noexcept = 0;
    /// Replaces every rank's `data` by the element-wise sum over the ranks, added in rank order.
    /// Every rank calls it with the same size.
    virtual void sum(std::span<float> data) = 0;
    virtual void sum(std::span<double> data) = 0;
    /// Starts sum(data) and returns at once where the transport can overlap it with the caller's
    /// work (this default sums before it returns). `data` holds the sum, with sum()'s bits, once
    /// finish_sums() returns; the caller leaves it alone until then. Every rank starts the same
    /// sizes in the same order. Blocking sum() and broadcast() may run while started sums are in
    /// flight.
    virtual void start_sum(std::span<float> data) { sum(data); }
    /// Lets the started sums advance; cheap, for calling between pieces of the caller's work.
    virtual void progress() {}
    /// Returns once every started sum is complete.
    virtual void finish_sums() {}
    /// Every rank's `text` becomes rank `root`'s.
    virtual void broadcast(std::string& text, int root) = 0;
    /// Whether this communicator's library moves device memory itself (an MPI built CUDA-aware).
    [[nodiscard]] virtual bool moves_device_memory() const noexcept { return false; }
    /// Where moves_device_memory(): a transport over these ranks for gradients kept in device
    /// memory (collective: every rank calls it at the same point); null otherwise.
    [[nodiscard]] virtual std::shared_ptr<device_exchange> device_memory_exchange() { return nullptr; }
    /// Ends every process of the job with exit status `code` after printing `reason` on stderr, so
    /// that no rank waits forever for one that failed.
    [[noreturn]] virtual void abort(const std::string& reason, int code) = 0;
};

}  // namespace tricks::distributed
