// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// `polymap run` on a rank other than 0 of an MPI job: runs the jobs that rank 0 sends.

#include <polymap/config.hpp>
#include <polymap/topology.hpp>

#include "cli/commands.hpp"
#include "cli/run/rank_link.hpp"
#include "cli/run/runner.hpp"

#include <fmt/core.h>

#include <cstdio>

#if POLYMAP_HAS_MPI

#include "backends/mpi/communicator.hpp"
#include "cli/run/fd_io.hpp"
#include "cli/run/rank_protocol.hpp"
#include "cli/run/spawn.hpp"
#include "host_name.hpp"
#include "orphan_guard.hpp"
#include "topology/binding.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <exception>
#include <stdexcept>
#include <system_error>

#endif

namespace polymap::cli::run {

#if POLYMAP_HAS_MPI

namespace {

struct served_job {
  pid_t pid = -1;  // -1: the slot is free
  int out_fd = -1;
  int err_fd = -1;
  double kill_at = 0;    // monotonic: a SIGKILL of its group is due; 0: none
  bool signalled = false;  // by an order of rank 0's or this rank's stop, before it ended
};

class job_server {
 public:
  job_server(const run_options& options, detail::mpi::communicator& comm, std::size_t slots,
             const std::vector<int>& inherited)
      : options_(options), comm_(comm), jobs_(slots), inherited_(inherited) {
    const topology& topo = topology::current();
    for (std::size_t slot = 0; slot < jobs_.size(); ++slot) {
      cpus_.push_back(options_.bind == polymap::bind::none
                          ? std::vector<int>{}
                          : detail::worker_cpus(topo, options_.bind, slot, jobs_.size(), {}));
    }
    null_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    // MPI's threads have them blocked (join_ranks()).
    const sigset_t handled = runner_signals();
    sigprocmask(SIG_BLOCK, &handled, nullptr);
    signal_fd_ = signalfd(-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd_ < 0) throw std::system_error(errno, std::generic_category(), "signalfd");
  }
  job_server(const job_server&) = delete;
  job_server& operator=(const job_server&) = delete;
  ~job_server() {
    if (signal_fd_ >= 0) close(signal_fd_);
    if (null_fd_ >= 0) close(null_fd_);
  }

  void serve() {
    // Small enough to go at once: rank 0 takes every rank's before anything else.
    comm_.send(hello_.data(), hello_.size(), 0, protocol::hello_tag);
    close_on_exec_but(inherited_);  // the connection to rank 0 it made: not for the jobs
    protocol::poll_pace pace;
    pace.active(protocol::clock_now());
    while (!finished_) {
      const double now = protocol::clock_now();
      // The jobs that ended are reaped before a stop signals them: an end that came first
      // is kept as it came.
      bool busy = reap();
      busy |= read_signals(now);
      if (!stopped_ && getppid() != launcher_) {
        stop_here(SIGHUP, now);  // the launcher is gone (mpirun at a second Ctrl-C): as a SIGHUP
        busy = true;
      }
      kill_lingering(now);
      busy |= take_orders(now);
      send_reports();
      if (busy || !outgoing_.empty()) pace.active(now);
      const double wait = std::min(pace.interval(now), next_kill(now) - now);
      pollfd fd{signal_fd_, POLLIN, 0};
      (void)poll(&fd, 1, static_cast<int>(std::ceil(std::max(0.0, wait) * 1000)));
    }
    // Rank 0 waits for every job's end before it says finish: what still runs here is from
    // a rank 0 that gave up (an error); it is killed, and its end goes nowhere.
    for (served_job& j : jobs_) {
      if (j.pid > 0) kill(-j.pid, SIGKILL);
    }
    while (std::any_of(jobs_.begin(), jobs_.end(), [](const served_job& j) { return j.pid > 0; })) {
      pollfd fd{signal_fd_, POLLIN, 0};
      (void)poll(&fd, 1, 100);
      signalfd_siginfo info{};
      while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      }
      reap();
    }
    for (const auto& group : lingering_) kill(-group.first, SIGKILL);
    // The last report says that no more follow: rank 0 takes them all, so no send is left
    // unmatched when MPI is finalised.
    outgoing_.push_back(protocol::encode_finished());
    while (!outgoing_.empty()) {
      send_reports();
      comm_.wait_sent();
    }
  }

