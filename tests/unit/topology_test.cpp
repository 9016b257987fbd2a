// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/topology.hpp>

#include "topology/binding.hpp"
#include "topology/topology_builder.hpp"
#include "unit/fake_topology.hpp"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using polymap::topology;
using polymap::topology_builder;

// The affinity mask of the calling thread, read with the plain libc call.
std::vector<int> libc_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return {};
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

bool has_line(const topology& topo, const std::string& line) {
  const auto& reasons = topo.reasons();
  return std::find(reasons.begin(), reasons.end(), line) != reasons.end();
}

bool has_line_starting(const topology& topo, const std::string& prefix) {
  return std::any_of(topo.reasons().begin(), topo.reasons().end(),
                     [&](const std::string& line) { return line.rfind(prefix, 0) == 0; });
}

using polymap::test::two_socket_machine;

TEST(Topology, UsablePusEqualSchedGetaffinity) {
  const std::vector<int> mask = libc_affinity();
  ASSERT_FALSE(mask.empty());
  EXPECT_EQ(topology::current().usable_pus(), mask);
  EXPECT_EQ(topology::discover().usable_pus(), mask);
}

TEST(Topology, CoresPartitionPus) {
  const topology& topo = topology::current();
  ASSERT_FALSE(topo.cores().empty());
  std::vector<int> seen;
  for (const auto& core : topo.cores()) {
    EXPECT_FALSE(core.pus.empty()) << "core " << core.index;
    seen.insert(seen.end(), core.pus.begin(), core.pus.end());
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "a PU in two cores";
  EXPECT_EQ(seen, topo.pus());
  EXPECT_TRUE(std::is_sorted(topo.pus().begin(), topo.pus().end()));
}

TEST(Topology, CoreIndicesArePositions) {
  const topology& topo = topology::current();
  for (std::size_t i = 0; i < topo.cores().size(); ++i) {
    EXPECT_EQ(topo.cores()[i].index, static_cast<int>(i));
  }
}

TEST(Topology, UsablePusAreMachinePus) {
  const topology& topo = topology::current();
  ASSERT_FALSE(topo.usable_pus().empty());
  EXPECT_TRUE(std::includes(topo.pus().begin(), topo.pus().end(), topo.usable_pus().begin(),
                            topo.usable_pus().end()));
}

TEST(Topology, CoreUsableFlagMatchesUsablePus) {
  const topology& topo = topology::current();
  const auto& usable = topo.usable_pus();
  std::vector<int> covered;
  for (const auto& core : topo.cores()) {
    const bool any = std::any_of(core.pus.begin(), core.pus.end(), [&](int pu) {
      return std::binary_search(usable.begin(), usable.end(), pu);
    });
    EXPECT_EQ(core.usable, any) << "core " << core.index;
  }
  const auto cores = topo.usable_cores();
  ASSERT_FALSE(cores.empty());
  for (const auto* core : cores) {
    EXPECT_TRUE(core->usable);
    covered.insert(covered.end(), core->pus.begin(), core->pus.end());
  }
  std::sort(covered.begin(), covered.end());
  EXPECT_TRUE(std::includes(covered.begin(), covered.end(), usable.begin(), usable.end()));
}

TEST(Topology, EveryCoreLiesInItsNumaNodeAndPackage) {
  const topology& topo = topology::current();
  ASSERT_FALSE(topo.numa_nodes().empty());
  ASSERT_FALSE(topo.packages().empty());
  for (const auto& core : topo.cores()) {
    ASSERT_GE(core.numa_node, 0);
    ASSERT_LT(static_cast<std::size_t>(core.numa_node), topo.numa_nodes().size());
    ASSERT_GE(core.package, 0);
    ASSERT_LT(static_cast<std::size_t>(core.package), topo.packages().size());
    const auto& node = topo.numa_nodes()[static_cast<std::size_t>(core.numa_node)].pus;
    const auto& package = topo.packages()[static_cast<std::size_t>(core.package)].pus;
    EXPECT_TRUE(std::includes(node.begin(), node.end(), core.pus.begin(), core.pus.end()));
    EXPECT_TRUE(std::includes(package.begin(), package.end(), core.pus.begin(), core.pus.end()));
  }
}

TEST(Topology, UsableCountRespectsAffinityMaskAndQuota) {
  const topology& topo = topology::current();
  const std::size_t usable = topo.usable_pus().size();
  ASSERT_GE(topo.usable_count(), 1U);
  EXPECT_LE(topo.usable_count(), usable);
  if (const auto quota = topo.cpu_quota()) {
    const auto cap = static_cast<std::size_t>(std::max(1.0, std::ceil(*quota)));
    EXPECT_EQ(topo.usable_count(), std::min(usable, cap));
  } else {
    EXPECT_EQ(topo.usable_count(), usable);
    EXPECT_TRUE(has_line(topo, "no cgroup cpu quota"));
  }
}

TEST(Topology, ReasonsDescribeTheAffinityMask) {
  const topology& topo = topology::current();
  const std::string expected = "affinity mask allows " + std::to_string(topo.usable_pus().size()) +
                               " of " + std::to_string(topo.pus().size()) +
                               " PUs: " + polymap::detail::format_cpu_list(topo.usable_pus());
  EXPECT_TRUE(has_line(topo, expected)) << expected;
}

TEST(Topology, QuotaMatchesThisProcessCgroup) {
  EXPECT_EQ(topology::current().cpu_quota(), polymap::detail::process_cpu_quota());
}

TEST(Topology, SourceNamesTheDiscovery) {
  const std::string& source = topology::current().source();
  EXPECT_TRUE(source.rfind("hwloc ", 0) == 0 || source.rfind("fallback (", 0) == 0) << source;
}

TEST(Topology, CurrentIsTheSameObjectOnEveryThread) {
  const topology* here = &topology::current();
  const topology* there = nullptr;
  std::thread([&] { there = &topology::current(); }).join();
  EXPECT_EQ(here, there);
}

// --- forks and threads at the first discovery --------------------------------------------

pid_t discovery_child = 0;

/// Forks once, from inside the first discovery of the topology, as another thread of the
/// program may at that moment; the child asks for the topology itself, then exits.
void fork_during_discovery() {
  static bool forked = false;
  if (forked) return;  // the child's own discovery calls this too
  forked = true;
  const pid_t pid = fork();
  if (pid == 0) _exit(topology::current().usable_count() >= 1 ? 0 : 3);
  discovery_child = pid;
}

[[noreturn]] void discover_with_a_fork_inside() {
  polymap::detail::discovery_hook = fork_during_discovery;
  (void)topology::current();
  polymap::detail::discovery_hook = nullptr;
  if (discovery_child <= 0) {
    std::fprintf(stderr, "the discovery did not fork (the topology was known already)\n");
    std::_Exit(2);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int status = 0;
  while (waitpid(discovery_child, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(discovery_child, SIGKILL);
      (void)waitpid(discovery_child, &status, 0);
      std::fprintf(stderr, "the child forked during the discovery hung\n");
      std::_Exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::_Exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 4);
}

// A program's fork while one of its threads made the first call of topology::current() (hwloc
// takes milliseconds) left the child waiting for ever on the function-local static's guard as
// soon as it asked for the topology itself (the first map, binding): its copy of the guard was
// held by a thread it does not have. The death test runs in a fresh process, where the
// topology was not discovered yet.
TEST(TopologyDeathTest, AForkDuringTheFirstDiscoveryLeavesAChildThatGoesOn) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(discover_with_a_fork_inside(), testing::ExitedWithCode(0), "");
}

std::atomic<int> discoveries{0};

/// Threads that ask for the topology at once, in a process that has not discovered it yet:
/// one discovers, the others wait for it, and all get the same object.
[[noreturn]] void race_to_the_first_discovery() {
  polymap::detail::discovery_hook = [] { discoveries.fetch_add(1); };
  constexpr std::size_t threads = 8;
  std::array<const topology*, threads> seen{};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      seen[t] = &topology::current();
    });
  }
  go.store(true);
  for (std::thread& t : pool) t.join();
  polymap::detail::discovery_hook = nullptr;
  const bool same = std::all_of(seen.begin(), seen.end(),
                                [&](const topology* p) { return p == &topology::current(); });
  std::_Exit(discoveries.load() == 1 && same ? 0 : 1);
}

