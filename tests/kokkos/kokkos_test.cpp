// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// <polymap/kokkos/map.hpp> on the default execution space of the Kokkos found at build time
// (Debian's Kokkos 3.4: Serial), and the kokkos backend through the generic path.
#include <polymap/kokkos/map.hpp>
#include <polymap/polymap.hpp>

#include "cpu/kernels.hpp"

#include <gtest/gtest.h>

#include <Kokkos_Core.hpp>

#include <atomic>
#include <cstdint>
#include <numeric>
#include <stop_token>
#include <vector>

// The KOKKOS_LAMBDAs are in functions of their own: with Kokkos on CUDA they are extended
// __host__ __device__ lambdas, which nvcc refuses inside a gtest TEST body (a private member
// function).
namespace polymap::kokkos_test {

std::vector<double> three_x_plus_one(const std::vector<double>& xs) {
  return polymap::kokkos::map(xs, KOKKOS_LAMBDA(double x) { return 3 * x + 1; });
}

std::vector<int> plus_one(const std::vector<int>& xs) {
  return polymap::kokkos::map(xs, KOKKOS_LAMBDA(int y) { return y + 1; });
}

void saxpy(std::size_t n, float a, const Kokkos::View<float*>& x, const Kokkos::View<float*>& y) {
  polymap::kokkos::for_each(n, KOKKOS_LAMBDA(std::size_t i) {
    kernels::saxpy(i, a, x.data(), y.data());
  });
}

/// s[i] = i + x for i in [0, n), on the default space (which must read host memory).
void count_from(int x, std::size_t n, int* s) {
  polymap::kokkos::for_each(n, KOKKOS_LAMBDA(std::size_t i) { s[i] = static_cast<int>(i) + x; });
}

}  // namespace polymap::kokkos_test

namespace polymap::kokkos_test {

std::vector<int> plus_one_with(const std::vector<int>& xs, const options& o) {
  return polymap::kokkos::map(xs, KOKKOS_LAMBDA(int y) { return y + 1; }, o);
}

}  // namespace polymap::kokkos_test

