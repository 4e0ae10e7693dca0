#pragma once
// The CUDA build of tricks: everything in tricks.hpp plus backend::cuda, the device twins of the
// layers (gpu::device_model) and trainer<Model, Recipe, backend::cuda>.
// Include it from a translation unit compiled by nvcc and link the CMake target tricks::cuda.
#include "tricks/tricks.hpp"
#include "tricks/backend/cuda/backend.cuh"
#include "tricks/backend/cuda/model.cuh"
#include "tricks/train/cuda_trainer.cuh"
