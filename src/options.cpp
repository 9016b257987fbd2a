// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/backend.hpp>
#include <polymap/detail/execute.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include "topology/binding.hpp"

#include <cmath>
#include <string>
#include <string_view>

namespace polymap {

std::string_view to_string(backend_kind kind) noexcept {
  switch (kind) {
    case backend_kind::automatic: return "automatic";
    case backend_kind::serial: return "serial";
    case backend_kind::threads: return "threads";
    case backend_kind::processes: return "processes";
    case backend_kind::cuda: return "cuda";
    case backend_kind::kokkos: return "kokkos";
    case backend_kind::mpi: return "mpi";
  }
  return "unknown";
}

std::optional<backend_kind> parse_backend(std::string_view name) noexcept {
  if (name == "automatic" || name == "auto") return backend_kind::automatic;
  for (backend_kind kind : all_backends) {
    if (name == to_string(kind)) return kind;
  }
  return std::nullopt;
}

namespace detail {

/// Most workers one call may ask for: far beyond any node, small enough to catch a typo.
constexpr std::size_t max_workers = 4096;

/// AddressSanitizer and ThreadSanitizer reserve terabytes of address space up front, so a
/// cap on a worker's address space cannot tell an item's allocations from theirs.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitizer_build = true;
#else
constexpr bool sanitizer_build = false;
#endif

void check_options(const options& o) {
  // Enumerators made by a cast from a number that names none.
  if (static_cast<unsigned>(o.backend) > static_cast<unsigned>(backend_kind::mpi)) {
    throw option_error("backend", std::to_string(static_cast<int>(o.backend)),
                       "automatic, serial, threads, processes, cuda, kokkos or mpi");
  }
  if (static_cast<unsigned>(o.bind) > static_cast<unsigned>(bind::cpus)) {
    throw option_error("bind", std::to_string(static_cast<int>(o.bind)),
                       "none, core, pu, numa, package or cpus");
  }
  if (static_cast<unsigned>(o.on_error) > static_cast<unsigned>(on_error::collect)) {
    throw option_error("on_error", std::to_string(static_cast<int>(o.on_error)),
                       "fail_fast or collect");
  }
  if (o.workers > max_workers) {
    throw option_error("workers", std::to_string(o.workers),
                       "0 (one per usable CPU) up to " + std::to_string(max_workers));
  }
  if (o.nice && (*o.nice < -20 || *o.nice > 19)) {
    throw option_error("nice", std::to_string(*o.nice), "a nice value from -20 to 19");
  }
  const double timeout = o.timeout.count();
  if (!std::isfinite(timeout) || timeout < 0) {
    throw option_error("timeout", std::to_string(timeout) + " s",
                       "a finite duration of zero (none) or more (a timeout that never "
                       "fires: zero)");
  }
  constexpr unsigned max_retries = 1000;
  if (o.retries > max_retries) {
    throw option_error("retries", std::to_string(o.retries),
                       "0 up to " + std::to_string(max_retries));
  }
  if (o.device < 0) {
    // Whether an index this large names a GPU is checked where GPUs are counted (cuda::).
    throw option_error("device", std::to_string(o.device), "a GPU index: 0 or more");
  }
  if (static_cast<unsigned>(o.results) > static_cast<unsigned>(polymap::mpi::results::rank0)) {
    throw option_error("results", std::to_string(static_cast<int>(o.results)),
                       "every_rank or rank0");
  }
  check_binding(topology::current(), o.bind, o.cpus);
  // What the requested backend cannot hold is refused here, not when the backend is
  // chosen: that would be after the call started (map_async, imap), or never for a call
  // with no items.
  bool from_env = false;
  const backend_kind requested = requested_backend(o, from_env);
  // mpi runs each rank's share on that machine's own backends: processes, for these.
  if (requested != backend_kind::automatic && requested != backend_kind::processes &&
      requested != backend_kind::mpi && stops_or_caps(o)) {
    refuse_stop_or_cap(
        o, std::string(to_string(requested)) + (from_env ? " (from POLYMAP_BACKEND)" : ""));
  }
  // Only the mpi backend shares a call between ranks: on any other these would be ignored.
  if (requested != backend_kind::mpi &&
      (o.comm.fortran.has_value() || o.results != polymap::mpi::results::every_rank)) {
    const bool comm = o.comm.fortran.has_value();
    throw option_error(comm ? "comm" : "results",
                       comm ? "a communicator (Fortran handle " + std::to_string(*o.comm.fortran) +
                                  ")"
                            : std::string("rank0"),
                       std::string("the default with backend ") +
                           std::string(to_string(requested)) +
                           (from_env ? " (from POLYMAP_BACKEND)" : "") +
                           ": only the mpi backend shares a call between ranks");
  }
  if (sanitizer_build && o.memory_limit != 0) {
    throw option_error("memory_limit", std::to_string(o.memory_limit) + " bytes",
                       "none in a sanitizer build: ASan and TSan reserve terabytes of address "
                       "space, so an address-space cap cannot single out an item");
  }
}

void check_kernel_options(const options& o, std::string_view call) {
  check_options(o);
  const auto refuse = [call](const char* name, const std::string& value) {
    throw option_error(name, value,
                       "the default with " + std::string(call) +
                           ", which runs one Kokkos kernel as Kokkos schedules it on its space "
                           "(options::stop is looked at before it starts, and report is filled)");
  };
  if (o.backend != backend_kind::automatic && o.backend != backend_kind::kokkos) {
    refuse("backend", std::string(to_string(o.backend)));
  }
  if (o.workers != 0) refuse("workers", std::to_string(o.workers));
  if (o.bind != bind::none) refuse("bind", std::string(to_string(o.bind)));
  if (o.nice) refuse("nice", std::to_string(*o.nice));
  if (o.timeout.count() > 0) refuse("timeout", std::to_string(o.timeout.count()) + " s");
  if (o.memory_limit != 0) refuse("memory_limit", std::to_string(o.memory_limit) + " bytes");
  if (o.retries != 0) refuse("retries", std::to_string(o.retries));
  if (o.on_error == on_error::collect) refuse("on_error", "collect");
  if (o.chunk != 0) refuse("chunk", std::to_string(o.chunk));
  if (o.progress) refuse("progress", "true");
  if (o.on_progress) refuse("on_progress", "a callback");
  if (o.core_dumps) refuse("core_dumps", "true");
  // Kokkos picks its device at its initialisation (--kokkos-device-id), not per call.
  if (o.device != 0) refuse("device", std::to_string(o.device));
}

}  // namespace detail
}  // namespace polymap
