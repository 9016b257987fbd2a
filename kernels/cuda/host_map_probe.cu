// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Timings of the streamed host-resident map, for the costs that automatic weighs.
#include <polymap/cuda/map.hpp>

#include "cuda/host_map_probe.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace polymap::cuda::detail {
namespace {

struct identity {
  using polymap_device_callable = void;
  POLYMAP_HD std::uint32_t operator()(std::uint32_t x) const { return x; }
};

/// Input bytes of the largest call: eight chunks, so that the pipeline of four slots is
/// full for most of it, as it is in a map worth sending to the GPU.
constexpr std::size_t full_bytes = 8 * staging_chunk_bytes;

/// Whether the thread pool takes a call now, rather than leaving it to the calling thread
/// because another call holds it (the call then reports that it ran on serial).
bool pool_takes_a_call() {
  run_report report;
  polymap::for_each(std::size_t{64}, [](std::size_t) {},
                    {.backend = backend_kind::threads, .report = &report});
  return report.backend == backend_kind::threads;
}

}  // namespace

host_map_timings time_host_map(int device) {
  constexpr std::size_t n = full_bytes / sizeof(std::uint32_t);
  constexpr std::size_t chunk = staging_chunk_bytes / sizeof(std::uint32_t);
  std::vector<std::uint32_t> in(n);
  std::vector<std::uint32_t> out(n);
  identity fn;
  // The best of `calls` calls of `items`: a call slowed by the rest of the machine says
  // nothing about the pipeline.
  auto best = [&](std::size_t items, int calls) {
    double fastest = 0;
    for (int i = 0; i < calls; ++i) {
      polymap::detail::run_state state(items);
      const auto start = std::chrono::steady_clock::now();
      stream_map(in.data(), out.data(), items, fn, device, state);
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fastest = i == 0 ? took : std::min(fastest, took);
    }
    return fastest;
  };
  (void)best(n, 1);
  host_map_timings t;
  t.pool_free = pool_takes_a_call();
  t.one_item = best(1, 9);
  t.one_chunk = best(chunk, 5);
  t.full = best(n, 5);
  t.pool_free = t.pool_free && pool_takes_a_call();
  t.one_chunk_bytes = 2 * chunk * sizeof(std::uint32_t);
  t.full_bytes = 2 * n * sizeof(std::uint32_t);
  return t;
}

}  // namespace polymap::cuda::detail
