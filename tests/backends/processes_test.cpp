// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// What only the processes backend does: items that crash, hang or run out of memory fail
// alone; workers leave nothing behind; SIGTERM to the caller takes its workers with it;
// results of any type with a codec come back; binding and priority apply per process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <numeric>
#include <polymap/polymap.hpp>
#include <ranges>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "backends/processes/process_costs.hpp"
#include "backends/processes/signal_guard.hpp"
#include "backends/processes/store_io.hpp"
#include "backends/processes/worker_process.hpp"
#include "backends/sanitizer_build.hpp"
#include "backends/shared_counters.hpp"

extern char** environ;

namespace polymap {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

using test_support::sanitizer_build;

/// Fewer rounds where every fork and exit is tens of times slower.
constexpr int rounds(int n) { return sanitizer_build ? std::max(1, n / 10) : n; }

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Dies of SIGSEGV whatever handler a sanitizer installed.
[[noreturn]] void die_of_segv() {
  std::signal(SIGSEGV, SIG_DFL);
  std::raise(SIGSEGV);
  std::abort();
}

/// Whether process `pid` is gone: no such process, or a zombie nobody needs.
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!std::getline(stat, text)) return true;
  const auto paren = text.rfind(')');
  return paren == std::string::npos || text.substr(paren + 2, 1) == "Z";
}

/// Waits up to `limit` for `pid` to be gone.
bool gone_within(pid_t pid, std::chrono::milliseconds limit) {
  const auto deadline = clock::now() + limit;
  while (!process_gone(pid)) {
    if (clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::size_t entries(const fs::path& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++n;
  return n;
}

/// The processes whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    const std::size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    std::string state;
    pid_t ppid = 0;
    if (rest >> state >> ppid && ppid == parent) out.push_back(std::stoi(name));
  }
  return out;
}

/// What a process holds that a map must give back.
struct holdings {
  std::size_t fds = 0;
  std::size_t shared_mappings = 0;  // lines of /proc/self/maps with an 's' mapping
  std::size_t threads = 0;
  std::size_t children = 0;  // zombies included
  bool operator==(const holdings&) const = default;
};

std::ostream& operator<<(std::ostream& os, const holdings& h) {
  return os << "{fds " << h.fds << ", shared mappings " << h.shared_mappings << ", threads "
            << h.threads << ", children " << h.children << "}";
}

holdings holdings_now() {
  holdings h;
  h.fds = entries("/proc/self/fd") - 1;  // the directory iterator's own descriptor
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    std::istringstream fields(line);
    std::string range, perms;
    fields >> range >> perms;
    if (perms.size() == 4 && perms[3] == 's') ++h.shared_mappings;
  }
  h.threads = entries("/proc/self/task");
  h.children = children_of(getpid()).size();
  return h;
}

options processes(std::size_t workers = 2) {
  return {.backend = backend_kind::processes, .workers = workers};
}

// --- crashes -----------------------------------------------------------------------------

enum class fault { none, segv, abort, exit3 };

fault fault_of(std::size_t i) {
  switch (i % 100) {
    case 7: return fault::segv;
    case 37: return fault::abort;
    case 71: return fault::exit3;
    default: return fault::none;
  }
}

std::uint64_t faulty_item(std::size_t i) {
  switch (fault_of(i)) {
    case fault::segv: die_of_segv();
    case fault::abort: std::abort();
    case fault::exit3: std::exit(3);
    case fault::none: break;
  }
  return mix(i);
}

TEST(Processes, CrashingItemsFailAloneWithTheirCause) {
  constexpr std::size_t n = 10'000;
  std::vector<std::size_t> xs(n);
  for (std::size_t i = 0; i < n; ++i) xs[i] = i;
  options o = processes();
  o.on_error = on_error::collect;
  for (int round = 0; round < rounds(20); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    try {
      (void)polymap::map(xs, faulty_item, o);
      FAIL() << "the crashing items were not reported";
    } catch (const map_error& e) {
      ASSERT_EQ(e.total(), n);
      ASSERT_EQ(e.failures().size(), 300u);
      std::size_t next = 0;
      for (const item_failure& f : e.failures()) {
        while (fault_of(next) == fault::none) ++next;
        ASSERT_EQ(f.index, next) << f.what;
        ++next;
        EXPECT_EQ(f.backend, backend_kind::processes);
        EXPECT_EQ(f.attempts, 1u);
        EXPECT_FALSE(f.what.empty());
        switch (fault_of(f.index)) {
          case fault::segv:
            EXPECT_EQ(f.kind, failure_kind::signal) << f.what;
            EXPECT_EQ(f.signal, SIGSEGV) << f.what;
            break;
          case fault::abort:
            EXPECT_EQ(f.kind, failure_kind::signal) << f.what;
            EXPECT_EQ(f.signal, SIGABRT) << f.what;
            break;
          case fault::exit3:
            EXPECT_EQ(f.kind, failure_kind::exit) << f.what;
            EXPECT_EQ(f.exit_code, 3) << f.what;
            break;
          case fault::none: ADD_FAILURE() << "item " << f.index << " should not fail"; break;
        }
      }
      const auto& results = e.results<std::uint64_t>();
      ASSERT_EQ(results.size(), n);
      for (std::size_t i = 0; i < n; ++i) {
        if (fault_of(i) == fault::none) {
          ASSERT_TRUE(results[i].has_value()) << "item " << i;
          ASSERT_EQ(*results[i], mix(i)) << "item " << i;
        } else {
          ASSERT_FALSE(results[i].has_value()) << "item " << i;
        }
      }
    }
  }
}

// Results of an odd size staged around items that throw (their done flags stay 0 inside a
// segment) and items that crash (the caller writes the dead worker's ring to the store):
// every result that exists is exact, and every failure is the right one.
TEST(Processes, OddSizedResultsSurviveThrowsAndCrashesAround) {
  struct odd {
    std::array<std::uint8_t, 11> bytes;
  };
  const auto make = [](std::size_t i) {
    odd r{};
    for (std::size_t k = 0; k < r.bytes.size(); ++k) {
      r.bytes[k] = static_cast<std::uint8_t>(mix(i) >> (k * 5));
    }
    return r;
  };
  const auto throws = [](std::size_t i) { return i % 50 == 5; };
  const auto crashes = [](std::size_t i) { return i % 97 == 11; };
  constexpr std::size_t n = 3'000;
  options o = processes();
  o.on_error = on_error::collect;
  try {
    (void)polymap::map(std::views::iota(std::size_t{0}, n),
                       [&](std::size_t i) {
                         if (throws(i)) throw std::runtime_error("thrown by " + std::to_string(i));
                         if (crashes(i)) die_of_segv();
                         return make(i);
                       },
                       o);
    FAIL() << "the failing items were not reported";
  } catch (const map_error& e) {
    std::size_t expected = 0;
    for (std::size_t i = 0; i < n; ++i) expected += throws(i) || crashes(i) ? 1 : 0;
    ASSERT_EQ(e.failures().size(), expected);
    for (const item_failure& f : e.failures()) {
      EXPECT_EQ(f.kind, throws(f.index) ? failure_kind::exception : failure_kind::signal)
          << "item " << f.index << ": " << f.what;
    }
    const auto& results = e.results<odd>();
    ASSERT_EQ(results.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      if (throws(i) || crashes(i)) {
        ASSERT_FALSE(results[i].has_value()) << "item " << i;
      } else {
        ASSERT_TRUE(results[i].has_value()) << "item " << i;
        ASSERT_EQ(results[i]->bytes, make(i).bytes) << "item " << i;
      }
    }
  }
}

// Each worker slot has its own store, holding only the items its workers ran: with many
// workers and small odd chunks, items of one page of flags are spread over several stores,
// and every result must still come from the store that holds it.
TEST(Processes, ResultsSpreadOverManyWorkersStoresAreExact) {
  constexpr std::size_t n = 50'000;
  options o = processes();
  o.workers = 6;
  o.chunk = 7;
  const auto results = polymap::map(std::views::iota(std::size_t{0}, n), mix, o);
  ASSERT_EQ(results.size(), n);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(results[i], mix(i)) << "item " << i;

  // The same with a failure, which makes the caller gather the results run by run.
  o.on_error = on_error::collect;
  try {
    (void)polymap::map(std::views::iota(std::size_t{0}, n),
                       [](std::size_t i) {
                         if (i == n / 3) throw std::runtime_error("one failure");
                         return mix(i);
                       },
                       o);
    FAIL() << "the failure was not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    const auto& partial = e.results<std::uint64_t>();
    for (std::size_t i = 0; i < n; ++i) {
      if (i == n / 3) continue;
      ASSERT_TRUE(partial[i].has_value()) << "item " << i;
      ASSERT_EQ(*partial[i], mix(i)) << "item " << i;
    }
  }
}

