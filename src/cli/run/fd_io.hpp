// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::cli::run {

/// Writes all of `data` to `fd`, again after EINTR and after a short write; on a descriptor
/// left non-blocking (EAGAIN) it waits until it can be written. So it may block indefinitely:
/// on a full pipe whose reader neither reads nor goes, as a write to a blocking one does.
/// @return 0, or the errno that stopped it (ENOSPC for a write of nothing; poll()'s errno
///   when the wait itself fails)
int write_all(int fd, std::string_view data) noexcept;

/// Reads `size` bytes of `fd` from `offset` with pread, so that the descriptor's own offset
/// does not matter.
/// @return what could be read: fewer bytes when the file ends sooner or a read fails
/// @throws std::bad_alloc
std::string pread_all(int fd, std::int64_t offset, std::size_t size);

/// Reads up to `size` bytes of `from` at its offset `at` (with pread, again after EINTR), at
/// most 256 KiB, into a buffer that the next call reuses.
/// Thread safety: none (one static buffer serves every call).
/// @return the bytes read, or empty with `error` set: the errno, or EIO where `from` ends
std::string_view read_piece(int from, std::int64_t at, std::size_t size, int& error) noexcept;

/// Hands `size` bytes of `from`, starting at its offset `at`, to `sink` in pieces of up to
/// 256 KiB: `sink(std::string_view)` returns 0, or an errno that stops the copy.
/// Thread safety: none (read_piece()).
/// @return 0, or the errno that stopped it (EIO when `from` is shorter than said)
template <class Sink>
int copy_bytes(int from, std::int64_t at, std::size_t size, Sink&& sink) {
  while (size > 0) {
    int error = 0;
    const std::string_view piece = read_piece(from, at, size, error);
    if (error != 0) return error;
    if (const int failed = sink(piece); failed != 0) return failed;
    at += static_cast<std::int64_t>(piece.size());
    size -= piece.size();
  }
  return 0;
}

/// Copies `size` bytes of `from`, starting at its offset `at`, to `to` with write_all().
/// Thread safety: none (read_piece()).
/// @return 0, or the errno that stopped it (EIO when `from` is shorter than said; ENOSPC for
///   a write of nothing)
int copy_bytes(int from, std::int64_t at, std::size_t size, int to) noexcept;

/// Copies `size` bytes of the file `from`, starting at its offset `at`, to `to` with
/// sendfile (no copy through polymap's memory), or as copy_bytes() does where sendfile
/// cannot send from `from` to `to`.
/// @return as copy_bytes()
int send_all(int from, std::int64_t at, std::size_t size, int to) noexcept;

/// Whether descriptors `a` and `b` are the same open file, pipe or socket.
bool same_file(int a, int b) noexcept;

/// The size of the file `fd` refers to; 0 when it cannot be known (`fd` < 0 included).
std::size_t file_size(int fd) noexcept;

/// How many jobs fit under the open-file limit, and that limit.
struct fd_fit {
  std::size_t jobs = 0;
  std::size_t limit = 0;  ///< ulimit -n; 0: none
};

/// How many of `wanted` jobs that hold `per_job` descriptors each fit under the open-file
/// limit (RLIMIT_NOFILE), beside the descriptors open now and 16 to spare (SQLite may open
/// more, and each --results file is written through one more): `wanted` when it does not
/// bound them, or when `per_job` is 0.
[[nodiscard]] fd_fit jobs_within_fd_limit(std::size_t wanted, std::size_t per_job) noexcept;

/// Opens /dev/null onto each of descriptors 0, 1 and 2 that is closed (`2>&-`), as the
/// shell user expects: output to a closed stream goes nowhere. Else the next descriptor
/// polymap opens (/dev/null for the jobs' stdin, the signalfd, a capture, MPI's sockets)
/// would take its number, and the output written there would fail or land in the wrong
/// file. Called before anything opens a descriptor.
void open_closed_standard_fds() noexcept;

/// The descriptors this process has open.
[[nodiscard]] std::vector<int> open_descriptors();

/// Sets close-on-exec on every descriptor above 2 that is not in `kept` (what was open before
/// a library opened its own without it: MPI's sockets must not reach the jobs).
void close_on_exec_but(const std::vector<int>& kept) noexcept;

/// A new anonymous file in memory (memfd), closed on exec: a job's stdout or stderr, kept.
/// @throws std::system_error when it cannot be made
[[nodiscard]] int make_capture();

/// The whole of the file `fd` (nothing for -1). @throws std::bad_alloc
[[nodiscard]] std::string read_all(int fd);

}  // namespace polymap::cli::run
