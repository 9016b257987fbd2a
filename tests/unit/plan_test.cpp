// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Weighing one more backend's estimate against a plan's choice (what polymap::cuda::explain
// does with the GPU's estimate), and what explain predicts for the CPU's backends.
#include <polymap/map.hpp>
#include <polymap/plan.hpp>
#include <polymap/topology.hpp>

#include <gtest/gtest.h>

#include <cstddef>
#include <ranges>
#include <string>
#include <vector>

namespace polymap {
namespace {

/// A plan that chose threads, predicted at 2 ms, over serial at 6 ms; cuda not usable.
plan cpu_plan() {
  plan p;
  p.chosen = backend::threads;
  p.reason = "threads predicted faster than serial";
  p.items = 1000;
  p.estimates = {
      {.backend = backend::serial, .usable = true, .why_not = {}, .seconds = 6e-3, .workers = 1},
      {.backend = backend::threads, .usable = true, .why_not = {}, .seconds = 2e-3, .workers = 4},
      {.backend = backend::cuda, .usable = false, .why_not = "generic path", .seconds = 0,
       .workers = 0},
  };
  return p;
}

backend_estimate gpu(double seconds) {
  return {.backend = backend::cuda, .usable = true, .why_not = {}, .seconds = seconds,
          .workers = 1};
}

const backend_estimate* find(const plan& p, backend_kind kind) {
  const backend_estimate* found = nullptr;
  for (const backend_estimate& e : p.estimates) {
    if (e.backend == kind) {
      EXPECT_EQ(found, nullptr) << "two estimates of " << to_string(kind);
      found = &e;
    }
  }
  return found;
}

TEST(WeighEstimate, AFasterUsableBackendBecomesTheChoiceAndTheReasonSaysBoth) {
  plan p = cpu_plan();
  detail::weigh_estimate(p, gpu(1e-3), "measured here", false);
  EXPECT_EQ(p.chosen, backend::cuda);
  EXPECT_NE(p.reason.find("1.00 ms (measured here) against 2.00 ms on threads"),
            std::string::npos)
      << p.reason;
  ASSERT_NE(find(p, backend::cuda), nullptr);
  EXPECT_TRUE(find(p, backend::cuda)->usable);
  EXPECT_EQ(p.estimates.size(), 3U);
}

TEST(WeighEstimate, ASlowerBackendIsListedAndTheChoiceStays) {
  plan p = cpu_plan();
  detail::weigh_estimate(p, gpu(3e-3), "measured here", false);
  EXPECT_EQ(p.chosen, backend::threads);
  EXPECT_EQ(p.reason.rfind("threads predicted faster than serial", 0), 0U) << p.reason;
  EXPECT_NE(p.reason.find("; cuda predicted 3.00 ms (measured here)"), std::string::npos)
      << p.reason;
  ASSERT_NE(find(p, backend::cuda), nullptr);
  EXPECT_EQ(find(p, backend::cuda)->seconds, 3e-3);
}

TEST(WeighEstimate, AnUnusableBackendIsNeverChosenAndSaysWhy) {
  plan p = cpu_plan();
  backend_estimate e{.backend = backend::cuda, .usable = false, .why_not = "no CUDA device",
                     .seconds = 0, .workers = 0};
  detail::weigh_estimate(p, e, "", false);
  EXPECT_EQ(p.chosen, backend::threads);
  EXPECT_EQ(p.reason, "threads predicted faster than serial");
  ASSERT_NE(find(p, backend::cuda), nullptr);
  EXPECT_EQ(find(p, backend::cuda)->why_not, "no CUDA device");
}

TEST(WeighEstimate, ARequestedBackendIsChosenEvenWhenSlowerOrUnusable) {
  plan slower = cpu_plan();
  detail::weigh_estimate(slower, gpu(9e-3), "measured here", true);
  EXPECT_EQ(slower.chosen, backend::cuda);
  EXPECT_TRUE(slower.requested);
  EXPECT_EQ(slower.reason, "requested by options::backend");

  plan unusable = cpu_plan();
  detail::weigh_estimate(unusable,
                         {.backend = backend::cuda, .usable = false, .why_not = "no CUDA device",
                          .seconds = 0, .workers = 0},
                         "", true);
  EXPECT_EQ(unusable.chosen, backend::cuda);
  EXPECT_NE(unusable.reason.find("not usable here: no CUDA device"), std::string::npos)
      << unusable.reason;
}

TEST(WeighEstimate, ABackendNamedByTheEnvironmentStaysChosen) {
  plan p = cpu_plan();
  p.chosen = backend::serial;
  p.requested = true;
  p.reason = "requested by POLYMAP_BACKEND";
  detail::weigh_estimate(p, gpu(1e-3), "measured here", false);
  EXPECT_EQ(p.chosen, backend::serial);
  EXPECT_NE(p.reason.find("; cuda predicted 1.00 ms"), std::string::npos) << p.reason;
}

TEST(WeighEstimate, AnEstimateOfABackendThePlanLacksIsAdded) {
  plan p = cpu_plan();
  p.estimates.pop_back();  // no cuda entry
  detail::add_estimate(p, gpu(5e-3), "defaults");
  ASSERT_NE(find(p, backend::cuda), nullptr);
  EXPECT_EQ(p.chosen, backend::threads);
  EXPECT_NE(p.to_string().find("cuda: predicted 5.00 ms on 1 worker"), std::string::npos)
      << p.to_string();
}

/// About 100 ns of work that the compiler cannot drop.
std::size_t busy_item(std::size_t x) {
  volatile std::size_t acc = x;
  for (int i = 0; i < 200; ++i) acc = acc * 31 + 7;
  return acc;
}

TEST(Explain, OversubscribedWorkersPredictNoMoreSpeedUpThanTheUsableCpus) {
  // explain runs a few items to time them, not the call: 10^8 items of ~100 ns are ~10 s of
  // predicted work, which dwarfs any backend's fixed costs, so an estimate that divided the
  // work by the worker count would predict a speed-up near 32 x the CPUs.
  const std::size_t cpus = topology::current().usable_count();
  const options o{.workers = 32 * cpus};
  const plan p =
      polymap::explain(std::views::iota(std::size_t{0}, std::size_t{100'000'000}), busy_item, o);
  ASSERT_GT(p.seconds_per_item, 0);
  const backend_estimate* serial = find(p, backend::serial);
  ASSERT_NE(serial, nullptr);
  ASSERT_TRUE(serial->usable);
  int checked = 0;
  for (const backend_estimate& e : p.estimates) {
    if (!e.usable || e.backend == backend::serial) continue;
    ++checked;
    EXPECT_GT(e.seconds, 0) << to_string(e.backend);
    EXPECT_LE(serial->seconds / e.seconds, 1.05 * static_cast<double>(cpus))
        << to_string(e.backend) << " on " << e.workers << " workers, " << cpus << " usable CPUs\n"
        << p.to_string();
  }
  EXPECT_GE(checked, 2) << "threads and processes are always built";
}

TEST(Explain, AWorkerCountDoesNotMoveTheInlineLimit) {
  // The limit below which plain calls (no options::workers) run inline is learnt from the
  // thread pool's estimate; a call with its own worker count must not change it.
  const auto fn = [](int x) { return x + 1; };
  const std::vector<int> xs(10'000, 1);
  (void)polymap::explain(xs, fn);
  const double plain = detail::inline_serial_limit();
  for (const std::size_t workers : {std::size_t{1}, std::size_t{64}}) {
    (void)polymap::explain(xs, fn, {.workers = workers});
    EXPECT_EQ(detail::inline_serial_limit(), plain) << "after a call of " << workers << " workers";
  }
}

}  // namespace
}  // namespace polymap