TEST(TopologyDeathTest, ThreadsRacingTheFirstDiscoveryShareOneTopology) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(race_to_the_first_discovery(), testing::ExitedWithCode(0), "");
}

TEST(TopologyBuilder, QuotaCapsUsableCountRoundedUp) {
  topology topo = topology_builder::flat({0, 1, 2, 3}, "test").build({0, 1, 2, 3}, 1.5);
  EXPECT_EQ(topo.usable_pus().size(), 4U);
  EXPECT_EQ(topo.usable_count(), 2U);
  EXPECT_EQ(topo.cpu_quota(), 1.5);
  EXPECT_TRUE(has_line(topo, "affinity mask allows 4 of 4 PUs: 0-3"));
  EXPECT_TRUE(has_line(topo, "cgroup cpu quota 1.50 CPUs caps workers at 2"));
}

TEST(TopologyBuilder, SmallQuotaLeavesOneWorker) {
  topology topo = topology_builder::flat({0, 1, 2, 3}, "test").build({0, 1, 2, 3}, 0.1);
  EXPECT_EQ(topo.usable_count(), 1U);
}

TEST(TopologyBuilder, LargeQuotaDoesNotCap) {
  topology topo = topology_builder::flat({0, 1}, "test").build({0, 1}, 8.0);
  EXPECT_EQ(topo.usable_count(), 2U);
  EXPECT_TRUE(has_line_starting(topo, "cgroup cpu quota 8.00 CPUs does not cap"));
}

