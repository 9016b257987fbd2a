// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>
#include <polymap/backends/mpi.hpp>
#include <polymap/progress.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <stop_token>
#include <string_view>
#include <vector>

namespace polymap {

/// How workers are placed on the machine. Best effort: what was applied is reported.
enum class bind {
  none,     ///< the OS schedules workers anywhere in the usable set
  core,     ///< worker i on the i-th usable core (all of its usable PUs)
  pu,       ///< worker i on the i-th usable processing unit
  numa,     ///< worker i on the NUMA node of the i-th usable core
  package,  ///< worker i on the package (socket) of the i-th usable core
  cpus,     ///< worker i on `options::cpus[i % cpus.size()]`
};

/// What a map does when an item fails.
enum class on_error {
  fail_fast,  ///< stop starting items, then throw `map_error` (the default)
  collect,    ///< finish every other item, then throw `map_error` listing all failures
};

struct run_report;

/// Options of one map call; a plain aggregate for designated initializers.
///
/// Every field has a default that works on a laptop. Options are checked when the call
/// starts; a wrong one throws `option_error` naming the option, the value and what is
/// allowed.
struct options {
  /// Which backend runs the map; `automatic` picks the one predicted to finish soonest.
  backend_kind backend = backend_kind::automatic;
  /// Workers to use; 0 means one per usable CPU (affinity mask, cpuset and CPU quota).
  std::size_t workers = 0;
  /// Placement of workers on cores, NUMA nodes or packages.
  polymap::bind bind = polymap::bind::none;
  /// OS CPU indices for `bind::cpus`.
  std::vector<int> cpus = {};
  /// Nice value (-20..19) of every worker; unset leaves the priority alone.
  std::optional<int> nice = std::nullopt;
  /// Per-item time limit; needs the process backend (0 means none).
  std::chrono::duration<double> timeout = std::chrono::duration<double>::zero();
  /// Per-worker memory limit in bytes; needs the process backend (0 means none).
  std::size_t memory_limit = 0;
  /// Processes backend: let a worker that crashes dump core under the program's own
  /// RLIMIT_CORE. Off by default: workers run with a soft limit of 0, so that crashing
  /// items do not each write a core of the whole program.
  bool core_dumps = false;
  /// Times a failed item is run again before it counts as failed.
  unsigned retries = 0;
  /// `fail_fast` or `collect`.
  polymap::on_error on_error = polymap::on_error::fail_fast;
  /// imap only: yield results in input order (true) or as they complete (false).
  bool ordered = true;
  /// Items a worker claims at once; 0 adapts the chunk to the measured item cost.
  std::size_t chunk = 0;
  /// imap only: most results computed ahead of the consumer; 0 picks one from the workers.
  std::size_t window = 0;
  /// Draw a progress bar on stderr when it is a terminal.
  bool progress = false;
  /// Called about ten times a second, and once at the end, with the progress of the call.
  std::function<void(const progress_info&)> on_progress = {};
  /// Requests cancellation: pending items are not started, running ones finish.
  std::stop_token stop = {};
  /// cuda: index of the GPU that runs the call (0 to the device count - 1).
  int device = 0;
  /// mpi: the communicator whose ranks share the call (unset: MPI_COMM_WORLD);
  /// `polymap::mpi::comm(c)` from <polymap/mpi/comm.hpp> names one of the program's.
  mpi::comm_handle comm = {};
  /// mpi: which ranks get the results: every rank (the default), or rank 0 of `comm` alone.
  mpi::results results = mpi::results::every_rank;
  /// When set, receives what the call did: backend, workers, binding and priority applied.
  run_report* report = nullptr;
};

/// Name of a `bind` policy ("none", "core", ...).
[[nodiscard]] std::string_view to_string(bind policy) noexcept;
/// The policy named `name`, or nothing.
[[nodiscard]] std::optional<bind> parse_bind(std::string_view name) noexcept;

}  // namespace polymap
