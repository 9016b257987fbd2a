// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace polymap::journal_detail {
class database;
class statement;
class private_copy;
}

namespace polymap {

/// A journal that cannot be used: missing, corrupt, locked past the timeout, read-only,
/// written by a newer polymap, on a network file system, or on a full disk. The message
/// names the file and the cause.
class journal_error : public error {
 public:
  using error::error;
};

/// Where an item of a journal is. The numbers are stored in the file: never renumber.
enum class item_state : int {
  pending = 0,      ///< not run yet
  running = 1,      ///< claimed by a runner that has not recorded its end
  done = 2,         ///< its last attempt exited 0
  failed = 3,       ///< every attempt failed; run again only with --retry-failed
  interrupted = 4,  ///< stopped by a signal to its runner, or its runner died; run again
};

/// The name of a state as `polymap status` prints it.
[[nodiscard]] const char* state_name(item_state state) noexcept;

/// An item as a runner knows it before it is in the journal.
struct journal_item {
  std::string key;      ///< identity: command template and arguments, bytes as given
  std::int64_t seq = 0; ///< 1-based input order
  std::string command;  ///< the command line as shown by status
};

/// An item this runner has claimed.
struct claimed_item {
  std::int64_t id = 0;
  std::string key;
  int failures = 0;  ///< its failed attempts recorded by earlier runs (--retries counts them)
};

/// What a runner records about an item it had claimed.
struct item_end {
  std::int64_t id = 0;
  /// done, failed, interrupted, or pending to give it back; running records an attempt that
  /// failed and waits for its retry, which the item keeps
  item_state state = item_state::done;
  int attempts = 0;                     ///< attempts made by this runner since it last recorded
  int failures = 0;                     ///< of which failed (ended on their own, not stopped)
  int worker = 0;                       ///< the job slot that ran it (1-based)
  double start = 0;                     ///< Unix time of the first attempt's start
  double end = 0;                       ///< Unix time of the last attempt's end
  int exit_code = 0;
  int signal = 0;
  std::string reason;       ///< "timeout", "cannot run: ...", empty when it exited
  std::string stderr_tail;  ///< the end of a failed item's stderr
};

/// A runner registered in the journal.
struct journal_runner {
  std::int64_t id = 0;
  std::string host;
  std::int64_t pid = 0;
  double started = 0;
  double heartbeat = 0;
  bool alive = false;  ///< still running: lease not lapsed, and on this host its pid is its own
  std::int64_t running = 0;
};

/// An item as `polymap status` shows it.
struct journal_row {
  std::int64_t id = 0;   ///< the item's id in the journal (its --results folder)
  std::int64_t seq = 0;  ///< its position in the input of the run that added it
  std::string command;
  item_state state = item_state::pending;
  int attempts = 0;
  int exit_code = 0;
  int signal = 0;
  double duration = 0;
  std::string reason;
  std::string stderr_tail;
};

/// Counts, failures, slowest items and runners of a journal.
struct journal_summary {
  std::array<std::int64_t, 5> counts{};  ///< indexed by item_state, as the file has them
  /// Of the `running` items, those whose runner is gone (killed, or its machine stopped)
  /// and not yet reclaimed: nothing runs them; the next runner of the batch runs them again.
  std::int64_t runner_gone = 0;
  std::vector<journal_row> failures;     ///< failed items, in input order
  std::vector<journal_row> slowest;      ///< done items, longest first
  std::vector<journal_runner> runners;   ///< live runners first

  [[nodiscard]] std::int64_t count(item_state state) const noexcept {
    return counts[static_cast<std::size_t>(state)];
  }
  [[nodiscard]] std::int64_t total() const noexcept {
    std::int64_t sum = 0;
    for (std::int64_t c : counts) sum += c;
    return sum;
  }
  /// Items that a runner still has to run or record.
  [[nodiscard]] std::int64_t unfinished() const noexcept {
    return count(item_state::pending) + count(item_state::running) +
           count(item_state::interrupted);
  }
};

/// How to open a journal.
struct journal_options {
  double lock_timeout = 10;  ///< seconds a write waits for another runner's lock
  bool create = true;        ///< create the file when missing (status and watch do not)
  /// Only read it (status and watch): any journal file the user may read will do, in a
  /// directory they may not write or on a read-only file system too, and nothing is written
  /// or created beside it. Implies `create = false`; the writing operations then fail.
  bool read_only = false;
};

/// The SQLite journal of `polymap run`: one row per item, claimed in transactions by one
/// or more runners on one host (or several hosts on a local file system shared via Slurm
/// array tasks), each renewing a lease.
///
/// Exactly-once recording: an item's end is written by an UPDATE that only matches while
/// the item is still `running` under this runner, in the same transaction as any claims,
/// so a completion is recorded once or not at all. A runner that dies before committing an
/// end leaves the item `running`; reclaim_dead() turns it into `interrupted` and it runs
/// again: execution is at least once, recording exactly once.
///
/// Thread safety: none; one journal object per thread (several processes may share a file).
class journal {
 public:
  /// The format this version writes; a file with a higher one is refused.
  static constexpr int format_version = 1;
  /// A runner whose heartbeat is older than this is dead, wherever it ran.
  static constexpr double lease_seconds = 60;

