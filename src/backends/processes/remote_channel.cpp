// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <polymap/detail/remote.hpp>

#include "backends/processes/store_io.hpp"

namespace polymap::detail {

remote_channel::remote_channel(remote_slot* slot, const remote_target& target, bool timed,
                               std::string* buffer)
    : slot_(slot),
      target_(target),
      flags_(target.ring_flags()),
      results_(target.ring_results()),
      timed_(timed),
      buffer_(buffer) {}

std::size_t remote_channel::begin_segment(std::size_t i) noexcept {
  flush();
  seg_begin_ = i;
  slot_->seg_begin.store(i, std::memory_order_relaxed);  // published by the next `staged`
  return 0;
}

void remote_channel::flush() noexcept {
  if (seg_len_ == 0) return;
  const std::size_t size = target_.fixed_size;
  const bool written =
      (size == 0 ||
       write_at(target_.fd, results_, seg_len_ * size, target_.results_at + seg_begin_ * size)) &&
      write_at(target_.fd, flags_, seg_len_, target_.flags_at + seg_begin_);
  if (!written) {
    // Not an item's failure: the caller fails the call with this errno, after
    // recovering the ring.
    slot_->store_error.store(errno != 0 ? errno : EIO, std::memory_order_relaxed);
    _exit(store_failed_exit);
  }
  seg_len_ = 0;
  slot_->staged.store(0, std::memory_order_release);
}

}  // namespace polymap::detail
