// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Topology discovery with hwloc.
#include <polymap/topology.hpp>

#include "topology/topology_builder.hpp"

#include <hwloc.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace polymap {
namespace {

struct hwloc_deleter {
  void operator()(hwloc_topology* topo) const noexcept { hwloc_topology_destroy(topo); }
};
using hwloc_ptr = std::unique_ptr<hwloc_topology, hwloc_deleter>;

struct bitmap_deleter {
  void operator()(hwloc_bitmap_s* set) const noexcept { hwloc_bitmap_free(set); }
};
using bitmap_ptr = std::unique_ptr<hwloc_bitmap_s, bitmap_deleter>;

// The bits of a cpuset are the OS indices of its PUs.
std::vector<int> pus_of(hwloc_const_cpuset_t set) {
  std::vector<int> pus;
  if (set == nullptr || hwloc_bitmap_weight(set) < 0) return pus;  // empty or infinite
  for (int pu = hwloc_bitmap_first(set); pu != -1; pu = hwloc_bitmap_next(set, pu)) {
    pus.push_back(pu);
  }
  return pus;
}

std::vector<cpu_group> groups_of(hwloc_topology_t topo, hwloc_obj_type_t type) {
  std::vector<cpu_group> groups;
  const int count = hwloc_get_nbobjs_by_type(topo, type);
  for (int i = 0; i < count; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topo, type, static_cast<unsigned>(i));
    if (obj == nullptr) break;
    groups.push_back(cpu_group{i, pus_of(obj->cpuset)});
  }
  return groups;
}

// The logical index of the first object of `type` whose cpuset holds all of `set`, else the
// first that holds part of it, else 0. NUMA nodes are not ancestors of cores in hwloc 2
// (they hang off the tree as memory children), so cpusets are compared instead.
int group_holding(hwloc_topology_t topo, hwloc_obj_type_t type, hwloc_const_cpuset_t set) {
  const int count = hwloc_get_nbobjs_by_type(topo, type);
  int partial = -1;
  for (int i = 0; i < count; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(topo, type, static_cast<unsigned>(i));
    if (obj == nullptr || obj->cpuset == nullptr) continue;
    if (hwloc_bitmap_isincluded(set, obj->cpuset)) return i;
    if (partial < 0 && hwloc_bitmap_intersects(set, obj->cpuset)) partial = i;
  }
  return partial < 0 ? 0 : partial;
}

std::string hwloc_source() {
#ifdef HWLOC_VERSION
  return std::string("hwloc ") + HWLOC_VERSION;
#else
  const unsigned version = hwloc_get_api_version();
  return "hwloc " + std::to_string(version >> 16) + "." + std::to_string((version >> 8) & 0xff) +
         "." + std::to_string(version & 0xff);
#endif
}

std::string failure(const char* step) {
  const int err = errno;
  return std::string("hwloc: ") + step + " failed (" + std::strerror(err) +
         "); using the fallback topology";
}

}  // namespace

topology topology::discover() noexcept {
  try {
    hwloc_topology_t raw = nullptr;
    if (hwloc_topology_init(&raw) != 0) return detail::fallback_discover(failure("init"));
    hwloc_ptr topo(raw);
    // The machine's PUs include those outside our cpuset; which ones this process may use
    // comes from sched_getaffinity in topology_builder::build(), not from hwloc.
    if (hwloc_topology_set_flags(topo.get(), HWLOC_TOPOLOGY_FLAG_INCLUDE_DISALLOWED) != 0) {
      return detail::fallback_discover(failure("set_flags"));
    }
    if (hwloc_topology_load(topo.get()) != 0) return detail::fallback_discover(failure("load"));

    topology_builder builder;
    builder.source = hwloc_source();
    builder.numa_nodes = groups_of(topo.get(), HWLOC_OBJ_NUMANODE);
    builder.packages = groups_of(topo.get(), HWLOC_OBJ_PACKAGE);

    bitmap_ptr covered(hwloc_bitmap_alloc());
    if (!covered) return detail::fallback_discover("hwloc: out of memory; using the fallback");
    auto add_core = [&](hwloc_const_cpuset_t set) {
      core_info core;
      core.index = static_cast<int>(builder.cores.size());
      core.pus = pus_of(set);
      if (core.pus.empty()) return;
      core.package = group_holding(topo.get(), HWLOC_OBJ_PACKAGE, set);
      core.numa_node = group_holding(topo.get(), HWLOC_OBJ_NUMANODE, set);
      hwloc_bitmap_or(covered.get(), covered.get(), set);
      builder.cores.push_back(std::move(core));
    };
    const int core_count = hwloc_get_nbobjs_by_type(topo.get(), HWLOC_OBJ_CORE);
    for (int i = 0; i < core_count; ++i) {
      hwloc_obj_t core =
          hwloc_get_obj_by_type(topo.get(), HWLOC_OBJ_CORE, static_cast<unsigned>(i));
      if (core != nullptr && core->cpuset != nullptr) add_core(core->cpuset);
    }
    // Some platforms report PUs without cores: each such PU counts as a core of its own.
    const int pu_count = hwloc_get_nbobjs_by_type(topo.get(), HWLOC_OBJ_PU);
    for (int i = 0; i < pu_count; ++i) {
      hwloc_obj_t pu = hwloc_get_obj_by_type(topo.get(), HWLOC_OBJ_PU, static_cast<unsigned>(i));
      if (pu == nullptr || pu->cpuset == nullptr) continue;
      if (!hwloc_bitmap_isincluded(pu->cpuset, covered.get())) add_core(pu->cpuset);
    }
    if (builder.cores.empty()) {
      return detail::fallback_discover("hwloc found no PU; using the fallback topology");
    }
    return std::move(builder).build();
  } catch (...) {
    return detail::fallback_discover("hwloc discovery failed; using the fallback topology");
  }
}

}  // namespace polymap
