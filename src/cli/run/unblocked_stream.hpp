// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace polymap::cli::run {

/// Writes to a stream whose reader decides when a write ends (a pipe, FIFO, socket or
/// terminal: a pager left open, Ctrl-S) without ever waiting in write(), so that its writer
/// can wait for room and for other things at once (poll on fd()). The stream's own
/// descriptor is left as it is: its O_NONBLOCK flag belongs to the open file, which others
/// share (the shell, the jobs, the next command). Instead:
/// - a pipe, FIFO or terminal is opened once more, non-blocking, through /proc/self/fd;
/// - a socket is written with send(MSG_DONTWAIT);
/// - where neither can be done (no /proc, a terminal of another user), a piece of PIPE_BUF
///   bytes is written once poll() says there is room, which a pipe takes without waiting.
/// Thread safety: none.
class unblocked_stream {
 public:
  /// For descriptor `fd`, which stays open and owned by the caller.
  explicit unblocked_stream(int fd) noexcept;
  unblocked_stream(const unblocked_stream&) = delete;
  unblocked_stream& operator=(const unblocked_stream&) = delete;
  ~unblocked_stream();

  /// Whether a write to `fd` may wait for as long as its reader decides: `fd` is a pipe,
  /// FIFO, socket or terminal. A file or /dev/null takes a write at once, or fails.
  static bool may_block(int fd) noexcept;

  /// Writes what the stream takes of `data` now.
  /// @return the bytes written; 0 when it takes none now (poll fd() for POLLOUT, then call
  ///   again); -1 with errno set on an error (EPIPE: its reader has gone)
  ssize_t write_some(std::string_view data) noexcept;

  /// Writes what the stream takes now of `size` bytes of the file `from`, from its offset
  /// `at`, which it moves past them: with sendfile (no copy through polymap's memory) where
  /// the stream was opened again, else read and written.
  /// @return as write_some(); EIO where `from` is shorter than `size`
  ssize_t send_some(int from, std::int64_t& at, std::size_t size) noexcept;

  /// The descriptor to poll for POLLOUT.
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  enum class way { reopened, socket, pieces };
  int fd_;
  int own_ = -1;  // the descriptor opened again, way::reopened
  way way_ = way::pieces;
};

}  // namespace polymap::cli::run
