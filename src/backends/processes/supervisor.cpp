// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/processes/supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/remote.hpp>
#include <polymap/detail/run_items.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <string_view>
#include <system_error>

#include "backends/processes/worker_process.hpp"
#include "topology/binding.hpp"

namespace polymap::detail {

namespace {

/// Time a TERMed worker has to go before it gets KILL.
constexpr auto term_grace = std::chrono::milliseconds(50);
/// Longest sleep of the watcher: bounds how late it sees a cancel from another
/// thread and how stale the call's progress gets. Timeouts, retries and kills
/// wake it when they are due; workers' messages and deaths wake it at once.
constexpr auto max_wait = std::chrono::milliseconds(20);
/// How often the watcher looks for the exit of an ending worker it has no pidfd for.
constexpr auto exit_check = std::chrono::milliseconds(1);

[[nodiscard]] std::system_error posix_error(const char* what) {
  return std::system_error(errno, std::generic_category(),
                           std::string("polymap: processes backend: ") + what);
}

/// Whether child `pid` has ended, without reaping it (where it has no pidfd:
/// kernels without them, or a child gone before pidfd_open).
bool has_exited(pid_t pid) {
  siginfo_t info{};
  if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0) {
    return info.si_pid == pid;
  }
  // Not a child we can wait for: with SIGCHLD ignored, the kernel reaped it.
  return errno == ECHILD;
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

/// Keeps the call's result buffer out of the worker processes, when it is the
/// call's own: see fork_exclusion.
fork_exclusion exclude_results(const map_job& job) {
  const result_transfer& t = *job.transfer;
  if (t.fixed_target == nullptr || !t.target_private) return {};
  return {t.fixed_target(job.ctx) + job.begin * t.fixed_size,
          (job.end - job.begin) * t.fixed_size};
}

/// A signal's description: sigdescr_np takes no lock and writes nothing, unlike
/// strsignal (after a fork every page written costs the caller a fault).
std::string signal_text(int sig) {
  const char* text = sigdescr_np(sig);
  return text != nullptr ? text : "unknown signal";
}

/// `bytes` as the user would have written the limit: "64 MiB (67108864 bytes)".
std::string size_text(std::size_t bytes) {
  constexpr std::size_t mib = std::size_t{1} << 20;
  const std::string exact = std::to_string(bytes) + " bytes";
  if (bytes < mib || bytes % mib != 0) return exact;
  return std::to_string(bytes / mib) + " MiB (" + exact + ")";
}

std::string describe_death(failure_kind kind, int sig, int code, double timeout,
                           std::size_t memory_limit) {
  switch (kind) {
    case failure_kind::memory:
      return "ran out of memory: its allocations passed options::memory_limit of " +
             size_text(memory_limit) + "; its worker process was replaced";
    case failure_kind::timeout: {
      char text[96];
      std::snprintf(text, sizeof text, "ran past its timeout of %g s; its worker was killed",
                    timeout);
      return text;
    }
    case failure_kind::signal:
      return std::string("its worker process died of signal ") + std::to_string(sig) + " (" +
             signal_text(sig) + ")";
    case failure_kind::exit:
      if (code < 0) {
        return "its worker process ended and its exit status was lost: the program reaps "
               "children itself (SIGCHLD set to SIG_IGN, or a SIGCHLD handler that calls wait)";
      }
      return "its worker process exited with status " + std::to_string(code);
    default: return "its worker process ended";
  }
}

}  // namespace

supervisor::supervisor(const map_job& job, std::size_t workers)
    : job_(job),
      state_(*job.state),
      workers_(workers),
      timeout_(job.opts->timeout.count()),
      shared_(job.end, workers, job.transfer->fixed_size),
      private_results_(exclude_results(job)),
      self_(getpid()),
      wake_(*job.state) {
  shared_.control().next.store(job.begin, std::memory_order_relaxed);
  const result_transfer& t = *job.transfer;
  if (t.fixed_size != 0 && t.fixed_target != nullptr && direct_writes_allowed()) {
    shared_.write_directly(self_, t.fixed_target(job.ctx));
  }
  for (std::size_t s = workers; s-- > 0;) free_slots_.push_back(s);
}

supervisor::~supervisor() { kill_all(); }

supervisor::cancel_wake::cancel_wake(run_state& state) noexcept
    : state_(state), fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (fd_ >= 0) state_.set_cancel_wake(fd_);
}

