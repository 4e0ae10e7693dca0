#pragma once
// tricks::distributed::device_exchange: the data movement a GPU trainer needs to sum gradients that
// stay in device memory (docs/design.md, "Data-parallel training"). Two collectives on blocks of m
// floats, nothing more: the summing itself is the trainer's own device kernel, which adds the ranks'
// pieces in rank order, exactly as communicator::sum() does on the host. So every transport (host
// staging, NCCL, CUDA-aware MPI) gives the same bits, and a run's result still depends on the seed
// and the number of ranks only.
//
// No CUDA types here: device addresses are plain pointers and the stream an opaque handle, so the
// MPI implementation (distributed/mpi.hpp) builds without the CUDA toolkit.
#include <cstddef>
#include <string_view>

namespace tricks::distributed {

/// How the CUDA trainer moves gradients between ranks (options::gradient_transport).
enum class gradient_transport {
    automatic,  ///< NCCL when the build has it, else CUDA-aware MPI when the MPI library says so, else host
    host,       ///< download, communicator::sum() on the host, upload (any MPI)
    nccl,       ///< NCCL send/receive and all-gather on the device (TRICKS_HAVE_NCCL builds)
    mpi,        ///< MPI on device addresses (an MPI built CUDA-aware)
};

[[nodiscard]] constexpr const char* to_string(gradient_transport t) noexcept {
    switch (t) {
        case gradient_transport::automatic:
            return "auto";
        case gradient_transport::host:
            return "host";
        case gradient_transport::nccl:
            return "nccl";
        case gradient_transport::mpi:
            return "mpi";
    }
    return "?";
}

/// The transport named `name` ("auto", "host", "nccl" or "mpi"); false when it names none.
[[nodiscard]] constexpr bool parse(std::string_view name, gradient_transport& out) noexcept {
    for (auto t :
         {gradient_transport::automatic, gradient_transport::host, gradient_transport::nccl, gradient_transport::mpi})
        if (name == to_string(t)) {
            out = t;
            return true;
        }
    return false;
}

class device_exchange {
public:
    virtual ~device_exchange() = default;
    [[nodiscard]] virtual int rank() const noexcept = 0;
    [[nodiscard]] virtual int size() const noexcept = 0;
    /// What the transport is, for reports ("nccl", "mpi").
    [[nodiscard]] virtual const char* name() const noexcept = 0;
    /// Whether the calls below are queued on `stream` (NCCL). When false the caller waits for the
    /// stream before each call and the call returns once its data has moved (MPI).
    [[nodiscard]] virtual bool stream_ordered() const noexcept = 0;
    /// All-to-all of m-float blocks in device memory: block r of `received` := block rank() of rank
    /// r's `sent`. `sent` and `received` each hold size() x m floats and do not overlap.
    virtual void all_to_all(const float* sent, float* received, std::size_t m, void* stream) = 0;
    /// In place all-gather: every rank's block r of `data` (size() x m floats) := rank r's block r.
    virtual void all_gather(float* data, std::size_t m, void* stream) = 0;
};

}  // namespace tricks::distributed
