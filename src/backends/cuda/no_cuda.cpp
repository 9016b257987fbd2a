// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The device queries of <polymap/backends/cuda.hpp> in a build without CUDA.
#include <polymap/backends/cuda.hpp>
#include <polymap/error.hpp>

namespace polymap::cuda {

int device_count() noexcept { return 0; }
std::string device_status() { return "polymap was built without CUDA (POLYMAP_WITH_CUDA)"; }
std::vector<device_info> devices() { return {}; }
host_map_costs host_map_costs_on(int /*device*/, if_unknown /*unknown*/) {
  host_map_costs c;
  c.source = "polymap's defaults: " + device_status();
  return c;
}
host_map_costs measure_host_map_costs(int device) {
  detail::require_device(device);
  return {};
}

namespace detail {
void require_device(int /*device*/) {
  throw backend_unavailable("polymap: backend cuda is not available here: " + device_status());
}
void forget_host_map_costs() noexcept {}
}  // namespace detail

}  // namespace polymap::cuda
