// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/threads/thread_pool.hpp"

#include <polymap/detail/execute.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include "backends/threads/futex.hpp"
#include "worker_flag.hpp"
#include "chunk_sizer.hpp"
#include "once_per_process.hpp"
#include "topology/binding.hpp"

#include <linux/capability.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <system_error>
#include <vector>

namespace polymap::detail {

namespace {

constexpr std::uint64_t closed_bit = std::uint64_t{1} << 31;
constexpr std::uint64_t count_mask = closed_bit - 1;

/// How long a worker (or a waiting caller) spins before it sleeps: long enough to catch
/// back-to-back calls, short enough not to steal a core from other work for long.
constexpr auto spin_time = std::chrono::microseconds(50);

template <class Pred>
bool spin_until(Pred&& done) noexcept {
  const auto deadline = std::chrono::steady_clock::now() + spin_time;
  for (unsigned i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) return false;
  }
}

}  // namespace

/// One participant's range of unclaimed items. `begin`/`end` change under `lock`; they
/// are atomics only so that a thief may glance at them without the lock.
struct alignas(64) thread_pool::slot {
  std::atomic<bool> lock{false};
  std::atomic<std::size_t> begin{0};
  std::atomic<std::size_t> end{0};
  alignas(64) worker_context ctx{};  // what its worker did in the current call

  void acquire() noexcept {
    while (lock.exchange(true, std::memory_order_acquire)) {
      while (lock.load(std::memory_order_relaxed)) cpu_relax();
    }
  }
  void release() noexcept { lock.store(false, std::memory_order_release); }
  [[nodiscard]] std::size_t size_hint() const noexcept {
    const std::size_t b = begin.load(std::memory_order_relaxed);
    const std::size_t e = end.load(std::memory_order_relaxed);
    return e > b ? e - b : 0;
  }
};

/// A pool thread and what the OS has applied to it.
struct thread_pool::worker {
  std::size_t index = 0;
  std::thread thread;
  std::vector<int> applied_cpus;     // empty: never bound by us
  std::optional<int> original_nice;  // the nice it started with
  std::optional<int> applied_nice;   // the nice we set, when it differs
  std::uint32_t joined = 0;          // the last call it joined (or was made after)
};

namespace {

/// The process's pool, on the heap (see once_per_process: its start, which measures
/// fork-joins, takes milliseconds, and a fork meanwhile must not leave a child that waits
/// for it for ever).
constinit once_per_process<thread_pool*> the_pool;

/// The pools of at_nice(), by nice value + 20.
constexpr int nice_values = 40;
constinit once_per_process<thread_pool*> niced_pools[nice_values];

/// In a child forked from the program, the parent's pool is no use: its threads stayed in
/// the parent, and a call that waited for them would wait for ever. The child's first call
/// starts a pool of its own, elsewhere: the parent's is left as it was, since a call of it
/// may be on the forking thread's stack. (A worker process of the processes backend never
/// uses one.)
void forget_pool_in_child() noexcept {
  the_pool.forget();
  for (auto& pool : niced_pools) pool.forget();
}

/// Registered when the library is loaded, while the program has one thread: a fork cannot
/// fall between taking the registration on and making it, and children inherit it.
[[maybe_unused]] const int forget_registered =
    pthread_atfork(nullptr, nullptr, &forget_pool_in_child);

}  // namespace

thread_pool& thread_pool::instance() {
  return *the_pool.get([] { return new thread_pool(); });
}

thread_pool& thread_pool::at_nice(int nice) {
  const int at = std::clamp(nice + 20, 0, nice_values - 1);
  return *niced_pools[at].get([] { return new thread_pool(); });
}

