#pragma once
// The run settings, defined once. `option_fields` lists every field of tricks::options with its
// rule on resume; the trainer adds the model, the recipe and the identity of the training data.
// Checkpoints (save), resume() and the reports (report.hpp) all read this one list, so a setting
// cannot be saved but not checked, or checked but not reported (docs/design.md, "Training").
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tricks/backend/conv_algo.hpp"
#include "tricks/train/options.hpp"

namespace tricks {

/// What resume() does when a setting differs between the checkpoint and the run that resumes it.
enum class on_resume {
    must_match,  ///< refused, unless options.resume_allow names it: the run would compute something else
    may_change,  ///< accepted: it changes how the run is executed or observed, never its numbers
    fixed,       ///< always refused: the saved state means nothing otherwise (model, recipe, data, steps per epoch)
};

[[nodiscard]] constexpr const char* to_string(on_resume r) noexcept {
    return r == on_resume::must_match ? "must match" : r == on_resume::may_change ? "may change" : "fixed";
}

/// One run setting: its name, its value as exact text (a double in the shortest form that reads
/// back to the same bits, so comparing texts compares values), the value as JSON, and its rule.
struct setting {
    std::string name, value, json;
    on_resume rule = on_resume::must_match;
};

namespace detail {

inline std::string json_escape(std::string_view s) {
    std::string o;
    for (char c : s) {
        if (c == '"' || c == '\\') o += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            o += ' ';
            continue;
        }
        o += c;
    }
    return o;
}
inline std::string json_string(std::string_view s) { return '"' + json_escape(s) + '"'; }

/// A double as the shortest text that reads back to the same bits ("0.1", "65536", "1e-05").
inline std::string exact_text(double v) {
    char buf[32];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    return ec == std::errc{} ? std::string(buf, end) : std::string("?");
}

/// The (text, JSON) forms of an option's value.
inline std::pair<std::string, std::string> setting_forms(int v) { return {std::to_string(v), std::to_string(v)}; }
inline std::pair<std::string, std::string> setting_forms(long v) { return {std::to_string(v), std::to_string(v)}; }
inline std::pair<std::string, std::string> setting_forms(std::uint64_t v) {
    return {std::to_string(v), std::to_string(v)};
}
inline std::pair<std::string, std::string> setting_forms(double v) {
    const std::string t = exact_text(v);
    return {t, v - v == 0 ? t : json_string(t)};  // JSON has no inf or nan: those become strings
}
inline std::pair<std::string, std::string> setting_forms(bool v) {
    return {v ? "true" : "false", v ? "true" : "false"};
}
inline std::pair<std::string, std::string> setting_forms(backend::conv_algo v) {
    return {backend::to_string(v), json_string(backend::to_string(v))};
}
inline std::pair<std::string, std::string> setting_forms(distributed::gradient_transport v) {
    return {distributed::to_string(v), json_string(distributed::to_string(v))};
}
inline std::pair<std::string, std::string> setting_forms(const std::filesystem::path& v) {
    return {v.empty() ? "none" : v.string(), json_string(v.string())};
}
inline std::pair<std::string, std::string> setting_forms(const std::vector<int>& v) {
    std::string t, j = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
        t += (i ? "," : "") + std::to_string(v[i]);
        j += (i ? ", " : "") + std::to_string(v[i]);
    }
    return {v.empty() ? "none" : t, j + "]"};
}
inline std::pair<std::string, std::string> setting_forms(const std::vector<std::string>& v) {
    std::string t, j = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
        t += (i ? "," : "") + v[i];
        j += (i ? ", " : "") + json_string(v[i]);
    }
    return {v.empty() ? "none" : t, j + "]"};
}
/// A communicator is recorded by its number of ranks (1 without one).
inline std::pair<std::string, std::string> setting_forms(const std::shared_ptr<distributed::communicator>& c) {
    return setting_forms(c ? c->size() : 1);
}

template <class T>
struct option_field {
    const char* name;
    T options::*member;
    on_resume rule;
};
template <class T>
constexpr option_field<T> field(const char* name, T options::*member, on_resume rule) noexcept {
    return {name, member, rule};
}

/// Converts to anything: counts an aggregate's members (the most initialisers T{...} accepts).
struct any_value {
    template <class T>
    operator T() const;  // declared only: used in unevaluated requires-expressions
};
template <class T, class... A>
constexpr std::size_t member_count() {
    if constexpr (requires { T{A{}..., any_value{}}; })
        return member_count<T, A..., any_value>();
    else
        return sizeof...(A);
}

}  // namespace detail

