// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Topology discovery without hwloc (built with -DPOLYMAP_WITH_HWLOC=OFF, or hwloc absent).
#include <polymap/topology.hpp>

#include "topology/topology_builder.hpp"

namespace polymap {

topology topology::discover() noexcept { return detail::fallback_discover({}); }

}  // namespace polymap