// Workers write fixed-size results straight into the caller's memory where the system
// lets them, and into their stores where it refuses (from the first write, or after a few):
// either way, with items that throw and items that crash in between, every result is exact.
TEST(Processes, ResultsAreExactWhetherDirectWritesAreAllowedOrRefused) {
  constexpr std::size_t n = 20'000;
  const auto item = [](std::size_t i) {
    if (i % 997 == 5) throw std::runtime_error("thrown");
    if (i % 1999 == 11) {
      std::signal(SIGSEGV, SIG_DFL);
      std::raise(SIGSEGV);
    }
    return mix(i);
  };
  options o = processes();
  o.workers = 3;
  o.chunk = 10;
  o.on_error = on_error::collect;
  for (const std::size_t allowed : {~std::size_t{0}, std::size_t{0}, std::size_t{3}}) {
    SCOPED_TRACE("direct writes allowed per worker: " + std::to_string(allowed));
    detail::direct_writes_left = allowed;  // the workers' copy counts down
    std::vector<std::optional<std::uint64_t>> results;
    std::size_t failed = 0;
    try {
      (void)polymap::map(std::views::iota(std::size_t{0}, n), item, o);
    } catch (const map_error& e) {
      results = e.results<std::uint64_t>();
      failed = e.failures().size();
    }
    ASSERT_EQ(results.size(), n);
    std::size_t expected_failures = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (i % 997 == 5 || i % 1999 == 11) {
        ++expected_failures;
        EXPECT_FALSE(results[i].has_value()) << "item " << i;
        continue;
      }
      ASSERT_TRUE(results[i].has_value()) << "item " << i;
      ASSERT_EQ(*results[i], mix(i)) << "item " << i;
    }
    EXPECT_EQ(failed, expected_failures);
    // And without failures, where the caller reads no flag when nothing went to a store.
    const auto plain = polymap::map(std::views::iota(std::size_t{0}, n), mix, o);
    detail::direct_writes_left = ~std::size_t{0};
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(plain[i], mix(i)) << "item " << i;
  }
}

// Results that cross as messages (here strings, through their codec) are marked done in
// the caller as they arrive; a crash keeps those and re-runs only what was not received.
TEST(Processes, EncodedResultsSurviveCrashesAround) {
  constexpr std::size_t n = 2'000;
  options o = processes();
  o.on_error = on_error::collect;
  try {
    (void)polymap::map(std::views::iota(std::size_t{0}, n), [](std::size_t i) {
      (void)faulty_item(i);
      return std::to_string(mix(i));
    }, o);
    FAIL() << "the crashing items were not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 3 * n / 100);
    for (const item_failure& f : e.failures()) EXPECT_NE(fault_of(f.index), fault::none);
    const auto& results = e.results<std::string>();
    ASSERT_EQ(results.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      if (fault_of(i) == fault::none) {
        ASSERT_TRUE(results[i].has_value()) << "item " << i;
        ASSERT_EQ(*results[i], std::to_string(mix(i))) << "item " << i;
      } else {
        ASSERT_FALSE(results[i].has_value()) << "item " << i;
      }
    }
  }
}

// Results come back in bulk and the call's result buffer is kept out of the workers while
// they run: large results must be exact, and the returned vector must be readable by the
// workers of the next call and by any later fork.
TEST(Processes, LargeResultsFeedTheNextCallAndLaterForks) {
  constexpr std::size_t n = 600'001;  // 4.8 MB of results: huge pages, and not whole pages
  const std::vector<std::uint64_t> first =
      polymap::map(std::views::iota(std::size_t{0}, n), mix, processes());
  ASSERT_EQ(first.size(), n);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(first[i], mix(i)) << "item " << i;

  const std::vector<std::uint64_t> second =
      polymap::map(first, [](std::uint64_t x) { return x ^ 0x5555; }, processes());
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(second[i], mix(i) ^ 0x5555) << "item " << i;

  // A child of this program reads the whole vector: no page of it was left out of forks.
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::uint64_t sum = 0;
    for (std::uint64_t x : second) sum += x;
    _exit(sum == std::accumulate(second.begin(), second.end(), std::uint64_t{0}) ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;

  // Into the caller's own buffer, which its items may read (here: the buffer is the input).
  std::vector<std::uint64_t> in_place(n);
  std::iota(in_place.begin(), in_place.end(), std::uint64_t{0});
  polymap::map_into(in_place, in_place, [](std::uint64_t x) { return mix(x); }, processes());
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(in_place[i], mix(i)) << "item " << i;
}

// After a fork, a large result buffer is made writable in one call that reaches out to
// whole pages: the bytes around it on those pages (the allocator's, other objects') stay.
TEST(Processes, ReadyingABufferAfterAForkKeepsTheBytesAroundIt) {
  std::vector<std::uint64_t> memory((std::size_t{5} << 20) / sizeof(std::uint64_t));
  for (std::size_t i = 0; i < memory.size(); ++i) memory[i] = mix(i);
  detail::note_forked();
  detail::prepare_large_buffer(reinterpret_cast<std::byte*>(memory.data() + 1001) + 3,
                               (std::size_t{4} << 20) + 5);
  for (std::size_t i = 0; i < memory.size(); ++i) ASSERT_EQ(memory[i], mix(i)) << "word " << i;
}

// A crashing item must not write a core of the whole program unless the caller asks.
TEST(Processes, WorkersDumpNoCoreUnlessAsked) {
  rlimit mine{};
  ASSERT_EQ(getrlimit(RLIMIT_CORE, &mine), 0);
  if (mine.rlim_max == 0) GTEST_SKIP() << "the hard RLIMIT_CORE is 0 here: no core either way";
  rlimit raised = mine;
  raised.rlim_cur = mine.rlim_max;
  ASSERT_EQ(setrlimit(RLIMIT_CORE, &raised), 0);
  const auto soft_limit = [](std::size_t) {
    rlimit r{};
    return getrlimit(RLIMIT_CORE, &r) == 0 ? static_cast<std::uint64_t>(r.rlim_cur) : 1;
  };
  const auto xs = std::views::iota(std::size_t{0}, std::size_t{8});
  const std::vector<std::uint64_t> off = polymap::map(xs, soft_limit, processes());
  options keep = processes();
  keep.core_dumps = true;
  const std::vector<std::uint64_t> on = polymap::map(xs, soft_limit, keep);
  ASSERT_EQ(setrlimit(RLIMIT_CORE, &mine), 0);
  for (std::size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(off[i], 0U) << "item " << i;
    EXPECT_EQ(on[i], static_cast<std::uint64_t>(raised.rlim_cur)) << "item " << i;
  }
}

// A worker that cannot write its results fails the call with the cause, not an item
// with a made-up exit status. Here an item sabotages its own worker: a file size limit
// of one byte makes its next write to the store fail with EFBIG.
TEST(Processes, WorkerThatCannotWriteItsResultsFailsTheCall) {
  const auto sabotage = [](std::size_t i) {
    if (i == 0) {
      std::signal(SIGXFSZ, SIG_IGN);
      const rlimit one{1, 1};
      (void)setrlimit(RLIMIT_FSIZE, &one);
    }
    return mix(i);
  };
  try {
    (void)polymap::map(std::views::iota(std::size_t{0}, std::size_t{1000}), sabotage,
                       {.backend = backend_kind::processes, .workers = 2, .chunk = 10});
    FAIL() << "the call succeeded";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), EFBIG) << e.what();
    EXPECT_NE(std::string(e.what()).find("could not write its results"), std::string::npos)
        << e.what();
  }
  // Nothing of the call is left: its workers are gone.
  EXPECT_EQ(polymap::map(std::views::iota(std::size_t{0}, std::size_t{100}), mix, processes())[99],
            mix(99));
}

// A call that runs out of descriptors at any point of its set-up (shared memory, a
// worker's pipe, its pidfd) fails with the cause, keeps none of them open, and leaves the
// program able to make the next call.
TEST(Processes, RunningOutOfDescriptorsIsAClearError) {
  if (sanitizer_build) {
    GTEST_SKIP() << "sanitizer runtimes open descriptors of their own at any moment";
  }
  const auto open_descriptors = [] { return entries("/proc/self/fd") - 1; };  // not the listing's
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  const auto items = std::views::iota(std::size_t{0}, std::size_t{100});
  // What the first call makes once per process (the orphan guard's socket) is not a call's.
  ASSERT_EQ(polymap::map(items, mix, processes())[99], mix(99));
  std::size_t refused = 0;
  bool succeeded = false;
  // 0, 1, 2 ... descriptors to spare, until a call has all it needs.
  for (std::size_t spare = 0; spare < 64 && !succeeded; ++spare) {
    const std::size_t before = open_descriptors();
    rlimit tight = saved;
    tight.rlim_cur = before + spare;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
    std::string what;
    int code = 0;
    try {
      succeeded = polymap::map(items, mix, processes())[99] == mix(99);
    } catch (const std::system_error& e) {
      what = e.what();
      code = e.code().value();
    }
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    if (!succeeded) {
      ++refused;
      EXPECT_EQ(code, EMFILE) << "with " << spare << " to spare: '" << what << "'";
      EXPECT_NE(what.find("polymap: processes backend: "), std::string::npos) << what;
    }
    EXPECT_EQ(open_descriptors(), before) << "with " << spare << " to spare: '" << what << "'";
    ASSERT_EQ(polymap::map(items, mix, processes())[99], mix(99));
  }
  EXPECT_TRUE(succeeded) << "no call succeeded with up to 63 descriptors to spare";
  EXPECT_GE(refused, 3U) << "a call needs shared memory, a pipe and a pidfd per worker";
}

enum class fork_fate { dies, hangs };

