// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

namespace polymap::detail {

/// Keeps the death of the caller from leaving worker processes, or what their
/// items started, behind. While at least one guard lives, SIGINT or SIGTERM
/// whose disposition was the default (terminate) first kills every registered
/// worker process group, then terminates the program as the default would. A
/// program's own handlers are left alone: they are never replaced. A death no
/// handler sees (SIGKILL) is covered by an orphan_guard helper, made by the
/// first guard and told of every group. A forked child (a worker among them)
/// starts without the parent's groups, handlers and helper, so that a TERM to
/// it ends it alone. Thread safety: any thread; the registry is lock-free for
/// the handler's sake.
class signal_guard {
 public:
  signal_guard();
  ~signal_guard();
  signal_guard(const signal_guard&) = delete;
  signal_guard& operator=(const signal_guard&) = delete;

  /// Adds a worker's process group; false when the registry is full (the group
  /// is then only killed by its parent-death signal).
  static bool add(pid_t group) noexcept;
  static void remove(pid_t group) noexcept;

  /// The pid of the orphan guard's helper, 0 while there is none.
  [[nodiscard]] static pid_t orphan_helper_pid() noexcept;
};

}  // namespace polymap::detail
