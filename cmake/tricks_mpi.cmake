# Decides whether data-parallel training over MPI is built: AUTO turns it on when CMake's FindMPI
# finds a C++ MPI (Debian: libopenmpi-dev) and a launcher (openmpi-bin's mpirun). The library's
# headers need no MPI; tricks::distributed (include/tricks/distributed/mpi.hpp plus MPI) and the
# MPI tests, benchmark and `mpirun ... train` are what this switches on. tricks::distributed is not
# installed: a consumer links MPI::MPI_CXX next to tricks::tricks (README, "Data-parallel training").
set(TRICKS_MPI_ENABLED OFF)
set(_tricks_mpi_why "switched off")
if(NOT TRICKS_MPI STREQUAL "OFF")
  find_package(MPI QUIET COMPONENTS CXX)
  if(NOT MPI_CXX_FOUND)
    set(_tricks_mpi_why "no C++ MPI found (Debian: libopenmpi-dev openmpi-bin)")
  elseif(NOT MPIEXEC_EXECUTABLE)
    set(_tricks_mpi_why "no mpirun/mpiexec found (Debian: openmpi-bin)")
  else()
    set(TRICKS_MPI_ENABLED ON)
    set(_tricks_mpi_why "MPI ${MPI_CXX_VERSION}, ${MPIEXEC_EXECUTABLE}")
    add_library(tricks_distributed INTERFACE)
    add_library(tricks::distributed ALIAS tricks_distributed)
    target_link_libraries(tricks_distributed INTERFACE tricks::tricks MPI::MPI_CXX)
  endif()
  if(TRICKS_MPI STREQUAL "ON" AND NOT TRICKS_MPI_ENABLED)
    message(FATAL_ERROR "tricks: TRICKS_MPI=ON but ${_tricks_mpi_why}; install them or set TRICKS_MPI=OFF")
  endif()
endif()
message(STATUS "tricks: MPI data parallelism ${TRICKS_MPI_ENABLED} (TRICKS_MPI=${TRICKS_MPI}: ${_tricks_mpi_why})")
