// CPU kernels (backend/cpu/*.hpp) against independent float64 references written from the
// mathematical definitions, finite-difference gradient checks (docs/design.md, "Tests"), shape errors, and
// bit-for-bit determinism across OpenMP thread counts.
//
// Tolerances. The kernels compute in float (u = 2^-24 ~ 6e-8); the references compute in double
// on the same float inputs, so the reference is exact for our purpose and the difference is the
// kernel's own rounding. The error of a float sum of K products is bounded by ~K*u*sum|terms| in the
// worst case and grows like sqrt(K)*u*sum|terms| in practice (Eigen's blocked FMA GEMM included).
// We therefore compare each element against rtol * scale, where scale is the sum of the absolute
// values of the terms that make it up (computed by running the reference on |inputs|): this is the
// quantity float rounding is proportional to, and it stays meaningful under cancellation, where a
// plain relative error would not. With K <= 1152 here, sqrt(K)*u <= 2e-6, so rtol = 1e-5 leaves a
// margin of ~5x, while any indexing/padding/stride mistake produces errors of order scale itself
// (5-6 orders of magnitude above the bound). Where a reference value is exactly zero with zero
// scale (windows entirely in the padding) the kernel must produce exactly zero.
#include <doctest/doctest.h>

#include "helpers.hpp"
#include <omp.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tricks/backend/cpu.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/rng.hpp"
#include "tricks/core/shape.hpp"
#include "tricks/distributed/communicator.hpp"

