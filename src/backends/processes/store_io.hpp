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

/// Fault injection for tests: how many more direct writes (see remote_target) a
/// worker process makes before it behaves as if refused. Unlimited in real programs.
inline std::size_t direct_writes_left = ~std::size_t{0};

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
