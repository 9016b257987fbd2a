// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>

#include <ctime>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <polymap/detail/map_job.hpp>
#include <polymap/plan.hpp>
#include <string>
#include <vector>

#include "backends/processes/fork_exclusion.hpp"
#include "backends/processes/shared_region.hpp"
#include "backends/processes/signal_guard.hpp"

namespace polymap::detail {

/// Runs one call on worker processes and watches them: forks the workers, reads
/// what they send, replaces a worker that died (its item failed or is retried,
/// the rest of its chunk goes to the replacement), kills a worker whose item
/// ran past the timeout, and stops them all when the call is cancelled. Nothing
/// outlives it: its destructor kills and reaps every worker still there. Thread
/// safety: one thread (the caller's).
class supervisor {
 public:
  supervisor(const map_job& job, std::size_t workers);
  ~supervisor();
  supervisor(const supervisor&) = delete;
  supervisor& operator=(const supervisor&) = delete;

  /// Runs every item, or until the call stops.
  /// @throws std::system_error when no worker process can be started
  void run(run_report* report);

 private:
  using clock = std::chrono::steady_clock;

  /// An eventfd that a cancel from another thread writes to (run_state::set_cancel_wake),
  /// so that the watcher, asleep in ppoll, sees it at once. Without one (eventfd failed)
  /// the watcher sees a cancel at its next wake-up, within max_wait.
  class cancel_wake {
   public:
    explicit cancel_wake(run_state& state) noexcept;
    ~cancel_wake();
    cancel_wake(const cancel_wake&) = delete;
    cancel_wake& operator=(const cancel_wake&) = delete;
    [[nodiscard]] int fd() const noexcept { return fd_; }
    /// Empties the counter after a wake-up.
    void drain() const noexcept;

   private:
    run_state& state_;
    int fd_;
  };

  struct worker {
    pid_t pid = -1;
    int pidfd = -1;
    int pipe = -1;
    std::size_t slot = 0;
    std::string inbox;                         // bytes received, not yet a whole message
    std::uint64_t received = 0;                // bytes its pipe brought, all told
    std::optional<failure_kind> killed;        // why we killed it: timeout, or none for a cancel
    bool cancelled = false;                    // killed because the call was cancelled
    bool idle = false;                         // done, its results all in the store
    bool pipe_closed = false;                  // its pipe is at EOF: it is ending
    std::optional<clock::time_point> kill_at;  // SIGKILL after the TERM's grace
    std::optional<index_range> first;          // what it was forked to run first
    clock::time_point forked{};                // when: see start_limit()
    bool hung_at_start = false;                // killed for passing start_limit() unready
    // Items whose failure it reported (or whose result did not decode): their outcome is
    // recorded, whatever its slot still shows (see settle).
    std::vector<std::size_t> failed;
  };
  struct retry {
    std::size_t index;
    clock::time_point due;
  };

  void spawn(std::size_t slot, std::optional<index_range> first);
  void read_messages(worker& w);
  void handle_messages(worker& w);
  /// Waits for a worker that ended, settles its items and frees its slot.
  void reap(worker& w);
  /// What an ended worker leaves: its ring, its descendants, the item it died in and
  /// the rest of its chunk. @throws std::system_error when it could not write the store
  void settle(worker& w, pid_t got, int status);
  /// Counts workers that ended before they were set up; too many in a row is an error.
  /// @throws polymap::error
  void count_stillborn(const worker& w, pid_t got, int status);
  /// A worker ended because an item of its chunk from `b` closed or replaced its
  /// descriptors (remote_channel::check_descriptors); `done` flags the chunk's finished
  /// items. The one unfinished item fails; several run again one by one to find it.
  void channel_lost(std::size_t b, const std::vector<std::uint8_t>& done);
  /// Closes what the caller held of a reaped worker and frees its slot.
  void forget(worker& w) noexcept;
  void item_died(std::size_t index, failure_kind kind, int signal, int exit_code,
                 std::string what = {});
  /// Item `index` ran, but its result could not be delivered: decoding it threw `error`.
  void undecodable(std::size_t index, const std::exception_ptr& error);
  void check_timeouts(clock::time_point now);
  void terminate(worker& w, std::optional<failure_kind> why, clock::time_point now);
  void kill_all() noexcept;
  void update_progress();
  void finish();
  /// Once every worker is done: requeues the items that neither finished nor
  /// failed. A worker killed from outside between claiming a chunk and showing
  /// it in its slot leaves such items, and only this sweep finds them.
  /// @return whether there were any
  /// @throws std::system_error when the store cannot be read
  bool requeue_lost();
  [[nodiscard]] bool claims_left() const noexcept;
  /// Items the workers counted as done.
  [[nodiscard]] std::size_t staged_done() const noexcept;
  [[nodiscard]] bool all_staged_done() const noexcept;
  /// How long the watcher may sleep: until the next timeout, kill or retry is
  /// due, and at most max_wait.
  [[nodiscard]] timespec wait_time(clock::time_point now) const;
  /// The timeout in steady-clock nanoseconds, as workers stamp their items.
  [[nodiscard]] std::int64_t timeout_ns() const noexcept;
  /// How long a worker of a call with a timeout may take to become ready for its first
  /// item: the timeout, and at least 2 s (a fork and a start on a busy machine). One that
  /// takes longer hangs (a fork handler waiting for a lock that the fork left held).
  [[nodiscard]] clock::duration start_limit() const noexcept;

  const map_job& job_;
  run_state& state_;
  const std::size_t workers_;
  const double timeout_;
  signal_guard guard_;
  shared_region shared_;
  fork_exclusion private_results_;  // the call's result buffer, kept out of the workers
  std::vector<worker> live_;
  std::vector<std::size_t> free_slots_;
  std::vector<index_range> pending_;         // items of dead workers, for the next worker
  std::vector<retry> retries_;               // crashed items waiting for their backoff
  std::map<std::size_t, unsigned> crashes_;  // attempts of items that killed a worker
  std::vector<std::size_t> failed_;          // items that failed for good
  std::size_t progress_seen_ = 0;
  std::size_t spawned_ = 0;
  std::size_t stillborn_ = 0;  // workers in a row that ended before they were set up
  bool stop_sent_ = false;
  bool finished_ = false;  // results gathered (see finish())
  const pid_t self_;
  cancel_wake wake_;
};

}  // namespace polymap::detail
