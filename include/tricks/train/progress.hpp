#pragma once
// Progress on stderr: a live bar on a terminal (epoch, step, loss, lr, images/s, ETA), one line
// per epoch otherwise (logs, CI).
#include <unistd.h>

#include <chrono>
#include <cstdio>

namespace tricks {

class progress_printer {
public:
    explicit progress_printer(bool enabled) : enabled_(enabled), tty_(enabled && ::isatty(2) == 1) {}

    void step(int epoch, int epochs, long step, long steps, double loss, double lr, double images_per_s, double eta_s) {
        if (!tty_) return;
        const auto now = std::chrono::steady_clock::now();
        if (step + 1 < steps && now - last_ < std::chrono::milliseconds(250)) return;
        last_ = now;
        const int width = 24;
        const int filled = static_cast<int>(width * (step + 1) / std::max(steps, 1L));
        char bar[width + 1];
        for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        std::fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %ld/%ld loss %.4f lr %.4f %.0f img/s ETA %s", epoch + 1, epochs,
                     bar, step + 1, steps, loss, lr, images_per_s, clock(eta_s).c);
        std::fflush(stderr);
    }

    void epoch_done(int epoch, int epochs, double loss, double top1, double lr, double images_per_s, double seconds,
                    double eta_s) {
        if (!enabled_) return;
        if (tty_) std::fprintf(stderr, "\r\033[K");
        std::fprintf(stderr, "epoch %d/%d  train loss %.4f  test top-1 %.2f%%  lr %.5f  %.0f img/s  %.1fs  ETA %s\n",
                     epoch + 1, epochs, loss, 100 * top1, lr, images_per_s, seconds, clock(eta_s).c);
        std::fflush(stderr);
    }

private:
    struct text {
        char c[32];
    };
    static text clock(double s) {
        text t{};
        const long v = s > 0 ? static_cast<long>(s + 0.5) : 0;
        std::snprintf(t.c, sizeof t.c, "%ld:%02ld", v / 60, v % 60);
        return t;
    }
    bool enabled_, tty_;
    std::chrono::steady_clock::time_point last_{};
};

}  // namespace tricks