supervisor::cancel_wake::~cancel_wake() {
  if (fd_ < 0) return;
  state_.set_cancel_wake(-1);  // no cancel writes to it any more
  close(fd_);
}

void supervisor::cancel_wake::drain() const noexcept {
  std::uint64_t count = 0;
  if (fd_ >= 0) (void)!read(fd_, &count, sizeof count);
}

void supervisor::kill_all() noexcept {
  // Reaped workers (pid -1) stay in live_ until the loop drops them: kill(-1)
  // would signal every process this one may signal.
  std::erase_if(live_, [](const worker& w) { return w.pid < 0; });
  for (worker& w : live_) kill(-w.pid, SIGKILL), kill(w.pid, SIGKILL);
  for (worker& w : live_) {
    int status = 0;
    while (waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
    }
    signal_guard::remove(w.pid);
    close(w.pidfd);
    close(w.pipe);
  }
  live_.clear();
}

bool supervisor::claims_left() const noexcept {
  return shared_.control().next.load(std::memory_order_relaxed) < job_.end;
}

void supervisor::spawn(std::size_t slot, std::optional<index_range> first) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw posix_error("pipe2");
  remote_slot& s = shared_.slot(slot);
  s.chunk_begin.store(0, std::memory_order_relaxed);
  s.chunk_end.store(0, std::memory_order_relaxed);
  s.current.store(remote_slot::none, std::memory_order_relaxed);
  s.started_ns.store(0, std::memory_order_relaxed);
  s.seg_begin.store(0, std::memory_order_relaxed);
  s.staged.store(0, std::memory_order_relaxed);
  s.ready.store(0, std::memory_order_relaxed);
  s.first_begun.store(0, std::memory_order_relaxed);
  s.out_of_memory.store(0, std::memory_order_relaxed);
  s.channel_lost.store(0, std::memory_order_relaxed);
  s.sent.store(0, std::memory_order_relaxed);  // counted anew, as its pipe is new
  s.kept.store(0, std::memory_order_relaxed);
  worker_setup setup{.job = &job_,
                     .shared = &shared_,
                     .slot = slot,
                     .workers = workers_,
                     .first = first,
                     .pipe = fds[1],
                     .parent = self_,
                     .memory_limit = job_.opts->memory_limit};
  // Nothing after the fork may throw: a worker not in live_ is never killed or reaped.
  live_.reserve(live_.size() + 1);
  // What this process printed but has not written yet would otherwise be
  // written again by every worker that flushes its copy.
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    const auto error = posix_error("fork");
    close(fds[0]);
    close(fds[1]);
    throw error;
  }
  if (pid == 0) {
    close(fds[0]);
    worker_main(setup);
  }
  note_forked();
  close(fds[1]);
  (void)setpgid(pid, pid);  // also done by the child: whichever runs first
  signal_guard::add(pid);
  worker w;
  w.pid = pid;
  w.pipe = fds[0];
  w.slot = slot;
  w.first = first;
  w.forked = clock::now();
  w.pidfd = pidfd_open(pid);
  (void)fcntl(w.pipe, F_SETFL, O_NONBLOCK);
  live_.push_back(std::move(w));
}

void supervisor::read_messages(worker& w) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = read(w.pipe, buffer, sizeof buffer);
    if (n > 0) {
      w.inbox.append(buffer, static_cast<std::size_t>(n));
      w.received += static_cast<std::uint64_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    // 0: the worker closed it, at its exit. Its pidfd says when the exit is over; the
    // pipe, at EOF, would wake the watcher at once, again and again, until then: a
    // busy loop on a core the dying worker and its replacement need.
    if (n == 0) w.pipe_closed = true;
    break;  // EAGAIN: nothing more now
  }
  handle_messages(w);
}