 private:
  // Each returns whether it did something: the next look comes soon after.
  bool read_signals(double now) {
    bool any = false;
    signalfd_siginfo info{};
    while (read(signal_fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      const int sig = static_cast<int>(info.ssi_signo);
      if (sig == SIGCHLD) continue;
      any = true;
      stop_here(sig, now);
    }
    return any;
  }

  // Stops the jobs here at once (the signal may have reached this rank alone), and passes
  // the signal on: rank 0 stops the run, and records these jobs interrupted. A job that rank
  // 0's order signalled already gets no second SIGTERM; a second stop kills.
  void stop_here(int sig, double now) {
    const bool again = stopped_;
    stopped_ = true;
    for (served_job& j : jobs_) {
      if (j.pid <= 0 || (j.signalled && !again)) continue;
      j.signalled = true;
      kill(-j.pid, again ? SIGKILL : SIGTERM);
      if (!again && j.kill_at == 0) j.kill_at = now + kill_grace;
    }
    rank_event e;
    e.what = rank_event::kind::stopped;
    e.signal = sig;
    outgoing_.push_back(protocol::encode(e));
  }

  bool reap() {
    bool any = false;
    for (;;) {
      int wait_status = 0;
      const pid_t pid = waitpid(-1, &wait_status, WNOHANG);
      if (pid <= 0) return any;
      const auto found = std::find_if(jobs_.begin(), jobs_.end(),
                                      [&](const served_job& j) { return j.pid == pid; });
      if (found == jobs_.end()) continue;  // no job of ours
      any = true;
      served_job& j = *found;
      if (j.kill_at > 0) {
        // Its SIGKILL is still due: what is left of its group (a child that ignores
        // SIGTERM) gets it all the same, now if its time has come (kill_lingering(), next).
        lingering_.emplace_back(pid, j.kill_at);
      } else {
        guard_.remove(pid);
      }
      rank_event e;
      e.slot = static_cast<std::size_t>(found - jobs_.begin());
      e.wait_status = wait_status;
      e.signalled = j.signalled;
      e.out = read_all(j.out_fd);
      e.err = read_all(j.err_fd);
      close(j.out_fd);
      close(j.err_fd);
      j = served_job{};
      outgoing_.push_back(protocol::encode(e));
    }
  }

  // When the next SIGKILL of a stopped job's group is due (monotonic); far off when none is.
  [[nodiscard]] double next_kill(double now) const {
    double due = now + 3600;
    for (const served_job& j : jobs_) {
      if (j.pid > 0 && j.kill_at > 0) due = std::min(due, j.kill_at);
    }
    for (const auto& group : lingering_) due = std::min(due, group.second);
    return due;
  }

  void kill_lingering(double now) {
    for (served_job& j : jobs_) {
      if (j.pid > 0 && j.kill_at > 0 && now >= j.kill_at) {
        kill(-j.pid, SIGKILL);
        j.kill_at = 0;
      }
    }
    std::erase_if(lingering_, [&](const std::pair<pid_t, double>& group) {
      if (now < group.second) return false;
      kill(-group.first, SIGKILL);
      guard_.remove(group.first);
      return true;
    });
  }

  bool take_orders(double now) {
    bool any = false;
    while (!finished_ && comm_.waiting(protocol::order_tag)) {
      any = true;
      std::string bytes;
      comm_.receive(bytes, 0, protocol::order_tag);
      protocol::order o = protocol::decode_order(bytes);
      if (o.kind == protocol::order_kind::finish) {
        finished_ = true;
      } else if (o.slot >= jobs_.size()) {
        detail::mpi::reader::truncated();
      } else if (o.kind == protocol::order_kind::start) {
        start(o.slot, o.argv);
      } else {
        signal(o.slot, o.signal, now);
      }
    }
    return any;
  }

  void start(std::uint32_t slot, const std::vector<std::string>& argv) {
    served_job& j = jobs_[slot];
    rank_event e;
    e.slot = slot;
    if (j.pid > 0 || argv.empty()) detail::mpi::reader::truncated();  // not rank 0's order
    if (stopped_) {
      // Sent before rank 0 heard of this rank's stop: not run, and run again by the next run.
      e.signalled = true;
      e.wait_status = SIGTERM;  // as if the stop had ended it at once
      outgoing_.push_back(protocol::encode(e));
      return;
    }
    spawn_request request;
    request.argv = &argv;
    request.stdin_fd = null_fd_;
    request.cpus = &cpus_[slot];
    request.nice = options_.nice;
    request.envp = envp_.data();
    try {
      // Always kept: the output goes to rank 0, which writes it out.
      j.out_fd = make_capture();
      j.err_fd = make_capture();
      request.stdout_fd = j.out_fd;
      request.stderr_fd = j.err_fd;
      const spawn_result spawned = spawn_job(request);
      e.spawn_error = spawned.error;
      j.pid = spawned.pid;
      if (const std::string refused = placement_.once(request, spawned); !refused.empty()) {
        print_error("polymap: warning: rank {}: {}\n", comm_.rank(), refused);
      }
    } catch (const std::system_error& failure) {
      e.spawn_error = failure.code().value();  // no process or no memfd to be had: EAGAIN, EMFILE
    }
    if (j.pid > 0) {
      guard_.add(j.pid);
      return;
    }
    if (j.out_fd >= 0) close(j.out_fd);
    if (j.err_fd >= 0) close(j.err_fd);
    j = served_job{};
    e.wait_status = 127 << 8;
    if (e.spawn_error == 0) e.spawn_error = ENOEXEC;
    outgoing_.push_back(protocol::encode(e));
  }

  void signal(std::uint32_t slot, int sig, double now) {
    served_job& j = jobs_[slot];
    if (j.pid <= 0) return;  // it ended meanwhile, by itself: its end is on its way
    // A SIGTERM that this rank's own stop sent already is not sent again (the job's handler
    // would run twice); its SIGKILL is due at kill_at either way.
    if (sig != SIGKILL && j.signalled) return;
    j.signalled = true;
    kill(-j.pid, sig);
    if (sig == SIGKILL) {
      j.kill_at = 0;
    } else if (j.kill_at == 0) {
      j.kill_at = now + kill_grace;
    }
  }

  void send_reports() {
    // One in flight at a time, the next as soon as the one before has gone (a small one at
    // once), never waiting: orders keep coming in meanwhile, so that neither rank waits for
    // the other.
    while (!outgoing_.empty() && comm_.sent()) {
      in_flight_ = std::move(outgoing_.front());
      outgoing_.pop_front();
      comm_.send_later(in_flight_.data(), in_flight_.size(), 0, protocol::report_tag);
    }
  }

  const run_options& options_;
  detail::mpi::communicator& comm_;
  std::vector<served_job> jobs_;
  std::vector<std::vector<int>> cpus_;
  detail::orphan_guard guard_;
  std::string hello_ = protocol::encode(protocol::hello{jobs_.size(), detail::host_name()});
  std::vector<std::string> environment_ = job_environment(comm_.rank(), comm_.size());
  std::vector<char*> envp_ = pointers_to(environment_);
  std::deque<std::string> outgoing_;
  std::string in_flight_;
  std::vector<std::pair<pid_t, double>> lingering_;
  std::vector<int> inherited_;  // descriptors a job may inherit (rank_role::inherited)
  pid_t launcher_ = getppid();  // the parent that started this rank
  int signal_fd_ = -1;
  int null_fd_ = -1;
  bool stopped_ = false;
  bool finished_ = false;
  placement_warning placement_;
};

}  // namespace

int serve_jobs(const run_options& options, const std::vector<int>& inherited) {
  detail::mpi::communicator& comm = detail::mpi::communicator::get();
  try {
    // Each job holds two captures here (its output goes to rank 0 at its end): fewer slots
    // rather than jobs that cannot start for want of a descriptor, as on one machine.
    const fd_fit fit = jobs_within_fd_limit(options.jobs, 2);
    if (fit.jobs == 0) {
      throw std::runtime_error("the open-file limit (ulimit -n " + std::to_string(fit.limit) +
                               ") leaves no file descriptor for a job's output: raise it");
    }
    if (fit.jobs < options.jobs) {
      print_error(
                 "polymap: warning: rank {}: -j {} needs more file descriptors than the "
                 "open-file limit (ulimit -n {}) allows: running {} jobs at a time\n",
                 comm.rank(), options.jobs, fit.limit, fit.jobs);
    }
    job_server server(options, comm, fit.jobs, inherited);
    server.serve();
    return 0;
  } catch (const std::exception& e) {
    // Rank 0 would wait for this rank's jobs for ever.
    comm.abort("polymap run on rank " + std::to_string(comm.rank()) + ": " + e.what());
  }
}

#else

int serve_jobs(const run_options& /*options*/, const std::vector<int>& /*inherited*/) {
  // join_ranks() never asks for it in a build without MPI.
  print_error("polymap run: this polymap was built without MPI\n");
  return 1;
}

#endif

}  // namespace polymap::cli::run
