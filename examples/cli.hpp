#pragma once
// Command-line helpers shared by the examples: a usage error exits with status 2 and names the
// program, the flag and the value.
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <tricks/backend/conv_algo.hpp>

namespace examples {

[[noreturn]] inline void cli_fail(std::string_view program, const std::string& msg) {
    std::fprintf(stderr, "%.*s: %s\n(see %.*s --help)\n", static_cast<int>(program.size()), program.data(), msg.c_str(),
                 static_cast<int>(program.size()), program.data());
    std::exit(2);
}

/// Parses the whole of `v` as a T, or exits with a message naming `flag` and the value.
template <class T>
T cli_number(std::string_view program, std::string_view flag, const char* v) {
    if (!v) cli_fail(program, std::string(flag) + " needs a value");
    T x{};
    const std::string_view s(v);
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
    if (ec != std::errc{} || p != s.data() + s.size())
        cli_fail(program, std::string(flag) + ": '" + std::string(s) + "' is not a valid number");
    return x;
}

/// The CPU convolution algorithm named by `v` (--conv winograd|direct), or exits naming the value.
inline tricks::backend::conv_algo cli_conv_algo(std::string_view program, std::string_view flag, const char* v) {
    tricks::backend::conv_algo a{};
    if (!v || !tricks::backend::parse(v, a))
        cli_fail(program, std::string(flag) + ": '" + std::string(v ? v : "") + "' is not winograd or direct");
    return a;
}

}  // namespace examples
