// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <polymap/detail/map_job.hpp>
#include <optional>
#include <vector>

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

/// The exit status of a worker process whose item ran out of memory under a cap (see
/// remote_channel::out_of_memory); its slot's `out_of_memory` says so, not this status,
/// which an item could also exit with.
inline constexpr int out_of_memory_status = 123;

/// The exit status of a worker process whose descriptors to the caller an item closed or
/// replaced (see remote_channel::check_descriptors); its slot's `channel_lost` says so.
inline constexpr int channel_lost_status = 124;

/// The life of a worker process: places itself, runs `setup.first`, then claims
/// chunks until none is left or the call stops, and ends with _exit (no atexit
/// handlers, no static destructors: those belong to the caller).
[[noreturn]] void worker_main(worker_setup& setup) noexcept;

/// Fault injection for tests: when set, a worker process calls it right after it
/// claimed items [b, e) and before its slot shows them, the moment at which its
/// death is seen by nothing but the caller's final sweep. Null in real programs.
inline void (*claim_hook)(std::size_t b, std::size_t e) = nullptr;

/// Appends one failure message (remote_tag::failure) to `out`.
void encode_failure(std::string& out, const item_failure& failure);

/// Reads one failure message body from `in` (after its tag); advances `in`.
/// Nothing when the message is not complete yet.
[[nodiscard]] bool decode_failure(std::string_view& in, item_failure& failure);

}  // namespace polymap::detail
