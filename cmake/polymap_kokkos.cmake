# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
# Finds Kokkos and defines the INTERFACE target polymap_kokkos_dependency: what code that
# includes Kokkos needs (its headers and libraries). polymap links it PRIVATE, and
# polymap::kokkos (CMakeLists.txt) adds it to polymap for a user's Kokkos translation units.
# Sets POLYMAP_KOKKOS_FOUND, and POLYMAP_KOKKOS_PACKAGE: 1 when that target names
# Kokkos::kokkos, which polymapConfig.cmake must then find as well; 0 with the fallback below.
#
# Debian 12's libtrilinos-kokkos-dev (Trilinos 13.2, Kokkos 3.4.01) installs a CMake config
# whose Kokkos::kokkos target names /usr/lib/include as its include directory, while the
# headers are in /usr/include/trilinos; its link interface also carries a
# "-DKOKKOS_DEPENDENCE" word (the marker of Kokkos' compiler launcher, which that package
# does not install, so g++ gets it). The fallback below finds the headers and libraries itself when
# the config's include directory has no Kokkos_Core.hpp. Remove it once Debian ships a fixed
# config (Trilinos' packaging, not Kokkos upstream, writes the bad path).

include(${CMAKE_CURRENT_LIST_DIR}/polymapFindKokkos.cmake)

set(POLYMAP_KOKKOS_FOUND FALSE)
set(POLYMAP_KOKKOS_PACKAGE 0)
# Kokkos wants no GNU extensions in the code that includes it (the kokkos backend, its
# tests): polymap's own directory scope says so, unless the builder chose. Not the cache.
if(NOT DEFINED CMAKE_CXX_EXTENSIONS)
  set(CMAKE_CXX_EXTENSIONS OFF)
endif()
polymap_find_kokkos_package()
if(Kokkos_FOUND AND TARGET Kokkos::kokkos)
  add_library(polymap_kokkos_dependency INTERFACE)
  set_target_properties(polymap_kokkos_dependency PROPERTIES EXPORT_NAME kokkos_dependency)
  # Broken only when a directory the target names lacks the header. A standalone Kokkos'
  # Kokkos::kokkos names none itself (its include directory is on Kokkos::kokkoscore, which
  # it links): sound.
  get_target_property(_polymap_kokkos_inc Kokkos::kokkos INTERFACE_INCLUDE_DIRECTORIES)
  set(_polymap_kokkos_config_broken FALSE)
  foreach(dir IN LISTS _polymap_kokkos_inc)
    if(dir AND NOT dir MATCHES "\\$<" AND NOT EXISTS "${dir}/Kokkos_Core.hpp")
      set(_polymap_kokkos_config_broken TRUE)
    endif()
  endforeach()
  if(NOT _polymap_kokkos_config_broken)
    # A sound config (a user's Kokkos 4, possibly with CUDA or OpenMP): use it as it is.
    target_link_libraries(polymap_kokkos_dependency INTERFACE Kokkos::kokkos)
    set(POLYMAP_KOKKOS_FOUND TRUE)
    set(POLYMAP_KOKKOS_PACKAGE 1)
  else()
    find_path(POLYMAP_KOKKOS_INCLUDE_DIR Kokkos_Core.hpp PATH_SUFFIXES trilinos kokkos)
    find_library(POLYMAP_KOKKOS_CORE_LIBRARY NAMES kokkoscore trilinos_kokkoscore)
    if(POLYMAP_KOKKOS_INCLUDE_DIR AND POLYMAP_KOKKOS_CORE_LIBRARY)
      target_include_directories(polymap_kokkos_dependency SYSTEM INTERFACE
                                 ${POLYMAP_KOKKOS_INCLUDE_DIR})
      target_link_libraries(polymap_kokkos_dependency INTERFACE
                            ${POLYMAP_KOKKOS_CORE_LIBRARY} ${CMAKE_DL_LIBS})
      set(POLYMAP_KOKKOS_FOUND TRUE)
      message(STATUS "polymap: Kokkos ${Kokkos_VERSION} config has no usable include directory; "
                     "using ${POLYMAP_KOKKOS_INCLUDE_DIR} and ${POLYMAP_KOKKOS_CORE_LIBRARY}")
    endif()
  endif()
endif()
