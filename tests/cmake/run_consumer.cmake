# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
# Driver of the tests in tests/cmake/CMakeLists.txt, run as `cmake -D... -P run_consumer.cmake`.
#
# MODE=install: installs the build BUILD_DIR (configuration CONFIG) into a fresh PREFIX, then
#   checks that each of EXPECT_FILES (relative to PREFIX) is there and that the installed
#   package files name neither FORBIDDEN_PATHS (the source and build trees) nor PREFIX itself.
#   Both lists are separated by | (a ; would split the argument of the test command).
# MODE=consume: configures SOURCE_DIR in a fresh BINARY_DIR with generator GENERATOR and the
#   initial cache INIT_CACHE, builds it in Release and runs its program `consumer`. With
#   EXPECT_CONFIGURE_ERROR (a regular expression), configuring must fail with output that
#   matches it instead; with EXPECT_BUILD_ERROR, configuring must succeed and building fail
#   so.

cmake_minimum_required(VERSION 3.24)

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " command)
    message(FATAL_ERROR "${what} failed (${rc}):\n  ${command}\n${out}")
  endif()
  message(STATUS "${what}: ok")
endfunction()

# Runs the command in ARGN, which must fail with output that matches `regex`.
function(expect_failure what regex)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(rc EQUAL 0)
    message(FATAL_ERROR "${what} succeeded; it should have failed with '${regex}':\n${out}")
  endif()
  if(NOT out MATCHES "${regex}")
    message(FATAL_ERROR "${what} failed, but not with '${regex}':\n${out}")
  endif()
  message(STATUS "${what} failed as expected:\n${out}")
endfunction()

if(MODE STREQUAL "install")
  foreach(var BUILD_DIR PREFIX)
    if(NOT ${var})
      message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
    endif()
  endforeach()
  string(REPLACE "|" ";" EXPECT_FILES "${EXPECT_FILES}")
  string(REPLACE "|" ";" FORBIDDEN_PATHS "${FORBIDDEN_PATHS}")
  file(REMOVE_RECURSE "${PREFIX}")
  set(config_args "")
  if(CONFIG)
    set(config_args --config "${CONFIG}")
  endif()
  run_step("install ${BUILD_DIR} into ${PREFIX}"
    "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args})

  foreach(file IN LISTS EXPECT_FILES)
    if(NOT EXISTS "${PREFIX}/${file}")
      message(FATAL_ERROR "the install tree has no ${file}")
    endif()
  endforeach()
  file(GLOB_RECURSE package_files "${PREFIX}/*/polymapConfig.cmake")
  list(LENGTH package_files count)
  if(NOT count EQUAL 1)
    message(FATAL_ERROR "expected one polymapConfig.cmake under ${PREFIX}, found: ${package_files}")
  endif()
  # A relocatable package names no absolute path of this machine's trees.
  get_filename_component(package_dir "${package_files}" DIRECTORY)
  file(GLOB package_files "${package_dir}/*.cmake")
  foreach(file IN LISTS package_files)
    file(READ "${file}" content)
    foreach(path IN LISTS FORBIDDEN_PATHS PREFIX)
      string(FIND "${content}" "${path}" at)
      if(NOT at EQUAL -1)
        message(FATAL_ERROR "${file} names the absolute path ${path}: the package is not relocatable")
      endif()
    endforeach()
  endforeach()
  message(STATUS "install tree ${PREFIX}: ok")

elseif(MODE STREQUAL "consume")
  foreach(var SOURCE_DIR BINARY_DIR GENERATOR INIT_CACHE)
    if(NOT ${var})
      message(FATAL_ERROR "run_consumer.cmake: ${var} is not set")
    endif()
  endforeach()
  file(REMOVE_RECURSE "${BINARY_DIR}")
  set(generator_args -G "${GENERATOR}")
  if(GENERATOR_PLATFORM)
    list(APPEND generator_args -A "${GENERATOR_PLATFORM}")
  endif()
  if(GENERATOR_TOOLSET)
    list(APPEND generator_args -T "${GENERATOR_TOOLSET}")
  endif()
  set(configure_command "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}"
    ${generator_args} -C "${INIT_CACHE}" -DCMAKE_BUILD_TYPE=Release)

  if(DEFINED EXPECT_CONFIGURE_ERROR)
    expect_failure("configuring ${SOURCE_DIR}" "${EXPECT_CONFIGURE_ERROR}" ${configure_command})
    return()
  endif()

  run_step("configure ${SOURCE_DIR}" ${configure_command})
  cmake_host_system_information(RESULT jobs QUERY NUMBER_OF_LOGICAL_CORES)
  if(DEFINED EXPECT_BUILD_ERROR)
    expect_failure("building ${SOURCE_DIR}" "${EXPECT_BUILD_ERROR}"
      "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --config Release)
    return()
  endif()
  run_step("build" "${CMAKE_COMMAND}" --build "${BINARY_DIR}" --config Release --parallel ${jobs})

  find_program(consumer consumer PATHS "${BINARY_DIR}" "${BINARY_DIR}/Release" NO_DEFAULT_PATH)
  if(NOT consumer)
    message(FATAL_ERROR "the build of ${SOURCE_DIR} made no program `consumer`")
  endif()
  execute_process(COMMAND "${consumer}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${consumer} failed (${rc}):\n${out}")
  endif()
  message(STATUS "${consumer}: ${out}")

else()
  message(FATAL_ERROR "run_consumer.cmake: MODE must be install or consume, not '${MODE}'")
endif()
