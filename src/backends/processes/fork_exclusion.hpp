// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>

namespace polymap::detail {

/// Keeps the whole pages of a block of the caller's memory out of every process
/// it forks while the exclusion lives (madvise MADV_DONTFORK), and gives them
/// back to later forks when it ends.
///
/// Why: fork() write-protects all of the caller's private memory, so each page
/// the caller writes afterwards takes a fault, even once the children are gone.
/// A call's result buffer, which only the caller writes and no item reads, then
/// costs a fault per page when the results are copied in. Excluded pages keep
/// their write access; a child that touched them would get SIGSEGV, so only
/// memory out of every item's reach may be excluded.
/// Thread safety: one thread.
class fork_exclusion {
 public:
  fork_exclusion() = default;
  /// Excludes the whole pages inside [data, data + bytes); nothing when they
  /// are too few to matter or the kernel refuses.
  fork_exclusion(void* data, std::size_t bytes) noexcept;
  ~fork_exclusion();
  fork_exclusion(const fork_exclusion&) = delete;
  fork_exclusion& operator=(const fork_exclusion&) = delete;

 private:
  void* begin_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace polymap::detail
