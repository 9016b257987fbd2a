// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// polymap info: what polymap sees on this machine and what this build contains.

#include <polymap/backend.hpp>
#include <polymap/config.hpp>
#include <polymap/topology.hpp>
#include <polymap/version.hpp>

#include "cli/commands.hpp"
#include "executor.hpp"
#include "topology/binding.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::cli {

namespace {

/// The environment variables that steer polymap (read by the library when a call starts).
constexpr const char* steering_variables[] = {"POLYMAP_BACKEND", "POLYMAP_EXPLAIN"};

struct backend_row {
  std::string name = {};
  bool built = false;
  bool available = false;
  std::string status = {};  // why not built, why not available, or what it is
};

std::vector<backend_row> backend_rows() {
  std::vector<backend_row> rows;
  for (backend_kind kind : all_backends) {
    backend_row row{.name = std::string(to_string(kind))};
    row.built = detail::is_built(kind);
    if (!row.built) {
      row.status = detail::not_built_reason(kind);
    } else {
      const detail::executor& ex = detail::executor_for(kind);
      row.available = ex.available();
      row.status = ex.status();
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

std::optional<std::string> env_value(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

std::string plural(std::size_t n, const char* one, const char* many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

int print_json(const topology& topo) {
  nlohmann::ordered_json j;
  j["version"] = std::string(polymap::version);
  j["library_version"] = std::string(polymap::library_version());
  nlohmann::ordered_json t;
  t["source"] = topo.source();
  t["packages"] = topo.packages().size();
  t["numa_nodes"] = topo.numa_nodes().size();
  t["cores"] = topo.cores().size();
  t["pus"] = topo.pus().size();
  t["usable_pus"] = topo.usable_pus();
  t["usable_cpu_list"] = detail::format_cpu_list(topo.usable_pus());
  t["usable_cores"] = topo.usable_cores().size();
  t["usable_count"] = topo.usable_count();
  t["cpu_quota"] = topo.cpu_quota() ? nlohmann::ordered_json(*topo.cpu_quota())
                                    : nlohmann::ordered_json(nullptr);
  t["reasons"] = topo.reasons();
  j["topology"] = std::move(t);

  nlohmann::ordered_json backends = nlohmann::ordered_json::array();
  for (const backend_row& row : backend_rows()) {
    backends.push_back({{"name", row.name},
                        {"built", row.built},
                        {"available", row.available},
                        {"status", row.status}});
  }
  j["backends"] = std::move(backends);
  j["build"] = {{"hwloc", POLYMAP_HAS_HWLOC != 0},
                {"cuda", POLYMAP_HAS_CUDA != 0},
                {"kokkos", POLYMAP_HAS_KOKKOS != 0},
                {"mpi", POLYMAP_HAS_MPI != 0}};
  nlohmann::ordered_json env = nlohmann::ordered_json::object();
  for (const char* name : steering_variables) {
    const std::optional<std::string> value = env_value(name);
    env[name] = value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json(nullptr);
  }
  j["environment"] = std::move(env);
  fmt::print("{}\n", j.dump(2));
  return exit_ok;
}

int print_text(const topology& topo) {
  fmt::print("polymap {}", polymap::version);
  if (polymap::library_version() != polymap::version) {
    fmt::print(" (library {})", polymap::library_version());
  }
  fmt::print("\n\n");

  fmt::print("{:<16}{}\n", "topology", topo.source());
  fmt::print("{:<16}{}, {}, {}, {}\n", "machine",
             plural(topo.packages().size(), "package", "packages"),
             plural(topo.numa_nodes().size(), "NUMA node", "NUMA nodes"),
             plural(topo.cores().size(), "core", "cores"), plural(topo.pus().size(), "PU", "PUs"));
  fmt::print("{:<16}{} ({} on {})\n", "usable PUs", detail::format_cpu_list(topo.usable_pus()),
             plural(topo.usable_pus().size(), "PU", "PUs"),
             plural(topo.usable_cores().size(), "core", "cores"));
  fmt::print("{:<16}{}\n", "CPU quota",
             topo.cpu_quota() ? fmt::format("{:g} CPUs", *topo.cpu_quota()) : std::string("none"));
  fmt::print("{:<16}{}\n", "usable workers", topo.usable_count());
  for (const std::string& reason : topo.reasons()) fmt::print("{:<16}{}\n", "", reason);
  fmt::print("\nbackends\n");
  for (const backend_row& row : backend_rows()) {
    const char* state = !row.built ? "not built" : row.available ? "available" : "unavailable";
    fmt::print("  {:<14}{:<12}{}\n", row.name, state, row.status);
  }
  fmt::print("\n{:<16}hwloc {}, cuda {}, kokkos {}, mpi {}\n", "built with",
             POLYMAP_HAS_HWLOC ? "yes" : "no", POLYMAP_HAS_CUDA ? "yes" : "no",
             POLYMAP_HAS_KOKKOS ? "yes" : "no", POLYMAP_HAS_MPI ? "yes" : "no");

  fmt::print("\nenvironment\n");
  for (const char* name : steering_variables) {
    const std::optional<std::string> value = env_value(name);
    std::string shown = value ? fmt::format("\"{}\"", *value) : std::string("(unset)");
    // The library reads it only when an automatic call starts, and throws then: say it now.
    if (std::string_view(name) == "POLYMAP_BACKEND" && value && !value->empty() &&
        !parse_backend(*value)) {
      shown += " (not a backend: every automatic call will throw option_error)";
    }
    fmt::print("  {:<18}{}\n", name, shown);
  }
  return exit_ok;
}

}  // namespace

int run_info(const info_args& args) {
  const topology& topo = topology::current();
  return args.json ? print_json(topo) : print_text(topo);
}

}  // namespace polymap::cli
