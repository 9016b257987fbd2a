#!/usr/bin/env python3
# SPDX-FileCopyrightText: polymap contributors
# SPDX-License-Identifier: Apache-2.0
"""Summarise Google Benchmark JSON files of the polymap benchmarks as markdown.

Usage: summarize.py RESULT.json [RESULT.json ...] [--workers N]

Benchmarks are named BM_<Workload>/<peer>/<n> (Google Benchmark appends /real_time).
For every workload and n, prints the median wall time of each peer, its rate, its spread
(coefficient of variation over the repetitions) and, higher being better everywhere:
  vs serial     serial time / time (the speedup)
  vs best peer  best peer time / time, for polymap rows; the best peer is the fastest
                entry that is neither serial nor polymap
  vs best       the same against the faster of serial and the best peer
BM_Overhead and BM_ProcessOverhead also get the scheduling cost per item,
(time * workers - serial time) / n.
A last table checks the targets of docs/benchmarks.md. Only the standard library is used.
"""

import argparse
import json
import statistics
import sys
from collections import defaultdict

POLYMAP_PREFIX = "polymap_"
STOP_LOOK_ITEMS = 1 << 22  # items of each BM_StopLook call (benchmarks/stop_look.cpp)


def load(paths):
    """Returns ({(workload, n): {peer: row}}, context of the first file).

    A row holds the median real time in ns, the cv and the rates. With repetitions the
    'median' and 'cv' aggregates are used; a single run (no aggregates) uses its
    iterations' own figures.
    """
    context = {}
    runs = defaultdict(lambda: {"iterations": [], "aggregates": {}})
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not context:
            context = data.get("context", {})
        for b in data.get("benchmarks", []):
            if b.get("error_occurred"):
                print(f"warning: {b['name']}: {b.get('error_message', 'error')}", file=sys.stderr)
                continue
            run_name = b.get("run_name", b["name"])
            if b.get("run_type") == "aggregate":
                runs[run_name]["aggregates"][b.get("aggregate_name")] = b
            else:
                runs[run_name]["iterations"].append(b)
    table = defaultdict(dict)
    for run_name, r in runs.items():
        parts = [p for p in run_name.split("/") if p != "real_time"]
        if len(parts) < 2:
            continue
        workload = parts[0].removeprefix("BM_")
        peer = parts[1]
        n = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
        median = r["aggregates"].get("median")
        if median is not None:
            ns = to_ns(median["real_time"], median["time_unit"])
            cv = r["aggregates"].get("cv")
            row = {
                "ns": ns,
                "cv": cv["real_time"] if cv else None,
                "bytes_per_second": median.get("bytes_per_second"),
                "items_per_second": median.get("items_per_second"),
                "reps": median.get("repetitions", 1),
                "caller_cpu_ms": median.get("caller_cpu_ms"),
            }
        elif r["iterations"]:
            its = r["iterations"]
            times = [to_ns(b["real_time"], b["time_unit"]) for b in its]
            row = {
                "ns": statistics.median(times),
                "cv": statistics.stdev(times) / statistics.mean(times) if len(times) > 1 else None,
                "bytes_per_second": median_of(its, "bytes_per_second"),
                "items_per_second": median_of(its, "items_per_second"),
                "reps": len(its),
                "caller_cpu_ms": median_of(its, "caller_cpu_ms"),
            }
        else:
            continue
        table[(workload, n)][peer] = row
    return table, context


def median_of(rows, key):
    values = [b[key] for b in rows if key in b]
    return statistics.median(values) if values else None


