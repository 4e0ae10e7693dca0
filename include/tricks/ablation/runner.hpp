#pragma once
// Runs one configuration of an ablation: a fresh trainer<Model, Recipe> per seed, reduced to the
// numbers a table and a learning curve need. Called from inside for_each:
//
//   for_each<study>([&]<class Net, class Recipe>() {
//       result r = describe<Net, Recipe>();
//       for (std::uint64_t s = 1; s <= seeds; ++s) r.runs.push_back(run_seed<Net, Recipe>(opt, s, train, test));
//   });
#include <chrono>
#include <cstdint>
#include <utility>

#include "tricks/ablation/config.hpp"
#include "tricks/ablation/result.hpp"
#include "tricks/data/dataset.hpp"
#include "tricks/models/introspection.hpp"
#include "tricks/train/options.hpp"
#include "tricks/train/trainer.hpp"

namespace tricks::ablation {

/// A result with the facts of config<Model, Recipe> and no runs yet. MACs at height x width
/// (28 x 28: Fashion-MNIST).
template <class Model, class Recipe>
result describe(int height = 28, int width = 28) {
    static_assert(sizeof(config<Model, Recipe>) > 0);  // the configuration's checks
    result r;
    r.name = config_name<Model, Recipe>();
    r.model = Model::name();
    r.recipe = Recipe::describe();
    if constexpr (Recipe::distills) r.teacher = Recipe::teacher::name();
    if constexpr (requires { Model::parts(); })
        r.parts = Model::parts();
    else
        r.parts = {Model::name()};  // a model type of the user's with a name only: one word
    for (auto& p : Recipe::parts()) r.parts.push_back(std::move(p));
    r.parameters = parameter_count_v<Model>;
    r.macs = macs<Model>(height, width);
    return r;
}

/// Trains trainer<Model, Recipe> with options `o` and seed `seed`, and returns the run's numbers.
/// Throughput is the image-weighted mean over epochs (total images / total training time).
template <class Model, class Recipe>
seed_run run_seed(options o, std::uint64_t seed, const data::dataset& train, const data::dataset& test) {
    static_assert(sizeof(config<Model, Recipe>) > 0);
    o.seed = seed;
    const auto t0 = std::chrono::steady_clock::now();
    trainer<Model, Recipe> t(o);
    const history h = t.fit(train, test);
    seed_run s;
    s.seed = seed;
    s.top1 = h.final_top1();
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double inverse_rates = 0;  // every epoch trains the same number of images
    for (const auto& e : h.epochs) {
        s.top1_curve.push_back(e.test_top1);
        s.train_loss_curve.push_back(e.train_loss);
        inverse_rates += e.images_per_s > 0 ? 1.0 / e.images_per_s : 0.0;
    }
    s.images_per_s = inverse_rates > 0 ? static_cast<double>(h.epochs.size()) / inverse_rates : 0.0;
    return s;
}

}  // namespace tricks::ablation