// The next `n` children this program forks die at once (exit status 7), or hang for ever (as
// one whose fork handler waits for a lock the fork left held), in a fork handler, before a
// worker can run anything. The count lives in shared memory: each child takes one.
void doom_next_fork_children(int n, fork_fate fate = fork_fate::dies) {
  struct doom {
    std::atomic<int> left{0};
    std::atomic<bool> hang{false};
  };
  static doom* const shared = [] {
    void* p = mmap(nullptr, sizeof(doom), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    auto* d = new (p) doom;
    const int registered = pthread_atfork(nullptr, nullptr, [] {
      if (shared->left.fetch_sub(1) > 0) {
        while (shared->hang.load()) pause();
        _exit(7);
      }
      shared->left.fetch_add(1);
    });
    EXPECT_EQ(registered, 0);
    return d;
  }();
  shared->hang.store(fate == fork_fate::hangs);
  shared->left.store(n);
}

// Workers that never start (every new one doomed as `fate` says) are not replaced for ever:
// after a few in a row the call fails and says why (`why`); the next call works.
void expect_a_call_without_workers_fails(fork_fate fate, const options& o, const std::string& why) {
  const auto xs = std::views::iota(std::size_t{0}, std::size_t{100});
  doom_next_fork_children(1000, fate);
  try {
    (void)polymap::map(xs, mix, o);
    doom_next_fork_children(0);
    ADD_FAILURE() << "the call succeeded";
  } catch (const polymap::error& e) {
    doom_next_fork_children(0);
    const std::string what = e.what();
    EXPECT_NE(what.find("in a row ended before they could run an item"), std::string::npos)
        << what;
    EXPECT_NE(what.find(why), std::string::npos) << what;
  }
  EXPECT_EQ(polymap::map(xs, mix, o)[99], mix(99));
}

TEST(Processes, WorkersThatNeverStartFailTheCall) {
  expect_a_call_without_workers_fails(fork_fate::dies, processes(), "exit status 7");
}

// Under a timeout, a worker that hangs before its first item is killed (after the timeout,
// and at least 2 s) and replaced: one such worker costs the call nothing, and workers that
// all hang fail it, saying why, instead of hanging it for ever.
TEST(Processes, AWorkerThatHangsBeforeItsFirstItemIsReplacedUnderATimeout) {
  options o = processes();
  o.timeout = 100ms;
  o.workers = 4;
  doom_next_fork_children(1, fork_fate::hangs);
  const std::vector<std::uint64_t> ys =
      polymap::map(std::views::iota(std::size_t{0}, std::size_t{100}), mix, o);
  doom_next_fork_children(0);
  ASSERT_EQ(ys.size(), 100U);
  for (std::size_t i = 0; i < ys.size(); ++i) ASSERT_EQ(ys[i], mix(i)) << i;
  expect_a_call_without_workers_fails(fork_fate::hangs, o, "without becoming ready");
}

// A crash leaves the rest of its chunk to a fresh worker; when that worker dies before it
// begins, the items go to the next one, not nowhere.
TEST(Processes, ItemsOfAWorkerThatDiedBeforeBeginningThemRunElsewhere) {
  constexpr std::size_t n = 1000;
  constexpr std::size_t crash = 500;  // chunks of 10 from 0: the crash leaves 501-509
  const auto item = [](std::size_t i) {
    if (i == crash) {
      doom_next_fork_children(1);  // the replacement, which would run 501-509
      std::signal(SIGSEGV, SIG_DFL);
      std::raise(SIGSEGV);
    }
    return mix(i);
  };
  doom_next_fork_children(0);  // set up here, in the caller, not first in a worker
  options o = processes();
  o.chunk = 10;
  o.on_error = on_error::collect;
  try {
    (void)polymap::map(std::views::iota(std::size_t{0}, n), item, o);
    doom_next_fork_children(0);
    FAIL() << "the crash was not reported";
  } catch (const map_error& e) {
    doom_next_fork_children(0);
    ASSERT_EQ(e.failures().size(), 1U);
    EXPECT_EQ(e.failures()[0].index, crash);
    const auto& results = e.results<std::uint64_t>();
    ASSERT_EQ(results.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      if (i == crash) continue;
      ASSERT_TRUE(results[i].has_value()) << "item " << i << " never ran";
      EXPECT_EQ(*results[i], mix(i)) << "item " << i;
    }
  }
}

// A worker killed between claiming a chunk and showing it in its slot leaves items that
// no worker accounts for: the caller's sweep at the end finds them and runs them.
TEST(Processes, ItemsClaimedByAWorkerKilledUnseenStillRun) {
  constexpr std::size_t n = 1000;
  static test::shared_counters<int> claims(1);
  *claims = 0;
  detail::claim_hook = [](std::size_t, std::size_t) {
    if (claims->fetch_add(1) == 3) kill(getpid(), SIGKILL);
  };
  options o = processes();
  o.chunk = 10;
  std::vector<std::uint64_t> results;
  try {
    results = polymap::map(std::views::iota(std::size_t{0}, n), mix, o);
  } catch (...) {
    detail::claim_hook = nullptr;
    throw;
  }
  detail::claim_hook = nullptr;
  ASSERT_GT(claims->load(), 3) << "no worker was killed after a claim";
  ASSERT_EQ(results.size(), n);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(results[i], mix(i)) << "item " << i;
}

// The watcher sleeps while a worker ends. Here a worker closes its pipe (with every other
// descriptor) a second before it exits: the pipe at EOF must not wake the caller again and
// again until then. The caller's CPU time is set against a call whose worker exits at once
// (forks, which a sanitizer build makes costly, are in both).
TEST(Processes, AWorkerThatClosedItsPipeIsWaitedForAsleep) {
  options o = processes();
  o.on_error = on_error::collect;
  const auto thread_cpu = [] {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return std::chrono::seconds(t.tv_sec) + std::chrono::nanoseconds(t.tv_nsec);
  };
  const auto caller_cpu = [&](std::chrono::milliseconds before_exit) {
    const auto cpu_before = thread_cpu();
    try {
      (void)polymap::map(
          std::views::iota(std::size_t{0}, std::size_t{8}),
          [before_exit](std::size_t i) {
            if (i == 3) {
              closefrom(3);
              std::this_thread::sleep_for(before_exit);
              _exit(3);
            }
            return mix(i);
          },
          o);
      ADD_FAILURE() << "the exit was not reported";
    } catch (const map_error& e) {
      EXPECT_EQ(e.failures().size(), 1U);
      if (e.failures().size() == 1) {
        EXPECT_EQ(e.failures()[0].index, 3U);
        EXPECT_EQ(e.failures()[0].exit_code, 3) << e.failures()[0].what;
      }
      const auto& results = e.results<std::uint64_t>();
      for (std::size_t i = 0; i < 8; ++i) {
        if (i == 3) continue;
        EXPECT_EQ(results[i], mix(i)) << "item " << i;
      }
    }
    return thread_cpu() - cpu_before;
  };
  (void)caller_cpu(0ms);  // the process's first call pays for what later calls find ready
  const auto at_once = caller_cpu(0ms);
  const auto after_a_second = caller_cpu(1000ms);
  EXPECT_LT(after_a_second - at_once, 200ms)
      << "the caller spun while the worker ended: "
      << std::chrono::duration<double>(after_a_second).count() << " s of CPU, against "
      << std::chrono::duration<double>(at_once).count() << " s when it exits at once";
}

TEST(Processes, TerminateIsASignal) {
  options o = processes();
  o.on_error = on_error::collect;
  try {
    polymap::for_each(
        64,
        [](std::size_t i) {
          if (i == 40) std::terminate();
        },
        o);
    FAIL() << "std::terminate in an item was not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].index, 40u);
    EXPECT_EQ(e.failures()[0].kind, failure_kind::signal);
    EXPECT_EQ(e.failures()[0].signal, SIGABRT);
  }
}

TEST(Processes, FailFastStopsAfterACrash) {
  constexpr std::size_t n = 5'000;  // 2.5 s of items per worker: far longer than a crash
  test::shared_counters<int> ran(n);
  options o = processes();
  o.chunk = 1;
  try {
    polymap::for_each(
        n,
        [&](std::size_t i) {
          ran[i].store(1);
          if (i == 10) std::exit(9);
          std::this_thread::sleep_for(1ms);
        },
        o);
    FAIL() << "the crash was not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].index, 10u);
    EXPECT_EQ(e.failures()[0].exit_code, 9);
  }
  std::size_t count = 0;
  for (std::size_t i = 0; i < n; ++i) count += static_cast<std::size_t>(ran[i].load());
  EXPECT_LT(count, n) << "fail_fast ran every item after the crash";
}

TEST(Processes, RetriesRunACrashedItemInAFreshWorker) {
  constexpr std::size_t n = 200;
  test::shared_counters<int> attempts(n);
  test::shared_counters<pid_t> pids(2 * n);
  options o = processes();
  o.retries = 2;
  o.on_error = on_error::collect;
  std::vector<std::size_t> xs(n);
  for (std::size_t i = 0; i < n; ++i) xs[i] = i;
  try {
    (void)polymap::map(
        xs,
        [&](std::size_t i) {
          const int attempt = attempts[i].fetch_add(1);
          if (attempt < 2) pids[2 * i + static_cast<std::size_t>(attempt)].store(getpid());
          if (i % 50 == 3 && attempt == 0) die_of_segv();  // crashes once, then succeeds
          if (i == 77) std::abort();                       // crashes every time
          return i * 3;
        },
        o);
    FAIL() << "item 77 was not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    const item_failure& f = e.failures()[0];
    EXPECT_EQ(f.index, 77u);
    EXPECT_EQ(f.signal, SIGABRT);
    EXPECT_EQ(f.attempts, 3u);
    EXPECT_EQ(attempts[77].load(), 3);
    const auto& results = e.results<std::size_t>();
    for (std::size_t i = 0; i < n; ++i) {
      if (i == 77) continue;
      ASSERT_TRUE(results[i].has_value()) << "item " << i;
      EXPECT_EQ(*results[i], i * 3);
      EXPECT_EQ(attempts[i].load(), i % 50 == 3 ? 2 : 1) << "item " << i;
      if (i % 50 == 3) {
        EXPECT_NE(pids[2 * i].load(), pids[2 * i + 1].load())
            << "item " << i << " was retried in the worker that crashed";
      }
    }
  }
}

TEST(Processes, CrashesAreCaughtWhenSigchldIsIgnored) {
  // The kernel then reaps the workers itself: the death is still seen, its status is not.
  struct sigaction ignore {};
  struct sigaction previous {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ASSERT_EQ(sigaction(SIGCHLD, &ignore, &previous), 0);
  options o = processes();
  o.on_error = on_error::collect;
  std::vector<int> xs(300);
  for (int i = 0; i < 300; ++i) xs[static_cast<std::size_t>(i)] = i;
  try {
    (void)polymap::map(
        xs,
        [](int x) {
          if (x == 123) std::_Exit(3);
          return x + 1;
        },
        o);
    ADD_FAILURE() << "the crash was not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].index, 123u);
    EXPECT_EQ(e.failures()[0].kind, failure_kind::exit);
    EXPECT_EQ(e.failures()[0].exit_code, -1);
    EXPECT_NE(e.failures()[0].what.find("exit status was lost"), std::string::npos)
        << e.failures()[0].what;
    const auto& results = e.results<int>();
    for (std::size_t i = 0; i < xs.size(); ++i) {
      if (i != 123) {
        EXPECT_EQ(results[i], xs[i] + 1) << "item " << i;
      }
    }
  }
  sigaction(SIGCHLD, &previous, nullptr);
}

// --- timeouts ----------------------------------------------------------------------------

TEST(Processes, HungItemIsKilledWithItsChildren) {
  constexpr auto timeout = 300ms;
  test::shared_counters<std::int64_t> seen(3);  // grandchild pid, start of the hung item
  options o = processes();
  o.timeout = timeout;
  o.on_error = on_error::collect;
  o.chunk = 1;
  clock::time_point returned;
  try {
    polymap::for_each(
        16,
        [&](std::size_t i) {
          if (i != 5) return;
          const pid_t child = fork();
          if (child == 0) {
            for (;;) pause();
          }
          seen[0].store(child);
          seen[1].store(clock::now().time_since_epoch().count());
          std::atomic<std::uint64_t> spin{0};
          for (;;) spin.fetch_add(1, std::memory_order_relaxed);
        },
        o);
    FAIL() << "the hung item was not reported";
  } catch (const map_error& e) {
    returned = clock::now();
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].index, 5u);
    EXPECT_EQ(e.failures()[0].kind, failure_kind::timeout) << e.failures()[0].what;
  }
  const clock::time_point started{clock::duration{seen[1].load()}};
  const auto late =
      std::chrono::duration_cast<std::chrono::milliseconds>(returned - started - timeout);
  RecordProperty("kill_latency_ms", static_cast<int>(late.count()));
  // The figure is timeout + 100 ms (measured in benchmarks/); this only rules out a hang.
  EXPECT_LT(late, 2s);
  const auto grandchild = static_cast<pid_t>(seen[0].load());
  ASSERT_GT(grandchild, 0);
  EXPECT_TRUE(gone_within(grandchild, 1000ms)) << "the hung item's child " << grandchild;
}

