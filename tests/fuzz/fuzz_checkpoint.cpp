// Fuzz target: the checkpoint reader (tricks/io/checkpoint.hpp) and the trainer's resume, its
// main consumer, on any bytes. See fuzz_common.hpp for the rule.
//
// Input: one mode byte, then the rest. Mode bit 0 clear: the rest is the whole file. Set: the rest
// is a payload, which this target wraps in a valid header and checksum, so that mutations get past
// the checksum to the field parser (a mutated payload under the file's own checksum is rejected
// before any field is read). corpus/fuzz_checkpoint holds seeds of both kinds.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "fuzz_trainer.hpp"
#include "tricks/io/checkpoint.hpp"

namespace {

std::string wrap_payload(std::string_view payload) {
    std::string file(tricks::io::checkpoint_magic, 8);
    const std::uint32_t version = tricks::io::checkpoint_version;
    const std::uint64_t size = payload.size();
    const std::uint64_t sum = tricks::models::fnv1a(payload);
    file.append(reinterpret_cast<const char*>(&version), 4);
    file.append(reinterpret_cast<const char*>(&size), 8);
    file.append(payload);
    file.append(reinterpret_cast<const char*>(&sum), 8);
    return file;
}

/// Reads every field of a payload with the accessor its size suggests, under the name the file
/// itself gives (so the reader gets past its name check), the way a reader written for that file
/// would; a name this walk cannot parse is asked for under a wrong one (the error path).
void walk_fields(tricks::io::checkpoint_reader& r, std::string_view payload) {
    std::size_t pos = 0;
    for (int fields = 0; fields < 100000 && !r.at_end(); ++fields) {
        std::uint32_t nl = 0;
        std::string name = "?";
        std::uint64_t bl = 0;
        if (payload.size() - pos >= 4) {
            std::memcpy(&nl, payload.data() + pos, 4);
            const std::size_t left = payload.size() - pos - 4;
            if (left >= nl) {
                name.assign(payload.data() + pos + 4, nl);
                if (left - nl >= 8) std::memcpy(&bl, payload.data() + pos + 4 + nl, 8);
            }
        }
        (void)r.next_is(name);
        if (bl == 8 && (nl % 3) == 0) {
            (void)r.u64(name);
        } else if (bl == 8 && (nl % 3) == 1) {
            (void)r.f64(name);
        } else if (bl == 8) {
            (void)r.i64(name);
        } else if (bl % 4 == 0 && bl <= (std::uint64_t{1} << 24) && nl % 2 == 0) {
            std::vector<float> v(static_cast<std::size_t>(bl / 4));
            r.floats(name, v);
        } else {
            (void)r.str(name);
        }
        pos += 4 + std::size_t{nl} + 8 + static_cast<std::size_t>(bl);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static tricks_fuzz::memory_file file("fuzz_checkpoint");
    static tricks_fuzz::tiny_trainer trainer(tricks_fuzz::tiny_options());
    if (size == 0) return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::string bytes = (data[0] & 1) ? wrap_payload(rest) : std::string(rest);
    const auto& path = file.hold(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    const std::string_view payload =
        bytes.size() >= 28 ? std::string_view(bytes).substr(20, bytes.size() - 28) : std::string_view();
    tricks_fuzz::expect_only_tricks_errors([&] {
        tricks::io::checkpoint_reader r(path);
        walk_fields(r, payload);
    });
    tricks_fuzz::expect_only_tricks_errors([&] { trainer.resume(path); });
    return 0;
}
