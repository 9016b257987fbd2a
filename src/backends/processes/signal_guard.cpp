// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/processes/signal_guard.hpp"

#include "once_per_process.hpp"
#include "orphan_guard.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <mutex>

namespace polymap::detail {

namespace {

constexpr std::size_t max_groups = 4096;
std::array<std::atomic<pid_t>, max_groups> groups{};

constexpr std::array<int, 2> guarded_signals = {SIGINT, SIGTERM};
std::mutex install_mutex;
int guards = 0;
std::array<bool, 2> installed{};  // by index in guarded_signals

/// The process whose workers the groups are: a child forked from it runs its handler until
/// the fork handlers reset it (a signal may come before), and must not kill them.
std::atomic<pid_t> owner{0};

void on_signal(int sig) {
  for (auto& g : groups) {
    const pid_t group = g.load(std::memory_order_relaxed);
    if (group > 0 && getpid() == owner.load(std::memory_order_relaxed)) kill(-group, SIGKILL);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

/// The helper that kills the registered groups when this process dies by a signal no
/// handler sees (SIGKILL: the OOM killer, `kill -9`, a batch system's hard limit).
constinit once_per_process<orphan_guard*> orphan_helper;
/// The helper once made, for add() and remove(); null before, or while it cannot be made
/// (a process or descriptor limit): the parent-death signal is then all there is.
std::atomic<orphan_guard*> current_helper{nullptr};

/// Makes the helper if it is not there yet; a failure is tried again by the next call.
/// None for PID 1 (its death ends every process of its namespace) or a subreaper, which
/// would adopt the helper: a program's wait() for its own children would wait for it.
void make_helper() noexcept {
  if (current_helper.load(std::memory_order_acquire) != nullptr) return;
  int subreaper = 0;
  if (getpid() == 1 || (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0 && subreaper != 0)) {
    return;
  }
  try {
    current_helper.store(orphan_helper.get([] { return new orphan_guard(); }),
                         std::memory_order_release);
  } catch (...) {
  }
}

bool is_ours(int sig) {
  struct sigaction current {};
  return sigaction(sig, nullptr, &current) == 0 && current.sa_handler == &on_signal;
}

/// Before a fork: no other thread is installing or removing the handlers, whose state the
/// child starts from.
void hold_install_before_fork() noexcept { install_mutex.lock(); }
void release_install_in_parent() noexcept { install_mutex.unlock(); }

/// In a forked child (a worker, or a process the program forks while a call runs): the
/// worker groups, the handler that kills them and the helper all belong to the parent. A
/// SIGTERM to the child ends the child alone, as the default does; the child makes a guard
/// of its own when it forks workers of its own.
void forget_parent_in_child() noexcept {
  for (auto& g : groups) g.store(0, std::memory_order_relaxed);
  for (std::size_t k = 0; k < guarded_signals.size(); ++k) {
    if (is_ours(guarded_signals[k])) signal(guarded_signals[k], SIG_DFL);
    installed[k] = false;
  }
  guards = 0;
  install_mutex.unlock();
  if (orphan_guard* h = current_helper.exchange(nullptr, std::memory_order_relaxed)) {
    close(h->socket());
  }
  orphan_helper.forget();
}

/// Registered when the library is loaded, while the program has one thread (see the thread
/// pool's).
[[maybe_unused]] const int forget_registered = pthread_atfork(
    &hold_install_before_fork, &release_install_in_parent, &forget_parent_in_child);

}  // namespace

signal_guard::signal_guard() {
  make_helper();  // before the first worker is forked
  std::lock_guard lock(install_mutex);
  if (guards++ != 0) return;
  owner.store(getpid(), std::memory_order_relaxed);
  for (std::size_t k = 0; k < guarded_signals.size(); ++k) {
    struct sigaction current {};
    if (sigaction(guarded_signals[k], nullptr, &current) != 0) continue;
    if (current.sa_handler != SIG_DFL || (current.sa_flags & SA_SIGINFO) != 0) continue;
    struct sigaction ours {};
    ours.sa_handler = &on_signal;
    sigemptyset(&ours.sa_mask);
    ours.sa_flags = SA_RESETHAND;
    installed[k] = sigaction(guarded_signals[k], &ours, nullptr) == 0;
  }
}

signal_guard::~signal_guard() {
  std::lock_guard lock(install_mutex);
  if (--guards != 0) return;
  for (std::size_t k = 0; k < guarded_signals.size(); ++k) {
    // Put the default back only where our handler is still in place: a handler
    // the program installed meanwhile stays.
    if (installed[k] && is_ours(guarded_signals[k])) signal(guarded_signals[k], SIG_DFL);
    installed[k] = false;
  }
}

bool signal_guard::add(pid_t group) noexcept {
  if (orphan_guard* h = current_helper.load(std::memory_order_acquire)) h->add(group);
  for (auto& g : groups) {
    pid_t empty = 0;
    if (g.compare_exchange_strong(empty, group, std::memory_order_relaxed)) return true;
  }
  return false;
}

void signal_guard::remove(pid_t group) noexcept {
  if (orphan_guard* h = current_helper.load(std::memory_order_acquire)) h->remove(group);
  for (auto& g : groups) {
    pid_t expected = group;
    if (g.compare_exchange_strong(expected, 0, std::memory_order_relaxed)) return;
  }
}

pid_t signal_guard::orphan_helper_pid() noexcept {
  const orphan_guard* h = current_helper.load(std::memory_order_acquire);
  return h != nullptr ? h->pid() : 0;
}

}  // namespace polymap::detail
