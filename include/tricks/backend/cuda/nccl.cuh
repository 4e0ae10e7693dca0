#pragma once
// gpu::nccl_exchange: distributed::device_exchange over NCCL, for the CUDA trainer's gradients
// (docs/design.md, "Data-parallel training"). Needs <nccl.h> and libnccl: the CMake target
// tricks::cuda defines TRICKS_HAVE_NCCL and links NCCL when it finds both.
//
// NCCL is the data mover only. Its all-reduce adds in an order of its choosing (ring or tree, by
// message size and topology), so the gradients are not summed by NCCL: an all-to-all (grouped
// ncclSend/ncclRecv) hands each rank every rank's piece of its block, the trainer's kernel adds the
// pieces in rank order, and an ncclAllGather returns every summed block to every rank. The bytes
// moved are a ring all-reduce's, and the bits are those of the host path's communicator::sum().
#include <nccl.h>

#include <cstring>
#include <exception>
#include <string>

#include "tricks/backend/cuda/error.cuh"
#include "tricks/distributed/communicator.hpp"
#include "tricks/distributed/device_exchange.hpp"

namespace tricks::backend::gpu {

namespace detail {
inline void check(ncclResult_t s, const char* call, const char* file, int line) {
    if (s != ncclSuccess) throw_call_failed("NCCL", call, static_cast<long long>(s), ncclGetErrorString(s), file, line);
}
}  // namespace detail

class nccl_exchange final : public distributed::device_exchange {
public:
    /// Collective over `world`: rank 0 makes the NCCL id, world.broadcast() hands it to every
    /// rank, and each rank joins with the current CUDA device (one device per rank).
    explicit nccl_exchange(distributed::communicator& world) : rank_(world.rank()), size_(world.size()) {
        ncclUniqueId id{};
        std::string bytes;
        if (rank_ == 0) {
            TRICKS_CUDA_CHECK(ncclGetUniqueId(&id));
            bytes.assign(id.internal, sizeof id.internal);
        }
        world.broadcast(bytes, 0);
        require<cuda_error>(bytes.size() == sizeof id.internal, "tricks::gpu::nccl_exchange: rank ", rank_,
                            " received an NCCL id of ", bytes.size(), " bytes, expected ", sizeof id.internal);
        std::memcpy(id.internal, bytes.data(), sizeof id.internal);
        TRICKS_CUDA_CHECK(ncclCommInitRank(&comm_, size_, id, rank_));
    }
    nccl_exchange(const nccl_exchange&) = delete;
    nccl_exchange& operator=(const nccl_exchange&) = delete;
    /// Destroyed while an exception propagates, it aborts the NCCL communicator (its operations
    /// in flight end instead of waiting for peers that will not come).
    ~nccl_exchange() override {
        if (!comm_) return;
        if (std::uncaught_exceptions() > 0)
            (void)ncclCommAbort(comm_);
        else
            (void)ncclCommDestroy(comm_);
    }

    [[nodiscard]] int rank() const noexcept override { return rank_; }
    [[nodiscard]] int size() const noexcept override { return size_; }
    [[nodiscard]] const char* name() const noexcept override { return "nccl"; }
    [[nodiscard]] bool stream_ordered() const noexcept override { return true; }

    void all_to_all(const float* sent, float* received, std::size_t m, void* stream) override {
        const auto s = static_cast<cudaStream_t>(stream);
        TRICKS_CUDA_CHECK(ncclGroupStart());
        for (int r = 0; r < size_; ++r) {
            const auto at = static_cast<std::size_t>(r) * m;
            if (r == rank_) {
                TRICKS_CUDA_CHECK(
                    cudaMemcpyAsync(received + at, sent + at, m * sizeof(float), cudaMemcpyDeviceToDevice, s));
                continue;
            }
            TRICKS_CUDA_CHECK(ncclSend(sent + at, m, ncclFloat32, r, comm_, s));
            TRICKS_CUDA_CHECK(ncclRecv(received + at, m, ncclFloat32, r, comm_, s));
        }
        TRICKS_CUDA_CHECK(ncclGroupEnd());
    }
    void all_gather(float* data, std::size_t m, void* stream) override {
        TRICKS_CUDA_CHECK(ncclAllGather(data + static_cast<std::size_t>(rank_) * m, data, m, ncclFloat32, comm_,
                                        static_cast<cudaStream_t>(stream)));
    }

private:
    int rank_ = 0, size_ = 1;
    ncclComm_t comm_ = nullptr;
};

}  // namespace tricks::backend::gpu
