// Fuzz target: tricks::data::read_idx on any bytes, plain or gzip (zlib's gz* functions read both
// through one path; a seed of each kind is in corpus/fuzz_idx). See fuzz_common.hpp for the rule.
#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "tricks/data/idx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static tricks_fuzz::memory_file file("fuzz_idx");
    const auto& path = file.hold(data, size);
    tricks_fuzz::expect_only_tricks_errors([&] {
        const tricks::data::idx_array a = tricks::data::read_idx(path);
        // What a successful read promises: the extents describe exactly the bytes that were read.
        if (a.dims.empty() || a.dims.size() > 4 || a.element_count() != a.values.size()) std::abort();
    });
    return 0;
}
