// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Copies of host memory spread over the thread pool: the staging of a host-resident GPU map
/// copies each chunk into pinned memory and each result out of it, and one thread's memcpy
/// (about 10 GB/s) is far slower than a PCIe 5 link (about 50 GB/s each way).

#include <cstddef>
#include <span>

namespace polymap::detail {

/// One copy of `bytes` bytes from `from` to `to` (which must not overlap).
struct byte_copy {
  void* to = nullptr;
  const void* from = nullptr;
  std::size_t bytes = 0;
};

/// Bytes below which a copy is done on the calling thread: a fork-join of the pool costs
/// about as much as copying this much more.
inline constexpr std::size_t parallel_copy_threshold = std::size_t{1} << 20;

/// Does every copy of `copies`, in pieces spread over the threads backend's pool when they
/// add up to at least `parallel_copy_threshold` bytes, on the calling thread otherwise (and
/// when the pool is busy with another call, or inside a worker). Returns when all are done.
void parallel_copy(std::span<const byte_copy> copies) noexcept;

}  // namespace polymap::detail
