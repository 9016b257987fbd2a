// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/runner.hpp"

#include "cli/commands.hpp"

#include <polymap/config.hpp>
#include <polymap/topology.hpp>

#include "cli/run/fd_io.hpp"
#include "cli/run/joblog.hpp"
#include "cli/run/output_writer.hpp"
#include "cli/run/rank_link.hpp"
#include "cli/run/spawn.hpp"
#include "journal/journal.hpp"
#include "mpi_launcher.hpp"
#include "orphan_guard.hpp"
#include "topology/binding.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

namespace polymap::cli::run {

namespace {

constexpr double lease_interval = 10.0;   // seconds between lease renewals (lease: 60 s)
constexpr double progress_interval = 0.2;
/// Seconds with no job running and every start failing for want of a process before an item
/// fails of it (start_later()).
constexpr double spawn_give_up = 60.0;
// Seconds a job that died of SIGTERM, SIGINT or SIGHUP from elsewhere keeps its end and its
// slot waiting for the runner's own stopping signal (see batch_runner::job_exited).
constexpr double foreign_stop_grace = 0.3;
constexpr std::size_t tail_bytes = 2048;  // of a failed item's stderr, kept in the journal
double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double mono_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/// Backoff before retry `attempt` (1 = the first retry): 0.1 s, doubling, at most 10 s.
double backoff(int attempt) { return std::min(10.0, 0.1 * std::pow(2.0, attempt - 1)); }

/// The last `size` bytes of the file `fd`.
std::string read_tail(int fd, std::size_t size) {
  const std::size_t total = file_size(fd);
  const std::size_t tail = std::min(size, total);
  return pread_all(fd, static_cast<std::int64_t>(total - tail), tail);
}

/// The files of an item's --results folder.
constexpr std::array<const char*, 2> results_files = {"stdout", "stderr"};

/// How the temporary file of `dir/name` starts; the writer's pid follows.
std::string temp_prefix(const std::string& name) { return "." + name + ".tmp."; }

/// Writes `data` to `dir/name` through a temporary file and a rename, so that a reader (or
/// a runner killed half-way) never sees half a file. A write that fails (a full disk, a
/// file size limit) removes the temporary file and leaves `dir/name` as it was.
/// @throws std::runtime_error naming the file and the cause
void write_atomically(const std::string& dir, const std::string& name, const std::string& data) {
  const std::string path = dir + "/" + name;
  const std::string tmp = dir + "/" + temp_prefix(name) + std::to_string(getpid());
  const auto fail = [&](int error) {
    unlink(tmp.c_str());
    throw std::runtime_error("cannot write --results file '" + path + "': " + std::strerror(error));
  };
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(errno);
  if (const int error = write_all(fd, data); error != 0) {
    close(fd);
    fail(error);
  }
  // close() is where some file systems (NFS, quotas) report a write that did not fit.
  if (close(fd) != 0) fail(errno);
  if (rename(tmp.c_str(), path.c_str()) != 0) fail(errno);
}

/// Creates `dir` unless it is a directory already. @throws std::runtime_error naming it
void make_dir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) == 0) return;
  const int error = errno;
  struct stat st {};
  if (error == EEXIST && stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return;
  throw std::runtime_error("cannot create --results directory '" + dir + "': " +
                           (error == EEXIST ? std::string("it exists and is not a directory")
                                            : std::string(std::strerror(error))));
}

/// Removes the temporary files that a runner killed while it wrote `dir`'s results left
/// behind. An item's folder has one writer at a time (the journal gives each item to one
/// runner), so any such file there is stale.
void remove_stale_temp_files(const std::string& dir) {
  DIR* entries = opendir(dir.c_str());
  if (entries == nullptr) return;  // the writes that follow say what is wrong with it
  std::vector<std::string> stale;
  while (const dirent* entry = readdir(entries)) {
    const std::string name = entry->d_name;
    for (const char* file : results_files) {
      if (name.rfind(temp_prefix(file), 0) == 0) stale.push_back(dir + "/" + name);
    }
  }
  closedir(entries);
  for (const std::string& path : stale) unlink(path.c_str());
}

/// Keeps an item's output in `dir` (created when missing) as the files `stdout` and
/// `stderr`. @throws std::runtime_error naming the folder or file and the cause
void write_results(const std::string& dir, const std::array<const std::string*, 2>& data) {
  make_dir(dir);
  remove_stale_temp_files(dir);
  for (std::size_t i = 0; i < results_files.size(); ++i) {
    write_atomically(dir, results_files[i], *data[i]);
  }
}

/// Whether polymap's stdout (1) or stderr (2) is a pipe or socket that nobody reads any more
/// (`polymap run ... | head -n 1` once head has exited): poll says POLLERR (a pipe) or
/// POLLHUP (a socket).
bool stream_closed(int stream) {
  pollfd fd{stream, POLLOUT, 0};
  return poll(&fd, 1, 0) == 1 && (fd.revents & (POLLERR | POLLHUP)) != 0;
}

/// Whether a job that ended with `wait_status` ended as a stopping signal (SIGTERM, SIGINT,
/// SIGHUP) ends a job: killed by it, or exiting 128 + its number from a handler of it (a
/// shell's `trap 'exit 143' TERM`, a JVM). Sent by another than the runner, it may be one
/// that the runner gets too (a terminal, Slurm, systemd or a cgroup-wide kill).
bool ended_by_a_stopping_signal(int wait_status) {
  int signal = 0;
  if (WIFSIGNALED(wait_status)) signal = WTERMSIG(wait_status);
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) > 128) {
    signal = WEXITSTATUS(wait_status) - 128;
  }
  return signal == SIGTERM || signal == SIGINT || signal == SIGHUP;
}

/// A number as a person writes it: "0.2", "600" (std::to_string would say 0.200000).
std::string number_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

/// "SIGKILL" for 9; the number where the C library has no name for it.
std::string signal_text(int sig) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = sigabbrev_np(sig)) return std::string("SIG") + name;
#endif
  return std::to_string(sig);
}

/// A command line for a one-line message: control characters (a newline in an item) shown
/// as '?', and a long one cut to about `width` bytes, not inside a UTF-8 character.
std::string one_line(const std::string& command, std::size_t width = 100) {
  std::string line = printable(command);
  if (line.size() <= width) return line;
  std::size_t cut = width - 3;
  while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0) == 0x80) --cut;
  line.resize(cut);
  return line + "...";
}