TEST(TopologyBuilder, AffinityMaskNarrowsUsablePus) {
  topology topo = two_socket_machine().build({1, 2, 3, 6, 42}, std::nullopt);
  EXPECT_EQ(topo.pus(), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(topo.usable_pus(), (std::vector<int>{1, 2, 3, 6}));
  EXPECT_EQ(topo.usable_count(), 4U);
  EXPECT_FALSE(topo.cpu_quota());
  ASSERT_EQ(topo.cores().size(), 4U);
  EXPECT_FALSE(topo.cores()[0].usable);
  EXPECT_TRUE(topo.cores()[1].usable);
  EXPECT_TRUE(topo.cores()[2].usable);
  EXPECT_TRUE(topo.cores()[3].usable);
  ASSERT_EQ(topo.usable_cores().size(), 3U);
  EXPECT_EQ(topo.usable_cores()[0]->index, 1);
  EXPECT_TRUE(has_line(topo, "affinity mask allows 4 of 8 PUs: 1-3,6"));
  EXPECT_TRUE(has_line(topo, "no cgroup cpu quota"));
}

TEST(TopologyBuilder, UnknownAffinityMeansEveryPu) {
  topology topo = topology_builder::flat({0, 1, 2}, "test").build({}, std::nullopt);
  EXPECT_EQ(topo.usable_pus(), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(topo.usable_count(), 3U);
}

TEST(TopologyBuilder, NoCoresFallsBackToTheAffinityMask) {
  topology topo = topology_builder{}.build({0, 1}, std::nullopt);
  EXPECT_EQ(topo.cores().size(), 2U);
  EXPECT_EQ(topo.usable_pus(), (std::vector<int>{0, 1}));
  EXPECT_EQ(topo.numa_nodes().size(), 1U);
  EXPECT_EQ(topo.packages().size(), 1U);
}

TEST(TopologyBuilder, FallbackHasOneCorePerUsablePu) {
  const topology topo = polymap::detail::fallback_discover("why");
  const std::vector<int> mask = libc_affinity();
  EXPECT_EQ(topo.source(), "fallback (sched_getaffinity)");
  EXPECT_EQ(topo.pus(), mask);
  EXPECT_EQ(topo.usable_pus(), mask);
  EXPECT_EQ(topo.cores().size(), mask.size());
  ASSERT_EQ(topo.numa_nodes().size(), 1U);
  ASSERT_EQ(topo.packages().size(), 1U);
  EXPECT_EQ(topo.numa_nodes()[0].pus, mask);
  EXPECT_EQ(topo.packages()[0].pus, mask);
  ASSERT_FALSE(topo.reasons().empty());
  EXPECT_EQ(topo.reasons().front(), "why");
}

TEST(TopologyThread, BindToOneCpuReadsBack) {
  const std::vector<int> main_before = polymap::this_thread_affinity();
  std::thread([] {
    const std::vector<int> original = polymap::this_thread_affinity();
    ASSERT_FALSE(original.empty());
    EXPECT_EQ(original, libc_affinity());
    for (int cpu : polymap::topology::current().usable_pus()) {
      ASSERT_TRUE(polymap::bind_this_thread({cpu})) << "cpu " << cpu;
      EXPECT_EQ(polymap::this_thread_affinity(), std::vector<int>{cpu});
      EXPECT_EQ(libc_affinity(), std::vector<int>{cpu});
      std::this_thread::yield();
      EXPECT_EQ(sched_getcpu(), cpu);
    }
    ASSERT_TRUE(polymap::bind_this_thread(original));
    EXPECT_EQ(polymap::this_thread_affinity(), original);
  }).join();
  EXPECT_EQ(polymap::this_thread_affinity(), main_before);
}

TEST(TopologyThread, RefusedBindingChangesNothing) {
  std::thread([] {
    const std::vector<int> original = polymap::this_thread_affinity();
    EXPECT_FALSE(polymap::bind_this_thread({}));
    EXPECT_FALSE(polymap::bind_this_thread({-1}));
    EXPECT_FALSE(polymap::bind_this_thread({100000}));
    // A CPU index past every CPU of the machine: the kernel refuses an empty effective set.
    // (The fallback topology knows only the affinity mask, so ask sysconf as well.)
    const int past_last = std::max(polymap::topology::current().pus().back() + 1,
                                   static_cast<int>(sysconf(_SC_NPROCESSORS_CONF)));
    if (past_last < 1024) {
      EXPECT_FALSE(polymap::bind_this_thread({past_last}));
    }
    EXPECT_EQ(polymap::this_thread_affinity(), original);
  }).join();
}

TEST(TopologyThread, NiceActsOnTheCallingThreadOnly) {
  const std::optional<int> main_before = polymap::this_thread_nice();
  ASSERT_TRUE(main_before);
  if (*main_before > 5) GTEST_SKIP() << "main thread already has nice " << *main_before;
  std::optional<int> seen;
  int from_libc = -100;
  bool set = false;
  std::thread([&] {
    set = polymap::set_this_thread_nice(5);
    seen = polymap::this_thread_nice();
    errno = 0;
    from_libc = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  }).join();
  EXPECT_TRUE(set);
  EXPECT_EQ(seen, 5);
  EXPECT_EQ(from_libc, 5);
  EXPECT_EQ(polymap::this_thread_nice(), main_before);
  EXPECT_EQ(getpriority(PRIO_PROCESS, static_cast<id_t>(gettid())), *main_before);
}

TEST(TopologyThread, NiceOutOfRangeIsRefused) {
  std::thread([] {
    const auto before = polymap::this_thread_nice();
    EXPECT_FALSE(polymap::set_this_thread_nice(20));
    EXPECT_FALSE(polymap::set_this_thread_nice(-21));
    EXPECT_EQ(polymap::this_thread_nice(), before);
  }).join();
}

// A fake cgroup file system under a fresh temporary directory.
class CgroupQuota : public testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "polymap-cgroup-XXXXXX");
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  void write(const std::string& relative, const std::string& text) {
    const std::filesystem::path file = root_ / relative;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << text;
  }

  [[nodiscard]] std::optional<double> quota(const std::string& proc_self_cgroup) const {
    return polymap::detail::cgroup_cpu_quota(root_.string(), proc_self_cgroup);
  }

  std::filesystem::path root_;
};

