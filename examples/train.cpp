// The README's main job, and any model of the table on IDX files or an image folder: trains
// ResNet-20-D (deep stem, avg-down shortcut, zero-gamma) on Fashion-MNIST with the paper's
// efficient-training and refinement tricks, shows progress, and ends with the test accuracy,
// metrics (CSV, JSON), a Markdown report and the final checkpoint.
// `--device cuda` trains on a GPU when the build has the CUDA backend (train_cuda.cu). SIGINT or
// SIGTERM (Ctrl-C) stops it after the current step with a checkpoint to --resume from; the exit
// status is then 130 or 143 (128 + signal), a second signal quits at once.
#include "train_common.hpp"

#ifdef TRICKS_TRAIN_WITH_MPI
#include <tricks/distributed/mpi.hpp>
#endif

namespace train_example {

int run_cpu(cli& c) {
    switch (model_part(c.model)) {
        case 0:
            return run_part0(c);
        case 1:
            return run_part1(c);
        case 2:
            return run_part2(c);
        case 3:
            return run_part3(c);
        case 4:
            return run_part4(c);
        default:
            fail("--model: '" + c.model + "' is not a model of the table");
    }
}

#ifndef TRICKS_TRAIN_WITH_CUDA
int run_cuda(cli&) {
    fail(
        "--device cuda: this build has no CUDA backend (CMake found no nvcc and cuDNN when it was configured; "
        "see README, GPU section)");
}
#endif

}  // namespace train_example

int main(int argc, char** argv) {
    using namespace train_example;
    cli c = parse(argc, argv);
#ifdef TRICKS_TRAIN_WITH_MPI
    // Under mpirun every process is a rank of one data-parallel run (README, "Data-parallel training").
    std::shared_ptr<t::distributed::mpi_world> world;
    if (t::distributed::mpi_world::launched()) {
        world = std::make_shared<t::distributed::mpi_world>(&argc, &argv);
        if (world->size() > 1) c.opt.communicator = world;
    }
    // A rank that fails ends every rank with its reason: the others would wait for it forever.
    const auto failed = [&](const std::string& why) {
        if (world && world->size() > 1) world->abort("train: " + why, 1);
        std::fprintf(stderr, "train: %s\n", why.c_str());
    };
#else
    const auto failed = [](const std::string& why) { std::fprintf(stderr, "train: %s\n", why.c_str()); };
#endif
    try {
        return c.cuda ? run_cuda(c) : run_cpu(c);
    } catch (const t::interrupted& e) {  // SIGINT/SIGTERM: the checkpoint is written; the shell's status
        std::fprintf(stderr, "train: to continue, run the same command with --resume %s\n",
                     (c.out_dir / "model.ckpt").string().c_str());
        return 128 + e.signal;
    } catch (const t::error& e) {
        std::string why = e.what();
        if (std::strstr(e.what(), "options.resume_allow"))
            why += "\ntrain: (on the command line: --allow-change NAME[,NAME])";
        failed(why);
        return 1;
    } catch (const std::exception& e) {  // e.g. --out names an existing file (filesystem_error)
        failed(e.what());
        return 1;
    }
}
