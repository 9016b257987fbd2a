// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace polymap::cli::run {

/// The signals that a runner (and a job server) takes through a signalfd, blocked: SIGCHLD
/// and the stopping ones, SIGINT, SIGTERM and SIGHUP. A job starts with none blocked.
[[nodiscard]] sigset_t runner_signals() noexcept;

/// Seconds from the SIGTERM that stops a job (a --timeout, a stopping signal) to the SIGKILL
/// of what is left of its process group.
constexpr double kill_grace = 1.0;

/// How to start one job.
struct spawn_request {
  const std::vector<std::string>* argv = nullptr;  ///< argv[0] is looked up in PATH
  int stdin_fd = -1;                               ///< -1: inherit
  int stdout_fd = -1;                              ///< -1: inherit
  int stderr_fd = -1;                              ///< -1: inherit
  const std::vector<int>* cpus = nullptr;          ///< CPUs to bind to; null or empty: any
  std::optional<int> nice;                         ///< nice value of the job
  char* const* envp = nullptr;                     ///< its environment; null: polymap's own
};

/// A started job, or why it could not start.
struct spawn_result {
  pid_t pid = -1;  ///< the job, leader of its own process group; -1 when it did not start
  int error = 0;   ///< errno of the failed exec (ENOENT for a missing command), else 0
  int bind_error = 0;  ///< errno of the refused binding to `cpus` (the job runs unbound)
  int nice_error = 0;  ///< errno of the refused nice (the job runs at the runner's)
};

/// What the OS refused of a started job's request (its binding, its nice), as a warning's
/// text; empty when it refused nothing.
[[nodiscard]] std::string refused_placement(const spawn_request& request,
                                            const spawn_result& result);

/// The warning that the OS refused the jobs' --bind or --nice, said once a run: every job
/// asks the same.
class placement_warning {
 public:
  /// refused_placement() of a job that started, the first time it refuses anything; empty
  /// otherwise.
  [[nodiscard]] std::string once(const spawn_request& request, const spawn_result& result);

 private:
  bool said_ = false;
};

/// Starts a job as posix_spawn does (a vfork-style clone: no copy of the runner's memory),
/// in its own process group, with SIGKILL as its parent-death signal so that it cannot
/// outlive a runner killed with SIGKILL, with the signal mask and dispositions reset.
/// Affinity and nice are set in the child before exec and are best effort: the result says
/// what the OS refused.
/// When the exec fails the child has already exited (status 127) and `error` says why.
/// @throws std::system_error when the process cannot be created
[[nodiscard]] spawn_result spawn_job(const spawn_request& request);

}  // namespace polymap::cli::run
