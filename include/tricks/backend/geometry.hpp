#pragma once
// The geometry of the layers whose kernels both backends implement: a convolution, a pooling window,
// a batch norm. The CPU kernels (backend/cpu/) and the CUDA ones (backend/cuda/) take the same
// structs, so a layer describes its shapes once.
#include <cstddef>

#include "tricks/core/error.hpp"
#include "tricks/core/shape.hpp"

namespace tricks::distributed {
class communicator;
}

namespace tricks::backend {

struct conv_geometry {
    shape4 in;      // input activations (n, h, w, cin)
    int out_c = 0;  // output channels
    int kh = 1, kw = 1, stride = 1, pad = 0;

    [[nodiscard]] constexpr int out_h() const noexcept { return window_out(in.h, kh, stride, pad); }
    [[nodiscard]] constexpr int out_w() const noexcept { return window_out(in.w, kw, stride, pad); }
    [[nodiscard]] constexpr shape4 out() const noexcept { return {in.n, out_h(), out_w(), out_c}; }
    [[nodiscard]] constexpr int k() const noexcept { return kh * kw * in.c; }
    [[nodiscard]] constexpr bool pointwise() const noexcept { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }

    void validate(const char* who) const {
        require<shape_error>(in.n > 0, who, ": batch must be > 0, got n=", in.n);
        require<shape_error>(in.c > 0 && out_c > 0, who, ": channels must be > 0, got cin=", in.c, " cout=", out_c);
        require<shape_error>(kh > 0 && kw > 0 && stride > 0 && pad >= 0, who, ": bad kernel ", kh, "x", kw, " stride ",
                             stride, " pad ", pad);
        require<shape_error>(in.h + 2 * pad >= kh && in.w + 2 * pad >= kw, who, ": kernel ", kh, "x", kw,
                             " is larger than the padded input ", in.h + 2 * pad, "x", in.w + 2 * pad, " (input ", in,
                             ", pad ", pad, ")");
    }
};

struct pool_geometry {
    shape4 in;
    int k = 2, stride = 2, pad = 0;
    bool ceil_mode = false;
    bool count_include_pad = true;  // average pool only

    [[nodiscard]] constexpr int out_h() const noexcept { return window_out(in.h, k, stride, pad, ceil_mode); }
    [[nodiscard]] constexpr int out_w() const noexcept { return window_out(in.w, k, stride, pad, ceil_mode); }
    [[nodiscard]] constexpr shape4 out() const noexcept { return {in.n, out_h(), out_w(), in.c}; }
    void validate(const char* who) const {
        require<shape_error>(in.n > 0 && in.c > 0, who, ": empty input ", in);
        require<shape_error>(k > 0 && stride > 0 && pad >= 0 && 2 * pad <= k, who, ": bad window ", k, " stride ",
                             stride, " pad ", pad, " (pad must be at most half the window)");
        require<shape_error>(in.h + 2 * pad >= k && in.w + 2 * pad >= k, who, ": window ", k,
                             " is larger than the padded input ", in.h + 2 * pad, "x", in.w + 2 * pad);
    }
};

struct batch_norm_geometry {
    std::size_t pixels = 0;  // n*h*w
    int channels = 0;
    float eps = 1e-5f;
    float momentum = 0.1f;  // running = (1 - momentum) * running + momentum * batch
    /// Non-null: synchronised statistics over these ranks (every rank calls with its shard).
    distributed::communicator* across = nullptr;
};

}  // namespace tricks::backend
