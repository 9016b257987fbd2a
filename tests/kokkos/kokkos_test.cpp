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
#include <vector>

namespace polymap {
namespace {

TEST(KokkosBackend, MapsOnTheDefaultSpaceInInputOrder) {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{100'003}}) {
    std::vector<double> xs(n);
    std::iota(xs.begin(), xs.end(), 0.0);
    const std::vector<double> ys =
        polymap::kokkos::map(xs, KOKKOS_LAMBDA(double x) { return 3 * x + 1; });
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
  polymap::kokkos::for_each(n, KOKKOS_LAMBDA(std::size_t i) {
    kernels::saxpy(i, 0.5F, x.data(), y.data());
  });
  auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), y);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(host(i), 2.0F);
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
  // The hook sees a launch here, in the caller: so it would see one in a worker.
  count_launches();
  (void)polymap::kokkos::map(std::vector<int>(3, 1), KOKKOS_LAMBDA(int y) { return y + 1; });
  EXPECT_GE(kokkos_launches.load(), 1);
  stop_counting();

  std::vector<int> xs(4, 5);
  const std::vector<int> ok = polymap::map(
      xs,
      [](int x) {
        count_launches();
        const std::vector<int> v(3, x);
        const std::vector<int> w = polymap::kokkos::map(v, KOKKOS_LAMBDA(int y) { return y + 1; });
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
  const std::vector<int> w = polymap::kokkos::map(v, KOKKOS_LAMBDA(int y) { return y + 1; });
  std::vector<int> seen(5, 0);
  int* s = seen.data();
  polymap::kokkos::for_each(5, KOKKOS_LAMBDA(std::size_t i) { s[i] = static_cast<int>(i) + x; });
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

}  // namespace
}  // namespace polymap
