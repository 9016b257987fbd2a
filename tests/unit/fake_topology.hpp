// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/topology.hpp>

#include "topology/topology_builder.hpp"

namespace polymap::test {

/// 2 packages (one NUMA node each) x 2 cores x 2 hardware threads, numbered the way Linux
/// numbers an Intel machine: the second thread of core c is PU c + 4. Not yet built: the
/// caller chooses the affinity mask and the quota.
inline topology_builder two_socket_machine() {
  topology_builder builder;
  builder.source = "test";
  for (int core = 0; core < 4; ++core) {
    core_info info;
    info.index = core;
    info.package = core / 2;
    info.numa_node = core / 2;
    info.pus = {core, core + 4};
    builder.cores.push_back(info);
  }
  builder.numa_nodes = {{0, {0, 1, 4, 5}}, {1, {2, 3, 6, 7}}};
  builder.packages = builder.numa_nodes;
  return builder;
}

}  // namespace polymap::test