namespace {

namespace tb = tricks::backend;
namespace th = tricks::backend::host;
using tricks::shape4;
using dvec = std::vector<double>;
using fvec = std::vector<float>;

constexpr std::uint64_t seed = 0x7269636B73ull;  // "ricks"
constexpr float nan_f = std::numeric_limits<float>::quiet_NaN();

// ---- random inputs -------------------------------------------------------------------------------

fvec uniform_vec(std::size_t n, std::uint64_t stream, float lo = -1.f, float hi = 1.f) {
    tricks::rng r(seed, stream);
    fvec v(n);
    for (auto& e : v) e = lo + (hi - lo) * r.uniform();
    return v;
}

/// n pairwise distinct values (multiples of 1/8 starting at `lo`, exact in float), shuffled: max
/// pooling has a unique winner in every window, so its gradient is well defined.
fvec distinct_vec(std::size_t n, std::uint64_t stream, float lo) {
    fvec v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = lo + 0.125f * static_cast<float>(i);
    tricks::rng r(seed, stream);
    for (std::size_t i = n; i > 1; --i) std::swap(v[i - 1], v[r.below(static_cast<std::uint32_t>(i))]);
    return v;
}

dvec to_d(const fvec& v) { return dvec(v.begin(), v.end()); }
dvec abs_d(const dvec& v) {
    dvec a(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) a[i] = std::abs(v[i]);
    return a;
}
dvec abs_d(const fvec& v) { return abs_d(to_d(v)); }
double dot(const dvec& a, const dvec& b) {
    double s = 0;
    for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

// ---- comparison ----------------------------------------------------------------------------------

/// Every element must satisfy |got - want| <= rtol * scale + atol (NaN fails: outputs are pre-filled
/// with NaN, so an element a kernel forgets to write is caught).
void check_close(const std::string& what, const float* got, const dvec& want, const dvec& scale, double rtol,
                 double atol = 0.0) {
    REQUIRE(want.size() == scale.size());
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double err = std::abs(static_cast<double>(got[i]) - want[i]);
        if (!(err <= rtol * scale[i] + atol)) {
            if (bad == 0) first = i;
            ++bad;
        }
    }
    std::ostringstream os;
    os.precision(9);
    os << what << ": " << bad << " of " << want.size() << " elements out of tolerance";
    if (bad)
        os << "; first at flat index " << first << ": got " << got[first] << ", want " << want[first] << ", scale "
           << scale[first] << " (rtol " << rtol << ", atol " << atol << ")";
    CHECK_MESSAGE(bad == 0, os.str());
}
void check_close(const std::string& what, const fvec& got, const dvec& want, const dvec& scale, double rtol,
                 double atol = 0.0) {
    REQUIRE(got.size() == want.size());
    check_close(what, got.data(), want, scale, rtol, atol);
}

/// The message of the tricks::shape_error that f throws ("" and a failed check if it throws nothing).
template <class F>
std::string shape_error_message(F&& f) {
    try {
        f();
    } catch (const tricks::shape_error& e) {
        return e.what();
    } catch (...) {
        FAIL_CHECK("threw something other than tricks::shape_error");
        return {};
    }
    FAIL_CHECK("did not throw");
    return {};
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// Restores the OpenMP thread count on scope exit (also when a check throws).
using tricks_test::omp_threads_guard;

// ---- reference convolution (NHWC, filters [kh][kw][cin][cout]) ------------------------------------

struct conv_case {
    int n, h, w, cin, cout, kh, kw, stride, pad;
};
std::string describe(const conv_case& c) {
    std::ostringstream os;
    os << "conv n=" << c.n << " " << c.h << "x" << c.w << " cin=" << c.cin << " cout=" << c.cout << " kernel " << c.kh
       << "x" << c.kw << " stride " << c.stride << " pad " << c.pad;
    return os.str();
}
tb::conv_geometry geometry(const conv_case& c) {
    tb::conv_geometry g;
    g.in = {c.n, c.h, c.w, c.cin};
    g.out_c = c.cout;
    g.kh = c.kh;
    g.kw = c.kw;
    g.stride = c.stride;
    g.pad = c.pad;
    return g;
}
/// Number of window positions o*stride (in padded coordinates) whose window fits the padded input.
int count_windows(int in, int k, int stride, int pad) {
    int o = 0;
    while (o * stride + k <= in + 2 * pad) ++o;
    return o;
}

struct ref_conv {
    conv_case c;
    int oh, ow;
    explicit ref_conv(const conv_case& cc)
        : c(cc), oh(count_windows(cc.h, cc.kh, cc.stride, cc.pad)), ow(count_windows(cc.w, cc.kw, cc.stride, cc.pad)) {}

    [[nodiscard]] std::size_t x_size() const { return static_cast<std::size_t>(c.n) * c.h * c.w * c.cin; }
    [[nodiscard]] std::size_t y_size() const { return static_cast<std::size_t>(c.n) * oh * ow * c.cout; }
    [[nodiscard]] std::size_t w_size() const { return static_cast<std::size_t>(c.kh) * c.kw * c.cin * c.cout; }
    [[nodiscard]] std::size_t xi(int n, int y, int x, int ci) const {
        return ((static_cast<std::size_t>(n) * c.h + y) * c.w + x) * c.cin + ci;
    }
    [[nodiscard]] std::size_t yi(int n, int y, int x, int co) const {
        return ((static_cast<std::size_t>(n) * oh + y) * ow + x) * c.cout + co;
    }
    [[nodiscard]] std::size_t wi(int ky, int kx, int ci, int co) const {
        return ((static_cast<std::size_t>(ky) * c.kw + kx) * c.cin + ci) * c.cout + co;
    }
    [[nodiscard]] bool inside(int y, int x) const { return y >= 0 && y < c.h && x >= 0 && x < c.w; }

    /// y[n,oy,ox,co] = sum_{ky,kx,ci} x[n, oy*s-p+ky, ox*s-p+kx, ci] * w[ky,kx,ci,co] (zero outside).
    [[nodiscard]] dvec forward(const dvec& x, const dvec& w) const {
        dvec y(y_size());
        for (int n = 0; n < c.n; ++n)
            for (int oy = 0; oy < oh; ++oy)
                for (int ox = 0; ox < ow; ++ox)
                    for (int co = 0; co < c.cout; ++co) {
                        double s = 0;
                        for (int ky = 0; ky < c.kh; ++ky)
                            for (int kx = 0; kx < c.kw; ++kx) {
                                const int iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
                                if (!inside(iy, ix)) continue;
                                for (int ci = 0; ci < c.cin; ++ci) s += x[xi(n, iy, ix, ci)] * w[wi(ky, kx, ci, co)];
                            }
                        y[yi(n, oy, ox, co)] = s;
                    }
        return y;
    }
    /// The adjoint with respect to x, written as a gather over the input pixels: pixel iy receives
    /// from every output oy with oy*s - p + ky == iy for some ky.
    [[nodiscard]] dvec backward_data(const dvec& dy, const dvec& w) const {
        dvec dx(x_size());
        for (int n = 0; n < c.n; ++n)
            for (int iy = 0; iy < c.h; ++iy)
                for (int ix = 0; ix < c.w; ++ix)
                    for (int ci = 0; ci < c.cin; ++ci) {
                        double s = 0;
                        for (int ky = 0; ky < c.kh; ++ky) {
                            const int ty = iy + c.pad - ky;
                            if (ty < 0 || ty % c.stride != 0 || ty / c.stride >= oh) continue;
                            for (int kx = 0; kx < c.kw; ++kx) {
                                const int tx = ix + c.pad - kx;
                                if (tx < 0 || tx % c.stride != 0 || tx / c.stride >= ow) continue;
                                for (int co = 0; co < c.cout; ++co)
                                    s += dy[yi(n, ty / c.stride, tx / c.stride, co)] * w[wi(ky, kx, ci, co)];
                            }
                        }
                        dx[xi(n, iy, ix, ci)] = s;
                    }
        return dx;
    }
    /// dw[ky,kx,ci,co] = sum_{n,oy,ox} x[n, oy*s-p+ky, ox*s-p+kx, ci] * dy[n,oy,ox,co].
    [[nodiscard]] dvec backward_filter(const dvec& x, const dvec& dy) const {
        dvec dw(w_size());
        for (int ky = 0; ky < c.kh; ++ky)
            for (int kx = 0; kx < c.kw; ++kx)
                for (int ci = 0; ci < c.cin; ++ci)
                    for (int co = 0; co < c.cout; ++co) {
                        double s = 0;
                        for (int n = 0; n < c.n; ++n)
                            for (int oy = 0; oy < oh; ++oy)
                                for (int ox = 0; ox < ow; ++ox) {
                                    const int iy = oy * c.stride - c.pad + ky, ix = ox * c.stride - c.pad + kx;
                                    if (inside(iy, ix)) s += x[xi(n, iy, ix, ci)] * dy[yi(n, oy, ox, co)];
                                }
                        dw[wi(ky, kx, ci, co)] = s;
                    }
        return dw;
    }
};

// Shapes that stress the kernel's paths: odd sizes with stride 2, all-padding windows (pad 3 with a
// 3x3 kernel), the pointwise fast path (incl. more rows than its 512-row block), 1x1 stride 2
// (im2col path, skipped input pixels), 7x7 stride 2 pad 3 (ImageNet stem), a non-square 5x3 kernel,
// several im2col tiles per image (k = 784 gives 83-pixel tiles; k = 144 gives 455-pixel tiles), and
// a filter with k*cout > 2^18 (the 4-partial-sum reduction of the filter gradient, 5 tiles).
const std::vector<conv_case>& conv_cases() {
    static const std::vector<conv_case> cases = {
        {1, 7, 9, 3, 5, 3, 3, 2, 1},
        {3, 9, 7, 5, 16, 3, 3, 2, 0},
        {3, 15, 13, 16, 5, 1, 1, 1, 0},
        {1, 1, 1, 5, 3, 1, 1, 1, 0},
        {2, 9, 11, 5, 3, 1, 1, 2, 0},
        {1, 11, 13, 3, 16, 7, 7, 2, 3},
        {3, 6, 5, 1, 1, 7, 7, 2, 3},
        {3, 9, 8, 1, 5, 5, 3, 1, 1},
        {1, 5, 5, 3, 1, 3, 3, 1, 3},
        {2, 24, 24, 16, 3, 3, 3, 1, 1},
        {1, 19, 17, 16, 5, 7, 7, 1, 3},
        {3, 4, 5, 1, 16, 3, 3, 1, 0},
        {5, 3, 3, 128, 256, 3, 3, 1, 1},
        // The direct kernel's shapes (cout in blocks of 8, cin 1 or a multiple of 8): blocks of 16 and
        // 8 output channels, 1-7 pixel remainders, stride 2, 5x5, padding 0 (backward-data pads K-1).
        {2, 13, 11, 8, 16, 3, 3, 1, 1},
        {3, 9, 10, 16, 24, 3, 3, 2, 1},
        {1, 7, 7, 32, 8, 5, 5, 1, 2},
        {2, 6, 9, 8, 8, 3, 3, 1, 0},
        {1, 30, 3, 16, 16, 3, 3, 1, 1},
        {2, 10, 10, 1, 8, 3, 3, 1, 1},
        {2, 5, 6, 128, 96, 3, 3, 1, 1},  // the widest direct shapes: 128 input, 3 x 32 output channels
        // Winograd (3x3 stride 1, channels in multiples of 8; F(4x4, 3x3) on all but the 1x1 output here
        // and the 5x6 one above, which take F(2x2, 3x3)): padding 0 and 2, sizes not a multiple of the
        // tile (partly empty edge tiles), channel counts with compiled-in strides (8-64) and without
        // (24, 40), several images in one forward block and one filter chunk.
        {5, 9, 11, 24, 40, 3, 3, 1, 2},
        {3, 7, 7, 64, 64, 3, 3, 1, 1},
        {4, 14, 13, 32, 16, 3, 3, 1, 1},
        {2, 3, 3, 16, 8, 3, 3, 1, 0},
        {6, 4, 5, 8, 32, 3, 3, 1, 1},
        // The pointwise GEMM's column blocks of 32, 8 and a 4-column remainder, 12-row blocks with a
        // remainder, and a 512-row block split across images.
        {2, 17, 19, 24, 44, 1, 1, 1, 0},
        // A wide 1x1 (300 inputs, 4 x 32 + 8 + 4 output columns); the packed GEMM of a strided 3x3 with
        // two K chunks (256 + 104) and 4 x 32 + 8 columns, its A panels gathered from the image.
        {2, 13, 11, 300, 140, 1, 1, 1, 0},
        {3, 9, 8, 40, 136, 3, 3, 2, 1},
        // The packed filter gradient with 2 groups of 320 pixels (K chunks of 256 + 64 that cross
        // images) and 2 row tiles of k = 360; backward-data's col matrix in 2 tiles of an image.
        {10, 16, 16, 40, 136, 3, 3, 2, 1},
        {2, 16, 16, 40, 136, 3, 3, 1, 1},
    };
    return cases;
}

// ---- reference batch norm (training and evaluation mode) -----------------------------------------

struct bn_ref {
    dvec y, mean, var;  // var is the biased batch variance
};
/// y = gamma * (x - mean) / sqrt(var + eps) + beta with per-channel batch mean and biased variance.
bn_ref bn_forward_ref(std::size_t P, int C, const dvec& x, const dvec& gamma, const dvec& beta, double eps) {
    bn_ref r{dvec(P * C), dvec(C, 0.0), dvec(C, 0.0)};
    for (int c = 0; c < C; ++c) {
        for (std::size_t p = 0; p < P; ++p) r.mean[c] += x[p * C + c];
        r.mean[c] /= static_cast<double>(P);
        for (std::size_t p = 0; p < P; ++p) r.var[c] += (x[p * C + c] - r.mean[c]) * (x[p * C + c] - r.mean[c]);
        r.var[c] /= static_cast<double>(P);
        for (std::size_t p = 0; p < P; ++p)
            r.y[p * C + c] = gamma[c] * (x[p * C + c] - r.mean[c]) / std::sqrt(r.var[c] + eps) + beta[c];
    }
    return r;
}
/// The chain rule through mean and variance, term by term (Ioffe & Szegedy 2015, §3):
/// dxhat = dy*gamma; dvar = sum dxhat*(x-mu) * -1/2 (var+eps)^-3/2; dmu = sum -dxhat/sigma + dvar *
/// sum -2(x-mu)/m; dx = dxhat/sigma + dvar*2(x-mu)/m + dmu/m.
void bn_backward_ref(std::size_t P, int C, const dvec& x, const dvec& dy, const dvec& gamma, double eps, dvec& dx,
                     dvec& dgamma, dvec& dbeta) {
    dx.assign(P * C, 0.0);
    dgamma.assign(C, 0.0);
    dbeta.assign(C, 0.0);
    const double m = static_cast<double>(P);
    for (int c = 0; c < C; ++c) {
        double mu = 0, var = 0;
        for (std::size_t p = 0; p < P; ++p) mu += x[p * C + c];
        mu /= m;
        for (std::size_t p = 0; p < P; ++p) var += (x[p * C + c] - mu) * (x[p * C + c] - mu);
        var /= m;
        const double sigma = std::sqrt(var + eps);
        double dvar = 0, dmu = 0, sum_xmu = 0;
        for (std::size_t p = 0; p < P; ++p) {
            const double d = x[p * C + c] - mu, dxhat = dy[p * C + c] * gamma[c];
            dvar += dxhat * d * -0.5 * std::pow(var + eps, -1.5);
            dmu += -dxhat / sigma;
            sum_xmu += -2.0 * d;
            dgamma[c] += dy[p * C + c] * d / sigma;
            dbeta[c] += dy[p * C + c];
        }
        dmu += dvar * sum_xmu / m;
        for (std::size_t p = 0; p < P; ++p) {
            const double d = x[p * C + c] - mu;
            dx[p * C + c] = dy[p * C + c] * gamma[c] / sigma + dvar * 2.0 * d / m + dmu / m;
        }
    }
}

// ---- reference pooling ----------------------------------------------------------------------------

struct pool_case {
    int n, h, w, c, k, stride, pad;
    bool ceil_mode, count_include_pad;
};
std::string describe(const pool_case& c) {
    std::ostringstream os;
    os << "pool n=" << c.n << " " << c.h << "x" << c.w << " c=" << c.c << " window " << c.k << " stride " << c.stride
       << " pad " << c.pad << (c.ceil_mode ? " ceil" : " floor")
       << (c.count_include_pad ? " count_include_pad" : " count_valid");
    return os.str();
}
tb::pool_geometry geometry(const pool_case& c) {
    tb::pool_geometry g;
    g.in = {c.n, c.h, c.w, c.c};
    g.k = c.k;
    g.stride = c.stride;
    g.pad = c.pad;
    g.ceil_mode = c.ceil_mode;
    g.count_include_pad = c.count_include_pad;
    return g;
}
/// Floor mode: windows that fit the padded input. Ceil mode (PyTorch): ceil((in+2p-k)/s)+1 windows,
/// i.e. starts o*s < in+2p-k+s, keeping only windows that start inside the input or the left padding.
int count_pool_windows(int in, int k, int s, int p, bool ceil_mode) {
    int o = 0;
    if (!ceil_mode)
        while (o * s + k <= in + 2 * p) ++o;
    else
        while (o * s < in + 2 * p - k + s && o * s - p < in) ++o;
    return o;
}

struct ref_pool {
    pool_case c;
    int oh, ow;
    explicit ref_pool(const pool_case& cc)
        : c(cc),
          oh(count_pool_windows(cc.h, cc.k, cc.stride, cc.pad, cc.ceil_mode)),
          ow(count_pool_windows(cc.w, cc.k, cc.stride, cc.pad, cc.ceil_mode)) {}
    [[nodiscard]] std::size_t x_size() const { return static_cast<std::size_t>(c.n) * c.h * c.w * c.c; }
    [[nodiscard]] std::size_t y_size() const { return static_cast<std::size_t>(c.n) * oh * ow * c.c; }
    [[nodiscard]] std::size_t xi(int n, int y, int x, int ch) const {
        return ((static_cast<std::size_t>(n) * c.h + y) * c.w + x) * c.c + ch;
    }
    [[nodiscard]] std::size_t yi(int n, int y, int x, int ch) const {
        return ((static_cast<std::size_t>(n) * oh + y) * ow + x) * c.c + ch;
    }
    /// Visits the input pixels of window (oy, ox) that lie inside the image.
    template <class F>
    void for_window(int oy, int ox, F&& f) const {
        for (int dy = 0; dy < c.k; ++dy)
            for (int dx = 0; dx < c.k; ++dx) {
                const int iy = oy * c.stride - c.pad + dy, ix = ox * c.stride - c.pad + dx;
                if (iy >= 0 && iy < c.h && ix >= 0 && ix < c.w) f(iy, ix);
            }
    }
    /// Divisor of the average: with count_include_pad, the window's cells inside the padded input
    /// (padding counts, the part of a ceil-mode window past the padded input does not, as PyTorch's
    /// AvgPool2d); otherwise the number of real input cells.
    [[nodiscard]] int divisor(int oy, int ox) const {
        if (c.count_include_pad) {
            const int y0 = oy * c.stride - c.pad, x0 = ox * c.stride - c.pad;
            return (std::min(y0 + c.k, c.h + c.pad) - y0) * (std::min(x0 + c.k, c.w + c.pad) - x0);
        }
        int cnt = 0;
        for_window(oy, ox, [&](int, int) { ++cnt; });
        return cnt;
    }
    /// Flat index of the window maximum (inputs have no ties).
    [[nodiscard]] std::size_t argmax(const dvec& x, int n, int oy, int ox, int ch) const {
        std::size_t best = 0;
        double bv = -std::numeric_limits<double>::infinity();
        for_window(oy, ox, [&](int iy, int ix) {
            const auto i = xi(n, iy, ix, ch);
            if (x[i] > bv) bv = x[i], best = i;
        });
        return best;
    }
};

// ---- reference linear and softmax ----------------------------------------------------------------

dvec linear_ref(int n, int in, int out, const dvec& x, const dvec& w, const dvec* b) {
    dvec y(static_cast<std::size_t>(n) * out);
    for (int i = 0; i < n; ++i)
        for (int o = 0; o < out; ++o) {
            double s = b ? (*b)[o] : 0.0;
            for (int j = 0; j < in; ++j)
                s += x[static_cast<std::size_t>(i) * in + j] * w[static_cast<std::size_t>(j) * out + o];
            y[static_cast<std::size_t>(i) * out + o] = s;
        }
    return y;
}

/// Mean over rows of -sum_k q_k log softmax(z)_k, with the log-sum-exp shifted by the row maximum.
double cross_entropy_ref(int n, int k, const dvec& z, const dvec& q) {
    double total = 0;
    for (int i = 0; i < n; ++i) {
        const auto row = static_cast<std::size_t>(i) * k;
        double m = z[row];
        for (int j = 1; j < k; ++j) m = std::max(m, z[row + j]);
        double se = 0;
        for (int j = 0; j < k; ++j) se += std::exp(z[row + j] - m);
        for (int j = 0; j < k; ++j) total -= q[row + j] * (z[row + j] - m - std::log(se));
    }
    return total / n;
}
dvec softmax_ref(int n, int k, const dvec& z, double temperature) {
    dvec p(z.size());
    for (int i = 0; i < n; ++i) {
        const auto row = static_cast<std::size_t>(i) * k;
        double m = z[row], se = 0;
        for (int j = 1; j < k; ++j) m = std::max(m, z[row + j]);
        for (int j = 0; j < k; ++j) se += std::exp((z[row + j] - m) / temperature);
        for (int j = 0; j < k; ++j) p[row + j] = std::exp((z[row + j] - m) / temperature) / se;
    }
    return p;
}

}  // namespace

// =================================================================================================
// Convolution
// =================================================================================================

TEST_CASE("cpu conv2d_forward matches a naive float64 convolution on awkward shapes") {
    for (const auto algo : {tb::conv_algo::winograd, tb::conv_algo::direct}) {
        th::workspace ws;  // one workspace for all shapes, as a layer reuses it: slots grow and are reused
        std::uint64_t stream = 100;
        for (const auto& c : conv_cases()) {
            INFO(describe(c) << " algo " << std::string(tb::to_string(algo)));
            const ref_conv ref(c);
            const auto g = geometry(c);
            CHECK(g.out() == shape4{c.n, ref.oh, ref.ow, c.cout});
            const fvec x = uniform_vec(ref.x_size(), stream++), w = uniform_vec(ref.w_size(), stream++);
            fvec y(ref.y_size(), nan_f);
            th::conv2d_forward(g, x.data(), w.data(), y.data(), ws, {}, algo);
            const dvec want = ref.forward(to_d(x), to_d(w));
            const dvec scale = ref.forward(abs_d(x), abs_d(w));  // sum |x||w| per output (see file comment)
            check_close("y", y, want, scale, 1e-5);
        }
    }
}

TEST_CASE("cpu conv2d_forward: hand-computed values (the reference itself is right)") {
    // 1 image 3x3, 1 channel, 2x2 kernel [[1,2],[3,4]], stride 1, pad 1 -> 4x4 output; and the same
    // with stride 2 -> 2x2. Values worked out by hand.
    const fvec x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const fvec w = {1, 2, 3, 4};
    conv_case c{1, 3, 3, 1, 1, 2, 2, 1, 1};
    const dvec want1 = {4, 11, 18, 9, 18, 37, 47, 21, 36, 67, 77, 33, 14, 23, 26, 9};
    th::workspace ws;
    fvec y(16, nan_f);
    th::conv2d_forward(geometry(c), x.data(), w.data(), y.data(), ws);
    check_close("y stride 1", y, want1, dvec(16, 1.0), 0.0);
    const ref_conv ref(c);
    check_close("reference stride 1", fvec(want1.begin(), want1.end()), ref.forward(to_d(x), to_d(w)), dvec(16, 1.0),
                0.0);
    c.stride = 2;
    const dvec want2 = {4, 18, 36, 77};
    fvec y2(4, nan_f);
    th::conv2d_forward(geometry(c), x.data(), w.data(), y2.data(), ws);
    check_close("y stride 2", y2, want2, dvec(4, 1.0), 0.0);
}

TEST_CASE("cpu conv2d_backward_data and conv2d_backward_filter match naive float64 adjoints") {
    for (const auto algo : {tb::conv_algo::winograd, tb::conv_algo::direct}) {
        th::workspace ws;
        std::uint64_t stream = 200;
        for (const auto& c : conv_cases()) {
            INFO(describe(c) << " algo " << std::string(tb::to_string(algo)));
            const ref_conv ref(c);
            const auto g = geometry(c);
            const fvec x = uniform_vec(ref.x_size(), stream++), w = uniform_vec(ref.w_size(), stream++);
            const fvec dy = uniform_vec(ref.y_size(), stream++);
            fvec dx(ref.x_size(), nan_f), dw(ref.w_size(), nan_f);
            th::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ws, algo);
            th::conv2d_backward_filter(g, x.data(), dy.data(), dw.data(), ws, algo);
            check_close("dx", dx, ref.backward_data(to_d(dy), to_d(w)), ref.backward_data(abs_d(dy), abs_d(w)), 1e-5);
            check_close("dw", dw, ref.backward_filter(to_d(x), to_d(dy)), ref.backward_filter(abs_d(x), abs_d(dy)),
                        1e-5);
        }
    }
}

