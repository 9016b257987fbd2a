# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
# Probes the optional dependencies. AUTO: use when found; ON: stop when missing; OFF: skip.
# Sets POLYMAP_HAS_<X> (0/1) and POLYMAP_BACKENDS (the list printed at configure time).

set(POLYMAP_BACKENDS serial threads processes)

# hwloc: topology and binding; without it a fallback reads sched_getaffinity.
set(POLYMAP_HAS_HWLOC 0)
if(NOT POLYMAP_WITH_HWLOC STREQUAL "OFF")
  find_package(PkgConfig)
  if(PkgConfig_FOUND)
    pkg_check_modules(HWLOC IMPORTED_TARGET hwloc)
  endif()
  if(HWLOC_FOUND)
    set(POLYMAP_HAS_HWLOC 1)
  elseif(POLYMAP_WITH_HWLOC STREQUAL "ON")
    message(FATAL_ERROR "POLYMAP_WITH_HWLOC=ON but hwloc was not found (apt-get install libhwloc-dev)")
  endif()
endif()

# CUDA: the top-level CMakeLists.txt has enabled the language when nvcc was found.
set(POLYMAP_HAS_CUDA 0)
if(NOT POLYMAP_WITH_CUDA STREQUAL "OFF")
  if(CMAKE_CUDA_COMPILER)
    find_package(CUDAToolkit)
  endif()
  if(CMAKE_CUDA_COMPILER AND CUDAToolkit_FOUND)
    set(POLYMAP_HAS_CUDA 1)
    list(APPEND POLYMAP_BACKENDS cuda)
  elseif(POLYMAP_WITH_CUDA STREQUAL "ON")
    message(FATAL_ERROR "POLYMAP_WITH_CUDA=ON but no CUDA compiler or toolkit was found "
                        "(install the CUDA toolkit, or set CMAKE_CUDA_COMPILER to nvcc)")
  endif()
endif()

# Kokkos: a user's Kokkos 4, or Debian's libtrilinos-kokkos-dev (Kokkos 3.4, Serial).
set(POLYMAP_HAS_KOKKOS 0)
set(POLYMAP_KOKKOS_PACKAGE 0)
if(NOT POLYMAP_WITH_KOKKOS STREQUAL "OFF")
  include(polymap_kokkos)
  # A Kokkos built to be compiled as a CMake language (Kokkos_ENABLE_COMPILE_AS_CMAKE_LANGUAGE)
  # has no compiler launcher: code that includes it must be compiled as that language, which
  # polymap can do for CUDA, with nvcc.
  if(POLYMAP_KOKKOS_FOUND AND Kokkos_COMPILE_LANGUAGE AND NOT Kokkos_COMPILE_LANGUAGE STREQUAL "CXX"
     AND NOT (Kokkos_COMPILE_LANGUAGE STREQUAL "CUDA" AND CMAKE_CUDA_COMPILER))
    set(POLYMAP_KOKKOS_FOUND FALSE)
    set(_polymap_kokkos_why "this Kokkos is compiled as ${Kokkos_COMPILE_LANGUAGE}, which needs "
                            "CUDA and nvcc (POLYMAP_WITH_CUDA)")
    if(POLYMAP_WITH_KOKKOS STREQUAL "ON")
      message(FATAL_ERROR "POLYMAP_WITH_KOKKOS=ON but ${_polymap_kokkos_why}")
    endif()
    message(STATUS "polymap: no kokkos backend: ${_polymap_kokkos_why}")
  endif()
  if(POLYMAP_KOKKOS_FOUND)
    set(POLYMAP_HAS_KOKKOS 1)
    list(APPEND POLYMAP_BACKENDS kokkos)
  elseif(POLYMAP_WITH_KOKKOS STREQUAL "ON")
    message(FATAL_ERROR "POLYMAP_WITH_KOKKOS=ON but Kokkos was not found "
                        "(apt-get install libtrilinos-kokkos-dev, or set Kokkos_DIR)")
  endif()
endif()

# MPI: Debian's Open MPI (libopenmpi-dev), or any MPI that CMake's FindMPI finds. polymap
# calls its C API from C++: the deprecated C++ bindings are left out.
set(POLYMAP_HAS_MPI 0)
if(NOT POLYMAP_WITH_MPI STREQUAL "OFF")
  set(MPI_CXX_SKIP_MPICXX ON)
  find_package(MPI COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    set(POLYMAP_HAS_MPI 1)
    list(APPEND POLYMAP_BACKENDS mpi)
    # What the tests and examples run by mpirun need from Open MPI: to run as root (CI), more
    # ranks than CPUs, and copies between ranks through the shared-memory segment rather
    # than process_vm_readv, which a container without ptrace rights refuses.
    set(POLYMAP_MPIRUN_ENVIRONMENT
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none)
  elseif(POLYMAP_WITH_MPI STREQUAL "ON")
    message(FATAL_ERROR "POLYMAP_WITH_MPI=ON but MPI was not found "
                        "(apt-get install libopenmpi-dev openmpi-bin, or set MPI_HOME)")
  endif()
endif()
