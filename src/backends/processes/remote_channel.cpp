// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <stdio_ext.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <polymap/detail/remote.hpp>

#include "backends/processes/store_io.hpp"
#include "backends/processes/worker_process.hpp"

namespace polymap::detail {

remote_channel::remote_channel(remote_slot* slot, const remote_target& target, int pipe,
                               bool timed, std::string* buffer, bool memory_capped)
    : slot_(slot),
      target_(target),
      pipe_(pipe),
      pipe_file_(identity_of(pipe)),
      store_file_(identity_of(target.fd)),
      flags_(target.ring_flags()),
      results_(target.ring_results()),
      timed_(timed),
      buffer_(buffer),
      memory_capped_(memory_capped) {}

namespace {

void write_all(int fd, const std::string& data) noexcept {
  std::size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(120);  // the caller is gone: nobody wants the results
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace

void remote_channel::keep_failures(run_state& state) {
  if (state.failed() == failures_kept_) return;
  for (item_failure& f : state.take_failures()) {
    f.backend = backend_kind::processes;
    encode_failure(*buffer_, f);
  }
  failures_kept_ = state.failed();
  keep();
}

void remote_channel::write_printed() noexcept {
  // __fpending reads the buffer's fill without the stream's lock: the worker's items run on
  // its one thread.
  if (__fpending(stdout) != 0) (void)std::fflush(stdout);
}

void remote_channel::send() noexcept {
  if (buffer_->empty()) return;
  check_descriptors();
  write_all(pipe_, *buffer_);
  // In this order: a worker that dies in between has its caller read no kept byte twice.
  slot_->kept.store(0, std::memory_order_release);
  slot_->sent.store(slot_->sent.load(std::memory_order_relaxed) + buffer_->size(),
                    std::memory_order_release);
  buffer_->clear();
}

void remote_channel::keep() noexcept {
  if (target_.messages == nullptr) return;
  const std::size_t have = slot_->kept.load(std::memory_order_relaxed);
  if (buffer_->size() > target_.messages_capacity) {
    send();
    return;
  }
  std::memcpy(target_.messages + have, buffer_->data() + have, buffer_->size() - have);
  slot_->kept.store(buffer_->size(), std::memory_order_release);
}

remote_channel::file_identity remote_channel::identity_of(int fd) noexcept {
  struct stat st {};
  if (fstat(fd, &st) != 0) return {};  // closed: never equal to an open file's
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

void remote_channel::check_descriptors() noexcept {
  if (!items_since_check_) return;  // only an item's code changes descriptors
  const auto same = [](file_identity now, file_identity then) {
    return then.inode == 0 ||  // none to begin with: nothing is written through it
           (now.inode != 0 && now.device == then.device && now.inode == then.inode);
  };
  if (same(identity_of(pipe_), pipe_file_) && same(identity_of(target_.fd), store_file_)) {
    items_since_check_ = false;
    return;
  }
  slot_->channel_lost.store(1, std::memory_order_release);
  _exit(channel_lost_status);
}

void remote_channel::out_of_memory() noexcept {
  if (!memory_capped_) return;
  // Nothing is sent: what the chunk finished is in the ring, which the caller recovers,
  // and the rest of the chunk (its failures and encoded results too) goes to the next
  // worker, as after a crash. A message could need memory that is not there.
  slot_->out_of_memory.store(1, std::memory_order_release);
  _exit(out_of_memory_status);
}

std::size_t remote_channel::begin_segment(std::size_t i) noexcept {
  flush();
  if (flags_dirty_) {
    std::memset(flags_, done_flag, target_.ring_capacity);
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

bool remote_channel::write_direct() noexcept {
  // Never outside the call's results, whatever this process's memory says.
  if (seg_begin_ >= target_.items || seg_len_ > target_.items - seg_begin_) return false;
  if (direct_writes_left == 0) return false;
  if (direct_writes_left != ~std::size_t{0}) --direct_writes_left;
  // The runs of items that succeeded, a few at a time: a failed item's place in the
  // caller's memory (in a map_into, the user's own output) keeps what it held.
  const std::size_t size = target_.fixed_size;
  constexpr std::size_t most = 64;
  std::array<iovec, most> local{};
  std::array<iovec, most> remote{};
  std::size_t runs = 0;
  std::size_t bytes = 0;
  const auto write_runs = [&]() noexcept {
    ssize_t n;
    while ((n = process_vm_writev(target_.caller, local.data(), runs, remote.data(), runs, 0)) <
               0 &&
           errno == EINTR) {
    }
    const bool whole = n == static_cast<ssize_t>(bytes);
    runs = bytes = 0;
    return whole;
  };
  for (std::size_t k = 0; k < seg_len_;) {
    if (seg_failed_ != 0 && flags_[k] != done_flag) {
      ++k;
      continue;
    }
    std::size_t end = seg_failed_ == 0 ? seg_len_ : k + 1;
    while (end < seg_len_ && flags_[end] == done_flag) ++end;
    const std::size_t run = (end - k) * size;
    local[runs] = {.iov_base = results_ + k * size, .iov_len = run};
    remote[runs] = {.iov_base = target_.direct + (seg_begin_ + k) * size, .iov_len = run};
    ++runs;
    bytes += run;
    if (runs == most && !write_runs()) return false;
    k = end;
  }
  return runs == 0 || write_runs();
}

void remote_channel::flush() noexcept {
  if (seg_len_ == 0) return;
  check_descriptors();
  const std::size_t size = target_.fixed_size;
  bool in_place = size == 0;
  if (!in_place && target_.direct != nullptr && !stored_) {
    in_place = write_direct();
    if (!in_place) {
      stored_ = true;
      slot_->stored.store(1, std::memory_order_relaxed);
    }
  }
  if (stored_) {
    // These results are in the store, not where the call keeps them.
    std::replace(flags_, flags_ + seg_len_, done_flag, done_in_store_flag);
    flags_dirty_ = true;
  }
  const bool written = (in_place || write_at(target_.fd, results_, seg_len_ * size,
                                             target_.results_at + seg_begin_ * size)) &&
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