def to_ns(value, unit):
    return value * {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


# Workloads whose rate is quoted in bytes; the others in items (rows, items) per second.
BYTE_RATES = {"Daxpy", "DeviceSaxpy", "DeviceMap", "HostMap", "StagingCopy"}


def fmt_rate(row, workload):
    if workload in BYTE_RATES and row.get("bytes_per_second"):
        return f"{row['bytes_per_second'] / 1e9:.3g} GB/s"
    if row.get("items_per_second"):
        return f"{row['items_per_second'] / 1e6:.3g} M items/s"
    return ""


def fmt_ratio(x):
    return f"{x:.2f}x" if x is not None else ""


def is_peer(name):
    return name != "serial" and not name.startswith(POLYMAP_PREFIX)


def best_peer(peers, among=None):
    """(name, ns) of the fastest peer that is neither serial nor polymap, or None."""
    cands = [(p, r["ns"]) for p, r in peers.items()
             if is_peer(p) and (among is None or any(p.startswith(a) for a in among))]
    return min(cands, key=lambda c: c[1]) if cands else None


def size_label(n):
    if n > 0 and n & (n - 1) == 0 and n >= 1024:
        return f"{n} (2^{n.bit_length() - 1})"
    return str(n)


def workload_tables(table, workers):
    out = []
    workloads = sorted({w for w, _ in table}, key=workload_order)
    for w in workloads:
        overhead = w in ("Overhead", "ProcessOverhead", "StopLook")
        out.append(f"### {w}\n")
        head = ["n", "peer", "median", "rate", "cv", "vs serial", "vs best peer", "vs best"]
        if overhead:
            head.append("overhead/item")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "---|" * len(head))
        for n in sorted(n for ww, n in table if ww == w):
            peers = table[(w, n)]
            serial = peers.get("serial")
            best = best_peer(peers)
            for p in sorted(peers, key=peer_order):
                r = peers[p]
                vs_serial = serial["ns"] / r["ns"] if serial else None
                vs_best = vs_best_all = None
                best_text = ""
                if p.startswith(POLYMAP_PREFIX) and best:
                    vs_best = best[1] / r["ns"]
                    best_text = f"{fmt_ratio(vs_best)} ({best[0]})"
                    floor = min(best[1], serial["ns"]) if serial else best[1]
                    vs_best_all = floor / r["ns"]
                elif best and p == best[0]:
                    best_text = "best peer"
                cv = f"{r['cv'] * 100:.1f}%" if r["cv"] is not None else ""
                cells = [size_label(n), p, fmt_time(r["ns"]), fmt_rate(r, w), cv,
                         fmt_ratio(vs_serial), best_text, fmt_ratio(vs_best_all)]
                if overhead:
                    # StopLook's argument is the item's cost; its items run on one thread.
                    w_n = (1, STOP_LOOK_ITEMS) if w == "StopLook" else (workers, n)
                    cells.append(f"{per_item_overhead(r, serial, *w_n):.2f} ns"
                                 if serial and p != "serial" and n else "")
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def per_item_overhead(row, serial, workers, n):
    return (row["ns"] * workers - serial["ns"]) / n


def workload_order(w):
    order = ["Daxpy", "ForkJoin", "EmptyForkJoin", "Mandelbrot", "Overhead", "OverheadLoaded",
             "StopLook", "Cancel", "ProcessOverhead", "Fork", "CrashRun", "TimeoutKill"]
    return (order.index(w) if w in order else len(order), w)


def peer_order(p):
    if p == "serial":
        return (0, p)
    if p.startswith(POLYMAP_PREFIX):
        return (2, p)
    return (1, p)


