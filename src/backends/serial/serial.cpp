// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/detail/execute.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include "chunk_sizer.hpp"
#include "executor.hpp"
#include "once_per_process.hpp"

namespace polymap::detail {
namespace {

/// A loop on the calling thread, in chunks so that a cancel or a fail_fast stop is seen.
class serial_executor_impl final : public executor {
 public:
  [[nodiscard]] backend_kind kind() const noexcept override { return backend_kind::serial; }
  [[nodiscard]] bool available() const noexcept override { return true; }
  [[nodiscard]] std::string status() const override { return "a loop on the calling thread"; }
  [[nodiscard]] std::size_t parallelism(const options&) const noexcept override { return 1; }
  [[nodiscard]] double overhead_seconds(const call_shape& /*call*/) const noexcept override {
    return 0;
  }

  void run(const map_job& job, run_report* report) override {
    worker_context w = make_worker(*job.state, *job.opts, backend_kind::serial);
    // Chunks rather than one loop, so that a cancel or a fail_fast stop is seen.
    chunk_sizer(job).run_all(job, job.begin, job.end, w);
    w.flush();
    if (report != nullptr) {
      const options& o = *job.opts;
      report->backend = backend_kind::serial;
      report->workers = 1;
      worker_report caller{.worker = 0};
      if (o.nice) {  // the nice it ran at, which is not the one asked for unless by chance
        caller.nice = this_thread_nice();
        caller.nice_applied = caller.nice == o.nice;
      }
      report->worker_reports = {caller};
      if (places_workers(o)) {
        report->note = "ran on the calling thread: options::bind and nice apply to pool threads "
                       "and worker processes alone";
      }
    }
  }
};

constinit never_destroyed<serial_executor_impl> the_executor;

}  // namespace

executor& serial_executor() { return the_executor.value; }

}  // namespace polymap::detail
