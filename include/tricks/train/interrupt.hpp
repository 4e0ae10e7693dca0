#pragma once
// Stopping a training run cleanly on SIGINT or SIGTERM. While fit() runs, the first signal only
// sets a flag; the trainer finishes its step, writes the checkpoint (with the position inside the
// epoch) and throws tricks::interrupted. A second signal ends the process at once with 128 + signal
// (the checkpoint file is only ever replaced by an atomic rename, so the last one stays loadable).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "tricks/core/error.hpp"

namespace tricks {

/// fit() stopped on a signal, after writing its checkpoint when options.checkpoint is set.
/// `signal` is SIGINT or SIGTERM; a command-line program exits with 128 + signal (130, 143), the
/// status a shell reports for a process the signal ended.
struct interrupted : error {
    interrupted(const std::string& what, int sig) : error(what), signal(sig) {}
    int signal;
};

namespace detail {

/// The signal that asked the running fit() to stop, 0 when none. The one piece of global mutable
/// state training has: a signal handler can reach nothing else. Lock-free, so setting it from the
/// handler is async-signal-safe.
inline std::atomic<int> stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free,
              "tricks: the stop flag must be lock-free to be set from a signal handler");

inline void on_stop_signal(int sig) noexcept {
    int none = 0;
    if (!stop_signal.compare_exchange_strong(none, sig)) ::_exit(128 + sig);  // the second signal: at once
    static constexpr char note[] = "\ntricks: stopping after this step (signal again to quit at once)\n";
    const auto ignored = ::write(2, note, sizeof note - 1);  // write() is async-signal-safe, fprintf is not
    (void)ignored;
}

[[nodiscard]] inline const char* signal_name(int sig) noexcept {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal";
}

/// Handles SIGINT and SIGTERM with on_stop_signal for its lifetime (fit()'s) and puts the previous
/// dispositions back at its end. A signal that was ignored stays ignored (a background job of a
/// non-interactive shell ignores SIGINT; nohup-style launchers rely on that).
class stop_signal_scope {
public:
    stop_signal_scope() noexcept {
        stop_signal.store(0);
        install(SIGINT, old_int_, int_installed_);
        install(SIGTERM, old_term_, term_installed_);
    }
    ~stop_signal_scope() {
        if (int_installed_) ::sigaction(SIGINT, &old_int_, nullptr);
        if (term_installed_) ::sigaction(SIGTERM, &old_term_, nullptr);
        stop_signal.store(0);
    }
    stop_signal_scope(const stop_signal_scope&) = delete;
    stop_signal_scope& operator=(const stop_signal_scope&) = delete;

private:
    static void install(int sig, struct sigaction& old, bool& installed) noexcept {
        installed = false;
        if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler == SIG_IGN) return;
        struct sigaction sa {};
        sa.sa_handler = &on_stop_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;  // file reads and writes in flight go on; the flag is polled per step
        installed = ::sigaction(sig, &sa, nullptr) == 0;
    }
    struct sigaction old_int_ {
    }, old_term_{};
    bool int_installed_ = false, term_installed_ = false;
};

}  // namespace detail
}  // namespace tricks
