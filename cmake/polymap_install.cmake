# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
# Install rules and the CMake package (find_package(polymap)), for both the install tree
# and the build tree. Included from the top-level CMakeLists.txt when POLYMAP_INSTALL.

include(CMakePackageConfigHelpers)

set(POLYMAP_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/polymap CACHE STRING
    "Where the polymap CMake package files are installed, relative to the prefix")
mark_as_advanced(POLYMAP_INSTALL_CMAKEDIR)

# polymapConfig.cmake looks for the private dependencies itself only when the library is
# static: a shared libpolymap already carries them.
get_target_property(POLYMAP_LIBRARY_TYPE polymap TYPE)

install(TARGETS polymap EXPORT polymapTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT polymap_development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT polymap_runtime
          NAMELINK_COMPONENT polymap_development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT polymap_runtime)
if(TARGET polymap_kokkos)
  # polymap::kokkos, and what it adds: Kokkos' headers and libraries (a static libpolymap
  # names that target in its link interface too).
  install(TARGETS polymap_kokkos polymap_kokkos_dependency EXPORT polymapTargets)
endif()

# All of include/ goes in, detail/, cuda/ and kokkos/ included: the public headers need
# detail/, and a user's own .cu or Kokkos translation units include cuda/ and kokkos/.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT polymap_development
  FILES_MATCHING PATTERN "*.hpp")
install(FILES ${PROJECT_BINARY_DIR}/include/polymap/config.hpp
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/polymap COMPONENT polymap_development)

if(TARGET polymap_cli)
  # A shared libpolymap sits in ../lib next to the installed command.
  get_target_property(polymap_cli_rpath polymap_cli INSTALL_RPATH)
  if(POLYMAP_LIBRARY_TYPE STREQUAL "SHARED_LIBRARY" AND NOT polymap_cli_rpath AND NOT APPLE)
    file(RELATIVE_PATH polymap_cli_libdir ${CMAKE_INSTALL_FULL_BINDIR} ${CMAKE_INSTALL_FULL_LIBDIR})
    set_target_properties(polymap_cli PROPERTIES INSTALL_RPATH "$ORIGIN/${polymap_cli_libdir}")
  endif()
  install(TARGETS polymap_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT polymap_runtime)
endif()

install(EXPORT polymapTargets
  NAMESPACE polymap::
  DESTINATION ${POLYMAP_INSTALL_CMAKEDIR}
  COMPONENT polymap_development)

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/polymapConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/install/polymapConfig.cmake
  INSTALL_DESTINATION ${POLYMAP_INSTALL_CMAKEDIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/polymapConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/cmake/install/polymapConfig.cmake
  ${PROJECT_BINARY_DIR}/polymapConfigVersion.cmake
  ${CMAKE_CURRENT_LIST_DIR}/polymapFindKokkos.cmake
  DESTINATION ${POLYMAP_INSTALL_CMAKEDIR}
  COMPONENT polymap_development)

# The build tree is a package too: -Dpolymap_DIR=<this build> uses it without installing.
export(EXPORT polymapTargets
  NAMESPACE polymap::
  FILE ${PROJECT_BINARY_DIR}/polymapTargets.cmake)
configure_file(${CMAKE_CURRENT_LIST_DIR}/polymapFindKokkos.cmake
               ${PROJECT_BINARY_DIR}/polymapFindKokkos.cmake COPYONLY)
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/polymapConfig.cmake.in
  ${PROJECT_BINARY_DIR}/polymapConfig.cmake
  INSTALL_DESTINATION ${PROJECT_BINARY_DIR}
  INSTALL_PREFIX ${PROJECT_BINARY_DIR})