/// Forward, backward-data and backward-filter of one case under conv_algo::winograd ([0]) and
/// conv_algo::direct ([1]), on the same random inputs.
struct both_algorithms {
    fvec x, dy, y[2], dx[2], dw[2];
    both_algorithms(const conv_case& c, std::uint64_t& stream, th::workspace& ws) {
        const ref_conv ref(c);
        const auto g = geometry(c);
        x = uniform_vec(ref.x_size(), stream++);
        const fvec w = uniform_vec(ref.w_size(), stream++);
        dy = uniform_vec(ref.y_size(), stream++);
        for (int a = 0; a < 2; ++a) {
            const auto algo = a == 0 ? tb::conv_algo::winograd : tb::conv_algo::direct;
            y[a].assign(ref.y_size(), nan_f), dx[a].assign(ref.x_size(), nan_f), dw[a].assign(ref.w_size(), nan_f);
            th::conv2d_forward(g, x.data(), w.data(), y[a].data(), ws, {}, algo);
            th::conv2d_backward_data(g, dy.data(), w.data(), dx[a].data(), ws, algo);
            th::conv2d_backward_filter(g, x.data(), dy.data(), dw[a].data(), ws, algo);
        }
    }
};

TEST_CASE("cpu conv2d: conv_algo picks the algorithm (Winograd rounds differently where it applies, nowhere else)") {
    // Guards the dispatch: if Winograd silently stopped running (or ran where it does not apply),
    // the tests above would still pass, since both algorithms meet the same tolerance.
    th::workspace ws;
    std::uint64_t stream = 240;
    for (const auto& c : {conv_case{4, 14, 14, 16, 16, 3, 3, 1, 1}, conv_case{4, 14, 14, 16, 16, 3, 3, 2, 1},
                          conv_case{4, 14, 14, 12, 16, 3, 3, 1, 1}, conv_case{4, 14, 14, 16, 16, 1, 1, 1, 0}}) {
        const bool winograd = c.kh == 3 && c.stride == 1 && c.cin % 8 == 0;
        INFO(describe(c) << (winograd ? " (Winograd applies)" : " (direct only)"));
        const both_algorithms r(c, stream, ws);
        CHECK(tricks_test::same_bits(r.y[0], r.y[1]) == !winograd);
        CHECK(tricks_test::same_bits(r.dx[0], r.dx[1]) == !winograd);
        CHECK(tricks_test::same_bits(r.dw[0], r.dw[1]) == !winograd);
    }
    // Wider than the direct kernels (136 channels): backward-data runs on the col matrix whatever the
    // algorithm; the filter gradient on Winograd only from 256 output tiles (16 images of 16 F(4x4)
    // tiles), on the packed GEMM below that (2 images of 4).
    for (const int n : {2, 16}) {
        const conv_case c{n, n == 2 ? 7 : 14, n == 2 ? 7 : 14, 136, 136, 3, 3, 1, 1};
        INFO(describe(c));
        const both_algorithms r(c, stream, ws);
        CHECK_FALSE(tricks_test::same_bits(r.y[0], r.y[1]));
        CHECK(tricks_test::same_bits(r.dx[0], r.dx[1]));
        CHECK(tricks_test::same_bits(r.dw[0], r.dw[1]) == (n == 2));
        if (n == 2) {
            const ref_conv ref(c);
            check_close("dw", r.dw[0], ref.backward_filter(to_d(r.x), to_d(r.dy)),
                        ref.backward_filter(abs_d(r.x), abs_d(r.dy)), 1e-5);
        }
    }
    tb::conv_algo a{};
    CHECK((tb::parse("direct", a) && a == tb::conv_algo::direct));
    CHECK((tb::parse("winograd", a) && a == tb::conv_algo::winograd));
    CHECK_FALSE(tb::parse("Winograd", a));
    CHECK(std::string(tb::to_string(tb::conv_algo::direct)) == "direct");
}

/// One of conv_cases() with n images, random inputs and weights, and a folded BN's per-channel
/// scale and shift (the epilogue tests).
struct epilogue_case {
    conv_case c;
    ref_conv ref;
    tb::conv_geometry g;
    fvec x, w, scale, shift;
    epilogue_case(const conv_case& c0, int n, std::uint64_t& stream)
        : c(with_batch(c0, n)),
          ref(c),
          g(geometry(c)),
          x(uniform_vec(ref.x_size(), stream++)),
          w(uniform_vec(ref.w_size(), stream++)),
          scale(uniform_vec(static_cast<std::size_t>(c.cout), stream++)),
          shift(uniform_vec(static_cast<std::size_t>(c.cout), stream++)) {}
    static conv_case with_batch(conv_case c, int n) {
        c.n = n;
        return c;
    }
};

TEST_CASE("cpu conv2d_forward: the affine and ReLU epilogue gives apply_epilogue's bits on every path") {
    // The epilogue runs on the registers (gemm_rows' blocks for the narrow 1x1 layers, gemm_packed's,
    // the direct and Winograd kernels) or in a pass after the GEMM; each must give what
    // apply_epilogue gives on the convolution's plain output. Besides conv_cases: 1x1 layers on
    // gemm_rows with 32 + 8 columns and with 3 x 32 + 4 (the scalar remainder).
    // On 1-3 threads: several threads cut a small layer's columns into chunks (100 columns: 48 + 52),
    // whose epilogue offsets must follow.
    const omp_threads_guard guard;
    std::uint64_t stream = 2900;
    std::vector<conv_case> cases = conv_cases();
    cases.push_back({3, 6, 5, 64, 40, 1, 1, 1, 0});
    cases.push_back({2, 5, 7, 24, 100, 1, 1, 1, 0});
    for (const auto& c0 : cases) {
        const epilogue_case e(c0, 3, stream);
        const auto& [c, ref, g, x, w, scale, shift] = e;
        for (const auto algo : {tb::conv_algo::winograd, tb::conv_algo::direct})
            for (const bool relu : {false, true})
                for (const int threads : {1, 2, 3}) {
                    omp_set_num_threads(threads);
                    INFO(describe(e.c) << " algo " << std::string(tb::to_string(algo)) << " relu " << relu
                                       << " threads " << threads);
                    th::workspace ws;
                    const th::conv_epilogue epi{.scale = scale.data(), .shift = shift.data(), .relu = relu};
                    fvec expect(ref.y_size(), nan_f), got(ref.y_size(), nan_f);
                    th::conv2d_forward(g, x.data(), w.data(), expect.data(), ws, {}, algo);
                    th::apply_epilogue(expect.data(), expect.data(), expect.size() / static_cast<std::size_t>(c.cout),
                                       c.cout, epi);
                    th::conv2d_forward(g, x.data(), w.data(), got.data(), ws, epi, algo);
                    CHECK(tricks_test::same_bits(got, expect));
                }
    }
}

TEST_CASE("cpu conv2d_forward: a residual in the epilogue gives the bits of add_relu_forward after the convolution") {
    // A residual block's end in evaluation: relu(bn(conv(x)) + s) in the convolution's epilogue, on
    // every forward path, with and without the folded BN and the ReLU; images past the first read
    // their own part of s.
    std::uint64_t stream = 280;
    for (const auto& c0 : conv_cases()) {
        const epilogue_case e(c0, 3, stream);
        const auto& [c, ref, g, x, w, scale, shift] = e;
        const fvec s = uniform_vec(ref.y_size(), stream++);
        for (const auto algo : {tb::conv_algo::winograd, tb::conv_algo::direct}) {
            for (const bool affine : {false, true}) {
                for (const bool relu : {false, true}) {
                    INFO(describe(e.c) << " algo " << std::string(tb::to_string(algo)) << " affine " << affine
                                       << " relu " << relu);
                    th::workspace ws;
                    th::conv_epilogue before{};  // the convolution (and its folded BN) alone
                    if (affine) before.scale = scale.data(), before.shift = shift.data();
                    fvec expect(ref.y_size(), nan_f), got(ref.y_size(), nan_f);
                    th::conv2d_forward(g, x.data(), w.data(), expect.data(), ws, before, algo);
                    if (relu)
                        th::add_relu_forward(expect.size(), expect.data(), s.data(), expect.data());
                    else
                        th::add(expect.size(), expect.data(), s.data(), expect.data());
                    th::conv_epilogue fused = before;
                    fused.residual = s.data();
                    fused.relu = relu;
                    th::conv2d_forward(g, x.data(), w.data(), got.data(), ws, fused, algo);
                    CHECK(tricks_test::same_bits(got, expect));
                }
            }
        }
    }
}

TEST_CASE("cpu forward kernels give an image the same bits in any batch (what models::inference_pool relies on)") {
    // Every forward path (pointwise GEMM, direct, Winograd F(4x4) and F(2x2), im2col) with and without
    // the folded epilogue, and the classifier: the whole batch at once, then the images one at a time
    // and in batches of 2 and 3. A kernel whose blocking or summation order followed the batch (Eigen's
    // GEMM did for 1x1 convs and the classifier) fails here.
    std::uint64_t stream = 260;
    for (const auto& c0 : conv_cases()) {
        const epilogue_case e(c0, 7, stream);
        const auto& [c, ref, g, x, w, scale, shift] = e;
        const std::size_t xi = ref.x_size() / 7, yi = ref.y_size() / 7;
        for (const auto algo : {tb::conv_algo::winograd, tb::conv_algo::direct}) {
            for (const bool folded : {false, true}) {
                INFO(describe(e.c) << " algo " << std::string(tb::to_string(algo))
                                   << std::string(folded ? " with the folded BN + ReLU" : ""));
                th::conv_epilogue epi{};
                if (folded) epi.scale = scale.data(), epi.shift = shift.data(), epi.relu = true;
                th::workspace ws;
                fvec all(ref.y_size(), nan_f);
                th::conv2d_forward(g, x.data(), w.data(), all.data(), ws, epi, algo);
                for (const int chunk : {1, 2, 3}) {
                    fvec parts(ref.y_size(), nan_f);
                    for (int b = 0; b < 7; b += chunk) {
                        auto gb = g;
                        gb.in.n = std::min(chunk, 7 - b);
                        th::conv2d_forward(gb, x.data() + b * xi, w.data(), parts.data() + b * yi, ws, epi, algo);
                    }
                    CAPTURE(chunk);
                    CHECK(tricks_test::same_bits(parts, all));
                }
            }
        }
    }
    // The classifier: 4-row blocks and their remainders, 64-column blocks and a partial one.
    const int n = 11, in = 70, out = 130;
    const fvec x = uniform_vec(static_cast<std::size_t>(n) * in, stream++),
               w = uniform_vec(static_cast<std::size_t>(in) * out, stream++);
    const fvec b = uniform_vec(static_cast<std::size_t>(out), stream++);
    fvec all(static_cast<std::size_t>(n) * out, nan_f);
    th::linear_forward(n, in, out, x.data(), w.data(), b.data(), all.data());
    for (const int chunk : {1, 2, 3, 5}) {
        fvec parts(all.size(), nan_f);
        for (int r = 0; r < n; r += chunk)
            th::linear_forward(std::min(chunk, n - r), in, out, x.data() + r * in, w.data(), b.data(),
                               parts.data() + r * out);
        CAPTURE(chunk);
        CHECK(tricks_test::same_bits(parts, all));
    }
}

