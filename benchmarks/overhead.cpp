// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// Per-item cost of the scheduler: 10^6 items of about 70 ns each of dependent arithmetic
// (no memory traffic), so any time above serial / workers is scheduling overhead.
//   BM_Overhead/<peer>/1000000: summarize.py reports the overhead per item as
//       (median parallel time * workers - median serial time) / n.
//   BM_OverheadLoaded/<peer>/1000000: the same calls on a machine that other work shares, as
//       a batch job finds a shared node: one busy thread per hardware thread runs beside
//       them, so every worker loses its core now and then. Compare the peers' times.

#include "common.hpp"

#include <polymap/map.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr double item_seconds = 70e-9;
constexpr std::size_t n = 1'000'000;

std::uint64_t iters = 1;  // spin() iterations of one ~70 ns item, set once in register_all()

void overhead_serial() {
  const std::uint64_t k = iters;
  for (std::size_t i = 0; i < n; ++i) polymap_bench::consume(polymap_bench::spin(k, i));
}

void overhead_tbb() {
  const std::uint64_t k = iters;
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n),
                    [k](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t i = r.begin(); i < r.end(); ++i) {
                        polymap_bench::consume(polymap_bench::spin(k, i));
                      }
                    });
}

void overhead_openmp_dynamic1() {
  const std::uint64_t k = iters;
  const auto m = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(dynamic, 1)
  for (std::ptrdiff_t i = 0; i < m; ++i) {
    polymap_bench::consume(polymap_bench::spin(k, static_cast<std::uint64_t>(i)));
  }
}

void overhead_openmp_static() {
  const std::uint64_t k = iters;
  const auto m = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t i = 0; i < m; ++i) {
    polymap_bench::consume(polymap_bench::spin(k, static_cast<std::uint64_t>(i)));
  }
}

void overhead_polymap_threads() {
  const std::uint64_t k = iters;
  polymap::for_each(
      n, [k](std::size_t i) { polymap_bench::consume(polymap_bench::spin(k, i)); },
      polymap::options{.backend = polymap::backend::threads});
}

void overhead_polymap_auto() {
  const std::uint64_t k = iters;
  polymap::for_each(n, [k](std::size_t i) { polymap_bench::consume(polymap_bench::spin(k, i)); });
}

void run(benchmark::State& state, void (*call)()) {
  for (auto _ : state) call();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(n));
}

/// One busy thread per hardware thread while it lives: other work on the same cores.
class competing_load {
 public:
  competing_load() {
    const unsigned threads = std::max(1U, std::thread::hardware_concurrency());
    for (unsigned t = 0; t < threads; ++t) {
      spinners_.emplace_back([this, t] {
        std::uint64_t x = t;
        while (!stop_.load(std::memory_order_relaxed)) x = polymap_bench::spin(64, x);
        polymap_bench::consume(x);
      });
    }
  }
  competing_load(const competing_load&) = delete;
  competing_load& operator=(const competing_load&) = delete;
  ~competing_load() {
    stop_.store(true, std::memory_order_relaxed);
    for (std::thread& t : spinners_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> spinners_;
};

void run_loaded(benchmark::State& state, void (*call)()) {
  const competing_load load;
  run(state, call);
}

void register_all() {
  iters = polymap_bench::calibrate_spin(item_seconds);
  polymap_bench::note_calibration("item", iters, item_seconds);
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  for (const auto& [workload, runner] : {std::pair{"BM_Overhead", &run},
                                         std::pair{"BM_OverheadLoaded", &run_loaded}}) {
    polymap_bench::register_peers<decltype(&run), void (*)()>(
        workload, runner,
        {
            {"serial", overhead_serial},
            {"tbb", overhead_tbb},
            {"openmp_dynamic1", overhead_openmp_dynamic1},
            {"openmp_static", overhead_openmp_static},
            {"polymap_threads", overhead_polymap_threads},
            {"polymap_auto", overhead_polymap_auto},
        },
        {static_cast<std::int64_t>(n)});
  }
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
