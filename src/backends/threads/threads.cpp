// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/detail/execute.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include "backends/threads/thread_pool.hpp"
#include "executor.hpp"
#include "once_per_process.hpp"

#include <algorithm>
#include <optional>
#include <string>

namespace polymap::detail {

namespace {

/// The threads backend: the persistent pool, or the calling thread when the pool is busy
/// with another call (so that no call waits for another, and none deadlocks).
class threads_executor_impl final : public executor {
 public:
  [[nodiscard]] backend_kind kind() const noexcept override { return backend_kind::threads; }
  [[nodiscard]] bool available() const noexcept override { return true; }
  [[nodiscard]] std::string status() const override {
    return "a pool of " + std::to_string(topology::current().usable_count()) +
           " workers (the caller included)";
  }
  [[nodiscard]] std::size_t parallelism(const options& o) const noexcept override {
    return o.workers != 0 ? o.workers : topology::current().usable_count();
  }
  [[nodiscard]] double overhead_seconds(const call_shape& /*call*/) const noexcept override {
    return thread_pool::instance().fork_join_seconds();
  }

  void run(const map_job& job, run_report* report) override {
    const std::size_t participants =
        std::min(parallelism(*job.opts), std::max<std::size_t>(1, job.end - job.begin));
    const std::optional<int>& nice = job.opts->nice;
    thread_pool& pool = nice && thread_pool::keeps_nice(*nice) ? thread_pool::at_nice(*nice)
                                                               : thread_pool::instance();
    if (pool.try_run(job, participants, report)) return;
    serial_executor().run(job, report);
    if (report != nullptr) {
      const options& o = *job.opts;
      report->note = std::string(in_item() ? "nested in an item of another call"
                                           : "the thread pool was busy with another call") +
                     ": ran on the calling thread";
      if (places_workers(o)) report->note += ", without options::bind and nice";
    }
  }
};

constinit never_destroyed<threads_executor_impl> the_executor;

}  // namespace

executor& threads_executor() { return the_executor.value; }

}  // namespace polymap::detail
