// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/run_state.hpp>

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
/// retries, and counting them done. Exceptions never escape: they are recorded.
/// @tparam Guarded false only on paths that can be neither cancelled nor observed (the
///   inline serial path), where entering and leaving the chunk would cost more than an item.
/// @return the items that ran (fewer than end - begin when fail_fast stopped the chunk);
///   the guarded form also counts them done in the call's state, for its progress.
template <bool Guarded = true, class Invoke>
std::size_t run_items(std::size_t begin, std::size_t end, worker_context& w, Invoke&& invoke) {
  if constexpr (Guarded) {
    chunk_guard guard(*w.state);
    if (!guard.entered()) return 0;
    const std::size_t ran = run_items<false>(begin, end, w, invoke);
    w.state->add_done(ran);
    return ran;
  }
  if constexpr (std::is_nothrow_invocable_v<Invoke&, std::size_t>) {
    for (std::size_t i = begin; i < end; ++i) invoke(i);
  } else {
    std::size_t i = begin;
    while (i < end) {
      try {
        for (; i < end; ++i) invoke(i);
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
            w.note_range(begin, i + 1);
            return i + 1 - begin;
          }
        }
        ++i;
      }
    }
  }
  w.note_range(begin, end);
  return end - begin;
}

}  // namespace polymap::detail
