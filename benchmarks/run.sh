#!/usr/bin/env bash
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# Runs every benchmark program of a build and prints a markdown summary (the median of
# each peer, and polymap against the best peer and against serial). Builds nothing.
#
#   benchmarks/run.sh [BUILD_DIR] [extra Google Benchmark flags...]
#
# BUILD_DIR defaults to build-bench. Environment:
#   REPS=10        repetitions per benchmark (the summary uses their median)
#   OUT=DIR        where the JSON files and summary.md go (default BUILD_DIR/bench-results/DATE)
#   BENCHES="cancel daxpy fork_join mandelbrot overhead processes staging_copy stop_look"   which programs to run
#   INTERLEAVE=1   interleave the repetitions of different benchmarks in random order
#                  (--benchmark_enable_random_interleaving), which spreads slow drift of a
#                  shared machine over all peers instead of penalising whoever ran then
# Nothing is pinned: the peers and polymap place their threads as their users would get.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:-build-bench}
shift || true
reps=${REPS:-10}
benches=${BENCHES:-cancel daxpy fork_join mandelbrot overhead processes staging_copy stop_look}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out=${OUT:-$build/bench-results/$stamp}

bin_dir=$build/benchmarks
if [[ ! -d $bin_dir ]]; then
  echo "run.sh: no $bin_dir; configure with -DPOLYMAP_BUILD_BENCHMARKS=ON and build first" >&2
  exit 1
fi
mkdir -p "$out"

extra=("$@")
if [[ ${INTERLEAVE:-0} == 1 ]]; then
  extra+=(--benchmark_enable_random_interleaving=true)
fi

{
  echo "## Machine"
  echo
  echo '```'
  echo "date:   $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "uname:  $(uname -a)"
  echo "nproc:  $(nproc)"
  echo "load:   $(cat /proc/loadavg 2>/dev/null || echo '?')"
  lscpu 2>/dev/null | head -n 20 || true
  echo '```'
  echo
  echo "Command: REPS=$reps benchmarks/run.sh $build ${extra[*]:-}"
  echo
} | tee "$out/machine.md"

jsons=()
for b in $benches; do
  exe=$bin_dir/bench_$b
  if [[ ! -x $exe ]]; then
    echo "run.sh: $exe missing, skipped" >&2
    continue
  fi
  echo "run.sh: $exe ($reps repetitions)" >&2
  "$exe" --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
    --benchmark_format=json --benchmark_out="$out/$b.json" --benchmark_out_format=json \
    "${extra[@]}" >/dev/null
  jsons+=("$out/$b.json")
done

if ((${#jsons[@]} == 0)); then
  echo "run.sh: nothing ran" >&2
  exit 1
fi

echo "## Results"
echo
python3 "$here/summarize.py" "${jsons[@]}" | tee "$out/summary.md"
cat "$out/machine.md" "$out/summary.md" > "$out/report.md"
echo >&2
echo "run.sh: JSON and report.md in $out" >&2