TEST(Processes, ItemThatIgnoresTermIsKilled) {
  options o = processes(1);
  o.timeout = 100ms;
  o.on_error = on_error::collect;
  try {
    polymap::for_each(
        3,
        [](std::size_t i) {
          if (i != 1) return;
          std::signal(SIGTERM, SIG_IGN);
          for (;;) pause();
        },
        o);
    FAIL() << "the hung item was not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].index, 1u);
    EXPECT_EQ(e.failures()[0].kind, failure_kind::timeout);
  }
}

TEST(Processes, AChildTheProgramForksWhileACallRunsEndsAloneOnSigterm) {
  // A process the program forks (without exec) while workers run starts without the
  // caller's handler and worker groups: a SIGTERM to it ends it, not the caller's workers.
  int running[2];
  ASSERT_EQ(pipe(running), 0);
  std::vector<int> ys;
  std::exception_ptr error;
  std::thread call([&] {
    try {
      ys = polymap::map(
          std::vector<int>{0, 1},
          [w = running[1]](int x) {
            const char c = 'r';
            (void)!write(w, &c, 1);
            std::this_thread::sleep_for(500ms);
            return x + 1;
          },
          processes(2));
    } catch (...) {
      error = std::current_exception();
    }
  });
  char c = 0;
  EXPECT_EQ(read(running[0], &c, 1), 1);  // an item runs
  const pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  kill(child, SIGTERM);
  int status = 0;
  waitpid(child, &status, 0);
  call.join();
  close(running[0]);
  close(running[1]);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM) << status;
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the call failed: " << e.what();
    }
  }
  EXPECT_EQ(ys, (std::vector<int>{1, 2}));
}

/// Item 7 of 40 closes every descriptor above 2 (`dup` 0) or puts /dev/null on them
/// (`dup` 1): the worker's pipe and store among them. Results are `make(x * 3)`. The map's
/// results, and the failures it threw (none when nothing was lost).
template <class Make>
auto take_the_descriptors(int dup, Make make) {
  using R = decltype(make(0));
  options o = processes(2);
  o.on_error = on_error::collect;
  std::vector<int> xs(40);
  std::iota(xs.begin(), xs.end(), 0);
  const auto item = [dup, make](int x) {
    if (x == 7) {
      const int null = dup == 0 ? -1 : open("/dev/null", O_WRONLY);
      for (int fd = 3; fd < 1024; ++fd) {
        if (dup == 0) {
          close(fd);
        } else if (fd != null) {
          dup2(null, fd);
        }
      }
    }
    return make(x * 3);
  };
  std::pair<std::vector<std::optional<R>>, std::vector<item_failure>> out;
  try {
    std::vector<R> ys = polymap::map(xs, item, o);
    out.first.assign(ys.begin(), ys.end());
  } catch (const map_error& e) {
    out = {e.results<R>(), e.failures()};
  }
  return out;
}

TEST(Processes, AnItemThatClosesOrReplacesTheWorkersDescriptorsCostsOnlyWhatWasNotKept) {
  // The worker must neither write into whatever file now has its descriptors nor leave the
  // item's chunk to workers that end the same way for ever (the call used to hang).
  const auto text = [](int v) { return std::to_string(v); };
  // More than the worker keeps in shared memory: sent as it is made, through the pipe.
  const auto long_text = [](int v) { return std::to_string(v) + std::string(300'000, '.'); };
  const auto number = [](int v) { return static_cast<long>(v); };
  for (int dup = 0; dup < 2; ++dup) {
    SCOPED_TRACE(dup);
    // Results kept in shared memory (trivially copyable ones in the ring, small encoded ones
    // in the copy of the messages not sent yet) come back: nothing is lost.
    const auto [numbers, numbers_failed] = take_the_descriptors(dup, number);
    const auto [texts, texts_failed] = take_the_descriptors(dup, text);
    EXPECT_TRUE(numbers_failed.empty());
    EXPECT_TRUE(texts_failed.empty());
    // The culprit's own result could not be sent: it fails alone, found by running the
    // chunk's unfinished items one by one.
    const auto [longs, longs_failed] = take_the_descriptors(dup, long_text);
    ASSERT_EQ(longs_failed.size(), 1u);
    EXPECT_EQ(longs_failed[0].index, 7u);
    EXPECT_EQ(longs_failed[0].kind, failure_kind::exit);
    EXPECT_NE(longs_failed[0].what.find("closed or replaced file descriptors"), std::string::npos)
        << longs_failed[0].what;
    for (int i = 0; i < 40; ++i) {
      const auto at = static_cast<std::size_t>(i);
      EXPECT_EQ(numbers[at].value_or(-1), number(i * 3)) << i;
      EXPECT_EQ(texts[at].value_or("-"), text(i * 3)) << i;
      if (i != 7) {
        EXPECT_EQ(longs[at].value_or("-"), long_text(i * 3)) << i;
      }
    }
  }
}

/// How many times each of 1000 items ran in a call with `on_error` where item 7 crashes its
/// worker, and the results that came back.
template <class R>
std::pair<std::vector<int>, std::vector<std::optional<R>>> run_counts_around_a_crash(
    on_error mode, const std::set<int>& crashing = {7}) {
  shared_vector<std::atomic<int>> runs(1000);
  std::vector<int> xs(1000);
  std::iota(xs.begin(), xs.end(), 0);
  options o = processes(1);
  o.on_error = mode;
  o.chunk = 100;  // items 0 to 6 end in the chunk that crashes; the next worker has the slot
  std::vector<std::optional<R>> results;
  try {
    (void)polymap::map(
        xs,
        [&runs, &crashing](int i) {
          runs[static_cast<std::size_t>(i)].fetch_add(1);
          if (crashing.contains(i)) raise(SIGSEGV);
          return R(std::to_string(i));
        },
        o);
  } catch (const map_error& e) {
    results = e.results<R>();
  }
  std::vector<int> counts;
  for (const auto& r : runs) counts.push_back(r.load());
  return {counts, results};
}

TEST(Processes, EncodedResultsOfItemsThatEndedBeforeACrashInTheirChunkAreKept) {
  // They wait for the end of the chunk to be sent, and a copy in shared memory outlives the
  // worker: the items that ended run once, and their results come back.
  const auto [counts, results] = run_counts_around_a_crash<std::string>(on_error::collect);
  ASSERT_EQ(results.size(), 1000U);
  for (std::size_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(counts[i], 1) << i;
    if (i != 7) {
      EXPECT_EQ(results[i].value_or("-"), std::to_string(i)) << i;
    }
  }
  // fail_fast stops the call at the crash: the items before it in the chunk ended, and their
  // results are there.
  const auto [fast_counts, fast_results] =
      run_counts_around_a_crash<std::string>(on_error::fail_fast);
  ASSERT_EQ(fast_results.size(), 1000U);
  for (std::size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(fast_counts[i], 1) << i;
    EXPECT_EQ(fast_results[i].value_or("-"), std::to_string(i)) << i;
  }
}

TEST(Processes, WorkersForkedIntoTheSlotOfDeadOnesStartWithNothingKept) {
  // Four crashes, each worker's replacement forked into a slot where a dead one kept its
  // messages: it must not read or send them again.
  const std::set<int> crashing = {7, 150, 420, 777};
  const auto [counts, results] = run_counts_around_a_crash<std::string>(on_error::collect,
                                                                         crashing);
  ASSERT_EQ(results.size(), 1000U);
  for (std::size_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(counts[i], 1) << i;
    if (!crashing.contains(static_cast<int>(i))) {
      EXPECT_EQ(results[i].value_or("-"), std::to_string(i)) << i;
    } else {
      EXPECT_FALSE(results[i].has_value()) << i;
    }
  }
}

TEST(Processes, TimeoutSparesItemsThatFinish) {
  options o = processes();
  o.timeout = 2s;
  std::vector<int> xs(500);
  for (int i = 0; i < 500; ++i) xs[static_cast<std::size_t>(i)] = i;
  const auto ys = polymap::map(
      xs,
      [](int x) {
        std::this_thread::sleep_for(100us);
        return x + 1;
      },
      o);
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], xs[i] + 1);
}

