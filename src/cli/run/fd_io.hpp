// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

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

/// Copies `size` bytes of `from`, starting at its offset `at` (read with pread), to `to`.
/// Thread safety: none (one static buffer serves every copy).
/// @return 0, or the errno that stopped it (EIO when `from` is shorter than said; ENOSPC for
///   a write of nothing)
int copy_bytes(int from, std::int64_t at, std::size_t size, int to) noexcept;

/// The size of the file `fd` refers to; 0 when it cannot be known (`fd` < 0 included).
std::size_t file_size(int fd) noexcept;

}  // namespace polymap::cli::run