TEST_F(CgroupQuota, V2MaxMeansNoQuota) {
  write("user.slice/job/cpu.max", "max 100000\n");
  EXPECT_EQ(quota("0::/user.slice/job\n"), std::nullopt);
}

TEST_F(CgroupQuota, V2QuotaIsQuotaOverPeriod) {
  write("user.slice/job/cpu.max", "150000 100000\n");
  EXPECT_EQ(quota("0::/user.slice/job\n"), 1.5);
}

TEST_F(CgroupQuota, V2ParentQuotaSmallerThanChildWins) {
  write("batch/cpu.max", "100000 100000\n");
  write("batch/job/cpu.max", "300000 100000\n");
  write("batch/job/step/cpu.max", "max 100000\n");
  EXPECT_EQ(quota("0::/batch/job/step\n"), 1.0);
}

TEST_F(CgroupQuota, V2ChildQuotaSmallerThanParentWins) {
  write("batch/cpu.max", "400000 100000\n");
  write("batch/job/cpu.max", "50000 100000\n");
  EXPECT_EQ(quota("0::/batch/job\n"), 0.5);
}

TEST_F(CgroupQuota, V2PathOutsideTheMountUsesItsRoot) {
  // A container without a cgroup namespace sees its own cgroup mounted as the root.
  write("cpu.max", "200000 100000\n");
  EXPECT_EQ(quota("0::/docker/0123abcd\n"), 2.0);
}

