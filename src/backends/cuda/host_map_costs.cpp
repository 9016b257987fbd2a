// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The costs of a host-resident map on a GPU: fitted to timings of polymap's own streamed map
// (kernels/cuda/host_map_probe.cu), checked, and kept between processes in the measurement
// file, so that a batch of many short programs does not measure in each one.
#include <polymap/backends/cuda.hpp>
#include <polymap/cuda/check.hpp>
#include <polymap/error.hpp>
#include <polymap/topology.hpp>
#include <polymap/version.hpp>

#include "cuda/host_map_probe.hpp"
#include "measurement_file.hpp"

#include <cuda_runtime.h>
#include <unistd.h>

#include <array>
#include <chrono>
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

/// How long a process waits for another that is measuring the same machine.
constexpr std::chrono::milliseconds lock_wait{2000};

/// Bounds of believable costs: outside them the machine was too busy to measure, or the
/// file was edited by hand.
bool plausible(const host_map_costs& c) {
  auto rate_ok = [](double seconds_per_byte) {
    return seconds_per_byte >= 1.0 / 2000e9 && seconds_per_byte <= 1.0 / 0.1e9;
  };
  return c.fixed_seconds >= 1e-6 && c.fixed_seconds <= 50e-3 && c.first_bytes > 0 &&
         rate_ok(c.first_seconds_per_byte) && rate_ok(c.seconds_per_byte);
}

/// The costs the timings imply: the fixed cost, the rate of the first chunk (nothing to
/// overlap) and the rate of the rest (the pipeline full).
host_map_costs fit(const detail::host_map_timings& t) {
  host_map_costs c;
  c.fixed_seconds = t.one_item;
  c.first_bytes = t.one_chunk_bytes;
  c.first_seconds_per_byte = (t.one_chunk - t.one_item) / static_cast<double>(t.one_chunk_bytes);
  c.seconds_per_byte =
      (t.full - t.one_chunk) / static_cast<double>(t.full_bytes - t.one_chunk_bytes);
  c.measured = true;
  return c;
}

/// What the costs hold for: this GPU, in this machine with this many usable CPUs (they do
/// the staging copies), under this driver and this version of polymap (its pipeline).
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
    std::array<char, 3> hex{};
    std::snprintf(hex.data(), hex.size(), "%02x", static_cast<unsigned char>(byte));
    key += hex.data();
  }
  key += "/cpus-" + std::to_string(topology::current().usable_count()) + "/driver-" +
         std::to_string(driver) + "/polymap-" + std::string(library_version());
  return {std::move(key), "device " + std::to_string(device) + " (" + prop.name + ")"};
}

std::string describe(const host_map_costs& c) {
  std::array<char, 160> text{};
  std::snprintf(text.data(), text.size(),
                "%.1f us + %.1f GB/s in and out (%.1f GB/s for the first %zu MiB)",
                c.fixed_seconds * 1e6, 1e-9 / c.seconds_per_byte,
                1e-9 / c.first_seconds_per_byte, c.first_bytes >> 20);
  return text.data();
}

std::string date_text(double unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm utc{};
  std::array<char, 32> text{};
  if (::gmtime_r(&t, &utc) == nullptr ||
      std::strftime(text.data(), text.size(), "%Y-%m-%d %H:%M UTC", &utc) == 0) {
    return "an unknown date";
  }
  return text.data();
}

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

polymap::detail::measurement_file costs_file() {
  const std::filesystem::path dir = polymap::detail::cache_dir();
  return polymap::detail::measurement_file(dir.empty() ? dir : dir / "measurements");
}

/// The costs kept for `id`, if the file has believable ones.
std::optional<host_map_costs> kept(const polymap::detail::measurement_file& file,
                                   const device_identity& id) {
  if (file.path().empty()) return std::nullopt;
  const std::optional<std::vector<double>> v = file.find(id.key, 5);
  if (!v) return std::nullopt;
  host_map_costs c;
  c.fixed_seconds = (*v)[0];
  c.first_bytes = static_cast<std::size_t>((*v)[1]);
  c.first_seconds_per_byte = (*v)[2];
  c.seconds_per_byte = (*v)[3];
  c.measured = true;
  if (!plausible(c)) return std::nullopt;
  c.source = "measured on " + id.name + " on " + date_text((*v)[4]) + ": " + describe(c) +
             "; kept in " + file.path().string();
  return c;
}