TEST(Processes, AHugeTimeoutNeverFires) {
  // hours::max() is some 3e22 s: more than a clock in nanoseconds holds.
  options o = processes();
  o.timeout = std::chrono::hours::max();
  const std::vector<int> xs(4, 1);
  const auto ys = polymap::map(
      xs,
      [](int x) {
        std::this_thread::sleep_for(20ms);
        return x + 1;
      },
      o);
  EXPECT_EQ(ys, std::vector<int>(4, 2));
}

// --- memory ------------------------------------------------------------------------------

TEST(Processes, MemoryBombIsAMemoryFailure) {
  options o = processes(1);
  o.memory_limit = std::size_t{256} << 20;
  o.on_error = on_error::collect;
  auto bombs = [](std::size_t i) -> std::size_t {
    if (i == 2) {  // one huge request
      std::vector<char> big(std::size_t{8} << 30, 1);
      return big.size();
    }
    if (i == 5) {  // a leak, one touched megabyte at a time
      std::vector<std::unique_ptr<char[]>> blocks;
      for (;;) {
        blocks.emplace_back(new char[1 << 20]);
        std::memset(blocks.back().get(), 1, 1 << 20);
      }
    }
    std::vector<char> fits(std::size_t{32} << 20, 1);  // well under the limit
    return fits.size() + i;
  };
  std::vector<std::size_t> xs(8);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = i;
  if (sanitizer_build) {
    EXPECT_THROW((void)polymap::map(xs, bombs, o), option_error);
    GTEST_SKIP() << "sanitizer builds refuse memory_limit (their shadow memory fills any cap)";
  }
  try {
    (void)polymap::map(xs, bombs, o);
    FAIL() << "the memory bombs were not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 2u);
    EXPECT_EQ(e.failures()[0].index, 2u);
    EXPECT_EQ(e.failures()[1].index, 5u);
    for (const item_failure& f : e.failures()) {
      EXPECT_EQ(f.kind, failure_kind::memory) << "item " << f.index << ": " << f.what;
    }
    const auto& results = e.results<std::size_t>();
    for (std::size_t i : {0, 1, 3, 4, 6, 7}) {
      ASSERT_TRUE(results[i].has_value()) << "item " << i;
      EXPECT_EQ(*results[i], (std::size_t{32} << 20) + i);
    }
  }
}

/// Blocks an item leaked: a list whose head is a global, so that no allocation is elided.
struct leaked_block {
  leaked_block* next;
  char bytes[1016];
};
leaked_block* leaked = nullptr;

// Many small allocations past the cap are a memory failure as one huge request is, whether
// the item's blocks are freed as the bad_alloc unwinds or leaked. A leak used to leave the
// worker's heap full: the items after it failed with std::bad_alloc too, or the worker's own
// bookkeeping did and the worker exited with status 122; and the failures' text said
// "std::bad_alloc", not which limit was passed.
TEST(Processes, SmallAllocationsPastTheCapAreAMemoryFailure) {
  options o = processes(1);  // one worker: every item after a leak would run in its heap
  o.memory_limit = std::size_t{64} << 20;
  o.on_error = on_error::collect;
  auto item = [](std::size_t i) -> std::size_t {
    constexpr std::size_t kib = 1024;
    if (i == 3) {  // freed by the unwinding
      std::vector<std::unique_ptr<char[]>> blocks;
      for (;;) {
        blocks.emplace_back(new char[kib]);
        std::memset(blocks.back().get(), 1, kib);
      }
    }
    if (i == 7) {  // leaked
      for (;;) {
        auto* block = new leaked_block;
        std::memset(block->bytes, 1, sizeof block->bytes);
        block->next = leaked;
        leaked = block;
      }
    }
    std::vector<char> fits(std::size_t{1} << 20, 1);
    return fits.size() + i;
  };
  std::vector<std::size_t> xs(12);
  std::iota(xs.begin(), xs.end(), std::size_t{0});
  if (sanitizer_build) {
    EXPECT_THROW((void)polymap::map(xs, item, o), option_error);
    GTEST_SKIP() << "sanitizer builds refuse memory_limit (their shadow memory fills any cap)";
  }
  try {
    (void)polymap::map(xs, item, o);
    FAIL() << "the items past the cap were not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 2u) << e.what();
    EXPECT_EQ(e.failures()[0].index, 3u);
    EXPECT_EQ(e.failures()[1].index, 7u);
    for (const item_failure& f : e.failures()) {
      EXPECT_EQ(f.kind, failure_kind::memory) << "item " << f.index << ": " << f.what;
      EXPECT_EQ(f.exit_code, 0) << "item " << f.index << ": " << f.what;
      EXPECT_NE(f.what.find("memory_limit of 64 MiB"), std::string::npos) << f.what;
    }
    const auto& results = e.results<std::size_t>();
    for (std::size_t i : {0, 1, 2, 4, 5, 6, 8, 9, 10, 11}) {
      ASSERT_TRUE(results[i].has_value()) << "item " << i;
      EXPECT_EQ(*results[i], (std::size_t{1} << 20) + i);
    }
  }
}

// --- nothing left behind -----------------------------------------------------------------

// The cap is for the items: what a worker needs for itself (here, staging for large
// results) is allocated before it applies the cap, so a tiny cap cannot kill every worker at
// start-up (which would replace them forever).
TEST(Processes, TinyMemoryLimitLeavesTheWorkersTheirOwnMemory) {
  options o = processes();
  o.memory_limit = 1;
  using block = std::array<char, 4000>;
  auto fill = [](std::size_t i) {
    block b{};
    b[i % b.size()] = static_cast<char>(i % 127 + 1);
    return b;
  };
  const auto xs = std::views::iota(std::size_t{0}, std::size_t{1000});
  if (sanitizer_build) {
    EXPECT_THROW((void)polymap::map(xs, fill, o), option_error);
    GTEST_SKIP() << "sanitizer builds refuse memory_limit (their shadow memory fills any cap)";
  }
  const std::vector<block> got = polymap::map(xs, fill, o);
  ASSERT_EQ(got.size(), 1000u);
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], fill(i)) << "item " << i;
}

// A cap as large as a size_t holds ("no cap") must not wrap past the worker's own size to a
// tiny one that fails every allocation.
TEST(Processes, TheLargestMemoryLimitCapsNothing) {
  options o = processes();
  o.memory_limit = std::numeric_limits<std::size_t>::max();
  if (sanitizer_build) {
    EXPECT_THROW((void)polymap::map(std::vector<int>(4), [](int x) { return x; }, o),
                 option_error);
    GTEST_SKIP() << "sanitizer builds refuse memory_limit (their shadow memory fills any cap)";
  }
  const std::vector<std::size_t> got = polymap::map(
      std::vector<int>(4, 1),
      [](int x) {
        std::vector<char> block(std::size_t{64} << 20, static_cast<char>(x));
        return static_cast<std::size_t>(block[block.size() - 1]) + block.size();
      },
      o);
  EXPECT_EQ(got, std::vector<std::size_t>(4, (std::size_t{64} << 20) + 1));
}

TEST(Processes, ThousandMapsGiveBackWhatTheyTook) {
  options ok = processes();
  options failing = processes();
  failing.on_error = on_error::collect;
  options hanging = failing;
  hanging.timeout = 20ms;
  std::vector<int> xs(64);
  for (int i = 0; i < 64; ++i) xs[static_cast<std::size_t>(i)] = i;
  auto run = [&](int round) {
    if (round % 100 == 50) {
      EXPECT_THROW(polymap::for_each(
                       8,
                       [](std::size_t i) {
                         if (i == 3)
                           for (;;) pause();
                       },
                       hanging),
                   map_error);
    } else if (round % 10 == 5) {
      EXPECT_THROW((void)polymap::map(
                       xs,
                       [](int x) {
                         if (x == 9) std::abort();
                         return x;
                       },
                       failing),
                   map_error);
    } else {
      const auto ys = polymap::map(
          xs, [](int x) { return 2 * x; }, ok);
      ASSERT_EQ(ys.size(), xs.size());
      for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], 2 * xs[i]);
    }
  };
  for (int round = 0; round < 5; ++round) run(round);
  const holdings before = holdings_now();
  for (int round = 0; round < rounds(1000); ++round) run(round);
  EXPECT_EQ(holdings_now(), before);
}

/// The helper built beside this test, or the one POLYMAP_SIGTERM_HELPER names (the test
/// binary carried to another machine, as scripts/gpu-check.sh does).
std::string helper_path() {
  const char* moved = std::getenv("POLYMAP_SIGTERM_HELPER");
  return moved != nullptr && *moved != '\0' ? moved : POLYMAP_SIGTERM_HELPER;
}

/// Runs the SIGTERM helper in `mode`, sends it `sig` once its workers run, and returns its
/// wait status and what it printed.
struct helper_outcome {
  int status = 0;
  std::string output;
  std::vector<pid_t> workers;
  std::vector<std::size_t> items;  // the items that started, as they said
  std::vector<pid_t> children;     // every child of the helper just before the SIGTERM
  std::vector<pid_t> grandchildren;  // the items' own children, as they said
};

