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
/// short enough that a cancel is prompt and a thief finds something left to steal. A
/// backend whose chunks cost more to claim and close asks for a longer target.
/// With a known per-item cost the size is set from it at the start; otherwise it starts at
/// one item. Without a cost, and with one once a chunk took over four times the target (the
/// cost was misjudged, changed along the items, or the worker lost its core for a while), the
/// size follows measured times: set so that the last chunk would have taken the target,
/// growing at most fourfold per chunk. So a chunk slowed by a preemption shrinks the next
/// ones only until chunks are fast again. A size the caller chose (options::chunk) stays.
class chunk_sizer {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr double default_target = 100e-6;

  explicit chunk_sizer(const map_job& job, double target = default_target) noexcept
      : target_(target), max_(job.max_chunk) {
    if (job.opts->chunk != 0) {
      size_ = job.opts->chunk;
      chosen_ = true;
    } else if (job.seconds_per_item > 0) {
      size_ = static_cast<std::size_t>(std::clamp(target_ / job.seconds_per_item, 1.0, 1e12));
    } else {
      adaptive_ = true;
    }
    if (max_ != 0) size_ = std::min(size_, max_);
  }

  /// Whether the chunk size still follows measured times.
  [[nodiscard]] bool adaptive() const noexcept { return adaptive_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

  /// Runs chunk [b, e) of `job` on worker `w`, times it, and adapts the next size. The
  /// time also feeds the function's cost history (worker_context::busy_*).
  void run(const map_job& job, std::size_t b, std::size_t e, worker_context& w) {
    const auto start = clock::now();
    job.run_chunk(job.ctx, b, e, w);
    const auto took = clock::now() - start;
    w.busy_seconds += std::chrono::duration<double>(took).count();
    w.busy_items += e - b;
    if (adaptive_ || (!chosen_ && took > 4 * std::chrono::duration<double>(target_))) {
      measured(e - b, took);
      adaptive_ = true;
    }
  }

  /// Runs items [b, e) of `job` on worker `w`, chunk after chunk of this sizer's sizes, with
  /// a stop check before each: a cancel or a fail_fast stop is seen within about a chunk.
  void run_all(const map_job& job, std::size_t b, std::size_t e, worker_context& w) {
    while (b < e && !job.state->stopping()) {
      const std::size_t end = b + std::min(e - b, size_);
      run(job, b, end, w);
      b = end;
    }
  }

  void measured(std::size_t items, clock::duration took) noexcept {
    const double seconds = std::chrono::duration<double>(took).count();
    const double wanted = seconds > 0 ? static_cast<double>(items) * target_ / seconds
                                      : static_cast<double>(items) * 4.0;
    const double grown = std::min(wanted, static_cast<double>(size_) * 4.0);
    size_ = static_cast<std::size_t>(std::max(1.0, grown));
    if (max_ != 0) size_ = std::min(size_, max_);
  }

 private:
  double target_;
  std::size_t size_ = 1;
  std::size_t max_;
  bool adaptive_ = false;
  bool chosen_ = false;  ///< options::chunk: never changed
};

}  // namespace polymap::detail
