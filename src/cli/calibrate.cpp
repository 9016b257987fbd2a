// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// polymap calibrate: measures the constants that automatic weighs, and keeps the GPU's.

#include <polymap/backends/cuda.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include "cli/commands.hpp"
#include "executor.hpp"

#include <time.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <latch>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace polymap::cli {

namespace {

/// Below this share of its CPUs, the figures are a busy machine's, and calibrate says so.
constexpr double busy_share = 0.8;

double thread_cpu_seconds() noexcept {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

/// The share of its CPUs that this process gets now: one thread per usable CPU spins for
/// 200 ms (two periods of a cgroup's quota) and counts the CPU time it was given, against
/// the CPUs it may use (the quota, where it is below them). Near 1 on an idle machine;
/// other work on the same CPUs takes the rest, and so does a quota's throttling.
/// @return nothing when the threads cannot be started (a process limit)
std::optional<double> cpu_share() {
  const topology& t = topology::current();
  const std::size_t threads = std::max<std::size_t>(t.usable_count(), 1);
  const double cpus = std::min(static_cast<double>(threads),
                               t.cpu_quota().value_or(static_cast<double>(threads)));
  constexpr auto span = std::chrono::milliseconds(200);
  std::vector<double> given(threads, 0.0);
  std::latch start(static_cast<std::ptrdiff_t>(threads) + 1);
  std::chrono::steady_clock::time_point end{};
  {
    std::vector<std::jthread> spinners;
    try {
      for (std::size_t i = 0; i < threads; ++i) {
        spinners.emplace_back([&, i] {
          start.arrive_and_wait();
          const double before = thread_cpu_seconds();
          while (std::chrono::steady_clock::now() < end) {
          }
          given[i] = thread_cpu_seconds() - before;
        });
      }
    } catch (const std::system_error&) {
      // Those started must not wait for ever for the others and this thread: they find
      // `end` passed and stop at once, and are joined here.
      start.count_down(static_cast<std::ptrdiff_t>(threads - spinners.size()) + 1);
      return std::nullopt;
    }
    end = std::chrono::steady_clock::now() + span;
    start.arrive_and_wait();
  }
  double total = 0;
  for (double g : given) total += g;
  return std::min(1.0, total / (std::chrono::duration<double>(span).count() * cpus));
}

struct cpu_constants {
  std::optional<double> fork_join;  // threads: one fork-join of the pool
  std::size_t workers = 0;
  std::string threads_status = {};
  std::optional<double> fork;      // processes: a fork, exit and reap
  std::optional<double> per_byte;  // processes: a result byte moved to the caller
  std::string processes_status = {};
};

/// The CPU backends' constants, as this process measures them at first use.
cpu_constants measure_cpu() {
  cpu_constants c;
  if (const detail::executor* threads =
          detail::usable_executor(backend_kind::threads, c.threads_status)) {
    c.workers = threads->parallelism(options{});
    c.fork_join = threads->overhead_seconds({.workers = c.workers, .items = 0, .result_bytes = 0});
  }
  if (const detail::executor* processes =
          detail::usable_executor(backend_kind::processes, c.processes_status)) {
    constexpr std::size_t mib = std::size_t{1} << 20;
    c.fork = processes->overhead_seconds({.workers = 1, .items = 0, .result_bytes = 0});
    c.per_byte = processes->overhead_seconds({.workers = 0, .items = 1, .result_bytes = mib}) /
                 static_cast<double>(mib);
  }
  return c;
}

struct gpu_row {
  int device = 0;
  std::optional<cuda::host_map_costs> costs;
  std::string error = {};
};

std::string us(double seconds) { return fmt::format("{:.2f} us", seconds * 1e6); }

}  // namespace

int run_calibrate(const calibrate_args& args) {
  const int count = cuda::device_count();
  std::vector<int> devices = args.devices;
  if (devices.empty()) {
    for (int d = 0; d < count; ++d) devices.push_back(d);
  }
  for (const int d : devices) {
    if (d < 0 || d >= count) {
      print_error("polymap calibrate: --device {}: there is no such CUDA device ({})\n", d,
                 cuda::device_status());
      return exit_usage;
    }
  }

  // Before and after: other work that starts or ends while measuring counts too.
  std::optional<double> share = cpu_share();
  const cpu_constants cpu = measure_cpu();
  std::vector<gpu_row> gpus;
  bool failed = false;
  for (const int d : devices) {
    gpu_row row{.device = d, .costs = std::nullopt, .error = {}};
    try {
      row.costs = cuda::measure_host_map_costs(d);
    } catch (const std::exception& e) {
      row.error = e.what();
      failed = true;
    }
    gpus.push_back(std::move(row));
  }
  if (const std::optional<double> after = cpu_share(); share && after) {
    share = std::min(*share, *after);
  } else {
    share = std::nullopt;
  }
  if (share && *share < busy_share) {
    print_error(
               "polymap calibrate: this process got {:.0f}% of its CPUs while measuring (other "
               "work runs on them): these figures are a busy machine's; measure again when it "
               "is idle\n",
               100 * *share);
  }

  if (args.json) {
    nlohmann::ordered_json j;
    j["cpu_share"] = share ? nlohmann::ordered_json(*share) : nlohmann::ordered_json(nullptr);
    j["threads"] = cpu.fork_join ? nlohmann::ordered_json{{"fork_join_seconds", *cpu.fork_join},
                                                          {"workers", cpu.workers}}
                                 : nlohmann::ordered_json{{"unusable", cpu.threads_status}};
    j["processes"] =
        cpu.fork ? nlohmann::ordered_json{{"fork_seconds", *cpu.fork},
                                          {"seconds_per_result_byte", *cpu.per_byte}}
                 : nlohmann::ordered_json{{"unusable", cpu.processes_status}};
    nlohmann::ordered_json rows = nlohmann::ordered_json::array();
    for (const gpu_row& g : gpus) {
      nlohmann::ordered_json r{{"device", g.device}};
      if (g.costs) {
        r["fixed_seconds"] = g.costs->fixed_seconds;
        r["first_bytes"] = g.costs->first_bytes;
        r["first_seconds_per_byte"] = g.costs->first_seconds_per_byte;
        r["seconds_per_byte"] = g.costs->seconds_per_byte;
        r["source"] = g.costs->source;
      } else {
        r["error"] = g.error;
      }
      rows.push_back(std::move(r));
    }
    j["cuda"] = {{"status", cuda::device_status()}, {"devices", std::move(rows)}};
    fmt::print("{}\n", j.dump(2));
    return failed ? exit_failure : exit_ok;
  }

  fmt::print("polymap calibrate: the constants automatic weighs, measured now\n\n");
  if (cpu.fork_join) {
    fmt::print("{:<12}fork-join {} on {} workers\n", "threads", us(*cpu.fork_join), cpu.workers);
  } else {
    fmt::print("{:<12}not usable: {}\n", "threads", cpu.threads_status);
  }
  if (cpu.fork) {
    fmt::print("{:<12}fork {}, {:.3f} ns a result byte\n", "processes", us(*cpu.fork),
               *cpu.per_byte * 1e9);
  } else {
    fmt::print("{:<12}not usable: {}\n", "processes", cpu.processes_status);
  }
  fmt::print("{:<12}(each process measures these itself at its first call: milliseconds)\n", "");
  if (gpus.empty()) fmt::print("{:<12}{}: nothing to measure\n", "cuda", cuda::device_status());
  for (const gpu_row& g : gpus) {
    const std::string label = fmt::format("cuda {}", g.device);
    if (g.costs) {
      fmt::print("{:<12}a host-resident map: {}\n", label, g.costs->source);
    } else {
      fmt::print("{:<12}failed: {}\n", label, g.error);
    }
  }
  return failed ? exit_failure : exit_ok;
}

}  // namespace polymap::cli
