// examples/train's CPU runs of model table part 3 (train_models.hpp): one translation unit per
// part, so the model instantiations compile in parallel.
#include "train_common.hpp"

namespace train_example {

int run_part3(cli& c) { return run_table_part<3>(c); }

}  // namespace train_example
