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
    case backend_kind::cuda: return POLYMAP_HAS_CUDA != 0;
    case backend_kind::kokkos: return POLYMAP_HAS_KOKKOS != 0;
    case backend_kind::mpi: return POLYMAP_HAS_MPI != 0;
    default: return false;
  }
}

std::string not_built_reason(backend_kind kind) {
  const std::string name(to_string(kind));
  switch (kind) {
    case backend_kind::cuda:
    case backend_kind::kokkos:
    case backend_kind::mpi: {
      const char* option = kind == backend_kind::cuda     ? "CUDA"
                           : kind == backend_kind::kokkos ? "KOKKOS"
                                                          : "MPI";
      return "this build of polymap has no " + name + " backend (configure with POLYMAP_WITH_" +
             option + "=ON)";
    }
    default: return name + " is not a concrete backend";
  }
}

executor& executor_for(backend_kind kind) {
  switch (kind) {
    case backend_kind::serial: return serial_executor();
    case backend_kind::threads: return threads_executor();
    case backend_kind::processes: return processes_executor();
#if POLYMAP_HAS_CUDA
    case backend_kind::cuda: return cuda_executor();
#endif
#if POLYMAP_HAS_KOKKOS
    case backend_kind::kokkos: return kokkos_executor();
#endif
#if POLYMAP_HAS_MPI
    case backend_kind::mpi: return mpi_executor();
#endif
    default: throw backend_unavailable("polymap: " + not_built_reason(kind));
  }
}

executor* usable_executor(backend_kind kind, std::string& why_not) {
  if (!is_built(kind)) {
    why_not = not_built_reason(kind);
    return nullptr;
  }
  executor& ex = executor_for(kind);
  if (!ex.available()) {
    why_not = ex.status();
    return nullptr;
  }
  return &ex;
}

}  // namespace polymap::detail
