// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

namespace polymap::cli::run {

/// A small helper process that outlives the runner by a moment: when the runner dies,
/// even by SIGKILL, the helper sees its socket close and kills every job's process group
/// that the runner had not reaped. The jobs' own parent-death signal only reaches their
/// first process; this reaches what they started too (`sh -c 'a; b'`, make, mpirun...).
/// Thread safety: none; used by the runner's thread.
class orphan_guard {
 public:
  /// Forks the helper. Call before any thread or SQLite connection exists.
  /// @throws std::system_error when it cannot be created
  orphan_guard();
  orphan_guard(const orphan_guard&) = delete;
  orphan_guard& operator=(const orphan_guard&) = delete;
  /// Lets the helper go (it exits once told nothing is left).
  ~orphan_guard();

  /// Tells the helper about a job's process group. Best effort: a helper that died cannot
  /// guard, which changes nothing else.
  void add(pid_t group) noexcept;
  /// Tells the helper that a group was reaped, so that its id is never killed once reused.
  void remove(pid_t group) noexcept;
  /// The helper's pid: the runner's waitpid(-1) must not take it for a job.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  int socket_ = -1;
  pid_t pid_ = -1;
};

}  // namespace polymap::cli::run
