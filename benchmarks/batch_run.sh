#!/usr/bin/env bash
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
#
# The figures of `polymap run`: N jobs of `true`, J at a time, by a bare posix_spawn loop
# (the floor), polymap run without and with a journal, xargs -P and GNU parallel, in
# interleaved rounds (each round runs every peer once, in a random order, so that a slow
# minute of a shared machine is spread over all of them); then the journal's recording
# rate by one runner. Prints markdown: the machine, the median seconds and ms per job of
# each peer, and the ratios the issue asks for. Builds nothing.
#
#   benchmarks/batch_run.sh [BUILD_DIR]     (default build-bench; needs src/cli/polymap,
#                                            benchmarks/bench_spawn_floor, bench_journal)
# Then the output's way out: OUT_N jobs that each write OUT_KIB KiB (`cat` of one file), J
# at a time, through a pipe to `wc -c` (which checks that every byte came), by polymap
# (the jobs write to the pipe themselves), polymap -k (polymap captures each job's output
# and writes it in order), GNU parallel -k and its default --group, and xargs -P.
# Environment: N=2000 J=2 ROUNDS=5 OUT_N=200 OUT_KIB=1024; NO_PARALLEL=1 leaves GNU parallel
# out (about 45 s a round); OUT_N=0 leaves the output part out.
set -euo pipefail

build=${1:-build-bench}
n=${N:-2000}
j=${J:-2}
rounds=${ROUNDS:-5}
polymap=$build/src/cli/polymap
floor=$build/benchmarks/bench_spawn_floor
journal_bench=$build/benchmarks/bench_journal
for f in "$polymap" "$floor" "$journal_bench"; do
  if [[ ! -x $f ]]; then
    echo "batch_run.sh: no $f; configure with -DPOLYMAP_BUILD_BENCHMARKS=ON and build" >&2
    exit 1
  fi
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
seq "$n" > "$work/items"
true_path=$(command -v true)

peers=(floor polymap polymap_journal xargs)
if [[ ${NO_PARALLEL:-0} != 1 ]] && command -v parallel > /dev/null; then peers+=(parallel); fi

run_peer() {
  case $1 in
    floor) "$floor" "$n" "$j" "$true_path" > /dev/null ;;
    polymap) "$polymap" run -j "$j" -a "$work/items" -- true ;;
    polymap_journal)
      rm -f "$work"/j.db*
      "$polymap" run -j "$j" -a "$work/items" --journal "$work/j.db" -- true ;;
    xargs) xargs -P "$j" -n 1 true < "$work/items" ;;
    parallel) parallel --will-cite -j "$j" true :::: "$work/items" ;;
  esac
}

for ((r = 1; r <= rounds; ++r)); do
  for peer in $(printf '%s\n' "${peers[@]}" | shuf); do
    start=$(date +%s.%N)
    run_peer "$peer"
    end=$(date +%s.%N)
    echo "$peer $(echo "$end - $start" | bc -l)" >> "$work/times"
  done
done

source "$(dirname "$0")/machine.sh"
print_machine
python3 - "$work/times" "$n" "$j" "$rounds" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    peer, t = line.split()
    times.setdefault(peer, []).append(float(t))
n, j, rounds = int(sys.argv[2]), sys.argv[3], sys.argv[4]
med = {p: statistics.median(v) for p, v in times.items()}
print(f"### {n} jobs of `true`, {j} at a time: medians of {rounds} interleaved rounds\n")
print("| peer | median s | ms per job | min s | max s |")
print("|---|---|---|---|---|")
for p in ["floor", "polymap", "polymap_journal", "xargs", "parallel"]:
    if p in med:
        print(f"| {p} | {med[p]:.3f} | {1000 * med[p] / n:.2f} | {min(times[p]):.3f} | {max(times[p]):.3f} |")
print("\n| figure | target | measured | met |")
print("|---|---|---|---|")
for p in ["polymap", "polymap_journal"]:
    r = med[p] / med["floor"]
    print(f"| {p} / posix_spawn floor | <= 1.20x | {r:.2f}x | {'yes' if r <= 1.2 else 'no'} |")
    if "parallel" in med:
        s = med["parallel"] / med[p]
        print(f"| GNU parallel / {p} | >= 4x | {s:.1f}x | {'yes' if s >= 4 else 'no'} |")
    x = med["xargs"] / med[p]
    print(f"| xargs -P{j} / {p} | > 1x | {x:.2f}x | {'yes' if x > 1 else 'no'} |")
PY
echo
echo "### Journal: item ends recorded per second by one runner"
echo
echo "| ends per transaction | ends/s |"
echo "|---|---|"
"$journal_bench" "$work" 50000 | while read -r batch rate; do echo "| $batch | $rate |"; done

out_n=${OUT_N:-200}
out_kib=${OUT_KIB:-1024}
if ((out_n > 0)); then
  head -c $((out_kib * 1024)) /dev/urandom > "$work/blob"
  for ((i = 0; i < out_n; ++i)); do echo "$work/blob"; done > "$work/blobs"
  want=$((out_n * out_kib * 1024))
  out_peers=(polymap polymap_k xargs)
  if [[ ${NO_PARALLEL:-0} != 1 ]] && command -v parallel > /dev/null; then
    out_peers+=(parallel parallel_k)
  fi
  run_out_peer() {
    case $1 in
      polymap) "$polymap" run -j "$j" -a "$work/blobs" -- cat ;;
      polymap_k) "$polymap" run -k -j "$j" -a "$work/blobs" -- cat ;;
      xargs) xargs -P "$j" -n 1 cat < "$work/blobs" ;;
      parallel) parallel --will-cite -j "$j" cat :::: "$work/blobs" ;;
      parallel_k) parallel --will-cite -k -j "$j" cat :::: "$work/blobs" ;;
    esac
  }
  for ((r = 1; r <= rounds; ++r)); do
    for peer in $(printf '%s\n' "${out_peers[@]}" | shuf); do
      start=$(date +%s.%N)
      got=$(run_out_peer "$peer" | wc -c)
      end=$(date +%s.%N)
      if ((got != want)); then
        echo "batch_run.sh: $peer wrote $got bytes, not $want" >&2
        exit 1
      fi
      echo "$peer $(echo "$end - $start" | bc -l)" >> "$work/out_times"
    done
  done
  echo
  python3 - "$work/out_times" "$out_n" "$out_kib" "$j" "$rounds" <<'PY'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    peer, t = line.split()
    times.setdefault(peer, []).append(float(t))
n, kib, j, rounds = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
mib = n * kib / 1024
med = {p: statistics.median(v) for p, v in times.items()}
print(f"### {n} jobs that each write {kib} KiB, {j} at a time, into a pipe: medians of {rounds} interleaved rounds\n")
print("| peer | median s | MiB/s | min s | max s | its time over polymap -k's |")
print("|---|---|---|---|---|---|")
for p in ["polymap", "polymap_k", "xargs", "parallel", "parallel_k"]:
    if p in med:
        print(f"| {p} | {med[p]:.3f} | {mib / med[p]:.0f} | {min(times[p]):.3f} | "
              f"{max(times[p]):.3f} | {med[p] / med['polymap_k']:.2f}x |")
PY
fi