void supervisor::handle_messages(worker& w) {
  std::string_view in = w.inbox;
  const result_transfer& t = *job_.transfer;
  // Results of a chunk come in index order: their done flags are written as
  // runs, one write each.
  std::size_t run_begin = 0;
  std::size_t run_length = 0;
  auto mark_run = [&] {
    if (run_length != 0) shared_.mark_done(w.slot, run_begin, run_begin + run_length);
    run_length = 0;
  };
  while (!in.empty()) {
    std::string_view body = in.substr(1);
    const auto tag = static_cast<remote_tag>(in[0]);
    if (tag == remote_tag::result) {
      std::uint64_t head[2];
      if (body.size() < sizeof head) break;
      std::memcpy(head, body.data(), sizeof head);
      if (body.size() < sizeof head + head[1]) break;
      if (head[0] < job_.begin || head[0] >= job_.end) {
        in = {};  // not from a sound worker: stop listening to it
        break;
      }
      bool delivered = true;
      try {
        t.deliver(job_.ctx, head[0], body.substr(sizeof head, head[1]));
      } catch (...) {
        // A user's codec<T>::decode threw: this item failed, not the call.
        delivered = false;
        undecodable(head[0], std::current_exception());
        w.failed.push_back(head[0]);
      }
      if (delivered) {
        if (run_length != 0 && head[0] != run_begin + run_length) mark_run();
        if (run_length == 0) run_begin = head[0];
        ++run_length;
      }
      body.remove_prefix(sizeof head + head[1]);
    } else if (tag == remote_tag::failure) {
      item_failure f;
      if (!decode_failure(body, f)) break;
      f.backend = backend_kind::processes;  // not carried: every worker's is this
      if (t.deliver_failed != nullptr) t.deliver_failed(job_.ctx, f.index);
      failed_.push_back(f.index);
      w.failed.push_back(f.index);
      state_.add_failure(std::move(f));
    } else if (tag == remote_tag::cancel) {
      state_.cancel();
    } else if (tag == remote_tag::stop) {
      state_.request_stop();
    } else if (tag == remote_tag::idle) {
      w.idle = true;
    } else {
      // Only a worker whose memory was overwritten sends this: stop listening
      // to it.
      in = {};
      break;
    }
    in = body;
  }
  mark_run();
  w.inbox.erase(0, w.inbox.size() - in.size());
}

void supervisor::undecodable(std::size_t index, const std::exception_ptr& error) {
  if (job_.transfer->deliver_failed != nullptr) job_.transfer->deliver_failed(job_.ctx, index);
  failed_.push_back(index);
  const auto crashed = crashes_.find(index);
  state_.add_failure(
      item_failure{.index = index,
                   .backend = backend_kind::processes,
                   .kind = failure_kind::exception,
                   .what = "it ran, but the decode of its result in the caller failed "
                           "(polymap::codec<T>::decode threw): " +
                           describe(error),
                   .signal = 0,
                   .exit_code = 0,
                   .attempts = crashed == crashes_.end() ? 1u : crashed->second + 1});
  if (job_.opts->on_error == on_error::fail_fast) state_.request_stop();
}

