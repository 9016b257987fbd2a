// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/topology.hpp>

#include "topology/binding.hpp"
#include "once_per_process.hpp"
#include "topology/topology_builder.hpp"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <iterator>
#include <memory>
#include <numeric>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

namespace polymap {
namespace {

// glibc's fixed cpu_set_t holds 1024 CPUs; larger machines need a dynamically sized set.
constexpr int initial_set_cpus = 1024;
// Largest CPU count tried for sched_getaffinity, and largest index bind_this_thread accepts
// (the kernel's NR_CPUS is at most 8192 today).
constexpr int max_set_cpus = 1 << 16;

struct cpu_set_deleter {
  void operator()(cpu_set_t* set) const noexcept { CPU_FREE(set); }
};
using cpu_set_ptr = std::unique_ptr<cpu_set_t, cpu_set_deleter>;

void sort_unique(std::vector<int>& values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
}

std::vector<int> intersect(const std::vector<int>& sorted_a, const std::vector<int>& sorted_b) {
  std::vector<int> out;
  std::set_intersection(sorted_a.begin(), sorted_a.end(), sorted_b.begin(), sorted_b.end(),
                        std::back_inserter(out));
  return out;
}

// "1.50"; to_chars, unlike printf, ignores the locale the application may have set.
std::string format_cpus(double cpus) {
  char text[64];
  const auto result = std::to_chars(text, text + sizeof text, cpus, std::chars_format::fixed, 2);
  return result.ec == std::errc{} ? std::string(text, result.ptr) : std::string("?");
}

// The nice value acts per thread on Linux when PRIO_PROCESS is given a thread id.
id_t this_thread_id() noexcept { return static_cast<id_t>(::gettid()); }

}  // namespace

topology_builder topology_builder::flat(const std::vector<int>& pus, std::string source) {
  topology_builder builder;
  builder.source = std::move(source);
  std::vector<int> sorted = pus;
  sort_unique(sorted);
  for (int pu : sorted) {
    core_info core;
    core.index = static_cast<int>(builder.cores.size());
    core.pus = {pu};
    builder.cores.push_back(std::move(core));
  }
  builder.numa_nodes = {cpu_group{0, sorted}};
  builder.packages = {cpu_group{0, sorted}};
  return builder;
}

topology topology_builder::build(const std::vector<int>& affinity, std::optional<double> quota) && {
  for (core_info& core : cores) sort_unique(core.pus);
  std::erase_if(cores, [](const core_info& core) { return core.pus.empty(); });
  std::vector<int> allowed = affinity;
  sort_unique(allowed);
  if (cores.empty()) {
    // Discovery found nothing: describe what we may run on rather than nothing at all.
    std::vector<int> pus = allowed;
    if (pus.empty()) pus = {0};
    topology_builder flat_builder = flat(pus, std::move(source));
    flat_builder.notes = std::move(notes);
    flat_builder.notes.push_back("topology discovery found no cores; assuming one per usable PU");
    *this = std::move(flat_builder);
  }

  topology topo;
  topo.source_ = std::move(source);
  topo.reasons_ = std::move(notes);

  for (core_info& core : cores) {
    core.index = static_cast<int>(&core - cores.data());
    topo.pus_.insert(topo.pus_.end(), core.pus.begin(), core.pus.end());
  }
  sort_unique(topo.pus_);

  auto finish_groups = [&](std::vector<cpu_group>& groups) {
    if (groups.empty()) groups.push_back(cpu_group{0, topo.pus_});
    for (cpu_group& group : groups) {
      group.index = static_cast<int>(&group - groups.data());
      sort_unique(group.pus);
    }
  };
  finish_groups(numa_nodes);
  finish_groups(packages);
  const int numa_count = static_cast<int>(numa_nodes.size());
  const int package_count = static_cast<int>(packages.size());
  for (core_info& core : cores) {
    if (core.numa_node < 0 || core.numa_node >= numa_count) core.numa_node = 0;
    if (core.package < 0 || core.package >= package_count) core.package = 0;
  }

  topo.usable_pus_ = intersect(allowed, topo.pus_);
  if (allowed.empty()) {
    topo.usable_pus_ = topo.pus_;
    topo.reasons_.push_back("affinity mask unknown; assuming all " +
                            std::to_string(topo.pus_.size()) +
                            " PUs are usable: " + detail::format_cpu_list(topo.pus_));
  } else if (topo.usable_pus_.empty()) {
    // The discovered machine and the mask disagree entirely (e.g. hwloc was pointed at an
    // XML file of another machine): trust the discovery so that workers can still run.
    topo.usable_pus_ = topo.pus_;
    topo.reasons_.push_back("affinity mask " + detail::format_cpu_list(allowed) +
                            " matches no discovered PU; assuming all " +
                            std::to_string(topo.pus_.size()) + " PUs are usable");
  } else {
    topo.reasons_.push_back("affinity mask allows " + std::to_string(topo.usable_pus_.size()) +
                            " of " + std::to_string(topo.pus_.size()) +
                            " PUs: " + detail::format_cpu_list(topo.usable_pus_));
  }

  for (core_info& core : cores) {
    core.usable = std::any_of(core.pus.begin(), core.pus.end(), [&](int pu) {
      return std::binary_search(topo.usable_pus_.begin(), topo.usable_pus_.end(), pu);
    });
  }

  const std::size_t usable = std::max<std::size_t>(topo.usable_pus_.size(), 1);
  topo.usable_count_ = usable;
  if (quota && std::isfinite(*quota) && *quota > 0) {
    topo.quota_ = *quota;
    // A quota of 1.5 CPUs lets 2 workers make progress; rounding down would leave half a CPU idle.
    const double rounded = std::max(1.0, std::ceil(*quota));
    const auto cap =
        rounded >= static_cast<double>(usable) ? usable : static_cast<std::size_t>(rounded);
    if (cap < usable) {
      topo.usable_count_ = cap;
      topo.reasons_.push_back("cgroup cpu quota " + format_cpus(*quota) + " CPUs caps workers at " +
                              std::to_string(cap));
    } else {
      topo.reasons_.push_back("cgroup cpu quota " + format_cpus(*quota) +
                              " CPUs does not cap the " + std::to_string(usable) + " usable PUs");
    }
  } else {
    topo.reasons_.push_back("no cgroup cpu quota");
  }

  topo.cores_ = std::move(cores);
  topo.numa_ = std::move(numa_nodes);
  topo.packages_ = std::move(packages);
  return topo;
}

topology topology_builder::build() && {
  return std::move(*this).build(detail::process_affinity(), detail::process_cpu_quota());
}

namespace detail {

std::vector<int> affinity_of(int pid) noexcept {
  try {
    for (int cpus = initial_set_cpus; cpus <= max_set_cpus; cpus *= 2) {
      cpu_set_ptr set(CPU_ALLOC(cpus));
      if (!set) return {};
      const std::size_t size = CPU_ALLOC_SIZE(cpus);
      CPU_ZERO_S(size, set.get());
      if (sched_getaffinity(static_cast<pid_t>(pid), size, set.get()) == 0) {
        std::vector<int> out;
        // CPU_ALLOC_SIZE rounds up to whole words; every bit of them may be set.
        const int bits = static_cast<int>(size * 8);
        for (int cpu = 0; cpu < bits; ++cpu) {
          if (CPU_ISSET_S(cpu, size, set.get())) out.push_back(cpu);
        }
        return out;
      }
      // EINVAL: the kernel's mask is larger than ours; try a larger one.
      if (errno != EINVAL) return {};
    }
  } catch (...) {
  }
  return {};
}

std::vector<int> process_affinity() noexcept {
  // The main thread's mask is the process's: a worker thread that already bound itself
  // must not shrink what the whole process may use.
  return affinity_of(static_cast<int>(::getpid()));
}

std::optional<double> process_cpu_quota() noexcept {
  try {
    std::ifstream in("/proc/self/cgroup");
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return cgroup_cpu_quota("/sys/fs/cgroup", text.str());
  } catch (...) {
    return std::nullopt;
  }
}

topology fallback_discover(const std::string& note) noexcept {
  try {
    std::vector<int> pus = process_affinity();
    std::string source = "fallback (sched_getaffinity)";
    if (pus.empty()) {
      const unsigned count = std::max(1U, std::thread::hardware_concurrency());
      pus.resize(count);
      std::iota(pus.begin(), pus.end(), 0);
      source = "fallback (hardware_concurrency)";
    }
    topology_builder builder = topology_builder::flat(pus, std::move(source));
    if (!note.empty()) builder.notes.push_back(note);
    return std::move(builder).build();
  } catch (...) {
    // Out of memory while describing the machine: an empty topology still has
    // usable_count() == 1, and binding is best effort anyway.
    return topology{};
  }
}

}  // namespace detail

namespace {

/// The machine's topology, discovered at the first call of topology::current() (see
/// once_per_process: hwloc's discovery takes milliseconds, and a fork during it must not
/// leave a child that waits for it for ever).
constinit detail::once_per_process<topology> the_machine;

}  // namespace

const topology& topology::current() noexcept {
  return the_machine.get([] {
    if (detail::discovery_hook != nullptr) detail::discovery_hook();
    return topology::discover();
  });
}

std::vector<const core_info*> topology::usable_cores() const {
  std::vector<const core_info*> out;
  for (const core_info& core : cores_) {
    if (core.usable) out.push_back(&core);
  }
  return out;
}

bool bind_this_thread(const std::vector<int>& cpus) noexcept {
  if (cpus.empty()) return false;
  const auto [low, high] = std::minmax_element(cpus.begin(), cpus.end());
  if (*low < 0 || *high >= max_set_cpus) return false;
  const int count = std::max(*high + 1, initial_set_cpus);
  cpu_set_ptr set(CPU_ALLOC(count));
  if (!set) return false;
  const std::size_t size = CPU_ALLOC_SIZE(count);
  CPU_ZERO_S(size, set.get());
  for (int cpu : cpus) CPU_SET_S(static_cast<std::size_t>(cpu), size, set.get());
  // pid 0 is the calling thread, not the whole process.
  return sched_setaffinity(0, size, set.get()) == 0;
}

std::vector<int> this_thread_affinity() noexcept { return detail::affinity_of(0); }

bool set_this_thread_nice(int nice) noexcept {
  // setpriority clamps out-of-range values silently; report them as refused instead.
  if (nice < -20 || nice > 19) return false;
  return setpriority(PRIO_PROCESS, this_thread_id(), nice) == 0;
}

std::optional<int> this_thread_nice() noexcept {
  // -1 is both a valid nice value and the error return: only errno tells them apart.
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, this_thread_id());
  if (nice == -1 && errno != 0) return std::nullopt;
  return nice;
}

}  // namespace polymap
