// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>
#include <polymap/error.hpp>

#include <atomic>
#include <cstddef>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace polymap::detail {

class remote_channel;

/// A lock for sections of a few dozen instructions that two workers may reach at the same
/// moment (the end of a call): a std::mutex would send the loser to sleep in the kernel,
/// which costs more than the whole section.
class spin_lock {
 public:
  void lock() noexcept {
    for (unsigned spins = 0; flag_.exchange(true, std::memory_order_acquire); ++spins) {
      if (spins > 64) std::this_thread::yield();
    }
  }
  void unlock() noexcept { flag_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> flag_{false};
};

/// A half-open range of item indices.
struct index_range {
  std::size_t begin = 0;
  std::size_t end = 0;
};

/// The shared state of one call: stop flag, counters, failures and the ranges that ran.
/// Thread safety: the atomics are shared; the rest is guarded by `mutex_`.
class run_state {
 public:
  run_state(const run_state&) = delete;
  run_state& operator=(const run_state&) = delete;
  explicit run_state(std::size_t total) noexcept : total_(total) {}

  [[nodiscard]] std::size_t total() const noexcept { return total_; }

  /// True once the call must not start more items (cancel, or fail_fast after a failure).
  [[nodiscard]] bool stopping() const noexcept { return stop_.load(std::memory_order_relaxed); }
  /// Asks every worker to stop claiming items.
  void request_stop() noexcept { stop_.store(true, std::memory_order_seq_cst); }
  /// Marks the call cancelled (by the user, not by a failure) and stops it, and wakes the
  /// backend that asked to be woken (set_cancel_wake).
  void cancel() noexcept;
  /// Makes a cancel write to `fd`, an eventfd that a backend waiting in poll() watches, so
  /// that it sees a cancel from another thread at once; -1 for none. Once this returns with
  /// -1, no cancel writes to the earlier fd any more: it may be closed.
  void set_cancel_wake(int fd) noexcept {
    const std::lock_guard lock(wake_mutex_);
    wake_fd_ = fd;
  }
  [[nodiscard]] bool cancelled() const noexcept {
    return cancelled_.load(std::memory_order_relaxed);
  }
  /// Cancels and returns once no item can start any more: chunks already running finish
  /// first, except the caller's own when it calls from inside an item.
  void cancel_and_wait() noexcept;

  /// Enters a chunk; false (and not entered) when the call is stopping. Paired with
  /// `leave()`. The seq_cst pair with `request_stop()` is a Dekker handshake: either the
  /// worker sees the stop, or `cancel_and_wait()` sees the worker and waits for it.
  [[nodiscard]] bool enter() noexcept {
    active_.fetch_add(1, std::memory_order_seq_cst);
    if (stop_.load(std::memory_order_seq_cst)) {
      active_.fetch_sub(1, std::memory_order_release);
      return false;
    }
    return true;
  }
  void leave() noexcept { active_.fetch_sub(1, std::memory_order_release); }

