// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <polymap/detail/remote.hpp>

namespace polymap::detail {

/// What a worker process tells its caller about how it was placed.
struct placement {
  std::atomic<int> bound{0};         ///< 1: bound as asked
  std::atomic<int> nice_applied{0};  ///< 1: the nice value asked for is in effect
  std::atomic<int> nice{0};          ///< the nice value read back
};

/// The head of the memory a call shares with its worker processes.
struct shared_control {
  alignas(64) std::atomic<std::size_t> next{0};  ///< first item nobody has claimed
  std::size_t end = 0;                           ///< one past the last item
  alignas(64) std::atomic<bool> stop{false};     ///< claim nothing more
};

/// Memory shared between a call and its worker processes: a memfd (or, where
/// there is none, anonymous memory) mapped MAP_SHARED before the first fork and
/// inherited through it. It has no name that another process could guess or
/// open, and it is gone once the last process that maps it unmaps it or dies.
/// Layout: control, one slot and placement per worker, a done flag per item,
/// then, from a page boundary, the fixed-size results.
/// Thread safety: the fields are atomics or written before the fork.
class shared_region {
 public:
  /// @throws std::system_error when the mapping fails
  shared_region(std::size_t items, std::size_t workers, std::size_t fixed_size);
  ~shared_region();
  shared_region(const shared_region&) = delete;
  shared_region& operator=(const shared_region&) = delete;

  [[nodiscard]] shared_control& control() const noexcept { return *control_; }
  [[nodiscard]] remote_slot& slot(std::size_t worker) const noexcept { return slots_[worker]; }
  [[nodiscard]] placement& place(std::size_t worker) const noexcept { return places_[worker]; }
  [[nodiscard]] std::uint8_t* done_flags() const noexcept { return done_; }
  [[nodiscard]] std::byte* fixed() const noexcept { return fixed_; }

  /// In a worker, before it runs items [b, e): maps in the pages of their done
  /// flags and results in one call, instead of a page fault at each first write.
  void prepare(std::size_t b, std::size_t e) const noexcept;
  /// In the caller: copies the results of items [b, e) to `to + b * fixed_size`,
  /// read from the memfd, so that the caller never maps those pages itself.
  void copy_results(std::size_t b, std::size_t e, std::byte* to) const noexcept;

 private:
  void* base_ = nullptr;
  std::size_t bytes_ = 0;
  int fd_ = -1;  ///< the memfd, or -1 for anonymous memory
  std::size_t fixed_size_ = 0;
  std::size_t fixed_at_ = 0;
  shared_control* control_ = nullptr;
  remote_slot* slots_ = nullptr;
  placement* places_ = nullptr;
  std::uint8_t* done_ = nullptr;
  std::byte* fixed_ = nullptr;
};

}  // namespace polymap::detail
