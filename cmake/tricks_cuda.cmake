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

# ---- tricks::cuda: the CUDA backend's INTERFACE target -------------------------------------------
# Header-only (include/tricks/backend/cuda/*.cuh): a consumer compiles the translation units that
# include them with nvcc (CUDA language) and links tricks::cuda.
if(TRICKS_CUDA_ENABLED AND NOT TARGET tricks_cuda)
  add_library(tricks_cuda INTERFACE)
  add_library(tricks::cuda ALIAS tricks_cuda)
  target_link_libraries(tricks_cuda INTERFACE tricks::tricks CUDA::cudart CUDA::cublas CUDNN::cudnn)
  # C++20 for nvcc. Not `cuda_std_20`: CMake 3.25 does not know it for nvcc 13. A consumer that sets
  # CUDA_STANDARD itself gets its own flag only.
  target_compile_options(tricks_cuda INTERFACE
    "$<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<NOT:$<BOOL:$<TARGET_PROPERTY:CUDA_STANDARD>>>>:-std=c++20>")
  # Eigen (pulled in by the core headers) is host-only here: without EIGEN_NO_CUDA it would add
  # __host__ __device__ annotations under nvcc (warnings, and code that differs from the .cpp TUs).
  target_compile_definitions(tricks_cuda INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:EIGEN_NO_CUDA>)
endif()

# ---- NCCL (optional): how the CUDA trainer's ranks exchange gradients device to device ----------
# Found next to the CUDA toolkit (NVIDIA ships it there) or under NCCL_ROOT; without it the ranks
# stage gradients through host memory (backend/cuda/nccl.cuh, options.gradient_transport).
set(TRICKS_NCCL_ENABLED OFF)
if(TARGET tricks_cuda AND NOT TRICKS_NCCL STREQUAL "OFF")
  find_path(TRICKS_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_ROOT PATH_SUFFIXES include)
  find_library(TRICKS_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT} ENV NCCL_ROOT
               PATH_SUFFIXES lib lib64)
  if(TRICKS_NCCL_INCLUDE_DIR AND TRICKS_NCCL_LIBRARY)
    set(TRICKS_NCCL_ENABLED ON)
    target_include_directories(tricks_cuda SYSTEM INTERFACE ${TRICKS_NCCL_INCLUDE_DIR})
    target_link_libraries(tricks_cuda INTERFACE ${TRICKS_NCCL_LIBRARY})
    target_compile_definitions(tricks_cuda INTERFACE TRICKS_HAVE_NCCL)
  elseif(TRICKS_NCCL STREQUAL "ON")
    message(FATAL_ERROR "tricks: TRICKS_NCCL=ON but nccl.h (${TRICKS_NCCL_INCLUDE_DIR}) or libnccl "
                        "(${TRICKS_NCCL_LIBRARY}) was not found; set NCCL_ROOT or TRICKS_NCCL=OFF")
  endif()
endif()
if(TARGET tricks_cuda)
  message(STATUS "tricks: NCCL ${TRICKS_NCCL_ENABLED} (TRICKS_NCCL=${TRICKS_NCCL}: ${TRICKS_NCCL_LIBRARY})")
endif()

# tricks_enable_cuda(): enables the CUDA language in the calling directory (tests/cuda, bench/gpu),
# for sm_90 unless CMAKE_CUDA_ARCHITECTURES is given, with the shared CUDA runtime (the one
# CUDA::cudart names; mixing it with the static default would load two runtimes).
macro(tricks_enable_cuda)
  if(NOT TARGET tricks::cuda)
    message(FATAL_ERROR "tricks: ${CMAKE_CURRENT_SOURCE_DIR} needs the CUDA backend (TRICKS_CUDA_ENABLED)")
  endif()
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR "${CMAKE_CUDA_ARCHITECTURES}" STREQUAL "")
    set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures of tricks' CUDA tests and benchmarks")
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
endmacro()
