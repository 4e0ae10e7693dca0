# Decides whether the CUDA backend is built: AUTO turns it on when nvcc and cuDNN are both found.
# Nothing here is needed by the CPU library; the CUDA target is added only when enabled.
set(TRICKS_CUDA_ENABLED OFF)
if(NOT TRICKS_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  find_package(CUDAToolkit QUIET)
  find_package(CUDNN QUIET)
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND AND CUDNN_FOUND)
    set(TRICKS_CUDA_ENABLED ON)
  elseif(TRICKS_CUDA STREQUAL "ON")
    message(FATAL_ERROR "tricks: TRICKS_CUDA=ON but nvcc (${CMAKE_CUDA_COMPILER}), the CUDA toolkit (${CUDAToolkit_FOUND}) "
                        "or cuDNN (${CUDNN_FOUND}) was not found; set CUDNN_ROOT or TRICKS_CUDA=OFF")
  endif()
endif()
message(STATUS "tricks: CUDA backend ${TRICKS_CUDA_ENABLED} (TRICKS_CUDA=${TRICKS_CUDA})")
