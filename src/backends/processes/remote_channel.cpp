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
  if (flags_dirty_) {
    std::memset(flags_, 1, target_.ring_capacity);
    flags_dirty_ = false;
  }
  seg_begin_ = i;
  slot_->seg_begin.store(i, std::memory_order_relaxed);  // published by the next `staged`
  return 0;
}

void remote_channel::skip(std::size_t k) noexcept {
  std::memset(flags_ + seg_len_, 0, k - seg_len_);
  seg_failed_ += k - seg_len_;
  flags_dirty_ = true;
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
  // Emptied before its items are counted: a worker that dies in between leaves
  // them uncounted, never counted twice (the caller counts what it recovers).
  slot_->staged.store(0, std::memory_order_release);
  slot_->done.store(slot_->done.load(std::memory_order_relaxed) + seg_len_ - seg_failed_,
                    std::memory_order_relaxed);
  seg_len_ = 0;
  seg_failed_ = 0;
}

}  // namespace polymap::detail
