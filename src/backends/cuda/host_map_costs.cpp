// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The costs of a host-resident map on a GPU: fitted to timings of polymap's own streamed map
// (kernels/cuda/host_map_probe.cu), checked, and kept between processes in the measurement
// file, so that a batch of many short programs does not measure in each one.
#include <polymap/backends/cuda.hpp>
#include <polymap/cuda/check.hpp>
#include <polymap/cuda/device_buffer.hpp>
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

/// How long a process waits for another that is measuring the same machine (a measurement
/// takes some 0.1 s once the context exists, by estimate; a process that dies lets the lock go).
constexpr std::chrono::milliseconds lock_wait{30'000};

/// Bounds of believable costs: outside them the machine was too busy to measure, or the
/// file was edited by hand.
bool plausible(const host_map_costs& c) {
  auto rate_ok = [](double seconds_per_byte) {
    return seconds_per_byte >= 1.0 / host_map_costs::most_bytes_per_second &&
           seconds_per_byte <= 1.0 / 0.1e9;
  };
  return c.fixed_seconds >= host_map_costs::least_fixed_seconds && c.fixed_seconds <= 50e-3 &&
         c.first_bytes > 0 && rate_ok(c.first_seconds_per_byte) && rate_ok(c.seconds_per_byte);
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
  std::snprintf(text.data(), text.size(), "%.1f us + %.1f GB/s in and out", c.fixed_seconds * 1e6,
                1e-9 / c.seconds_per_byte);
  std::string out = text.data();
  if (c.first_bytes > 0) {
    std::snprintf(text.data(), text.size(), " (%.1f GB/s for the first %zu MiB moved)",
                  1e-9 / c.first_seconds_per_byte, c.first_bytes >> 20);
    out += text.data();
  }
  return out;
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
  // Ranges first: a hand-edited file must not reach a conversion it would overflow.
  if (!v || (*v)[1] < 1 || (*v)[1] > 1e12 || (*v)[4] < 0 || (*v)[4] > 1e11) return std::nullopt;
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

/// The CUDA context of `device`, made now: that can take seconds, which must not be spent
/// holding the lock that other processes wait for.
void create_context(int device) {
  const device_guard on(device);
  POLYMAP_CUDA_CHECK(cudaFree(nullptr));
}

/// Measures `device` now; keeps the result when `held` is the file's lock and the
/// measurement was not disturbed by another call holding the thread pool.
/// @throws as measure_host_map_costs
host_map_costs measure_and_keep(int device, const device_identity& id,
                                const polymap::detail::measurement_file& file,
                                const std::optional<polymap::detail::measurement_file::lock>& held,
                                const std::string& why_not_held) {
  const detail::host_map_timings t = detail::time_host_map(device);
  host_map_costs c = fit(t);
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
  if (!t.pool_free) {
    c.source += "; not kept: another call held the thread pool, so the staging copies ran on "
                "one thread";
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
  polymap::detail::measurement_file::lock_result lock;

  locked_file() {
    if (file.path().empty()) {
      lock.why_not = "neither XDG_CACHE_HOME nor HOME is set";
    } else {
      lock = file.take_lock(lock_wait);
    }
  }
};

/// What this process knows, per device: the costs (measured, read, or a failure to
/// measure), the device's identity, whether the file had nothing for it, and whether it
/// waited in vain for another process measuring it (then it does not wait again).
struct known_costs {
  std::mutex mutex;      // the maps below: held briefly, never while measuring
  std::mutex measuring;  // held while measuring: threads that need the costs wait for them
  std::map<int, host_map_costs> by_device;
  std::map<int, device_identity> ids;
  std::map<int, bool> nothing_kept;
  std::map<int, bool> waited_in_vain;
  // After waiting in vain: when the file may be read again for the other process's result.
  std::map<int, std::chrono::steady_clock::time_point> read_again_at;
};

known_costs& known() {
  static known_costs k;
  return k;
}

/// The identity of `device`, asked once. Called with `k.mutex` held.
const device_identity& identity_of(known_costs& k, int device) {
  if (const auto it = k.ids.find(device); it != k.ids.end()) return it->second;
  return k.ids.emplace(device, identify(device)).first->second;
}

/// The same, taking `k.mutex`.
device_identity locked_identity_of(known_costs& k, int device) {
  const std::lock_guard lock(k.mutex);
  return identity_of(k, device);
}

/// Remembers `c` as `device`'s costs for the process. Called with `k.mutex` held.
const host_map_costs& remember(known_costs& k, int device, host_map_costs c) {
  k.nothing_kept.erase(device);
  return k.by_device.insert_or_assign(device, std::move(c)).first->second;
}

host_map_costs defaults(const std::string& why) {
  host_map_costs c;
  c.source = "polymap's defaults (" + describe(c) + "): " + why;
  return c;
}

/// host_map_costs_on with `if_unknown::use_defaults`: what is known or kept, else the
/// defaults; never waits for a measurement, never measures, remembers no defaults.
host_map_costs known_or_defaults(int device) {
  known_costs& k = known();
  const std::lock_guard lock(k.mutex);
  if (const auto it = k.by_device.find(device); it != k.by_device.end()) return it->second;
  try {
    const device_identity& id = identity_of(k, device);
    if (!k.nothing_kept[device]) {
      // No lock to read: a save replaces the file by a rename, never half of it.
      if (std::optional<host_map_costs> saved = kept(costs_file(), id)) {
        return remember(k, device, std::move(*saved));
      }
      k.nothing_kept[device] = true;
    }
    return defaults("not measured yet on " + id.name);
  } catch (const std::exception& e) {
    return defaults(std::string("the device could not be identified: ") + e.what());
  }
}

}  // namespace

namespace detail {

void forget_host_map_costs() noexcept {
  known_costs& k = known();
  const std::lock_guard lock(k.mutex);
  k.by_device.clear();
  k.nothing_kept.clear();
}

}  // namespace detail

host_map_costs host_map_costs_on(int device, if_unknown unknown) {
  try {
    detail::require_device(device);
  } catch (const error& e) {
    return defaults(e.what());
  }
  known_costs& k = known();
  bool gave_up = false;
  {
    const std::lock_guard lock(k.mutex);
    gave_up = k.waited_in_vain[device];
    // Read the file again for the other process's result, at most once a second: not on
    // every call that weighs the GPU.
    const auto now = std::chrono::steady_clock::now();
    if (gave_up && now >= k.read_again_at[device]) {
      k.nothing_kept[device] = false;
      k.read_again_at[device] = now + std::chrono::seconds(1);
    }
  }
  if (unknown == if_unknown::use_defaults || gave_up) return known_or_defaults(device);
  // One thread measures; the others that need the costs wait for them.
  const std::lock_guard measuring(k.measuring);
  {
    const std::lock_guard lock(k.mutex);
    if (const auto it = k.by_device.find(device); it != k.by_device.end()) return it->second;
  }
  host_map_costs c;
  try {
    const device_identity id = locked_identity_of(k, device);
    // Kept by an earlier process: read without the file's lock (a save replaces the whole
    // file by a rename), and with no CUDA context to make for it.
    if (std::optional<host_map_costs> saved = kept(costs_file(), id)) {
      c = std::move(*saved);
    } else {
      create_context(device);
      // Under the file's lock from reading to saving: processes that start together measure
      // one at a time, and the later ones read what the first kept.
      const locked_file f;
      if (std::optional<host_map_costs> meanwhile = kept(f.file, id)) {
        c = std::move(*meanwhile);
      } else if (f.lock.busy) {
        // Not measured beside another process, which would skew both; later calls read the
        // file for its result rather than wait again.
        const std::lock_guard lock(k.mutex);
        k.waited_in_vain[device] = true;
        return defaults(f.lock.why_not);
      } else {
        c = measure_and_keep(device, id, f.file, f.lock.held, f.lock.why_not);
      }
    }
  } catch (const cuda_error& e) {
    // The device itself failed (no context to be had, held by another process, no memory):
    // automatic must not choose it for every later call, each to fail the same way.
    c = defaults(std::string("measuring failed: ") + e.what());
    c.unusable = e.what();
  } catch (const std::exception& e) {
    // Remembered, so that later calls do not pay for a failing measurement again (timings
    // of a busy machine: the defaults stand in).
    c = defaults(std::string("measuring failed: ") + e.what());
  }
  const std::lock_guard lock(k.mutex);
  return remember(k, device, std::move(c));
}

void mark_failed(int device, const std::string& why) {
  known_costs& k = known();
  const std::lock_guard lock(k.mutex);
  host_map_costs c;
  if (const auto it = k.by_device.find(device); it != k.by_device.end()) c = it->second;
  c.unusable = why;
  k.by_device[device] = std::move(c);
}

host_map_costs measure_host_map_costs(int device) {
  detail::require_device(device);
  known_costs& k = known();
  const std::lock_guard measuring(k.measuring);
  const device_identity id = locked_identity_of(k, device);
  create_context(device);
  const locked_file f;
  host_map_costs c = measure_and_keep(device, id, f.file, f.lock.held, f.lock.why_not);
  const std::lock_guard lock(k.mutex);
  return remember(k, device, std::move(c));
}

}  // namespace polymap::cuda