void supervisor::item_died(std::size_t index, failure_kind kind, int sig, int code,
                           std::string what) {
  const unsigned attempts = ++crashes_[index];
  if (attempts <= job_.opts->retries && !state_.stopping()) {
    // Backoff: 10 ms, 20 ms, 40 ms ... up to a second, in a fresh worker.
    const double delay = std::min(1.0, 0.01 * std::pow(2.0, attempts - 1));
    retries_.push_back({index, clock::now() + std::chrono::duration_cast<clock::duration>(
                                                  std::chrono::duration<double>(delay))});
    return;
  }
  if (job_.transfer->deliver_failed != nullptr) job_.transfer->deliver_failed(job_.ctx, index);
  failed_.push_back(index);
  state_.add_failure(
      item_failure{.index = index,
                   .backend = backend_kind::processes,
                   .kind = kind,
                   .what = what.empty() ? describe_death(kind, sig, code, timeout_,
                                                         job_.opts->memory_limit)
                                        : std::move(what),
                   .signal = kind == failure_kind::signal ? sig : 0,
                   .exit_code = kind == failure_kind::exit ? code : 0,
                   .attempts = attempts});
  if (job_.opts->on_error == on_error::fail_fast) state_.request_stop();
}

void supervisor::reap(worker& w) {
  int status = 0;
  pid_t got;
  while ((got = waitpid(w.pid, &status, 0)) < 0 && errno == EINTR) {
  }
  try {
    settle(w, got, status);
  } catch (...) {
    forget(w);
    throw;
  }
  forget(w);
}

void supervisor::settle(worker& w, pid_t got, int status) {
  count_stillborn(w, got, status);
  read_messages(w);
  // The results it made but did not send (it died in its chunk): they count as received.
  if (const std::string_view kept = shared_.kept_messages(w.slot, w.received); !kept.empty()) {
    w.inbox.append(kept);
    w.received += kept.size();
    handle_messages(w);
  }
  // What it finished but had not written to the store yet.
  shared_.recover(w.slot);
  const remote_slot& s = shared_.slot(w.slot);
  const std::size_t b = s.chunk_begin.load(std::memory_order_acquire);
  const std::size_t e = s.chunk_end.load(std::memory_order_acquire);
  const std::size_t current = s.current.load(std::memory_order_relaxed);
  const bool mid_chunk = b < e && e <= job_.end;
  if (mid_chunk || w.killed || w.cancelled || got < 0 || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    // Its descendants go with it: an item's own children must not outlive its
    // worker.
    kill(-w.pid, SIGKILL);
  }
  if (const int error = s.store_error.load(std::memory_order_relaxed); error != 0) {
    // No item's fault: the call cannot keep its results.
    throw std::system_error(error, std::generic_category(),
                            "polymap: processes backend: a worker could not write its "
                            "results to the call's shared memory");
  }
  // Items it was forked to run but never began go to the next worker: nothing else
  // would account for them.
  const bool first_begun = s.first_begun.load(std::memory_order_acquire) != 0 ||
                           (w.first && b == w.first->begin && e == w.first->end);
  if (w.first && !first_begun && !state_.stopping()) pending_.push_back(*w.first);
  if (!mid_chunk) return;
  std::vector<std::uint8_t> done(e - b);
  shared_.read_flags(w.slot, b, e, done.data());
  // A worker keeps each failure in shared memory before its next item starts (and sends
  // them at the chunk's end), and shows its next chunk only after it claimed it: whether it
  // crashed later in the chunk or was killed between chunks (from outside), the failures
  // arrived above. Their items have no done flag, but must be neither blamed nor run again
  // (their outcome would be recorded twice).
  for (const std::size_t i : w.failed) {
    if (i >= b && i < e) done[i - b] = 1;
  }
  if (s.channel_lost.load(std::memory_order_acquire) != 0 && !w.killed && !w.cancelled) {
    channel_lost(b, done);
    return;
  }
  const bool culprit = current >= b && current < e && done[current - b] == 0;
  if (culprit && !w.cancelled) {
    failure_kind kind = failure_kind::exit;
    int sig = 0;
    int code = 0;
    if (w.killed) {
      kind = *w.killed;
    } else if (s.out_of_memory.load(std::memory_order_acquire) != 0) {
      kind = failure_kind::memory;  // it ended itself: see remote_channel::out_of_memory
    } else if (got < 0) {
      kind = failure_kind::exit;  // reaped by someone else (SIGCHLD ignored):
                                  // status unknown
      code = -1;
    } else if (WIFSIGNALED(status)) {
      kind = failure_kind::signal;
      sig = WTERMSIG(status);
    } else {
      code = WEXITSTATUS(status);
    }
    item_died(current, kind, sig, code);
  }
  // What it had not finished goes to the next worker, unless the call is
  // stopping.
  if (!state_.stopping()) {
    std::size_t run_begin = b;
    for (std::size_t i = b; i <= e; ++i) {
      const bool skip = i == e || done[i - b] != 0 || (culprit && i == current);
      if (skip) {
        if (run_begin < i) pending_.push_back({run_begin, i});
        run_begin = i + 1;
      }
    }
  }
}