def targets(table, workers):
    """Rows (target, measured, ok) for the targets in docs/benchmarks.md that the data covers."""
    rows = []

    def get(w, n, p):
        return table.get((w, n), {}).get(p)

    big = 1 << 26
    peers = table.get(("Daxpy", big), {})
    best = best_peer(peers, among=["openmp_static", "tbb", "std_par"])
    for p in ("polymap_auto", "polymap_threads"):
        r = peers.get(p)
        if r and best:
            x = best[1] / r["ns"]
            rows.append((f"daxpy 2^26, {p} >= 1.00x best of OpenMP static/TBB/std::par",
                         f"{x:.2f}x ({best[0]})", x >= 1.0))
    for n in (1 << 10, 1 << 16):
        peers = table.get(("Daxpy", n), {})
        r, serial, best = peers.get("polymap_auto"), peers.get("serial"), best_peer(peers)
        if r and serial and best:
            floor = min(serial["ns"], best[1])
            x = floor / r["ns"]
            rows.append((f"daxpy 2^{n.bit_length() - 1}, polymap_auto never slower than the "
                         "better of serial and the best peer",
                         f"{fmt_time(r['ns'])} vs {fmt_time(floor)} ({x:.2f}x)", x >= 1.0))
    fj = [(n, r) for (w, n), peers in table.items() if w == "ForkJoin"
          for p, r in peers.items() if p == "polymap_threads"]
    for n, r in fj:
        rows.append(("two items of 5 us on threads <= 6.0 us median",
                     fmt_time(r["ns"]), r["ns"] <= 6000.0))
    for (w, n), peers in table.items():
        if w != "Mandelbrot" or "serial" not in peers:
            continue
        for p in ("polymap_auto", "polymap_threads"):
            if p in peers:
                x = peers["serial"]["ns"] / peers[p]["ns"]
                rows.append((f"Mandelbrot {n}x{n}, {p} speedup >= 1.95x over serial",
                             f"{x:.2f}x", x >= 1.95))
    for (w, n), peers in table.items():
        if w != "Overhead" or "serial" not in peers or n == 0:
            continue
        for p in ("polymap_auto", "polymap_threads"):
            if p in peers:
                o = per_item_overhead(peers[p], peers["serial"], workers, n)
                rows.append((f"{n} items of ~70 ns, {p} overhead per item <= 5 ns",
                             f"{o:.1f} ns", o <= 5.0))
    rows.extend(process_targets(table, workers))
    for (w, n), peers in table.items():
        mine, serial, best = peers.get("polymap_parallel_copy"), peers.get("serial"), best_peer(peers)
        if w == "StagingCopy" and mine and serial and best:
            x = best[1] / mine["ns"]
            rows.append(("staging step (8 MiB out, 8 MiB in), parallel_copy >= 1.00x the best "
                         "of oneTBB/OpenMP", f"{x:.2f}x ({best[0]}); "
                         f"{serial['ns'] / mine['ns']:.2f}x one thread's memcpy", x >= 1.0))
    rows.extend(gpu_targets(table))
    return rows


def process_targets(table, workers):
    """The targets of the processes backend (benchmarks/processes.cpp)."""
    rows = []
    fork = table.get(("Fork", 1), {}).get("fork_exit_wait")
    for (w, n), peers in table.items():
        if w != "ProcessOverhead" or "serial" not in peers:
            continue
        procs, threads = peers.get("polymap_processes"), peers.get("polymap_threads")
        if procs:
            o = per_item_overhead(procs, peers["serial"], workers, n)
            rows.append((f"{n} items of ~100 ns on processes, overhead per item <= 50 ns",
                         f"{o:.1f} ns", o <= 50.0))
        if procs and threads and fork:
            bound = fork["ns"] + 1.2 * threads["ns"]
            rows.append((f"{n} items of ~100 ns on processes <= fork + 1.2x threads",
                         f"{fmt_time(procs['ns'])} vs {fmt_time(bound)} "
                         f"({procs['ns'] / threads['ns']:.2f}x threads)",
                         procs["ns"] <= bound))
    for (w, n), peers in table.items():
        clean, crash = peers.get("polymap_processes"), peers.get("polymap_processes_crash1pct")
        if w == "CrashRun" and clean and crash:
            x = crash["ns"] / clean["ns"]
            measured = f"{x:.2f}x"
            if crash.get("caller_cpu_ms") is not None and clean.get("caller_cpu_ms") is not None:
                measured += (f" (caller's CPU per call {crash['caller_cpu_ms']:.1f} ms, "
                             f"{clean['caller_cpu_ms']:.1f} ms without crashes)")
            rows.append((f"{n} items of ~100 us, 1% crashing, <= 1.5x the run without crashes",
                         measured, x <= 1.5))
    for (w, n), peers in table.items():
        kill = peers.get("polymap_processes")
        if w == "TimeoutKill" and kill:
            rows.append((f"hung item with a {n} ms timeout stopped within timeout + 100 ms",
                         f"+{fmt_time(kill['ns'])}", kill["ns"] <= 100e6))
    return rows