/// Measures `device` now; keeps the result when `held` is the file's lock.
/// @throws as measure_host_map_costs
host_map_costs measure_and_keep(int device, const device_identity& id,
                                const polymap::detail::measurement_file& file,
                                const std::optional<polymap::detail::measurement_file::lock>& held,
                                const std::string& why_not_held) {
  host_map_costs c = fit(detail::time_host_map(device));
  if (!plausible(c)) {
    throw error("polymap: the costs of a host-resident map on " + id.name +
                " make no sense (" + describe(c) +
                "): the machine was too busy to measure them; try polymap calibrate later");
  }
  const double when = now_unix();
  c.source = "measured on " + id.name + " on " + date_text(when) + ": " + describe(c);
  if (!held) {
    c.source += "; not kept: " + why_not_held;
    return c;
  }
  const std::vector<double> values{c.fixed_seconds, static_cast<double>(c.first_bytes),
                                   c.first_seconds_per_byte, c.seconds_per_byte, when};
  const std::string why = file.save(id.key, values, *held);
  c.source += why.empty() ? "; kept in " + file.path().string() : "; not kept: " + why;
  return c;
}

/// The file and its lock, or why there is none.
struct locked_file {
  polymap::detail::measurement_file file = costs_file();
  std::string why_not;
  std::optional<polymap::detail::measurement_file::lock> held;

  locked_file() {
    if (file.path().empty()) {
      why_not = "neither XDG_CACHE_HOME nor HOME is set";
    } else {
      held = file.take_lock(lock_wait, why_not);
    }
  }
};

/// The costs known in this process, per device.
struct known_costs {
  std::mutex mutex;
  std::map<int, host_map_costs> by_device;
};

known_costs& known() {
  static known_costs k;
  return k;
}

host_map_costs defaults(const std::string& why) {
  host_map_costs c;
  c.source = "polymap's defaults (" + describe(c) + "): " + why;
  return c;
}

}  // namespace

namespace detail {

void forget_host_map_costs() noexcept {
  known_costs& k = known();
  const std::lock_guard lock(k.mutex);
  k.by_device.clear();
}

}  // namespace detail

host_map_costs host_map_costs_on(int device, if_unknown unknown) {
  try {
    detail::require_device(device);
  } catch (const error& e) {
    return defaults(e.what());
  }
  known_costs& k = known();
  // Held while measuring: the threads of this process that need the costs wait for them.
  const std::lock_guard lock(k.mutex);
  if (const auto it = k.by_device.find(device); it != k.by_device.end()) return it->second;
  host_map_costs c;
  try {
    const device_identity id = identify(device);
    // Under the file's lock from reading to saving: processes that start together measure
    // one at a time, and the later ones read what the first kept.
    const locked_file f;
    if (std::optional<host_map_costs> saved = kept(f.file, id)) {
      c = std::move(*saved);
    } else if (unknown == if_unknown::use_defaults) {
      return defaults("not measured yet on " + id.name);  // not remembered: a later call measures
    } else {
      c = measure_and_keep(device, id, f.file, f.held, f.why_not);
    }
  } catch (const std::exception& e) {
    // Remembered, so that later calls do not pay for a failing measurement again; a lost
    // context shows in device_count() anyway.
    c = defaults(std::string("measuring failed: ") + e.what());
  }
  return k.by_device.insert_or_assign(device, std::move(c)).first->second;
}

host_map_costs measure_host_map_costs(int device) {
  detail::require_device(device);
  known_costs& k = known();
  const std::lock_guard lock(k.mutex);
  const device_identity id = identify(device);
  const locked_file f;
  host_map_costs c = measure_and_keep(device, id, f.file, f.held, f.why_not);
  k.by_device.insert_or_assign(device, c);
  return c;
}

}  // namespace polymap::cuda
