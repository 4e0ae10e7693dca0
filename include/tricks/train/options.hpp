#pragma once
// Run-time numbers of a training run. Defaults are the paper's where the paper gives one
// (He et al. 2019, §3-5); a negative value means "take the recipe type's default".
//
// A number belongs to a policy type (mixup_alpha to mix::mixup, label_smoothing to
// loss::label_smoothing, distill_temperature and teacher_checkpoint to loss::distill<Teacher>,
// loss_scale and loss_scale_window to precision::fp16_mixed, warmup_epochs to lr::warmup,
// step_milestones to lr::step). A number is "given" when it differs from its value in a default
// options{}; fit() and resume() refuse a given number whose policy the recipe lacks (it would be
// silently ignored), naming the policy to add. A default value is never an error, so one options
// object serves recipes with and without the policy.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tricks/backend/conv_algo.hpp"
#include "tricks/distributed/communicator.hpp"

namespace tricks {

struct options {
    int epochs = 10;
    int batch = 128;
    double lr = 0.1;                             // base lr; the lr at batch 256 under lr::linear_scaling (paper: 0.1)
    double momentum = 0.9;                       // paper §2.1
    double weight_decay = 1e-4;                  // paper §2.1
    int warmup_epochs = -1;                      // -1: lr::warmup<epochs<m>>'s m
    std::vector<int> step_milestones{};          // empty: lr::step<epochs<e>...>'s e; else these epochs
                                                 // (increasing, >= 1; only with lr::step in the recipe)
    double label_smoothing = 0.1;                // epsilon, paper §5.2
    double mixup_alpha = 0.2;                    // paper §5.4
    double distill_temperature = 20;             // paper §5.3
    std::filesystem::path teacher_checkpoint{};  // loss::distill<Teacher>: the teacher's weights
    double loss_scale = 65536;                   // fp16_mixed: initial dynamic loss scale
    int loss_scale_window = 2000;                // fp16_mixed: clean steps before the scale doubles
    std::uint64_t seed = 1;
    // Fine-tuning (docs/design.md, "Transfer"):
    std::filesystem::path init_weights{};  // safetensors with PyTorch's names (io/torch_weights.hpp: torchvision's
                                           // or timm's ResNets), loaded over the seeded initialisation
    bool init_skip_classifier = false;     // init_weights without fc.weight/fc.bias: a head for another number of
                                           // classes keeps its fresh initialisation
    int freeze_stages = 0;                 // the first n parts of the body (1: the stem; 2: stem + layer1; ...) are
                                           // fixed: parameters not updated, batch-norm statistics not updated, no
                                           // backward through them. All parts but the classifier: feature extraction
    bool freeze_bn_stats = false;          // every batch norm trains with its running statistics, unchanged
    double backbone_lr_scale = 1;          // lr of every parameter but the classifier's = this x the scheduled lr
    int threads = 0;                       // 0: OpenMP's default; > 0 sets the process-wide OpenMP thread count
    int crop_padding = 2;                  // augmentation: random crop with zero padding
    bool horizontal_flip = true;
    backend::conv_algo conv_algorithm = backend::conv_algo::winograd;  // CPU convolutions (backend/conv_algo.hpp);
                                                                       // direct: no Winograd (A/B comparisons)
    int data_workers = 0;                // loader threads; 0: one for in-memory data, all cores for
                                         // sources that decode files (data::folder_source)
    bool progress = true;                // progress on stderr
    std::filesystem::path checkpoint{};  // if set: written (atomically) at the end of every epoch
    int max_steps_per_epoch = 0;         // 0: the whole epoch (tests and smoke runs use fewer)
    int stop_after_epochs = 0;           // 0: run all epochs; >0: fit() returns once this many epochs are
                                         // done, counting resumed ones (interruption tests, time-boxed runs)
    long stop_after_steps = 0;           // 0: no limit; >0: fit() returns once this many training steps are
                                         // done in all (counting resumed ones), after writing the checkpoint,
                                         // mid-epoch if it falls inside one (tests, time-boxed runs)
    /// Data parallelism (docs/design.md, "Data-parallel training"): the processes that train this
    /// model together, e.g. a distributed::mpi_world under mpirun. Null (or one rank): this process
    /// alone. With n ranks every rank takes batch / n images of each global batch of `batch`
    /// images, gradients are summed in a fixed order, every rank applies the same update, and only
    /// rank 0 writes checkpoints and shows progress.
    std::shared_ptr<distributed::communicator> communicator{};
    /// With several ranks: synchronised batch norm, every batch norm normalising with the statistics
    /// of the whole global batch (its sums added over the ranks, as PyTorch's SyncBatchNorm), so
    /// the run computes what one process with the global batch would, up to rounding. Off: each rank
    /// normalises over its own batch / n images (PyTorch DDP's default). No effect on one rank.
    bool sync_batch_norm = false;
    /// With several ranks, backend::cuda only: how gradients travel between the ranks' devices
    /// (distributed/device_exchange.hpp): automatic (NCCL when the build has it, else a CUDA-aware
    /// MPI, else host staging), host, nccl or mpi. Every transport adds in rank order: the same bits.
    distributed::gradient_transport gradient_transport = distributed::gradient_transport::automatic;
    /// Settings that resume() lets differ from the checkpoint's, by name (train/settings.hpp): e.g.
    /// {"epochs"} to extend a finished run (the schedule then spans the new length from here on).
    /// Only settings whose rule is on_resume::must_match can be named; the others either may change
    /// anyway (threads, progress, ...) or never can (model, recipe, data, batch).
    std::vector<std::string> resume_allow{};
};

}  // namespace tricks
