#!/usr/bin/env bash
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# Builds and runs every test configuration: an optimised build with warnings as errors
# (unit, backend, CLI, header, example and CMake-consumer tests), then the unit and backend
# suites under ASan+UBSan and under TSan, then a build of the command-line tool and the
# examples without CUDA, Kokkos and MPI, as on a machine that has none of them. Stops at the
# first failure.
# Usage: scripts/test.sh [release|asan|tsan|plain]...   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
configs=("$@")
((${#configs[@]} == 0)) && configs=(release asan tsan plain)

run_config() {
  local name=$1
  shift
  local dir=build-test-$name
  echo "== polymap tests: $name =="
  cmake -S . -B "$dir" -G Ninja -DPOLYMAP_WERROR=ON -DPOLYMAP_BUILD_TESTS=ON "$@"
  cmake --build "$dir" -j "$jobs"
  # -LE slow: the kill -9 soak of polymap run (ctest -L slow) is not part of this run.
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 600 -LE slow)
}

for config in "${configs[@]}"; do
  case $config in
    release)
      run_config release -DCMAKE_BUILD_TYPE=Release
      ;;
    asan)
      # The sanitizer builds test the library: no CLI, examples or benchmarks, and no CUDA,
      # Kokkos or MPI (nvcc does not take -fsanitize, and neither Debian's Kokkos nor its
      # Open MPI is instrumented).
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_config asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOLYMAP_SANITIZE=address,undefined \
        -DPOLYMAP_BUILD_CLI=OFF -DPOLYMAP_BUILD_EXAMPLES=OFF -DPOLYMAP_WITH_CUDA=OFF \
        -DPOLYMAP_WITH_KOKKOS=OFF -DPOLYMAP_WITH_MPI=OFF
      ;;
    tsan)
      TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
        run_config tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPOLYMAP_SANITIZE=thread \
        -DPOLYMAP_BUILD_CLI=OFF -DPOLYMAP_BUILD_EXAMPLES=OFF -DPOLYMAP_WITH_CUDA=OFF \
        -DPOLYMAP_WITH_KOKKOS=OFF -DPOLYMAP_WITH_MPI=OFF
      ;;
    plain)
      # Builds only: the same tests run in the configurations above.
      echo "== polymap build: plain (no CUDA, no Kokkos, no MPI) =="
      cmake -S . -B build-test-plain -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPOLYMAP_WERROR=ON \
        -DPOLYMAP_BUILD_TESTS=OFF -DPOLYMAP_WITH_CUDA=OFF -DPOLYMAP_WITH_KOKKOS=OFF \
        -DPOLYMAP_WITH_MPI=OFF
      cmake --build build-test-plain -j "$jobs"
      ;;
    *)
      echo "scripts/test.sh: unknown configuration '$config' (release, asan, tsan or plain)" >&2
      exit 2
      ;;
  esac
done
echo "== polymap tests: all passed (${configs[*]}) =="
