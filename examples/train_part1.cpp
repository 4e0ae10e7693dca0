// examples/train's CPU runs of model table part 1 (train_models.hpp): one translation unit per
// part, so the model instantiations compile in parallel.
#include "train_common.hpp"

namespace train_example {

int run_part1(cli& c) { return run_table_part<1>(c); }

}  // namespace train_example
