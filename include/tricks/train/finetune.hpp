#pragma once
// Fine-tuning a pretrained model (options: init_weights, init_skip_classifier, freeze_stages,
// freeze_bn_stats, backbone_lr_scale). A model's body is a sequence of parts: the stem, the
// stages (layer1, layer2, ...), the global pool and the classifier. Freezing the first n parts
// fixes the function they compute: their parameters get no update (nor weight decay, nor
// momentum), their batch norms keep their running statistics, and the backward pass stops where
// they begin. The classifier's lr is the schedule's; every other parameter's is
// backbone_lr_scale times it (He et al. 2019 fine-tune on detection/segmentation with the
// pretrained backbone; a smaller backbone lr is the usual transfer recipe).
#include <cmath>
#include <cstddef>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tricks/core/error.hpp"
#include "tricks/io/torch_weights.hpp"
#include "tricks/nn/visit.hpp"
#include "tricks/train/options.hpp"

namespace tricks {

/// The parts of a model's body: for each parameter (in parameters() order) the index of the part
/// it belongs to, and which part is the classifier.
struct body_parts {
    int count = 0;
    int classifier = -1;  // the body's linear layer, if any
    std::vector<int> part_of_parameter;
};

template <class Model>
body_parts parts_of(Model& m) {
    using Body = typename Model::body_type;
    body_parts p;
    p.count = static_cast<int>(Body::size);
    int i = 0;
    std::apply(
        [&](auto&... part) {
            (([&](auto& l) {
                 if constexpr (nn::is_linear_v<std::remove_cvref_t<decltype(l)>>) p.classifier = i;
                 l.for_each_parameter([&](nn::parameter&) { p.part_of_parameter.push_back(i); });
                 ++i;
             }(part)),
             ...);
        },
        static_cast<Body&>(m).layers);
    return p;
}

/// Checks the fine-tuning options against the model (errors name the option and the value).
template <class Model>
void check_finetune_options(Model& m, const options& o) {
    const body_parts p = parts_of(m);
    const int max_frozen = p.classifier >= 0 ? p.classifier : p.count;
    require<error>(o.freeze_stages >= 0 && o.freeze_stages <= max_frozen,
                   "tricks::trainer: options.freeze_stages = ", o.freeze_stages, "; ", Model::name(), " has ",
                   max_frozen, " parts before its classifier (stem, stages, global pool): expected 0 .. ", max_frozen);
    require<error>(std::isfinite(o.backbone_lr_scale) && o.backbone_lr_scale >= 0,
                   "tricks::trainer: options.backbone_lr_scale = ", o.backbone_lr_scale,
                   "; expected a finite value >= 0");
}

/// The lr multiplier of each parameter (parameters() order): 0 for a frozen part, 1 for the
/// classifier, backbone_lr_scale for the rest.
template <class Model>
std::vector<float> finetune_lr_scales(Model& m, const options& o) {
    const body_parts p = parts_of(m);
    std::vector<float> s;
    s.reserve(p.part_of_parameter.size());
    for (int part : p.part_of_parameter)
        s.push_back(part < o.freeze_stages ? 0.f
                    : part == p.classifier ? 1.f
                                           : static_cast<float>(o.backbone_lr_scale));
    return s;
}

/// Loads options.init_weights (the trainer's fit() does, on a fresh run only).
template <class Model>
void load_init_weights(Model& m, const options& o) {
    require<error>(!o.init_skip_classifier || !o.init_weights.empty(),
                   "tricks::trainer: options.init_skip_classifier is set but options.init_weights is empty");
    if (!o.init_weights.empty()) io::load_torch_weights(m, o.init_weights, {.skip_classifier = o.init_skip_classifier});
}

/// Checks the options and freezes batch-norm statistics: every batch norm under freeze_bn_stats,
/// those of the frozen parts otherwise (the trainer's constructor).
template <class Model>
void prepare_finetune(Model& m, const options& o) {
    check_finetune_options(m, o);
    using Body = typename Model::body_type;
    int i = 0;
    std::apply(
        [&](auto&... part) {
            (([&](auto& l) {
                 const bool frozen = o.freeze_bn_stats || i < o.freeze_stages;
                 nn::visit_leaves(l, [&](auto& leaf) {
                     if constexpr (nn::is_batch_norm_v<std::remove_cvref_t<decltype(leaf)>>) leaf.frozen_stats = frozen;
                 });
                 ++i;
             }(part)),
             ...);
        },
        static_cast<Body&>(m).layers);
}

}  // namespace tricks
