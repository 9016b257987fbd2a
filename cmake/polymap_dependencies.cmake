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

# CUDA: probed so that the choice is reported; the cuda backend itself is not in this
# version (README, "Backends"), so ON stops with an error rather than pretending.
set(POLYMAP_HAS_CUDA 0)
if(POLYMAP_WITH_CUDA STREQUAL "ON")
  message(FATAL_ERROR "POLYMAP_WITH_CUDA=ON: the cuda backend is not implemented in polymap ${PROJECT_VERSION} yet")
endif()

set(POLYMAP_HAS_KOKKOS 0)
if(POLYMAP_WITH_KOKKOS STREQUAL "ON")
  message(FATAL_ERROR "POLYMAP_WITH_KOKKOS=ON: the kokkos backend is not implemented in polymap ${PROJECT_VERSION} yet")
endif()

set(POLYMAP_HAS_MPI 0)
if(POLYMAP_WITH_MPI STREQUAL "ON")
  message(FATAL_ERROR "POLYMAP_WITH_MPI=ON: the mpi backend is not implemented in polymap ${PROJECT_VERSION} yet")
endif()