TEST_F(CgroupQuota, V1QuotaIsCfsQuotaOverPeriod) {
  write("cpu,cpuacct/batch/cpu.cfs_quota_us", "250000\n");
  write("cpu,cpuacct/batch/cpu.cfs_period_us", "100000\n");
  write("memory/batch/memory.limit_in_bytes", "1048576\n");
  EXPECT_EQ(quota("5:memory:/batch\n4:cpu,cpuacct:/batch\n0::/\n"), 2.5);
}

TEST_F(CgroupQuota, V1SeparateCpuHierarchy) {
  write("cpu/batch/cpu.cfs_quota_us", "50000\n");
  write("cpu/batch/cpu.cfs_period_us", "100000\n");
  write("cpu/cpu.cfs_quota_us", "-1\n");
  write("cpu/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(quota("2:cpuacct:/batch\n1:cpu:/batch\n"), 0.5);
}

TEST_F(CgroupQuota, V1MinusOneMeansNoQuota) {
  write("cpu,cpuacct/batch/cpu.cfs_quota_us", "-1\n");
  write("cpu,cpuacct/batch/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(quota("4:cpu,cpuacct:/batch\n"), std::nullopt);
}

TEST_F(CgroupQuota, V1ParentQuotaApplies) {
  write("cpu,cpuacct/a/cpu.cfs_quota_us", "150000\n");
  write("cpu,cpuacct/a/cpu.cfs_period_us", "100000\n");
  write("cpu,cpuacct/a/b/cpu.cfs_quota_us", "-1\n");
  write("cpu,cpuacct/a/b/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(quota("4:cpu,cpuacct:/a/b\n"), 1.5);
}

TEST_F(CgroupQuota, MissingFilesMeanNoQuota) {
  EXPECT_EQ(quota("0::/user.slice\n"), std::nullopt);
  EXPECT_EQ(quota("4:cpu,cpuacct:/batch\n"), std::nullopt);
  write("cpu,cpuacct/batch/cpu.cfs_quota_us", "50000\n");  // no period file
  EXPECT_EQ(quota("4:cpu,cpuacct:/batch\n"), std::nullopt);
  EXPECT_EQ(polymap::detail::cgroup_cpu_quota((root_ / "absent").string(), "0::/\n"), std::nullopt);
}

TEST_F(CgroupQuota, GarbageMeansNoQuota) {
  write("cpu.max", "lots 100000\n");
  EXPECT_EQ(quota("0::/\n"), std::nullopt);
  EXPECT_EQ(quota(""), std::nullopt);
  EXPECT_EQ(quota("not a cgroup line\n\n::\n"), std::nullopt);
}

TEST_F(CgroupQuota, PathEscapingTheMountIsNotFollowed) {
  // "/../x": the cgroup lies outside this cgroup namespace; only the mount's root counts.
  const std::string outside = root_.filename().string() + "-outside";
  write("cpu.max", "300000 100000\n");
  write("../" + outside + "/cpu.max", "100000 100000\n");
  EXPECT_EQ(quota("0::/../" + outside + "\n"), 3.0);
  std::error_code ec;
  std::filesystem::remove_all(root_.parent_path() / outside, ec);
}

}  // namespace
