#pragma once
// tensor<T>: an owning, 64-byte aligned NHWC buffer. Resizing to a size that fits the current
// capacity never allocates, so layers that keep their buffers between steps allocate only on the
// first step (and when the batch grows).
#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <utility>

#include "tricks/core/dtype.hpp"
#include "tricks/core/error.hpp"
#include "tricks/core/shape.hpp"

namespace tricks {

namespace detail {
struct aligned_free {
    void operator()(void* p) const noexcept { ::operator delete (p, std::align_val_t{64}); }
};
}  // namespace detail

template <class T = float>
class tensor {
public:
    tensor() = default;
    explicit tensor(shape4 s) { resize(s); }
    tensor(shape4 s, T fill) {
        resize(s);
        std::fill_n(data(), size(), fill);
    }
    tensor(const tensor& o) : tensor(o.shape_) { std::copy_n(o.data(), size(), data()); }
    tensor& operator=(const tensor& o) {
        if (this != &o) {
            resize(o.shape_);
            std::copy_n(o.data(), size(), data());
        }
        return *this;
    }
    /// A moved-from tensor is empty (no buffer, capacity 0), so resizing it allocates again.
    tensor(tensor&& o) noexcept
        : buf_(std::move(o.buf_)), capacity_(std::exchange(o.capacity_, 0)), shape_(std::exchange(o.shape_, {})) {}
    tensor& operator=(tensor&& o) noexcept {
        if (this != &o) {
            buf_ = std::move(o.buf_);
            capacity_ = std::exchange(o.capacity_, 0);
            shape_ = std::exchange(o.shape_, {});
        }
        return *this;
    }

    /// Changes the shape; keeps the allocation when it is large enough (contents are then stale).
    void resize(shape4 s) {
        if (s.n < 0 || s.h < 0 || s.w < 0 || s.c < 0)
            throw shape_error(detail::cat("tricks::tensor: negative extent in ", s));
        const std::size_t need = s.size();
        if (need > capacity_) {
            buf_.reset(static_cast<T*>(::operator new (need * sizeof(T), std::align_val_t{64})));
            capacity_ = need;
        }
        shape_ = s;
    }
    void zero() noexcept {
        if (size()) std::memset(static_cast<void*>(data()), 0, size() * sizeof(T));
    }
    void fill(T v) noexcept { std::fill_n(data(), size(), v); }

    [[nodiscard]] shape4 shape() const noexcept { return shape_; }
    [[nodiscard]] std::size_t size() const noexcept { return shape_.size(); }
    [[nodiscard]] bool empty() const noexcept { return size() == 0; }
    /// Elements the buffer holds (>= size()).
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] T* data() noexcept { return buf_.get(); }
    [[nodiscard]] const T* data() const noexcept { return buf_.get(); }
    [[nodiscard]] std::span<T> span() noexcept { return {data(), size()}; }
    [[nodiscard]] std::span<const T> span() const noexcept { return {data(), size()}; }
    T& operator[](std::size_t i) noexcept { return buf_.get()[i]; }
    const T& operator[](std::size_t i) const noexcept { return buf_.get()[i]; }
    /// Element (n, y, x, c) in NHWC order.
    T& at(int n, int y, int x, int c) noexcept { return buf_.get()[index(n, y, x, c)]; }
    const T& at(int n, int y, int x, int c) const noexcept { return buf_.get()[index(n, y, x, c)]; }
    [[nodiscard]] std::size_t index(int n, int y, int x, int c) const noexcept {
        return ((static_cast<std::size_t>(n) * shape_.h + y) * shape_.w + x) * shape_.c + c;
    }

private:
    std::unique_ptr<T[], detail::aligned_free> buf_;
    std::size_t capacity_ = 0;
    shape4 shape_{};
};

}  // namespace tricks
