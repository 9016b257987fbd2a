#!/usr/bin/env bash
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# Runs bench_mpi_farm (the mpi backend against a static split with MPI_Allgatherv) under
# Open MPI's mpirun, ROUNDS times each variant, interleaved, and prints rank 0's table.
# Builds nothing.
#
#   benchmarks/mpi_farm.sh [BUILD_DIR]
#
# Environment: RANKS (default: one per CPU, at most 2), ROUNDS (7), WORKERS per rank (1).
set -euo pipefail

build=${1:-build-bench}
bin=$build/benchmarks/bench_mpi_farm
if [[ ! -x $bin ]]; then
  echo "mpi_farm.sh: no $bin; configure with MPI (libopenmpi-dev) and -DPOLYMAP_BUILD_BENCHMARKS=ON" >&2
  exit 1
fi
cpus=$(nproc)
ranks=${RANKS:-$((cpus < 2 ? cpus : 2))}
args=(-n "$ranks")
# Open MPI refuses to run as root unless told; oversubscribe when asked for more ranks than CPUs.
[[ $(id -u) -eq 0 ]] && args+=(--allow-run-as-root)
((ranks > cpus)) && args+=(--oversubscribe)
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
mpirun "${args[@]}" "$bin" "${ROUNDS:-7}" "${WORKERS:-1}"
