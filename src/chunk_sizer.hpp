// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/map_job.hpp>
#include <polymap/options.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>

namespace polymap::detail {

/// Chooses how many items a worker claims at once. A chunk should take about `target`
/// seconds: long enough that claiming it (a lock, a clock read) is noise next to the work,
/// short enough that a cancel is prompt and a thief finds something left to steal.
/// With a known per-item cost the size is fixed from the start; otherwise it starts at one
/// item and grows at most fourfold per chunk towards the target, from measured times.
class chunk_sizer {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr double target = 100e-6;

  explicit chunk_sizer(const map_job& job) noexcept : max_(job.max_chunk) {
    if (job.opts->chunk != 0) {
      size_ = job.opts->chunk;
    } else if (job.seconds_per_item > 0) {
      size_ = static_cast<std::size_t>(std::clamp(target / job.seconds_per_item, 1.0, 1e12));
    } else {
      adaptive_ = true;
    }
    if (max_ != 0) size_ = std::min(size_, max_);
  }

  /// Whether the caller should time its chunks and call `measured()`.
  [[nodiscard]] bool adaptive() const noexcept { return adaptive_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  void measured(std::size_t items, clock::duration took) noexcept {
    const double seconds = std::chrono::duration<double>(took).count();
    const double wanted = seconds > 0 ? static_cast<double>(items) * target / seconds
                                      : static_cast<double>(items) * 4.0;
    const double grown = std::min(wanted, static_cast<double>(size_) * 4.0);
    size_ = static_cast<std::size_t>(std::max(1.0, grown));
    if (max_ != 0) size_ = std::min(size_, max_);
  }

 private:
  std::size_t size_ = 1;
  std::size_t max_;
  bool adaptive_ = false;
};

}  // namespace polymap::detail
