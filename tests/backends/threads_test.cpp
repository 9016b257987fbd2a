// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// What only the threads backend does: binding and priority read back from the OS, load
// balancing of imbalanced items, a busy pool.
#include <polymap/polymap.hpp>

#include "backends/sanitizer_build.hpp"
#include "backends/threads/thread_pool.hpp"
#include "topology/binding.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace polymap {
namespace {

/// What one item saw of the thread it ran on.
struct seen_thread {
  pid_t tid = 0;
  std::vector<int> cpus;
  int nice = 0;
};

std::vector<int> os_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

int os_nice() {
  errno = 0;
  return getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
}

/// Where items wait (up to 5 s from its making) until `threads` threads have arrived: a
/// worker that the machine started late still runs an item.
class meeting {
 public:
  explicit meeting(std::size_t threads) : threads_(threads) {}

  /// Waits until `threads` threads arrived (this one among them), or the 5 s are over.
  void arrive() {
    for (;;) {
      {
        const std::lock_guard lock(m_);
        arrived_.insert(gettid());
        if (arrived_.size() >= threads_) return;
      }
      if (std::chrono::steady_clock::now() > until_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  /// How many threads have arrived.
  [[nodiscard]] std::size_t arrived() const {
    const std::lock_guard lock(m_);
    return arrived_.size();
  }

 private:
  mutable std::mutex m_;
  std::set<pid_t> arrived_;
  std::size_t threads_;
  std::chrono::steady_clock::time_point until_ =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
};

/// Runs `n` items of about 1 ms each with `o` and returns what each thread saw. With `meet`,
/// each item first waits until `meet` threads have started one (a meeting).
std::map<pid_t, seen_thread> observe(const options& o, std::size_t n, std::size_t meet = 0) {
  std::mutex m;
  std::map<pid_t, seen_thread> threads;
  meeting started(meet);
  polymap::for_each(n, [&](std::size_t) {
    seen_thread s{gettid(), os_affinity(), os_nice()};
    started.arrive();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::lock_guard lock(m);
    threads[s.tid] = s;
  }, o);
  return threads;
}

// A fork-join that a busy machine inflated when the pool measured it (here: assumed) is
// measured again when next asked, and the lower figure kept; `automatic` reads it through
// explain's threads estimate.
TEST(ThreadsBackend, AnInflatedForkJoinIsMeasuredAgain) {
  if (topology::current().usable_count() < 2) GTEST_SKIP() << "one usable CPU: no pool threads";
  detail::thread_pool& pool = detail::thread_pool::instance();
  pool.assume_fork_join(1.0);
  const plan p = polymap::explain(std::vector<int>(1000, 1), [](int x) { return x + 1; });
  const double again = pool.fork_join_seconds();
  EXPECT_GT(again, 0);
  EXPECT_LT(again, 1.0);
  for (const backend_estimate& e : p.estimates) {
    if (e.backend == backend::threads) {
      EXPECT_LT(e.seconds, 1.0) << p.reason;
    }
  }
}

TEST(ThreadsBackend, BindCoreReadsBackFromTheOs) {
  const topology& topo = topology::current();
  const auto cores = topo.usable_cores();
  const std::size_t workers = std::min<std::size_t>(cores.size(), 4);
  const std::vector<int> caller_before = os_affinity();
  run_report report;
  const auto threads = observe({.backend = backend::threads,
                                .workers = workers,
                                .bind = bind::core,
                                .report = &report},
                               64);
  ASSERT_EQ(report.worker_reports.size(), workers);
  std::set<std::vector<int>> core_sets;
  for (const core_info* c : cores) {
    std::vector<int> usable;
    for (int pu : c->pus) {
      if (std::find(topo.usable_pus().begin(), topo.usable_pus().end(), pu) !=
          topo.usable_pus().end()) {
        usable.push_back(pu);
      }
    }
    core_sets.insert(usable);
  }
  for (const auto& [tid, s] : threads) {
    EXPECT_EQ(core_sets.count(s.cpus), 1u) << "thread " << tid << " is not bound to one core";
  }
  for (const worker_report& r : report.worker_reports) {
    EXPECT_TRUE(r.bound) << "worker " << r.worker;
    EXPECT_EQ(core_sets.count(r.cpus), 1u);
  }
  EXPECT_EQ(os_affinity(), caller_before) << "the calling thread's affinity changed";

  // A later call without binding runs on the whole usable set again.
  const auto unbound = observe({.backend = backend::threads, .workers = workers}, 64);
  for (const auto& [tid, s] : unbound) EXPECT_EQ(s.cpus, topo.usable_pus()) << "thread " << tid;
}

TEST(ThreadsBackend, BindCpusUsesTheGivenList) {
  const int cpu = topology::current().usable_pus().back();
  run_report report;
  const auto threads = observe({.backend = backend::threads,
                                .workers = 2,
                                .bind = bind::cpus,
                                .cpus = {cpu},
                                .report = &report},
                               16);
  for (const auto& [tid, s] : threads) EXPECT_EQ(s.cpus, std::vector<int>{cpu});
}

TEST(ThreadsBackend, NiceReadsBackFromTheOs) {
  const int caller_before = os_nice();
  run_report report;
  const auto threads =
      observe({.backend = backend::threads, .workers = 2, .nice = 7, .report = &report}, 32);
  ASSERT_FALSE(threads.empty());
  for (const auto& [tid, s] : threads) EXPECT_EQ(s.nice, 7) << "thread " << tid;
  for (const worker_report& r : report.worker_reports) {
    EXPECT_TRUE(r.nice_applied);
    EXPECT_EQ(r.nice, 7);
  }
  EXPECT_EQ(os_nice(), caller_before) << "the calling thread's priority changed";
}

/// Takes CAP_SYS_NICE out of the calling thread's effective capabilities, and makes its
/// RLIMIT_NICE 0: as for most users, no nice can come back down. False when refused.
bool lose_the_right_to_lower_nice() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> caps{};
  if (syscall(SYS_capget, &header, caps.data()) != 0) return false;
  caps[CAP_SYS_NICE / 32].effective &= ~(1U << (CAP_SYS_NICE % 32));
  if (syscall(SYS_capset, &header, caps.data()) != 0) return false;
  const rlimit none{0, 0};
  return setrlimit(RLIMIT_NICE, &none) == 0;
}

TEST(ThreadsBackend, ACallAtAHigherNiceThatCannotBeTakenBackLeavesLaterCallsAlone) {
  if (test_support::tsan_build) {
    GTEST_SKIP() << "TSan ends a child of a threaded program that starts a thread";
  }
  // In a child, which starts pools of its own: the right to lower a nice is lost for good.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int base = os_nice();
    if (!lose_the_right_to_lower_nice() || base > 14) _exit(3);
    run_report report;
    bool ok = true;
    for (const auto& [tid, seen] :
         observe({.backend = backend::threads, .workers = 2, .nice = base + 5, .report = &report},
                 32)) {
      ok = ok && seen.nice == base + 5;
    }
    for (const worker_report& r : report.worker_reports) ok = ok && r.nice_applied;
    // The threads of a later call without a nice run at the program's own.
    for (const auto& [tid, seen] : observe({.backend = backend::threads, .workers = 2}, 32)) {
      ok = ok && seen.nice == base;
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "capset or setrlimit refused, or nice too high";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a thread of the later call ran at the raised nice";
}

TEST(ThreadsBackend, ImbalancedItemsDoNotLeaveAWorkerIdle) {
  if (topology::current().usable_count() < 2) GTEST_SKIP() << "one usable CPU";
  // Item 0 lasts until the other 100 (1 ms each) are done, 20 s at most. The worker stuck on
  // item 0 must not hold a share of the others: the rest of the pool takes them.
  std::mutex m;
  std::map<std::size_t, pid_t> ran_on;
  std::atomic<std::size_t> others_done{0};
  polymap::for_each(101, [&](std::size_t i) {
    if (i == 0) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (others_done.load() < 100 && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    {
      std::lock_guard lock(m);
      ran_on[i] = gettid();
    }
    if (i != 0) others_done.fetch_add(1);
  }, {.backend = backend::threads, .workers = 2});
  const pid_t slow = ran_on.at(0);
  std::size_t with_slow = 0;
  for (const auto& [i, tid] : ran_on) with_slow += i != 0 && tid == slow;
  EXPECT_LE(with_slow, 20u) << "the worker of the slow item also ran " << with_slow << " others";
}

TEST(ThreadsBackend, AMapInsideAStreamConsumerDoesNotDeadlock) {
  std::vector<int> xs(2'000, 1);
  long total = 0;
  for (auto&& [index, value] : polymap::imap(xs, [](int x) { return x; },
                                             {.backend = backend::threads, .window = 64})) {
    const auto inner = polymap::map(std::vector<int>(100, value), [](int x) { return x; },
                                    {.backend = backend::threads});
    total += inner[index % 100];
  }
  EXPECT_EQ(total, 2'000);
}

TEST(ThreadsBackend, UsesEveryWorkerForExpensiveItems) {
  const std::size_t workers = topology::current().usable_count();
  if (workers < 2) GTEST_SKIP() << "one usable CPU";
  const auto threads = observe({.backend = backend::threads}, 200, workers);
  EXPECT_EQ(threads.size(), workers);
}

// A call that finds the pool held by another call runs on its own thread at once: it does
// not wait for the other call, and its report says where it ran.
TEST(ThreadsBackend, ACallThatFindsThePoolBusyRunsOnItsOwnThreadAndSaysSo) {
  std::atomic<bool> inside{false};
  std::atomic<bool> release{false};
  std::thread holder([&] {
    polymap::for_each(64, [&](std::size_t) {
      inside.store(true);
      while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }, {.backend = backend::threads});
  });
  while (!inside.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  run_report report;
  std::set<pid_t> ran_on;
  std::mutex m;
  const std::vector<int> xs(1000, 3);
  const auto ys = polymap::map(xs, [&](int x) {
    const std::lock_guard lock(m);
    ran_on.insert(gettid());
    return x * 2;
  }, {.backend = backend::threads, .report = &report});
  release.store(true);  // only now: the call above must not have waited for it
  holder.join();
  EXPECT_EQ(ys, std::vector<int>(1000, 6));
  EXPECT_EQ(report.backend, backend::serial);
  EXPECT_EQ(report.workers, 1u);
  EXPECT_NE(report.note.find("busy"), std::string::npos) << report.note;
  EXPECT_EQ(ran_on, std::set<pid_t>{gettid()});
}

// A child forked from a program whose pool is running has none of the pool's threads: its
// calls must not wait for them (a binding call, which leaves the caller out, waited for
// ever), and it gets a pool of its own.
TEST(ThreadsBackend, AForkedChildRunsOnAPoolOfItsOwn) {
  if (test_support::tsan_build) {
    GTEST_SKIP() << "TSan ends a child of a threaded program that starts a thread";
  }
  const std::vector<int> xs(2000, 5);
  auto twice = [](int x) { return 2 * x; };
  ASSERT_EQ(polymap::map(xs, twice, {.backend = backend::threads}), std::vector<int>(2000, 10));
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    bool ok = true;
    for (const bind b : {bind::none, bind::core}) {
      run_report report;
      // Each item waits until two threads ran one, where there is room for two.
      meeting ran_on(std::min<std::size_t>(topology::current().usable_count(), 2));
      const auto ys = polymap::map(xs, [&](int x) {
        ran_on.arrive();
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        return 2 * x;
      }, {.backend = backend::threads, .bind = b, .report = &report});
      ok = ok && ys == std::vector<int>(2000, 10) && report.backend == backend::threads;
      // The child's own threads ran the items, more than one where there is room.
      ok = ok && (topology::current().usable_count() < 2 || ran_on.arrived() >= 2);
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  pid_t got = 0;
  for (int i = 0; i < 600 && got == 0; ++i) {
    got = waitpid(child, &status, WNOHANG);
    if (got == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (got == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL() << "the forked child's map did not finish within 30 s";
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "wrong results, report or threads in the child";
}

TEST(ThreadsBackend, AThreadThatCouldNotStartLeavesNoWorkerBehind) {
  if (test_support::sanitizer_build) {
    GTEST_SKIP() << "a sanitizer's shadow memory does not live under an address-space limit";
  }
  // In a child: the address-space limit must not reach another test's threads.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    alarm(60);  // a call that waits for a worker that never started ends here
    std::atomic<std::size_t> sum = 0;
    auto add = [&](std::size_t i) { sum += i; };
    polymap::for_each(1000, add, {.backend = backend::threads, .workers = 1});
    // The C library keeps the stacks of the parent's threads for new threads: these take
    // them, so that a new thread needs memory.
    std::atomic<bool> release = false;
    std::vector<std::thread> holders;
    for (int i = 0; i < 16; ++i) {
      holders.emplace_back([&] {
        while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      });
    }
    // No room for a thread's stack: the call that wants three more fails.
    std::size_t pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    rlimit old{};
    getrlimit(RLIMIT_AS, &old);
    const rlimit low{pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE)) + (1U << 20),
                     old.rlim_max};
    if (setrlimit(RLIMIT_AS, &low) != 0) _exit(3);
    bool failed = false;
    try {
      polymap::for_each(1000, add, {.backend = backend::threads, .workers = 4});
    } catch (const std::exception&) {
      failed = true;
    }
    setrlimit(RLIMIT_AS, &old);
    release = true;
    for (std::thread& t : holders) t.join();
    if (!failed) _exit(3);  // the threads started after all: nothing to test
    // Calls that count on every worker (the calling thread is left out of a call with a
    // nice) run on the workers that did start.
    sum = 0;
    polymap::for_each(1000, add, {.backend = backend::threads, .workers = 4});
    polymap::for_each(1000, add, {.backend = backend::threads, .workers = 4, .nice = 0});
    _exit(sum == 2 * 999 * 1000 / 2 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "the child was killed: a call waited for a worker";
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "the address-space limit stopped no thread";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "wrong sum";
}

TEST(ThreadsBackend, AnIndexSpaceNearSizeMaxIsSharedWithoutOverlap) {
  // Each worker's share of 2^63 indices: n * s / workers wrapped around, and gave two
  // workers the same share.
  const std::size_t n = std::size_t{1} << 63;
  std::mutex m;
  std::set<std::size_t> seen;
  bool twice = false;
  std::atomic<int> calls = 0;
  EXPECT_THROW(polymap::for_each(
                   n,
                   [&](std::size_t i) {
                     {
                       const std::lock_guard lock(m);
                       twice = twice || !seen.insert(i).second;
                     }
                     std::this_thread::sleep_for(std::chrono::microseconds(20));
                     if (calls.fetch_add(1) >= 2000) throw std::runtime_error("enough");
                   },
                   {.backend = backend::threads, .workers = 3, .chunk = 4}),
               map_error);
  EXPECT_FALSE(twice) << "an index ran twice";
}

TEST(ThreadsBackend, AStreamsChunkNearSizeMaxRunsEachItemOnce) {
  // Claims in index order added the chunk to the next index, which wrapped around to 0.
  std::vector<int> xs(100);
  std::iota(xs.begin(), xs.end(), 0);
  std::atomic<int> calls = 0;
  std::vector<int> yielded(xs.size());
  for (auto&& [i, x] : polymap::imap(
           xs,
           [&](int a) {
             ++calls;
             std::this_thread::sleep_for(std::chrono::microseconds(200));
             return a;
           },
           {.backend = backend::threads, .workers = 4, .ordered = false,
            .chunk = std::size_t{1} << 62, .window = SIZE_MAX})) {
    ++yielded.at(i);
    EXPECT_EQ(x, xs[i]);
  }
  EXPECT_EQ(calls.load(), 100);
  EXPECT_EQ(yielded, std::vector<int>(xs.size(), 1));
}

/// A thread's line of /proc/self/task/<tid>/status that starts with `key`, as a number.
long task_status(pid_t tid, const std::string& key) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stol(line.substr(key.size() + 1));
  }
  return -1;
}

/// A thread's scheduling state: 'S' while it sleeps, 'R' while it runs or waits for a CPU.
char task_state(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const std::size_t comm_end = stat.rfind(')');  // the name may hold spaces and parentheses
  return comm_end == std::string::npos || comm_end + 2 >= stat.size() ? '?' : stat[comm_end + 2];
}

// A call that asked for more workers than CPUs grows the pool; those extra threads must
// sleep through later calls that do not need them (waking them all made every later call
// pay for them). Each wake of a sleeping thread is a voluntary context switch.
TEST(ThreadsBackend, ThreadsGrownForOneCallSleepThroughLaterCalls) {
  const std::size_t usable = topology::current().usable_count();
  const auto usual = observe({.backend = backend::threads}, 100, usable);
  const auto many = observe({.backend = backend::threads, .workers = usable + 6}, 600, usable + 6);
  std::vector<pid_t> extra;
  for (const auto& [tid, seen] : many) {
    if (!usual.contains(tid)) extra.push_back(tid);
  }
  ASSERT_FALSE(extra.empty()) << "no thread beyond the usual ones ran an item";
  // Let them finish spinning and fall asleep: each asleep, and their counts stop moving.
  std::map<pid_t, long> before;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int settled = 0; settled < 3;) {
    if (std::chrono::steady_clock::now() > give_up) {
      FAIL() << "the grown threads did not fall asleep within 20 s";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::map<pid_t, long> now;
    bool asleep = true;
    for (const pid_t t : extra) {
      now[t] = task_status(t, "voluntary_ctxt_switches");
      asleep = asleep && task_state(t) == 'S';
    }
    settled = asleep && now == before ? settled + 1 : 0;
    before = now;
  }
  for (int call = 0; call < 30; ++call) (void)observe({.backend = backend::threads}, 20);
  for (const pid_t t : extra) {
    EXPECT_EQ(task_status(t, "voluntary_ctxt_switches"), before[t])
        << "thread " << t << ", grown for one call, was woken by later calls";
  }
}

std::atomic<pid_t> signal_handled_on{0};

// A signal sent to the program is never taken by a pool thread: while the calling thread
// blocks it, it waits, and the calling thread handles it once it unblocks it.
TEST(ThreadsBackend, PoolThreadsLeaveSignalsToTheProgram) {
  const auto threads = observe({.backend = backend::threads, .workers = 2}, 50);
  if (threads.size() < 2) GTEST_SKIP() << "the pool has no thread of its own here";
  struct sigaction handler {};
  struct sigaction saved_handler {};
  handler.sa_handler = [](int) { signal_handled_on.store(gettid()); };
  sigemptyset(&handler.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR2, &handler, &saved_handler), 0);
  sigset_t usr2;
  sigset_t saved_mask;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &usr2, &saved_mask), 0);
  signal_handled_on.store(0);
  ASSERT_EQ(kill(getpid(), SIGUSR2), 0);
  // A pool thread that could take it would consume it now, and it would never reach
  // this thread. (Unblocking at once would let this thread, already running, win.)
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &saved_mask, nullptr), 0);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (signal_handled_on.load() == 0 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  EXPECT_EQ(signal_handled_on.load(), gettid()) << "handled on another thread";
  sigaction(SIGUSR2, &saved_handler, nullptr);
}

}  // namespace
}  // namespace polymap
