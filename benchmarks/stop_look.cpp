// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// What looking for a stop before each item costs, by the items' cost, on one thread.
//   BM_StopLook/<peer>/<ns>, ns = 2, 5, 12, 25, 70: 2^22 items, each a chain of dependent
//       multiply-adds calibrated to about <ns> when items run back to back, whose result is
//       stored (out[i] = spin(k, i)), so that the cheapest items vectorise in a plain loop.
// Peers: serial (a plain loop); polymap_span_unchecked and polymap_span_checked (polymap's
// inner loop over one block, run_span, without and with a load of the stop flags before each
// item); polymap_serial (a whole polymap::for_each on the serial backend, whose blocks choose
// the one or the other: blocks of fewer than check_each_item_below items, which hold items of
// about 10 ns or more, look before each item). Checked minus unchecked, per item, is the look's cost; summarize.py
// reports each peer's time per item above serial.

#include "common.hpp"

#include <polymap/detail/run_items.hpp>
#include <polymap/detail/run_state.hpp>
#include <polymap/map.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr std::size_t n = std::size_t{1} << 22;

/// spin() iterations of an item of each cost in ns, set once in register_all().
std::map<std::int64_t, std::uint64_t> iters_of;

/// One item: its result stored, as a map stores it.
struct item {
  std::uint64_t* out;
  std::uint64_t k;
  void operator()(std::size_t i) const { out[i] = polymap_bench::spin(k, i); }
};

void look_serial(const item& f) {
  for (std::size_t i = 0; i < n; ++i) f(i);
}

template <bool CheckEach>
void look_span(const item& f) {
  polymap::detail::run_state state(n);
  polymap::detail::worker_context w;
  w.state = &state;
  item invoke = f;
  benchmark::DoNotOptimize(polymap::detail::run_span<CheckEach>(0, n, w, invoke));
}

void look_polymap_serial(const item& f) {
  polymap::for_each(n, f, polymap::options{.backend = polymap::backend::serial});
}

void run(benchmark::State& state, void (*call)(const item&)) {
  std::vector<std::uint64_t> out(n);
  const item f{out.data(), iters_of.at(state.range(0))};
  for (auto _ : state) {
    call(f);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(n));
}

void register_all() {
  const std::initializer_list<std::int64_t> costs = {1, 2, 5, 12, 25, 70};
  for (std::int64_t ns : costs) {
    const double seconds = static_cast<double>(ns) * 1e-9;
    iters_of[ns] = polymap_bench::calibrate_spin(seconds);
    benchmark::AddCustomContext("item_" + std::to_string(ns) + "ns_iterations",
                                std::to_string(iters_of[ns]));
  }
  polymap_bench::register_peers<decltype(&run), void (*)(const item&)>(
      "BM_StopLook", &run,
      {
          {"serial", look_serial},
          {"polymap_span_unchecked", look_span<false>},
          {"polymap_span_checked", look_span<true>},
          {"polymap_serial", look_polymap_serial},
      },
      costs);
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