std::string json_text(const nlohmann::json& j) {
  // Job output is bytes, not always UTF-8: replace what JSON cannot carry.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

enum class item_phase { todo, waiting_retry, running, ended };

struct item_status {
  item_phase phase = item_phase::todo;
  int attempts = 0;             // made by this runner
  int earlier_failures = 0;     // failed attempts that earlier runs recorded in the journal
  int recorded_attempts = 0;    // of `attempts`, those the journal has (failed, then retried)
  double first_start = 0;
  std::size_t order = 0;        // position in start order, for --keep-order
  std::int64_t journal_id = 0;  // 0 without a journal
  std::size_t slot = 0;         // of the last attempt
  int last_exit = 0;            // of the last failed attempt, while it waits for a retry
  int last_signal = 0;
  double last_runtime = 0;
};

/// An item's attempts as the run counts them against --retries: the failed ones of earlier
/// runs (a journal's) and this run's.
int attempts_of(const item_status& st) { return st.earlier_failures + st.attempts; }

struct job {
  bool busy = false;
  bool remote = false;  // served by another rank of an MPI job (rank_link): no pid here
  pid_t pid = -1;
  std::size_t item = 0;
  double start_wall = 0;
  double start_mono = 0;
  double deadline = 0;  // monotonic; 0: no timeout
  double kill_at = 0;   // monotonic; 0: no SIGKILL scheduled
  bool timed_out = false;
  bool stopped = false;  // terminated by the runner: a signal or --halt now
  int out_fd = -1;
  int err_fd = -1;
  // Reaped, but its end waits until release_at (monotonic) for the runner's own stopping
  // signal: it died of one that the runner did not send (see job_exited). Still busy.
  bool held = false;
  int held_status = 0;
  double held_runtime = 0;
  double release_at = 0;
  // Reaped while a write waited (collect_exits()): it ended then, on its own, and the next
  // reap() takes its end. Still busy, but neither signalled nor timed out any more.
  bool exited = false;
  int exit_status = 0;
  double exited_at = 0;  // monotonic
  int spawn_error = 0;   // a remote job that could not start: the errno (with exited)
  std::string remote_out;  // a remote job's output, come with its end (with exited)
  std::string remote_err;
};

/// How an attempt of an item ended, as end_item() records it.
struct item_outcome {
  item_state state = item_state::done;
  int exit_code = 0;
  int signal = 0;
  bool timed_out = false;  // ran past --timeout
  bool started = true;     // false: its command could not be run (the reason says why)
  std::string reason;      // empty when it exited
  double start_wall = 0;   // Unix time
  double runtime = 0;
  int out_fd = -1;  // the captures of its stdout and stderr, handed over; -1: none
  int err_fd = -1;
  bool stdout_dropped = false;  // its captured stdout is not written (see end_item())
  bool attempt_failed = false;  // its last attempt failed (also when it ends interrupted)
};

/// What a line that polymap itself writes on stderr is. That decides what becomes of it when
/// --json's events share stderr's stream (2>&1), where a line of text would break the JSON
/// lines: see batch_runner::say().
enum class line_kind {
  warning,  // "polymap: warning: ..."; a `warning` event among the JSON lines
  error,    // "polymap: ..."; an `error` event among the JSON lines
  summed,   // "polymap: ..."; left out among the JSON lines, whose events say it
};

class batch_runner final : public output_host {
 public:
  batch_runner(const run_options& options, const command_template& command,
               const item_product& items, rank_link* ranks)
      : options_(options), command_(command), items_(items), ranks_(ranks) {}

  int run();

  // output_host
  [[nodiscard]] int wake_fd() const override { return signal_fd_; }
  [[nodiscard]] std::optional<double> wait_until(double progress_at, double now) const override;
  void tend(bool woken, double now) override;
  void warn(const std::string& message) override { say(line_kind::warning, message); }
  void written(output_record& record, int error, int fd) override;

 private:
  void open_journal();
  bool fill_slots(double now);
  void start(std::size_t item, std::size_t slot, double now);
  void take_slot(std::size_t slot, std::size_t item, pid_t pid, double wall, double now);
  /// Whether an item whose attempt just failed has --retries left.
  [[nodiscard]] bool retry_left(const item_status& st) const {
    return attempts_of(st) <= static_cast<int>(options_.retries);
  }
  /// An attempt of `item` failed (`exit_code`, `signal`, after `runtime` s) with retries
  /// left: its captured output (closed here) is dropped, and it runs again after a backoff.
  /// A journal records the failed attempt at once.
  void retry_later(std::size_t item, int out_fd, int err_fd, int exit_code, int signal,
                   double runtime);
  /// A job of `item` could not be started for want of a process or a descriptor (`error`):
  /// puts the item back to start a moment later, and says so once.
  /// @return false when nothing has started for too long with no job running: the item
  ///   fails instead
  bool start_later(std::size_t item, int error, double now);
  void cannot_run(std::size_t item, std::size_t slot, const std::string& program, int error,
                  double wall);
  void signal_job(std::size_t slot, int sig);
  void reap();
  void collect_exits(double now);
  void collect_rank_reports(double now);
  void job_exited(std::size_t slot, int wait_status, double now);
  void end_job(std::size_t slot, int wait_status, double runtime);
  void end_held_jobs(double now);
  void end_item(std::size_t item, std::size_t slot, item_outcome end);
  output_record take_output(const item_outcome& end) const;
  void keep_results(std::size_t item, output_record& record, item_outcome& end);
  void count_end(std::size_t item, std::size_t slot, const item_outcome& end);
  std::string joblog_line(std::size_t item, std::size_t slot, const item_outcome& end,
                          const output_record& record) const;
  std::string end_event(std::size_t item, std::size_t slot, const item_outcome& end,
                        const output_record& record) const;
  void check_halt();
  void output_lost(output_record& record, int error, int fd);
  void stop_for_lost_output(int error, std::size_t item, int fd);
  void stop(int sig, double now);
  void stop_jobs(int sig, double now);
  void check_deadlines(double now);
  void handle_signals(double now);
  void read_signals(int fd, double now);
  /// Ctrl-Z (SIGTSTP): stops the local jobs and the runner, and continues them together.
  void suspend(double now);
  void stopping_signal(int sig, double now, bool from_elsewhere = false);
  void add_rank_slots();
  void renew_lease_if_due(double now);
  void commit_journal();
  void release_unstarted();
  void draw_progress(bool last);
  /// Writes a line (or the header) to the --joblog file; a failure is said once.
  void write_joblog(const std::string& line);
  void say(line_kind kind, const std::string& message);
  void report_failure(std::size_t item, std::size_t slot, const item_outcome& end);
  [[nodiscard]] std::string rerun_note() const;
  void fit_jobs_to_fd_limit();
  [[nodiscard]] double next_wakeup(double now) const;
  [[nodiscard]] double next_job_wakeup(double wake) const;
  [[nodiscard]] std::size_t busy_count() const;
  [[nodiscard]] int rank_of(std::size_t slot) const;
  [[nodiscard]] bool more_work() const;

  const run_options& options_;
  const command_template& command_;
  const item_product& items_;
  rank_link* ranks_;  // the other ranks of an MPI job, whose slots follow this one's; or null
  std::size_t local_slots_ = 0;  // the slots of this machine, before the other ranks'
  std::vector<std::string> environment_;  // of the jobs, over ranks (job_environment())
  std::vector<char*> envp_;               // pointers into it; empty: polymap's own
  std::string rank_stop_note_;  // another rank's stopping signal, to be said (handle_signals())
  bool launcher_gone_ = false;  // mpirun, or what started this rank, is gone (a stop)
  bool same_stop_due_ = false;  // the stop came from another rank: see stopping_signal()
  // The items started or claimed, until their end: a batch of millions of items holds only
  // what runs (an item not in it has never started).
  std::unordered_map<std::size_t, item_status> status_;
  std::vector<job> jobs_;
  std::vector<std::vector<int>> slot_cpus_;
  std::unordered_map<pid_t, std::size_t> slot_of_;
  std::unique_ptr<detail::orphan_guard> guard_;
  std::unique_ptr<journal> journal_;
  std::unique_ptr<joblog> joblog_;
  output_writer out_{*this, options_.keep_order};
  std::unordered_map<std::string, std::size_t> item_of_key_;
  std::deque<std::size_t> queue_;    // claimed from the journal, not started
  std::vector<item_end> ends_;       // to commit before the next claim
  bool journal_exhausted_ = false;   // the last claim found nothing
  bool looked_again_ = false;        // claimed once more at the end, and found nothing
  // Items in item_phase::waiting_retry, soonest first: (monotonic time due, item).
  using retry = std::pair<double, std::size_t>;
  std::priority_queue<retry, std::vector<retry>, std::greater<>> retries_;
  std::size_t next_item_ = 0;        // without a journal: the next item in input order
  std::size_t total_ = 0;
  std::size_t done_ = 0;
  std::size_t failed_ = 0;
  std::size_t interrupted_ = 0;
  std::int64_t failed_before_ = 0;  // failed in earlier runs, left alone without --retry-failed
  std::size_t next_order_ = 0;
  // The process groups of jobs that were reaped before the SIGKILL that followed their
  // SIGTERM, and when that SIGKILL is due (check_deadlines()).
  std::vector<std::pair<pid_t, double>> lingering_;
  int signal_fd_ = -1;  // SIGCHLD and the stopping signals
  int null_fd_ = -1;
  placement_warning placement_;
  // No process (or no descriptor for a capture) to be had for a job (ulimit -u, a pids
  // cgroup, pid_max): since when the starts fail in a row, how long the next waits, and
  // until when no job starts.
  double spawn_failing_since_ = 0;
  double spawn_backoff_ = 0;
  double spawn_blocked_until_ = 0;
  bool spawn_failure_said_ = false;
  int stop_signal_ = 0;    // SIGINT, SIGTERM or SIGHUP received
  double stop_signal_at_ = 0;  // monotonic: when the first came; 0: none
  int stops_ = 0;  // how many stopping signals came (stop()): a second means "now"
  // Monotonic time the run began to stop its jobs (stop_jobs(): a signal, --halt now, a
  // write or journal failure); 0 while it does not.
  double stopping_since_ = 0;
  bool draining_ = false;  // start nothing new: --halt, a signal, or a --results failure
  bool halted_ = false;
  std::string journal_failure_;
  std::string results_failure_;
  std::string output_failure_;  // a write of an item's output to stdout or stderr failed
  bool stall_said_ = false;  // a stream_stalled write was said (stop_for_lost_output())
  bool joblog_failed_ = false;  // a write to the --joblog file failed (said once)
  double last_lease_ = 0;
  double last_progress_ = 0;
  double started_ = 0;
  bool tty_progress_ = false;
  // A line on stderr for each failed item, unless the joblog is written there (see run()).
  bool report_failures_ = true;
  bool json_on_stderr_ = false;  // --json's events share stderr's stream: see say()
};

}  // namespace

std::vector<std::string> journal_keys(const command_template& command,
                                      const item_product& items) {
  // Its parts are kept apart by \x01, which no word or value holds as itself: \x02 escapes
  // a \x01 (\x02\x03) or \x02 (\x02\x04) of theirs, so that no two batches share a key.
  const auto escaped = [](std::string& key, const std::string& text) {
    for (const char c : text) {
      if (c == '\x01' || c == '\x02') {
        key += '\x02';
        key += c == '\x01' ? '\x03' : '\x04';
      } else {
        key += c;
      }
    }
  };
  std::string identity;
  escaped(identity, command.identity());
  // The same words as a --shell line are another command: an \x01 that no escaped word
  // holds keeps them apart (keys without --shell are as they were before it).
  if (command.shell()) identity += "\x01shell";
  std::vector<std::string> keys;
  keys.reserve(items.size());
  std::unordered_map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::string key = identity;
    key += '\x01';
    for (const std::string& column : items[i]) {
      escaped(key, column);
      key += '\0';
    }
    key += '\x01';
    key += std::to_string(seen[key]++);
    keys.push_back(std::move(key));
  }
  return keys;
}