namespace polymap {
namespace {

using kokkos_test::count_from;
using kokkos_test::plus_one;

/// Whether the default space reads host memory, which the tests that run it in a worker
/// process, or nested in an item, need.
constexpr bool default_space_reads_host =
    Kokkos::SpaceAccessibility<Kokkos::DefaultExecutionSpace, Kokkos::HostSpace>::accessible;

TEST(KokkosBackend, MapsOnTheDefaultSpaceInInputOrder) {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{100'003}}) {
    std::vector<double> xs(n);
    std::iota(xs.begin(), xs.end(), 0.0);
    const std::vector<double> ys = kokkos_test::three_x_plus_one(xs);
    ASSERT_EQ(ys.size(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(ys[i], 3 * xs[i] + 1);
  }
  EXPECT_TRUE(Kokkos::is_initialized());  // initialised on first use, kept for the program
}

TEST(KokkosBackend, ForEachRunsTheBuiltInKernels) {
  polymap::kokkos::ensure_initialized();  // the Views below need Kokkos running
  const std::size_t n = 10'007;
  Kokkos::View<float*> x("x", n), y("y", n);
  Kokkos::deep_copy(x, 2.0F);
  Kokkos::deep_copy(y, 1.0F);
  kokkos_test::saxpy(n, 0.5F, x, y);
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(host(i), 2.0F);
}

TEST(KokkosBackend, KernelCallsTakeStopAndReportAndRefuseWhatAKernelCannotDo) {
  const std::vector<int> xs(100, 1);
  run_report report;
  EXPECT_EQ(kokkos_test::plus_one_with(xs, {.report = &report}), std::vector<int>(100, 2));
  EXPECT_EQ(report.backend, backend::kokkos);
  EXPECT_NE(report.note.find("one kernel on the Kokkos execution space"), std::string::npos)
      << report.note;
  std::stop_source stop;
  stop.request_stop();
  EXPECT_THROW((void)kokkos_test::plus_one_with(xs, {.stop = stop.get_token()}), cancelled_error);
  // A stop with nothing to run stops nothing, as with polymap::map.
  EXPECT_TRUE(kokkos_test::plus_one_with({}, {.stop = stop.get_token()}).empty());
  EXPECT_EQ(report.decision.chosen, backend::kokkos);
  for (const options& o : {options{.workers = 2}, options{.bind = bind::core},
                           options{.retries = 1}, options{.on_error = on_error::collect},
                           options{.backend = backend::threads}, options{.core_dumps = true},
                           options{.device = 1}}) {
    try {
      (void)kokkos_test::plus_one_with(xs, o);
      ADD_FAILURE() << "no option_error";
    } catch (const option_error& e) {
      EXPECT_NE(std::string(e.what()).find("polymap::kokkos::map"), std::string::npos)
          << e.what();
    }
  }
}

TEST(KokkosBackend, GenericPathReportsTheKokkosSpace) {
  std::vector<int> xs(1000, 2);
  run_report report;
  const auto ys = polymap::map(xs, [](int x) { return x * x; },
                               {.backend = backend::kokkos, .report = &report});
  EXPECT_EQ(report.backend, backend::kokkos);
  EXPECT_NE(report.note.find(Kokkos::DefaultHostExecutionSpace::name()), std::string::npos)
      << report.note;
  for (int y : ys) ASSERT_EQ(y, 4);
}

// Kernels launched on Kokkos in this process, seen through Kokkos' profiling hooks.
std::atomic<int> kokkos_launches{0};

void count_launches() {
  kokkos_launches = 0;
  Kokkos::Tools::Experimental::set_begin_parallel_for_callback(
      [](const char*, std::uint32_t, std::uint64_t*) { ++kokkos_launches; });
}

void stop_counting() { Kokkos::Tools::Experimental::set_begin_parallel_for_callback(nullptr); }

// A forked worker of the processes backend shares its parent's Kokkos: it must neither
// initialise Kokkos nor run on it. Both the header and the generic path run plain loops there.
TEST(KokkosBackend, AWorkerProcessLeavesKokkosAlone) {
  if (!default_space_reads_host) GTEST_SKIP() << "the default space cannot read host memory";
  // The hook sees a launch here, in the caller: so it would see one in a worker.
  count_launches();
  (void)plus_one(std::vector<int>(3, 1));
  EXPECT_GE(kokkos_launches.load(), 1);
  stop_counting();

  std::vector<int> xs(4, 5);
  const std::vector<int> ok = polymap::map(
      xs,
      [](int x) {
        count_launches();
        const std::vector<int> v(3, x);
        const std::vector<int> w = plus_one(v);
        run_report report;
        const std::vector<int> g = polymap::map(
            v, [](int y) { return y * 2; }, {.backend = backend::kokkos, .report = &report});
        const bool alone = kokkos_launches.load() == 0 && report.backend == backend::serial;
        stop_counting();
        return alone && w == std::vector<int>(3, x + 1) && g == std::vector<int>(3, 2 * x) ? 1
                                                                                            : 0;
      },
      {.backend = backend::processes, .workers = 2});
  for (int y : ok) ASSERT_EQ(y, 1);
}

/// Run in a worker process: 1 when the header's map and for_each and the generic path all
/// give the right results there without initialising Kokkos in the worker.
int kokkos_left_uninitialised(int x) {
  const std::vector<int> v(5, x);
  const std::vector<int> w = plus_one(v);
  std::vector<int> seen(5, 0);
  count_from(x, 5, seen.data());
  const std::vector<int> g =
      polymap::map(v, [](int y) { return y * 2; }, {.backend = backend::kokkos});
  const bool right = w == std::vector<int>(5, x + 1) && g == std::vector<int>(5, 2 * x) &&
                     seen == std::vector<int>{x, x + 1, x + 2, x + 3, x + 4};
  return right && !Kokkos::is_initialized() ? 1 : 0;
}

// The same in a fresh process, where nothing has initialised Kokkos before: a worker that
// initialised it (which could start its threads, or a GPU context, in a forked copy) would be
// seen, and so would the caller's own Kokkos being started by the workers' calls.
TEST(KokkosBackendDeathTest, AWorkerProcessNeverInitialisesKokkos) {
  if (!default_space_reads_host) GTEST_SKIP() << "the default space cannot read host memory";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const bool before = Kokkos::is_initialized();
        const std::vector<int> ok = polymap::map(std::vector<int>(6, 3), kokkos_left_uninitialised,
                                                 {.backend = backend::processes, .workers = 2});
        std::exit(!before && !Kokkos::is_initialized() && ok == std::vector<int>(6, 1) ? 0 : 1);
      },
      testing::ExitedWithCode(0), "");
}

// Calls nested in an item of a kokkos-backend map run inline on the item's thread: the
// automatic choice says so, an explicit kokkos call says so in its report, and the header's
// calls on a space that reads host memory give the right results there (on Kokkos 4's
// OpenMP a nested parallel_for would wait for a lock its outer one holds).
TEST(KokkosBackend, CallsNestedInAKokkosItemRunInlineInIt) {
  if (!default_space_reads_host) GTEST_SKIP() << "the default space cannot read host memory";
  std::vector<int> xs(8);
  std::iota(xs.begin(), xs.end(), 1);
  std::vector<std::string> said(xs.size());
  const std::vector<int> ok = polymap::map(
      xs,
      [&said](int x) {
        const std::vector<int> v(5, x);
        run_report automatic;
        const std::vector<int> a =
            polymap::map(v, [](int y) { return y * 2; }, {.report = &automatic});
        run_report named;
        const std::vector<int> k = polymap::map(
            v, [](int y) { return y * 3; }, {.backend = backend::kokkos, .report = &named});
        std::vector<int> seen(5, 0);
        count_from(x, 5, seen.data());
        const bool right = a == std::vector<int>(5, 2 * x) && k == std::vector<int>(5, 3 * x) &&
                           plus_one(v) == std::vector<int>(5, x + 1) &&
                           seen == std::vector<int>{x, x + 1, x + 2, x + 3, x + 4};
        said[static_cast<std::size_t>(x - 1)] = automatic.decision.reason + " | " + named.note;
        return right ? 1 : 0;
      },
      {.backend = backend::kokkos});
  for (std::size_t i = 0; i < xs.size(); ++i) {
    EXPECT_EQ(ok[i], 1) << "item " << i;
    EXPECT_NE(said[i].find("nested in a worker of another map"), std::string::npos) << said[i];
    EXPECT_NE(said[i].find("nested in an item of another map: ran inline"), std::string::npos)
        << said[i];
  }
}

}  // namespace
}  // namespace polymap
