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

TEST(RunItems, AFewItemsAtTheEndOfARangeNeverGrowTheBlock) {
  // Four items of 2 us end a range in a block of 64: 8 us, under half the interval, which a
  // whole block would not be. The block never grows; it keeps its size unless a preemption
  // stretched the 8 us past the interval, so some of twenty tries keep it whole.
  std::size_t kept = 0;
  for (int attempt = 0; attempt < 20; ++attempt) {
    worker_fixture f;
    f.w.block = 64;
    const std::size_t ran =
        run_items(0, 4, f.w, [](std::size_t) { busy_for(std::chrono::microseconds(2)); });
    EXPECT_EQ(ran, 4U);
    EXPECT_LE(f.w.block, 64U);
    if (f.w.block == 64U) ++kept;
  }
  EXPECT_GT(kept, 0U);
}

TEST(RunItems, AFewItemsAtTheEndOfARangeThatTakeTooLongShrinkTheBlock) {
  // Four items of 10 us or more: a block of 20 us holds two of them at most.
  worker_fixture f;
  f.w.block = 64;
  (void)run_items(0, 4, f.w, [](std::size_t) { busy_for(std::chrono::microseconds(10)); });
  EXPECT_LE(f.w.block, 2U);
  EXPECT_GE(f.w.block, 1U);
}

TEST(RunItems, SlowItemsShrinkTheBlockToOneItem) {
  worker_fixture f;
  f.w.block = 16;
  (void)run_items(0, 16, f.w, [](std::size_t) { busy_for(std::chrono::microseconds(25)); });
  EXPECT_EQ(f.w.block, 1U);  // 16 items of 25 us or more: a block of 20 us fits one
}

/// Runs items [0, 100) in blocks of `block`; item 5 stops the call. Returns the items run.
template <bool Nothrow>
std::size_t stop_at_item_five(std::size_t block, std::vector<int>& ran) {
  worker_fixture f;
  f.w.block = block;
  ran.assign(100, 0);
  auto item = [&](std::size_t i) noexcept(Nothrow) {
    ran[i] = 1;
    if (i == 5) f.state.request_stop();
  };
  return run_items(0, 100, f.w, item);
}

TEST(RunItems, ASmallBlockLooksForAStopBeforeEachItem) {
  static_assert(100 < check_each_item_below);
  std::vector<int> ran;
  EXPECT_EQ(stop_at_item_five<false>(100, ran), 6U);
  EXPECT_EQ(ran[5], 1);
  EXPECT_EQ(ran[6], 0);
  EXPECT_EQ(stop_at_item_five<true>(100, ran), 6U);  // the loop without exception handling
  EXPECT_EQ(ran[6], 0);
}

TEST(RunItems, ALargeBlockRunsWithoutALookInside) {
  // Blocks of check_each_item_below items or more hold items of a few ns, whose loop must
  // stay free of checks to stay vectorised: a stop is seen at the end of the block.
  std::vector<int> ran;
  EXPECT_EQ(stop_at_item_five<false>(check_each_item_below, ran), 100U);
  EXPECT_EQ(ran[99], 1);
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