/// Every field of tricks::options, in declaration order, with its rule on resume:
///   must_match  the numbers the run computes with; resume() refuses a change unless
///               options.resume_allow names the setting (e.g. "epochs" to extend a run);
///   may_change  how the run is executed or watched (same bits for any thread or worker count);
///   fixed       what defines a step of the run (batch, steps per epoch): the saved position and
///               the draws keyed by the global step would mean another place in another run.
inline constexpr auto option_fields = std::tuple{
    detail::field("epochs", &options::epochs, on_resume::must_match),
    detail::field("batch", &options::batch, on_resume::fixed),
    detail::field("lr", &options::lr, on_resume::must_match),
    detail::field("momentum", &options::momentum, on_resume::must_match),
    detail::field("weight_decay", &options::weight_decay, on_resume::must_match),
    detail::field("warmup_epochs", &options::warmup_epochs, on_resume::must_match),
    detail::field("step_milestones", &options::step_milestones, on_resume::must_match),
    detail::field("label_smoothing", &options::label_smoothing, on_resume::must_match),
    detail::field("mixup_alpha", &options::mixup_alpha, on_resume::must_match),
    detail::field("distill_temperature", &options::distill_temperature, on_resume::must_match),
    detail::field("teacher_checkpoint", &options::teacher_checkpoint, on_resume::must_match),
    detail::field("loss_scale", &options::loss_scale, on_resume::must_match),
    detail::field("loss_scale_window", &options::loss_scale_window, on_resume::must_match),
    detail::field("seed", &options::seed, on_resume::must_match),
    detail::field("init_weights", &options::init_weights, on_resume::must_match),
    detail::field("init_skip_classifier", &options::init_skip_classifier, on_resume::must_match),
    detail::field("freeze_stages", &options::freeze_stages, on_resume::must_match),
    detail::field("freeze_bn_stats", &options::freeze_bn_stats, on_resume::must_match),
    detail::field("backbone_lr_scale", &options::backbone_lr_scale, on_resume::must_match),
    detail::field("threads", &options::threads, on_resume::may_change),
    detail::field("crop_padding", &options::crop_padding, on_resume::must_match),
    detail::field("horizontal_flip", &options::horizontal_flip, on_resume::must_match),
    detail::field("conv_algorithm", &options::conv_algorithm, on_resume::must_match),
    detail::field("data_workers", &options::data_workers, on_resume::may_change),
    detail::field("progress", &options::progress, on_resume::may_change),
    detail::field("checkpoint", &options::checkpoint, on_resume::may_change),
    detail::field("max_steps_per_epoch", &options::max_steps_per_epoch, on_resume::fixed),
    detail::field("stop_after_epochs", &options::stop_after_epochs, on_resume::may_change),
    detail::field("stop_after_steps", &options::stop_after_steps, on_resume::may_change),
    detail::field("world_size", &options::communicator, on_resume::fixed),  // the ranks' shards and batch norms
    detail::field("sync_batch_norm", &options::sync_batch_norm, on_resume::must_match),
    // (the same bits on every transport; the ranks agree on it when the CUDA trainer starts)
    detail::field("gradient_transport", &options::gradient_transport, on_resume::may_change),
    detail::field("resume_allow", &options::resume_allow, on_resume::may_change),
};
static_assert(std::tuple_size_v<decltype(option_fields)> == detail::member_count<options>(),
              "tricks::option_fields: every field of tricks::options needs an entry (name, member, rule on resume)");

/// The settings of `o`, in option_fields order.
inline std::vector<setting> option_settings(const options& o) {
    std::vector<setting> out;
    std::apply(
        [&](const auto&... f) {
            (out.push_back([&] {
                auto [text, json] = detail::setting_forms(o.*(f.member));
                return setting{f.name, std::move(text), std::move(json), f.rule};
            }()),
             ...);
        },
        option_fields);
    return out;
}

/// The setting called `name` in `s`, or nullptr.
[[nodiscard]] inline const setting* find_setting(const std::vector<setting>& s, std::string_view name) noexcept {
    for (const auto& x : s)
        if (x.name == name) return &x;
    return nullptr;
}

}  // namespace tricks