  void add_done(std::size_t n) noexcept { done_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::size_t done() const noexcept { return done_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t failed() const noexcept {
    return failed_.load(std::memory_order_relaxed);
  }

  void add_failure(item_failure failure) {
    {
      std::lock_guard lock(mutex_);
      failures_.push_back(std::move(failure));
    }
    failed_.fetch_add(1, std::memory_order_relaxed);
  }

  /// Records what one worker did: the ranges whose items finished (succeeded or failed,
  /// for partial results), and the time it spent inside chunks on how many items.
  void add_worker(index_range first, const std::vector<index_range>& more, double busy_seconds,
                  std::size_t busy_items) {
    std::lock_guard lock(mutex_);
    if (first.begin != first.end) ranges_.push_back(first);
    ranges_.insert(ranges_.end(), more.begin(), more.end());
    busy_seconds_ += busy_seconds;
    busy_items_ += busy_items;
  }

  /// Measured seconds per item inside chunks (no dispatch, no waiting); 0 when unknown.
  [[nodiscard]] double busy_seconds_per_item() {
    std::lock_guard lock(mutex_);
    return busy_items_ == 0 ? 0 : busy_seconds_ / static_cast<double>(busy_items_);
  }

  [[nodiscard]] std::vector<item_failure> take_failures() {
    std::lock_guard lock(mutex_);
    return std::exchange(failures_, {});
  }
  [[nodiscard]] std::vector<index_range> take_ranges() {
    std::lock_guard lock(mutex_);
    return std::exchange(ranges_, {});
  }
  [[nodiscard]] bool has_failures() const noexcept { return failed() != 0; }

  /// Copies of the failures and finished ranges so far, which stay (the mpi backend's rank
  /// 0 sends them to every rank).
  [[nodiscard]] std::pair<std::vector<item_failure>, std::vector<index_range>> outcome() {
    std::lock_guard lock(mutex_);
    return {failures_, ranges_};
  }
  /// Makes the call's outcome the one given, in place of this state's own: another
  /// process's account of the whole call (the mpi backend's rank 0), after every item ran.
  void set_outcome(std::vector<item_failure> failures, std::vector<index_range> ranges,
                   std::size_t done) {
    std::lock_guard lock(mutex_);
    failed_.store(failures.size(), std::memory_order_relaxed);
    done_.store(done, std::memory_order_relaxed);
    failures_ = std::move(failures);
    ranges_ = std::move(ranges);
  }

  /// Marks a call whose results another process keeps (the mpi backend's rank 0, under
  /// options::results rank0): it returns none here. Set and read by the calling thread.
  void set_results_elsewhere() noexcept { results_elsewhere_ = true; }
  [[nodiscard]] bool results_elsewhere() const noexcept { return results_elsewhere_; }

  /// The items a worker runs between its first two looks for a stop (see run_items): one,
  /// unless the function's cost is known from earlier calls.
  [[nodiscard]] std::size_t first_block() const noexcept { return first_block_; }
  void set_first_block(std::size_t items) noexcept { first_block_ = items < 1 ? 1 : items; }

  /// In a worker process, right after the fork: forgets the caller's chunks, counts and
  /// failures, which live on in the caller, so that this copy describes the worker alone.
  void forget_caller() noexcept {
    active_.store(0, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    failed_.store(0, std::memory_order_relaxed);
    failures_.clear();
    ranges_.clear();
    busy_seconds_ = 0;
    busy_items_ = 0;
  }

 private:
  std::size_t total_;
  std::size_t first_block_ = 1;
  bool results_elsewhere_ = false;
  // The stop flags on a line of their own, written once a call: workers look at them before
  // every item of small blocks (run_items), and a line that others write would miss each time.
  alignas(64) std::atomic<bool> stop_{false};
  std::atomic<bool> cancelled_{false};
  // One cache line for the counters every chunk writes (enter, done count, leave): a
  // worker's chunk moves one line between cores, not three.
  alignas(64) std::atomic<int> active_{0};
  std::atomic<std::size_t> done_{0};
  std::atomic<std::size_t> failed_{0};
  alignas(64) spin_lock mutex_;
  std::vector<item_failure> failures_;
  std::vector<index_range> ranges_;
  double busy_seconds_ = 0;
  std::size_t busy_items_ = 0;
  std::mutex wake_mutex_;  // wake_fd_: a cancel writes while it holds it, so it is never late
  int wake_fd_ = -1;
};

/// What one worker knows while it runs chunks of a call.
struct worker_context {
  std::size_t worker = 0;
  backend_kind backend = backend_kind::serial;
  run_state* state = nullptr;
  unsigned retries = 0;
  bool fail_fast = true;
  index_range first{};              ///< the first finished range (no allocation for one)
  std::vector<index_range> ranges;  ///< further finished ranges; flushed at the end
  double busy_seconds = 0;          ///< time spent in timed chunks
  std::size_t busy_items = 0;       ///< items of those chunks
  remote_channel* remote = nullptr; ///< in a worker process: where results go
  std::size_t block = 0;            ///< items between two looks for a stop (run_items);
                                    ///< 0: the call's first_block()
  /// In a worker process: the caller's stop flag in shared memory, which run_items looks
  /// at beside the worker's own state (another worker's fail_fast failure).
  const std::atomic<bool>* caller_stop = nullptr;

  /// Whether the call this worker runs is stopping.
  [[nodiscard]] bool stopping() const noexcept {
    return state->stopping() ||
           (caller_stop != nullptr && caller_stop->load(std::memory_order_relaxed));
  }

  void note_range(std::size_t begin, std::size_t end) {
    if (begin == end) return;
    if (first.begin == first.end) {
      first = {begin, end};
    } else if (ranges.empty() && first.end == begin) {
      first.end = end;
    } else if (!ranges.empty() && ranges.back().end == begin) {
      ranges.back().end = end;
    } else {
      ranges.push_back({begin, end});
    }
  }
  /// Hands what this worker did to `state`: the time it spent in chunks and, when
  /// `with_ranges`, the ranges it finished (they serve partial results, which only a
  /// failed call returns). Clears itself, keeping its capacity.
  void flush(bool with_ranges = true) {
    if (!with_ranges) {
      first = {};
      ranges.clear();
    }
    if (first.begin != first.end || !ranges.empty() || busy_items != 0) {
      state->add_worker(first, ranges, busy_seconds, busy_items);
    }
    first = {};
    ranges.clear();
    busy_seconds = 0;
    busy_items = 0;
  }
};

}  // namespace polymap::detail
