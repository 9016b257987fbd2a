// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/spawn.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

namespace polymap::cli::run {

namespace {

/// What the child does between vfork and exec, all prepared by the parent.
struct child_plan {
  char* const* argv;
  const spawn_request* request;
  const cpu_set_t* cpus;  // null: no binding
  const sigset_t* mask;
  pid_t parent;
  volatile int* exec_errno;
  volatile int* bind_errno;
  volatile int* nice_errno;
};

// A function of its own, never inlined, so that no local of spawn_job lives across vfork
// in a register the child could clobber (-Wclobbered).
[[noreturn]] __attribute__((noinline)) void exec_child(const child_plan* plan) {
  // A session of its own, so a process group of its own (a stop signals the whole job), and
  // no controlling terminal: in the background of polymap's terminal, a write under `stty
  // tostop`, a change of the terminal's modes or a read of /dev/tty would stop the job for
  // good (nobody continues it, and the run waits for it), and a job could take the terminal's
  // foreground from polymap (Ctrl-C would miss the run). Without one, /dev/tty cannot be
  // opened (ENXIO), and the terminal that stdout or stderr is still takes the job's writes.
  setsid();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The runner may have died before prctl: then nobody would kill this job.
  if (getppid() != plan->parent) _exit(137);
  // signalfd needs the runner's signals blocked; a job must start with none blocked and
  // the default dispositions (SIGPIPE and SIGXFSZ, which the runner ignores, included), as
  // from a shell.
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGXFSZ, SIGQUIT}) {
    signal(sig, SIG_DFL);
  }

  sigprocmask(SIG_SETMASK, plan->mask, nullptr);
  const spawn_request& request = *plan->request;
  if (request.stdin_fd >= 0) dup2(request.stdin_fd, 0);
  if (request.stdout_fd >= 0) dup2(request.stdout_fd, 1);
  if (request.stderr_fd >= 0) dup2(request.stderr_fd, 2);
  if (plan->cpus != nullptr && sched_setaffinity(0, sizeof *plan->cpus, plan->cpus) != 0) {
    *plan->bind_errno = errno;
  }
  if (request.nice && setpriority(PRIO_PROCESS, 0, *request.nice) != 0) {
    *plan->nice_errno = errno;
  }
  execvpe(plan->argv[0], plan->argv, request.envp != nullptr ? request.envp : environ);
  *plan->exec_errno = errno;
  _exit(127);
}

}  // namespace

sigset_t runner_signals() noexcept {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGCHLD, SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  return set;
}

spawn_result spawn_job(const spawn_request& request) {
  // Everything the child needs is prepared here: between vfork and exec the child may only
  // make system calls (it runs on the parent's stack, in the parent's memory).
  std::vector<char*> argv;
  argv.reserve(request.argv->size() + 1);
  for (const std::string& word : *request.argv) argv.push_back(const_cast<char*>(word.c_str()));
  argv.push_back(nullptr);
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const bool bind = request.cpus != nullptr && !request.cpus->empty();
  if (bind) {
    for (int cpu : *request.cpus) CPU_SET(static_cast<unsigned>(cpu), &cpus);
  }
  sigset_t none;
  sigemptyset(&none);
  // Written by the child, read by the parent after vfork returns: they share memory.
  volatile int exec_errno = 0;
  volatile int bind_errno = 0;
  volatile int nice_errno = 0;
  const child_plan plan{argv.data(), &request, bind ? &cpus : nullptr, &none, getpid(),
                        &exec_errno, &bind_errno, &nice_errno};

  const pid_t pid = vfork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "vfork");
  if (pid == 0) exec_child(&plan);
  spawn_result result;
  if (exec_errno != 0) {
    result.error = exec_errno;
    int status = 0;
    waitpid(pid, &status, 0);  // the child has exited: collect it here, not as a job
    return result;
  }
  result.pid = pid;
  result.bind_error = bind_errno;
  result.nice_error = nice_errno;
  return result;
}

std::string refused_placement(const spawn_request& request, const spawn_result& result) {
  std::string refused;
  if (result.nice_error != 0 && request.nice) {
    errno = 0;
    const int own = getpriority(PRIO_PROCESS, 0);
    refused = "--nice " + std::to_string(*request.nice) + " was refused (" +
              std::strerror(result.nice_error) + "): jobs run at nice " +
              (errno == 0 ? std::to_string(own) : std::string("unchanged"));
    if (*request.nice < own) refused += " (a lower nice needs CAP_SYS_NICE, or RLIMIT_NICE)";
  }
  if (result.bind_error != 0) {
    if (!refused.empty()) refused += "; ";
    refused += "--bind was refused (" + std::string(std::strerror(result.bind_error)) +
               "): jobs run on any CPU polymap may use";
  }
  return refused;
}

std::string placement_warning::once(const spawn_request& request, const spawn_result& result) {
  if (said_ || result.pid < 0) return {};
  std::string refused = refused_placement(request, result);
  said_ = !refused.empty();
  return refused;
}

}  // namespace polymap::cli::run