bool thread_pool::keeps_nice(int nice) noexcept {
  const std::optional<int> now = this_thread_nice();
  if (!now || nice <= *now) return false;  // no higher: nothing to come back down from
  // Down to `now` takes an RLIMIT_NICE of 20 - now, or CAP_SYS_NICE.
  rlimit limit{};
  if (getrlimit(RLIMIT_NICE, &limit) == 0 &&
      (limit.rlim_cur == RLIM_INFINITY || 20 - static_cast<long>(limit.rlim_cur) <= *now)) {
    return false;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> caps{};
  if (syscall(SYS_capget, &header, caps.data()) != 0) return true;
  return ((caps[CAP_SYS_NICE / 32].effective >> (CAP_SYS_NICE % 32)) & 1U) == 0;
}

thread_pool::thread_pool() {
  const std::size_t usable = topology::current().usable_count();
  {
    std::lock_guard lock(run_mutex_);
    core_threads_ = usable > 1 ? usable - 1 : 0;
    try {
      grow(core_threads_);
    } catch (const std::system_error&) {
      // No thread to be had now (a process or cgroup limit): the pool works with those it
      // has, and each call that needs more tries again (and says so if it cannot).
    }
  }
  fork_join_seconds_.store(workers_.empty() ? 0 : measure_fork_join().value_or(0),
                           std::memory_order_relaxed);
}

namespace {

/// An empty fork-join above this was inflated by a busy machine: see fork_join_seconds().
constexpr double suspect_fork_join = 200e-6;
constexpr std::int64_t remeasure_interval_ns = 5'000'000'000;

std::int64_t steady_ns() noexcept {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

}  // namespace

double thread_pool::fork_join_seconds() noexcept {
  const double seconds = fork_join_seconds_.load(std::memory_order_relaxed);
  // Never from inside a call: the calling thread of a pool call holds the pool's lock.
  if (seconds <= suspect_fork_join || in_worker() || in_item()) return seconds;
  const std::int64_t now = steady_ns();
  std::int64_t due = next_measure_ns_.load(std::memory_order_relaxed);
  if (now < due ||
      !next_measure_ns_.compare_exchange_strong(due, now + remeasure_interval_ns)) {
    return seconds;
  }
  try {
    if (const std::optional<double> again = measure_fork_join(); again && *again < seconds) {
      fork_join_seconds_.store(*again, std::memory_order_relaxed);
      return *again;
    }
  } catch (...) {  // no thread to be had: the old figure stands
  }
  return seconds;
}

void thread_pool::assume_fork_join(double seconds) noexcept {
  fork_join_seconds_.store(seconds, std::memory_order_relaxed);
  next_measure_ns_.store(0, std::memory_order_relaxed);
}

namespace {

/// Blocks, while it lives, every signal but those an item's own fault raises: the
/// threads started meanwhile inherit that mask. So a signal sent to the program
/// (SIGINT, SIGTERM, a timer's) is handled on one of the program's own threads, as it
/// expects, and never on a pool thread that may sleep in a futex for ever. (Under
/// TSan, a signal that lands on such a thread is deferred until the thread makes a
/// library call, and so never handled.)
class program_signals_blocked {
 public:
  program_signals_blocked() noexcept {
    sigset_t block;
    sigfillset(&block);
    for (const int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) {
      sigdelset(&block, sig);
    }
    pthread_sigmask(SIG_BLOCK, &block, &saved_);
  }
  ~program_signals_blocked() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
  program_signals_blocked(const program_signals_blocked&) = delete;
  program_signals_blocked& operator=(const program_signals_blocked&) = delete;

 private:
  sigset_t saved_{};
};

}  // namespace

void thread_pool::grow(std::size_t threads) {
  if (slot_capacity_ < threads + 1) {
    slot_capacity_ = threads + 1;
    slots_ = std::make_unique<slot[]>(slot_capacity_);
  }
  // The common case, on every call: no thread to start, and no signal mask to change (two
  // system calls, as much as a quarter of an empty fork-join).
  if (workers_.size() >= threads) return;
  const program_signals_blocked blocked;
  workers_.reserve(threads);  // so that no push_back below throws
  while (workers_.size() < threads) {
    auto w = std::make_unique<worker>();
    w->index = workers_.size();
    worker& self = *w;
    const bool core = self.index < core_threads_;
    std::atomic<std::uint32_t>& word = core ? epoch_ : extra_epoch_;
    std::atomic<int>& sleepers = core ? sleepers_ : extra_sleepers_;
    const std::uint32_t seen = word.load(std::memory_order_acquire);
    // Made for the call about to open (epoch_ + 1), never for the one before it.
    self.joined = epoch_.load(std::memory_order_relaxed);
    workers_.push_back(std::move(w));
    try {
      self.thread = std::thread(
          [this, &self, &word, &sleepers, seen] { worker_main(self, word, sleepers, seen); });
    } catch (...) {
      // No thread (no memory, no more threads allowed): no worker either, or every later
      // call that counts on it would wait for it for ever.
      workers_.pop_back();
      throw;
    }
  }
}

void thread_pool::worker_main(worker& self, std::atomic<std::uint32_t>& word,
                              std::atomic<int>& sleepers, std::uint32_t seen) {
  mark_worker_thread();
  self.original_nice = this_thread_nice();
  bool spin = false;
  for (;;) {
    auto changed = [&] { return word.load(std::memory_order_acquire) != seen; };
    if (!(spin && spin_until(changed))) {
      while (!changed()) {
        sleepers.fetch_add(1, std::memory_order_seq_cst);
        if (!changed()) futex_wait(word, seen);
        sleepers.fetch_sub(1, std::memory_order_seq_cst);
      }
    }
    seen = word.load(std::memory_order_acquire);
    // Calls come in runs: whether or not this thread got into this one, spin for the next.
    spin = true;
    // It joins the call running now (a thread past the core ones was woken for some call,
    // and one that did not need it lets it leave at once), and never one call twice: a
    // call may have opened after the wake, and would then also wake it on its next loop.
    const std::uint32_t epoch = epoch_.load(std::memory_order_acquire);
    if (epoch == self.joined || !join(epoch)) continue;
    self.joined = epoch;
    const std::size_t s = caller_in_ ? self.index + 1 : self.index;
    if (s < participants_) {
      apply_settings(self, s);
      work(s);
      // Only a caller that does not take part waits for every worker to finish.
      if (!caller_in_ &&
          finished_.fetch_add(1, std::memory_order_acq_rel) + 1 == participants_) {
        signal_done();
      }
    }
    leave();
  }
}

bool thread_pool::join(std::uint32_t epoch) noexcept {
  std::uint64_t s = gate_.load(std::memory_order_acquire);
  for (;;) {
    if ((s >> 32) != epoch || (s & closed_bit) != 0) return false;
    if (gate_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return true;
    }
  }
}

void thread_pool::leave() noexcept {
  const std::uint64_t s = gate_.fetch_sub(1, std::memory_order_acq_rel) - 1;
  if ((s & count_mask) == 0 && (s & closed_bit) != 0) signal_done();
}

void thread_pool::signal_done() noexcept {
  done_word_.fetch_add(1, std::memory_order_seq_cst);
  if (caller_sleeping_.load(std::memory_order_seq_cst)) futex_wake_all(done_word_);
}

void thread_pool::wait_done(bool closed) {
  // closed: wait until every participant that got in has left. Otherwise (the caller did
  // not take part) wait until every participant has finished its work.
  auto done = [&] {
    if (closed) return (gate_.load(std::memory_order_acquire) & count_mask) == 0;
    return finished_.load(std::memory_order_acquire) >= participants_;
  };
  if (spin_until(done)) return;
  for (;;) {
    const std::uint32_t word = done_word_.load(std::memory_order_seq_cst);
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    if (done()) break;
    futex_wait(done_word_, word);
  }
  caller_sleeping_.store(false, std::memory_order_relaxed);
}

void thread_pool::apply_settings(worker& self, std::size_t s) {
  const options& o = *job_->opts;
  worker_report& r = reports_[s];
  r.worker = s;
  if (o.bind == bind::none && !o.nice && self.applied_cpus.empty() && !self.applied_nice) {
    return;  // the common case: nothing asked, nothing to undo
  }
  const topology& topo = topology::current();
  std::vector<int> wanted = o.bind == bind::none
                                ? topo.usable_pus()
                                : worker_cpus(topo, o.bind, s, participants_, o.cpus);
  if (o.bind != bind::none || !self.applied_cpus.empty()) {
    if (wanted != self.applied_cpus) {
      const bool ok = bind_this_thread(wanted);
      self.applied_cpus = ok ? wanted : std::vector<int>{};
    }
    if (o.bind != bind::none) {
      r.bound = !self.applied_cpus.empty() && self.applied_cpus == wanted;
      r.cpus = self.applied_cpus;
    }
    if (o.bind == bind::none && self.applied_cpus == topo.usable_pus()) {
      self.applied_cpus.clear();  // back to where it started
    }
  }
  const std::optional<int> wanted_nice = o.nice ? o.nice : self.original_nice;
  const std::optional<int> current = self.applied_nice ? self.applied_nice : self.original_nice;
  if (wanted_nice && wanted_nice != current) {
    if (set_this_thread_nice(*wanted_nice)) {
      self.applied_nice = wanted_nice == self.original_nice ? std::nullopt : wanted_nice;
    }
  }
  if (o.nice) {
    r.nice = this_thread_nice();
    r.nice_applied = r.nice == o.nice;
  }
}

bool thread_pool::claim_own(std::size_t s, std::size_t chunk, std::size_t& b,
                            std::size_t& e) noexcept {
  if (job_->ascending) {
    // Never past the end, so that no chunk size can wrap the index around.
    b = next_.load(std::memory_order_relaxed);
    do {
      if (b >= job_->end) return false;
      e = b + std::min(chunk, job_->end - b);
    } while (!next_.compare_exchange_weak(b, e, std::memory_order_relaxed));
    return true;
  }
  slot& mine = slots_[s];
  mine.acquire();
  b = mine.begin.load(std::memory_order_relaxed);
  const std::size_t end = mine.end.load(std::memory_order_relaxed);
  e = b + std::min(chunk, end - b);
  mine.begin.store(e, std::memory_order_relaxed);
  mine.release();
  return e > b;
}

bool thread_pool::steal(std::size_t thief) noexcept {
  for (std::size_t k = 1; k < participants_; ++k) {
    const std::size_t v = (thief + k) % participants_;
    slot& victim = slots_[v];
    if (victim.size_hint() == 0) continue;
    victim.acquire();
    const std::size_t b = victim.begin.load(std::memory_order_relaxed);
    const std::size_t e = victim.end.load(std::memory_order_relaxed);
    std::size_t mid = e;
    if (e > b) {
      mid = e - b == 1 ? b : b + (e - b) / 2;
      victim.end.store(mid, std::memory_order_relaxed);
    }
    victim.release();
    if (mid < e) {
      slot& mine = slots_[thief];
      mine.acquire();
      mine.begin.store(mid, std::memory_order_relaxed);
      mine.end.store(e, std::memory_order_relaxed);
      mine.release();
      return true;
    }
  }
  return false;
}

void thread_pool::run_chunk(chunk_sizer& sizer, std::size_t begin, std::size_t end,
                            worker_context& ctx) {
  try {
    sizer.run(*job_, begin, end, ctx);
  } catch (...) {
    // Item failures are recorded by the chunk itself; this is a failure of the machinery
    // (e.g. no memory to record one), which ends the call.
    {
      std::lock_guard lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    job_->state->request_stop();
  }
}

void thread_pool::work(std::size_t s) {
  const map_job& job = *job_;
  // The context lives in the pool, on a line of its own: the caller gathers it after the
  // join, so a worker's last act is not a locked write that the others contend for.
  worker_context& ctx = slots_[s].ctx;
  ctx.worker = s;
  ctx.backend = backend_kind::threads;
  ctx.state = job.state;
  ctx.retries = job.opts->retries;
  ctx.fail_fast = job.opts->on_error == on_error::fail_fast;
  ctx.block = 0;
  chunk_sizer sizer(job);
  std::size_t b = 0;
  std::size_t e = 0;
  while (!job.state->stopping()) {
    if (!claim_own(s, sizer.size(), b, e)) {
      if (job.ascending || !steal(s)) break;
      continue;
    }
    run_chunk(sizer, b, e, ctx);
  }
}

bool thread_pool::try_run(const map_job& job, std::size_t participants, run_report* report) {
  std::unique_lock lock(run_mutex_, std::try_to_lock);
  if (!lock.owns_lock()) return false;
  const options& o = *job.opts;
  const bool caller_in = o.bind == bind::none && !o.nice;
  participants = std::max<std::size_t>(participants, 1);
  const std::size_t threads = caller_in ? participants - 1 : participants;
  grow(threads);

  // Describe the call, then open the gate: everything above happens-before a join.
  job_ = &job;
  participants_ = participants;
  caller_in_ = caller_in;
  if (reports_.size() < participants) reports_.resize(participants);
  if (report != nullptr || !caller_in) {
    std::fill_n(reports_.begin(), participants, worker_report{});
  }
  error_ = nullptr;
  finished_.store(0, std::memory_order_relaxed);
  next_.store(job.begin, std::memory_order_relaxed);
  // Shares that differ by one item at most, computed without n * s (which wraps for
  // n near SIZE_MAX).
  const std::size_t n = job.end - job.begin;
  const std::size_t share = n / participants;
  const std::size_t rest = n % participants;
  const auto slot_begin = [&](std::size_t s) {
    return job.begin + s * share + std::min(s, rest);
  };
  for (std::size_t s = 0; s < participants; ++s) {
    slots_[s].begin.store(slot_begin(s), std::memory_order_relaxed);
    slots_[s].end.store(slot_begin(s + 1), std::memory_order_relaxed);
  }
  const std::uint32_t epoch = epoch_.load(std::memory_order_relaxed) + 1;
  gate_.store(std::uint64_t{epoch} << 32, std::memory_order_release);
  epoch_.store(epoch, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(epoch_);
  if (threads > core_threads_) {
    extra_epoch_.fetch_add(1, std::memory_order_seq_cst);
    if (extra_sleepers_.load(std::memory_order_seq_cst) > 0) futex_wake_all(extra_epoch_);
  }

  if (caller_in) {
    worker_scope scope;
    work(0);
    gate_.fetch_or(closed_bit, std::memory_order_acq_rel);
    wait_done(true);
  } else {
    wait_done(false);
    gate_.fetch_or(closed_bit, std::memory_order_acq_rel);
    wait_done(true);
  }
  // Everyone is out: gather what the workers did (ranges only for a failed call).
  const bool failed = job.state->has_failures();
  for (std::size_t s = 0; s < participants; ++s) {
    if (slots_[s].ctx.state == job.state) slots_[s].ctx.flush(failed);
    slots_[s].ctx.state = nullptr;
  }
  job_ = nullptr;

  if (report != nullptr) {
    report->backend = backend_kind::threads;
    report->workers = participants;
    report->worker_reports.assign(reports_.begin(),
                                  reports_.begin() + static_cast<std::ptrdiff_t>(participants));
  }
  if (error_) std::rethrow_exception(error_);
  return true;
}

std::optional<double> thread_pool::measure_fork_join() {
  // try_run grows the pool to two workers if it has fewer (workers_ is the run lock's).
  // Two items that wait for each other: the call ends only once a worker has really woken,
  // joined and run one, which is what a parallel call pays. (Two empty items would let the
  // caller run both before the worker looks, and measure nothing.)
  struct rendezvous {
    std::atomic<int> arrived{0};
    static void chunk(const void* p, std::size_t b, std::size_t e, worker_context& w) {
      auto& r = *static_cast<rendezvous*>(const_cast<void*>(p));
      r.arrived.fetch_add(static_cast<int>(e - b));
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
      while (r.arrived.load() < 2 && std::chrono::steady_clock::now() < give_up) cpu_relax();
      w.state->add_done(e - b);
    }
  };
  const options opts{};
  std::vector<double> times;
  constexpr int rounds = 31;
  for (int i = 0; i < rounds; ++i) {
    run_state state(2);
    rendezvous r;
    map_job job = make_job(2, &rendezvous::chunk, &r, state, opts);
    job.seconds_per_item = 1;
    job.max_chunk = 1;
    const auto start = std::chrono::steady_clock::now();
    if (!try_run(job, 2, nullptr)) return std::nullopt;  // another call holds the pool
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(times.begin(), times.begin() + rounds / 2, times.end());
  return times[rounds / 2];
}

}  // namespace polymap::detail