namespace {

void batch_runner::open_journal() {
  journal_ = std::make_unique<journal>(options_.journal,
                                       journal_options{.lock_timeout = options_.lock_timeout});
  journal_->register_runner();
  std::vector<std::string> keys = journal_keys(command_, items_);
  std::vector<journal_item> entries;
  entries.reserve(items_.size());
  for (std::size_t i = 0; i < items_.size(); ++i) {
    entries.push_back({keys[i], static_cast<std::int64_t>(i + 1),
                       display_command(command_.expand(items_[i], i + 1, 1))});
    item_of_key_.emplace(std::move(keys[i]), i);
  }
  journal_->add_items(entries);
  journal_->renew_lease();  // adding a large batch may take a while: the lease counts from here
  if (options_.retry_failed) {
    journal_->retry_failed();
  } else {
    failed_before_ = journal_->failed();
  }
  journal_->reclaim_dead();
  total_ = static_cast<std::size_t>(journal_->unfinished());
  // A changed command (a typo fixed, ./sim become /abs/sim) is a batch of new items: the
  // old batch's items stay behind, and would be forgotten unseen.
  if (const std::int64_t elsewhere = journal_->not_done_elsewhere(); elsewhere > 0) {
    say(line_kind::warning,
        "journal " + options_.journal + " also holds " + std::to_string(elsewhere) +
            " items of other commands (another command template, or other arguments) that "
            "are not done; this run runs its own items only (`polymap status` lists them all)");
  }
}

int batch_runner::rank_of(std::size_t slot) const {
  return slot < local_slots_ ? 0 : ranks_->rank(slot - local_slots_);
}

std::size_t batch_runner::busy_count() const {
  return static_cast<std::size_t>(
      std::count_if(jobs_.begin(), jobs_.end(), [](const job& j) { return j.busy; }));
}

bool batch_runner::more_work() const {
  if (journal_) return !queue_.empty() || !journal_exhausted_;
  return next_item_ < items_.size();
}

void batch_runner::commit_journal() {
  if (!journal_) return;
  std::size_t want = 0;
  if (!draining_ && !journal_exhausted_) {
    const std::size_t covered = busy_count() + retries_.size() + queue_.size();
    want = jobs_.size() > covered ? jobs_.size() - covered : 0;
  }
  if (ends_.empty() && want == 0) return;
  const std::vector<claimed_item> claimed = journal_->commit(ends_, want);
  ends_.clear();
  if (want > 0 && claimed.size() < want) journal_exhausted_ = true;
  if (!claimed.empty()) looked_again_ = false;
  for (const claimed_item& c : claimed) {
    const auto found = item_of_key_.find(c.key);
    if (found == item_of_key_.end()) continue;  // cannot happen: claims join the batch
    item_status& st = status_[found->second];
    st.journal_id = c.id;
    st.earlier_failures = c.failures;
    queue_.push_back(found->second);
  }
}

bool batch_runner::fill_slots(double now) {
  bool started = false;
  for (std::size_t slot = 0; slot < jobs_.size() && !draining_; ++slot) {
    if (now < spawn_blocked_until_) break;  // no process to be had a moment ago
    if (jobs_[slot].busy) continue;
    std::size_t item = items_.size();
    if (!retries_.empty() && retries_.top().first <= now) {
      item = retries_.top().second;
      retries_.pop();
    } else {
      if (journal_) {
        if (queue_.empty()) break;
        item = queue_.front();
        queue_.pop_front();
      } else {
        if (next_item_ >= items_.size()) break;
        item = next_item_++;
      }
    }
    start(item, slot, now);
    started = true;
  }
  return started;
}

void batch_runner::start(std::size_t item, std::size_t slot, double now) {
  item_status& st = status_[item];
  job& j = jobs_[slot];
  const std::vector<std::string> argv = command_.expand(items_[item], item + 1, slot + 1);
  const double wall = wall_now();
  spawn_result spawned;
  if (j.remote) {
    // Its output comes with its end, and its start error too (collect_rank_reports()).
    j.out_fd = j.err_fd = -1;
    ranks_->start(slot - local_slots_, argv);
  } else {
    const bool capture_out = options_.keep_order || options_.json || !options_.results.empty();
    const bool capture_err = capture_out || journal_ != nullptr;
    j.out_fd = j.err_fd = -1;
    spawn_request request;
    request.argv = &argv;
    request.stdin_fd = null_fd_;
    request.cpus = &slot_cpus_[slot];
    request.nice = options_.nice;
    request.envp = envp_.empty() ? nullptr : envp_.data();
    try {
      if (capture_out) j.out_fd = make_capture();
      if (capture_err) j.err_fd = make_capture();
      request.stdout_fd = j.out_fd;
      request.stderr_fd = j.err_fd;
      spawned = spawn_job(request);
      spawn_failing_since_ = 0;
      spawn_backoff_ = 0;
    } catch (const std::system_error& e) {
      if (j.out_fd >= 0) close(j.out_fd);
      if (j.err_fd >= 0) close(j.err_fd);
      j.out_fd = j.err_fd = -1;
      if (start_later(item, e.code().value(), now)) return;
      spawned.error = e.code().value();  // long enough: the item cannot run
    }
    if (const std::string refused = placement_.once(request, spawned); !refused.empty()) {
      say(line_kind::warning, refused);
    }
  }
  if (st.attempts == 0) {
    st.first_start = wall;
    st.order = next_order_++;
  }
  ++st.attempts;
  st.slot = slot;
  // The job is in its slot and the orphan guard before the start event is written, which
  // may block on a full pipe: a signal meanwhile, or polymap's death, still stops it.
  const bool started = j.remote || spawned.pid >= 0;
  if (started) take_slot(slot, item, spawned.pid, wall, now);
  int event_error = 0;
  if (options_.json) {
    nlohmann::json event = {{"event", "start"},
                            {"seq", item + 1},
                            {"slot", slot + 1},
                            {"attempt", st.earlier_failures + st.attempts},
                            {"command", argv}};
    if (ranks_ != nullptr) event["rank"] = rank_of(slot);
    event_error = out_.put(1, json_text(event));
  }
  st.phase = item_phase::running;
  if (!started) cannot_run(item, slot, argv.front(), spawned.error, wall);
  // After the job is in its slot, so that the stop stops it too.
  if (event_error != 0) stop_for_lost_output(event_error, item, 1);
}

void batch_runner::retry_later(std::size_t item, int out_fd, int err_fd, int exit_code,
                               int signal, double runtime) {
  // Its output is that of a failed attempt: the retry's replaces it.
  if (out_fd >= 0) close(out_fd);
  if (err_fd >= 0) close(err_fd);
  item_status& st = status_[item];
  st.phase = item_phase::waiting_retry;
  st.last_exit = exit_code;
  st.last_signal = signal;
  st.last_runtime = runtime;
  if (journal_) {
    // Recorded now: a runner killed before the retry ends must not give the item a fresh
    // count of --retries on the next run.
    item_end e;
    e.id = st.journal_id;
    e.state = item_state::running;
    e.attempts = st.attempts - st.recorded_attempts;
    e.failures = 1;
    e.worker = static_cast<int>(st.slot + 1);
    e.start = st.first_start;
    e.end = wall_now();
    e.exit_code = exit_code;
    e.signal = signal;
    ends_.push_back(std::move(e));
    st.recorded_attempts = st.attempts;
  }
  retries_.emplace(mono_now() + backoff(st.attempts), item);
}

bool batch_runner::start_later(std::size_t item, int error, double now) {
  // A failure of the machine, not of the item: it waits and starts again, with the jobs
  // that run meanwhile as the only ones. With none running for a minute, nothing will free
  // a process: the item fails.
  if (spawn_failing_since_ == 0) spawn_failing_since_ = now;
  if (busy_count() == 0 && now - spawn_failing_since_ >= spawn_give_up) return false;
  spawn_backoff_ = std::min(1.0, spawn_backoff_ == 0 ? 0.05 : 2 * spawn_backoff_);
  spawn_blocked_until_ = now + spawn_backoff_;
  retries_.emplace(spawn_blocked_until_, item);
  if (!spawn_failure_said_) {
    spawn_failure_said_ = true;
    say(line_kind::warning, std::string("cannot start a job now (") + std::strerror(error) +
                                "): fewer jobs run at a time until one can start");
  }
  return true;
}

void batch_runner::cannot_run(std::size_t item, std::size_t slot, const std::string& program,
                              int error, double wall) {
  // Reported once per item, as a failure of that item (end_item says it): the run goes on.
  job& j = jobs_[slot];
  j.busy = false;
  // The shell's codes: 127 for a program that is not there, 126 for one that is and
  // cannot run (no permission, not an executable, no process to be had).
  const int exit_code = error == ENOENT || error == ENOTDIR ? 127 : 126;
  item_status& st = status_[item];
  if (!draining_ && retry_left(st)) {
    // As a job that failed: its retry (a program busy being written, no process to be had
    // on another rank, all pass).
    retry_later(item, j.out_fd, j.err_fd, exit_code, 0, 0);
    j.out_fd = j.err_fd = -1;
    return;
  }
  item_outcome end;
  end.state = item_state::failed;
  end.started = false;
  end.exit_code = exit_code;
  const std::string where =
      j.remote ? " on " + ranks_->host(slot - local_slots_) + " (rank " +
                     std::to_string(rank_of(slot)) + ")"
               : "";
  end.reason = "cannot run '" + program + "'" + where + ": " + std::strerror(error);
  end.start_wall = wall;
  end.out_fd = j.out_fd;
  end.err_fd = j.err_fd;
  j.out_fd = j.err_fd = -1;
  end_item(item, slot, std::move(end));
}

void batch_runner::signal_job(std::size_t slot, int sig) {
  job& j = jobs_[slot];
  if (j.remote) {
    ranks_->signal(slot - local_slots_, sig);  // and that rank sends the SIGKILL after a SIGTERM
  } else {
    kill(-j.pid, sig);
  }
}

void batch_runner::take_slot(std::size_t slot, std::size_t item, pid_t pid, double wall,
                             double now) {
  job& j = jobs_[slot];
  if (!j.remote) {
    guard_->add(pid);
    slot_of_[pid] = slot;
  }
  j.busy = true;
  j.pid = j.remote ? -1 : pid;
  j.item = item;
  j.start_wall = wall;
  j.start_mono = now;
  j.deadline = options_.timeout > 0 ? now + options_.timeout : 0;
  j.kill_at = 0;
  j.timed_out = false;
  j.stopped = false;
}

void batch_runner::reap() {
  collect_exits(mono_now());
  // An end may write output, whose wait collects more exits: until none is left.
  for (bool found = true; found;) {
    found = false;
    for (std::size_t slot = 0; slot < jobs_.size(); ++slot) {
      job& j = jobs_[slot];
      if (!j.exited) continue;
      found = true;
      if (j.remote) {
        // Its output, in captures as a local job's, for the ordinary way out: made now, one
        // job at a time, so that the other ranks' ends need no descriptors of their own.
        j.out_fd = make_capture();
        j.err_fd = make_capture();
        int error = write_all(j.out_fd, std::exchange(j.remote_out, {}));
        if (error == 0) error = write_all(j.err_fd, std::exchange(j.remote_err, {}));
        if (error != 0) {
          throw std::system_error(error, std::generic_category(),
                                  "keeping the output of a job of rank " +
                                      std::to_string(rank_of(slot)));
        }
      }
      if (j.spawn_error != 0) {
        // A remote job that could not start: as a local one that could not (start()).
        const int error = j.spawn_error;
        j.spawn_error = 0;
        j.exited = false;
        const std::string program = command_.expand(items_[j.item], j.item + 1, slot + 1).front();
        cannot_run(j.item, slot, program, error, j.start_wall);
        continue;
      }
      // Still marked exited while its end is taken: a stop or a deadline that comes
      // meanwhile (a write of its output waits) signals no process group of its.
      job_exited(slot, j.exit_status, j.exited_at);
      j.exited = false;
    }
  }
}

void batch_runner::collect_exits(double now) {
  for (;;) {
    int wait_status = 0;
    const pid_t pid = waitpid(-1, &wait_status, WNOHANG);
    if (pid <= 0) break;
    const auto found = slot_of_.find(pid);
    if (found == slot_of_.end()) continue;  // no job of ours
    job& j = jobs_[found->second];
    slot_of_.erase(found);
    if (j.kill_at > 0) {
      // Signalled, with its SIGKILL to come: what is left of its group (a child that ignores
      // SIGTERM) gets that SIGKILL all the same, and the guard keeps the group until then.
      lingering_.emplace_back(pid, j.kill_at);
    } else {
      guard_->remove(pid);
    }
    j.exited = true;
    j.exit_status = wait_status;
    j.exited_at = now;
  }
  collect_rank_reports(now);
}

void batch_runner::collect_rank_reports(double now) {
  if (ranks_ == nullptr) return;
  if (!launcher_gone_ && ranks_->launcher_gone()) {
    // mpirun exits at a second Ctrl-C without passing a signal on: the run stops as on a
    // SIGHUP (its terminal gone), before MPI's own end of the ranks comes.
    launcher_gone_ = true;
    if (stop_signal_ == 0) {
      rank_stop_note_ = "the MPI launcher that started polymap is gone: stopping" + rerun_note();
      stopping_signal(SIGHUP, now, true);
    }
  }
  while (std::optional<rank_event> e = ranks_->next()) {
    if (e->what == rank_event::kind::stopped) {
      // A stopping signal that reached another rank (a scheduler may send it to one node):
      // the run stops as if it had come here, unless it stops already. mpirun passes one
      // signal on to every rank: that is one stop, not a second one (which kills at once).
      // Said later, not in the middle of a write that waits (tend()).
      if (stop_signal_ == 0) {
        rank_stop_note_ = "rank " + std::to_string(e->rank) + " (on " +
                          ranks_->rank_host(e->rank) + ") received " + signal_text(e->signal) +
                          ": stopping" + rerun_note();
        stopping_signal(e->signal, now, true);
      }
      continue;
    }
    job& j = jobs_[local_slots_ + e->slot];
    if (!j.busy || j.exited) continue;  // cannot happen: a slot's end comes once per start
    j.remote_out = std::move(e->out);
    j.remote_err = std::move(e->err);
    // Marked stopped or timed out here while its end was on its way: it ended by itself
    // first, and ends as it ended (as a local job collected before the stop or the deadline).
    if (!e->signalled) j.stopped = j.timed_out = false;
    j.spawn_error = e->spawn_error;
    j.exited = true;
    j.exit_status = e->wait_status;
    j.exited_at = now;
  }
}

void batch_runner::job_exited(std::size_t slot, int wait_status, double now) {
  job& j = jobs_[slot];
  const double runtime = now - j.start_mono;
  if (!j.stopped && !j.timed_out) {
    // Polymap's stdout (or stderr) is a pipe whose reader is gone (`polymap run ... | head`,
    // `2>&1 >file | head`), and the job died of SIGPIPE, or exited 128 + SIGPIPE (a shell
    // whose pipeline's last command died of it) with that stream its own, not captured: so
    // would every later job. Stop as on a signal, as GNU parallel does; this job and the
    // others that die of it are interrupted, not failed, and a rerun resumes them. Other
    // failures stay failures: a job that never wrote there fails as it failed.
    // The streams are looked at (poll) only for such an end, not for every job's.
    const bool sigpipe = WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGPIPE;
    const bool exit_141 = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 128 + SIGPIPE;
    // Not for a job of another rank, whose output went to a capture there.
    const int closed = j.remote || (!sigpipe && !exit_141)
                           ? 0
                           : (stream_closed(1) ? 1 : (stream_closed(2) ? 2 : 0));
    const bool shell_sigpipe = exit_141 && closed != 0 && (closed == 1 ? j.out_fd : j.err_fd) < 0;
    if (closed != 0 && (sigpipe || shell_sigpipe)) {
      stop_for_lost_output(EPIPE, j.item, closed);
      j.stopped = true;
    } else if (ended_by_a_stopping_signal(wait_status)) {
      // A signal the runner did not send: the runner's own may come a moment after the
      // job's, or have come since the job's end was collected (a write waited meanwhile).
      // Within foreign_stop_grace it is one that the stop stopped; until then its end
      // (interrupted, or failed) and its slot wait (end_held_jobs()).
      if (stop_signal_at_ > 0 && stop_signal_at_ <= now + foreign_stop_grace) {
        j.stopped = true;
      } else {
        j.held = true;
        j.held_status = wait_status;
        j.held_runtime = runtime;
        j.release_at = now + foreign_stop_grace;
        return;
      }
    }
  }
  end_job(slot, wait_status, runtime);
}

void batch_runner::end_held_jobs(double now) {
  for (std::size_t slot = 0; slot < jobs_.size(); ++slot) {
    job& j = jobs_[slot];
    if (!j.held || (!j.stopped && now < j.release_at)) continue;
    j.held = false;
    end_job(slot, j.held_status, j.held_runtime);
  }
}

void batch_runner::end_job(std::size_t slot, int wait_status, double runtime) {
  job& j = jobs_[slot];
  j.busy = false;
  const int exit_code = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  const int signal = WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0;
  item_status& st = status_[j.item];
  item_outcome end;
  end.exit_code = exit_code;
  end.signal = signal;
  end.timed_out = j.timed_out;
  end.start_wall = j.start_wall;
  end.runtime = runtime;
  end.out_fd = j.out_fd;
  end.err_fd = j.err_fd;
  j.out_fd = j.err_fd = -1;
  // Whatever its exit status: a job that the runner stopped may exit 0 from its SIGTERM
  // handler (`trap '...; exit' TERM`) without having done its work, and one that ran past
  // --timeout has failed, as in GNU parallel.
  if (j.stopped) {
    end.state = item_state::interrupted;
    end.reason = "interrupted";
  } else if (exit_code == 0 && !j.timed_out) {
    end.state = item_state::done;
  } else if (retry_left(st) && draining_) {
    // Failed with retries left once the run stops or halts, which starts no retry: the
    // item is interrupted before it, as a waiting retry is then (release_unstarted()), and
    // runs again on the next run. Its output is written as an interrupted item's is.
    end.state = item_state::interrupted;
    end.reason = "interrupted before its retry";
    end.attempt_failed = true;
  } else if (retry_left(st)) {
    retry_later(j.item, end.out_fd, end.err_fd, exit_code, signal, runtime);
    return;
  } else {
    end.state = item_state::failed;
    if (j.timed_out) end.reason = "timeout after " + number_text(options_.timeout) + " s";
  }
  end_item(j.item, slot, std::move(end));
}

void batch_runner::end_item(std::size_t item, std::size_t slot, item_outcome end) {
  item_status& st = status_[item];
  st.phase = item_phase::ended;
  if (journal_ && end.state == item_state::interrupted && end.out_fd >= 0) {
    // Stopped part-way, it runs again on the next run, which writes its output whole: the
    // stdout it captured before the stop is not written now, or a resumed batch would have
    // it twice. Its stderr is: what a stopped job said is how far it got.
    close(end.out_fd);
    end.out_fd = -1;
    end.stdout_dropped = true;
  }
  output_record record = take_output(end);
  record.item = item;
  // Taken before the --results files take the output.
  std::string stderr_tail;
  if (journal_ && end.state == item_state::failed) {
    stderr_tail =
        record.err_fd >= 0
            ? read_tail(record.err_fd, tail_bytes)
            : record.err.substr(record.err.size() - std::min(record.err.size(), tail_bytes));
  }
  // Not a retry cancelled before it started: that one has no output.
  const bool ran = end.out_fd >= 0 || end.err_fd >= 0;
  // An item a journal's rerun runs again keeps no folder now: one with a stdout cut off
  // would look like a finished item's.
  const bool runs_again = journal_ && end.state == item_state::interrupted;
  if (!options_.results.empty() && ran && !runs_again) keep_results(item, record, end);
  record.state = end.state;
  // Counted, --halt looked at and a failure said now, at the end of the job, not once -k
  // lets its output out: a halt must not wait for the order. An item whose output is then
  // lost (written()) is recorded interrupted instead and runs again, although its
  // failure was said.
  count_end(item, slot, end);
  // Interrupted: it runs again, and its line comes then.
  if (joblog_ && end.state != item_state::interrupted) {
    std::string line = joblog_line(item, slot, end, record);
    // After the item's output (held back by -k or not): on stdout, as in GNU parallel; in a
    // file, so that an item whose output is lost has no line (written()). Either way
    // before the journal records the end.
    (joblog_->on_stdout() ? record.log : record.log_file) = std::move(line);
  }
  if (options_.json) record.event = end_event(item, slot, end, record);
  // The --results files and the --json event have the output: it is not written out again.
  if (!options_.results.empty() || options_.json) {
    record.out.clear();
    record.err.clear();
  }
  if (journal_) {
    item_end e;
    e.id = st.journal_id;
    e.state = end.state;
    e.attempts = st.attempts - st.recorded_attempts;
    e.failures = end.state == item_state::failed || end.attempt_failed ? 1 : 0;
    e.worker = static_cast<int>(slot + 1);
    e.start = st.first_start;
    e.end = end.start_wall + end.runtime;
    e.exit_code = end.exit_code;
    e.signal = end.signal;
    e.reason = end.reason;
    if (end.state == item_state::failed) e.stderr_tail = std::move(stderr_tail);
    record.end = std::move(e);
  }
  // The halt before the output: a write that waits for a slow reader must not delay it.
  check_halt();
  const std::size_t order = st.order;
  status_.erase(item);  // nothing reads it after its end
  out_.emit(order, std::move(record));
}

output_record batch_runner::take_output(const item_outcome& end) const {
  output_record record;
  const bool ran = end.out_fd >= 0 || end.err_fd >= 0;
  if ((!options_.results.empty() && ran) || options_.json) {
    // The --results files and the --json event take the bytes; otherwise the captures are
    // copied out as they are, however large, without passing through memory.
    record.out = read_all(end.out_fd);
    record.err = read_all(end.err_fd);
    if (end.out_fd >= 0) close(end.out_fd);
    if (end.err_fd >= 0) close(end.err_fd);
  } else {
    record.out_fd = end.out_fd;
    record.err_fd = end.err_fd;
  }
  return record;
}

void batch_runner::keep_results(std::size_t item, output_record& record, item_outcome& end) {
  // Before the item is recorded: an item whose output could not be kept is not done.
  if (results_failure_.empty()) {
    // With a journal, the item's id there: unique, and the same in every run of the journal
    // however the input is reordered or extended, so a rerun never writes over the output
    // of another item. Without one, its position in the input.
    const std::int64_t number =
        journal_ ? status_[item].journal_id : static_cast<std::int64_t>(item + 1);
    try {
      write_results(options_.results + "/" + std::to_string(number), {&record.out, &record.err});
    } catch (const std::runtime_error& e) {
      // Most likely a full disk: every later item would lose its output too. Stop once.
      say(line_kind::error, "item " + std::to_string(item + 1) + ": " + e.what() + "; stopping");
      results_failure_ = e.what();
      stop_jobs(SIGTERM, mono_now());
    }
  }
  // Once one write failed, no output is kept: the item is interrupted, and a rerun (with
  // --journal) runs it again.
  if (!results_failure_.empty()) {
    end.state = item_state::interrupted;
    end.reason = results_failure_;
  }
}

void batch_runner::count_end(std::size_t item, std::size_t slot, const item_outcome& end) {
  if (end.state == item_state::done) ++done_;
  if (end.state == item_state::failed) {
    ++failed_;
    report_failure(item, slot, end);
  }
  if (end.state == item_state::interrupted) ++interrupted_;
}

std::string batch_runner::joblog_line(std::size_t item, std::size_t slot, const item_outcome& end,
                                      const output_record& record) const {
  // Receive: the bytes of stdout where polymap captured them, else 0 (GNU parallel counts
  // stdout only, and writes 0 under -u, where it does not see the output).
  const std::size_t received = record.out_fd >= 0 ? file_size(record.out_fd) : record.out.size();
  // Exitval: 0 for a job killed by a signal, which Signal names, as GNU parallel writes
  // it; -1 for a job that ran past --timeout, whatever its exit status (GNU parallel writes
  // a non-zero status there instead; one that exited 0 from its SIGTERM handler must not
  // read as a success to `parallel --resume-failed`).
  const int exit_value = end.timed_out ? -1 : std::max(end.exit_code, 0);
  // Host: GNU parallel's ":" for this machine, the host name of the rank that ran it.
  const std::string host = slot >= local_slots_ ? ranks_->host(slot - local_slots_) : ":";
  const std::string command = display_command(command_.expand(items_[item], item + 1, slot + 1));
  return joblog::line(item + 1, host, end.start_wall, end.runtime, received, exit_value,
                      end.signal, command);
}

std::string batch_runner::end_event(std::size_t item, std::size_t slot, const item_outcome& end,
                                    const output_record& record) const {
  nlohmann::json event = {{"event", "end"},
                          {"seq", item + 1},
                          {"slot", slot + 1},
                          {"state", state_name(end.state)},
                          {"exit", end.exit_code},
                          {"signal", end.signal},
                          {"attempts", attempts_of(status_.at(item))},
                          {"duration", end.runtime},
                          {"command", command_.expand(items_[item], item + 1, slot + 1)}};
  if (ranks_ != nullptr) event["rank"] = rank_of(slot);
  // Its id in the journal, which names its --results folder there.
  if (journal_) event["id"] = status_.at(item).journal_id;
  if (!end.reason.empty()) event["reason"] = end.reason;
  // Absent where it is elsewhere (--results) or not written at all (dropped): not empty.
  if (options_.results.empty()) {
    if (!end.stdout_dropped) event["stdout"] = record.out;
    event["stderr"] = record.err;
  }
  return json_text(event);
}

void batch_runner::check_halt() {
  if (halted_ || !options_.halt.reached(failed_, total_)) return;
  halted_ = true;
  draining_ = true;
  say(line_kind::summed,  // the summary event has "halted"
      "--halt: " + std::to_string(failed_) + " item(s) failed" +
          (options_.halt.percent > 0
               ? " of " + std::to_string(total_) + ", " + number_text(options_.halt.percent) +
                     "% or more"
               : std::string()) +
          "; " +
          (options_.halt.now ? "stopping the running jobs" : "waiting for the running jobs"));
  if (options_.halt.now) stop_jobs(SIGTERM, mono_now());
}

void batch_runner::say(line_kind kind, const std::string& message) {
  // Every line the runner writes on stderr while the batch runs comes here (but the progress
  // bar), so that none can break the JSON lines of --json ... 2>&1: there it is an event on
  // stdout, or left out. Lines written outside the batch (a usage error, or the exception
  // that main prints when run_batch throws) do not. Nothing is written on a stream whose
  // write failed (output_writer): under --json, a line that stderr cannot take is an event
  // on stdout instead, so that a warning, or why the run stopped, is said somewhere.
  if (!json_on_stderr_) {
    // Over the progress bar, which the next draw puts back below the line.
    const std::string line = (tty_progress_ ? "\r\x1b[K" : "") +
                             std::string(kind == line_kind::warning ? "polymap: warning: "
                                                                    : "polymap: ") +
                             message + "\n";
    if (out_.put(2, line) == 0 || !options_.json) return;
  }
  if (kind == line_kind::summed) return;
  const char* name = kind == line_kind::warning ? "warning" : "error";
  (void)out_.put(1, json_text({{"event", name}, {"message", message}}));
}

void batch_runner::report_failure(std::size_t item, std::size_t slot, const item_outcome& end) {
  const bool cannot_run = !end.started;
  // An item that could not even start is said when the joblog is stderr (which does not say
  // why); among --json's lines, its end event carries the reason (say() leaves it out).
  if (!cannot_run && !report_failures_) return;
  std::string why;
  if (cannot_run) {
    why = end.reason;
  } else if (end.timed_out) {
    why = "timed out after " + number_text(options_.timeout) + " s";
  } else if (end.signal != 0) {
    why = "killed by signal " + signal_text(end.signal);
  } else {
    why = "exit status " + std::to_string(end.exit_code);
  }
  const int attempts = attempts_of(status_[item]);
  if (attempts > 1) why += ", after " + std::to_string(attempts) + " attempts";
  const std::string command = display_command(command_.expand(items_[item], item + 1, slot + 1));
  say(line_kind::summed,
      "item " + std::to_string(item + 1) + " failed (" + why + "): " + one_line(command));
}

std::string batch_runner::rerun_note() const {
  return options_.journal.empty() ? ""
                                  : "; the items it stopped are recorded interrupted and run "
                                    "again when the same command is rerun";
}

void batch_runner::written(output_record& r, int error, int fd) {
  // Its joblog line in a file once all of its output is out; then its end goes to the
  // journal, with the next commit. An item whose output could not all be written is not
  // done: output_lost().
  if (error != 0) {
    output_lost(r, error, fd);
  } else if (!r.log_file.empty()) {
    write_joblog(r.log_file);
  }
  if (r.end) {
    ends_.push_back(std::move(*r.end));
    r.end.reset();
  }
}

void batch_runner::write_joblog(const std::string& line) {
  // A FIFO or terminal of its own is written as the output is: one that is not read holds
  // neither a signal nor --timeout.
  unblocked_stream* stream = joblog_->stream();
  const int error = stream != nullptr ? out_.write_to(*stream, line) : joblog_->write(line);
  if (error == 0 || joblog_failed_) return;
  // Not a reason to stop: the items are done (and recorded so in the journal, if any).
  // Said once, as the next lines will most likely fail too.
  joblog_failed_ = true;
  say(line_kind::warning,
      "cannot write to --joblog '" + joblog_->name() + "': " +
          (error == stream_stalled ? std::string("it was not being read when the run stopped")
                                   : std::string(std::strerror(error))) +
          "; the items whose line is missing there run again on `parallel --resume`");
}

std::optional<double> batch_runner::wait_until(double progress_at, double now) const {
  // A write that waits for its reader (output_writer): once the run stops its jobs, given up
  // when nothing went out for kill_grace since then, at once after a second stopping
  // signal; the output is lost, and its item recorded interrupted (output_lost()), so that a
  // rerun writes it. Until then, the wait ends for what tend() does: a --timeout, a SIGKILL
  // after a SIGTERM, the lease (unless the journal failed, and the run stops).
  const bool stopping = stopping_since_ > 0;
  const double give_up_at = std::max(progress_at, stopping_since_) + kill_grace;
  if (stopping && (stops_ > 1 || now >= give_up_at)) return std::nullopt;
  const bool lease = journal_ && journal_failure_.empty();
  double wake = next_job_wakeup(lease ? last_lease_ + lease_interval : now + 3600.0);
  if (stopping) wake = std::min(wake, give_up_at);
  if (ranks_ != nullptr) wake = std::min(wake, now + ranks_->poll_interval());
  return wake;
}

void batch_runner::tend(bool woken, double now) {
  // What the loop in run() must not leave waiting on a write: a stop, the timeouts (and the
  // SIGKILL after each SIGTERM) and the lease. The jobs that end meanwhile are collected as
  // they end (SIGCHLD wakes the wait), and their ends taken after the write (reap()).
  // Before the deadlines and any stop: a job that ended by itself meanwhile is not killed,
  // nor recorded timed out or interrupted.
  collect_exits(now);
  if (woken) read_signals(signal_fd_, now);
  check_deadlines(now);
  if (journal_failure_.empty()) {
    try {
      renew_lease_if_due(now);
    } catch (const journal_error& e) {
      // Nothing more can be recorded: stop as the loop in run() does on a journal error.
      journal_failure_ = e.what();
      stop_jobs(SIGTERM, now);
    }
  }
}

void batch_runner::output_lost(output_record& r, int error, int fd) {
  // Not done, nor failed: what it wrote is gone. Interrupted, it runs again on a rerun (with
  // --journal), which writes its output.
  // One that was interrupted already keeps its reason.
  const bool was_interrupted = r.state == item_state::interrupted;
  if (r.state == item_state::done) --done_;
  if (r.state == item_state::failed) --failed_;
  if (!was_interrupted) ++interrupted_;
  r.state = item_state::interrupted;
  if (r.end && !was_interrupted) {
    r.end->state = item_state::interrupted;
    r.end->reason = std::string("its ") + (fd == 1 ? "stdout" : "stderr") +
                    (error == stream_stalled
                         ? " was not being read when the run stopped"
                         : " could not be written: " + std::string(std::strerror(error)));
    r.end->stderr_tail.clear();
  }
  stop_for_lost_output(error, r.item, fd);
}

void batch_runner::stop_for_lost_output(int error, std::size_t item, int fd) {
  // Every later item would lose its output too: stop. A stop by a signal that came first
  // keeps its exit status (see the end of run()).
  const std::string stream = fd == 1 ? "stdout" : "stderr";
  if (error == EPIPE) {
    // A pipe whose reader is gone: `polymap run ... | head -n 1`. Stopped as by SIGPIPE,
    // which polymap ignores while it runs the batch (run_batch).
    if (stop_signal_ != 0) return;  // stopping already; a second stop would kill at once
    // Said on stderr with a journal, whose items a rerun resumes (without one, as quietly as
    // `yes | head` ends), unless stderr is the pipe (the stream that failed, or stdout's pipe
    // under 2>&1), where nobody would read it.
    if (!options_.journal.empty() && fd != 2 && !same_file(fd, 2)) {
      say(line_kind::error, stream + " is a pipe whose reader has gone: stopping" + rerun_note());
    }
    stop(SIGPIPE, mono_now());
    return;
  }
  if (error == stream_stalled) {
    // Stopping already (a signal): said once, on the other stream.
    if (!stall_said_) {
      say(line_kind::error, stream + " is not being read: the output of item " +
                                std::to_string(item + 1) +
                                " and of the items after it is not written" + rerun_note());
    }
    stall_said_ = true;
    return;
  }
  if (!output_failure_.empty()) return;
  // Most likely a full disk under a stdout or stderr redirected to a file.
  const bool log_here = fd == 1 && joblog_ && joblog_->on_stdout();  // --joblog -
  output_failure_ = std::string("cannot write the output ") + (log_here ? "or joblog line " : "") +
                    "of item " + std::to_string(item + 1) + " to " + stream + ": " +
                    std::strerror(error);
  say(line_kind::error, output_failure_ + "; stopping");  // not on a stderr that failed: say()
  stop_jobs(SIGTERM, mono_now());
}

void batch_runner::stop(int sig, double now) {
  // Start nothing new, stop the running jobs and record them interrupted, so that a rerun
  // resumes them. A second stop means "now": no grace for the jobs.
  stop_jobs(stop_signal_ != 0 ? SIGKILL : SIGTERM, now);
  stop_signal_ = sig;
  ++stops_;
}

void batch_runner::stop_jobs(int sig, double now) {
  draining_ = true;
  if (stopping_since_ == 0) stopping_since_ = now;
  for (std::size_t slot = 0; slot < jobs_.size(); ++slot) {
    job& j = jobs_[slot];
    // One that ended already ends as it ended (job_exited() tells one that a stopping
    // signal ended, which may be this stop's).
    if (!j.busy || j.exited || j.held) continue;
    j.stopped = true;
    signal_job(slot, sig);
    // Another rank sends the SIGKILL after a SIGTERM itself (it sees the group's end).
    if (sig != SIGKILL && j.kill_at == 0 && !j.remote) j.kill_at = now + kill_grace;
  }
}

void batch_runner::check_deadlines(double now) {
  std::erase_if(lingering_, [&](const std::pair<pid_t, double>& group) {
    if (now < group.second) return false;
    kill(-group.first, SIGKILL);
    guard_->remove(group.first);
    return true;
  });
  for (std::size_t slot = 0; slot < jobs_.size(); ++slot) {
    job& j = jobs_[slot];
    if (!j.busy || j.held || j.exited) continue;
    if (j.deadline > 0 && now >= j.deadline && !j.timed_out && !j.stopped) {
      j.timed_out = true;
      signal_job(slot, SIGTERM);
      if (!j.remote) j.kill_at = now + kill_grace;
    }
    if (j.kill_at > 0 && now >= j.kill_at) {
      signal_job(slot, SIGKILL);
      j.kill_at = 0;
    }
  }
}

void batch_runner::handle_signals(double now) {
  // The jobs that ended are collected before a stop marks them (an end that came first is
  // kept as it came), and reaped whether SIGCHLD came or not: a write that waited may have
  // collected exits whose SIGCHLD an earlier read took (collect_exits()).
  collect_exits(now);
  read_signals(signal_fd_, now);
  if (!rank_stop_note_.empty()) say(line_kind::warning, std::exchange(rank_stop_note_, {}));
  reap();
  end_held_jobs(now);
}

void batch_runner::read_signals(int fd, double now) {
  // SIGCHLD says nothing that reap() does not look for anyway.
  signalfd_siginfo info{};
  while (read(fd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    const int sig = static_cast<int>(info.ssi_signo);
    if (sig == SIGCHLD || sig == SIGCONT) continue;  // a continue is taken in suspend()
    if (sig == SIGTSTP) {
      suspend(now);
      now = mono_now();
      continue;
    }
    stopping_signal(sig, now);  // SIGINT, SIGTERM or SIGHUP (the terminal went away)
  }
}

void batch_runner::suspend(double now) {
  // As a shell's Ctrl-Z stops a pipeline: every job here, then the runner, with SIGSTOP
  // (which no job can ignore). Jobs on other ranks run on.
  for (const job& j : jobs_) {
    if (j.busy && !j.remote && j.pid > 0 && !j.exited && !j.held) kill(-j.pid, SIGSTOP);
  }
  // A continue that came meanwhile (it waits, blocked, in the signalfd) would be undone by
  // the stop: there is nothing left to wait for.
  sigset_t pending;
  if (sigpending(&pending) != 0 || sigismember(&pending, SIGCONT) != 1) {
    raise(SIGSTOP);  // returns once continued (fg, bg, kill -CONT)
  }
  const double paused = mono_now() - now;
  for (job& j : jobs_) {
    if (!j.busy || j.remote) continue;
    if (j.pid > 0 && !j.exited && !j.held) kill(-j.pid, SIGCONT);
    // Time spent stopped is no job's run time: a --timeout counts what it ran.
    if (j.deadline > 0) j.deadline += paused;
    if (j.kill_at > 0) j.kill_at += paused;
  }
}

void batch_runner::stopping_signal(int sig, double now, bool from_elsewhere) {
  // One signal that reaches every rank (mpirun, a scheduler) is one stop, whichever rank hears
  // it first: after a stop that came from elsewhere, this rank's own first signal is that
  // stop reaching it too, not a second one (which kills at once).
  if (!from_elsewhere && same_stop_due_) {
    same_stop_due_ = false;
  } else {
    stop(sig, now);
    same_stop_due_ = from_elsewhere;
  }
  if (stop_signal_at_ == 0) stop_signal_at_ = now;
  // A job that such a signal ended a moment ago got it with the runner: stopped by it.
  for (job& j : jobs_) {
    if (j.busy && j.held && now <= j.release_at) j.stopped = true;
  }
}

void batch_runner::renew_lease_if_due(double now) {
  if (!journal_ || now - last_lease_ < lease_interval) return;
  last_lease_ = now;
  journal_->renew_lease();
}

double batch_runner::next_wakeup(double now) const {
  double wake = next_job_wakeup(now + (journal_ ? lease_interval : 3600.0));
  for (const job& j : jobs_) {
    if (j.busy && j.held) wake = std::min(wake, j.release_at);
    if (j.busy && j.exited) wake = now;  // collected during a write: reap() takes it
  }
  if (!draining_ && !retries_.empty()) wake = std::min(wake, retries_.top().first);
  if (!draining_ && spawn_blocked_until_ > now) wake = std::min(wake, spawn_blocked_until_);
  if (tty_progress_) wake = std::min(wake, now + progress_interval);
  // No descriptor tells of a message from another rank: looked for now and then.
  if (ranks_ != nullptr) wake = std::min(wake, now + ranks_->poll_interval());
  return wake;
}

double batch_runner::next_job_wakeup(double wake) const {
  // What check_deadlines() does next: a SIGTERM at a --timeout, a SIGKILL after one.
  for (const auto& group : lingering_) wake = std::min(wake, group.second);
  for (const job& j : jobs_) {
    if (!j.busy || j.held || j.exited) continue;
    if (j.deadline > 0 && !j.timed_out && !j.stopped) wake = std::min(wake, j.deadline);
    if (j.kill_at > 0) wake = std::min(wake, j.kill_at);
  }
  return wake;
}

void batch_runner::release_unstarted() {
  // Claimed but never started: give them back untouched, for this or another runner.
  for (std::size_t item : queue_) {
    item_end e;
    e.id = status_[item].journal_id;
    e.state = item_state::pending;
    ends_.push_back(e);
  }
  queue_.clear();
  // A retry that a stop or a drain cancelled ends interrupted, as a stopped job does: it
  // runs again on the next run, and --json and the summary say so.
  std::vector<std::size_t> cancelled;
  for (; !retries_.empty(); retries_.pop()) cancelled.push_back(retries_.top().second);
  for (std::size_t i : cancelled) {
    const item_status& st = status_[i];
    item_outcome end;
    end.state = item_state::interrupted;
    end.exit_code = st.last_exit;
    end.signal = st.last_signal;
    end.reason = "interrupted before its retry";
    end.start_wall = wall_now();
    end.runtime = st.last_runtime;
    end.stdout_dropped = true;  // with the last attempt's stderr, when its retry was queued
    end_item(i, st.slot, std::move(end));
  }
}

void batch_runner::draw_progress(bool last) {
  if (!tty_progress_ || out_.error(2) != 0) return;
  const double now = mono_now();
  if (!last && now - last_progress_ < progress_interval) return;
  last_progress_ = now;
  const std::size_t ended = done_ + failed_;
  const double elapsed = now - started_;
  const double rate = elapsed > 0 ? static_cast<double>(ended) / elapsed : 0;
  const std::size_t left = total_ > ended ? total_ - ended : 0;
  const double eta = rate > 0 ? static_cast<double>(left) / rate : 0;
  constexpr int width = 30;
  const int filled =
      total_ == 0
          ? width
          : static_cast<int>(width * static_cast<double>(ended) / static_cast<double>(total_));
  std::string bar(static_cast<std::size_t>(std::clamp(filled, 0, width)), '#');
  bar.resize(width, '.');
  char line[256];
  const int length = std::snprintf(
      line, sizeof line,
      "\r[%s] %zu/%zu ended: %zu done, %zu failed, %zu running, %.1f/s, ETA %.0fs \x1b[K%s",
      bar.c_str(), ended, total_, done_, failed_, busy_count(), rate, eta, last ? "\n" : "");
  // Through the output's writes: a terminal paused with Ctrl-S holds it, not the run.
  if (length > 0) {
    const std::size_t size = std::min(sizeof line - 1, static_cast<std::size_t>(length));
    (void)out_.put(2, std::string_view(line, size));
  }
}

void batch_runner::fit_jobs_to_fd_limit() {
  // A running job holds a memfd for its stdout and one for its stderr when they are
  // captured. Past the open-file limit memfd_create fails half-way through the batch, so
  // run fewer jobs at a time instead, as GNU parallel does. (The other ranks fit their own
  // slots; the end of one of their jobs takes two captures here for a moment: reap().)
  const bool capture_out = options_.keep_order || options_.json || !options_.results.empty();
  const bool capture_err = capture_out || journal_ != nullptr;
  const std::size_t per_job = (capture_out ? 1 : 0) + (capture_err ? 1 : 0);
  const fd_fit fit = jobs_within_fd_limit(jobs_.size(), per_job);
  if (fit.jobs >= jobs_.size()) return;
  if (fit.jobs == 0) {
    throw std::runtime_error("the open-file limit (ulimit -n " + std::to_string(fit.limit) +
                             ") leaves no file descriptor for a job's output: raise it");
  }
  say(line_kind::warning, "-j " + std::to_string(jobs_.size()) + " needs " +
                              std::to_string((jobs_.size() - fit.jobs) * per_job) +
                              " more file descriptors than the open-file limit (ulimit -n " +
                              std::to_string(fit.limit) + ") allows: running " +
                              std::to_string(fit.jobs) + " jobs at a time");
  jobs_.resize(fit.jobs);
}

void batch_runner::add_rank_slots() {
  local_slots_ = jobs_.size();
  // A job is no rank of an MPI job that started polymap (one rank of one, too: `srun -n 1`).
  if (ranks_ != nullptr || detail::mpi_launcher_ranks() == 1) {
    environment_ = job_environment(0, ranks_ != nullptr ? ranks_->ranks() : 1);
    envp_ = pointers_to(environment_);
  }
  if (ranks_ == nullptr) return;
  jobs_.resize(local_slots_ + ranks_->slots());
  for (std::size_t slot = local_slots_; slot < jobs_.size(); ++slot) jobs_[slot].remote = true;
}

int batch_runner::run() {
  // The --results folder was checked by the caller (prepare_results_dir) before this.
  // The --joblog file first, while a signal still ends polymap: opening a FIFO waits for its
  // reader, which may never come. A journal run appends to it (its earlier runs' lines).
  if (!options_.joblog.empty()) {
    joblog_ = std::make_unique<joblog>(options_.joblog, !options_.journal.empty());
  }
  jobs_.resize(options_.jobs);
  // The guard is forked first, before SQLite opens anything.
  guard_ = std::make_unique<detail::orphan_guard>();
  null_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  sigset_t handled = runner_signals();
  // Ctrl-Z, and the continue after it: the jobs, in sessions of their own, are out of the
  // terminal's reach, so the runner pauses them (suspend()).
  sigaddset(&handled, SIGTSTP);
  sigaddset(&handled, SIGCONT);
  sigprocmask(SIG_BLOCK, &handled, nullptr);
  signal_fd_ = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
  if (signal_fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "signalfd");
  }

  if (!options_.journal.empty()) {
    try {
      open_journal();
    } catch (...) {
      if (joblog_) joblog_->remove_if_unwritten();
      throw;
    }
  }
  total_ = journal_ ? total_ : items_.size();
  if (joblog_ && joblog_->wants_header()) {
    // Through the output's writes, which a stdout or FIFO nobody reads does not hold.
    if (joblog_->on_stdout()) {
      (void)out_.put(1, joblog::header);
    } else {
      write_joblog(joblog::header);
    }
  }
  // Each failed item gets a line on stderr, unless the joblog is written there (a line per
  // job). --json's events may share stderr's stream (2>&1): then say() keeps to JSON lines.
  report_failures_ = !(joblog_ && same_file(joblog_->fd(), 2));
  json_on_stderr_ = options_.json && out_.shared() && isatty(2) == 0;
  fit_jobs_to_fd_limit();
  add_rank_slots();
  if (const int ranks = detail::mpi_launcher_ranks(); ranks > 1 && !ranks_ && !journal_) {
    say(line_kind::warning,
        "one of " + std::to_string(ranks) +
            " ranks of an MPI job, without --journal: every rank runs every item (" +
            (POLYMAP_HAS_MPI ? "MPI sees this process alone"
                             : "this polymap was built without MPI") +
            "; the ranks of one machine share a batch through one --journal on a local disk)");
  }
  // Each slot's CPUs, for the number of jobs that will run at once.
  const topology& topo = topology::current();
  for (std::size_t slot = 0; slot < local_slots_; ++slot) {
    slot_cpus_.push_back(options_.bind == polymap::bind::none
                             ? std::vector<int>{}
                             : detail::worker_cpus(topo, options_.bind, slot, local_slots_, {}));
  }
  slot_cpus_.resize(jobs_.size());  // each of the other ranks binds its own
  tty_progress_ = options_.progress && isatty(2) != 0;
  started_ = last_lease_ = mono_now();

  try {
    // A signal that came while the journal loaded (which may take seconds) stops the run
    // before any job starts: the loop below claims and starts before it polls.
    handle_signals(started_);
    for (;;) {
      double now = mono_now();
      // Ends are committed before their slots are reused: when the runner dies, the items
      // it ran but did not record are at most the ones that were running and, under -k,
      // the ones whose output it held back (an end waits for its output: written()).
      commit_journal();
      fill_slots(now);
      commit_journal();  // ends of items that could not even start
      draw_progress(false);
      const bool retries_waiting = !draining_ && !retries_.empty();
      if (busy_count() == 0 && !retries_waiting && (draining_ || !more_work())) {
        if (journal_ && !draining_ && !looked_again_) {
          // Before it ends, a runner claims once more: another runner may have died, or
          // stopped and given its items back (interrupted), since the last claim.
          journal_->reclaim_dead();
          journal_exhausted_ = false;
          looked_again_ = true;
          continue;
        }
        break;
      }
      const double wake = next_wakeup(now);
      pollfd fd{signal_fd_, POLLIN, 0};
      const double wait_ms = std::max(0.0, std::ceil((wake - now) * 1000));
      const int ready = poll(&fd, 1, static_cast<int>(std::min(wait_ms, 3600000.0)));
      if (ready < 0 && errno != EINTR) {
        throw std::system_error(errno, std::generic_category(), "poll");
      }
      now = mono_now();
      handle_signals(now);
      check_deadlines(now);
      if (journal_ && now - last_lease_ >= lease_interval) {
        renew_lease_if_due(now);
        if (journal_exhausted_) {
          // Idle slots claim again: items of a runner that died, or that stopped and gave
          // them back, are claimable now.
          journal_->reclaim_dead();
          journal_exhausted_ = false;
        }
      }
    }
    release_unstarted();
    out_.write_held();  // and their ends are committed below
    if (journal_) {
      draining_ = true;
      commit_journal();
    }
  } catch (const journal_error& e) {
    // Stop: nothing more can be recorded. What was committed stays; the running jobs are
    // stopped, and the next run re-runs what this one could not record.
    journal_failure_ = e.what();
    stop_jobs(SIGTERM, mono_now());
    while (busy_count() > 0) {
      pollfd fd{signal_fd_, POLLIN, 0};
      poll(&fd, 1, 100);
      handle_signals(mono_now());
      check_deadlines(mono_now());
    }
  }
  out_.write_held();  // what a journal error left held: the ends it adds are not recorded
  draw_progress(true);
  if (journal_) journal_->finish_runner();
  journal_.reset();
  guard_.reset();
  if (options_.json) {
    // The run is over: a summary that cannot be written loses no item.
    (void)out_.put(1, json_text({{"event", "summary"},
                            {"done", done_},
                            {"failed", failed_},
                            {"interrupted", interrupted_},
                            {"halted", halted_},
                            {"signal", stop_signal_},
                            {"failed_earlier", failed_before_}}));
  }
  if (failed_ > 0) {
    say(line_kind::summed, std::to_string(failed_) + " of " + std::to_string(total_) +
                               (total_ == 1 ? " item" : " items") + " failed");
  }
  // The exit status: the first of these that applies. A journal error, 1: ends may be missing
  // from it, the most serious. A stop by a signal that the user or the batch system sent,
  // 128+signal. A stdout or stderr whose reader has gone, 141 (stop_signal_ is SIGPIPE then:
  // stop() lets a signal that comes later replace it, and stop_for_lost_output() never
  // replaces a signal's). A --results file or output that could not be written, 1. A halt or
  // failed items, 1.
  if (!journal_failure_.empty()) {
    say(line_kind::error, journal_failure_);
    return 1;
  }
  const bool write_failed = !results_failure_.empty() || !output_failure_.empty();
  if (write_failed && !options_.journal.empty()) {
    // Said when it happened; said again with what a rerun does (without a journal, the
    // same line twice).
    const std::string& why = results_failure_.empty() ? output_failure_ : results_failure_;
    say(line_kind::error, "stopped: " + why + rerun_note());
  }
  if (stop_signal_ != 0) return 128 + stop_signal_;
  if (write_failed) return 1;
  if (failed_before_ > 0) {
    // The batch is not all done: say why nothing ran for those items, and how to run them
    // (the summary event's "failed_earlier" says it among --json's lines).
    say(line_kind::summed, std::to_string(failed_before_) +
                               " item(s) failed in earlier runs of this journal and were not "
                               "run again: add --retry-failed to run them again (polymap "
                               "status --journal " +
                               options_.journal + " shows them)");
  }
  return failed_ > 0 || halted_ || failed_before_ > 0 ? 1 : 0;
}

/// Ignores SIGPIPE and SIGXFSZ while it lives: a write to a pipe whose reader is gone then
/// fails with EPIPE, and one past the file size limit (ulimit -f) with EFBIG, which the
/// runner handles (it stops, and records what it stopped), rather than killing polymap with
/// its jobs unrecorded. The jobs still start with the default dispositions: an ignored signal
/// stays ignored across exec, so spawn_job resets them in the child.
class signals_ignored {
 public:
  signals_ignored() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    for (std::size_t i = 0; i < signals.size(); ++i) sigaction(signals[i], &ignore, &old_[i]);
  }
  signals_ignored(const signals_ignored&) = delete;
  signals_ignored& operator=(const signals_ignored&) = delete;
  ~signals_ignored() {
    for (std::size_t i = 0; i < signals.size(); ++i) sigaction(signals[i], &old_[i], nullptr);
  }

 private:
  static constexpr std::array<int, 2> signals = {SIGPIPE, SIGXFSZ};
  std::array<struct sigaction, 2> old_{};
};

}  // namespace

void prepare_results_dir(const std::string& dir) {
  make_dir(dir);
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    throw std::runtime_error("cannot write in --results directory '" + dir +
                             "': " + std::strerror(errno));
  }
  // What access() says is not the last word (root may write anywhere by its modes, yet not
  // in /proc, on a read-only mount or a full disk): a folder is made there, as items' are.
  std::string probe = dir + "/.polymap-check-XXXXXX";
  if (mkdtemp(probe.data()) == nullptr) {
    throw std::runtime_error("cannot make folders in --results directory '" + dir +
                             "': " + std::strerror(errno));
  }
  (void)rmdir(probe.c_str());
}

int run_batch(const run_options& options, const command_template& command,
              const item_product& items, rank_link* ranks) {
  const signals_ignored ignored;
  batch_runner runner(options, command, items, ranks);
  return runner.run();
}

}  // namespace polymap::cli::run