TEST_CASE("cpu Winograd on a few tiles over the threads (U made from the filter) gives the stored-U bits") {
    // One 7x7 image (F(4x4): 4 tiles) or 5x5 image (F(2x2): 9 tiles) on 2 or 3 threads runs
    // winograd_gemms_from_filter, which transforms the filter block by block instead of reading the
    // stored U; on 1 thread, and for 8 images (32 tiles), the stored U is read. Each image must get
    // the same bits either way, with the filter prepared in advance (inference_pool) or not, and
    // with the folded epilogue. 96 input channels: six filter chunks of 16; 40: 16, 16 and 8; 576
    // output channels on 2 threads: items of at most 256 (256, 256, 64). Batch 3 of 7x7: 12 tiles, a
    // whole register block.
    const omp_threads_guard guard;
    std::uint64_t stream = 1700;
    {  // the kernel itself, on 1 to 3 threads, against the per-position GEMMs over the stored U
        namespace td = th::detail;
        using tiles = td::winograd_tiles<4>;
        const int C = 40, CO = 96;
        const fvec w = uniform_vec(std::size_t{9} * C * CO, stream++);
        fvec u(tiles::positions * std::size_t{C} * CO);
        td::winograd_filter_transform<4>(w.data(), C, CO, u.data());
        for (const int rows : {1, 5, 12}) {
            const fvec v = uniform_vec(rows * tiles::stride(C), stream++);
            fvec want(rows * tiles::stride(CO), 0.f);
            for (std::size_t pos = 0; pos < tiles::positions; ++pos)
                td::winograd_gemm<4>(v.data() + pos * C, rows, C, u.data() + pos * C * CO, CO, want.data() + pos * CO);
            for (const int threads : {1, 2, 3}) {
                CAPTURE(rows);
                CAPTURE(threads);
                omp_set_num_threads(threads);
                std::vector<fvec> scratch(3, fvec(td::winograd_fused_floats<4>()));
                fvec got(want.size(), 0.f);
                td::winograd_gemms_from_filter<4>(v.data(), rows, C, w.data(), CO, got.data(),
                                                  [&](int t) { return scratch[static_cast<std::size_t>(t)].data(); });
                CHECK(tricks_test::same_bits(got, want));
            }
        }
    }
    for (const conv_case c : {conv_case{8, 7, 7, 96, 64, 3, 3, 1, 1}, conv_case{8, 5, 5, 16, 32, 3, 3, 1, 1},
                              conv_case{8, 7, 7, 40, 96, 3, 3, 1, 1}, conv_case{8, 7, 7, 16, 576, 3, 3, 1, 1}}) {
        INFO(describe(c));
        const ref_conv ref(c);
        const auto g = geometry(c);
        const fvec x = uniform_vec(ref.x_size(), stream++), w = uniform_vec(ref.w_size(), stream++);
        const fvec scale = uniform_vec(static_cast<std::size_t>(c.cout), stream++),
                   shift = uniform_vec(static_cast<std::size_t>(c.cout), stream++);
        const std::size_t xi = ref.x_size() / 8, yi = ref.y_size() / 8;
        for (const bool folded : {false, true}) {
            th::conv_epilogue epi{};
            if (folded) epi.scale = scale.data(), epi.shift = shift.data(), epi.relu = true;
            omp_set_num_threads(1);
            th::workspace ws;
            fvec stored(ref.y_size(), nan_f);
            th::conv2d_forward(g, x.data(), w.data(), stored.data(), ws, epi, tb::conv_algo::winograd);
            if (!folded) {  // against the float64 reference too: the stored path itself is right
                const dvec want = ref.forward(to_d(x), to_d(w));
                double worst = 0;
                for (std::size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::abs(stored[i] - want[i]));
                CHECK(worst < 1e-3);
            }
            for (const int threads : {2, 3})
                for (const int chunk : {1, 2, 3})
                    for (const bool prepare : {false, true}) {
                        CAPTURE(folded);
                        CAPTURE(threads);
                        CAPTURE(chunk);
                        CAPTURE(prepare);
                        omp_set_num_threads(threads);
                        th::prepared_filter pf;
                        fvec parts(ref.y_size(), nan_f);
                        for (int b = 0; b < 8; b += chunk) {
                            auto gb = g;
                            gb.in.n = std::min(chunk, 8 - b);
                            const float* u =
                                prepare ? th::prepare_filter(gb, w.data(), tb::conv_algo::winograd, 1, pf) : nullptr;
                            th::conv2d_forward(gb, x.data() + b * xi, w.data(), parts.data() + b * yi, ws, epi,
                                               tb::conv_algo::winograd, u);
                        }
                        CHECK(tricks_test::same_bits(parts, stored));
                    }
        }
    }
}

TEST_CASE("cpu packed GEMM: the filter prepared as panels gives the bits of the filter read in place") {
    // prepare_filter packs the filter of a gemm_packed layer (a wide 1x1, a strided or wide one that
    // neither Winograd nor the direct kernel takes) once into the panels the kernel reads. Columns:
    // 300 = a 256-column chunk (8 blocks of 32), then 32 + 8 + 4 left over (the 4 by the scalar loop);
    // 136 = 4 x 32 + 8; input 300 x 1x1 and 160 x 9: several K chunks of 256. One 3x3 image on 2-3
    // threads cuts the columns into chunks of 32-multiples (packed_columns). With the folded epilogue
    // and a residual. Also: the float64 reference, and a new version after the weights change.
    const omp_threads_guard guard;
    std::uint64_t stream = 3100;
    for (const conv_case c : {conv_case{3, 6, 5, 200, 300, 1, 1, 1, 0}, conv_case{2, 5, 5, 300, 136, 1, 1, 1, 0},
                              conv_case{1, 3, 3, 300, 300, 1, 1, 1, 0}, conv_case{2, 9, 7, 160, 136, 3, 3, 2, 1},
                              conv_case{2, 8, 8, 96, 264, 1, 1, 2, 0}, conv_case{1, 6, 6, 144, 40, 3, 3, 2, 1}}) {
        INFO(describe(c));
        const ref_conv ref(c);
        const auto g = geometry(c);
        REQUIRE(th::detail::forward_packs_filter(g, tb::conv_algo::winograd));
        fvec w = uniform_vec(ref.w_size(), stream++);
        const fvec x = uniform_vec(ref.x_size(), stream++), res = uniform_vec(ref.y_size(), stream++);
        const fvec scale = uniform_vec(static_cast<std::size_t>(c.cout), stream++),
                   shift = uniform_vec(static_cast<std::size_t>(c.cout), stream++);
        th::prepared_filter pf;
        for (const std::uint64_t version : {1, 2}) {
            if (version == 2) w = uniform_vec(ref.w_size(), stream++);  // new weights, new promise
            const float* panels = th::prepare_filter(g, w.data(), tb::conv_algo::winograd, version, pf);
            REQUIRE(panels != nullptr);
            CHECK(pf.u.size() == static_cast<std::size_t>(g.k()) * (c.cout / 8 * 8));
            CHECK(th::prepare_filter(g, w.data(), tb::conv_algo::winograd, version, pf) == panels);  // kept
            for (const bool folded : {false, true})
                for (const int threads : {1, 2, 3}) {
                    CAPTURE(version);
                    CAPTURE(folded);
                    CAPTURE(threads);
                    omp_set_num_threads(threads);
                    th::conv_epilogue epi{};
                    if (folded)
                        epi.scale = scale.data(), epi.shift = shift.data(), epi.residual = res.data(), epi.relu = true;
                    th::workspace ws;
                    fvec plain(ref.y_size(), nan_f), packed(ref.y_size(), nan_f);
                    th::conv2d_forward(g, x.data(), w.data(), plain.data(), ws, epi, tb::conv_algo::winograd);
                    th::conv2d_forward(g, x.data(), w.data(), packed.data(), ws, epi, tb::conv_algo::winograd, panels);
                    CHECK(tricks_test::same_bits(packed, plain));
                    if (!folded && threads == 1) {
                        const dvec want = ref.forward(to_d(x), to_d(w));
                        double worst = 0;
                        for (std::size_t i = 0; i < want.size(); ++i)
                            worst = std::max(worst, std::abs(packed[i] - want[i]));
                        CHECK(worst < 1e-3);
                    }
                }
        }
    }
    // Where the forward reads the filter as it is, nothing is prepared.
    th::prepared_filter pf;
    const fvec w = uniform_vec(std::size_t{64} * 64, stream++);
    CHECK(th::prepare_filter(geometry(conv_case{1, 8, 8, 64, 64, 1, 1, 1, 0}), w.data(), tb::conv_algo::winograd, 1,
                             pf) == nullptr);  // 64 x 64: gemm_rows
    CHECK(th::prepare_filter(geometry(conv_case{1, 8, 8, 16, 32, 3, 3, 2, 1}), w.data(), tb::conv_algo::winograd, 1,
                             pf) == nullptr);  // the direct kernel
}

TEST_CASE("cpu conv2d backward: the reference adjoints satisfy <conv(x), dy> == <x, conv^T dy> == <w, dW>") {
    // Guards the reference itself: the gather-form adjoint must be the transpose of the forward.
    std::uint64_t stream = 250;
    for (const auto& c : conv_cases()) {
        if (c.cin * c.cout > 4096) continue;
        INFO(describe(c));
        const ref_conv ref(c);
        const dvec x = to_d(uniform_vec(ref.x_size(), stream++)), w = to_d(uniform_vec(ref.w_size(), stream++));
        const dvec dy = to_d(uniform_vec(ref.y_size(), stream++));
        const double lhs = dot(ref.forward(x, w), dy);
        CHECK(lhs == doctest::Approx(dot(x, ref.backward_data(dy, w))).epsilon(1e-12));
        CHECK(lhs == doctest::Approx(dot(w, ref.backward_filter(x, dy))).epsilon(1e-12));
    }
}

TEST_CASE("cpu conv2d gradients agree with central finite differences in float64") {
    // L(x, w) = sum(conv(x, w) * r). L is bilinear, so the central difference (L(x+h) - L(x-h)) / 2h
    // has no truncation error at all: in double it equals the exact derivative up to rounding,
    // ~2^-52 * sum|y*r| / h < 1e-12 here. The remaining difference to the float kernels is their
    // own rounding, bounded as in the file comment (rtol 1e-5 of sum |r||w| resp. sum |x||r|).
    const std::vector<conv_case> cases = {{2, 5, 6, 3, 4, 3, 3, 2, 1},
                                          {1, 5, 4, 2, 3, 5, 3, 1, 2},
                                          {2, 3, 3, 3, 2, 1, 1, 1, 0},
                                          {1, 7, 7, 2, 2, 7, 7, 2, 3}};
    th::workspace ws;
    std::uint64_t stream = 300;
    for (const auto& c : cases) {
        INFO(describe(c));
        const ref_conv ref(c);
        const auto g = geometry(c);
        const fvec x = uniform_vec(ref.x_size(), stream++), w = uniform_vec(ref.w_size(), stream++);
        const fvec r = uniform_vec(ref.y_size(), stream++);
        const dvec xd = to_d(x), wd = to_d(w), rd = to_d(r);
        const double h = 0.25;
        dvec fd_x(xd.size()), fd_w(wd.size());
        for (std::size_t i = 0; i < xd.size(); ++i) {
            dvec xp = xd, xm = xd;
            xp[i] += h;
            xm[i] -= h;
            fd_x[i] = (dot(ref.forward(xp, wd), rd) - dot(ref.forward(xm, wd), rd)) / (2 * h);
        }
        for (std::size_t i = 0; i < wd.size(); ++i) {
            dvec wp = wd, wm = wd;
            wp[i] += h;
            wm[i] -= h;
            fd_w[i] = (dot(ref.forward(xd, wp), rd) - dot(ref.forward(xd, wm), rd)) / (2 * h);
        }
        fvec dx(xd.size(), nan_f), dw(wd.size(), nan_f);
        th::conv2d_backward_data(g, r.data(), w.data(), dx.data(), ws);
        th::conv2d_backward_filter(g, x.data(), r.data(), dw.data(), ws);
        check_close("dL/dx vs finite differences", dx, fd_x, ref.backward_data(abs_d(r), abs_d(w)), 1e-5, 1e-10);
        check_close("dL/dw vs finite differences", dw, fd_w, ref.backward_filter(abs_d(x), abs_d(r)), 1e-5, 1e-10);
    }
}

TEST_CASE("cpu conv2d 1x1 stride 2: skipped input pixels get exactly zero gradient") {
    const conv_case c{2, 5, 7, 3, 4, 1, 1, 2, 0};
    const ref_conv ref(c);
    const fvec w = uniform_vec(ref.w_size(), 350), dy = uniform_vec(ref.y_size(), 351);
    fvec dx(ref.x_size(), nan_f);
    th::workspace ws;
    th::conv2d_backward_data(geometry(c), dy.data(), w.data(), dx.data(), ws);
    int nonzero_skipped = 0, zero_used = 0;
    for (int n = 0; n < c.n; ++n)
        for (int y = 0; y < c.h; ++y)
            for (int x = 0; x < c.w; ++x)
                for (int ci = 0; ci < c.cin; ++ci) {
                    const float v = dx[ref.xi(n, y, x, ci)];
                    if (y % 2 || x % 2)
                        nonzero_skipped += !(v == 0.f);
                    else
                        zero_used += (v == 0.f);
                }
    CHECK(nonzero_skipped == 0);
    CHECK(zero_used == 0);
}

// =================================================================================================
// Batch normalisation
// =================================================================================================

namespace {
struct bn_case {
    int n, h, w, c;
};
struct bn_inputs {
    std::size_t P;
    int C;
    fvec x, gamma, beta, rmean, rvar, dy;
};
bn_inputs make_bn(const bn_case& c, std::uint64_t stream) {
    bn_inputs in;
    in.P = static_cast<std::size_t>(c.n) * c.h * c.w;
    in.C = c.c;
    // A mean far from zero (x in [1, 3]) exercises the two-pass variance.
    in.x = uniform_vec(in.P * c.c, stream, 1.f, 3.f);
    in.gamma = uniform_vec(c.c, stream + 1, 0.5f, 1.5f);
    in.beta = uniform_vec(c.c, stream + 2, -0.5f, 0.5f);
    in.rmean = uniform_vec(c.c, stream + 3, -1.f, 1.f);
    in.rvar = uniform_vec(c.c, stream + 4, 0.5f, 2.f);
    in.dy = uniform_vec(in.P * c.c, stream + 5);
    return in;
}
tb::batch_norm_geometry bn_geometry(const bn_inputs& in) {
    tb::batch_norm_geometry g;
    g.pixels = in.P;
    g.channels = in.C;
    return g;
}
// 1 pixel (zero variance), 6 pixels (unbiased factor 6/5 is large), a few odd shapes, and 1020 /
// 2048 pixels (3 and 8 reduction chunks of the kernel).
const std::vector<bn_case> bn_cases = {{1, 1, 1, 3}, {2, 1, 3, 4},   {3, 5, 7, 1},
                                       {2, 3, 5, 3}, {4, 15, 17, 5}, {8, 16, 16, 16}};
}  // namespace

