// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Where each worker runs under a `bind` policy, and CPU lists as Linux writes them.
#include "topology/binding.hpp"

#include <polymap/error.hpp>
#include <polymap/options.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <iterator>
#include <string>
#include <utility>

namespace polymap {
namespace {

constexpr std::array<std::pair<bind, std::string_view>, 6> bind_names = {{
    {bind::none, "none"},
    {bind::core, "core"},
    {bind::pu, "pu"},
    {bind::numa, "numa"},
    {bind::package, "package"},
    {bind::cpus, "cpus"},
}};

// Largest CPU index parse_cpu_list accepts, so that "0-2000000000" cannot exhaust memory;
// Linux's NR_CPUS is at most 8192 today.
constexpr int max_cpu_index = (1 << 16) - 1;

}  // namespace

std::string_view to_string(bind policy) noexcept {
  for (const auto& [value, name] : bind_names) {
    if (value == policy) return name;
  }
  return "unknown";
}

std::optional<bind> parse_bind(std::string_view name) noexcept {
  for (const auto& [value, known] : bind_names) {
    if (known == name) return value;
  }
  return std::nullopt;
}

namespace detail {
namespace {

// Those of `pus` that this process may use, in the order given.
std::vector<int> usable_of(const topology& topo, const std::vector<int>& pus) {
  const std::vector<int>& usable = topo.usable_pus();
  std::vector<int> out;
  for (int pu : pus) {
    if (std::binary_search(usable.begin(), usable.end(), pu)) out.push_back(pu);
  }
  return out;
}

std::string describe_usable(const topology& topo) {
  return "CPUs usable by this process (" + format_cpu_list(topo.usable_pus()) + ")";
}

}  // namespace

std::vector<int> worker_cpus(const topology& topo, bind policy, std::size_t worker,
                             std::size_t /*workers*/, const std::vector<int>& cpus) {
  switch (policy) {
    case bind::none:
      return {};
    case bind::pu: {
      const std::vector<int>& usable = topo.usable_pus();
      if (usable.empty()) return {};
      return {usable[worker % usable.size()]};
    }
    case bind::cpus:
      if (cpus.empty()) return {};
      return {cpus[worker % cpus.size()]};
    case bind::core:
    case bind::numa:
    case bind::package: {
      const std::vector<const core_info*> cores = topo.usable_cores();
      if (cores.empty()) return {};
      const core_info& core = *cores[worker % cores.size()];
      if (policy == bind::core) return usable_of(topo, core.pus);
      const std::vector<cpu_group>& groups =
          policy == bind::numa ? topo.numa_nodes() : topo.packages();
      const int group = policy == bind::numa ? core.numa_node : core.package;
      if (group < 0 || static_cast<std::size_t>(group) >= groups.size()) {
        return usable_of(topo, core.pus);
      }
      return usable_of(topo, groups[static_cast<std::size_t>(group)].pus);
    }
  }
  return {};
}

void check_binding(const topology& topo, bind policy, const std::vector<int>& cpus) {
  if (policy != bind::cpus) {
    if (!cpus.empty()) {
      throw option_error(
          "cpus", format_cpu_list(cpus),
          "an empty list unless bind = cpus (bind = " + std::string(to_string(policy)) + ")");
    }
    return;
  }
  if (cpus.empty()) {
    throw option_error("cpus", "(empty)",
                       "one or more " + describe_usable(topo) + " when bind = cpus");
  }
  const std::vector<int>& usable = topo.usable_pus();
  for (int cpu : cpus) {
    if (!std::binary_search(usable.begin(), usable.end(), cpu)) {
      throw option_error("cpus", std::to_string(cpu), describe_usable(topo));
    }
  }
}

std::string format_cpu_list(const std::vector<int>& cpus) {
  std::vector<int> sorted = cpus;
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::string out;
  for (std::size_t i = 0; i < sorted.size();) {
    std::size_t end = i;
    while (end + 1 < sorted.size() && sorted[end + 1] == sorted[end] + 1) ++end;
    if (!out.empty()) out += ',';
    out += std::to_string(sorted[i]);
    if (end > i) out += '-' + std::to_string(sorted[end]);
    i = end + 1;
  }
  return out;
}

std::optional<std::vector<int>> parse_cpu_list(std::string_view text) {
  const auto number = [](std::string_view digits) -> std::optional<int> {
    if (digits.empty() || digits.front() < '0' || digits.front() > '9') return std::nullopt;
    int value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (ec != std::errc{} || end != digits.data() + digits.size() || value > max_cpu_index) {
      return std::nullopt;
    }
    return value;
  };
  // Tolerate surrounding white space, such as the newline a /sys file ends with.
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\n')) {
    text.remove_suffix(1);
  }
  if (text.empty()) return std::nullopt;
  // The order is kept as written: with bind = cpus, worker i runs on the i-th CPU listed.
  std::vector<int> cpus;
  while (true) {
    const auto comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const auto dash = item.find('-');
    const auto first = number(item.substr(0, dash));
    if (!first) return std::nullopt;
    if (dash == std::string_view::npos) {
      cpus.push_back(*first);
    } else {
      const auto last = number(item.substr(dash + 1));
      if (!last || *last < *first) return std::nullopt;
      for (int cpu = *first; cpu <= *last; ++cpu) cpus.push_back(cpu);
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return cpus;
}

}  // namespace detail
}  // namespace polymap
