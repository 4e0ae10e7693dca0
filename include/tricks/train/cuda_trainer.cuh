#pragma once
// trainer<Model, Recipe, backend::cuda>: the same model and recipe types, trained on a CUDA device.
//
//   #include <tricks/cuda.cuh>          // in a .cu file compiled by nvcc, linked with tricks::cuda
//   auto t = tricks::trainer<net, recipe, tricks::backend::cuda>{tricks::options{.epochs = 5}};
//   auto h = t.fit(train, test);
//
// What runs where:
//   host:   data loading and augmentation, targets (label smoothing), mixup of inputs and targets,
//           the lr schedule, evaluation bookkeeping, checkpoints (shared with the CPU trainer,
//           train/trainer.hpp's trainer_base; a checkpoint is the same file on either backend);
//   device: forward and backward of every layer (cuDNN convolutions, batch norm and pooling, cuBLAS
//           classifier), softmax cross-entropy against the soft targets, the distillation term
//           (teacher forward in FP32 on the device), the overflow check and dynamic loss scale
//           (precision::fp16_mixed), and one fused SGD/Nesterov/weight-decay launch per element type
//           over FP32 master weights that also writes the FP16 copy the layers read.
// precision::fp16_mixed stores activations, weights and gradients in __half (tensor cores, FP32
// accumulation); precision::fp32 runs the same kernels in float. precision::bf16_mixed has no CUDA
// path yet (a compile-time error says so).
//
// Per step the host waits once, to read the loss for the progress line and the fp32 non-finite
// check (8 bytes). step_on_device() is the step without that wait, for benchmarks that keep their
// batches on the device.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tricks/backend/cuda/backend.cuh"
#include "tricks/backend/cuda/model.cuh"
#ifdef TRICKS_HAVE_NCCL
#include "tricks/backend/cuda/nccl.cuh"
#endif
#include "tricks/train/trainer.hpp"

