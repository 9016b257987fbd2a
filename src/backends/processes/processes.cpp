// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/remote.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>
#include <string>

#include "backends/processes/supervisor.hpp"
#include "executor.hpp"

namespace polymap::detail {

namespace {

/// Seconds to fork a worker of this process, wait for it to end and reap it:
/// the start-up cost of a call (median of three, measured once).
double measure_fork() {
  std::array<double, 3> took{};
  for (double& t : took) {
    const auto start = std::chrono::steady_clock::now();
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) return 1e-3;  // cannot fork now: assume the usual millisecond
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::sort(took.begin(), took.end());
  return took[1];
}

/// Leaves the call's state when the supervisor is done, so that a
/// cancel_and_wait() returns only once no worker can start an item.
class entered {
 public:
  explicit entered(run_state& s) noexcept : state_(s), in_(s.enter()) {}
  ~entered() {
    if (in_) state_.leave();
  }
  entered(const entered&) = delete;
  entered& operator=(const entered&) = delete;
  [[nodiscard]] bool in() const noexcept { return in_; }

 private:
  run_state& state_;
  bool in_;
};

/// The processes backend: forked workers, watched by the calling thread.
class processes_executor_impl final : public executor {
 public:
  [[nodiscard]] backend_kind kind() const noexcept override { return backend_kind::processes; }
  [[nodiscard]] bool available() const noexcept override { return true; }
  [[nodiscard]] std::string status() const override {
    return "up to " + std::to_string(topology::current().usable_count()) +
           " forked worker processes, one per usable CPU";
  }
  [[nodiscard]] std::size_t parallelism(const options& o) const noexcept override {
    return o.workers != 0 ? o.workers : topology::current().usable_count();
  }
  [[nodiscard]] double overhead_seconds() const noexcept override {
    static const double fork_seconds = measure_fork();
    return fork_seconds;
  }

  void run(const map_job& job, run_report* report) override {
    if (in_worker_process()) {
      serial_executor().run(job, report);
      if (report != nullptr) report->note = "nested in a worker process: ran inline there";
      return;
    }
    if (job.transfer == nullptr) {
      throw backend_unavailable("polymap: this call cannot run on worker processes");
    }
    if (job.transfer->unsupported != nullptr) {
      throw option_error("backend", "processes", job.transfer->unsupported);
    }
    const std::size_t workers =
        std::min(parallelism(*job.opts), std::max<std::size_t>(1, job.end - job.begin));
    entered guard(*job.state);
    if (!guard.in()) return;
    supervisor watcher(job, workers);
    watcher.run(report);
  }
};

}  // namespace

executor& processes_executor() {
  static processes_executor_impl instance;
  return instance;
}

}  // namespace polymap::detail
