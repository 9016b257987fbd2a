// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// In-place daxpy, y[i] = a * x[i] + y[i], on doubles: a streaming map whose only limit is
// memory bandwidth at 2^26, and fork-join cost at 2^10 and 2^16.
// BM_Daxpy/<peer>/<n>; bytes processed are 3 * 8 * n per call (read x, read y, write y).

#include "common.hpp"

#include <polymap/map.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <execution>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

constexpr double a = 0.5;

// x and y of one size, allocated once per process and shared by every peer and repetition:
// a fresh 2^26 allocation would cost seconds of page faults per repetition here.
struct arrays {
  std::vector<double> x;
  std::vector<double> y;
  explicit arrays(std::size_t n) : x(n), y(n) {}
  void reset() {
    for (std::size_t i = 0; i < x.size(); ++i) {
      x[i] = 1.0 + static_cast<double>(i % 7);
      y[i] = static_cast<double>(i % 13);
    }
  }
};

arrays& arrays_of(std::size_t n) {
  static std::map<std::size_t, std::unique_ptr<arrays>> cache;
  auto& slot = cache[n];
  if (!slot) slot = std::make_unique<arrays>(n);
  return *slot;
}

void daxpy_serial(std::size_t n, const double* x, double* y) {
  for (std::size_t i = 0; i < n; ++i) y[i] = a * x[i] + y[i];
}

void daxpy_openmp_static(std::size_t n, const double* x, double* y) {
  const auto m = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t i = 0; i < m; ++i) y[i] = a * x[i] + y[i];
}

void daxpy_tbb(std::size_t n, const double* x, double* y) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n),
                    [x, y](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t i = r.begin(); i < r.end(); ++i) y[i] = a * x[i] + y[i];
                    });
}

void daxpy_tbb_static(std::size_t n, const double* x, double* y) {
  tbb::parallel_for(
      tbb::blocked_range<std::size_t>(0, n),
      [x, y](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t i = r.begin(); i < r.end(); ++i) y[i] = a * x[i] + y[i];
      },
      tbb::static_partitioner{});
}

// std::transform over the two arrays rather than std::for_each over an index range: a
// std::views::iota iterator is only an input iterator to the parallel algorithms (its
// reference is a prvalue), which libstdc++ would run serially, and a counting vector would
// add 8 bytes of traffic per item to a bandwidth-bound kernel.
void daxpy_std_par(std::size_t n, const double* x, double* y) {
  std::transform(std::execution::par_unseq, x, x + n, y, y,
                 [](double xi, double yi) { return a * xi + yi; });
}

void daxpy_polymap_threads(std::size_t n, const double* x, double* y) {
  polymap::for_each(
      n, [x, y](std::size_t i) { y[i] = a * x[i] + y[i]; },
      polymap::options{.backend = polymap::backend::threads});
}

void daxpy_polymap_auto(std::size_t n, const double* x, double* y) {
  polymap::for_each(n, [x, y](std::size_t i) { y[i] = a * x[i] + y[i]; });
}

using kernel = void (*)(std::size_t, const double*, double*);

void run(benchmark::State& state, kernel k) {
  const auto n = static_cast<std::size_t>(state.range(0));
  arrays& v = arrays_of(n);
  v.reset();
  // One untimed call checks the result (and warms the caches and the peer's threads).
  k(n, v.x.data(), v.y.data());
  for (std::size_t i = 0; i < n; ++i) {
    const double want = a * (1.0 + static_cast<double>(i % 7)) + static_cast<double>(i % 13);
    if (std::abs(v.y[i] - want) > 1e-12 * std::abs(want)) {
      state.SkipWithError(("wrong result at index " + std::to_string(i)).c_str());
      return;
    }
  }
  for (auto _ : state) {
    k(n, v.x.data(), v.y.data());
    benchmark::ClobberMemory();
  }
  const auto calls = static_cast<std::int64_t>(state.iterations());
  state.SetItemsProcessed(calls * static_cast<std::int64_t>(n));
  state.SetBytesProcessed(calls * static_cast<std::int64_t>(3 * sizeof(double) * n));
}

void register_all() {
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  polymap_bench::register_peers<decltype(&run), kernel>(
      "BM_Daxpy", &run,
      {
          {"serial", daxpy_serial},
          {"openmp_static", daxpy_openmp_static},
          {"tbb", daxpy_tbb},
          {"tbb_static", daxpy_tbb_static},
          {"std_par", daxpy_std_par},
          {"polymap_threads", daxpy_polymap_threads},
          {"polymap_auto", daxpy_polymap_auto},
      },
      {std::int64_t{1} << 10, std::int64_t{1} << 16, std::int64_t{1} << 26});
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
