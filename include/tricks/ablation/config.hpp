#pragma once
// tricks::ablation::config<Model, Recipe>: one row of an ablation study, i.e. one typed
// instantiation of trainer<Model, Recipe>. Naming the type costs nothing; completing it (which
// rows<...>, grid<...>, size_v and for_each do) checks that the pair makes sense and says what is
// wrong in a sentence.
#include <string>
#include <vector>
#include <type_traits>

namespace tricks::ablation {

namespace detail {

/// What the ablation layer needs of a model type (every tricks::models type has it).
template <class M>
concept model_type = requires {
    { M::name() } -> std::convertible_to<std::string>;
    { M::parameter_count } -> std::convertible_to<long long>;
    { M::classes } -> std::convertible_to<int>;
    { M::input_channels } -> std::convertible_to<int>;
};

/// What the ablation layer needs of a recipe type (every tricks::recipe<...> has it).
template <class R>
concept recipe_type = requires {
    { R::describe() } -> std::convertible_to<std::string>;
    { R::parts() } -> std::convertible_to<std::vector<std::string>>;
    { R::distills } -> std::convertible_to<bool>;
    typename R::teacher;
};

template <class Model, class Recipe>
constexpr bool teacher_is_model() {
    if constexpr (model_type<Model> && recipe_type<Recipe>) {
        if constexpr (Recipe::distills) return model_type<typename Recipe::teacher>;
    }
    return true;
}

template <class Model, class Recipe>
constexpr bool teacher_matches() {
    if constexpr (model_type<Model> && recipe_type<Recipe> && teacher_is_model<Model, Recipe>()) {
        if constexpr (Recipe::distills) {
            using T = typename Recipe::teacher;
            return T::classes == Model::classes && T::input_channels == Model::input_channels;
        }
    }
    return true;
}

}  // namespace detail

template <class Model, class Recipe>
struct config {
    static_assert(detail::model_type<Model>,
                  "tricks::ablation: a configuration's model is not a model type; write config<Model, Recipe> (and "
                  "grid<axis<Models...>, axis<Recipes...>>, models first) with Model a tricks::models::resnet<...> or "
                  "cifar_resnet<...>");
    static_assert(detail::recipe_type<Recipe>,
                  "tricks::ablation: a configuration's recipe is not a recipe type; write config<Model, Recipe> (and "
                  "grid<axis<Models...>, axis<Recipes...>>, recipes second) with Recipe a tricks::recipe<...>");
    static_assert(detail::teacher_is_model<Model, Recipe>(),
                  "tricks::ablation: the teacher of loss::distill<Teacher> is not a model type");
    static_assert(detail::teacher_matches<Model, Recipe>(),
                  "tricks::ablation: distillation teacher and student must have the same classes and input channels");

    using model = Model;
    using recipe = Recipe;

    /// "cifar_resnet20+deep_stem+avg_down | sgd(nesterov) + warmup + cosine + label_smoothing";
    /// a distilling recipe adds " | teacher <teacher name>".
    static std::string name() {
        std::string s = Model::name() + " | " + Recipe::describe();
        if constexpr (Recipe::distills) s += " | teacher " + Recipe::teacher::name();
        return s;
    }
};

/// The readable name of a configuration, derived from its types (Model::name(), Recipe::describe()).
template <class Model, class Recipe>
std::string config_name() {
    return config<Model, Recipe>::name();
}

}  // namespace tricks::ablation
