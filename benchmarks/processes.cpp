// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// The processes backend against the threads backend, oneTBB and a hand-written fork pool.
//   BM_ProcessOverhead/<peer>/1000000  map of 10^6 items of about 100 ns returning a 64-bit
//       value: what isolation costs per item (summarize.py: (time * workers - serial) / n).
//       fork_static is the floor of any process design: fork one child per worker, each
//       computes its half straight into MAP_SHARED memory, wait, copy out.
//   BM_Fork/fork_exit_wait/1           fork + _exit + waitpid of this process: the fixed
//       cost a process backend cannot avoid.
//   BM_CrashRun/<peer>/10000           10,000 items of about 100 us; in the crash1pct peer
//       1% of them die of SIGSEGV (collected, each replaced by a fresh worker). Counter
//       caller_cpu_ms: the calling thread's CPU time per call (the supervisor's share).
//   BM_TimeoutKill/polymap_processes/100  an item that never returns, with a 100 ms
//       timeout: the time from its start to the map's return, minus the timeout.

#include "common.hpp"

#include <polymap/map.hpp>
#include <polymap/shared_memory.hpp>

#include <benchmark/benchmark.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using clock = std::chrono::steady_clock;

constexpr std::size_t overhead_n = 1'000'000;
constexpr std::size_t crash_n = 10'000;

std::uint64_t small_iters = 1;  // spin() iterations of a ~100 ns item
std::uint64_t batch_iters = 1;  // spin() iterations of a ~100 us item

std::size_t workers() { return std::max(1U, std::thread::hardware_concurrency()); }

std::uint64_t small_item(std::size_t i) { return polymap_bench::spin(small_iters, i); }

polymap::options on(polymap::backend_kind b) {
  return {.backend = b, .on_error = polymap::on_error::collect};
}

// --- per-item overhead ------------------------------------------------------------------

void overhead_serial(std::vector<std::uint64_t>& out) {
  for (std::size_t i = 0; i < overhead_n; ++i) out[i] = small_item(i);
}

void overhead_tbb(std::vector<std::uint64_t>& out) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, overhead_n),
                    [&out](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t i = r.begin(); i < r.end(); ++i) out[i] = small_item(i);
                    });
}

void overhead_fork_static(std::vector<std::uint64_t>& out) {
  const std::size_t bytes = overhead_n * sizeof(std::uint64_t);
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap failed");
  auto* shared = static_cast<std::uint64_t*>(mem);
  const std::size_t w = workers();
  std::vector<pid_t> children;
  for (std::size_t k = 0; k < w; ++k) {
    const pid_t pid = fork();
    if (pid == 0) {
      for (std::size_t i = overhead_n * k / w; i < overhead_n * (k + 1) / w; ++i) {
        shared[i] = small_item(i);
      }
      _exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) waitpid(pid, nullptr, 0);
  std::memcpy(out.data(), shared, bytes);
  munmap(mem, bytes);
}

void overhead_polymap(std::vector<std::uint64_t>& out, polymap::backend_kind b) {
  // A lambda, as the other peers' loops call small_item: the compiler may inline the item
  // into polymap's chunk loop as it does into theirs. A function pointer would add a call
  // per item that only polymap pays.
  out = polymap::map(std::views::iota(std::size_t{0}, overhead_n),
                     [](std::size_t i) { return small_item(i); }, on(b));
}

void overhead_polymap_threads(std::vector<std::uint64_t>& out) {
  overhead_polymap(out, polymap::backend_kind::threads);
}

void overhead_polymap_processes(std::vector<std::uint64_t>& out) {
  overhead_polymap(out, polymap::backend_kind::processes);
}

void run_overhead(benchmark::State& state, void (*call)(std::vector<std::uint64_t>&)) {
  std::vector<std::uint64_t> out(overhead_n);
  for (auto _ : state) {
    call(out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out[overhead_n - 1] != small_item(overhead_n - 1)) state.SkipWithError("wrong result");
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(overhead_n));
}

// --- fork floor -------------------------------------------------------------------------

void run_fork(benchmark::State& state, int) {
  for (auto _ : state) {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    waitpid(pid, nullptr, 0);
  }
}

// --- crashes ----------------------------------------------------------------------------

std::uint64_t batch_item(std::size_t i, bool crash) {
  if (crash && i % 100 == 42) {
    std::signal(SIGSEGV, SIG_DFL);
    std::raise(SIGSEGV);
  }
  return polymap_bench::spin(batch_iters, i);
}

/// CPU time of the calling thread so far, in seconds: in a processes call, the
/// supervisor's own cost (forks, reaping, reading results), apart from the workers'.
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

void run_crash(benchmark::State& state, bool crash) {
  std::size_t failed = 0;
  const double cpu_before = thread_cpu_seconds();
  for (auto _ : state) {
    try {
      const auto ys = polymap::map(std::views::iota(std::size_t{0}, crash_n),
                                   [crash](std::size_t i) { return batch_item(i, crash); },
                                   on(polymap::backend_kind::processes));
      benchmark::DoNotOptimize(ys.data());
      failed = 0;
    } catch (const polymap::map_error& e) {
      failed = e.failures().size();
    }
  }
  if (failed != (crash ? crash_n / 100 : 0)) {
    state.SkipWithError(("unexpected failures: " + std::to_string(failed)).c_str());
  }
  state.counters["caller_cpu_ms"] =
      1e3 * (thread_cpu_seconds() - cpu_before) /
      static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(crash_n));
}