void supervisor::channel_lost(std::size_t b, const std::vector<std::uint8_t>& done) {
  std::vector<std::size_t> unfinished;
  for (std::size_t k = 0; k < done.size(); ++k) {
    if (done[k] == 0) unfinished.push_back(b + k);
  }
  if (unfinished.size() == 1) {
    item_died(unfinished.front(), failure_kind::exit, 0, channel_lost_status,
              "it closed or replaced file descriptors it had not opened (its worker "
              "process's pipe or store, through which results reach the caller); the worker "
              "ended, and was replaced");
    return;
  }
  // Some item of the chunk did it, after the chunk's last message: each unfinished one runs
  // alone in the next workers, where the one that does it again is known.
  if (state_.stopping()) return;
  for (const std::size_t i : unfinished) pending_.push_back({i, i + 1});
}

void supervisor::count_stillborn(const worker& w, pid_t got, int status) {
  if (shared_.slot(w.slot).ready.load(std::memory_order_acquire) != 0 || w.killed ||
      w.cancelled) {
    stillborn_ = 0;
    return;
  }
  // Replacing such workers would go on for ever: whatever kills them (a fork
  // handler, the OOM killer) kills the next one too.
  const std::size_t limit = std::max<std::size_t>(8, 2 * workers_);
  if (++stillborn_ < limit) return;
  std::string last = "status unknown";
  if (w.hung_at_start) {
    char took[32];
    std::snprintf(took, sizeof took, "%g",
                  std::chrono::duration<double>(start_limit()).count());
    last = std::string("killed after ") + took +
           " s without becoming ready, more than options::timeout allows: a fork handler "
           "(pthread_atfork) or a lock that the fork left held may hang every new process";
  } else if (got >= 0 && WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    last = "signal " + std::to_string(sig) + " (" + signal_text(sig) + ")";
  } else if (got >= 0 && WIFEXITED(status)) {
    last = "exit status " + std::to_string(WEXITSTATUS(status));
  }
  throw error("polymap: processes backend: " + std::to_string(stillborn_) +
              " worker processes in a row ended before they could run an item (the last: " +
              last + ")");
}

void supervisor::forget(worker& w) noexcept {
  signal_guard::remove(w.pid);
  close(w.pidfd);
  close(w.pipe);
  free_slots_.push_back(w.slot);
  w.pid = -1;
}

void supervisor::terminate(worker& w, std::optional<failure_kind> why, clock::time_point now) {
  if (w.killed || w.cancelled) return;
  w.killed = why;
  w.cancelled = !why;
  kill(-w.pid, SIGTERM);
  kill(w.pid, SIGTERM);
  w.kill_at = now + term_grace;
}

