// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// How a worker runs a range of items: blocks between two looks for a stop, sized from their
// measured time, and a look before each item in small blocks. Items busy-wait, so an item
// takes at least its time (a loaded machine only makes it longer).
#include <polymap/detail/run_items.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <vector>

namespace polymap::detail {
namespace {

using clock = std::chrono::steady_clock;

void busy_for(std::chrono::nanoseconds d) {
  const auto until = clock::now() + d;
  while (clock::now() < until) {
  }
}

struct worker_fixture {
  run_state state{1'000'000};
  worker_context w{};
  worker_fixture() { w.state = &state; }
};

TEST(RunItems, ABlockCutShortByTheEndOfTheRangeIsJudgedAsAWholeBlock) {
  // Four items of 2 us end a range in a block of 64: 8 us, but a whole block would take
  // 128 us, far over the interval. The block must shrink, not double.
  worker_fixture f;
  f.w.block = 64;
  const std::size_t ran =
      run_items(0, 4, f.w, [](std::size_t) { busy_for(std::chrono::microseconds(2)); });
  EXPECT_EQ(ran, 4U);
  EXPECT_LT(f.w.block, 64U);
}

TEST(RunItems, SlowItemsShrinkTheBlockToOneItem) {
  worker_fixture f;
  f.w.block = 16;
  (void)run_items(0, 16, f.w, [](std::size_t) { busy_for(std::chrono::microseconds(25)); });
  EXPECT_EQ(f.w.block, 1U);  // 16 items of 25 us or more: a block of 20 us fits one
}

TEST(RunItems, ASmallBlockLooksForAStopBeforeEachItem) {
  worker_fixture f;
  f.w.block = 100;
  ASSERT_LT(f.w.block, check_each_item_below);
  std::vector<int> ran(100, 0);
  const std::size_t done = run_items(0, 100, f.w, [&](std::size_t i) {
    ran[i] = 1;
    if (i == 5) f.state.request_stop();
  });
  EXPECT_EQ(done, 6U);
  EXPECT_EQ(ran[5], 1);
  EXPECT_EQ(ran[6], 0);
}

TEST(RunItems, ABlockStartsAtTheCallsFirstBlock) {
  worker_fixture f;
  f.state.set_first_block(7);
  std::size_t first_seen = 0;
  (void)run_items(0, 1, f.w, [&](std::size_t) { first_seen = f.w.block; });
  EXPECT_EQ(first_seen, 7U);
}

}  // namespace
}  // namespace polymap::detail