  /// Opens (or creates, mode 0600) the journal at `path`, in WAL mode.
  /// @throws journal_error when the file is on a network file system, is not a polymap
  ///   journal or is corrupt, is from a newer polymap, is read-only (unless opened
  ///   `read_only`), stays locked past
  ///   `options.lock_timeout`, or cannot be created
  journal(std::string path, const journal_options& options = {});
  journal(const journal&) = delete;
  journal& operator=(const journal&) = delete;
  ~journal();

  /// Registers this process as a runner. @throws journal_error
  void register_runner();
  /// This runner's id (0 before register_runner()).
  [[nodiscard]] std::int64_t runner_id() const noexcept { return runner_; }

  /// Adds the items not in the journal yet and remembers all of them as this runner's
  /// batch: claims only ever return items of the batch. @throws journal_error
  void add_items(const std::vector<journal_item>& items);
  /// Turns the batch's failed items back into pending ones (--retry-failed).
  /// @return how many @throws journal_error
  std::int64_t retry_failed();
  /// Marks runners that died (lease lapsed; on the same host also: pid gone, or reused by a
  /// process that started after the runner) and makes their running items interrupted, so
  /// that they run again. @return items reclaimed
  /// @throws journal_error
  std::int64_t reclaim_dead();
  /// One transaction: records `ends`, then claims up to `claim` pending or interrupted
  /// items of the batch in input order. An end whose item is no longer this runner's
  /// (reclaimed after a lapsed lease) is not recorded. @throws journal_error
  std::vector<claimed_item> commit(const std::vector<item_end>& ends, std::size_t claim);
  /// Renews this runner's lease, and makes it live again if others had taken it for dead.
  /// @throws journal_error
  void renew_lease();
  /// Marks this runner as finished. Never throws: called on the way out.
  void finish_runner() noexcept;
  /// Items of the batch not done or failed. @throws journal_error
  [[nodiscard]] std::int64_t unfinished();
  /// Failed items of the batch. @throws journal_error
  [[nodiscard]] std::int64_t failed();
  /// Items of other batches (other commands, other arguments) that are pending, failed or
  /// interrupted. @throws journal_error
  [[nodiscard]] std::int64_t not_done_elsewhere();

  /// Counts, up to `top` failures and slowest items, and the runners: one consistent
  /// snapshot, the latest one for a journal opened `read_only`. @throws journal_error
  [[nodiscard]] journal_summary summary(std::size_t top);
  /// Each item's key and state, in one snapshot (what a --dry-run of a rerun would run).
  [[nodiscard]] std::unordered_map<std::string, item_state> states();

  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  template <class Fn>
  auto guarded(const char* doing, Fn&& fn);
  /// How a read-only journal is read (see open_reader()).
  enum class read_mode { shared, immutable, copy };
  /// Runs `fn` on a consistent snapshot of a read-only journal, opening it again as needed.
  template <class Fn>
  auto read_snapshot(const char* doing, Fn&& fn);
  void open_reader(bool copy);
  journal_summary read_summary(std::size_t top);
  /// The open file's format version (0: none yet), refused when newer than this polymap's.
  std::int64_t checked_format();
  void create_schema();
  void check_schema();
  /// Gives a journal of format 1 written before runners had `start_ticks`, or items
  /// `failures`, those columns.
  void add_columns();
  /// The runners' `start_ticks` in a query, NULL in a journal without them.
  std::string start_ticks_column();
  /// Items of the batch whose state is in `states`, an SQL list such as "(3)".
  std::int64_t count_in_batch(const char* states);

  std::string path_;  ///< as given: what messages name
  std::string file_;  ///< its file, links resolved: where SQLite puts the -wal and -shm
  double lock_timeout_;
  bool read_only_ = false;
  read_mode read_mode_ = read_mode::shared;
  std::string opened_state_;  // the files as they were when a reader opened them
  // Before db_: the connection to a copy closes before the copy is removed.
  std::unique_ptr<journal_detail::private_copy> copy_;
  std::unique_ptr<journal_detail::database> db_;
  // commit() runs once per loop of a runner: its statements are prepared once.
  std::unique_ptr<journal_detail::statement> begin_;
  std::unique_ptr<journal_detail::statement> commit_;
  std::unique_ptr<journal_detail::statement> end_;
  std::unique_ptr<journal_detail::statement> take_;
  std::int64_t runner_ = 0;
  bool start_ticks_ = false;  ///< runners have `start_ticks` (see add_columns())
};

/// Whether `path`'s directory is on a network file system (NFS, SMB/CIFS, Ceph, Lustre,
/// GPFS...) on which SQLite's WAL does not work. Best effort: false when unknown.
[[nodiscard]] bool on_network_file_system(const std::string& path) noexcept;

}  // namespace polymap