helper_outcome terminate_helper(const std::string& mode, int sig = SIGTERM) {
  helper_outcome out;
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  const std::string path = helper_path();
  std::vector<char*> argv{const_cast<char*>(path.c_str()), const_cast<char*>(mode.c_str()),
                          nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    ADD_FAILURE() << "cannot start " << path << ": " << std::strerror(rc);
    close(fds[0]);
    return out;
  }
  auto read_some = [&](int wait_ms) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, wait_ms) <= 0) return false;
    char buf[256];
    const ssize_t got = read(fds[0], buf, sizeof buf);
    if (got <= 0) return false;
    out.output.append(buf, static_cast<std::size_t>(got));
    return true;
  };
  const auto deadline = clock::now() + 30s;
  const std::ptrdiff_t lines_expected = mode == "grandchildren" ? 4 : 2;
  while (std::count(out.output.begin(), out.output.end(), '\n') < lines_expected &&
         clock::now() < deadline) {
    if (!read_some(100) && process_gone(pid)) break;
  }
  std::istringstream lines(out.output);
  for (std::string word, id; lines >> word >> id;) {
    if (word == "worker") out.workers.push_back(static_cast<pid_t>(std::stol(id)));
    if (word == "item") out.items.push_back(std::stoul(id));
    if (word == "grandchild") out.grandchildren.push_back(static_cast<pid_t>(std::stol(id)));
  }
  EXPECT_EQ(out.workers.size(), 2u) << "helper said: " << out.output;
  // The caller registers each worker's group with the orphan guard just after the fork,
  // which a worker can outrun to its first line: give the caller a moment.
  if (mode == "grandchildren") std::this_thread::sleep_for(500ms);
  out.children = children_of(pid);
  kill(pid, sig);
  // A helper that does not end is a failure, not a hang.
  const auto give_up = clock::now() + 30s;
  pid_t got = 0;
  while ((got = waitpid(pid, &out.status, WNOHANG)) == 0 && clock::now() < give_up) {
    std::this_thread::sleep_for(10ms);
  }
  if (got == 0) {
    ADD_FAILURE() << "the helper did not end within 30 s of signal " << sig;
    kill(pid, SIGKILL);
    got = waitpid(pid, &out.status, 0);
  }
  EXPECT_EQ(got, pid);
  while (read_some(0)) {
  }
  close(fds[0]);
  return out;
}

/// What /dev/shm holds, but Open MPI's segments: the MPI tests that ctest may run meanwhile
/// make (and, for a rank that was killed, leave) their own there.
std::set<std::string> dev_shm() {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/dev/shm", ec)) {
    const std::string name = e.path().filename();
    if (name.starts_with("vader_segment.") || name.starts_with("sm_segment.")) continue;
    names.insert(e.path());
  }
  return names;
}

TEST(Processes, SigtermToTheCallerLeavesNothingBehind) {
  const auto shm_before = dev_shm();
  const helper_outcome out = terminate_helper("default");
  EXPECT_TRUE(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGTERM)
      << "wait status " << out.status << ", output: " << out.output;
  std::this_thread::sleep_for(1s);
  for (pid_t w : out.workers) EXPECT_TRUE(process_gone(w)) << "worker " << w << " survived";
  EXPECT_EQ(dev_shm(), shm_before);
}

// The same after a crash: the worker that replaced the crashed one goes too.
TEST(Processes, SigtermAfterACrashLeavesNothingBehind) {
  const helper_outcome out = terminate_helper("after-crash");
  EXPECT_TRUE(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGTERM)
      << "wait status " << out.status << ", output: " << out.output;
  // Item 0 crashed, so items 1 and 2 ran on the other first worker and on its replacement.
  EXPECT_EQ(std::set<std::size_t>(out.items.begin(), out.items.end()),
            (std::set<std::size_t>{1, 2}))
      << out.output;
  for (pid_t w : out.workers) {
    EXPECT_NE(std::find(out.children.begin(), out.children.end(), w), out.children.end())
        << "worker " << w << " is not the caller's child; helper said: " << out.output;
  }
  std::this_thread::sleep_for(1s);
  for (pid_t c : out.children) EXPECT_TRUE(process_gone(c)) << "process " << c << " survived";
}

// SIGKILL of the caller: no handler runs, the workers die of their parent-death signal,
// and the orphan guard kills what their items started.
TEST(Processes, SigkillToTheCallerLeavesNoItemsChildBehind) {
  const helper_outcome out = terminate_helper("grandchildren", SIGKILL);
  EXPECT_TRUE(WIFSIGNALED(out.status) && WTERMSIG(out.status) == SIGKILL)
      << "wait status " << out.status << ", output: " << out.output;
  ASSERT_EQ(out.grandchildren.size(), 2u) << "helper said: " << out.output;
  for (pid_t w : out.workers) EXPECT_TRUE(gone_within(w, 10s)) << "worker " << w << " survived";
  for (pid_t g : out.grandchildren) {
    EXPECT_TRUE(gone_within(g, 10s)) << "item's child " << g << " survived its caller";
    if (!process_gone(g)) kill(g, SIGKILL);  // leave nothing behind, whatever the outcome
  }
}

/// Field `k` (1-based, after the command's name) of /proc/<pid>/stat: 1 state, 2 ppid,
/// 3 pgrp, 4 session.
long stat_field(pid_t pid, int k) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return -1;
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  for (int i = 0; i < k; ++i) rest >> field;
  return field.empty() || field[0] < '0' || field[0] > '9' ? -1 : std::stol(field);
}

std::string comm_of(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return name;
}

// The helper that does it runs once the first call has forked workers. It is a shell, not a
// fork of the caller (which would hold every page of the caller's memory), no child of the
// caller's (a program's wait() for its own children must not wait for it), and in a session
// of its own (a kill of the caller's process group must not take it).
TEST(Processes, TheOrphanGuardIsAShellOfItsOwn) {
  (void)polymap::map(std::vector<int>{1, 2, 3}, [](int x) { return x; }, processes());
  const pid_t helper = detail::signal_guard::orphan_helper_pid();
  ASSERT_GT(helper, 0) << "no orphan guard was started";
  EXPECT_FALSE(process_gone(helper));
  EXPECT_EQ(comm_of(helper), "sh");
  EXPECT_NE(stat_field(helper, 2), getpid());
  EXPECT_NE(stat_field(helper, 4), stat_field(getpid(), 4)) << "the caller's session";
  EXPECT_NE(stat_field(helper, 3), stat_field(getpid(), 3)) << "the caller's process group";
  for (pid_t child : children_of(getpid())) EXPECT_NE(child, helper);
}

TEST(Processes, TheCallersOwnSigtermHandlerRuns) {
  const helper_outcome out = terminate_helper("own-handler");
  EXPECT_TRUE(WIFEXITED(out.status) && WEXITSTATUS(out.status) == 7)
      << "wait status " << out.status << ", output: " << out.output;
  EXPECT_NE(out.output.find("handled"), std::string::npos) << out.output;
  for (pid_t w : out.workers) {
    EXPECT_TRUE(gone_within(w, 1000ms)) << "worker " << w << " survived";
  }
}

// --- results of any type -----------------------------------------------------------------

struct sample {
  std::string name;
  std::vector<double> values;
  bool operator==(const sample&) const = default;
};

}  // namespace

template <>
struct codec<sample> {
  static void encode(const sample& s, std::string& out) {
    const std::uint64_t size = s.name.size();
    out.append(reinterpret_cast<const char*>(&size), sizeof size);
    out.append(s.name);
    out.append(reinterpret_cast<const char*>(s.values.data()), s.values.size() * sizeof(double));
  }
  static sample decode(std::string_view bytes) {
    std::uint64_t size = 0;
    std::memcpy(&size, bytes.data(), sizeof size);
    bytes.remove_prefix(sizeof size);
    sample s{std::string(bytes.substr(0, size)), {}};
    bytes.remove_prefix(size);
    s.values.resize(bytes.size() / sizeof(double));
    if (!s.values.empty()) std::memcpy(s.values.data(), bytes.data(), bytes.size());
    return s;
  }
};

namespace {

// A trivially copyable result that holds a pointer: its bytes would point into the worker.
struct name_ref {
  const char* text;
  std::size_t size;
};

// A codec whose decode takes the wrong parameter: specialised, yet no codec to polymap (a
// result of this type stops the build with a static_assert that says what is expected).
struct misdeclared {
  int value;
};

}  // namespace

template <>
struct codec<name_ref> {
  static void encode(const name_ref& r, std::string& out) { out.append(r.text, r.size); }
  static name_ref decode(std::string_view bytes) {
    // Kept for the program's life, as a result's text must be (a test's few).
    static std::vector<std::unique_ptr<std::string>> kept;
    static std::mutex kept_lock;
    const std::lock_guard<std::mutex> lock(kept_lock);
    kept.push_back(std::make_unique<std::string>(bytes));
    return {kept.back()->data(), kept.back()->size()};
  }
};

template <>
struct codec<misdeclared> {
  static void encode(const misdeclared& m, std::string& out) {
    out.append(std::to_string(m.value));
  }
  static misdeclared decode(const std::string& bytes) { return {std::stoi(bytes)}; }
};

static_assert(polymap::detail::codec_specialised<misdeclared> && !polymap::has_codec<misdeclared>);
static_assert(!polymap::detail::codec_specialised<name_ref*>);

