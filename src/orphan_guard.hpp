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
/// The helper is forked twice, so it is not its maker's child: a program's `wait()` for its
/// own children never waits for it, and no `waitpid(-1)` takes it for one of them. It
/// ignores the terminal's signals (a Ctrl-C reaches the whole foreground group: it must
/// stay to see whether its maker goes), holds no descriptor of its maker's but the socket,
/// and is named `polymap-guard` in `ps`.
///
/// The socket closes when every process holding the maker's end has gone or closed it: a
/// child forked without exec must close `socket()` (it closes on exec by itself).
/// Thread safety: add() and remove() from any thread.
class orphan_guard {
 public:
  /// Forks the helper.
  /// @throws std::system_error when it cannot be created
  orphan_guard();
  orphan_guard(const orphan_guard&) = delete;
  orphan_guard& operator=(const orphan_guard&) = delete;
  /// Lets the helper go, and waits until it has: it kills the groups still registered.
  ~orphan_guard();

  /// Tells the helper about a process group. Best effort: a helper that died cannot guard,
  /// which changes nothing else.
  void add(pid_t group) const noexcept;
  /// Tells the helper that a group was reaped, so that its id is never killed once reused.
  void remove(pid_t group) const noexcept;
  /// This process's end of the socket.
  [[nodiscard]] int socket() const noexcept { return socket_; }

 private:
  int socket_ = -1;
};

}  // namespace polymap::detail
