// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace polymap {

/// One physical core: its processing units (hardware threads) by OS index.
struct core_info {
  int index = 0;            ///< logical index among all cores of the machine
  int package = 0;          ///< logical index of the package (socket) holding it
  int numa_node = 0;        ///< logical index of the NUMA node holding it
  std::vector<int> pus = {};  ///< OS indices of its processing units
  bool usable = false;      ///< at least one of its PUs is in this process's usable set
};

/// A NUMA node or a package: the OS indices of its processing units.
struct cpu_group {
  int index = 0;
  std::vector<int> pus;
};

/// The machine as this process sees it, and the CPUs it may actually use.
///
/// Usable CPUs are the intersection of the affinity mask (sched_getaffinity, which a
/// cgroup cpuset also narrows), and their count is further capped by the cgroup CPU quota
/// (cpu.max, or cpu.cfs_quota_us under cgroup v1), rounded up: a container given 1.5 CPUs
/// on a 64-core host gets 2 workers, not 64.
/// Thread safety: immutable after construction; `current()` is safe to call from any thread.
class topology {
 public:
  /// The topology of this machine, discovered once (hwloc when built with it).
  [[nodiscard]] static const topology& current() noexcept;

  /// Discovers the topology now. Used by `current()`; exposed for tests.
  [[nodiscard]] static topology discover() noexcept;

  [[nodiscard]] const std::vector<core_info>& cores() const noexcept { return cores_; }
  [[nodiscard]] const std::vector<cpu_group>& numa_nodes() const noexcept { return numa_; }
  [[nodiscard]] const std::vector<cpu_group>& packages() const noexcept { return packages_; }
  /// Every PU of the machine, by OS index.
  [[nodiscard]] const std::vector<int>& pus() const noexcept { return pus_; }
  /// PUs this process may run on (affinity mask and cpuset), by OS index.
  [[nodiscard]] const std::vector<int>& usable_pus() const noexcept { return usable_pus_; }
  /// Workers to run by default: usable PUs, capped by the cgroup CPU quota.
  [[nodiscard]] std::size_t usable_count() const noexcept { return usable_count_; }
  /// The CPU quota in CPUs (e.g. 1.5) when a cgroup sets one.
  [[nodiscard]] std::optional<double> cpu_quota() const noexcept { return quota_; }
  /// Why `usable_count()` is what it is, one reason per line, for `polymap info`.
  [[nodiscard]] const std::vector<std::string>& reasons() const noexcept { return reasons_; }
  /// "hwloc 2.9.0" or "fallback (sched_getaffinity)".
  [[nodiscard]] const std::string& source() const noexcept { return source_; }

  /// Usable cores, in logical order (cores with no usable PU are left out).
  [[nodiscard]] std::vector<const core_info*> usable_cores() const;

 private:
  friend struct topology_builder;
  std::vector<core_info> cores_;
  std::vector<cpu_group> numa_;
  std::vector<cpu_group> packages_;
  std::vector<int> pus_;
  std::vector<int> usable_pus_;
  std::size_t usable_count_ = 1;
  std::optional<double> quota_;
  std::vector<std::string> reasons_;
  std::string source_;
};

/// Binds the calling thread to the given OS CPU indices. Best effort: returns false (and
/// changes nothing) when the OS refuses or the list is empty. Never throws.
bool bind_this_thread(const std::vector<int>& cpus) noexcept;

/// The OS CPU indices the calling thread may run on now (sched_getaffinity); empty on error.
[[nodiscard]] std::vector<int> this_thread_affinity() noexcept;

/// Sets the nice value of the calling thread (Linux: per thread). Best effort: returns false
/// when the OS refuses (raising priority needs CAP_SYS_NICE). Never throws.
bool set_this_thread_nice(int nice) noexcept;

/// The nice value of the calling thread, read back from the OS.
[[nodiscard]] std::optional<int> this_thread_nice() noexcept;

}  // namespace polymap
