// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <polymap/detail/remote.hpp>

#include "backends/processes/store_io.hpp"

namespace polymap::detail {

namespace {

/// Copies one result: the common sizes as fixed-size copies that compile to a move or
/// two, not a call to memcpy.
void copy_result(std::byte* to, const void* from, std::size_t size) noexcept {
  switch (size) {
    case 0:
      return;
    case 4:
      std::memcpy(to, from, 4);
      return;
    case 8:
      std::memcpy(to, from, 8);
      return;
    case 16:
      std::memcpy(to, from, 16);
      return;
    default:
      std::memcpy(to, from, size);
  }
}

}  // namespace

remote_channel::remote_channel(remote_slot* slot, const remote_target& target, bool timed,
                               std::string* buffer)
    : slot_(slot), target_(target), timed_(timed), buffer_(buffer) {
  seg_flags_.resize(target_.ring_capacity);
  seg_results_.resize(target_.ring_capacity * target_.fixed_size);
}

void remote_channel::stage(std::size_t i, const void* result) noexcept {
  const std::size_t size = target_.fixed_size;
  if (seg_len_ != 0 && (i < seg_begin_ || i - seg_begin_ >= target_.ring_capacity)) flush();
  if (seg_len_ == 0) seg_begin_ = i;
  const std::size_t k = i - seg_begin_;
  // Items skipped inside the segment failed: their flags stay 0.
  if (k > seg_len_) std::memset(seg_flags_.data() + seg_len_, 0, k - seg_len_);
  copy_result(seg_results_.data() + k * size, result, size);
  seg_flags_[k] = 1;
  seg_len_ = k + 1;
  // The same, in shared memory, before the item counts as done.
  std::byte* entry = target_.ring + staged_ * remote_target::entry_size(size);
  const std::uint64_t index = i;
  std::memcpy(entry, &index, sizeof index);
  copy_result(entry + sizeof index, result, size);
  slot_->staged.store(++staged_, std::memory_order_release);
  finished();
}

void remote_channel::flush() noexcept {
  if (seg_len_ == 0) return;
  const std::size_t size = target_.fixed_size;
  const bool written =
      (size == 0 || write_at(target_.fd, seg_results_.data(), seg_len_ * size,
                             target_.results_at + seg_begin_ * size)) &&
      write_at(target_.fd, seg_flags_.data(), seg_len_, target_.flags_at + seg_begin_);
  if (!written) {
    // Not an item's failure: the caller fails the call with this errno, after
    // recovering the ring.
    slot_->store_error.store(errno != 0 ? errno : EIO, std::memory_order_relaxed);
    _exit(store_failed_exit);
  }
  seg_len_ = 0;
  staged_ = 0;
  slot_->staged.store(0, std::memory_order_release);
}

}  // namespace polymap::detail
