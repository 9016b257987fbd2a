// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/detail/execute.hpp>
#include <polymap/detail/run_items.hpp>
#include <polymap/detail/run_state.hpp>

#include "backends/threads/futex.hpp"
#include "worker_flag.hpp"

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>

#include <sys/mman.h>
#include <unistd.h>

namespace polymap::detail {

namespace {
thread_local chunk_guard* tl_guard = nullptr;
thread_local bool tl_worker = false;
thread_local unsigned tl_inline_calls = 0;  // inline calls whose items this thread runs
}  // namespace

std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    const char* what = e.what();  // a user's override may return null
    return what != nullptr ? what : "an exception whose what() is null";
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

chunk_guard::chunk_guard(run_state& state) noexcept
    : state_(&state), outer_(tl_guard), entered_(state.enter()) {
  if (entered_) tl_guard = this;
}

chunk_guard::~chunk_guard() {
  if (!entered_) return;
  tl_guard = outer_;
  release();
}

void chunk_guard::release() noexcept {
  if (entered_ && !released_) {
    released_ = true;
    state_->leave();
  }
}

chunk_guard* chunk_guard::find(const run_state& state) noexcept {
  for (chunk_guard* g = tl_guard; g != nullptr; g = g->outer_) {
    if (g->state_ == &state) return g;
  }
  return nullptr;
}

void run_state::cancel() noexcept {
  cancelled_.store(true, std::memory_order_relaxed);
  request_stop();
  const std::lock_guard lock(wake_mutex_);
  if (wake_fd_ >= 0) {
    const std::uint64_t one = 1;
    // Nothing to do on failure: the backend then sees the stop at its next wake-up.
    while (::write(wake_fd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
  }
}

void run_state::cancel_and_wait() noexcept {
  cancel();
  // Called from inside one of this call's items: that chunk stops counting, or two items
  // cancelling at once would each wait for the other.
  if (chunk_guard* own = chunk_guard::find(*this)) own->release();
  unsigned spins = 0;
  while (active_.load(std::memory_order_acquire) > 0) {
    if (++spins < 1024) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void mark_worker_thread() noexcept { tl_worker = true; }

worker_scope::worker_scope() noexcept : was_(tl_worker) { tl_worker = true; }
worker_scope::~worker_scope() { tl_worker = was_; }

bool in_worker() noexcept { return tl_worker; }

bool in_item() noexcept { return tl_guard != nullptr || tl_inline_calls != 0; }

inline_items_scope::inline_items_scope() noexcept { ++tl_inline_calls; }
inline_items_scope::~inline_items_scope() { --tl_inline_calls; }

namespace {
bool worker_process = false;
std::atomic<bool> pages_write_protected{false};
}  // namespace

bool in_worker_process() noexcept { return worker_process; }

void mark_worker_process() noexcept {
  worker_process = true;
  tl_worker = true;
}

void note_forked() noexcept {
  // Only a change is stored: after a fork this page is write-protected too, and a
  // store would cost a fault on every fork.
  if (!pages_write_protected.load(std::memory_order_relaxed)) {
    pages_write_protected.store(true, std::memory_order_relaxed);
  }
}

void prepare_large_buffer(void* data, std::size_t bytes) noexcept {
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
#if defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  const auto first = (begin + huge - 1) & ~(huge - 1);
  const auto last = (begin + bytes) & ~(huge - 1);
  if (last > first) {
    (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
#if defined(MADV_POPULATE_WRITE)
  if (!pages_write_protected.exchange(false, std::memory_order_relaxed)) return;
  const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto from = begin & ~(page - 1);
  const auto to = (begin + bytes + page - 1) & ~(page - 1);
  (void)madvise(reinterpret_cast<void*>(from), to - from, MADV_POPULATE_WRITE);
#endif
  (void)begin;
  (void)bytes;
}

}  // namespace polymap::detail
