// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

// Helpers shared by the benchmark programs: a calibrated busy loop with no memory traffic,
// and a main() that registers the benchmarks after Google Benchmark has read its flags.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <initializer_list>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>

namespace polymap_bench {

/// Keeps `v` alive without a memory clobber, so that the surrounding loop keeps its values
/// in registers (benchmark::DoNotOptimize clobbers all memory).
inline void consume(std::uint64_t v) noexcept { asm volatile("" : : "r"(v)); }

/// A chain of `iters` dependent multiply-adds (a 64-bit LCG) seeded by `seed`: pure
/// arithmetic, no loads or stores, and no closed form the compiler could substitute.
inline std::uint64_t spin(std::uint64_t iters, std::uint64_t seed) noexcept {
  std::uint64_t x = seed;
  for (std::uint64_t k = 0; k < iters; ++k) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  }
  return x;
}

/// Shortest wall time, in seconds, of one item of spin(iters) when `batch` independent
/// items run back to back, as a loop over items runs them (an out-of-order core overlaps
/// the tail of one short item with the head of the next, so a 70 ns chain alone is not a
/// 70 ns item in a loop). The minimum of `reps` runs, not the median: on a shared machine
/// a run is only ever slowed down (preempted), and an item calibrated on slowed runs
/// would come out too short.
inline double time_items(std::uint64_t iters, std::uint64_t batch, int reps) {
  using clock = std::chrono::steady_clock;
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clock::now();
    for (std::uint64_t b = 0; b < batch; ++b) consume(spin(iters, b));
    const double t = std::chrono::duration<double>(clock::now() - t0).count();
    if (r == 0 || t < best) best = t;
  }
  return best / static_cast<double>(batch);
}

/// The number of spin() iterations that makes an item of about `seconds` on this core,
/// measured with steady_clock: a rough rate from one long chain, then corrections against
/// batches of items of the chosen length (about 1 ms per batch, so that reading the clock
/// costs nothing).
inline std::uint64_t calibrate_spin(double seconds) {
  constexpr std::uint64_t probe = 1U << 22;
  (void)time_items(probe, 1, 3);  // wake the core up
  const double per_iter = time_items(probe, 1, 5) / static_cast<double>(probe);
  auto iters = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(seconds / per_iter));
  const auto batch = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(1e-3 / seconds));
  for (int round = 0; round < 3; ++round) {
    const double measured = time_items(iters, batch, 11);
    if (measured <= 0) break;
    iters = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(static_cast<double>(iters) * seconds / measured));
  }
  return iters;
}

/// Records the calibration in the JSON context, where summarize.py and readers find it.
inline void note_calibration(const std::string& what, std::uint64_t iters, double seconds) {
  benchmark::AddCustomContext(what + "_iterations", std::to_string(iters));
  benchmark::AddCustomContext(what + "_target_ns", std::to_string(seconds * 1e9));
  benchmark::AddCustomContext("hardware_concurrency",
                              std::to_string(std::thread::hardware_concurrency()));
}

/// One peer of a workload: its name in the benchmark's name, and what `run` is given.
template <class Kernel>
struct peer {
  const char* name;
  Kernel kernel;
};

/// Registers `<workload>/<peer>` for every peer, calling `run(state, peer.kernel)` for each
/// of `args`, on wall-clock time (parallel work needs it).
template <class Run, class Kernel>
void register_peers(const std::string& workload, Run run,
                    std::initializer_list<peer<Kernel>> peers,
                    std::initializer_list<std::int64_t> args) {
  for (const peer<Kernel>& p : peers) {
    benchmark::internal::Benchmark* b =
        benchmark::RegisterBenchmark((workload + "/" + p.name).c_str(), run, p.kernel);
    for (std::int64_t a : args) b->Arg(a);
    b->UseRealTime();
  }
}

}  // namespace polymap_bench

/// main() for a benchmark program whose benchmarks are registered by `register_fn()` once
/// Google Benchmark has parsed its flags (so --help and bad flags cost no calibration).
#define POLYMAP_BENCHMARK_MAIN(register_fn)                           \
  int main(int argc, char** argv) {                                   \
    benchmark::Initialize(&argc, argv);                               \
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1; \
    register_fn();                                                    \
    benchmark::RunSpecifiedBenchmarks();                              \
    benchmark::Shutdown();                                            \
    return 0;                                                         \
  }
