// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// backend::automatic: the choice between serial and threads, explain(), POLYMAP_BACKEND.
#include <polymap/polymap.hpp>

#include "backends/sanitizer_build.hpp"
#include "executor.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <numeric>
#include <thread>
#include <span>
#include <vector>

namespace polymap {
namespace {

/// About `ns` nanoseconds of work that the optimiser cannot remove.
double spin_work(double x, int rounds) {
  for (int i = 0; i < rounds; ++i) x = x * 1.0000001 + 1e-9;
  return x;
}

TEST(AutomaticBackend, ThousandCheapItemsRunSerially) {
  if (test_support::sanitizer_build) {
    GTEST_SKIP() << "sanitizers slow every item and atomic by different factors: the choice "
                    "they lead to says nothing about an optimised build";
  }
  std::vector<double> xs(1000, 1.0);
  auto cheap = [](double x) { return x * 2; };
  // Learns the cost: the first calls pay for cold caches and the first touch of their
  // output, and the history needs a few calls to forget them.
  for (int i = 0; i < 8; ++i) (void)polymap::map(xs, cheap);
  run_report report;
  (void)polymap::map(xs, cheap, {.report = &report});
  EXPECT_EQ(report.backend, backend::serial) << report.decision.to_string();
}

double cheap_function(double x) { return x * 2; }
double costly_function(double x) { return spin_work(x, 2000); }

TEST(AutomaticBackend, EachFunctionBehindAFunctionPointerHasItsOwnHistory) {
  // Both are double(*)(double): one type, two functions, two costs.
  std::vector<double> xs(1000, 1.0);
  for (int i = 0; i < 4; ++i) (void)polymap::map(xs, cheap_function);
  const plan cheap = polymap::explain(xs, cheap_function);
  EXPECT_NE(cheap.cost_source.find("history of"), std::string::npos) << cheap.cost_source;
  const plan costly = polymap::explain(xs, costly_function);
  EXPECT_NE(costly.cost_source.find("sampled"), std::string::npos)
      << "the costly function took the cheap one's history: " << costly.cost_source;
  EXPECT_GT(costly.seconds_per_item, cheap.seconds_per_item);
}

TEST(AutomaticBackend, LargeWorkRunsOnThreads) {
  if (topology::current().usable_count() < 2) GTEST_SKIP() << "one usable CPU";
  std::vector<double> xs(200'000, 1.0);
  auto costly = [](double x) { return spin_work(x, 200); };
  run_report report;
  (void)polymap::map(xs, costly, {.report = &report});
  EXPECT_EQ(report.backend, backend::threads) << report.decision.to_string();
  EXPECT_NE(report.decision.reason.find("faster"), std::string::npos);
}

TEST(AutomaticBackend, ExplainNamesEveryBackendAndWhy) {
  std::vector<double> xs(100'000, 1.0);
  const plan p = polymap::explain(xs, [](double x) { return spin_work(x, 50); });
  EXPECT_FALSE(p.reason.empty());
  EXPECT_EQ(p.items, xs.size());
  EXPECT_GT(p.seconds_per_item, 0);
  bool saw_serial = false;
  bool saw_mpi = false;
  for (const backend_estimate& e : p.estimates) {
    if (e.backend == backend::serial) {
      saw_serial = true;
      EXPECT_TRUE(e.usable);
      EXPECT_GT(e.seconds, 0);
    }
    if (e.backend == backend::mpi) {
      saw_mpi = true;
      EXPECT_FALSE(e.usable);
      EXPECT_FALSE(e.why_not.empty());
    }
  }
  EXPECT_TRUE(saw_serial);
  EXPECT_TRUE(saw_mpi);
  const std::string text = p.to_string();
  EXPECT_NE(text.find("<- chosen"), std::string::npos);
  // A predicted choice, unlike a named one.
  EXPECT_FALSE(p.requested);
  const plan named = polymap::explain(xs, [](double x) { return x; }, {.backend = backend::serial});
  EXPECT_TRUE(named.requested);
  EXPECT_EQ(named.chosen, backend::serial);
}

// The processes backend's cost on top of the work: a fork per worker, one after another,
// and every result byte through the store.
TEST(AutomaticBackend, ProcessesCostGrowsWithWorkersAndResultBytes) {
  const detail::executor& processes = detail::processes_executor();
  const double one = processes.overhead_seconds({.workers = 1, .items = 1'000'000});
  const double two = processes.overhead_seconds({.workers = 2, .items = 1'000'000});
  const double moved =
      processes.overhead_seconds({.workers = 2, .items = 1'000'000, .result_bytes = 8});
  EXPECT_GT(one, 0);
  EXPECT_DOUBLE_EQ(two, 2 * one);
  EXPECT_GT(moved, two);
  const double twice_the_items =
      processes.overhead_seconds({.workers = 2, .items = 2'000'000, .result_bytes = 8});
  EXPECT_NEAR(twice_the_items - two, 2 * (moved - two), 1e-9 * twice_the_items);
}

TEST(AutomaticBackend, NestedCallsRunInlineInTheirWorker) {
  std::vector<int> outer(4, 1);
  std::atomic<int> inline_runs{0};
  (void)polymap::map(outer, [&](int) {
    run_report report;
    std::vector<int> inner(10'000, 1);
    (void)polymap::map(inner, [](int x) { return spin_work(x, 20); }, {.report = &report});
    if (report.backend == backend::serial) ++inline_runs;
    return 0;
  }, {.backend = backend::threads});
  EXPECT_EQ(inline_runs.load(), 4);
}

TEST(AutomaticBackend, TimeoutNeedsTheProcessBackend) {
  std::vector<int> xs(10, 1);
  run_report report;
  const auto ys = polymap::map(xs, [](int x) { return x + 1; },
                               {.timeout = std::chrono::seconds(5), .report = &report});
  EXPECT_EQ(ys, std::vector<int>(10, 2));
  EXPECT_EQ(report.backend, backend::processes);
  EXPECT_NE(report.decision.reason.find("timeout"), std::string::npos) << report.decision.reason;
  report = {};
  if (test_support::sanitizer_build) {
    EXPECT_THROW((void)polymap::map(xs, [](int x) { return x; }, {.memory_limit = 1 << 30}),
                 option_error);
  } else {
    (void)polymap::map(xs, [](int x) { return x; }, {.memory_limit = 1 << 30, .report = &report});
    EXPECT_EQ(report.backend, backend::processes);
  }
  EXPECT_THROW((void)polymap::map(xs, [](int x) { return x; },
                                  {.backend = backend::threads, .timeout = std::chrono::seconds(1)}),
               option_error);
}

TEST(AutomaticBackend, ATimeoutHoldsInANestedCall) {
  // Nested calls run inline in their worker, but not one that needs a timeout: it still
  // gets worker processes that can be killed. One outer worker: under ASan (GCC 12's), a
  // fork while another thread is inside the sanitizer's allocator leaves the child waiting
  // for ever on its lock, which glibc's own malloc does not.
  const std::vector<int> outer(2, 0);
  const std::vector<int> inner_backends = polymap::map(outer, [](int) {
    run_report report;
    const std::vector<int> inner(4, 1);
    (void)polymap::map(inner, [](int x) { return x; },
                       {.timeout = std::chrono::seconds(30), .report = &report});
    return static_cast<int>(report.backend);
  }, {.backend = backend::threads, .workers = 1});
  for (int b : inner_backends) EXPECT_EQ(b, static_cast<int>(backend::processes));
}

TEST(AutomaticBackend, ATimeoutHoldsInACallNestedInAWorkerProcess) {
  // A worker process runs nested calls inline, but not one that needs a timeout: that worker
  // supervises worker processes of its own. Item 1 of the inner call would sleep 30 s.
  const std::vector<int> outer{0, 1};
  const std::vector<int> kinds = polymap::map(outer, [](int x) {
    const std::vector<int> inner{x};
    try {
      (void)polymap::map(inner, [](int y) {
        if (y == 1) std::this_thread::sleep_for(std::chrono::seconds(30));
        return y;
      }, {.timeout = std::chrono::milliseconds(100)});
      return -1;
    } catch (const map_error& e) {
      return e.failures().size() == 1 ? static_cast<int>(e.failures()[0].kind) : -2;
    }
  }, {.backend = backend::processes});
  EXPECT_EQ(kinds[0], -1);
  EXPECT_EQ(kinds[1], static_cast<int>(failure_kind::timeout));
}

TEST(AutomaticBackend, ExplainRunsNoItemOnTheCallerForTheProcessesBackend) {
  // Asking for worker processes asks for isolation: an item that crashes must not be run on
  // the calling thread to time it.
  const std::vector<int> xs(1000, 1);
  std::atomic<int> ran{0};
  const plan p = polymap::explain(xs, [&](int x) { ran.fetch_add(1); return x; },
                                  {.backend = backend::processes});
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(p.chosen, backend::processes);
}

TEST(AutomaticBackend, ACallWithBindOrNiceRunsNoItemOnTheCallingThread) {
  // Binding and nice apply to pool threads alone: sampling on the caller, or a choice of
  // serial (one worker, cheap items), ran items unbound and not niced.
  const std::thread::id caller = std::this_thread::get_id();
  const int own = this_thread_nice().value_or(0);
  for (const options& asked :
       {options{.bind = bind::core}, options{.nice = own}, options{.workers = 1, .nice = own},
        options{.workers = 1, .bind = bind::pu}}) {
    std::atomic<int> on_caller{0};
    // One lambda type: once its history says that the items are cheap, serial was chosen.
    auto cheap = [&](int x) {
      if (std::this_thread::get_id() == caller) on_caller.fetch_add(1);
      return x;
    };
    const std::vector<int> xs(64, 1);
    run_report report;
    options o = asked;
    o.report = &report;
    for (int call = 0; call < 3; ++call) EXPECT_EQ(polymap::map(xs, cheap, o), xs);
    EXPECT_EQ(on_caller.load(), 0) << report.decision.reason;
    EXPECT_EQ(report.backend, backend::threads) << report.decision.reason;
    EXPECT_NE(report.decision.reason.find("calling thread runs none"), std::string::npos)
        << report.decision.reason;
  }
}

// A function that cannot take the items fails the call's constraint (a short "constraints
// not satisfied" at the call, not pages from inside the library), for every entry point.
template <class Range, class Fn>
concept mappable = requires(Range&& r, Fn f) { polymap::map(std::forward<Range>(r), f); };
template <class Range, class Fn>
concept explainable = requires(Range&& r, Fn f) { polymap::explain(std::forward<Range>(r), f); };
template <class Range, class Fn>
concept streamable = requires(Range& r, Fn f) { polymap::imap(r, f); };
template <class Range, class Fn>
concept startable = requires(Range&& r, Fn f) { polymap::map_async(std::forward<Range>(r), f); };

struct takes_string {
  int operator()(const std::string& s) const { return static_cast<int>(s.size()); }
};
struct takes_int {
  int operator()(int x) const { return x; }
};
struct takes_rvalue {
  int operator()(int&& x) const { return x; }
};
static_assert(mappable<std::vector<int>&, takes_int>);
static_assert(!mappable<std::vector<int>&, takes_string>);
static_assert(!mappable<std::vector<int>&, takes_rvalue>);  // items are lvalues
static_assert(!explainable<std::vector<int>&, takes_string>);
static_assert(!streamable<std::vector<int>, takes_string>);
static_assert(!startable<std::vector<int>, takes_string>);
static_assert(startable<std::vector<int>, takes_int>);
// A job maps its own copy of the items, and explain() times copies: a function that takes
// a non-const reference can be given a const range there.
struct takes_ref {
  int operator()(int& x) const { return ++x; }
};
static_assert(startable<const std::vector<int>&, takes_ref>);
static_assert(explainable<const std::vector<int>&, takes_ref>);
static_assert(!mappable<const std::vector<int>&, takes_ref>);

TEST(AutomaticBackend, MapAsyncTakesACArray) {
  int xs[5] = {1, 2, 3, 4, 5};
  auto job = polymap::map_async(xs, [](int x) { return x * 10; });
  EXPECT_EQ(job.get(), (std::vector<int>{10, 20, 30, 40, 50}));
}

TEST(AutomaticBackend, ExplainCopiesNoItemOnceTheCostIsKnown) {
  // Copies are made only to time an unknown function: after a call has measured it,
  // explain() copies nothing (a large item would make that a real cost).
  struct counted {
    std::atomic<int>* copies;
    int value = 1;
    counted(std::atomic<int>* c, int v) : copies(c), value(v) {}
    counted(const counted& other) : copies(other.copies), value(other.value) {
      copies->fetch_add(1);
    }
    counted& operator=(const counted&) = default;
  };
  std::atomic<int> copies{0};
  std::vector<counted> xs;
  for (int i = 0; i < 200; ++i) xs.emplace_back(&copies, i);
  const auto fn = [](const counted& c) { return c.value * 2; };
  const plan first = polymap::explain(xs, fn);
  EXPECT_GT(copies.load(), 0) << "the first explain samples copies: " << first.cost_source;
  options o;
  o.backend = backend::serial;
  (void)polymap::map(xs, fn, o);
  copies = 0;
  const plan known = polymap::explain(xs, fn);
  EXPECT_EQ(copies.load(), 0) << known.cost_source;
  EXPECT_EQ(known.cost_source.find("sampled"), std::string::npos) << known.cost_source;
  EXPECT_GT(known.seconds_per_item, 0);
}

TEST(AutomaticBackend, ExplainChangesNoItem) {
  // A function that takes its items by reference is timed on copies of them.
  std::vector<int> xs(1000, 1);
  std::atomic<int> ran{0};
  const plan p = polymap::explain(xs, [&](int& x) {
    ran.fetch_add(1);
    x = 42;
  });
  EXPECT_GT(ran.load(), 0);
  EXPECT_EQ(xs, std::vector<int>(1000, 1));
  EXPECT_NE(p.cost_source.find("on copies of them"), std::string::npos) << p.cost_source;
  // Items that cannot be copied are not run at all.
  std::vector<std::unique_ptr<int>> owned(100);
  const plan q = polymap::explain(owned,
                                  [](std::unique_ptr<int>& x) { x = std::make_unique<int>(1); });
  for (const auto& x : owned) EXPECT_EQ(x, nullptr);
  EXPECT_NE(q.cost_source.find("unknown: explain runs the function on copies"),
            std::string::npos)
      << q.cost_source;
  if (topology::current().usable_count() > 1) {
    EXPECT_NE(q.reason.find("the cost is unknown"), std::string::npos) << q.reason;
  }
  // A generic lambda, and a functor whose non-const overload changes its item: copies too.
  std::vector<int> ys(100, 1);
  (void)polymap::explain(ys, [](auto& x) {
    x += 100;
    return x;
  });
  struct overloaded {
    int operator()(int& x) const { return x = 7; }
    int operator()(const int& x) const { return x; }
  };
  (void)polymap::explain(ys, overloaded{});
  EXPECT_EQ(ys, std::vector<int>(100, 1));
  // Items that fail while they are timed say so.
  const plan r = polymap::explain(std::vector<int>(100, 1), [](int) -> int {
    throw std::runtime_error("no");
  });
  EXPECT_NE(r.cost_source.find("failed: the cost is theirs"), std::string::npos) << r.cost_source;
}

TEST(AutomaticBackend, ReportsSayWhatBindAndNiceDidNotReach) {
  const int own = this_thread_nice().value_or(0);
  run_report report;
  const int other = own < 19 ? own + 1 : 18;
  polymap::for_each(10, [](std::size_t) {},
                    {.backend = backend::serial, .nice = other, .report = &report});
  ASSERT_EQ(report.worker_reports.size(), 1U);
  EXPECT_EQ(report.worker_reports[0].nice, std::optional<int>(own));
  EXPECT_FALSE(report.worker_reports[0].nice_applied);
  EXPECT_NE(report.note.find("ran on the calling thread"), std::string::npos) << report.note;
  // A call nested in an item says so, not that another call held the pool.
  polymap::for_each(4, [&](std::size_t i) {
    if (i != 0) return;
    polymap::for_each(10, [](std::size_t) {}, {.backend = backend::threads, .report = &report});
  }, {.backend = backend::threads, .workers = 2});
  EXPECT_NE(report.note.find("nested in an item"), std::string::npos) << report.note;
  // A call with no items says why nothing ran.
  polymap::for_each(0, [](std::size_t) {}, {.backend = backend::threads, .report = &report});
  EXPECT_EQ(report.decision.reason, "no items: nothing ran");
}

TEST(AutomaticBackend, ATimeoutOrACapWithAnyBackendButProcessesIsAnOptionError) {
  const std::vector<int> xs(10, 1);
  // mpi takes them: each rank runs its share on worker processes (tests/mpi).
  for (backend_kind b : {backend::serial, backend::threads, backend::kokkos, backend::cuda}) {
    try {
      (void)polymap::map(xs, [](int x) { return x; },
                         {.backend = b, .timeout = std::chrono::seconds(1)});
      ADD_FAILURE() << to_string(b) << " took a timeout it cannot hold";
    } catch (const option_error& e) {
      EXPECT_NE(std::string(e.what()).find(to_string(b)), std::string::npos) << e.what();
    }
  }
}

TEST(AutomaticBackend, BackendsNotBuiltAreUnavailable) {
  std::vector<int> xs(10, 1);
  for (backend_kind b : {backend::cuda, backend::kokkos, backend::mpi}) {
    if (detail::is_built(b)) continue;  // the built ones have their own tests
    try {
      (void)polymap::map(xs, [](int x) { return x; }, {.backend = b});
      ADD_FAILURE() << to_string(b) << " ran";
    } catch (const backend_unavailable& e) {
      EXPECT_NE(std::string(e.what()).find(to_string(b)), std::string::npos) << e.what();
    }
    // A job or a stream says so at the call, not when it is consumed (or never, when it
    // is not).
    EXPECT_THROW((void)polymap::map_async(std::span<const int>(xs), [](int x) { return x; },
                                          {.backend = b}),
                 backend_unavailable)
        << to_string(b);
    EXPECT_THROW((void)polymap::imap(xs, [](int x) { return x; }, {.backend = b}),
                 backend_unavailable)
        << to_string(b);
    // Whatever the size of the call, and when only asked where it would run.
    EXPECT_THROW((void)polymap::map(std::vector<int>{}, [](int x) { return x; }, {.backend = b}),
                 backend_unavailable)
        << to_string(b);
    EXPECT_THROW(polymap::for_each(0, [](std::size_t) {}, {.backend = b}), backend_unavailable)
        << to_string(b);
    EXPECT_THROW((void)polymap::explain(xs, [](int x) { return x; }, {.backend = b}),
                 backend_unavailable)
        << to_string(b);
  }
}

TEST(AutomaticBackend, ExplainSaysWhichBackendsCannotHoldATimeout) {
  const std::vector<int> xs(10, 1);
  const plan p = polymap::explain(xs, [](int x) { return x; },
                                  {.timeout = std::chrono::seconds(1)});
  EXPECT_EQ(p.chosen, backend::processes);
  for (const backend_estimate& e : p.estimates) {
    if (e.backend == backend::serial || e.backend == backend::threads) {
      EXPECT_FALSE(e.usable) << to_string(e.backend);
      EXPECT_NE(e.why_not.find("timeout"), std::string::npos) << e.why_not;
    }
  }
}

TEST(AutomaticBackend, ExplainOfNoItemsSaysSo) {
  const plan p = polymap::explain(std::vector<int>{}, [](int x) { return x; });
  EXPECT_EQ(p.chosen, backend::serial);
  EXPECT_EQ(p.reason, "no items");
}

using AutomaticBackendDeathTest = testing::Test;

TEST(AutomaticBackendDeathTest, EnvironmentOverridesTheChoice) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process reads the environment
  EXPECT_EXIT(
      {
        setenv("POLYMAP_BACKEND", "serial", 1);
        std::vector<double> xs(200'000, 1.0);
        run_report report;
        (void)polymap::map(xs, [](double x) { return spin_work(x, 200); }, {.report = &report});
        std::exit(report.backend == backend::serial && report.decision.requested &&
                          report.decision.reason.find("POLYMAP_BACKEND") != std::string::npos
                      ? 0
                      : 1);
      },
      testing::ExitedWithCode(0), "");
  EXPECT_EXIT(
      {
        setenv("POLYMAP_BACKEND", "warp-drive", 1);
        std::vector<double> xs(10, 1.0);
        try {
          (void)polymap::map(xs, [](double x) { return x; });
        } catch (const option_error& e) {
          std::exit(e.option() == "POLYMAP_BACKEND" ? 0 : 1);
        }
        std::exit(1);
      },
      testing::ExitedWithCode(0), "");
}

TEST(AutomaticBackendDeathTest, AnUnusableBackendInTheEnvironmentRunsNoItem) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process reads the environment
  // Backends that refuse this call here: not built, not usable, or (cuda, with a GPU) unable
  // to run a host function. No item may run before the refusal; where one runs the call,
  // its child has nothing to check.
  for (const char* name : {"cuda", "mpi"}) {
    EXPECT_EXIT(
        {
          setenv("POLYMAP_BACKEND", name, 1);
          std::atomic<int> ran{0};
          std::vector<double> xs(1000, 1.0);
          try {
            (void)polymap::map(xs, [&ran](double x) {
              ran.fetch_add(1, std::memory_order_relaxed);
              return x;
            });
          } catch (const backend_unavailable&) {
            std::exit(ran.load() == 0 ? 0 : 1);  // refused before sampling ran an item
          }
          std::exit(0);
        },
        testing::ExitedWithCode(0), "")
        << name;
  }
}

TEST(AutomaticBackendDeathTest, ExplainVariablePrintsEveryDecision) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process reads the environment
  EXPECT_EXIT(
      {
        setenv("POLYMAP_EXPLAIN", "1", 1);
        std::vector<double> xs(1000, 1.0);
        for (int i = 0; i < 3; ++i) (void)polymap::map(xs, [](double x) { return x * 2; });
        std::exit(0);
      },
      testing::ExitedWithCode(0), "polymap: 1000 items -> [a-z]+: ");
}

/// A decision weighed by the caller (as polymap::cuda::map weighs the GPU), here one that
/// automatic would never make for such cheap items: worker processes.
plan decided_elsewhere(std::size_t items) {
  plan p;
  p.chosen = backend::processes;
  p.items = items;
  p.reason = "weighed by the caller";
  p.estimates.push_back({.backend = backend::cuda, .usable = true, .seconds = 1.0, .workers = 1});
  return p;
}

/// Items that ran in this process (the calling thread's samples), not in a worker process.
std::atomic<int> items_in_this_process{0};

TEST(AutomaticBackend, ACallersDecisionIsRunAsItIsAndReported) {
  std::vector<double> xs(1000);
  std::iota(xs.begin(), xs.end(), 0.0);
  auto twice = [](double x) {
    items_in_this_process.fetch_add(1, std::memory_order_relaxed);
    return 2 * x;
  };
  const plan decided = decided_elsewhere(xs.size());
  run_report report;
  const std::vector<double> ys =
      detail::map_n(xs.begin(), xs.size(), twice, {.report = &report}, nullptr, &decided);
  ASSERT_EQ(ys.size(), xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], 2 * xs[i]) << "item " << i;
  EXPECT_EQ(report.backend, backend::processes);
  EXPECT_EQ(report.decision.reason, "weighed by the caller");
  ASSERT_EQ(report.decision.estimates.size(), 1u);
  EXPECT_EQ(report.decision.estimates[0].backend, backend::cuda);
  // Nothing sampled on the calling thread: the function's cost was never asked for.
  EXPECT_EQ(items_in_this_process.load(), 0);

  std::vector<double> into(xs.size(), -1.0);
  run_report into_report;
  detail::map_into(xs, into, twice, {.report = &into_report}, nullptr, &decided);
  EXPECT_EQ(into, ys);
  EXPECT_EQ(into_report.backend, backend::processes);
  EXPECT_EQ(into_report.decision.reason, "weighed by the caller");
  EXPECT_EQ(items_in_this_process.load(), 0);
}

TEST(AutomaticBackendDeathTest, ExplainVariablePrintsACallersDecision) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // a fresh process reads the environment
  EXPECT_EXIT(
      {
        setenv("POLYMAP_EXPLAIN", "1", 1);
        std::vector<double> xs(100, 1.0);
        auto twice = [](double x) { return x * 2; };
        const plan decided = decided_elsewhere(xs.size());
        (void)detail::map_n(xs.begin(), xs.size(), twice, {}, nullptr, &decided);
        std::exit(0);
      },
      testing::ExitedWithCode(0), "polymap: 100 items -> processes: weighed by the caller");
}

}  // namespace
}  // namespace polymap
