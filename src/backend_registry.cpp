// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/config.hpp>
#include <polymap/error.hpp>

#include "executor.hpp"

#include <string>

namespace polymap::detail {

bool is_built(backend_kind kind) noexcept {
  switch (kind) {
    case backend_kind::serial:
    case backend_kind::threads:
    case backend_kind::processes: return true;
    default: return false;
  }
}

std::string not_built_reason(backend_kind kind) {
  const std::string name(to_string(kind));
  switch (kind) {
    case backend_kind::cuda:
    case backend_kind::kokkos:
    case backend_kind::mpi:
      return "polymap " POLYMAP_VERSION_STRING " does not have the " + name + " backend yet";
    default: return name + " is not a concrete backend";
  }
}

executor& executor_for(backend_kind kind) {
  switch (kind) {
    case backend_kind::serial: return serial_executor();
    case backend_kind::threads: return threads_executor();
    case backend_kind::processes: return processes_executor();
    default: throw backend_unavailable("polymap: " + not_built_reason(kind));
  }
}

}  // namespace polymap::detail