namespace tricks {

template <class Model, class Recipe>
class trainer<Model, Recipe, backend::cuda>
    : public detail::trainer_base<trainer<Model, Recipe, backend::cuda>, Model, Recipe> {
    static_assert(!Recipe::bf16,
                  "tricks::trainer<..., backend::cuda>: precision::bf16_mixed has no CUDA path yet; use "
                  "precision::fp16_mixed or precision::fp32");
    using base = detail::trainer_base<trainer, Model, Recipe>;
    friend base;

public:
    /// The device element type of activations, weights and gradients.
    using element = std::conditional_t<Recipe::fp16, __half, float>;
    /// The teacher's type under loss::distill<Teacher> (the model type otherwise: never built then).
    using teacher_model = std::conditional_t<Recipe::distills, typename base::teacher_type, Model>;

    /// gpu_options: cuDNN algorithm search (benchmark), determinism, TF32, workspace limit.
    /// With several ranks (options.communicator) on a machine with several GPUs, rank r takes device
    /// (local rank) mod (device count); the local rank comes from Open MPI's or MPICH's environment,
    /// else the rank.
    explicit trainer(options o = {}, backend::gpu::context_options gpu_options = {})
        : base(std::move(o)), ctx_(std::make_unique<backend::gpu::context>(gpu_options, rank_device())) {
        require<error>(backend::cuda::available(), "tricks::trainer<..., backend::cuda>: no CUDA device is available");
        const options plain;
        for (const auto& [given, name] :
             {std::pair{this->opt_.freeze_stages != plain.freeze_stages, "freeze_stages"},
              std::pair{this->opt_.freeze_bn_stats != plain.freeze_bn_stats, "freeze_bn_stats"},
              std::pair{this->opt_.backbone_lr_scale != plain.backbone_lr_scale, "backbone_lr_scale"}})
            require<error>(!given, "tricks::trainer<..., backend::cuda>: options.", name,
                           " is not supported by the CUDA backend yet (the CPU trainer has it); init_weights is");
        require<error>(!this->opt_.sync_batch_norm || this->world_size() == 1,
                       "tricks::trainer<..., backend::cuda>: options.sync_batch_norm (batch-norm statistics over the ",
                       this->world_size(),
                       " ranks) is not supported by the CUDA backend yet; per-rank batch norm (the default) is, and "
                       "the CPU trainer has both");
        net_ = std::make_unique<backend::gpu::device_model<Model, element>>(*this->model_, *ctx_, &decays);
        velocity_.resize(this->params_.size());
        for (std::size_t i = 0; i < this->params_.size(); ++i) {
            velocity_[i].resize(this->params_[i]->value.shape());
            velocity_[i].zero();
        }
        if constexpr (Recipe::fp16)
            scale_.emplace(static_cast<float>(this->opt_.loss_scale), this->opt_.loss_scale_window);
    }

    /// The host model, made current first (the device holds the live weights during training).
    Model& model() {
        sync_to_host();
        return *this->model_;
    }
    backend::gpu::context& gpu() noexcept { return *ctx_; }
    backend::gpu::device_model<Model, element>& device_net() noexcept { return *net_; }

    /// Chooses every cuDNN algorithm for batches of shape `in` now (cudnnFind outside timed steps).
    void prepare(shape4 in) { net_->prepare(in); }

    /// One training step on a batch already on the device: x (n, h, w, c) in the element type,
    /// q (n x classes) soft targets, and the lr. Queued on the stream, no host wait. Returns the
    /// device address of the mean loss (valid until the next step).
    const double* step_on_device(const backend::gpu::device_tensor<element>& x, const float* q, double lr) {
        namespace g = backend::gpu;
        const int n = x.shape.n, K = Model::classes;
        const float* scale = scale_ ? scale_->scale() : nullptr;
        const auto& z = net_->forward(x, nn::mode::train);
        dz_.resize(z.shape);
        const double* loss = nullptr;
        {
            const auto timed = ctx_->time("loss");
            loss =
                g::softmax_cross_entropy_async<element>(n, K, z.data(), q, dz_.data(), nullptr, nullptr, scale, *ctx_);
        }
        distill_loss_ = nullptr;
        if constexpr (Recipe::distills) {
            // The teacher sees the same (mixed, storage-rounded) input in FP32, as on the CPU.
            teacher_x_.resize(x.shape);
            g::cast<element, float>(x.size(), x.data(), teacher_x_.data(), *ctx_);
            const auto& r = teacher_net_->forward(teacher_x_, nn::mode::eval);
            const auto timed = ctx_->time("loss");
            distill_loss_ = g::distillation_term_async<element, float>(
                n, K, z.data(), r.data(), static_cast<float>(this->opt_.distill_temperature), dz_.data(), scale, *ctx_);
        }
        net_->backward(dz_);
        if (this->world_size() > 1) {  // the mean gradient of the global batch, on every rank
            // Timed between two waits for the device, so communication_seconds() is the exchange's
            // own time on every transport (queued on the stream with NCCL).
            if (!transport_) start_transport();
            ctx_->synchronize();
            const auto t0 = std::chrono::steady_clock::now();
            if (exchange_) {
                net_->mean_over_ranks(*exchange_);
                ctx_->synchronize();
            } else {
                net_->mean_over_ranks(*this->opt_.communicator);
            }
            comm_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        const g::sgd_hyper h{static_cast<float>(lr), static_cast<float>(this->opt_.momentum),
                             static_cast<float>(this->opt_.weight_decay), Recipe::nesterov};
        if (scale_) {
            net_->check_gradients(*scale_);
            net_->sgd_step(h, scale_->state());
            scale_->update(*ctx_);
        } else {
            net_->sgd_step(h, nullptr);
        }
        return loss;
    }

    /// Wall seconds spent moving and summing the gradients over the ranks, from the end of the
    /// backward pass on the device to the summed gradients on the device (waiting for the other
    /// ranks included); 0 with one rank.
    [[nodiscard]] double communication_seconds() const noexcept { return comm_seconds_; }

    /// How the gradients travel between the ranks ("host", "nccl" or "mpi"), once the first
    /// data-parallel step has chosen (options.gradient_transport); null before and with one rank.
    [[nodiscard]] const char* gradient_transport() const noexcept { return transport_; }

    /// With profiling on (TRICKS_GPU_PROFILE=1 or context_options::profile): GPU time per kind of
    /// call, and the host's time per step spent uploading batches, queueing work and waiting for
    /// the device.
    std::string profile_report() {
        char line[200];
        std::snprintf(line, sizeof line,
                      "  host per step (%ld steps): upload %.3f ms, queue %.3f ms, wait for the device %.3f ms\n",
                      host_.steps, host_.upload * 1e3 / std::max(host_.steps, 1L),
                      host_.queue * 1e3 / std::max(host_.steps, 1L), host_.wait * 1e3 / std::max(host_.steps, 1L));
        return ctx_->profile().report() + line;
    }

private:
    /// The device this rank trains on (-1: the current one).
    int rank_device() const {
        if (this->world_size() == 1) return -1;
        const int count = backend::gpu::device_count();
        if (count <= 1) return -1;
        int local = this->world_rank();
        for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"})
            if (const char* v = std::getenv(name)) {
                local = std::atoi(v);
                break;
            }
        return local % count;
    }
    /// Resolves options.gradient_transport, checks that every rank resolved it alike (they would
    /// otherwise call different collectives and wait for each other forever), and joins it.
    /// Collective: every rank's first data-parallel step calls it.
    void start_transport() {
        using gt = distributed::gradient_transport;
        auto& world = *this->opt_.communicator;
        const gt want = this->opt_.gradient_transport;
#ifdef TRICKS_HAVE_NCCL
        constexpr bool built_with_nccl = true;
#else
        constexpr bool built_with_nccl = false;
#endif
        const char* why = nullptr;
        gt chosen = gt::host;
        if (want == gt::nccl || (want == gt::automatic && built_with_nccl))
            chosen = built_with_nccl ? gt::nccl
                                     : (why =
                                            "this build has no NCCL (tricks::cuda defines TRICKS_HAVE_NCCL "
                                            "when CMake finds nccl.h and libnccl)",
                                        gt::nccl);
        else if (want == gt::mpi || (want == gt::automatic && world.moves_device_memory()))
            chosen = world.moves_device_memory() ? gt::mpi
                                                 : (why =
                                                        "the communicator cannot move device memory (an "
                                                        "MPI built without CUDA support)",
                                                    gt::mpi);
        std::string mine = distributed::to_string(chosen), first = mine;
        world.broadcast(first, 0);
        double refused = (why != nullptr || first != mine) ? 1.0 : 0.0;
        world.sum(std::span<double>(&refused, 1));
        if (refused != 0) {
            const std::string head =
                tricks::detail::cat("tricks::trainer<..., backend::cuda>: rank ", world.rank(), " of ", world.size(),
                                    ": options.gradient_transport = ", distributed::to_string(want), ", ");
            throw error(why ? tricks::detail::cat(head, "but ", why, "; use host (any MPI) or auto")
                        : first != mine
                            ? tricks::detail::cat(head, "which is ", mine, " here and ", first,
                                                  " on rank 0; every rank needs the same transport")
                            : tricks::detail::cat(head, "resolved to ", mine, ", but ", refused,
                                                  " other rank(s) could not use it (each names its reason)"));
        }
        if (chosen == gt::mpi) exchange_ = world.device_memory_exchange();
#ifdef TRICKS_HAVE_NCCL
        if (chosen == gt::nccl) exchange_ = std::make_shared<backend::gpu::nccl_exchange>(world);
#endif
        transport_ = distributed::to_string(chosen);
    }
    /// The recipe's weight-decay rule by parameter role (train/optim.hpp's, shared with the CPU).
    static bool decays(nn::role r) noexcept { return tricks::decays(r, Recipe::no_bias_decay); }

    double train_step(tensor<float>& x, const tensor<float>& q, double lr, long t, int e, long s) {
        using clock = std::chrono::steady_clock;
        const auto t0 = clock::now();
        upload_input(x);
        q_.upload(std::span<const float>(q.data(), q.size()));
        const auto t1 = clock::now();
        const double* dloss = step_on_device(x_, q_.data(), lr);
        double loss = 0, dist = 0;
        TRICKS_CUDA_CHECK(cudaMemcpyAsync(&loss, dloss, sizeof loss, cudaMemcpyDeviceToHost, ctx_->stream()));
        if (distill_loss_)
            TRICKS_CUDA_CHECK(
                cudaMemcpyAsync(&dist, distill_loss_, sizeof dist, cudaMemcpyDeviceToHost, ctx_->stream()));
        const auto t2 = clock::now();
        ctx_->synchronize();
        const auto t3 = clock::now();
        host_.upload += std::chrono::duration<double>(t1 - t0).count();
        host_.queue += std::chrono::duration<double>(t2 - t1).count();
        host_.wait += std::chrono::duration<double>(t3 - t2).count();
        ++host_.steps;
        const double T = this->opt_.distill_temperature;
        loss += T * T * dist;
        loss = this->mean_over_ranks(loss);  // every rank judges the same loss
        if (!std::isfinite(loss) && !Recipe::fp16) base::non_finite_loss(loss, e, s, t, lr);
        return loss;
    }

    void eval_begin() {}  // the device model is the one trained: nothing to load
    const float* eval_logits(tensor<float>& x) {
        upload_input(x);
        const auto& z = net_->forward(x_, nn::mode::eval);
        const auto timed = ctx_->time("eval logits to host");
        logits_.resize(z.size());
        if constexpr (std::is_same_v<element, float>) {
            z.buffer.download(std::span<float>(logits_.data(), z.size()));
        } else {
            logits_f_.resize(z.size());
            backend::gpu::cast<element, float>(z.size(), z.data(), logits_f_.data(), *ctx_);
            logits_f_.download(std::span<float>(logits_.data(), z.size()));
        }
        return logits_.data();
    }

    /// Host batch (float) -> device, in the element type (rounded once, like ctx.round on the CPU).
    void upload_input(const tensor<float>& x) {
        const auto timed = ctx_->time("input cast");
        x_.resize(x.shape());
        if constexpr (std::is_same_v<element, float>) {  // straight into the input tensor
            TRICKS_CUDA_CHECK(cudaMemcpy(x_.data(), x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice));
        } else {
            staging_.upload(std::span<const float>(x.data(), x.size()));
            backend::gpu::cast<float, element>(x.size(), staging_.data(), x_.data(), *ctx_);
        }
    }

    void sync_to_host() {
        net_->download(&velocity_);
        sync_scaler();
    }
    void sync_to_device() {
        net_->upload(&velocity_);
        if constexpr (Recipe::fp16) {
            scale_.emplace(static_cast<float>(this->scaler_.scale), this->scaler_.window);
            scale_->restore(this->scaler_.clean_steps, this->scaler_.skipped);
        }
    }
    void teacher_loaded() {
        if constexpr (Recipe::distills)
            teacher_net_ = std::make_unique<backend::gpu::device_model<teacher_model, float>>(*this->teacher_, *ctx_);
    }
    void sync_scaler() {
        if (!scale_) return;
        const auto st = scale_->read(*ctx_);
        this->scaler_.scale = st.scale;
        this->scaler_.clean_steps = st.clean_steps;
        this->scaler_.skipped = st.skipped;
    }
    std::vector<tensor<float>>& velocity() noexcept { return velocity_; }

    std::unique_ptr<backend::gpu::context> ctx_;
    std::unique_ptr<backend::gpu::device_model<Model, element>> net_;
    std::unique_ptr<backend::gpu::device_model<teacher_model, float>> teacher_net_;
    std::optional<backend::gpu::dynamic_loss_scale> scale_;
    std::vector<tensor<float>> velocity_;  // host mirror of the device momentum (checkpoints)
    backend::gpu::device_buffer<float> staging_, q_, logits_f_;
    backend::gpu::device_tensor<element> x_, dz_;
    backend::gpu::device_tensor<float> teacher_x_;
    const double* distill_loss_ = nullptr;
    double comm_seconds_ = 0;
    std::shared_ptr<distributed::device_exchange> exchange_;  // NCCL or CUDA-aware MPI; null: host staging
    const char* transport_ = nullptr;                         // start_transport()'s choice
    std::vector<float> logits_;
    struct {
        double upload = 0, queue = 0, wait = 0;
        long steps = 0;
    } host_;
};

}  // namespace tricks
