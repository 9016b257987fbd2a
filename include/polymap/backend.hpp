// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <optional>
#include <string_view>

namespace polymap {

/// Where a map runs. `automatic` estimates each available backend's time and picks the
/// soonest (see `explain()`).
enum class backend_kind {
  automatic,  ///< chosen per call from the size and the per-item cost
  serial,     ///< a loop on the calling thread
  threads,    ///< the persistent thread pool
  processes,  ///< forked worker processes (isolation, timeouts, memory caps)
  cuda,       ///< an NVIDIA GPU
  kokkos,     ///< a Kokkos execution space
  mpi,        ///< ranks of an MPI job
};

/// The name users write: `.backend = polymap::backend::threads`.
using backend = backend_kind;

/// "automatic", "serial", "threads", ...
[[nodiscard]] std::string_view to_string(backend_kind kind) noexcept;

/// The backend named `name` (as printed by `to_string`), or nothing.
[[nodiscard]] std::optional<backend_kind> parse_backend(std::string_view name) noexcept;

/// Every concrete backend kind (not `automatic`), in a fixed order.
inline constexpr backend_kind all_backends[] = {backend_kind::serial,    backend_kind::threads,
                                                backend_kind::processes, backend_kind::cuda,
                                                backend_kind::kokkos,    backend_kind::mpi};

}  // namespace polymap
