// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The costs of a host-resident map on a GPU, measured by running polymap's own streamed map
// and kept between processes: what automatic and polymap::cuda::explain weigh against the
// CPU.
#include <polymap/backends/cuda.hpp>
#include <polymap/cuda/map.hpp>
#include <polymap/version.hpp>

#include "measurement_file.hpp"

#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
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
host_map_costs time_stream_map(int device) {
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
  return c;
}

/// What the costs were measured on: they hold for this GPU, in this machine (its link and
/// CPUs do the staging), under this driver and this version of polymap (its pipeline).
struct device_identity {
  std::string key;   // one word, for the measurement file
  std::string name;  // for people
};

device_identity identify(int device) {
  cudaDeviceProp prop{};
  POLYMAP_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int driver = 0;
  POLYMAP_CUDA_CHECK(cudaDriverGetVersion(&driver));
  std::array<char, 256> host{};
  if (::gethostname(host.data(), host.size() - 1) != 0) host[0] = '\0';
  std::string key = "cuda-host-map/";
  for (const char ch : std::string_view(host.data())) key += (ch == ' ' || ch == '/') ? '_' : ch;
  key += "/GPU-";
  for (const char byte : prop.uuid.bytes) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char>(byte));
    key += hex;
  }
  key += "/driver-" + std::to_string(driver) + "/polymap-" + std::string(library_version());
  return {std::move(key), "device " + std::to_string(device) + " (" + prop.name + ")"};
}

std::string rate_text(const host_map_costs& c) {
  char text[96];
  std::snprintf(text, sizeof text, "%.1f us + %.1f GB/s in and out", c.fixed_seconds * 1e6,
                1e-9 / c.seconds_per_byte);
  return text;
}

std::string date_text(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm utc{};
  char text[32] = "an unknown date";
  if (::gmtime_r(&t, &utc) != nullptr) std::strftime(text, sizeof text, "%Y-%m-%d %H:%M UTC", &utc);
  return text;
}

polymap::detail::measurement_file costs_file() {
  const std::filesystem::path dir = polymap::detail::cache_dir();
  return polymap::detail::measurement_file(dir.empty() ? dir : dir / "measurements");
}

/// The costs kept for `id` in the measurement file, if any.
std::optional<host_map_costs> kept(const device_identity& id) {
  const polymap::detail::measurement_file file = costs_file();
  if (file.path().empty()) return std::nullopt;
  const std::optional<std::vector<double>> v = file.find(id.key, 3);
  if (!v || (*v)[0] <= 0 || (*v)[1] <= 0) return std::nullopt;
  host_map_costs c;
  c.fixed_seconds = (*v)[0];
  c.seconds_per_byte = (*v)[1];
  c.measured = true;
  c.source = "measured on " + id.name + " on " + date_text((*v)[2]) + ": " + rate_text(c) +
             "; kept in " + file.path().string();
  return c;
}

/// Measures `device` and keeps the result in the measurement file when it can.
host_map_costs measure_and_keep(int device, const device_identity& id) {
  host_map_costs c = time_stream_map(device);
  const double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  c.source = "measured on " + id.name + " on " + date_text(now) + ": " + rate_text(c);
  const polymap::detail::measurement_file file = costs_file();
  if (file.path().empty()) {
    c.source += "; not kept: neither XDG_CACHE_HOME nor HOME is set";
  } else {
    const std::vector<double> values{c.fixed_seconds, c.seconds_per_byte, now};
    const std::string why = file.save(id.key, values);
    c.source += why.empty() ? "; kept in " + file.path().string() : "; not kept: " + why;
  }
  return c;
}

/// The costs known in this process, per device.
struct known_costs {
  std::mutex mutex;
  std::map<int, host_map_costs> by_device;
};

known_costs& known() {
  static known_costs k;
  return k;
}

void require_device(int device) {
  if (device_count() == 0) {
    throw backend_unavailable("polymap: backend cuda is not available here: " + device_status());
  }
  if (device < 0 || device >= device_count()) {
    throw backend_unavailable("polymap: there is no CUDA device " + std::to_string(device) +
                              " (" + device_status() + ")");
  }
}

}  // namespace

host_map_costs host_map_costs_on(int device) {
  try {
    require_device(device);
  } catch (const backend_unavailable& e) {
    host_map_costs c;
    c.source = std::string("polymap's defaults: ") + e.what();
    return c;
  }
  known_costs& k = known();
  const std::lock_guard lock(k.mutex);
  if (const auto it = k.by_device.find(device); it != k.by_device.end()) return it->second;
  host_map_costs c;
  try {
    const device_identity id = identify(device);
    std::optional<host_map_costs> saved = kept(id);
    c = saved ? std::move(*saved) : measure_and_keep(device, id);
  } catch (const std::exception& e) {
    // Kept, so that later calls do not pay for a failing measurement again; a lost
    // context shows in device_count() anyway.
    c = host_map_costs{};
    c.source = std::string("polymap's defaults: measuring failed: ") + e.what();
  }
  return k.by_device.insert_or_assign(device, std::move(c)).first->second;
}

host_map_costs measure_host_map_costs(int device) {
  require_device(device);
  known_costs& k = known();
  const std::lock_guard lock(k.mutex);
  host_map_costs c = measure_and_keep(device, identify(device));
  k.by_device.insert_or_assign(device, c);
  return c;
}

}  // namespace polymap::cuda
