// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// How many items a worker claims at once: from a known cost, from measured times, or as the
// caller chose. Items sleep, so a chunk takes at least its items' time (never less).
#include "chunk_sizer.hpp"

#include <polymap/options.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <thread>

namespace polymap::detail {
namespace {

using namespace std::chrono_literals;

/// Every item of the call sleeps for `*ctx`.
void sleeping_items(const void* ctx, std::size_t begin, std::size_t end, worker_context&) {
  const auto per_item = *static_cast<const std::chrono::microseconds*>(ctx);
  std::this_thread::sleep_for(per_item * static_cast<long>(end - begin));
}

struct sizer_fixture {
  std::chrono::microseconds per_item;
  options opts;
  run_state state{1'000'000};
  worker_context worker{};
  map_job job{};

  sizer_fixture(std::chrono::microseconds item_cost, double claimed_cost, std::size_t chunk = 0)
      : per_item(item_cost) {
    opts.chunk = chunk;
    worker.state = &state;
    job.end = 1'000'000;
    job.run_chunk = sleeping_items;
    job.ctx = &per_item;
    job.state = &state;
    job.opts = &opts;
    job.seconds_per_item = claimed_cost;
  }
};

TEST(ChunkSizer, AKnownCostSetsTheFirstSize) {
  sizer_fixture f(1us, 1e-6);
  chunk_sizer sizer(f.job, 100e-6);
  EXPECT_FALSE(sizer.adaptive());
  EXPECT_EQ(sizer.size(), 100U);
}

TEST(ChunkSizer, AChunkFarSlowerThanItsKnownCostShrinksTheNext) {
  // The history says 1 ns an item (a chunk of 100,000 for a 100 us target); the items take
  // 200 us: a chunk of 10 takes 2 ms or more, over four times the target.
  sizer_fixture f(200us, 1e-9);
  chunk_sizer sizer(f.job, 100e-6);
  ASSERT_EQ(sizer.size(), 100'000U);
  sizer.run(f.job, 0, 10, f.worker);
  EXPECT_EQ(sizer.size(), 1U);  // 10 items x 100 us / (2 ms or more), at least one
  EXPECT_TRUE(sizer.adaptive());  // from now on the size follows measured times
  EXPECT_EQ(f.worker.busy_items, 10U);
  EXPECT_GE(f.worker.busy_seconds, 2e-3);
}

TEST(ChunkSizer, ChunksShrunkByOneSlowChunkGrowBackOnceItemsAreFastAgain) {
  // The history says 100 ns an item (chunks of 1000 for a 100 us target). One chunk is slowed
  // down (as by a preemption: 10 items of 500 us); the items after it cost nothing again.
  sizer_fixture f(500us, 100e-9);
  chunk_sizer sizer(f.job, 100e-6);
  ASSERT_EQ(sizer.size(), 1000U);
  sizer.run(f.job, 0, 10, f.worker);
  ASSERT_EQ(sizer.size(), 1U);  // 10 items x 100 us / (5 ms or more), at least one
  f.per_item = 0us;
  std::size_t next = 10;
  for (int chunk = 0; chunk < 64 && sizer.size() < 1000; ++chunk) {
    const std::size_t end = next + sizer.size();
    sizer.run(f.job, next, end, f.worker);
    next = end;
  }
  EXPECT_GE(sizer.size(), 1000U);  // back to the known cost's size at least
}

TEST(ChunkSizer, AChunkTheCallerChoseNeverChanges) {
  sizer_fixture f(200us, 1e-9, 7);
  chunk_sizer sizer(f.job, 100e-6);
  ASSERT_EQ(sizer.size(), 7U);
  sizer.run(f.job, 0, 10, f.worker);
  EXPECT_EQ(sizer.size(), 7U);
}

TEST(ChunkSizer, WithoutACostItStartsAtOneItemAndGrowsAtMostFourfold) {
  sizer_fixture f(0us, 0);
  chunk_sizer sizer(f.job, 100e-6);
  EXPECT_TRUE(sizer.adaptive());
  EXPECT_EQ(sizer.size(), 1U);
  sizer.run(f.job, 0, 1, f.worker);
  EXPECT_LE(sizer.size(), 4U);
  EXPECT_GE(sizer.size(), 1U);
}

TEST(ChunkSizer, WithoutACostSlowItemsKeepChunksOfOne) {
  sizer_fixture f(500us, 0);
  chunk_sizer sizer(f.job, 100e-6);
  sizer.run_all(f.job, 0, 5, f.worker);
  EXPECT_EQ(sizer.size(), 1U);  // each item takes five times the target
  EXPECT_EQ(f.worker.busy_items, 5U);
}

TEST(ChunkSizer, ItNeverExceedsTheJobsLargestChunk) {
  sizer_fixture f(1us, 1e-9);
  f.job.max_chunk = 64;
  chunk_sizer sizer(f.job, 100e-6);
  EXPECT_EQ(sizer.size(), 64U);
}

TEST(ChunkSizer, RunAllStopsWhenTheCallStops) {
  sizer_fixture f(0us, 1e-9, 10);
  chunk_sizer sizer(f.job, 100e-6);
  f.state.cancel();
  sizer.run_all(f.job, 0, 100, f.worker);
  EXPECT_EQ(f.worker.busy_items, 0U);
}

}  // namespace
}  // namespace polymap::detail
