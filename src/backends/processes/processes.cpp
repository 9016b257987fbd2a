// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/remote.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>
#include <string>
#include <thread>
#include <vector>

#include "backends/processes/process_costs.hpp"
#include "backends/processes/shared_region.hpp"
#include "backends/processes/store_io.hpp"
#include "backends/processes/supervisor.hpp"
#include "executor.hpp"
#include "once_per_process.hpp"

namespace polymap::detail {

namespace {

/// The median of three timings of `step`, in seconds; a negative step time (the step
/// could not be done) is returned as it is.
template <class Step>
double median_of_three(Step step) {
  std::array<double, 3> took{};
  for (double& t : took) {
    const auto start = std::chrono::steady_clock::now();
    if (!step()) return -1;
    t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  std::sort(took.begin(), took.end());
  return took[1];
}

process_costs measure_costs() {
  process_costs c;
  const double fork_seconds = median_of_three([] {
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) return false;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return true;
  });
  if (fork_seconds > 0) c.fork_seconds = fork_seconds;
  if (measure_hook != nullptr) measure_hook();

  // As in a call: straight into the caller's result buffer (made writable in one go,
  // see prepare_large_buffer) where workers may write there, else into pages new to
  // the store and back.
  constexpr std::size_t bytes = std::size_t{1} << 20;
  const std::vector<std::byte> results(bytes, std::byte{1});
  const bool direct = direct_writes_allowed();
  const double move_seconds = median_of_three([&results, direct] {
    void* to = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (to == MAP_FAILED) return false;
    bool moved = false;
    if (direct) {
      iovec local{.iov_base = const_cast<std::byte*>(results.data()), .iov_len = bytes};
      iovec remote{.iov_base = to, .iov_len = bytes};
      moved = process_vm_writev(getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(bytes);
    } else if (const int fd = anonymous_file(); fd >= 0) {
      moved = write_at(fd, results.data(), bytes, 0) && read_at(fd, to, bytes, 0);
      close(fd);
    }
    munmap(to, bytes);
    return moved;
  });
  if (move_seconds > 0) c.byte_seconds = move_seconds / static_cast<double>(bytes);
  return c;
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
  [[nodiscard]] double overhead_seconds(const call_shape& call) const noexcept override {
    const process_costs costs = measured_process_costs();
    return static_cast<double>(call.workers) * costs.fork_seconds +
           static_cast<double>(call.items) * static_cast<double>(call.result_bytes) *
               costs.byte_seconds;
  }

  void run(const map_job& job, run_report* report) override {
    // Nested in a worker process, a call runs inline, but for one that needs a timeout or a
    // memory cap: that worker supervises workers of its own.
    if (in_worker_process() && !stops_or_caps(*job.opts)) {
      serial_executor().run(job, report);
      if (report != nullptr) report->note = "nested in a worker process: ran inline there";
      return;
    }
    if (job.transfer == nullptr) {
      throw backend_unavailable("polymap: this call cannot run on worker processes");
    }
    if (job.transfer->unsupported != nullptr) refuse_results(*job.opts, job.transfer->unsupported);
    const std::size_t workers =
        std::min(parallelism(*job.opts), std::max<std::size_t>(1, job.end - job.begin));
    entered guard(*job.state);
    if (!guard.in()) return;
    supervisor watcher(job, workers);
    watcher.run(report);
  }
};

/// The measured costs (see once_per_process: a fork during the measurement must not leave
/// a child that waits for it for ever).
constinit once_per_process<process_costs> measured_costs;

constinit never_destroyed<processes_executor_impl> the_executor;

}  // namespace

process_costs measured_process_costs() noexcept { return measured_costs.get(measure_costs); }

executor& processes_executor() { return the_executor.value; }

}  // namespace polymap::detail