TEST_CASE("cpu batch_norm defaults: momentum 0.1, eps 1e-5") {
    const tb::batch_norm_geometry g;
    CHECK(g.momentum == 0.1f);
    CHECK(g.eps == 1e-5f);
}

TEST_CASE("cpu batch_norm_forward_train matches float64 batch statistics and updates running stats") {
    th::workspace ws;
    std::uint64_t stream = 400;
    for (const auto& bc : bn_cases) {
        INFO("bn n=" << bc.n << " " << bc.h << "x" << bc.w << " c=" << bc.c);
        const auto in = make_bn(bc, stream += 10);
        const auto g = bn_geometry(in);
        const std::size_t P = in.P;
        const int C = in.C;
        fvec y(P * C, nan_f), mean(C, nan_f), inv_std(C, nan_f), rmean = in.rmean, rvar = in.rvar;
        th::batch_norm_forward_train(g, in.x.data(), in.gamma.data(), in.beta.data(), y.data(), mean.data(),
                                     inv_std.data(), rmean.data(), rvar.data(), ws);
        const double eps = g.eps, mom = 0.1;
        const auto ref = bn_forward_ref(P, C, to_d(in.x), to_d(in.gamma), to_d(in.beta), eps);
        // y = gamma*(x-mean)*inv_std + beta: float rounding scales with |gamma|(|x|+|mean|)inv_std + |beta|.
        dvec y_scale(P * C), m_scale(C), is_want(C), rm_want(C), rv_want(C), rv_biased(C);
        for (int c = 0; c < C; ++c) {
            const double is = 1.0 / std::sqrt(ref.var[c] + eps);
            for (std::size_t p = 0; p < P; ++p)
                y_scale[p * C + c] = std::abs(in.gamma[c]) * (std::abs(in.x[p * C + c]) + std::abs(ref.mean[c])) * is +
                                     std::abs(in.beta[c]);
            m_scale[c] = std::abs(ref.mean[c]);
            is_want[c] = is;
            const double unbiased =
                P > 1 ? ref.var[c] * static_cast<double>(P) / static_cast<double>(P - 1) : ref.var[c];
            rm_want[c] = (1 - mom) * in.rmean[c] + mom * ref.mean[c];
            rv_want[c] = (1 - mom) * in.rvar[c] + mom * unbiased;
            rv_biased[c] = (1 - mom) * in.rvar[c] + mom * ref.var[c];
        }
        check_close("y", y, ref.y, y_scale, 1e-5);
        check_close("save_mean", mean, ref.mean, m_scale, 1e-6);
        // inv_std: the variance is summed in float chunks (relative error ~sqrt(chunk)*u ~ 1e-6).
        check_close("save_inv_std", inv_std, is_want, is_want, 1e-5);
        dvec rm_scale(C);
        for (int c = 0; c < C; ++c) rm_scale[c] = (1 - mom) * std::abs(in.rmean[c]) + mom * std::abs(ref.mean[c]);
        check_close("running_mean", rmean, rm_want, rm_scale, 1e-6);
        check_close("running_var (unbiased batch variance)", rvar, rv_want, rv_want, 1e-6);
        if (P > 1 && P < 100) {  // where P/(P-1) is resolvable, the result must be nearer the unbiased value
            for (int c = 0; c < C; ++c)
                CHECK(std::abs(rvar[c] - rv_biased[c]) > 0.5 * std::abs(rv_want[c] - rv_biased[c]));
        }
    }
}

TEST_CASE("cpu batch_norm_forward_eval uses the running statistics") {
    th::workspace ws;
    for (const auto& bc : bn_cases) {
        INFO("bn n=" << bc.n << " " << bc.h << "x" << bc.w << " c=" << bc.c);
        auto in = make_bn(bc, 500);
        // Tiny running variances, where eps is not negligible: a dead channel (0) and one near eps.
        in.rvar[0] = 0.f;
        if (in.C > 1) in.rvar[1] = 2e-5f;
        const auto g = bn_geometry(in);
        const std::size_t P = in.P;
        const int C = in.C;
        fvec y(P * C, nan_f);
        th::batch_norm_forward_eval(g, in.x.data(), in.gamma.data(), in.beta.data(), in.rmean.data(), in.rvar.data(),
                                    y.data(), ws);
        dvec want(P * C), scale(P * C);
        for (std::size_t p = 0; p < P; ++p)
            for (int c = 0; c < C; ++c) {
                const double is = 1.0 / std::sqrt(static_cast<double>(in.rvar[c]) + static_cast<double>(g.eps));
                want[p * C + c] = in.gamma[c] * (static_cast<double>(in.x[p * C + c]) - in.rmean[c]) * is + in.beta[c];
                scale[p * C + c] = std::abs(in.gamma[c]) * (std::abs(in.x[p * C + c]) + std::abs(in.rmean[c])) * is +
                                   std::abs(in.beta[c]);
            }
        check_close("y (eval)", y, want, scale, 1e-5);
    }
}

TEST_CASE("cpu batch_norm_backward matches the float64 chain rule") {
    th::workspace ws;
    std::uint64_t stream = 600;
    for (const auto& bc : bn_cases) {
        INFO("bn n=" << bc.n << " " << bc.h << "x" << bc.w << " c=" << bc.c);
        const auto in = make_bn(bc, stream += 10);
        const auto g = bn_geometry(in);
        const std::size_t P = in.P;
        const int C = in.C;
        fvec y(P * C), mean(C), inv_std(C), rmean = in.rmean, rvar = in.rvar;
        th::batch_norm_forward_train(g, in.x.data(), in.gamma.data(), in.beta.data(), y.data(), mean.data(),
                                     inv_std.data(), rmean.data(), rvar.data(), ws);
        fvec dx(P * C, nan_f), dgamma(C, nan_f), dbeta(C, nan_f);
        th::batch_norm_backward(g, in.x.data(), in.dy.data(), in.gamma.data(), mean.data(), inv_std.data(), dx.data(),
                                dgamma.data(), dbeta.data(), ws);
        dvec dx_want, dg_want, db_want;
        bn_backward_ref(P, C, to_d(in.x), to_d(in.dy), to_d(in.gamma), g.eps, dx_want, dg_want, db_want);
        // Scales: the magnitudes of the three terms of dx = gamma*is/m (m*dy - sum dy - xhat*sum dy*xhat),
        // sum|dy*xhat| for dgamma and sum|dy| for dbeta (the float reductions round relative to these).
        const auto ref = bn_forward_ref(P, C, to_d(in.x), to_d(in.gamma), to_d(in.beta), g.eps);
        dvec dx_scale(P * C), dg_scale(C, 0.0), db_scale(C, 0.0);
        for (int c = 0; c < C; ++c) {
            const double is = 1.0 / std::sqrt(ref.var[c] + g.eps);
            for (std::size_t p = 0; p < P; ++p) {
                dg_scale[c] += std::abs(in.dy[p * C + c] * (in.x[p * C + c] - ref.mean[c]) * is);
                db_scale[c] += std::abs(in.dy[p * C + c]);
            }
            for (std::size_t p = 0; p < P; ++p)
                dx_scale[p * C + c] =
                    std::abs(in.gamma[c]) * is *
                    (std::abs(in.dy[p * C + c]) + db_scale[c] / static_cast<double>(P) +
                     std::abs((in.x[p * C + c] - ref.mean[c]) * is) * dg_scale[c] / static_cast<double>(P));
        }
        check_close("dx", dx, dx_want, dx_scale, 1e-5);
        check_close("dgamma", dgamma, dg_want, dg_scale, 1e-5);
        check_close("dbeta", dbeta, db_want, db_scale, 1e-5);
    }
}

namespace {
/// Ranks as threads of this process, for synchronised batch norm without MPI: sum() waits for every
/// rank, adds their buffers in rank order (as distributed::mpi_world does) and waits again before
/// anyone writes its result.
struct thread_ranks {
    explicit thread_ranks(int n) : size(n), sync(n), buffers(static_cast<std::size_t>(n)) {}
    int size;
    std::barrier<> sync;
    std::vector<const double*> buffers;
};
struct thread_rank final : tricks::distributed::communicator {
    thread_rank(thread_ranks& g, int r) : group(&g), me(r) {}
    thread_ranks* group;
    int me;
    [[nodiscard]] int rank() const noexcept override { return me; }
    [[nodiscard]] int size() const noexcept override { return group->size; }
    void sum(std::span<float>) override { throw std::logic_error("thread_rank: batch norm sums doubles"); }
    void sum(std::span<double> d) override {
        group->buffers[static_cast<std::size_t>(me)] = d.data();
        group->sync.arrive_and_wait();
        std::vector<double> out(d.size());
        for (std::size_t i = 0; i < d.size(); ++i) {
            double acc = group->buffers[0][i];
            for (int r = 1; r < group->size; ++r) acc += group->buffers[static_cast<std::size_t>(r)][i];
            out[i] = acc;
        }
        group->sync.arrive_and_wait();  // every rank has read every buffer
        std::copy(out.begin(), out.end(), d.begin());
    }
    void broadcast(std::string&, int) override { throw std::logic_error("thread_rank: no broadcast here"); }
    [[noreturn]] void abort(const std::string& why, int) override { throw std::logic_error(why); }
};
}  // namespace

TEST_CASE(
    "cpu batch_norm synchronised over ranks = the float64 batch norm of the whole batch (forward, backward, running "
    "stats)") {
    // The ranks' shards are consecutive rows of one batch, of unequal sizes too (the pixel count is
    // summed with the statistics); each rank's outputs are compared with the float64 reference of
    // the whole batch at its rows, and the ranks' dgamma/dbeta (their own sums) add up to the whole's.
    struct sync_case {
        std::vector<int> images;  // per rank
        int h, w, c;
    };
    const std::vector<sync_case> cases = {
        {{3, 5}, 4, 4, 5}, {{4, 4}, 5, 5, 16}, {{2, 1, 3}, 3, 3, 3}, {{1, 1, 1, 1}, 1, 2, 32}};
    std::uint64_t stream = 4200;
    for (const auto& sc : cases) {
        const int ranks = static_cast<int>(sc.images.size());
        int n = 0;
        for (int k : sc.images) n += k;
        INFO("sync bn over " << ranks << " ranks, " << n << " images " << sc.h << "x" << sc.w << " c=" << sc.c);
        const auto in = make_bn({n, sc.h, sc.w, sc.c}, stream += 10);
        const std::size_t P = in.P, hw = static_cast<std::size_t>(sc.h) * sc.w;
        const int C = in.C;
        struct result {
            fvec y, mean, inv_std, rmean, rvar, dx, dgamma, dbeta;
            std::size_t first = 0, pixels = 0;  // the rank's rows of the whole batch
        };
        std::vector<result> got(static_cast<std::size_t>(ranks));
        thread_ranks group(ranks);
        {
            std::vector<std::jthread> threads;
            std::size_t first = 0;
            for (int r = 0; r < ranks; ++r) {
                result& out = got[static_cast<std::size_t>(r)];
                out.first = first;
                out.pixels = static_cast<std::size_t>(sc.images[static_cast<std::size_t>(r)]) * hw;
                first += out.pixels;
                threads.emplace_back([&, r] {
                    thread_rank comm(group, r);
                    th::workspace ws;
                    tb::batch_norm_geometry g;
                    g.pixels = out.pixels;
                    g.channels = C;
                    g.across = &comm;
                    const float* x = in.x.data() + out.first * C;
                    out.y.assign(out.pixels * C, nan_f);
                    out.mean.assign(C, nan_f);
                    out.inv_std.assign(C, nan_f);
                    out.rmean = in.rmean;
                    out.rvar = in.rvar;
                    th::batch_norm_forward_train(g, x, in.gamma.data(), in.beta.data(), out.y.data(), out.mean.data(),
                                                 out.inv_std.data(), out.rmean.data(), out.rvar.data(), ws);
                    out.dx.assign(out.pixels * C, nan_f);
                    out.dgamma.assign(C, nan_f);
                    out.dbeta.assign(C, nan_f);
                    th::batch_norm_backward(g, x, in.dy.data() + out.first * C, in.gamma.data(), out.mean.data(),
                                            out.inv_std.data(), out.dx.data(), out.dgamma.data(), out.dbeta.data(), ws);
                });
            }
        }
        const double eps = 1e-5, mom = 0.1;
        const auto ref = bn_forward_ref(P, C, to_d(in.x), to_d(in.gamma), to_d(in.beta), eps);
        dvec dx_want, dg_want, db_want;
        bn_backward_ref(P, C, to_d(in.x), to_d(in.dy), to_d(in.gamma), eps, dx_want, dg_want, db_want);
        dvec y_scale(P * C), dx_scale(P * C), dg_scale(C, 0.0), db_scale(C, 0.0), m_scale(C), is_want(C), rv_want(C);
        for (int c = 0; c < C; ++c) {
            const double is = 1.0 / std::sqrt(ref.var[c] + eps);
            m_scale[c] = std::abs(ref.mean[c]);
            is_want[c] = is;
            rv_want[c] = (1 - mom) * in.rvar[c] + mom * (P > 1 ? ref.var[c] * double(P) / double(P - 1) : ref.var[c]);
            for (std::size_t p = 0; p < P; ++p) {
                y_scale[p * C + c] = std::abs(in.gamma[c]) * (std::abs(in.x[p * C + c]) + std::abs(ref.mean[c])) * is +
                                     std::abs(in.beta[c]);
                dg_scale[c] += std::abs(in.dy[p * C + c] * (in.x[p * C + c] - ref.mean[c]) * is);
                db_scale[c] += std::abs(in.dy[p * C + c]);
            }
            for (std::size_t p = 0; p < P; ++p)
                dx_scale[p * C + c] = std::abs(in.gamma[c]) * is *
                                      (std::abs(in.dy[p * C + c]) + db_scale[c] / double(P) +
                                       std::abs((in.x[p * C + c] - ref.mean[c]) * is) * dg_scale[c] / double(P));
        }
        const auto rows = [&](const dvec& v, const result& r) {
            return dvec(v.begin() + static_cast<std::ptrdiff_t>(r.first * C),
                        v.begin() + static_cast<std::ptrdiff_t>((r.first + r.pixels) * C));
        };
        dvec dg_sum(C, 0.0), db_sum(C, 0.0);
        for (int r = 0; r < ranks; ++r) {
            const result& g = got[static_cast<std::size_t>(r)];
            INFO("rank " << r);
            check_close("y (global statistics)", g.y, rows(ref.y, g), rows(y_scale, g), 1e-5);
            check_close("save_mean", g.mean, ref.mean, m_scale, 1e-6);
            check_close("save_inv_std", g.inv_std, is_want, is_want, 1e-5);
            check_close("running_var (unbiased over the global batch)", g.rvar, rv_want, rv_want, 1e-6);
            check_close("dx (through the global statistics)", g.dx, rows(dx_want, g), rows(dx_scale, g), 1e-5);
            // Every rank computed its statistics from the same summed bits: identical everywhere.
            CHECK(tricks_test::same_bits(g.mean, got[0].mean));
            CHECK(tricks_test::same_bits(g.inv_std, got[0].inv_std));
            CHECK(tricks_test::same_bits(g.rmean, got[0].rmean));
            CHECK(tricks_test::same_bits(g.rvar, got[0].rvar));
            for (int c = 0; c < C; ++c) {
                dg_sum[c] += g.dgamma[c];
                db_sum[c] += g.dbeta[c];
            }
        }
        check_close("sum over ranks of dgamma", fvec(dg_sum.begin(), dg_sum.end()), dg_want, dg_scale, 1e-5);
        check_close("sum over ranks of dbeta", fvec(db_sum.begin(), db_sum.end()), db_want, db_scale, 1e-5);
    }
}

