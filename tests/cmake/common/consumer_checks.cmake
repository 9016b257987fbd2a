# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
# What the consumer projects in tests/cmake share. Include it before they bring polymap in,
# call polymap_consumer_check_settings() after, and polymap_consumer_add_kokkos() once
# their program `consumer` exists.

# Bringing polymap in must leave the consumer's own settings alone: Kokkos' config forces
# CMAKE_CXX_EXTENSIONS off in the cache, with a warning, unless it is off already.
set(polymap_consumer_extensions_before "${CMAKE_CXX_EXTENSIONS}|$CACHE{CMAKE_CXX_EXTENSIONS}")
function(polymap_consumer_check_settings how)
  set(after "${CMAKE_CXX_EXTENSIONS}|$CACHE{CMAKE_CXX_EXTENSIONS}")
  if(NOT after STREQUAL polymap_consumer_extensions_before)
    message(FATAL_ERROR "${how} changed CMAKE_CXX_EXTENSIONS (variable|cache) from "
                        "'${polymap_consumer_extensions_before}' to '${after}'")
  endif()
endfunction()

# With Kokkos, `consumer` also runs a KOKKOS_LAMBDA through polymap::kokkos::map
# (common/kokkos_map.cpp), linked with polymap::kokkos.
function(polymap_consumer_add_kokkos has_kokkos)
  if(NOT has_kokkos)
    return()
  endif()
  if(NOT TARGET polymap::kokkos)
    message(FATAL_ERROR "polymap has Kokkos, and no target polymap::kokkos")
  endif()
  target_sources(consumer PRIVATE ${CMAKE_CURRENT_FUNCTION_LIST_DIR}/kokkos_map.cpp)
  target_link_libraries(consumer PRIVATE polymap::kokkos)
  target_compile_definitions(consumer PRIVATE POLYMAP_CONSUMER_KOKKOS=1)
endfunction()
