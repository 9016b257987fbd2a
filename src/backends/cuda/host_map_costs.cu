// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The costs of a host-resident map on a GPU, measured once per device by running polymap's
// own streamed map: what automatic and polymap::cuda::explain weigh against the CPU.
#include <polymap/backends/cuda.hpp>
#include <polymap/cuda/map.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace polymap::cuda {
namespace {

struct identity {
  using polymap_device_callable = void;
  POLYMAP_HD std::uint32_t operator()(std::uint32_t x) const { return x; }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

/// Bytes each way of a large probe call: eight chunks, so that the pipeline of four slots
/// is full for most of the call, as it is in a map worth sending to the GPU.
constexpr std::size_t probe_bytes = 8 * staging_chunk_bytes;

/// Times stream_map, the path a host-resident map takes: the median of 9 calls of one item
/// is the fixed cost; the median of 3 calls of `probe_bytes` in and out, less that, spread
/// over the bytes moved, the cost per byte. A first large call pays for what only a first
/// call pays (the context, the module, the staging set, the pool's threads, the pages).
host_map_costs measure(int device) {
  constexpr std::size_t n = probe_bytes / sizeof(std::uint32_t);
  std::vector<std::uint32_t> in(n);
  std::vector<std::uint32_t> out(n);
  identity fn;
  auto time_call = [&](std::size_t items) {
    polymap::detail::run_state state(items);
    const auto start = std::chrono::steady_clock::now();
    detail::stream_map(in.data(), out.data(), items, fn, device, state);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  (void)time_call(n);
  std::vector<double> one;
  std::vector<double> large;
  for (int i = 0; i < 9; ++i) one.push_back(time_call(1));
  for (int i = 0; i < 3; ++i) large.push_back(time_call(n));
  host_map_costs c;
  c.fixed_seconds = median(one);
  c.seconds_per_byte =
      std::max(median(large) - c.fixed_seconds, 1e-9) / (2.0 * static_cast<double>(probe_bytes));
  c.measured = true;
  cudaDeviceProp prop{};
  const bool named = cudaGetDeviceProperties(&prop, device) == cudaSuccess;
  char text[200];
  std::snprintf(text, sizeof text, "measured on device %d (%s): %.1f us + %.1f GB/s in and out",
                device, named ? prop.name : "unnamed", c.fixed_seconds * 1e6,
                1e-9 / c.seconds_per_byte);
  c.source = text;
  return c;
}

}  // namespace

host_map_costs host_map_costs_on(int device) {
  if (device_count() == 0) {
    host_map_costs c;
    c.source = "polymap's defaults: " + device_status();
    return c;
  }
  if (device < 0 || device >= device_count()) {
    host_map_costs c;
    c.source = "polymap's defaults: there is no device " + std::to_string(device);
    return c;
  }
  static std::mutex mutex;
  static std::map<int, host_map_costs> known;
  const std::lock_guard lock(mutex);
  if (const auto it = known.find(device); it != known.end()) return it->second;
  host_map_costs c;
  try {
    c = measure(device);
  } catch (const std::exception& e) {
    // Kept, so that every later call does not pay for a failing measurement again; a lost
    // context shows in device_count() anyway.
    c = host_map_costs{};
    c.source = std::string("polymap's defaults: measuring failed: ") + e.what();
  }
  return known.emplace(device, std::move(c)).first->second;
}

}  // namespace polymap::cuda
