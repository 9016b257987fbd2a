// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/processes/fork_exclusion.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace polymap::detail {

namespace {

/// Below this many whole pages, the faults saved do not pay for the two calls.
constexpr std::size_t min_pages = 8;

}  // namespace

fork_exclusion::fork_exclusion(void* data, std::size_t bytes) noexcept {
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto at = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t first = (at + page - 1) / page * page;
  const std::uintptr_t last = (at + bytes) / page * page;
  if (data == nullptr || last < first + min_pages * page) return;
  if (madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTFORK) != 0) return;
  begin_ = reinterpret_cast<void*>(first);
  bytes_ = last - first;
}

fork_exclusion::~fork_exclusion() {
  if (begin_ != nullptr) (void)madvise(begin_, bytes_, MADV_DOFORK);
}

}  // namespace polymap::detail