void supervisor::check_timeouts(clock::time_point now) {
  const std::int64_t now_ns = now.time_since_epoch().count();
  const std::int64_t limit_ns = timeout_ns();
  for (worker& w : live_) {
    if (w.kill_at && now >= *w.kill_at) {
      kill(-w.pid, SIGKILL);
      kill(w.pid, SIGKILL);
      w.kill_at.reset();
    }
    if (timeout_ <= 0 || w.killed || w.cancelled) continue;
    const remote_slot& s = shared_.slot(w.slot);
    if (s.ready.load(std::memory_order_acquire) == 0) {
      // Not an item's timeout: no item has started. Killed at once (a fork handler may
      // ignore SIGTERM too), it counts as a worker that ended before it could run an item.
      if (!w.hung_at_start && now - w.forked >= start_limit()) {
        w.hung_at_start = true;
        kill(-w.pid, SIGKILL);
        kill(w.pid, SIGKILL);
      }
      continue;
    }
    const std::size_t current = s.current.load(std::memory_order_relaxed);
    const std::int64_t started = s.started_ns.load(std::memory_order_relaxed);
    if (current == remote_slot::none || started == 0) continue;
    // A worker clears `current` once its item is done: an item still there
    // after the limit is still running.
    if (now_ns - started >= limit_ns && s.current.load(std::memory_order_relaxed) == current) {
      terminate(w, failure_kind::timeout, now);
    }
  }
}

std::int64_t supervisor::timeout_ns() const noexcept {
  // At most about three years: a longer timeout never fires, and the clock's start plus it
  // must not overflow (a timeout of hours::max() would wrap to a negative limit).
  constexpr double most_ns = 1e17;
  return static_cast<std::int64_t>(std::min(timeout_ * 1e9, most_ns));
}

supervisor::clock::duration supervisor::start_limit() const noexcept {
  return std::max<clock::duration>(std::chrono::nanoseconds(timeout_ns()), std::chrono::seconds(2));
}

