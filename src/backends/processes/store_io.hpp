// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace polymap::detail {

/// The exit status of a worker process that could not write to the store (the
/// memory behind it is exhausted).
inline constexpr int store_failed_exit = 123;

/// Moves all `bytes` at `offset` of `fd` with `io` (pread or pwrite), resuming
/// after EINTR and short transfers; false on an error or at the end of the file.
template <class Io, class Byte>
bool transfer_at(Io io, int fd, Byte* data, std::size_t bytes, std::size_t offset) noexcept {
  while (bytes != 0) {
    const ssize_t n = io(fd, data, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    bytes -= static_cast<std::size_t>(n);
    offset += static_cast<std::size_t>(n);
  }
  return true;
}

inline bool write_at(int fd, const void* data, std::size_t bytes, std::size_t offset) noexcept {
  return transfer_at(pwrite, fd, static_cast<const char*>(data), bytes, offset);
}

inline bool read_at(int fd, void* data, std::size_t bytes, std::size_t offset) noexcept {
  return transfer_at(pread, fd, static_cast<char*>(data), bytes, offset);
}

}  // namespace polymap::detail