def gpu_targets(table):
    """The targets of the GPU backend (benchmarks/gpu_map.cu), rates in bytes moved."""
    rows = []
    copy = next((peers["d2d_copy"] for (w, n), peers in table.items()
                 if w == "DeviceMap" and "d2d_copy" in peers), None)
    for (w, n), peers in sorted(table.items()):
        mine = peers.get("polymap_cuda")
        if w not in ("DeviceSaxpy", "DeviceMap") or not mine:
            continue
        label = f"{'saxpy' if w == 'DeviceSaxpy' else 'map'} 2^{n.bit_length() - 1} floats on the device"
        if copy and copy.get("bytes_per_second") and mine.get("bytes_per_second"):
            x = mine["bytes_per_second"] / copy["bytes_per_second"]
            rows.append((f"{label} >= 90% of the device-to-device copy's bandwidth",
                         f"{mine['bytes_per_second'] / 1e9:.0f} vs "
                         f"{copy['bytes_per_second'] / 1e9:.0f} GB/s ({x:.0%})", x >= 0.9))
        for peer in ("thrust_transform", "hand_kernel"):
            if peer in peers:
                x = peers[peer]["ns"] / mine["ns"]
                rows.append((f"{label} >= 1.00x {peer}", f"{x:.2f}x", x >= 1.0))
    for (w, n), peers in sorted(table.items()):
        if w != "HostMap":
            continue
        naive = peers.get("naive_copy_compute_copy")
        # The stricter ceiling when there is one: both directions at once, as the stream runs.
        ceiling_name = next((c for c in ("pinned_copies_overlapped", "pinned_copies_sequential")
                             if c in peers), None)
        ceiling = peers.get(ceiling_name) if ceiling_name else None
        for p in ("polymap_cuda", "polymap_cuda_into"):
            mine = peers.get(p)
            if not mine:
                continue
            if ceiling and ceiling.get("bytes_per_second") and mine.get("bytes_per_second"):
                x = mine["bytes_per_second"] / ceiling["bytes_per_second"]
                rows.append((f"host map 2^{n.bit_length() - 1} floats, {p} >= 85% of pinned "
                             f"host-to-device + device-to-host bandwidth ({ceiling_name})",
                             f"{mine['bytes_per_second'] / 1e9:.1f} vs "
                             f"{ceiling['bytes_per_second'] / 1e9:.1f} GB/s ({x:.0%})", x >= 0.85))
            if naive:
                x = naive["ns"] / mine["ns"]
                rows.append((f"host map 2^{n.bit_length() - 1} floats, {p} >= 1.5x naive "
                             "copy-in, kernel, copy-out", f"{x:.2f}x", x >= 1.5))
        # The same on pinned buffers, which polymap copies without staging.
        mine, naive = peers.get("polymap_cuda_into_pinned"), peers.get("naive_pinned")
        if mine and naive:
            x = naive["ns"] / mine["ns"]
            rows.append((f"host map 2^{n.bit_length() - 1} floats on pinned buffers, "
                         "polymap_cuda_into_pinned >= 1.5x naive_pinned", f"{x:.2f}x", x >= 1.5))
    for (w, n), peers in table.items():
        mine, raw = peers.get("polymap_cuda"), peers.get("raw_kernel")
        if w == "EmptyLaunch" and mine and raw:
            x = mine["ns"] / raw["ns"]
            rows.append(("empty map launch <= 1.2x a raw kernel launch",
                         f"{fmt_time(mine['ns'])} vs {fmt_time(raw['ns'])} ({x:.2f}x)", x <= 1.2))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="Google Benchmark JSON output files")
    ap.add_argument("--workers", type=int, default=0,
                    help="parallel workers for the overhead formula (default: the "
                         "benchmark's omp_max_threads, else num_cpus)")
    args = ap.parse_args()
    table, context = load(args.files)
    if not table:
        print("no benchmark results found", file=sys.stderr)
        return 1
    workers = args.workers or int(context.get("omp_max_threads") or context.get("num_cpus") or 1)
    reps = sorted({r["reps"] for peers in table.values() for r in peers.values()})
    print(f"Medians of {'/'.join(map(str, reps))} repetition(s); {workers} workers; "
          # Google Benchmark's own build (Debian ships it as "debug"); the programs measured
          # are built by CMake (Release in build-bench).
          f"Google Benchmark library build: {context.get('library_build_type', '?')}; "
          f"load average at start: {context.get('load_avg', '?')}.")
    print("Ratios are speeds (higher is better): vs serial = serial time / time; "
          "vs best peer = best non-polymap parallel peer's time / time; "
          "vs best = the faster of serial and the best peer / time.\n")
    print("\n".join(workload_tables(table, workers)))
    rows = targets(table, workers)
    if rows:
        print("### Targets\n")
        print("| target | measured | met |")
        print("|---|---|---|")
        for t, m, ok in rows:
            print(f"| {t} | {m} | {'yes' if ok else '**no**'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
