// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/map_job.hpp>
#include <polymap/plan.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace polymap::detail {

class chunk_sizer;

/// The persistent pool behind the threads backend.
///
/// Fork-join: the caller writes one index range per participant, opens a gate and wakes the
/// workers, which spin for a bounded time between calls before they sleep on a futex. Each
/// participant takes chunks from the front of its own range (sized by `chunk_sizer`) and,
/// when it runs dry, steals the back half of another's. The caller takes part as worker 0
/// unless the call binds or prioritises its workers, which would otherwise change the
/// caller's own thread. One call runs at a time; a call that finds the pool busy runs
/// elsewhere (`try_run` returns false), so that no call ever waits for another.
/// Threads beyond the first one per usable CPU (grown for a call that asked for more workers)
/// sleep on a futex word of their own, and only calls that need them wake them: one call
/// with a thousand workers leaves later calls as cheap as before.
/// Thread safety: `try_run` may be called from any thread.
class thread_pool {
 public:
  /// The process-wide pool, started on first use with one thread per usable CPU but one,
  /// and never destroyed. A child forked from the program starts a pool of its own at its
  /// first call: the parent's threads are not in it.
  static thread_pool& instance();
  /// The pool of the calls at nice value `nice` that must not run on instance() (see
  /// keeps_nice()): its threads take that nice at their first call and keep it. Started on
  /// first use, one per nice value, and never destroyed, as instance() is.
  static thread_pool& at_nice(int nice);
  /// Whether a pool thread raised to `nice` could not come back down to the nice of the
  /// calling thread (that of the threads it starts): the process lacks CAP_SYS_NICE and its
  /// RLIMIT_NICE does not reach that far, as for most users. Such calls go to at_nice(), so
  /// that no later call of instance() runs at a nice it did not ask for.
  [[nodiscard]] static bool keeps_nice(int nice) noexcept;

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  /// Never destroyed: its threads end with the process (or, in a forked child, were never
  /// there).
  ~thread_pool() = delete;

  /// Runs items [job.begin, job.end) on `participants` workers.
  /// @return false, having run nothing, when another call holds the pool
  /// @throws whatever escaped a worker's chunk (item failures do not: they are recorded)
  bool try_run(const map_job& job, std::size_t participants, run_report* report);

  /// Median time of an empty fork-join over two workers, measured at start. A figure that
  /// a busy machine inflated then (over 200 us, where an idle one takes a few) is measured
  /// again, at most every 5 s, and the lowest kept: otherwise `automatic` would run every
  /// call of up to some ms of work serially for the whole life of the process.
  /// Thread safety: any thread.
  [[nodiscard]] double fork_join_seconds() noexcept;

  /// Takes `seconds` as the measured fork-join, due to be measured again (tests).
  void assume_fork_join(double seconds) noexcept;


 private:
  struct slot;
  struct worker;

  thread_pool();
  void grow(std::size_t threads);
  void worker_main(worker& self, std::atomic<std::uint32_t>& word, std::atomic<int>& sleepers,
                   std::uint32_t seen);
  [[nodiscard]] bool join(std::uint32_t epoch) noexcept;
  void leave() noexcept;
  void work(std::size_t slot_index);
  void run_chunk(chunk_sizer& sizer, std::size_t begin, std::size_t end, worker_context& ctx);
  [[nodiscard]] bool claim_own(std::size_t s, std::size_t chunk, std::size_t& b,
                               std::size_t& e) noexcept;
  [[nodiscard]] bool steal(std::size_t thief) noexcept;
  void apply_settings(worker& self, std::size_t slot_index);
  void wait_done(bool closed);
  void signal_done() noexcept;
  /// The median of the rounds that ran; nothing when another call held the pool.
  std::optional<double> measure_fork_join();

  std::mutex run_mutex_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::unique_ptr<slot[]> slots_;
  std::size_t slot_capacity_ = 0;

  // One call's description, written by the caller before it opens the gate.
  const map_job* job_ = nullptr;
  std::size_t participants_ = 0;
  bool caller_in_ = true;
  std::vector<worker_report> reports_;
  std::atomic<std::size_t> next_{0};  // ascending mode: next unclaimed index
  std::mutex error_mutex_;
  std::exception_ptr error_;

  // gate_: epoch << 32 | closed bit | participants inside.
  alignas(64) std::atomic<std::uint64_t> gate_{0};
  alignas(64) std::atomic<std::uint32_t> epoch_{0};
  std::atomic<int> sleepers_{0};
  // The threads past `core_threads_` wait on this word instead of epoch_.
  alignas(64) std::atomic<std::uint32_t> extra_epoch_{0};
  std::atomic<int> extra_sleepers_{0};
  std::size_t core_threads_ = 0;
  alignas(64) std::atomic<std::uint32_t> done_word_{0};
  std::atomic<std::size_t> finished_{0};
  std::atomic<bool> caller_sleeping_{false};

  std::atomic<double> fork_join_seconds_{0};
  std::atomic<std::int64_t> next_measure_ns_{0};  // steady clock: when it may be measured again
};

}  // namespace polymap::detail