namespace {

TEST(Processes, VectorsOfTypesWithACodecCarryResults) {
  // Element by element: strings, a user's type with a codec, vectors of vectors.
  std::vector<int> xs(300);
  for (int i = 0; i < 300; ++i) xs[static_cast<std::size_t>(i)] = i;
  const auto words = [](int i) {
    std::vector<std::string> w(static_cast<std::size_t>(i % 5));
    for (std::size_t k = 0; k < w.size(); ++k) {
      w[k] = std::string(k + 1, static_cast<char>('a' + i % 26));
    }
    return w;
  };
  const options serial{.backend = backend::serial};
  EXPECT_EQ(polymap::map(xs, words, processes()), polymap::map(xs, words, serial));
  const auto nested = [&](int i) {
    return std::vector<std::vector<std::string>>{words(i), {}, words(i + 1)};
  };
  EXPECT_EQ(polymap::map(xs, nested, processes()), polymap::map(xs, nested, serial));
  const auto names = [](int i) {
    auto* text = new std::string(std::to_string(i));  // NOLINT: the worker exits
    return std::vector<name_ref>{{text->data(), text->size()}, {text->data(), 1}};
  };
  const std::vector<std::vector<name_ref>> got = polymap::map(xs, names, processes());
  ASSERT_EQ(got.size(), xs.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), 2U);
    ASSERT_EQ(std::string_view(got[i][0].text, got[i][0].size), std::to_string(i));
    ASSERT_EQ(std::string_view(got[i][1].text, got[i][1].size), std::to_string(i).substr(0, 1));
  }
}

TEST(Processes, AUserCodecOfATriviallyCopyableTypeIsUsedNotItsBytes) {
  std::vector<int> xs(200);
  for (int i = 0; i < 200; ++i) xs[static_cast<std::size_t>(i)] = i;
  const auto name = [](int i) {
    // Text in the worker's heap: its address means nothing in the caller.
    auto* text = new std::string("item-" + std::to_string(i));  // NOLINT: the worker exits
    return name_ref{text->data(), text->size()};
  };
  const std::vector<name_ref> ys = polymap::map(xs, name, processes());
  ASSERT_EQ(ys.size(), xs.size());
  for (std::size_t i = 0; i < ys.size(); ++i) {
    ASSERT_EQ(std::string_view(ys[i].text, ys[i].size), "item-" + std::to_string(i));
  }
}

sample make_sample(int i) {
  return {"sample-" + std::to_string(i),
          std::vector<double>(static_cast<std::size_t>(i % 17), 0.5 * i)};
}