TEST_CASE("cpu batch_norm gradients agree with central finite differences through the training forward") {
    // L = sum(bn_train(x; gamma, beta) * r), evaluated in double. L is smooth with derivatives of
    // order 1/sigma^k (sigma ~ 0.58 here); with h = 1e-4 the central-difference truncation error is
    // ~h^2/6 * |L'''| ~ 1e-8 and the rounding error ~1e-16 * |L| / h ~ 1e-11, far below the kernel's
    // float rounding, which is bounded as in the backward test (rtol 1e-5 of the term magnitudes);
    // atol 1e-7 covers the truncation term.
    const std::vector<bn_case> cases = {{2, 3, 5, 3}, {1, 2, 3, 2}, {3, 1, 1, 4}};
    th::workspace ws;
    std::uint64_t stream = 700;
    for (const auto& bc : cases) {
        INFO("bn n=" << bc.n << " " << bc.h << "x" << bc.w << " c=" << bc.c);
        const auto in = make_bn(bc, stream += 10);
        const auto g = bn_geometry(in);
        const std::size_t P = in.P;
        const int C = in.C;
        const dvec xd = to_d(in.x), gd = to_d(in.gamma), bd = to_d(in.beta), rd = to_d(in.dy);
        const double eps = g.eps, h = 1e-4;
        auto L = [&](const dvec& x, const dvec& gm, const dvec& bt) {
            return dot(bn_forward_ref(P, C, x, gm, bt, eps).y, rd);
        };
        auto fd = [&](dvec v, std::size_t i, auto&& eval) {
            const double v0 = v[i];
            v[i] = v0 + h;
            const double lp = eval(v);
            v[i] = v0 - h;
            return (lp - eval(v)) / (2 * h);
        };
        dvec fd_x(P * C), fd_g(C), fd_b(C);
        for (std::size_t i = 0; i < P * C; ++i) fd_x[i] = fd(xd, i, [&](const dvec& v) { return L(v, gd, bd); });
        for (int c = 0; c < C; ++c) {
            fd_g[c] = fd(gd, c, [&](const dvec& v) { return L(xd, v, bd); });
            fd_b[c] = fd(bd, c, [&](const dvec& v) { return L(xd, gd, v); });
        }
        fvec y(P * C), mean(C), inv_std(C), rmean = in.rmean, rvar = in.rvar;
        th::batch_norm_forward_train(g, in.x.data(), in.gamma.data(), in.beta.data(), y.data(), mean.data(),
                                     inv_std.data(), rmean.data(), rvar.data(), ws);
        fvec dx(P * C, nan_f), dgamma(C, nan_f), dbeta(C, nan_f);
        th::batch_norm_backward(g, in.x.data(), in.dy.data(), in.gamma.data(), mean.data(), inv_std.data(), dx.data(),
                                dgamma.data(), dbeta.data(), ws);
        const auto ref = bn_forward_ref(P, C, xd, gd, bd, eps);
        dvec dx_scale(P * C), dg_scale(C, 0.0), db_scale(C, 0.0);
        for (int c = 0; c < C; ++c) {
            const double is = 1.0 / std::sqrt(ref.var[c] + eps);
            for (std::size_t p = 0; p < P; ++p) {
                dg_scale[c] += std::abs(rd[p * C + c] * (xd[p * C + c] - ref.mean[c]) * is);
                db_scale[c] += std::abs(rd[p * C + c]);
            }
            for (std::size_t p = 0; p < P; ++p)
                dx_scale[p * C + c] =
                    std::abs(gd[c]) * is *
                    (std::abs(rd[p * C + c]) + db_scale[c] / static_cast<double>(P) +
                     std::abs((xd[p * C + c] - ref.mean[c]) * is) * dg_scale[c] / static_cast<double>(P));
        }
        check_close("dL/dx vs finite differences", dx, fd_x, dx_scale, 1e-5, 1e-7);
        check_close("dL/dgamma vs finite differences", dgamma, fd_g, dg_scale, 1e-5, 1e-7);
        check_close("dL/dbeta vs finite differences", dbeta, fd_b, db_scale, 1e-5, 1e-7);
        // dx of batch norm sums to zero per channel (the mean is subtracted): a property, not a formula.
        for (int c = 0; c < C; ++c) {
            double s = 0;
            for (std::size_t p = 0; p < P; ++p) s += dx[p * C + c];
            CHECK(std::abs(s) <= 1e-5 * static_cast<double>(P) * dx_scale[c]);
        }
    }
}

// =================================================================================================
// Pooling
// =================================================================================================

TEST_CASE("cpu max_pool forward/backward match a naive reference") {
    // 3x3 s2 p1 (ImageNet stem) on odd sizes, all-negative inputs (padding must act as -inf, not 0);
    // 2x2 s2 floor and ceil; a 3x3 s1 p1 case where windows overlap by two.
    const std::vector<pool_case> cases = {
        {2, 7, 9, 3, 3, 2, 1, false, true},
        {1, 8, 6, 2, 3, 2, 1, false, true},
        {2, 7, 9, 3, 2, 2, 0, false, true},
        {1, 7, 9, 2, 2, 2, 0, true, true},
        {1, 5, 6, 4, 3, 1, 1, false, true},
        {3, 7, 7, 5, 3, 2, 1, true, true},
        // ceil mode where ceil((in+2p-k)/s)+1 would add a window starting in the right padding (dropped)
        {1, 5, 5, 2, 2, 2, 1, true, true},
        {2, 4, 7, 3, 3, 3, 1, true, true},
        // one image large enough to spread its rows over the threads, 37 channels (a vector and a
        // remainder), and again with values from six levels: equal maxima, where the first wins
        {1, 40, 38, 37, 3, 2, 1, false, true},
        {1, 40, 38, 37, 3, 2, 1, false, false}};
    std::uint64_t stream = 800;
    for (const auto& c : cases) {
        INFO(describe(c));
        const ref_pool ref(c);
        const auto g = geometry(c);
        CHECK(g.out() == shape4{c.n, ref.oh, ref.ow, c.c});
        fvec x = distinct_vec(ref.x_size(), stream++, -1000.f);  // all negative in the small cases
        if (c.c == 37 && !c.count_include_pad)
            for (auto& v : x) v = -1000.f + std::floor(std::fmod(-v, 3.f));  // ties in most windows
        const dvec xd = to_d(x);
        fvec y(ref.y_size(), nan_f);
        std::vector<std::int32_t> arg(ref.y_size(), -7);
        th::max_pool_forward(g, x.data(), y.data(), arg.data());
        dvec want(ref.y_size());
        std::vector<std::size_t> want_arg(ref.y_size());
        for (int n = 0; n < c.n; ++n)
            for (int oy = 0; oy < ref.oh; ++oy)
                for (int ox = 0; ox < ref.ow; ++ox)
                    for (int ch = 0; ch < c.c; ++ch) {
                        const auto o = ref.yi(n, oy, ox, ch);
                        want_arg[o] = ref.argmax(xd, n, oy, ox, ch);
                        want[o] = xd[want_arg[o]];
                    }
        check_close("y", y, want, dvec(want.size(), 0.0), 0.0);  // a max is exact
        fvec y_only(ref.y_size(), nan_f);  // no argmax (an evaluation that lends): the same maxima
        th::max_pool_forward(g, x.data(), y_only.data(), nullptr);
        CHECK(tricks_test::same_bits(y_only, y));
        std::size_t wrong_arg = 0;
        for (std::size_t o = 0; o < arg.size(); ++o) wrong_arg += static_cast<std::size_t>(arg[o]) != want_arg[o];
        CHECK(wrong_arg == 0);

        const fvec dy = uniform_vec(ref.y_size(), stream++);
        fvec dx(ref.x_size(), nan_f);
        th::max_pool_backward(g, dy.data(), arg.data(), dx.data());
        dvec dx_want(ref.x_size(), 0.0), dx_scale(ref.x_size(), 0.0);
        for (std::size_t o = 0; o < want_arg.size(); ++o) {
            dx_want[want_arg[o]] += dy[o];
            dx_scale[want_arg[o]] += std::abs(dy[o]);
        }
        check_close("dx", dx, dx_want, dx_scale, 1e-6);
    }
}

TEST_CASE("cpu avg_pool forward/backward match a naive reference (ceil mode, padding counted or not)") {
    const std::vector<pool_case> cases = {
        {2, 5, 7, 3, 2, 2, 0, true, false},   // ResNet-D shortcut: 5x7 -> 3x4, last row/col windows cut
        {1, 5, 7, 2, 2, 2, 0, true, true},    // same windows, include_pad (nothing to include: ceil part not counted)
        {2, 7, 9, 3, 3, 2, 1, false, true},   // padding counted: always divide by 9
        {2, 7, 9, 3, 3, 2, 1, false, false},  // padding not counted
        {1, 6, 6, 2, 3, 2, 1, true, true},    // ceil + padding counted: last window 2x2 of padded input
        {1, 6, 6, 2, 3, 2, 1, true, false},  {3, 4, 5, 4, 2, 2, 1, false, false}, {1, 8, 8, 16, 2, 2, 0, false, true},
        {1, 5, 5, 2, 2, 2, 1, true, false},  // ceil: a 4th window would start in the right padding (dropped)
        {2, 4, 7, 3, 3, 3, 1, true, true}};
    std::uint64_t stream = 900;
    for (const auto& c : cases) {
        INFO(describe(c));
        const ref_pool ref(c);
        const auto g = geometry(c);
        CHECK(g.out() == shape4{c.n, ref.oh, ref.ow, c.c});
        const fvec x = uniform_vec(ref.x_size(), stream++);
        const fvec dy = uniform_vec(ref.y_size(), stream++);
        dvec want(ref.y_size()), scale(ref.y_size()), dx_want(ref.x_size(), 0.0), dx_scale(ref.x_size(), 0.0);
        for (int n = 0; n < c.n; ++n)
            for (int oy = 0; oy < ref.oh; ++oy)
                for (int ox = 0; ox < ref.ow; ++ox)
                    for (int ch = 0; ch < c.c; ++ch) {
                        const auto o = ref.yi(n, oy, ox, ch);
                        const double div = ref.divisor(oy, ox);
                        double s = 0, a = 0;
                        ref.for_window(oy, ox, [&](int iy, int ix) {
                            const auto i = ref.xi(n, iy, ix, ch);
                            s += x[i];
                            a += std::abs(x[i]);
                            dx_want[i] += dy[o] / div;
                            dx_scale[i] += std::abs(dy[o]) / div;
                        });
                        want[o] = s / div;
                        scale[o] = a / div;
                    }
        fvec y(ref.y_size(), nan_f), dx(ref.x_size(), nan_f);
        th::avg_pool_forward(g, x.data(), y.data());
        th::avg_pool_backward(g, dy.data(), dx.data());
        check_close("y", y, want, scale, 1e-6);
        check_close("dx", dx, dx_want, dx_scale, 1e-6);
    }
}

