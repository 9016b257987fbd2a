// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/topology.hpp>

#include <optional>
#include <string>
#include <vector>

namespace polymap {

/// Assembles a `topology`: a discovery backend (hwloc or the fallback) describes the
/// machine, then `build()` works out what this process may use of it (affinity mask and
/// cgroup CPU quota), the same way for every backend.
struct topology_builder {
  /// The machine's cores; `index`, `package`, `numa_node` and `pus` are filled in by the
  /// discovery backend, `usable` by `build()`. Cores with no PU are dropped by `build()`.
  std::vector<core_info> cores;
  /// NUMA nodes, position i holding logical index i; may be left empty (one is made up).
  std::vector<cpu_group> numa_nodes;
  /// Packages, position i holding logical index i; may be left empty (one is made up).
  std::vector<cpu_group> packages;
  /// What discovered the machine, e.g. "hwloc 2.9.0".
  std::string source;
  /// Lines put first in `topology::reasons()`, e.g. why discovery fell back.
  std::vector<std::string> notes;

  /// One package, one NUMA node and one core per PU.
  /// @param pus OS indices of the machine's PUs
  /// @param source what `topology::source()` will say
  [[nodiscard]] static topology_builder flat(const std::vector<int>& pus, std::string source);

  /// Finishes the topology with the given affinity mask and CPU quota (tests pass their own).
  /// @param affinity OS indices the process may run on; empty means unknown (all usable)
  /// @param quota the cgroup CPU quota in CPUs, if any
  [[nodiscard]] topology build(const std::vector<int>& affinity, std::optional<double> quota) &&;

  /// Finishes the topology with this process's affinity mask and cgroup CPU quota.
  [[nodiscard]] topology build() &&;
};

namespace detail {

/// The affinity mask of thread or process `pid` (0: the calling thread), by OS CPU index;
/// empty on error.
[[nodiscard]] std::vector<int> affinity_of(int pid) noexcept;

/// The affinity mask of the process (its main thread), which workers bind within.
[[nodiscard]] std::vector<int> process_affinity() noexcept;

/// The CPU quota of this process's cgroup, read from /proc/self/cgroup and /sys/fs/cgroup.
[[nodiscard]] std::optional<double> process_cpu_quota() noexcept;

/// Discovery without hwloc: one package, one NUMA node and one core per PU of the affinity
/// mask (or of `std::thread::hardware_concurrency()` when the mask cannot be read).
/// @param note a line put first in `reasons()` (e.g. why hwloc was not used); may be empty
[[nodiscard]] topology fallback_discover(const std::string& note) noexcept;

/// Fault injection for tests: when set, topology::current() calls it in the first discovery
/// of a process (after this thread took the discovery on, before the topology exists), where
/// another thread of a program may fork. Null in real programs.
inline void (*discovery_hook)() = nullptr;

}  // namespace detail
}  // namespace polymap
