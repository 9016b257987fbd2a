// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <polymap/detail/map_job.hpp>
#include <vector>

#include <optional>

#include "backends/processes/shared_region.hpp"

namespace polymap::detail {

/// What a new worker process is told: which slot it owns, what to run first,
/// where to write, and how to place itself. Everything reaches it through the
/// fork.
struct worker_setup {
  const map_job* job = nullptr;
  shared_region* shared = nullptr;
  std::size_t slot = 0;
  std::size_t workers = 0;         ///< workers of the call (for chunk sizes and binding)
  std::optional<index_range> first;  ///< items to run before claiming (a dead worker's)
  int pipe = -1;                   ///< write end of the pipe to the caller
  pid_t parent = 0;
  std::size_t memory_limit = 0;
};

/// The life of a worker process: places itself, runs `setup.first`, then claims
/// chunks until none is left or the call stops, and ends with _exit (no atexit
/// handlers, no static destructors: those belong to the caller).
[[noreturn]] void worker_main(worker_setup& setup) noexcept;

/// Appends one failure message (remote_tag::failure) to `out`.
void encode_failure(std::string& out, const item_failure& failure);

/// Reads one failure message body from `in` (after its tag); advances `in`.
/// Nothing when the message is not complete yet.
[[nodiscard]] bool decode_failure(std::string_view& in, item_failure& failure);

}  // namespace polymap::detail