TEST_CASE("cpu avg_pool 2x2 s2 ceil, padding not counted, on 5x7: edge windows divide by their valid count") {
    // Values pinned by hand, independent of the reference: the last row of windows covers input row 4
    // only, the last column input column 6 only, the corner the single element x[4][6].
    tb::pool_geometry g;
    g.in = {1, 5, 7, 1};
    g.k = 2;
    g.stride = 2;
    g.ceil_mode = true;
    g.count_include_pad = false;
    REQUIRE(g.out() == shape4{1, 3, 4, 1});
    fvec x(35);
    for (int i = 0; i < 35; ++i) x[i] = static_cast<float>(i);  // x[r][c] = 7r + c
    fvec y(12, nan_f);
    th::avg_pool_forward(g, x.data(), y.data());
    CHECK(y[0] == doctest::Approx((0 + 1 + 7 + 8) / 4.0));
    CHECK(y[3] == doctest::Approx((6 + 13) / 2.0));   // last column: 2 valid of 4
    CHECK(y[8] == doctest::Approx((28 + 29) / 2.0));  // last row: 2 valid of 4
    CHECK(y[11] == doctest::Approx(34.0));            // corner: 1 valid of 4
    fvec dy(12, 1.f), dx(35, nan_f);
    th::avg_pool_backward(g, dy.data(), dx.data());
    CHECK(dx[0] == doctest::Approx(0.25));
    CHECK(dx[6] == doctest::Approx(0.5));
    CHECK(dx[28] == doctest::Approx(0.5));
    CHECK(dx[34] == doctest::Approx(1.0));
}

TEST_CASE("cpu global_avg_pool forward/backward match a naive reference") {
    const std::vector<shape4> shapes = {{3, 7, 5, 4}, {1, 1, 1, 3}, {2, 8, 8, 16}};
    std::uint64_t stream = 950;
    for (const auto s : shapes) {
        INFO("global avg pool " << s);
        const fvec x = uniform_vec(s.size(), stream++), dy = uniform_vec(static_cast<std::size_t>(s.n) * s.c, stream++);
        const std::size_t hw = static_cast<std::size_t>(s.h) * s.w;
        dvec want(static_cast<std::size_t>(s.n) * s.c, 0.0), scale(want.size(), 0.0), dx_want(s.size());
        for (int n = 0; n < s.n; ++n)
            for (std::size_t p = 0; p < hw; ++p)
                for (int c = 0; c < s.c; ++c) {
                    const auto i = (n * hw + p) * s.c + c;
                    want[static_cast<std::size_t>(n) * s.c + c] += x[i] / static_cast<double>(hw);
                    scale[static_cast<std::size_t>(n) * s.c + c] += std::abs(x[i]) / static_cast<double>(hw);
                    dx_want[i] = dy[static_cast<std::size_t>(n) * s.c + c] / static_cast<double>(hw);
                }
        fvec y(want.size(), nan_f), dx(s.size(), nan_f);
        th::global_avg_pool_forward(s, x.data(), y.data());
        th::global_avg_pool_backward(s, dy.data(), dx.data());
        check_close("y", y, want, scale, 1e-5);
        check_close("dx", dx, dx_want, abs_d(dx_want), 1e-6);
    }
}

// =================================================================================================
// Element-wise, linear, loss
// =================================================================================================

TEST_CASE("cpu relu and add_relu forward/backward") {
    const std::size_t n = 1037;  // not a multiple of any SIMD width
    fvec x = uniform_vec(n, 1000), b = uniform_vec(n, 1001), dy = uniform_vec(n, 1002);
    x[0] = 0.f;
    x[1] = -0.f;
    x[2] = 1e-30f;
    x[3] = -1e-30f;
    fvec y(n, nan_f), dx(n, nan_f), s(n, nan_f);
    th::relu_forward(n, x.data(), y.data());
    th::relu_backward(n, y.data(), dy.data(), dx.data());
    th::add_relu_forward(n, x.data(), b.data(), s.data());
    std::size_t bad_y = 0, bad_dx = 0, bad_s = 0;
    for (std::size_t i = 0; i < n; ++i) {
        bad_y += y[i] != (x[i] > 0 ? x[i] : 0.f);
        bad_dx += dx[i] != (x[i] > 0 ? dy[i] : 0.f);
        // a + b of two floats is exact in double; its rounding to float is the correctly rounded float sum.
        const float sum = static_cast<float>(static_cast<double>(x[i]) + static_cast<double>(b[i]));
        bad_s += s[i] != (sum > 0 ? sum : 0.f);
    }
    CHECK(bad_y == 0);
    CHECK(bad_dx == 0);
    CHECK(bad_s == 0);
    CHECK(y[2] == 1e-30f);
    CHECK(dx[2] == dy[2]);
    CHECK(dx[0] == 0.f);
    // In place: dx aliases dy.
    fvec inplace = dy;
    th::relu_backward(n, y.data(), inplace.data(), inplace.data());
    CHECK(tricks_test::same_bits(inplace, dx));
}

TEST_CASE("cpu linear_forward/backward match a naive reference and finite differences") {
    // L = sum(y * r) is affine in x, w and b: central differences in double are exact up to rounding
    // (~1e-16 * |L| / h), so the comparison measures the float GEMM's rounding (file comment).
    struct lin_case {
        int n, in, out;
        bool bias;
    };
    const std::vector<lin_case> cases = {
        {3, 17, 5, true}, {1, 1, 1, true}, {4, 9, 10, false}, {7, 64, 10, true}, {9, 70, 130, true}};
    std::uint64_t stream = 1100;
    for (const auto& c : cases) {
        INFO("linear n=" << c.n << " in=" << c.in << " out=" << c.out << " bias=" << c.bias);
        const auto nx = static_cast<std::size_t>(c.n) * c.in, nw = static_cast<std::size_t>(c.in) * c.out,
                   ny = static_cast<std::size_t>(c.n) * c.out;
        const fvec x = uniform_vec(nx, stream++), w = uniform_vec(nw, stream++), b = uniform_vec(c.out, stream++),
                   r = uniform_vec(ny, stream++);
        const dvec xd = to_d(x), wd = to_d(w), bd = to_d(b), rd = to_d(r);
        const dvec* bp = c.bias ? &bd : nullptr;
        fvec y(ny, nan_f);
        th::linear_forward(c.n, c.in, c.out, x.data(), w.data(), c.bias ? b.data() : nullptr, y.data());
        const dvec absb = abs_d(bd);
        check_close("y", y, linear_ref(c.n, c.in, c.out, xd, wd, bp),
                    linear_ref(c.n, c.in, c.out, abs_d(xd), abs_d(wd), c.bias ? &absb : nullptr), 1e-5);

        fvec dx(nx, nan_f), dw(nw, nan_f), db(c.out, nan_f);
        th::linear_backward(c.n, c.in, c.out, x.data(), w.data(), r.data(), dx.data(), dw.data(), db.data());
        // Naive adjoints: dx = r W^T, dw = x^T r, db = column sums of r.
        dvec dx_want(nx, 0.0), dx_scale(nx, 0.0), dw_want(nw, 0.0), dw_scale(nw, 0.0), db_want(c.out, 0.0),
            db_scale(c.out, 0.0);
        for (int i = 0; i < c.n; ++i)
            for (int j = 0; j < c.in; ++j)
                for (int o = 0; o < c.out; ++o) {
                    const double rv = rd[static_cast<std::size_t>(i) * c.out + o];
                    const double xv = xd[static_cast<std::size_t>(i) * c.in + j],
                                 wv = wd[static_cast<std::size_t>(j) * c.out + o];
                    dx_want[static_cast<std::size_t>(i) * c.in + j] += rv * wv;
                    dx_scale[static_cast<std::size_t>(i) * c.in + j] += std::abs(rv * wv);
                    dw_want[static_cast<std::size_t>(j) * c.out + o] += xv * rv;
                    dw_scale[static_cast<std::size_t>(j) * c.out + o] += std::abs(xv * rv);
                }
        for (int i = 0; i < c.n; ++i)
            for (int o = 0; o < c.out; ++o) {
                db_want[o] += rd[static_cast<std::size_t>(i) * c.out + o];
                db_scale[o] += std::abs(rd[static_cast<std::size_t>(i) * c.out + o]);
            }
        check_close("dx", dx, dx_want, dx_scale, 1e-5);
        check_close("dw", dw, dw_want, dw_scale, 1e-5);
        check_close("db", db, db_want, db_scale, 1e-5);

        // Finite differences of L = sum(linear(x, w, b) * r).
        const double h = 0.5;
        auto L = [&](const dvec& xv, const dvec& wv, const dvec& bv) {
            return dot(linear_ref(c.n, c.in, c.out, xv, wv, c.bias ? &bv : nullptr), rd);
        };
        auto fd_all = [&](const dvec& v0, auto&& eval) {
            dvec g(v0.size());
            for (std::size_t i = 0; i < v0.size(); ++i) {
                dvec vp = v0, vm = v0;
                vp[i] += h;
                vm[i] -= h;
                g[i] = (eval(vp) - eval(vm)) / (2 * h);
            }
            return g;
        };
        check_close("dL/dx vs finite differences", dx, fd_all(xd, [&](const dvec& v) { return L(v, wd, bd); }),
                    dx_scale, 1e-5, 1e-12);
        check_close("dL/dw vs finite differences", dw, fd_all(wd, [&](const dvec& v) { return L(xd, v, bd); }),
                    dw_scale, 1e-5, 1e-12);
        if (c.bias)
            check_close("dL/db vs finite differences", db, fd_all(bd, [&](const dvec& v) { return L(xd, wd, v); }),
                        db_scale, 1e-5, 1e-12);

        // Optional outputs: dx and db may be null; dw is still computed.
        fvec dw2(nw, nan_f);
        th::linear_backward(c.n, c.in, c.out, x.data(), w.data(), r.data(), nullptr, dw2.data(), nullptr);
        CHECK(tricks_test::same_bits(dw2, dw));
    }
}

TEST_CASE("cpu softmax_cross_entropy: closed forms, float64 reference and finite-difference gradient") {
    SUBCASE("uniform logits: loss = log K for hard and soft targets, gradient (1/K - q) / n") {
        const int n = 3, k = 10;
        fvec z(n * k, 3.75f), q(n * k, 0.f);
        for (int i = 0; i < n; ++i) q[i * k + (3 * i + 1) % k] = 1.f;  // hard labels
        fvec dz(n * k, nan_f), p(n * k, nan_f);
        const double loss = th::softmax_cross_entropy(n, k, z.data(), q.data(), dz.data(), p.data());
        CHECK(loss == doctest::Approx(std::log(10.0)).epsilon(1e-12));
        for (int i = 0; i < n * k; ++i) {
            CHECK(p[i] == doctest::Approx(0.1).epsilon(1e-7));
            CHECK(dz[i] == doctest::Approx((0.1 - q[i]) / n).epsilon(1e-6));
        }
        // Soft targets (label smoothing, eps = 0.1): still log K when the logits carry no information.
        for (int i = 0; i < n * k; ++i) q[i] = q[i] == 1.f ? 0.9f + 0.1f / k : 0.1f / k;
        CHECK(th::softmax_cross_entropy(n, k, z.data(), q.data(), nullptr) ==
              doctest::Approx(std::log(10.0)).epsilon(1e-6));
    }
    SUBCASE("two classes: loss = log(1 + exp(-a)) for logits (a, 0) and label 0") {
        for (const float a : {-3.f, -0.5f, 0.f, 1.25f, 8.f}) {
            const fvec z = {a, 0.f}, q = {1.f, 0.f};
            fvec dz(2, nan_f);
            const double loss = th::softmax_cross_entropy(1, 2, z.data(), q.data(), dz.data());
            const double s = 1.0 / (1.0 + std::exp(-static_cast<double>(a)));  // p_0
            CHECK(loss == doctest::Approx(std::log1p(std::exp(-static_cast<double>(a)))).epsilon(1e-12));
            CHECK(dz[0] == doctest::Approx(s - 1.0).epsilon(1e-6));
            CHECK(dz[1] == doctest::Approx(1.0 - s).epsilon(1e-6));
        }
    }
    SUBCASE("random logits, soft targets: loss vs float64, gradient vs central differences") {
        // The kernel subtracts the row maximum in float (relative error ~u of |z| <= 4 on each logit
        // difference) and rounds p and dz to float: ~3e-7 relative on p, hence rtol 2e-6 on dz with
        // scale (p + q)/n. The central difference (h = 1e-5) of the smooth double loss has truncation
        // ~h^2 |L'''| ~ 1e-10 and rounding ~1e-16 / h ~ 1e-11: atol 1e-9.
        const int n = 5, k = 7;
        const fvec z = uniform_vec(n * k, 1200, -4.f, 4.f);
        fvec q = uniform_vec(n * k, 1201, 0.f, 1.f);
        q[2] = 0.f;                    // a zero target entry (the kernel skips it in the loss)
        for (int i = 0; i < n; ++i) {  // rows sum to 1: the kernel's precondition for dz = (p - q) / n
            float s = 0;
            for (int j = 0; j < k; ++j) s += q[i * k + j];
            for (int j = 0; j < k; ++j) q[i * k + j] /= s;
        }
        const dvec zd = to_d(z), qd = to_d(q);
        fvec dz(n * k, nan_f), p(n * k, nan_f);
        const double loss = th::softmax_cross_entropy(n, k, z.data(), q.data(), dz.data(), p.data());
        CHECK(loss == doctest::Approx(cross_entropy_ref(n, k, zd, qd)).epsilon(1e-6));
        const double h = 1e-5;
        dvec fd(n * k), scale(n * k);
        const dvec pref = softmax_ref(n, k, zd, 1.0);
        for (int i = 0; i < n * k; ++i) {
            dvec zp = zd, zm = zd;
            zp[i] += h;
            zm[i] -= h;
            fd[i] = (cross_entropy_ref(n, k, zp, qd) - cross_entropy_ref(n, k, zm, qd)) / (2 * h);
            scale[i] = (pref[i] + qd[i]) / n;
        }
        check_close("dz vs finite differences", dz, fd, scale, 2e-6, 1e-9);
        check_close("p", p, pref, pref, 1e-6);
    }
    SUBCASE("large logits stay finite") {
        const fvec z = {1000.f, 0.f, -1000.f, 999.f}, q = {0.f, 0.f, 0.5f, 0.5f};
        fvec dz(4, nan_f);
        const double loss = th::softmax_cross_entropy(1, 4, z.data(), q.data(), dz.data());
        CHECK(loss == doctest::Approx(cross_entropy_ref(1, 4, to_d(z), to_d(q))).epsilon(1e-9));
        for (float v : dz) CHECK(std::isfinite(v));
    }
}

