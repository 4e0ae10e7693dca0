#pragma once
// tricks::error — the one exception type every run-time input error derives from.
// Messages name what was wrong (file, field, expected and actual value), never just "bad input".
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tricks {

struct error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// A tensor/layer received a shape it cannot work with.
struct shape_error : error {
    using error::error;
};

/// A data file (IDX, checkpoint, ...) is missing, truncated or malformed.
struct data_error : error {
    using error::error;
};

/// Training diverged (non-finite loss under fp32) or a schedule/option is inconsistent.
struct training_error : error {
    using error::error;
};

namespace detail {
template <class... Args>
std::string cat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}
}  // namespace detail

/// Throws E with the concatenation of args when cond is false.
template <class E = error, class... Args>
void require(bool cond, Args&&... args) {
    if (!cond) throw E(detail::cat(std::forward<Args>(args)...));
}

}  // namespace tricks
