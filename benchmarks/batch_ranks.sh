#!/usr/bin/env bash
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# `polymap run` over the ranks of an MPI job, against the same batch on one machine and
# against what MPI users write by hand: each rank takes every R-th line of the input
# (`awk 'NR % R == rank'`) and runs its share with xargs. Two slots in all (two ranks of one
# slot, or one rank of two), in interleaved rounds (each round runs every peer once, in a
# random order), two workloads:
#   even:   N jobs of `true` (what a job costs to hand out: one message each way per job)
#   skewed: SKEWED_N jobs of `sleep`, 20 ms each but every 20th 0.5 s (the long ones all fall
#           to one rank under the static split)
# Prints markdown: the machine, the median seconds of each peer, and the ratios.
#
#   benchmarks/batch_ranks.sh [BUILD_DIR]    (default build-bench; needs src/cli/polymap
#                                             built with MPI, and mpirun; builds nothing)
# Environment: N=2000 SKEWED_N=200 ROUNDS=5. Under root, Open MPI needs the variables below.
set -euo pipefail

build=${1:-build-bench}
n=${N:-2000}
skewed_n=${SKEWED_N:-200}
rounds=${ROUNDS:-5}
polymap=$(realpath "$build/src/cli/polymap")
if [[ ! -x $polymap ]] || ! command -v mpirun > /dev/null; then
  echo "batch_ranks.sh: needs $build/src/cli/polymap (built with MPI) and mpirun" >&2
  exit 1
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq "$n" > "$work/even"
for ((i = 1; i <= skewed_n; ++i)); do
  if ((i % 20 == 0)); then echo 0.5; else echo 0.02; fi
done > "$work/skewed"

run_peer() {  # peer workload command
  local peer=$1 items=$work/$2 command=$3
  case $peer in
    one_machine) "$polymap" run -j 2 -a "$items" -- "$command" ;;
    ranks) mpirun -n 2 "$polymap" run -j 1 -a "$items" -- "$command" ;;
    static_split)
      mpirun -n 2 sh -c "awk -v r=\$OMPI_COMM_WORLD_RANK 'NR % 2 == r' '$items' |
                         xargs -P 1 -n 1 $command" ;;
  esac
}

peers=(one_machine ranks static_split)
for ((r = 1; r <= rounds; ++r)); do
  for workload in even skewed; do
    command=true
    [[ $workload == skewed ]] && command=sleep
    for peer in $(printf '%s\n' "${peers[@]}" | shuf); do
      start=$(date +%s.%N)
      run_peer "$peer" "$workload" "$command" > /dev/null
      end=$(date +%s.%N)
      echo "$workload $peer $(echo "$end - $start" | bc -l)" >> "$work/times"
    done
  done
done

source "$(dirname "$0")/machine.sh"
print_machine "mpirun: $(mpirun --version 2>&1 | head -1)"
python3 - "$work/times" "$n" "$skewed_n" "$rounds" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    workload, peer, t = line.split()
    times.setdefault((workload, peer), []).append(float(t))
n, skewed_n, rounds = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"### medians of {rounds} interleaved rounds, two slots in all\n")
print("| workload | peer | median s | min s | max s | over ranks |")
print("|---|---|---|---|---|---|")
for workload, label in [("even", f"{n} x true"), ("skewed", f"{skewed_n} x sleep (skewed)")]:
    ranks = statistics.median(times[(workload, "ranks")])
    for peer in ["one_machine", "ranks", "static_split"]:
        v = times[(workload, peer)]
        m = statistics.median(v)
        print(f"| {label} | {peer} | {m:.3f} | {min(v):.3f} | {max(v):.3f} | {m / ranks:.2f}x |")
PY
