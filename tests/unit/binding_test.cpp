// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "topology/binding.hpp"

#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include "topology/topology_builder.hpp"
#include "unit/fake_topology.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

namespace {

using polymap::bind;
using polymap::topology;
using polymap::detail::check_binding;
using polymap::detail::format_cpu_list;
using polymap::detail::parse_cpu_list;
using polymap::detail::worker_cpus;

// The fake two-socket machine, with an affinity mask that leaves out core 0 entirely and PU 7.
topology two_socket_machine() {
  return polymap::test::two_socket_machine().build({1, 2, 3, 5, 6}, std::nullopt);
}

std::vector<int> usable_of(const topology& topo, const std::vector<int>& pus) {
  std::vector<int> out;
  for (int pu : pus) {
    if (std::binary_search(topo.usable_pus().begin(), topo.usable_pus().end(), pu)) {
      out.push_back(pu);
    }
  }
  return out;
}

bool is_usable_subset(const topology& topo, std::vector<int> cpus) {
  std::sort(cpus.begin(), cpus.end());
  return std::includes(topo.usable_pus().begin(), topo.usable_pus().end(), cpus.begin(),
                       cpus.end());
}

TEST(BindingName, RoundTrips) {
  for (bind policy : {bind::none, bind::core, bind::pu, bind::numa, bind::package, bind::cpus}) {
    EXPECT_EQ(polymap::parse_bind(polymap::to_string(policy)), policy);
  }
  EXPECT_EQ(polymap::to_string(bind::core), "core");
  EXPECT_EQ(polymap::to_string(bind::package), "package");
  EXPECT_EQ(polymap::parse_bind("numa"), bind::numa);
  EXPECT_EQ(polymap::parse_bind("Core"), std::nullopt);
  EXPECT_EQ(polymap::parse_bind(""), std::nullopt);
  EXPECT_EQ(polymap::parse_bind("socket"), std::nullopt);
}

TEST(Binding, NoneGivesNoCpus) {
  const topology& topo = topology::current();
  for (std::size_t worker = 0; worker < 4; ++worker) {
    EXPECT_TRUE(worker_cpus(topo, bind::none, worker, 4, {}).empty());
  }
}

TEST(Binding, CoreGivesEachWorkerItsOwnUsableCore) {
  const topology& topo = topology::current();
  const auto cores = topo.usable_cores();
  ASSERT_FALSE(cores.empty());
  std::set<std::vector<int>> seen;
  for (std::size_t worker = 0; worker < cores.size(); ++worker) {
    const auto cpus = worker_cpus(topo, bind::core, worker, cores.size(), {});
    ASSERT_FALSE(cpus.empty()) << "worker " << worker;
    const bool is_a_core = std::any_of(cores.begin(), cores.end(), [&](const auto* core) {
      return usable_of(topo, core->pus) == cpus;
    });
    EXPECT_TRUE(is_a_core) << "worker " << worker << ": " << format_cpu_list(cpus);
    EXPECT_TRUE(seen.insert(cpus).second) << "two workers on " << format_cpu_list(cpus);
  }
  // More workers than cores: they wrap around.
  EXPECT_EQ(worker_cpus(topo, bind::core, cores.size(), cores.size() + 1, {}),
            worker_cpus(topo, bind::core, 0, cores.size() + 1, {}));
}

TEST(Binding, PuGivesEachWorkerOneUsablePu) {
  const topology& topo = topology::current();
  const auto& usable = topo.usable_pus();
  std::set<int> seen;
  for (std::size_t worker = 0; worker < usable.size(); ++worker) {
    const auto cpus = worker_cpus(topo, bind::pu, worker, usable.size(), {});
    ASSERT_EQ(cpus.size(), 1U);
    EXPECT_TRUE(is_usable_subset(topo, cpus));
    EXPECT_TRUE(seen.insert(cpus[0]).second);
  }
}

TEST(Binding, NumaAndPackageGiveTheGroupOfTheCore) {
  const topology& topo = topology::current();
  const auto cores = topo.usable_cores();
  for (std::size_t worker = 0; worker < cores.size() + 1; ++worker) {
    const auto core = worker_cpus(topo, bind::core, worker, cores.size() + 1, {});
    const auto numa = worker_cpus(topo, bind::numa, worker, cores.size() + 1, {});
    const auto package = worker_cpus(topo, bind::package, worker, cores.size() + 1, {});
    const auto& info = *cores[worker % cores.size()];
    EXPECT_EQ(numa,
              usable_of(topo, topo.numa_nodes()[static_cast<std::size_t>(info.numa_node)].pus));
    EXPECT_EQ(package,
              usable_of(topo, topo.packages()[static_cast<std::size_t>(info.package)].pus));
    EXPECT_TRUE(std::includes(numa.begin(), numa.end(), core.begin(), core.end()));
    EXPECT_TRUE(std::includes(package.begin(), package.end(), core.begin(), core.end()));
  }
}

TEST(Binding, CpusCyclesThroughTheList) {
  const topology& topo = topology::current();
  const std::vector<int> list = {topo.usable_pus().back(), topo.usable_pus().front()};
  EXPECT_EQ(worker_cpus(topo, bind::cpus, 0, 3, list), std::vector<int>{list[0]});
  EXPECT_EQ(worker_cpus(topo, bind::cpus, 1, 3, list), std::vector<int>{list[1]});
  EXPECT_EQ(worker_cpus(topo, bind::cpus, 2, 3, list), std::vector<int>{list[0]});
}

TEST(Binding, PoliciesOnATwoSocketMachine) {
  const topology topo = two_socket_machine();
  ASSERT_EQ(topo.usable_pus(), (std::vector<int>{1, 2, 3, 5, 6}));
  // Usable cores are 1 ({1,5}), 2 ({2,6}) and 3 ({3}; PU 7 is not usable).
  EXPECT_EQ(worker_cpus(topo, bind::core, 0, 3, {}), (std::vector<int>{1, 5}));
  EXPECT_EQ(worker_cpus(topo, bind::core, 1, 3, {}), (std::vector<int>{2, 6}));
  EXPECT_EQ(worker_cpus(topo, bind::core, 2, 3, {}), (std::vector<int>{3}));
  EXPECT_EQ(worker_cpus(topo, bind::core, 3, 4, {}), (std::vector<int>{1, 5}));
  EXPECT_EQ(worker_cpus(topo, bind::pu, 0, 5, {}), (std::vector<int>{1}));
  EXPECT_EQ(worker_cpus(topo, bind::pu, 4, 5, {}), (std::vector<int>{6}));
  EXPECT_EQ(worker_cpus(topo, bind::pu, 5, 6, {}), (std::vector<int>{1}));
  EXPECT_EQ(worker_cpus(topo, bind::numa, 0, 3, {}), (std::vector<int>{1, 5}));
  EXPECT_EQ(worker_cpus(topo, bind::numa, 1, 3, {}), (std::vector<int>{2, 3, 6}));
  EXPECT_EQ(worker_cpus(topo, bind::package, 2, 3, {}), (std::vector<int>{2, 3, 6}));
}

TEST(Binding, CheckAcceptsConsistentOptions) {
  const topology& topo = topology::current();
  EXPECT_NO_THROW(check_binding(topo, bind::none, {}));
  EXPECT_NO_THROW(check_binding(topo, bind::core, {}));
  EXPECT_NO_THROW(check_binding(topo, bind::cpus, topo.usable_pus()));
  EXPECT_NO_THROW(check_binding(topo, bind::cpus, {topo.usable_pus().front()}));
}

TEST(Binding, CheckRejectsCpusWithoutAList) {
  const topology& topo = topology::current();
  try {
    check_binding(topo, bind::cpus, {});
    FAIL() << "no option_error";
  } catch (const polymap::option_error& e) {
    EXPECT_EQ(e.option(), "cpus");
    EXPECT_NE(e.allowed().find(format_cpu_list(topo.usable_pus())), std::string::npos)
        << e.allowed();
  }
}

TEST(Binding, CheckRejectsAnUnusableCpu) {
  const topology& topo = topology::current();
  try {
    check_binding(topo, bind::cpus, {topo.usable_pus().front(), 100000});
    FAIL() << "no option_error";
  } catch (const polymap::option_error& e) {
    EXPECT_EQ(e.option(), "cpus");
    EXPECT_EQ(e.value(), "100000");
    EXPECT_NE(e.allowed().find(format_cpu_list(topo.usable_pus())), std::string::npos)
        << e.allowed();
  }
  EXPECT_THROW(check_binding(topo, bind::cpus, {-1}), polymap::option_error);
  // A PU of the machine that the affinity mask leaves out.
  const topology narrowed = two_socket_machine();
  EXPECT_THROW(check_binding(narrowed, bind::cpus, {0}), polymap::option_error);
  EXPECT_NO_THROW(check_binding(narrowed, bind::cpus, {1, 6}));
}

TEST(Binding, CheckRejectsAListWithAnotherPolicy) {
  const topology& topo = topology::current();
  for (bind policy : {bind::none, bind::core, bind::pu, bind::numa, bind::package}) {
    EXPECT_THROW(check_binding(topo, policy, {topo.usable_pus().front()}), polymap::option_error)
        << polymap::to_string(policy);
  }
}

TEST(BindingCpuList, FormatsRangesAsLinuxDoes) {
  EXPECT_EQ(format_cpu_list({0, 1, 2, 3, 8}), "0-3,8");
  EXPECT_EQ(format_cpu_list({8, 3, 2, 1, 0, 2}), "0-3,8");
  EXPECT_EQ(format_cpu_list({0, 1}), "0-1");
  EXPECT_EQ(format_cpu_list({1, 3, 10, 11}), "1,3,10-11");
  EXPECT_EQ(format_cpu_list({5}), "5");
  EXPECT_EQ(format_cpu_list({}), "");
}

TEST(BindingCpuList, ParsesWhatItFormats) {
  EXPECT_EQ(parse_cpu_list("0-3,8"), (std::vector<int>{0, 1, 2, 3, 8}));
  EXPECT_EQ(parse_cpu_list("5"), (std::vector<int>{5}));
  EXPECT_EQ(parse_cpu_list("2-2"), (std::vector<int>{2}));
  EXPECT_EQ(parse_cpu_list("0-1,10-11\n"), (std::vector<int>{0, 1, 10, 11}));
  for (const std::vector<int>& cpus :
       {std::vector<int>{0, 1, 2, 3, 8}, std::vector<int>{1, 3, 10, 11}, std::vector<int>{7}}) {
    EXPECT_EQ(parse_cpu_list(format_cpu_list(cpus)), cpus);
  }
}

TEST(BindingCpuList, KeepsTheOrderWritten) {
  EXPECT_EQ(parse_cpu_list("3,1,2"), (std::vector<int>{3, 1, 2}));
}

TEST(BindingCpuList, RejectsBadInput) {
  for (const char* bad : {"", " ", "3-1", "a", "1,", ",1", "1,,2", "-1", "1-", "1--2", "+1", "1-a",
                          "0x1", "1 2", "99999999999", "0-100000"}) {
    EXPECT_EQ(parse_cpu_list(bad), std::nullopt) << '"' << bad << '"';
  }
}

}  // namespace
