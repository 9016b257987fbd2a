// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

namespace polymap::detail {

/// A small helper process that outlives its maker by a moment: when the maker dies, even
/// by SIGKILL, the helper sees its socket close and kills every process group it was told
/// about and not told to forget. A child's parent-death signal reaches only that child;
/// this reaches what it started too (`sh -c 'a; b'`, make, mpirun, an item's `system()`).
///
/// The helper is a POSIX shell script run by /bin/sh, not a fork of the maker: it holds
/// none of the maker's memory (a forked copy would keep every page the maker later writes
/// or frees allocated twice). It runs in a session of its own, with every signal at its
/// default and the terminal's ignored, so that neither a Ctrl-C nor a kill of the maker's
/// process group takes it with the maker; it is started in the background by a shell that
/// exits at once, so it is not its maker's child (unless the maker is PID 1 or a
/// subreaper, which adopt it), and it holds no descriptor of the maker's but the socket.
///
/// The socket closes when every process holding the maker's end has gone or closed it: a
/// child forked without exec must close `socket()` (it closes on exec by itself).
/// Thread safety: add() and remove() from any thread.
class orphan_guard {
 public:
  /// Starts the helper and waits until it runs (a few milliseconds).
  /// @throws std::system_error when it cannot be started (no /bin/sh, a process limit)
  orphan_guard();
  orphan_guard(const orphan_guard&) = delete;
  orphan_guard& operator=(const orphan_guard&) = delete;
  /// Lets the helper go, and waits until it has: it kills the groups still registered.
  ~orphan_guard();

  /// Tells the helper about a process group. Best effort, and never blocks: a helper that
  /// died or stopped reading cannot guard, which changes nothing else.
  void add(pid_t group) const noexcept;
  /// Tells the helper that a group was reaped, so that its id is never killed once reused.
  void remove(pid_t group) const noexcept;
  /// This process's end of the socket.
  [[nodiscard]] int socket() const noexcept { return socket_; }
  /// The helper's pid.
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  void send_line(char sign, pid_t group) const noexcept;

  int socket_ = -1;
  pid_t pid_ = -1;
};

}  // namespace polymap::detail