TEST_CASE("cpu softmax with temperature matches exp(z/T) / sum exp(z/T)") {
    const int n = 4, k = 6;
    const fvec z = uniform_vec(n * k, 1300, -5.f, 5.f);
    const fvec q(n * k, 1.f / k);
    fvec p_ce(n * k, nan_f);
    th::softmax_cross_entropy(n, k, z.data(), q.data(), nullptr, p_ce.data());
    for (const float T : {1.f, 0.5f, 2.f, 4.f, 20.f}) {
        INFO("T=" << T);
        fvec p(n * k, nan_f);
        th::softmax(n, k, z.data(), T, p.data());
        const dvec want = softmax_ref(n, k, to_d(z), T);
        // exp((z - m) / T) with z - m rounded in float: relative error ~u * |z - m| / T <= 1.2e-6 at T = 0.5.
        check_close("p", p, want, want, 4e-6);
        for (int i = 0; i < n; ++i) {
            double s = 0;
            for (int j = 0; j < k; ++j) s += p[i * k + j];
            CHECK(s == doctest::Approx(1.0).epsilon(1e-6));
        }
        if (T == 1.f) check_close("p vs cross-entropy p (T = 1)", p, to_d(p_ce), to_d(p_ce), 1e-6);
    }
}

// =================================================================================================
// Shape errors
// =================================================================================================

TEST_CASE("cpu conv2d rejects bad shapes with a tricks::shape_error naming the numbers") {
    th::workspace ws;
    fvec buf(4096, 0.f);
    auto all_three = [&](const tb::conv_geometry& g, const std::vector<std::string>& parts) {
        for (int which = 0; which < 3; ++which) {
            INFO("entry point " << which);
            const std::string msg = shape_error_message([&] {
                if (which == 0) th::conv2d_forward(g, buf.data(), buf.data(), buf.data(), ws);
                if (which == 1) th::conv2d_backward_data(g, buf.data(), buf.data(), buf.data(), ws);
                if (which == 2) th::conv2d_backward_filter(g, buf.data(), buf.data(), buf.data(), ws);
            });
            INFO("message: " << msg);
            CHECK(contains(msg, "tricks::"));
            for (const auto& p : parts) CHECK_MESSAGE(contains(msg, p), "missing '" << p << "'");
        }
    };
    SUBCASE("batch 0") { all_three(geometry(conv_case{0, 5, 5, 3, 4, 3, 3, 1, 1}), {"n=0"}); }
    SUBCASE("input channels 0") { all_three(geometry(conv_case{2, 5, 5, 0, 4, 3, 3, 1, 1}), {"cin=0"}); }
    SUBCASE("output channels 0") { all_three(geometry(conv_case{2, 5, 5, 3, 0, 3, 3, 1, 1}), {"cout=0"}); }
    SUBCASE("kernel larger than the padded input") {
        // 3x4 input, pad 1 -> 5x6 padded; a 7x3 kernel does not fit.
        all_three(geometry(conv_case{1, 3, 4, 2, 2, 7, 3, 1, 1}), {"7x3", "5x6"});
    }
    SUBCASE("kernel wider than the padded input") {
        all_three(geometry(conv_case{1, 9, 2, 1, 1, 3, 5, 2, 1}), {"3x5", "11x4"});
    }
    SUBCASE("is a tricks::error") {
        CHECK_THROWS_AS(
            th::conv2d_forward(geometry(conv_case{0, 5, 5, 3, 4, 3, 3, 1, 1}), buf.data(), buf.data(), buf.data(), ws),
            tricks::error);
    }
    SUBCASE("a kernel exactly as large as the padded input is fine") {
        const conv_case c{1, 3, 4, 1, 1, 5, 6, 1, 1};
        fvec y(1, nan_f);
        CHECK_NOTHROW(th::conv2d_forward(geometry(c), buf.data(), buf.data(), y.data(), ws));
        CHECK(y[0] == 0.f);
    }
}

TEST_CASE("cpu pooling rejects a window larger than the padded input") {
    fvec buf(4096, 0.f);
    std::vector<std::int32_t> arg(4096);
    tb::pool_geometry g;
    g.in = {1, 3, 4, 2};
    g.k = 5;
    g.stride = 2;
    g.pad = 0;
    for (const bool is_max : {true, false}) {
        INFO((is_max ? "max_pool" : "avg_pool"));
        const std::string msg = shape_error_message([&] {
            if (is_max)
                th::max_pool_forward(g, buf.data(), buf.data(), arg.data());
            else
                th::avg_pool_forward(g, buf.data(), buf.data());
        });
        INFO("message: " << msg);
        CHECK(contains(msg, "tricks::"));
        CHECK(contains(msg, "5"));
        CHECK(contains(msg, "3x4"));
    }
    g.pad = 1;  // padded 5x6: the 5-window now fits
    CHECK_NOTHROW(th::max_pool_forward(g, buf.data(), buf.data(), arg.data()));
    CHECK_NOTHROW(th::avg_pool_forward(g, buf.data(), buf.data()));
    g.in = {0, 3, 4, 2};
    CHECK_THROWS_AS(th::avg_pool_forward(g, buf.data(), buf.data()), tricks::shape_error);
}

// =================================================================================================
// Determinism across thread counts
// =================================================================================================

namespace {
int threads_before_determinism_test = 0;
}

TEST_CASE("cpu conv2d and batch_norm results are bit-identical on 1, 2 and 3 threads") {
    if (threads_before_determinism_test == 0) threads_before_determinism_test = omp_get_max_threads();
    const omp_threads_guard guard;
    SUBCASE("conv2d") {
        // Filter-gradient partial-sum counts: 16 groups over 20 images (direct kernel) and over 33
        // (stride 2), 8 row tiles (pointwise), 4 groups over 5 tiles (im2col, k*cout > 2^18); plus
        // multi-tile images.
        // Winograd F(4x4): 20 images of 4 tiles (8 per forward block, 16 per filter chunk), 9 of 16;
        // F(2x2): 7 images of 9 tiles (5x5 output).
        const std::vector<conv_case> cases = {{20, 8, 8, 8, 16, 3, 3, 1, 1},
                                              {9, 14, 14, 32, 32, 3, 3, 1, 1},
                                              {7, 5, 5, 16, 16, 3, 3, 1, 1},
                                              {33, 7, 9, 16, 32, 3, 3, 2, 1},
                                              {4, 32, 32, 8, 8, 1, 1, 1, 0},
                                              {5, 3, 3, 128, 256, 3, 3, 1, 1},
                                              {2, 24, 24, 16, 3, 3, 3, 1, 1},
                                              {3, 9, 7, 5, 16, 7, 7, 2, 3},
                                              // one image spread over the threads: 26x23 (42 F(4x4) tiles in
                                              // blocks), 7x7 (its Winograd GEMMs by position), a 1x1 by
                                              // column chunks, the direct kernel by output rows (forward and
                                              // backward-data); the packed GEMM over 2 row tiles x 2 column
                                              // chunks, and with 3 K chunks; one row tile whose columns
                                              // are cut narrower than gemm_nc so every thread has an item
                                              // (1x1: 256 and 232 columns; stride 2: 96)
                                              {1, 26, 23, 16, 16, 3, 3, 1, 1},
                                              {1, 14, 14, 128, 256, 1, 1, 1, 0},
                                              {1, 10, 10, 100, 232, 1, 1, 1, 0},
                                              {1, 14, 14, 64, 96, 3, 3, 2, 1},
                                              {1, 7, 7, 32, 40, 3, 3, 1, 1},
                                              {1, 15, 13, 8, 24, 3, 3, 2, 1},
                                              {1, 12, 10, 16, 24, 3, 3, 1, 1},
                                              {1, 9, 9, 48, 200, 1, 1, 1, 0},
                                              {1, 33, 31, 16, 264, 3, 3, 2, 1},
                                              {2, 9, 9, 64, 128, 3, 3, 2, 1}};
        std::uint64_t stream = 1400;
        for (const auto& c : cases) {
            for (const auto algo : {tb::conv_algo::winograd, tb::conv_algo::direct}) {
                INFO(describe(c) << " algo " << std::string(tb::to_string(algo)));
                const ref_conv ref(c);
                const auto g = geometry(c);
                const fvec x = uniform_vec(ref.x_size(), stream++), w = uniform_vec(ref.w_size(), stream++),
                           dy = uniform_vec(ref.y_size(), stream++);
                std::vector<fvec> ys, dxs, dws;
                th::workspace shared_ws;               // reused across thread counts (grows when threads are added)
                for (const int threads : {1, 3, 2}) {  // shared_ws grows at 3 threads, is reused at 2
                    omp_set_num_threads(threads);
                    REQUIRE(omp_get_max_threads() == threads);
                    th::workspace ws;
                    fvec y(ref.y_size(), nan_f), dx(ref.x_size(), nan_f), dw(ref.w_size(), nan_f),
                        dw2(ref.w_size(), nan_f);
                    th::conv2d_forward(g, x.data(), w.data(), y.data(), ws, {}, algo);
                    th::conv2d_backward_data(g, dy.data(), w.data(), dx.data(), ws, algo);
                    th::conv2d_backward_filter(g, x.data(), dy.data(), dw.data(), ws, algo);
                    th::conv2d_backward_filter(g, x.data(), dy.data(), dw2.data(), shared_ws, algo);
                    CHECK(tricks_test::same_bits(dw, dw2));
                    ys.push_back(std::move(y));
                    dxs.push_back(std::move(dx));
                    dws.push_back(std::move(dw));
                }
                for (std::size_t i = 1; i < ys.size(); ++i) {
                    INFO("run " << i << " vs run 0 (1 thread)");
                    CHECK(tricks_test::same_bits(ys[i], ys[0]));
                    CHECK(tricks_test::same_bits(dxs[i], dxs[0]));
                    CHECK(tricks_test::same_bits(dws[i], dws[0]));
                }
            }
        }
    }
    SUBCASE("batch_norm") {
        for (const auto& bc : {bn_case{8, 16, 16, 16}, bn_case{4, 15, 17, 5}, bn_case{64, 32, 32, 3}}) {
            INFO("bn n=" << bc.n << " " << bc.h << "x" << bc.w << " c=" << bc.c);
            const auto in = make_bn(bc, 1500);
            const auto g = bn_geometry(in);
            const std::size_t P = in.P;
            const int C = in.C;
            std::vector<std::vector<fvec>> runs;
            for (const int threads : {1, 2, 3}) {
                omp_set_num_threads(threads);
                REQUIRE(omp_get_max_threads() == threads);
                th::workspace ws;
                fvec y(P * C, nan_f), mean(C, nan_f), inv_std(C, nan_f), rmean = in.rmean, rvar = in.rvar;
                fvec dx(P * C, nan_f), dgamma(C, nan_f), dbeta(C, nan_f);
                th::batch_norm_forward_train(g, in.x.data(), in.gamma.data(), in.beta.data(), y.data(), mean.data(),
                                             inv_std.data(), rmean.data(), rvar.data(), ws);
                th::batch_norm_backward(g, in.x.data(), in.dy.data(), in.gamma.data(), mean.data(), inv_std.data(),
                                        dx.data(), dgamma.data(), dbeta.data(), ws);
                runs.push_back({y, mean, inv_std, rmean, rvar, dx, dgamma, dbeta});
            }
            const char* names[] = {"y",           "save_mean", "save_inv_std", "running_mean",
                                   "running_var", "dx",        "dgamma",       "dbeta"};
            for (std::size_t r = 1; r < runs.size(); ++r)
                for (std::size_t i = 0; i < runs[0].size(); ++i) {
                    INFO(names[i] << ": " << r + 1 << " threads vs 1");
                    CHECK(tricks_test::same_bits(runs[r][i], runs[0][i]));
                }
        }
    }
}

TEST_CASE("cpu determinism test restored the thread count") {
    // Runs after the test above (doctest orders by file and line): it must have left the count as found.
    REQUIRE(threads_before_determinism_test > 0);
    CHECK(omp_get_max_threads() == threads_before_determinism_test);
}
