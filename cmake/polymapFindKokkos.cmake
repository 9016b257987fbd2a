# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
# polymap_find_kokkos_package(): find_package(Kokkos CONFIG QUIET) in a scope of its own,
# for polymap's build (cmake/polymap_kokkos.cmake) and for a consumer of the package
# (polymapConfig.cmake, beside which this file is installed). Kokkos' config (3.4 and 4.x
# alike) sets CMAKE_CXX_EXTENSIONS OFF in the cache, with a warning, unless it is off already:
# a setting of whoever builds or uses polymap, not polymap's to change. Here it sees an OFF
# that ends with the function; the imported targets stay.
function(polymap_find_kokkos_package)
  set(CMAKE_CXX_EXTENSIONS OFF)
  find_package(Kokkos CONFIG QUIET)
  # What a build with Kokkos needs to know of it: the devices it was built for, and the
  # language its users' code is compiled as (CUDA for a Kokkos compiled as a CMake language).
  foreach(var IN ITEMS Kokkos_FOUND Kokkos_VERSION Kokkos_DEVICES Kokkos_COMPILE_LANGUAGE)
    set(${var} ${${var}} PARENT_SCOPE)
  endforeach()
endfunction()
