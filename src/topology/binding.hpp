// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::detail {

/// The OS CPU indices worker `worker` (0-based, of `workers`) is bound to under `policy`:
/// core: the usable PUs of the (worker % usable cores)-th usable core; pu: the
/// (worker % usable PUs)-th usable PU; numa/package: the usable PUs of the NUMA node /
/// package holding the core that `core` would give; cpus: {cpus[worker % cpus.size()]}.
/// Empty for bind::none.
[[nodiscard]] std::vector<int> worker_cpus(const topology& topo, bind policy, std::size_t worker,
                                           std::size_t workers, const std::vector<int>& cpus);

/// Checks `bind` and `cpus` together.
/// @throws option_error when bind::cpus has no CPU list, a CPU list is given with another
///   policy, or a listed CPU is not usable by this process (naming it and the usable set)
void check_binding(const topology& topo, bind policy, const std::vector<int>& cpus);

/// "0-3,8,10-11": a CPU list as Linux prints it.
[[nodiscard]] std::string format_cpu_list(const std::vector<int>& cpus);

/// Parses "0-3,8" (as accepted by --bind cpus:LIST); nothing on a syntax error.
[[nodiscard]] std::optional<std::vector<int>> parse_cpu_list(std::string_view text);

/// The CPU quota that the cgroup of this process imposes, in CPUs (cpu.max under cgroup
/// v2, cpu.cfs_quota_us / cpu.cfs_period_us under v1); nothing when unlimited or unknown.
/// @param cgroup_fs_root normally "/sys/fs/cgroup"
/// @param proc_self_cgroup the text of /proc/self/cgroup
[[nodiscard]] std::optional<double> cgroup_cpu_quota(const std::string& cgroup_fs_root,
                                                     std::string_view proc_self_cgroup);

}  // namespace polymap::detail
