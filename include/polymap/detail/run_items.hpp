// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/run_state.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <exception>
#include <string>
#include <type_traits>

namespace polymap::detail {

/// The text of an exception: what() for std::exception, a fixed text otherwise.
[[nodiscard]] std::string describe(const std::exception_ptr& error);

/// Marks the calling thread as running a chunk of `state` until destroyed, so that a
/// cancel() from inside an item does not wait for itself. Returns false from `entered()`
/// when the call is already stopping: the chunk must not start.
class chunk_guard {
 public:
  explicit chunk_guard(run_state& state) noexcept;
  ~chunk_guard();
  chunk_guard(const chunk_guard&) = delete;
  chunk_guard& operator=(const chunk_guard&) = delete;
  [[nodiscard]] bool entered() const noexcept { return entered_; }

  /// Leaves the chunk early (from a cancel inside one of its items); idempotent.
  void release() noexcept;
  /// The innermost guard of `state` on this thread, or null.
  [[nodiscard]] static chunk_guard* find(const run_state& state) noexcept;

 private:
  run_state* state_;
  chunk_guard* outer_;
  bool entered_;
  bool released_ = false;
};

/// Runs items [begin, end) through `invoke(i)`, turning exceptions into item failures with
/// retries. Exceptions never escape: they are recorded.
/// @tparam CheckEach look for a stop (w.stopping()) before each item, and return there
/// @return the index after the last item that ran: `end`, or less when fail_fast stopped
///   the call at a failed item (which counts as run) or, with CheckEach, at a stop
template <bool CheckEach = false, class Invoke>
std::size_t run_span(std::size_t begin, std::size_t end, worker_context& w, Invoke& invoke) {
  // w.stopping(), with the pointers read once.
  const run_state& state = *w.state;
  const std::atomic<bool>* caller_stop = w.caller_stop;
  const auto stop_here = [&state, caller_stop] {
    if constexpr (CheckEach) {
      return state.stopping() ||
             (caller_stop != nullptr && caller_stop->load(std::memory_order_relaxed));
    } else {
      (void)state;  // used with CheckEach alone (clang's -Wunused-lambda-capture)
      (void)caller_stop;
      return false;
    }
  };
  std::size_t i = begin;
  if constexpr (std::is_nothrow_invocable_v<Invoke&, std::size_t>) {
    for (; i < end; ++i) {
      if (stop_here()) return i;
      invoke(i);
    }
  } else {
    while (i < end) {
      try {
        for (; i < end; ++i) {
          if (stop_here()) return i;
          invoke(i);
        }
      } catch (...) {
        std::exception_ptr error = std::current_exception();
        unsigned attempts = 1;
        bool ok = false;
        while (!ok && attempts <= w.retries) {
          ++attempts;
          try {
            invoke(i);
            ok = true;
          } catch (...) {
            error = std::current_exception();
          }
        }
        if (!ok) {
          w.state->add_failure(item_failure{.index = i,
                                            .backend = w.backend,
                                            .kind = failure_kind::exception,
                                            .what = describe(error),
                                            .signal = 0,
                                            .exit_code = 0,
                                            .attempts = attempts});
          if (w.fail_fast) {
            w.state->request_stop();
            return i + 1;
          }
        }
        ++i;
      }
    }
  }
  return end;
}

/// A block of items between two looks for a stop takes about this long, once its size has
/// followed the items' cost.
inline constexpr std::chrono::nanoseconds stop_check_interval{20'000};

/// Blocks of fewer items than this look for a stop before each item. A block this small
/// holds items of about 10 ns or more (or is still growing from one item), next to which a
/// load of the stop flag is noise (bench_stop_look: at most about 0.5 ns an item on items of
/// 2-70 ns, less than the loop's code generation moves either way); larger blocks hold
/// cheaper items, whose loop must stay free of checks to stay vectorisable (on items of 1-2
/// ns the loop without a look is 10-16% the faster).
inline constexpr std::size_t check_each_item_below = 1024;

/// Runs items [begin, end) through `invoke(i)`, turning exceptions into item failures with
/// retries, and counting them done. Exceptions never escape: they are recorded.
/// @tparam Guarded false only on paths that can be neither cancelled nor observed (the
///   inline serial path), where entering and leaving the chunk would cost more than an item.
///   The guarded form counts the items done in the call's state, for its progress, and looks
///   for a stop (a cancel, a fail_fast failure on another worker) between blocks of items:
///   a block doubles while it takes under half of stop_check_interval and shrinks to fit it
///   when it takes longer (one clock read a block; the size lives on in the worker, and
///   starts from the call's first_block()). A block of fewer than check_each_item_below
///   items looks for a stop before each item: items of about 10 ns or more, and every block
///   while the size still grows from one, so a call whose first items are cheap stops within
///   an item when the later ones cost more. A loop over a larger block of cheaper items stays
///   free of checks, and vectorisable.
/// @return the items that ran (fewer than end - begin when the call stopped)
template <bool Guarded = true, class Invoke>
std::size_t run_items(std::size_t begin, std::size_t end, worker_context& w, Invoke&& invoke) {
  std::size_t reached = begin;
  if constexpr (Guarded) {
    using clock = std::chrono::steady_clock;
    chunk_guard guard(*w.state);
    if (!guard.entered()) return 0;
    if (w.block == 0) w.block = w.state->first_block();
    auto last = clock::now();
    while (reached < end && !w.stopping()) {
      const std::size_t ran = std::min(w.block, end - reached);
      const std::size_t stop = reached + ran;
      reached = w.block < check_each_item_below ? run_span<true>(reached, stop, w, invoke)
                                                : run_span(reached, stop, w, invoke);
      if (reached < stop) break;
      const auto now = clock::now();
      const double took = std::chrono::duration<double>(now - last).count();
      last = now;
      constexpr double interval = std::chrono::duration<double>(stop_check_interval).count();
      // The last block of a range may be cut short: a few items' time never grows the block
      // (it says little next to the clock reads), and shrinks it only when they alone take
      // longer than the interval.
      if (took < interval / 2) {
        if (ran == w.block) w.block = std::min<std::size_t>(w.block * 2, std::size_t{1} << 40);
      } else if (took > interval) {
        const double fit = static_cast<double>(ran) * interval / took;
        w.block = std::max<std::size_t>(1, static_cast<std::size_t>(fit));
      }
    }
    w.state->add_done(reached - begin);
  } else {
    reached = run_span(begin, end, w, invoke);
  }
  w.note_range(begin, reached);
  return reached - begin;
}

}  // namespace polymap::detail