// --- timeout ----------------------------------------------------------------------------

void run_timeout(benchmark::State& state, int) {
  const auto timeout = std::chrono::milliseconds(state.range(0));
  polymap::shared_vector<std::int64_t> started(1);
  polymap::options o = on(polymap::backend_kind::processes);
  o.timeout = timeout;
  o.workers = 1;
  for (auto _ : state) {
    try {
      polymap::for_each(
          1,
          [&](std::size_t) {
            started[0] = clock::now().time_since_epoch().count();
            std::atomic<std::uint64_t> spin{0};
            for (;;) spin.fetch_add(1, std::memory_order_relaxed);
          },
          o);
      state.SkipWithError("the hung item was not stopped");
      break;
    } catch (const polymap::map_error&) {
    }
    const clock::time_point start{clock::duration{started[0]}};
    state.SetIterationTime(std::chrono::duration<double>(clock::now() - start - timeout).count());
  }
}

void register_all() {
  small_iters = polymap_bench::calibrate_spin(100e-9);
  batch_iters = polymap_bench::calibrate_spin(100e-6);
  polymap_bench::note_calibration("item", small_iters, 100e-9);
  polymap_bench::note_calibration("batch_item", batch_iters, 100e-6);
  using overhead_fn = void (*)(std::vector<std::uint64_t>&);
  polymap_bench::register_peers<decltype(&run_overhead), overhead_fn>(
      "BM_ProcessOverhead", &run_overhead,
      {
          {"serial", overhead_serial},
          {"tbb", overhead_tbb},
          {"fork_static", overhead_fork_static},
          {"polymap_threads", overhead_polymap_threads},
          {"polymap_processes", overhead_polymap_processes},
      },
      {static_cast<std::int64_t>(overhead_n)});
  polymap_bench::register_peers<decltype(&run_fork), int>("BM_Fork", &run_fork,
                                                          {{"fork_exit_wait", 0}}, {1});
  polymap_bench::register_peers<decltype(&run_crash), bool>(
      "BM_CrashRun", &run_crash,
      {{"polymap_processes", false}, {"polymap_processes_crash1pct", true}},
      {static_cast<std::int64_t>(crash_n)});
  benchmark::RegisterBenchmark("BM_TimeoutKill/polymap_processes", &run_timeout, 0)
      ->Arg(100)
      ->UseManualTime()
      ->Iterations(5)
      ->Unit(benchmark::kMillisecond);
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
