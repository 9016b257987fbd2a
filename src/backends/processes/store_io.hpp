// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <sys/types.h>

namespace polymap::detail {

/// The exit status of a worker process that could not write to the store (the
/// memory behind it is exhausted).
inline constexpr int store_failed_exit = 123;

/// Writes all `bytes` at `offset` of `fd`; false on an error other than EINTR.
inline bool write_at(int fd, const void* data, std::size_t bytes, std::size_t offset) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (bytes != 0) {
    const ssize_t n = pwrite(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<std::size_t>(n);
    offset += static_cast<std::size_t>(n);
  }
  return true;
}

/// Reads all `bytes` at `offset` of `fd`; false on an error or a short file.
inline bool read_at(int fd, void* data, std::size_t bytes, std::size_t offset) noexcept {
  auto* p = static_cast<char*>(data);
  while (bytes != 0) {
    const ssize_t n = pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= static_cast<std::size_t>(n);
    offset += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace polymap::detail
