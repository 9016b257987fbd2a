// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// Fork-join latency. BM_ForkJoin/<peer>/2: two items of about 5 us of pure arithmetic
// each, so the ideal is 5 us per call on two cores (serial: 10 us). BM_EmptyForkJoin/<peer>/2:
// the same shape with empty items, i.e. the bare cost of waking a second worker and joining.

#include "common.hpp"

#include <polymap/map.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace {

constexpr double item_seconds = 5e-6;
constexpr std::int64_t items = 2;

std::uint64_t iters = 1;  // spin() iterations of one 5 us item, set once in register_all()

void work(std::size_t i) noexcept { polymap_bench::consume(polymap_bench::spin(iters, i)); }

void fork_join_serial() {
  for (std::size_t i = 0; i < items; ++i) work(i);
}

void fork_join_openmp() {
#pragma omp parallel for schedule(static, 1) num_threads(2)
  for (std::int64_t i = 0; i < items; ++i) work(static_cast<std::size_t>(i));
}

void fork_join_tbb() {
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, items, 1),
      [](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t i = r.begin(); i < r.end(); ++i) work(i);
      },
      tbb::simple_partitioner{});
}

void fork_join_polymap_threads() {
  polymap::for_each(
      items, [](std::size_t i) { work(i); },
      polymap::options{.backend = polymap::backend::threads});
}

void empty_openmp() {
#pragma omp parallel num_threads(2)
  polymap_bench::consume(static_cast<std::uint64_t>(omp_get_thread_num()));
}

void empty_tbb() {
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, items, 1),
      [](const tbb::blocked_range<std::size_t>& r) { polymap_bench::consume(r.begin()); },
      tbb::simple_partitioner{});
}

void empty_polymap_threads() {
  polymap::for_each(
      items, [](std::size_t i) { polymap_bench::consume(i); },
      polymap::options{.backend = polymap::backend::threads});
}

void run(benchmark::State& state, void (*call)()) {
  for (auto _ : state) call();
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * items);
}

void register_all() {
  iters = polymap_bench::calibrate_spin(item_seconds);
  polymap_bench::note_calibration("item", iters, item_seconds);
  polymap_bench::register_peers<decltype(&run), void (*)()>(
      "BM_ForkJoin", &run,
      {
          {"serial", fork_join_serial},
          {"openmp", fork_join_openmp},
          {"tbb", fork_join_tbb},
          {"polymap_threads", fork_join_polymap_threads},
      },
      {items});
  polymap_bench::register_peers<decltype(&run), void (*)()>(
      "BM_EmptyForkJoin", &run,
      {
          {"openmp", empty_openmp},
          {"tbb", empty_tbb},
          {"polymap_threads", empty_polymap_threads},
      },
      {items});
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
