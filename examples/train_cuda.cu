// examples/train's backend::cuda instantiations (`--device cuda`), compiled by nvcc when CMake finds
// nvcc and cuDNN. The command line, model, recipe and report are train_common.hpp's, shared with
// the CPU build: only the backend type differs.
#include <tricks/cuda.cuh>

#include "train_common.hpp"

namespace train_example {

std::string cuda_device_name() {
    int dev = 0;
    cudaDeviceProp p{};
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return "cuda";
    return std::string("cuda: ") + p.name;
}

int run_cuda(cli& c) {
    if (!t::backend::cuda::available()) fail("--device cuda: no CUDA device is available on this machine");
    if (c.model != "cifar_resnet20d" || c.folder)
        fail("--device cuda trains the main job's model (cifar_resnet20d) on IDX data; --model " + c.model +
             (c.folder ? " on an image folder" : "") + " runs on the CPU");
    if (c.precision == 16)
        return c.width == 16 ? run<net<16>, t::precision::fp16_mixed, t::backend::cuda>(c)
                             : run<net<32>, t::precision::fp16_mixed, t::backend::cuda>(c);
    return c.width == 16 ? run<net<16>, t::precision::fp32, t::backend::cuda>(c)
                         : run<net<32>, t::precision::fp32, t::backend::cuda>(c);
}

}  // namespace train_example
