// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// imap: a bounded window, early exit, failures while streaming.
#include <polymap/polymap.hpp>

#include "backends/backend_param.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <numeric>
#include <stdexcept>
#include <stop_token>
#include <thread>
#include <vector>

namespace polymap {
namespace {

class Streaming : public testing::TestWithParam<backend_kind> {};

TEST_P(Streaming, ASlowConsumerBoundsTheResultsAhead) {
  constexpr std::size_t window = 32;
  for (bool ordered : {true, false}) {
    std::vector<int> xs(2'000);
    std::iota(xs.begin(), xs.end(), 0);
    std::atomic<std::size_t> yielded{0};
    std::atomic<std::size_t> worst{0};
    std::atomic<std::size_t> started{0};
    auto fn = [&](int x) {
      // A worker preempted between the two reads may see more results handed out than
      // items started: that is none ahead, not a negative count.
      const std::size_t begun = started.fetch_add(1) + 1;
      const std::size_t handed = yielded.load();
      const std::size_t ahead = begun > handed ? begun - handed : 0;
      std::size_t w = worst.load();
      while (ahead > w && !worst.compare_exchange_weak(w, ahead)) {
      }
      return x;
    };
    std::size_t count = 0;
    for (auto&& [index, value] :
         polymap::imap(xs, fn, {.backend = GetParam(), .ordered = ordered, .window = window})) {
      yielded.fetch_add(1);
      EXPECT_EQ(value, xs[index]);
      if (count % 100 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ++count;
    }
    EXPECT_EQ(count, xs.size());
    // The consumer counts a result just after polymap hands it out, so a worker may see the
    // count one behind: hence window + 1.
    EXPECT_LE(worst.load(), window + 1) << (ordered ? "ordered" : "unordered");
  }
}

TEST_P(Streaming, LeavingTheLoopEarlyStopsTheRest) {
  std::vector<int> xs(1'000'000, 1);
  std::atomic<std::size_t> calls{0};
  std::size_t taken = 0;
  {
    for (auto&& [index, value] : polymap::imap(xs, [&](int x) { ++calls; return x; },
                                               {.backend = GetParam(), .window = 64})) {
      (void)index;
      (void)value;
      if (++taken == 10) break;
    }
  }
  EXPECT_EQ(taken, 10u);
  EXPECT_LT(calls.load(), xs.size());
}

/// A stop requested while the consumer loops, after the workers computed every result
/// ahead of it (a window as large as the input): no result comes after it.
void a_stop_ends_the_stream(backend_kind backend) {
  std::vector<int> xs(5'000);
  std::iota(xs.begin(), xs.end(), 0);
  std::stop_source stop;
  std::size_t taken = 0;
  auto results = polymap::imap(xs, [](int x) { return x; },
                               {.backend = backend, .window = xs.size(), .stop = stop.get_token()});
  try {
    for (auto&& [index, value] : results) {
      EXPECT_EQ(value, xs[index]);
      if (++taken == 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (taken == 10) stop.request_stop();
    }
    ADD_FAILURE() << "no cancelled_error: " << taken << " results";
  } catch (const cancelled_error& e) {
    EXPECT_EQ(taken, 10U);
    EXPECT_EQ(e.done(), 10U);
    EXPECT_EQ(e.total(), xs.size());
  }
}

TEST_P(Streaming, AStopEndsTheStreamHoweverFarTheWorkersGotAhead) {
  a_stop_ends_the_stream(GetParam());
  // One after the last result stops nothing.
  std::vector<int> xs(5, 1);
  std::stop_source stop;
  std::size_t taken = 0;
  for (auto&& [index, value] :
       polymap::imap(xs, [](int x) { return x; }, {.backend = GetParam(), .stop = stop.get_token()})) {
    EXPECT_EQ(value, xs[index]);
    if (++taken == xs.size()) stop.request_stop();
  }
  EXPECT_EQ(taken, xs.size());
}

// A stop while the workers wait for room in a small window: they are woken, and the stream
// ends with cancelled_error (the consumer waited for them for ever).
TEST_P(Streaming, AStopWhileTheWorkersWaitForRoomEndsTheStream) {
  std::vector<int> xs(1000);
  std::iota(xs.begin(), xs.end(), 0);
  std::stop_source stop;
  std::size_t taken = 0;
  auto results = polymap::imap(xs, [](int x) { return x; },
                               {.backend = GetParam(), .window = 4, .stop = stop.get_token()});
  try {
    for (auto&& [index, value] : results) {
      EXPECT_EQ(value, xs[index]);
      if (++taken == 2) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // they fill the window
        stop.request_stop();
      }
    }
    ADD_FAILURE() << "no cancelled_error: " << taken << " results";
  } catch (const cancelled_error& e) {
    EXPECT_EQ(taken, 2U);
  }
}

TEST(StreamingProcesses, AStopEndsTheStreamHoweverFarTheWorkersGotAhead) {
  a_stop_ends_the_stream(backend_kind::processes);
}

TEST_P(Streaming, AFailedItemThrowsMapErrorWhileIterating) {
  std::vector<int> xs(500);
  std::iota(xs.begin(), xs.end(), 0);
  auto fn = [](int x) {
    if (x == 250) throw std::runtime_error("two hundred fifty");
    return x;
  };
  for (on_error policy : {on_error::fail_fast, on_error::collect}) {
    std::size_t good = 0;
    try {
      for (auto&& [index, value] :
           polymap::imap(xs, fn, {.backend = GetParam(), .on_error = policy})) {
        EXPECT_EQ(value, xs[index]);
        EXPECT_NE(index, 250u);
        ++good;
      }
      ADD_FAILURE() << "expected map_error";
    } catch (const map_error& e) {
      ASSERT_EQ(e.failures().size(), 1u);
      EXPECT_EQ(e.failures()[0].index, 250u);
      EXPECT_EQ(e.failures()[0].what, "two hundred fifty");
    }
    if (policy == on_error::collect) {
      EXPECT_EQ(good, xs.size() - 1);
    }
  }
}

TEST_P(Streaming, InOrderUnderFailFastTheResultsBeforeAFailedItemComeFirst) {
  std::vector<int> xs(200);
  std::iota(xs.begin(), xs.end(), 0);
  std::size_t yielded = 0;
  try {
    for (auto&& [index, value] : polymap::imap(xs, [](int x) {
           if (x == 100) throw std::runtime_error("one hundred");
           return x;
         }, {.backend = GetParam()})) {
      ASSERT_EQ(index, yielded) << "in order, with no gap";
      EXPECT_EQ(value, xs[index]);
      ++yielded;
      std::this_thread::sleep_for(std::chrono::microseconds(100));  // a slow consumer
    }
    ADD_FAILURE() << "expected map_error";
  } catch (const map_error& e) {
    ASSERT_EQ(e.failures().size(), 1u);
    EXPECT_EQ(e.failures()[0].index, 100u);
  }
  EXPECT_LE(yielded, 100u);
  // One worker computes the items in order: every item before the failed one was done.
  if (GetParam() == backend_kind::serial) {
    EXPECT_EQ(yielded, 100u);
  }
}

INSTANTIATE_TEST_SUITE_P(Serial, Streaming, testing::Values(backend_kind::serial),
                         test::backend_name);
INSTANTIATE_TEST_SUITE_P(Threads, Streaming, testing::Values(backend_kind::threads),
                         test::backend_name);
INSTANTIATE_TEST_SUITE_P(Automatic, Streaming, testing::Values(backend_kind::automatic),
                         test::backend_name);

}  // namespace
}  // namespace polymap
