// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <new>
#include <thread>

namespace polymap::detail {

/// Storage for a `T` that is constant-initialised and never destroyed: no guard variable
/// at the first call, as a function-local static has, and `T`'s destructor never runs, so
/// calls made at exit still find it. For objects whose construction is trivial and cannot
/// fail (an executor); `once_per_process` is for those made by slow work.
template <class T>
union never_destroyed {
  constexpr never_destroyed() : value() {}
  constexpr ~never_destroyed() {}
  T value;
};

/// A value made once per process by slow work (discovering the machine, measuring costs,
/// starting threads), without a function-local static: the guard of one is held for the
/// whole of that work, and a child that another thread of the program forked meanwhile
/// would find it held for ever, by a thread it does not have (libstdc++ then waits for ever,
/// or throws recursive_init_error when it sees one thread).
///
/// The making is owned by a process: threads of that process wait for the one that makes
/// it; a process that finds another's making in progress (its own copy of it, from a fork)
/// makes its own. The value is never destroyed. Constant-initialised (`constinit`). (A
/// later descendant that is given the pid of a process that died while making it would
/// wait for ever: that takes a fork during the making, that process's exit, and the reuse
/// of its pid.)
template <class T>
class once_per_process {
 public:
  constexpr once_per_process() noexcept = default;
  once_per_process(const once_per_process&) = delete;
  once_per_process& operator=(const once_per_process&) = delete;

  /// The value, made by `make()` (which returns a `T`) at the first call in this process.
  template <class Make>
  T& get(Make&& make) noexcept(noexcept(make())) {
    if (ready_.load(std::memory_order_acquire)) return held_.value;
    const pid_t self = ::getpid();
    pid_t owner = owner_.load(std::memory_order_acquire);
    // A thread of this process makes it, or won the claim just now: wait for it (the
    // making takes milliseconds: yield a while, then sleep in short naps).
    for (unsigned waits = 0; owner == self || !owner_.compare_exchange_strong(owner, self);) {
      if (ready_.load(std::memory_order_acquire)) return held_.value;
      if (owner != self) continue;  // the claim moved on; look again
      if (++waits < 64) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      owner = owner_.load(std::memory_order_acquire);
    }
    if (ready_.load(std::memory_order_acquire)) return held_.value;
    // Over whatever a forking thread of the parent left half made: a leak in this process
    // at most, once. `make()` initialises it in place (no move).
    if constexpr (noexcept(make())) {
      ::new (static_cast<void*>(&held_.value)) T(make());
    } else {
      try {
        ::new (static_cast<void*>(&held_.value)) T(make());
      } catch (...) {
        owner_.store(0, std::memory_order_release);  // a later call tries again
        throw;
      }
    }
    ready_.store(true, std::memory_order_release);
    return held_.value;
  }

  /// Forgets the value, for a child process whose copy of it is no use (it names threads
  /// that stayed in the parent): the next get() makes a new one; the old is leaked. Only
  /// from a pthread_atfork child handler, where no other thread runs.
  void forget() noexcept {
    ready_.store(false, std::memory_order_relaxed);
    owner_.store(0, std::memory_order_relaxed);
  }

 private:
  union holder {
    constexpr holder() : none() {}
    constexpr ~holder() {}
    char none;
    T value;
  };

  std::atomic<pid_t> owner_{0};  ///< the process that makes or made it, or 0
  std::atomic<bool> ready_{false};
  holder held_;  ///< `value` is made once by the owner, before ready_
};

}  // namespace polymap::detail
