#!/usr/bin/env bash
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# The GPU check of the cuda backend, in two halves:
#   scripts/gpu-check.sh build   here (the build machine, nvcc, no GPU needed): builds the
#                                CUDA tests, the GPU benchmarks and the polymap command into
#                                build-gpu/, and gathers them with the
#                                shared libraries they need (found by ldd: hwloc, Google
#                                Benchmark, fmt, cudart ...) in build-gpu-carry/,
#                                which .gitignore keeps out of git (build-*/).
#   scripts/gpu-check.sh run     on the GPU machine (nothing is built there): runs them and
#                                writes the device, the test logs and the figures to $OUT
#                                (or ./gpu-results when OUT is unset).
# With the device tool of this workplace, after `build`: run the command
# `bash scripts/gpu-check.sh run` with carry ["build-gpu-carry"] and timeout_s 480 (its steps'
# limits add up to 420 s; the CPU backends' tests are left to CI), then give the machine
# back. Build again after any change: the carry holds what was built last. Results (8
# files): summary.md (nvidia-smi, polymap calibrate, then the figures against the targets of
# docs/benchmarks.md), ldd.txt, cuda_tests.log, memcheck.log, bench.log, bench_gpu.json,
# staging_copy.json and polymap_bench.json.
set -euo pipefail
cd "$(dirname "$0")/.."
# Under build-*/, which .gitignore ignores: the device tool carries it when named in carry.
carry=build-gpu-carry

build() {
  # Not -march=native: the binaries run on the GPU machine's CPU, not this one's. Neither MPI
  # nor Kokkos (Debian's is Serial): their libraries would only add to what must load there.
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYMAP_WITH_CUDA=ON \
    -DPOLYMAP_BUILD_TESTS=ON -DPOLYMAP_BUILD_BENCHMARKS=ON -DPOLYMAP_BUILD_CLI=ON \
    -DPOLYMAP_BENCH_NATIVE=OFF -DPOLYMAP_WITH_MPI=OFF -DPOLYMAP_WITH_KOKKOS=OFF
  cmake --build build-gpu -j 2 --target polymap_cuda_tests polymap_bench_gpu \
    polymap_bench_staging_copy polymap_cli
  rm -rf "$carry" && mkdir -p "$carry/bin" "$carry/lib"
  local bins=(build-gpu/tests/polymap_cuda_tests build-gpu/benchmarks/bench_gpu
              build-gpu/benchmarks/bench_staging_copy build-gpu/src/cli/polymap)
  cp "${bins[@]}" "$carry/bin/"
  # Every shared library but the C and C++ runtimes and the driver, which the GPU machine has.
  ldd "${bins[@]}" | awk '/=> \// {print $3}' | sort -u |
    grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux[^/]*|libpthread|libdl|librt|libcuda)\.so' |
    xargs -r cp -L -t "$carry/lib/"
  du -sh "$carry"
}

run() {
  local out=${OUT:-gpu-results}
  mkdir -p "$out"
  # The carried libraries for the carried programs only: nvidia-smi and python3 keep the
  # machine's own.
  local libs="$PWD/$carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local carried=(env "LD_LIBRARY_PATH=$libs")
  local status=0 bin=$PWD/$carry/bin
  export PATH=$PATH:/usr/local/cuda/bin  # compute-sanitizer, where the toolkit is
  # Each step has its own time limit, so that one hang cannot use up the machine's time; its
  # output goes to the end of a file of $out.
  step() {
    local limit=$1 log=$2
    shift 2
    echo "== $* (limit ${limit}s)"
    timeout "$limit" "$@" >>"$out/$log" 2>&1 || { echo "   failed: exit $?"; status=1; }
  }
  local reps=(--benchmark_repetitions=5 --benchmark_report_aggregates_only=true
              --benchmark_out_format=json)
  # What polymap measures and keeps ($XDG_CACHE_HOME/polymap) stays in this run's folder.
  export XDG_CACHE_HOME=$PWD/$carry/cache
  # The limits add up to 420 s: with the machine's start and the transfers, a run that uses
  # them all takes some 10 of a session's 15 device minutes, so a second run fits only when
  # the first ended well within them. Give the machine back after it.
  # Every carried program must load there (a library missing, or one that needs a newer
  # glibc than the machine's): said at once, rather than by each step failing.
  "${carried[@]}" ldd "$bin"/* >"$out/ldd.txt" 2>&1 || true
  if grep -q 'not found' "$out/ldd.txt"; then
    echo "gpu-check: a carried program cannot load here; see ldd.txt" | tee "$out/summary.md"
    return 1
  fi
  { nvidia-smi || true; uname -a; nproc
    timeout 30 "${carried[@]}" "$bin/polymap" calibrate || true; } \
    >"$out/device.txt" 2>&1
  step 60 cuda_tests.log "${carried[@]}" "$bin/polymap_cuda_tests"
  step 150 bench.log "${carried[@]}" "$bin/bench_gpu" "${reps[@]}" \
    --benchmark_out="$out/bench_gpu.json"
  step 30 bench.log "${carried[@]}" "$bin/bench_staging_copy" "${reps[@]}" \
    --benchmark_out="$out/staging_copy.json"
  # One file for the device and the figures against their targets (the tool brings back
  # 8), written before the steps that could still time out.
  local figures=()
  for f in "$out/bench_gpu.json" "$out/staging_copy.json"; do [[ -s $f ]] && figures+=("$f"); done
  { cat "$out/device.txt"; echo; python3 benchmarks/summarize.py "${figures[@]}"; } \
    >"$out/summary.md" 2>&1 || status=1
  rm -f "$out/device.txt"
  echo "== polymap bench --json (limit 60s)"
  timeout 60 "${carried[@]}" "$bin/polymap" bench --json >"$out/polymap_bench.json" \
    2>>"$out/bench.log" ||
    { echo "   failed: exit $?"; status=1; }
  # Out-of-bounds accesses and races in polymap's own kernels and copies, where the machine
  # has the checker: the device tests but the out-of-memory one, whose failed allocation
  # the checker would report as an error, those that measure costs, whose bounds the
  # checker's slowness would break, and the two whose size or spinning it would make last
  # minutes.
  if command -v compute-sanitizer >/dev/null; then
    # The tested program inherits the tool's environment: the tool gets the path too.
    step 90 memcheck.log "${carried[@]}" compute-sanitizer --tool memcheck --error-exitcode 3 \
      "$bin/polymap_cuda_tests" \
      --gtest_filter='CudaDevice.*:-*OutOfMemory*:*Costs*:*TwoToTheThirtyOne*:*StopInTheMiddle*'
  else
    echo "compute-sanitizer: not on this machine" >"$out/memcheck.log"
  fi
  tail -n 3 "$out/cuda_tests.log" "$out/memcheck.log"
  cat "$out/summary.md"
  return $status
}

case ${1:-} in
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh build|run (build here, run on the GPU machine)" >&2; exit 2 ;;
esac
