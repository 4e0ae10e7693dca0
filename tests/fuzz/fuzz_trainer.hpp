#pragma once
// The trainer that fuzz_checkpoint resumes from any bytes, and that make_corpus runs for one step
// to write the seed checkpoint: a ResNet-8 of width 2 on 8x8 grey images, so the seed stays small
// (~11 kB: parameters, buffers and momentum) while every section of a real checkpoint is there.
#include <cstdint>

#include "tricks/models/cifar_resnet.hpp"
#include "tricks/train/trainer.hpp"

namespace tricks_fuzz {

using tiny_net = tricks::models::cifar_resnet<8, tricks::width<2>, tricks::in_channels<1>, tricks::classes<4>,
                                              tricks::tweak::avg_down>;
using tiny_recipe = tricks::recipe<tricks::lr::warmup<tricks::epochs<1>>, tricks::lr::cosine,
                                   tricks::loss::label_smoothing, tricks::mix::mixup>;
using tiny_trainer = tricks::trainer<tiny_net, tiny_recipe>;

inline tricks::options tiny_options() {
    return {.epochs = 2, .batch = 4, .lr = 0.1, .seed = 3, .threads = 1, .progress = false, .max_steps_per_epoch = 1};
}

}  // namespace tricks_fuzz