timespec supervisor::wait_time(clock::time_point now) const {
  clock::duration wait = max_wait;
  auto until = [&](clock::time_point t) {
    wait = std::min(wait, std::max(t - now, clock::duration(0)));
  };
  for (const worker& w : live_) {
    if (w.kill_at) until(*w.kill_at);
    if (timeout_ <= 0 || w.killed || w.cancelled) continue;
    const remote_slot& s = shared_.slot(w.slot);
    if (s.ready.load(std::memory_order_acquire) == 0 && !w.hung_at_start) {
      until(w.forked + start_limit());  // see check_timeouts
      continue;
    }
    // The running item's deadline.
    const std::int64_t started = s.started_ns.load(std::memory_order_relaxed);
    if (s.current.load(std::memory_order_relaxed) != remote_slot::none && started != 0) {
      until(clock::time_point(clock::duration(started + timeout_ns())));
    }
  }
  for (const retry& r : retries_) until(r.due);
  // A worker without a pidfd that closed its pipe is ending: look for its exit soon.
  for (const worker& w : live_) {
    if (w.pidfd < 0 && w.pipe_closed) until(now + exit_check);
  }
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
  return {.tv_sec = static_cast<time_t>(ns / 1'000'000'000),
          .tv_nsec = static_cast<long>(ns % 1'000'000'000)};
}

void supervisor::update_progress() {
  std::size_t done = 0;
  for (std::size_t s = 0; s < workers_; ++s) {
    done += shared_.slot(s).done.load(std::memory_order_relaxed);
  }
  if (done > progress_seen_) {
    state_.add_done(done - progress_seen_);
    progress_seen_ = done;
  }
}

void supervisor::run(run_report* report) {
  std::vector<pollfd> fds;
  fds.reserve(2 * workers_ + 1);
  for (;;) {
    const auto now = clock::now();
    if (state_.stopping() && !stop_sent_) {
      stop_sent_ = true;
      shared_.control().stop.store(true, std::memory_order_relaxed);
      pending_.clear();
      retries_.clear();
      // A cancel ends running items too; a failure (fail_fast) lets them
      // finish.
      if (state_.cancelled()) {
        for (worker& w : live_) terminate(w, std::nullopt, now);
      }
    }
    for (auto it = retries_.begin(); it != retries_.end();) {
      if (it->due <= now) {
        pending_.push_back({it->index, it->index + 1});
        it = retries_.erase(it);
      } else {
        ++it;
      }
    }
    // Keep the workers up: replace the dead while there is work for them.
    while (!stop_sent_ && !free_slots_.empty() && (!pending_.empty() || claims_left())) {
      const std::size_t slot = free_slots_.back();
      std::optional<index_range> first;
      if (!pending_.empty()) first = pending_.back();
      try {
        spawn(slot, first);
      } catch (const std::system_error&) {
        if (!live_.empty()) break;  // carry on with fewer workers; retried next round
        throw;
      }
      if (first) pending_.pop_back();  // only now: a failed fork keeps the items pending
      free_slots_.pop_back();
      ++spawned_;
    }
    if (live_.empty() && pending_.empty() && retries_.empty()) {
      if (finished_ || !requeue_lost()) break;
      continue;
    }

    fds.clear();
    for (const worker& w : live_) {
      fds.push_back({w.pipe_closed ? -1 : w.pipe, POLLIN, 0});  // poll skips a negative fd
      fds.push_back({w.pidfd, POLLIN, 0});
    }
    fds.push_back({wake_.fd(), POLLIN, 0});  // last: the workers' are at 2k and 2k + 1
    const timespec wait = wait_time(now);
    const int ready = ppoll(fds.data(), fds.size(), &wait, nullptr);
    if (ready < 0 && errno != EINTR) throw posix_error("ppoll");
    if ((fds.back().revents & POLLIN) != 0) wake_.drain();  // the loop's top sees the stop
    for (std::size_t k = 0; k < live_.size(); ++k) {
      worker& w = live_[k];
      if ((fds[2 * k].revents & (POLLIN | POLLHUP)) != 0) read_messages(w);
      if (w.pidfd >= 0 ? (fds[2 * k + 1].revents & POLLIN) != 0 : has_exited(w.pid)) reap(w);
    }
    std::erase_if(live_, [](const worker& w) { return w.pid < 0; });
    check_timeouts(clock::now());
    update_progress();
    // Once every worker is done, gather the results while they wind down (a
    // process's exit takes milliseconds).
    if (!finished_ && pending_.empty() && retries_.empty() && (stop_sent_ || !claims_left()) &&
        std::all_of(live_.begin(), live_.end(), [](const worker& w) { return w.idle; }) &&
        !requeue_lost()) {
      finish();
    }
  }
  if (!finished_) finish();
  if (report != nullptr) {
    report->backend = backend_kind::processes;
    // The workers that took part: those that were up (placed) or ran items, in the slot's
    // last worker or an earlier one. A call that ends before a worker process is up does
    // not wait for it.
    report->worker_reports.clear();
    for (std::size_t s = 0; s < workers_; ++s) {
      const remote_slot& slot = shared_.slot(s);
      if (slot.ready.load(std::memory_order_acquire) == 0 && slot.busy_items.load() == 0) {
        continue;
      }
      const placement& p = shared_.place(s);
      worker_report r{.worker = s};
      r.bound = p.bound.load() != 0;
      if (r.bound) {
        r.cpus = worker_cpus(topology::current(), job_.opts->bind, s, workers_, job_.opts->cpus);
      }
      if (job_.opts->nice) {
        r.nice = p.nice.load();
        r.nice_applied = p.nice_applied.load() != 0;
      }
      report->worker_reports.push_back(std::move(r));
    }
    report->workers = report->worker_reports.size();
    if (spawned_ > workers_) {
      report->note = std::to_string(spawned_ - workers_) +
                     " worker processes replaced after a crash, a timeout or an exit";
    }
  }
}

std::size_t supervisor::staged_done() const noexcept {
  // Staged items count as done once their segment is in the store, written by
  // their worker or by the caller from a dead worker's ring, and never twice: the
  // count never overstates (a worker that dies between emptying its ring and
  // counting it leaves it short, which costs a read of the flags). Results sent
  // as messages may be counted and then lost with their worker: for them it is
  // no count at all.
  const result_transfer& t = *job_.transfer;
  if (t.deliver != nullptr && t.fixed_size == 0) return 0;
  std::size_t done = 0;
  for (std::size_t s = 0; s < workers_; ++s) {
    done += shared_.slot(s).done.load(std::memory_order_relaxed);
  }
  return done;
}

bool supervisor::all_staged_done() const noexcept {
  // When nothing failed or stopped and the counts add up, every item is in the
  // store.
  if (state_.stopping() || state_.failed() != 0) return false;
  return staged_done() == job_.end - job_.begin;
}

bool supervisor::requeue_lost() {
  // A stopped call leaves items unrun on purpose.
  if (state_.stopping()) return false;
  if (staged_done() + failed_.size() == job_.end - job_.begin) return false;
  std::sort(failed_.begin(), failed_.end());
  auto failed = failed_.cbegin();
  const std::size_t before = pending_.size();
  // Items [b, e) are not done: all but the failed ones are lost.
  auto requeue = [&](std::size_t b, std::size_t e) {
    for (std::size_t i = b; i < e;) {
      failed = std::lower_bound(failed, failed_.cend(), i);
      const std::size_t stop = failed != failed_.cend() && *failed < e ? *failed : e;
      if (i < stop) pending_.push_back({i, stop});
      i = stop + 1;
    }
  };
  // Done runs come store by store: put them in index order first.
  std::vector<index_range> done;
  shared_.for_each_done_run(job_.begin, job_.end,
                            [&](std::size_t, std::size_t b, std::size_t e, bool) {
                              done.push_back({b, e});
                            });
  std::sort(done.begin(), done.end(),
            [](const index_range& x, const index_range& y) { return x.begin < y.begin; });
  std::size_t next = job_.begin;  // the first item not looked at
  for (const index_range& r : done) {
    requeue(next, std::max(next, r.begin));
    next = std::max(next, r.end);
  }
  requeue(next, job_.end);
  return pending_.size() != before;
}

void supervisor::finish() {
  finished_ = true;
  // Every item whose done flag is set succeeded; gather them as ranges (for the
  // partial results of a failed call) and read their fixed-size results from
  // the store.
  const result_transfer& t = *job_.transfer;
  std::byte* target = t.fixed_target != nullptr ? t.fixed_target(job_.ctx) : nullptr;
  std::vector<std::byte> staging;
  std::vector<index_range> ranges;
  std::size_t succeeded = 0;
  auto deliver = [&](std::size_t store, std::size_t b, std::size_t e, bool in_store) {
    ranges.push_back({b, e});
    succeeded += e - b;
    if (target != nullptr) {
      // With direct writes, results are in place already, unless a refusal sent
      // them to the store.
      if (!shared_.writes_directly() || in_store) {
        shared_.read_results(store, b, e, target + b * t.fixed_size);
      }
    } else if (t.deliver_fixed != nullptr) {
      staging.resize((e - b) * t.fixed_size);
      shared_.read_results(store, b, e, staging.data());
      t.deliver_fixed(job_.ctx, b, e, staging.data());
    }
  };
  bool refused = false;  // some worker was refused direct writes
  for (std::size_t s = 0; s < workers_; ++s) {
    refused = refused || shared_.slot(s).stored.load(std::memory_order_relaxed) != 0;
  }
  // No flag to read when every item is done and its result is in place (direct
  // writes) or in the one store there is.
  if (!refused && (shared_.writes_directly() || workers_ == 1) && all_staged_done()) {
    deliver(0, job_.begin, job_.end, false);
  } else {
    shared_.for_each_done_run(job_.begin, job_.end, deliver);
  }
  double busy = 0;
  std::size_t busy_items = 0;
  for (std::size_t s = 0; s < workers_; ++s) {
    busy += static_cast<double>(shared_.slot(s).busy_ns.load()) * 1e-9;
    busy_items += shared_.slot(s).busy_items.load();
  }
  state_.add_worker({}, ranges, busy, busy_items);
  // Progress counted items as the workers finished them; the flags are the
  // truth.
  const std::size_t truth = succeeded + state_.failed();
  if (truth > progress_seen_) {
    state_.add_done(truth - progress_seen_);
    progress_seen_ = truth;
  }
}

}  // namespace polymap::detail