TEST(Processes, UserCodecCarriesResults) {
  std::vector<int> xs(3'000);
  for (int i = 0; i < 3'000; ++i) xs[static_cast<std::size_t>(i)] = i;
  const std::vector<sample> ys = polymap::map(xs, make_sample, processes());
  ASSERT_EQ(ys.size(), xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], make_sample(xs[i]));

  options unordered = processes();
  unordered.ordered = false;
  std::size_t count = 0;
  for (auto&& [index, value] : polymap::imap(xs, make_sample, unordered)) {
    ASSERT_EQ(value, make_sample(xs[index]));
    ++count;
  }
  EXPECT_EQ(count, xs.size());
}

// libstdc++'s pair and tuple are not trivially copyable: they come back through their
// built-in codecs, member by member (and were refused before).
TEST(Processes, PairAndTupleResultsComeBack) {
  std::vector<int> xs(2'000);
  std::iota(xs.begin(), xs.end(), 0);
  const auto pairs = polymap::map(
      xs, [](int x) { return std::pair<int, double>(x, 0.25 * x); }, processes());
  ASSERT_EQ(pairs.size(), xs.size());
  for (int x : xs) ASSERT_EQ(pairs[static_cast<std::size_t>(x)], std::pair(x, 0.25 * x));

  auto tuple_of = [](int x) {
    return std::tuple<int, std::string>(x, "item-" + std::to_string(x));
  };
  const auto tuples = polymap::map(xs, tuple_of, processes());
  ASSERT_EQ(tuples.size(), xs.size());
  for (int x : xs) ASSERT_EQ(tuples[static_cast<std::size_t>(x)], tuple_of(x));

  // Members with codecs of their own, nested, and a stream.
  auto nested = [](int x) {
    return std::pair<std::string, std::tuple<std::vector<double>, char, std::string>>(
        std::string(static_cast<std::size_t>(x % 5), 'a'),
        {std::vector<double>(static_cast<std::size_t>(x % 3), 0.5 * x), 'c', ""});
  };
  const auto nests = polymap::map(xs, nested, processes());
  for (int x : xs) ASSERT_EQ(nests[static_cast<std::size_t>(x)], nested(x));
  std::size_t count = 0;
  for (auto&& [index, value] : polymap::imap(xs, tuple_of, processes())) {
    ASSERT_EQ(value, tuple_of(xs[index]));
    ++count;
  }
  EXPECT_EQ(count, xs.size());

  // A member that can only be moved.
  struct token {
    explicit token(int v) : value(v) {}
    token(token&&) = default;
    token& operator=(token&&) = default;
    int value;
  };
  const auto moved = polymap::map(
      xs, [](int x) { return std::pair<token, int>(token(x), -x); }, processes());
  for (int x : xs) {
    ASSERT_EQ(moved[static_cast<std::size_t>(x)].first.value, x);
    ASSERT_EQ(moved[static_cast<std::size_t>(x)].second, -x);
  }
}

TEST(Processes, PairCodecRefusesBytesItDidNotWrite) {
  using pair = std::pair<int, std::string>;
  std::string bytes;
  codec<pair>::encode({7, "seven"}, bytes);
  EXPECT_EQ(codec<pair>::decode(bytes), pair(7, "seven"));
  EXPECT_THROW((void)codec<pair>::decode(std::string_view(bytes).substr(0, 6)),
               std::length_error);
  EXPECT_THROW((void)codec<std::tuple<double>>::decode("abc"), std::length_error);
}

struct opaque {
  std::string text;
};

TEST(Processes, ResultsWithoutACodecAreRefused) {
  const std::vector<int> xs{1, 2, 3};
  try {
    (void)polymap::map(
        xs, [](int x) { return opaque{std::to_string(x)}; }, processes());
    FAIL() << "a result type without a codec was accepted";
  } catch (const option_error& e) {
    EXPECT_NE(std::string(e.what()).find("codec"), std::string::npos) << e.what();
    EXPECT_EQ(e.option(), "backend");
  }
}

TEST(Processes, ResultsWithoutACodecAreRefusedByTheAsyncCallAndTheStreamThemselves) {
  const std::vector<int> xs{1, 2, 3};
  const auto opaque_of = [](int x) { return opaque{std::to_string(x)}; };
  // map_async and imap throw at the call, before a job or a stream exists.
  EXPECT_THROW((void)polymap::map_async(xs, opaque_of, processes()), option_error);
  std::vector<int> ys = xs;
  EXPECT_THROW((void)polymap::imap(ys, opaque_of, processes()), option_error);
  // A timeout sends the call to worker processes: the refusal names it, not a backend that
  // the call never named.
  for (const bool async : {false, true}) {
    SCOPED_TRACE(async ? "map_async" : "map");
    try {
      options o;
      o.timeout = std::chrono::seconds(5);
      if (async) {
        (void)polymap::map_async(xs, opaque_of, o);
      } else {
        (void)polymap::map(xs, opaque_of, o);
      }
      ADD_FAILURE() << "a result type without a codec was accepted";
    } catch (const option_error& e) {
      EXPECT_EQ(e.option(), "timeout") << e.what();
      EXPECT_NE(std::string(e.what()).find("codec"), std::string::npos) << e.what();
    }
  }
}

struct fragile {
  std::string text;
  bool operator==(const fragile&) const = default;
};

}  // namespace

template <>
struct codec<fragile> {
  static void encode(const fragile& f, std::string& out) { out.append(f.text); }
  static fragile decode(std::string_view bytes) {
    if (bytes == "poison") throw std::runtime_error("cannot read a poisoned text");
    return {std::string(bytes)};
  }
};

namespace {

fragile make_fragile(int x) { return {x % 100 == 42 ? "poison" : "text-" + std::to_string(x)}; }

// A codec whose decode throws in the caller used to make map throw that exception as it is,
// losing every other result; it is the failure of that item, which names what went wrong.
TEST(Processes, AThrowingDecodeFailsItsItemAlone) {
  std::vector<int> xs(300);
  std::iota(xs.begin(), xs.end(), 0);
  options o = processes();
  o.on_error = on_error::collect;
  try {
    (void)polymap::map(xs, make_fragile, o);
    FAIL() << "the items whose results could not be decoded were not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 3u) << e.what();
    for (std::size_t k = 0; k < 3; ++k) {
      const item_failure& f = e.failures()[k];
      EXPECT_EQ(f.index, 42 + 100 * k);
      EXPECT_EQ(f.kind, failure_kind::exception);
      EXPECT_EQ(f.backend, backend_kind::processes);
      EXPECT_NE(f.what.find("decode of its result"), std::string::npos) << f.what;
      EXPECT_NE(f.what.find("cannot read a poisoned text"), std::string::npos) << f.what;
    }
    EXPECT_NE(std::string(e.what()).find("item 42 "), std::string::npos) << e.what();
    const auto& results = e.results<fragile>();
    for (int x : xs) {
      if (x % 100 == 42) {
        EXPECT_FALSE(results[static_cast<std::size_t>(x)].has_value()) << "item " << x;
      } else {
        ASSERT_TRUE(results[static_cast<std::size_t>(x)].has_value()) << "item " << x;
        EXPECT_EQ(*results[static_cast<std::size_t>(x)], make_fragile(x));
      }
    }
  }
  // fail_fast (the default) reports it too, as a map_error.
  EXPECT_THROW((void)polymap::map(xs, make_fragile, processes()), map_error);
}

// --- a worker killed between chunks ------------------------------------------------------

/// Chunks this process claimed: each worker process starts with the caller's 0.
int claims_here = 0;

/// Clears detail::claim_hook however the test ends.
struct claim_hook_reset {
  claim_hook_reset() = default;
  claim_hook_reset(const claim_hook_reset&) = delete;
  claim_hook_reset& operator=(const claim_hook_reset&) = delete;
  ~claim_hook_reset() { detail::claim_hook = nullptr; }
};

/// Runs `n` items on two workers in chunks of 10: every third throws, and those that
/// `poisoned` names give a result that the caller cannot decode. The first worker to claim a
/// second chunk is killed right then: after it sent its first chunk's outcomes, before its
/// slot shows the next chunk. Each item must run once, and each failure be reported once.
template <class Make>
void kill_a_worker_between_chunks(Make make, bool (*poisoned)(std::size_t)) {
  constexpr std::size_t n = 200;
  static test::shared_counters<int> killed(1);
  *killed = 0;
  claims_here = 0;
  const claim_hook_reset reset;
  detail::claim_hook = [](std::size_t, std::size_t) {
    if (++claims_here == 2 && killed->exchange(1) == 0) kill(getpid(), SIGKILL);
  };
  test::shared_counters<int> runs(n);
  const auto item = [&](std::size_t i) {
    runs[i].fetch_add(1);
    if (i % 3 == 0) throw std::runtime_error("item " + std::to_string(i) + " throws");
    return make(i);
  };
  const auto fails = [&](std::size_t i) { return i % 3 == 0 || poisoned(i); };
  options o = processes();
  o.chunk = 10;
  o.on_error = on_error::collect;
  try {
    (void)polymap::map(std::views::iota(std::size_t{0}, n), item, o);
    FAIL() << "the failing items were not reported";
  } catch (const map_error& e) {
    ASSERT_EQ(killed->load(), 1) << "no worker was killed between two chunks";
    std::map<std::size_t, int> reported;
    for (const item_failure& f : e.failures()) ++reported[f.index];
    using result = decltype(make(std::size_t{0}));
    const auto& results = e.results<result>();
    ASSERT_EQ(results.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_EQ(runs[i].load(), 1) << "item " << i << " ran " << runs[i].load() << " times";
      EXPECT_EQ(reported[i], fails(i) ? 1 : 0) << "item " << i << " reported failed";
      EXPECT_EQ(results[i].has_value(), !fails(i)) << "item " << i;
      if (results[i].has_value()) {
        EXPECT_EQ(*results[i], make(i)) << "item " << i;
      }
    }
  }
}

bool none_poisoned(std::size_t) { return false; }
bool every_third_poisoned(std::size_t i) { return i % 3 == 1; }

// A worker killed from outside after it sent a chunk's failures, before its slot showed its
// next chunk, still showed the finished chunk: the caller ran that chunk's failed items again
// and reported them twice. Fixed-size results, encoded ones, and results that do not decode.
TEST(Processes, AWorkerKilledBetweenChunksLeavesEachOutcomeRecordedOnce) {
  {
    SCOPED_TRACE("fixed-size results");
    kill_a_worker_between_chunks([](std::size_t i) { return mix(i); }, none_poisoned);
  }
  {
    SCOPED_TRACE("encoded results");
    kill_a_worker_between_chunks([](std::size_t i) { return std::to_string(mix(i)); },
                                 none_poisoned);
  }
  {
    SCOPED_TRACE("results that do not decode");
    kill_a_worker_between_chunks(
        [](std::size_t i) {
          return fragile{every_third_poisoned(i) ? "poison" : "text-" + std::to_string(i)};
        },
        every_third_poisoned);
  }
}

TEST(Processes, ForEachWritesSharedVectors) {
  shared_vector<std::uint64_t> out(50'000);
  polymap::for_each(
      out.size(), [&](std::size_t i) { out[i] = mix(i); }, processes());
  for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], mix(i)) << "index " << i;
}

TEST(Processes, ASharedAllocationTooLargeForMemoryIsRefused) {
  shared_allocator<std::uint64_t> a;
  EXPECT_THROW((void)a.allocate(static_cast<std::size_t>(-1) / 8 + 2), std::bad_array_new_length);
}

// --- placement ---------------------------------------------------------------------------

TEST(Processes, TheReportNamesTheWorkersThatTookPart) {
  // Cheap items, many workers: a call may end before some worker processes are up.
  test::shared_counters<pid_t> pid_seen(1000);
  options o = processes();
  o.workers = 6;
  o.nice = 3;
  run_report report;
  o.report = &report;
  polymap::for_each(
      1000, [&](std::size_t i) { pid_seen[i].store(getpid()); }, o);
  std::set<pid_t> ran;
  for (std::size_t i = 0; i < 1000; ++i) ran.insert(pid_seen[i].load());
  // Every worker that ran items, and only workers that were up: each had its nice applied.
  EXPECT_EQ(report.workers, report.worker_reports.size());
  EXPECT_GE(report.workers, ran.size());
  EXPECT_LE(report.workers, 6U);
  for (const worker_report& w : report.worker_reports) {
    EXPECT_TRUE(w.nice_applied) << "worker " << w.worker << " was reported but never up";
  }
}

TEST(Processes, NiceAppliesToEveryWorkerProcess) {
  test::shared_counters<int> nice_seen(64);
  test::shared_counters<pid_t> pid_seen(64);
  options o = processes();
  o.nice = 7;
  o.chunk = 1;
  run_report report;
  o.report = &report;
  polymap::for_each(
      64,
      [&](std::size_t i) {
        errno = 0;
        nice_seen[i].store(getpriority(PRIO_PROCESS, 0));
        pid_seen[i].store(getpid());
        std::this_thread::sleep_for(1ms);
      },
      o);
  EXPECT_EQ(report.backend, backend_kind::processes);
  ASSERT_FALSE(report.worker_reports.empty());
  for (const worker_report& w : report.worker_reports) {
    EXPECT_TRUE(w.nice_applied) << "worker " << w.worker;
    EXPECT_EQ(w.nice, 7);
  }
  for (std::size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(nice_seen[i].load(), 7) << "item " << i;
    EXPECT_NE(pid_seen[i].load(), getpid()) << "item " << i << " ran in the caller";
  }
  errno = 0;
  EXPECT_NE(getpriority(PRIO_PROCESS, 0), 7) << "the caller's priority changed";
}

TEST(Processes, BindingAppliesToEveryWorkerProcess) {
  const std::size_t workers = std::min<std::size_t>(2, topology::current().usable_count());
  test::shared_counters<int> cpu_mask(64);  // bit c: the item's process may run on CPU c
  test::shared_counters<int> slot_of(64);
  options o = processes(workers);
  o.bind = bind::pu;
  o.chunk = 1;
  run_report report;
  o.report = &report;
  test::shared_counters<pid_t> pid_seen(64);
  polymap::for_each(
      64,
      [&](std::size_t i) {
        cpu_set_t set;
        CPU_ZERO(&set);
        sched_getaffinity(0, sizeof set, &set);
        int mask = 0;
        for (int c = 0; c < 31; ++c) {
          if (CPU_ISSET(c, &set)) mask |= 1 << c;
        }
        cpu_mask[i].store(mask);
        pid_seen[i].store(getpid());
        std::this_thread::sleep_for(1ms);
      },
      o);
  ASSERT_EQ(report.worker_reports.size(), workers);
  std::set<int> reported;
  for (const worker_report& w : report.worker_reports) {
    if (!w.bound) GTEST_SKIP() << "binding is not permitted here";
    ASSERT_EQ(w.cpus.size(), 1u);
    reported.insert(1 << w.cpus[0]);
  }
  std::map<pid_t, int> mask_of_process;
  for (std::size_t i = 0; i < 64; ++i) {
    EXPECT_EQ(std::count(reported.begin(), reported.end(), cpu_mask[i].load()), 1)
        << "item " << i << " ran with affinity mask " << cpu_mask[i].load();
    mask_of_process[pid_seen[i].load()] = cpu_mask[i].load();
  }
  std::set<int> distinct;
  for (const auto& [pid, mask] : mask_of_process) distinct.insert(mask);
  EXPECT_EQ(distinct.size(), std::min(mask_of_process.size(), workers));
}

// --- forks by the program ----------------------------------------------------------------

pid_t measurement_child = 0;

/// Forks once, from inside the measurement of the processes' costs, as another thread of
/// the program may at that moment; the child asks for the costs itself, then exits.
void fork_during_measurement() {
  static bool forked = false;
  if (forked) return;  // the child's own measurement calls this too
  forked = true;
  const pid_t pid = fork();
  if (pid == 0) _exit(detail::measured_process_costs().fork_seconds > 0 ? 0 : 3);
  measurement_child = pid;
}

[[noreturn]] void measure_with_a_fork_inside() {
  detail::measure_hook = fork_during_measurement;
  (void)detail::measured_process_costs();
  detail::measure_hook = nullptr;
  if (measurement_child <= 0) {
    std::fprintf(stderr, "the measurement did not fork\n");
    std::_Exit(2);
  }
  const auto deadline = clock::now() + 20s;
  int status = 0;
  while (waitpid(measurement_child, &status, WNOHANG) == 0) {
    if (clock::now() > deadline) {
      kill(measurement_child, SIGKILL);
      (void)waitpid(measurement_child, &status, 0);
      std::fprintf(stderr, "the child forked during the measurement hung\n");
      std::_Exit(1);
    }
    std::this_thread::sleep_for(5ms);
  }
  std::_Exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 4);
}

// A program's fork while its first call measured what worker processes cost (milliseconds)
// left the child waiting for ever on that measurement, as soon as it made an automatic call
// of its own: it had a copy of a measurement in progress that no thread of its own would
// finish. The death test runs in a fresh process, where nothing was measured yet.
TEST(ProcessesDeathTest, AForkDuringTheFirstCostMeasurementLeavesAChildThatGoesOn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(measure_with_a_fork_inside(), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace polymap
