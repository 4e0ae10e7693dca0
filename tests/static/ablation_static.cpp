// Compile-only checks of tricks::ablation: a grid is the cartesian product of its axes (row-major,
// every element a distinct config<Model, Recipe> type), rows keep their order, and the list
// algebra (size_v, at_t, first_t, for_each in constant evaluation) holds. If this file compiles,
// every assertion holds. The messages of invalid lists are pinned by tests/compile_fail/ablation_*.
#include <cstddef>
#include <type_traits>

#include "tricks/ablation/grid.hpp"
#include "tricks/ablation/rows.hpp"
#include "tricks/models/cifar_resnet.hpp"
#include "tricks/models/resnet.hpp"
#include "tricks/train/recipe.hpp"

namespace {

namespace ab = tricks::ablation;
namespace m = tricks::models;
namespace tw = tricks::tweak;
using tricks::recipe;
namespace lr = tricks::lr;
namespace loss = tricks::loss;

// ---- docs/design.md's grid ("What a user writes"): 4 models x 3 recipes ----------------------
using r0 = recipe<>;
using r1 = recipe<lr::cosine>;
using r2 = recipe<lr::cosine, loss::label_smoothing>;
using g = ab::grid<ab::axis<m::resnet50, m::resnet50b, m::resnet50c, m::resnet50d>, ab::axis<r0, r1, r2>>;
static_assert(ab::size_v<g> == 12);

// Row-major: the first model with every recipe, then the next model.
static_assert(std::is_same_v<ab::at_t<g, 0>, ab::config<m::resnet50, r0>>);
static_assert(std::is_same_v<ab::at_t<g, 1>, ab::config<m::resnet50, r1>>);
static_assert(std::is_same_v<ab::at_t<g, 2>, ab::config<m::resnet50, r2>>);
static_assert(std::is_same_v<ab::at_t<g, 3>, ab::config<m::resnet50b, r0>>);
static_assert(std::is_same_v<ab::at_t<g, 7>, ab::config<m::resnet50c, r1>>);
static_assert(std::is_same_v<ab::at_t<g, 11>, ab::config<m::resnet50d, r2>>);

// 12 distinct types: every element differs from every other.
template <class G, std::size_t... I>
constexpr std::size_t distinct_pairs(std::index_sequence<I...>) {
    std::size_t n = 0;
    auto row = [&]<std::size_t J>() { n += ((!std::is_same_v<ab::at_t<G, I>, ab::at_t<G, J>> ? 1u : 0u) + ...); };
    (row.template operator()<I>(), ...);
    return n;
}
static_assert(distinct_pairs<g>(std::make_index_sequence<12>{}) == 12 * 11);

// Each element is a config whose model and recipe come from the axes.
static_assert(std::is_same_v<ab::at_t<g, 5>::model, m::resnet50b>);
static_assert(std::is_same_v<ab::at_t<g, 5>::recipe, r2>);

// for_each is constexpr: it visits the 12 configurations once each, in order.
constexpr std::size_t visit_order_ok() {
    std::size_t i = 0, ok = 0;
    ab::for_each<g>([&]<class M, class R>() {
        const bool model_ok =
            (i / 3 == 0 && std::is_same_v<M, m::resnet50>) || (i / 3 == 1 && std::is_same_v<M, m::resnet50b>) ||
            (i / 3 == 2 && std::is_same_v<M, m::resnet50c>) || (i / 3 == 3 && std::is_same_v<M, m::resnet50d>);
        const bool recipe_ok = (i % 3 == 0 && std::is_same_v<R, r0>) || (i % 3 == 1 && std::is_same_v<R, r1>) ||
                               (i % 3 == 2 && std::is_same_v<R, r2>);
        ok += model_ok && recipe_ok;
        ++i;
    });
    return i == 12 && ok == 12 ? ok : 0;
}
static_assert(visit_order_ok() == 12);

// ---- rows keep the order they are written in -----------------------------------------------------
using net = m::cifar_resnet<20, tricks::in_channels<1>, tricks::classes<10>>;
using net_d = m::cifar_resnet<20, tricks::in_channels<1>, tricks::classes<10>, tw::deep_stem, tw::avg_down>;
using teacher = m::cifar_resnet<20, tricks::width<32>, tricks::in_channels<1>, tricks::classes<10>>;
using table = ab::rows<ab::config<net_d, r2>, ab::config<net, r0>, ab::config<net_d, r1>,
                       ab::config<net_d, recipe<lr::cosine, loss::distill<teacher>>>>;
static_assert(ab::size_v<table> == 4);
static_assert(std::is_same_v<ab::at_t<table, 0>, ab::config<net_d, r2>>);
static_assert(std::is_same_v<ab::at_t<table, 1>, ab::config<net, r0>>);
static_assert(std::is_same_v<ab::at_t<table, 2>, ab::config<net_d, r1>>);
static_assert(std::is_same_v<ab::at_t<table, 3>::recipe::teacher, teacher>);

// first_t keeps a prefix, as rows; a grid's prefix follows its row-major order.
static_assert(std::is_same_v<ab::first_t<table, 2>, ab::rows<ab::config<net_d, r2>, ab::config<net, r0>>>);
static_assert(std::is_same_v<ab::first_t<g, 2>, ab::rows<ab::config<m::resnet50, r0>, ab::config<m::resnet50, r1>>>);
static_assert(ab::size_v<ab::first_t<table, 0>> == 0);

// A grid of one recipe is a column of models; a grid of one model is a row of recipes.
using column = ab::grid<ab::axis<net, net_d>, ab::axis<r0>>;
static_assert(ab::size_v<column> == 2 && std::is_same_v<ab::at_t<column, 1>, ab::config<net_d, r0>>);
using line = ab::grid<ab::axis<net_d>, ab::axis<r0, r1, r2>>;
static_assert(ab::size_v<line> == 3 && std::is_same_v<ab::at_t<line, 2>, ab::config<net_d, r2>>);

// ---- what counts as the same configuration -------------------------------------------------------
// The order of model options or recipe policies does not change the experiment...
using net_d_reordered = m::cifar_resnet<20, tw::avg_down, tricks::classes<10>, tw::deep_stem, tricks::in_channels<1>>;
static_assert(ab::detail::same_network<net_d, net_d_reordered>);
static_assert(
    ab::detail::same_recipe<recipe<lr::cosine, loss::label_smoothing>, recipe<loss::label_smoothing, lr::cosine>>());
static_assert(ab::detail::same_recipe<recipe<>, recipe<tricks::precision::fp32>>());
static_assert(ab::detail::same_recipe<recipe<tricks::optim::sgd<>, lr::cosine>, recipe<lr::cosine>>());
static_assert(ab::detail::same_recipe<recipe<loss::distill<net_d>>, recipe<loss::distill<net_d_reordered>>>());
static_assert(!ab::detail::same_recipe<recipe<tricks::optim::sgd<tricks::optim::nesterov>>, recipe<>>());
static_assert(!ab::detail::same_recipe<recipe<lr::cosine, tricks::mix::mixup>, recipe<lr::cosine>>());
static_assert(!ab::detail::same_recipe<recipe<tricks::precision::fp16_mixed>, recipe<tricks::precision::bf16_mixed>>());
// ...and neither does stride_on_3x3 on basic blocks (why the cifar ablation has no ResNet-B row)...
static_assert(
    ab::detail::same_network<net, m::cifar_resnet<20, tw::stride_on_3x3, tricks::in_channels<1>, tricks::classes<10>>>);
// ...while on bottlenecks it does, and so do width, zero-gamma, the schedule and the teacher.
static_assert(!ab::detail::same_network<m::resnet50, m::resnet50b>);
static_assert(!ab::detail::same_network<
              net, m::cifar_resnet<20, tricks::width<32>, tricks::in_channels<1>, tricks::classes<10>>>);
static_assert(!ab::detail::same_network<
              net, m::cifar_resnet<20, tricks::init::zero_gamma, tricks::in_channels<1>, tricks::classes<10>>>);
static_assert(!ab::detail::same_recipe<recipe<lr::cosine>, recipe<lr::step<tricks::epochs<3>>>>());
static_assert(!ab::detail::same_recipe<recipe<lr::step<tricks::epochs<3>>>, recipe<lr::step<tricks::epochs<4>>>>());
static_assert(!ab::detail::same_recipe<recipe<lr::warmup<tricks::epochs<1>>>, recipe<lr::warmup<tricks::epochs<5>>>>());
static_assert(!ab::detail::same_recipe<recipe<loss::distill<teacher>>, recipe<loss::distill<net_d>>>());

}  // namespace
