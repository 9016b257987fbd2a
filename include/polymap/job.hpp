// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/execute.hpp>
#include <polymap/detail/run_state.hpp>
#include <polymap/map.hpp>
#include <polymap/options.hpp>
#include <polymap/progress.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <ranges>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace polymap {

/// A map running in the background: the handle `map_async` returns.
/// @tparam T what `get()` returns (`std::vector<R>`, or void)
/// Thread safety: `progress()`, `cancel()` and `ready()` may be called from any thread;
/// `get()` once, from one thread. Dropping a job cancels it (its destructor stops the call
/// and waits for it), so a job left unnamed does nothing: hence [[nodiscard]].
template <class T>
class [[nodiscard]] job {
 public:
  job(std::shared_ptr<detail::run_state> state, std::future<T> result,
      std::chrono::steady_clock::time_point start)
      : state_(std::move(state)), result_(result.share()), start_(start) {}
  job(job&& other) noexcept
      : state_(std::move(other.state_)),
        result_(std::move(other.result_)),
        start_(other.start_),
        retrieved_(other.retrieved_.load(std::memory_order_relaxed)) {}
  job& operator=(job&& other) noexcept {
    if (this != &other) {
      abandon();
      state_ = std::move(other.state_);
      result_ = std::move(other.result_);
      start_ = other.start_;
      retrieved_.store(other.retrieved_.load(std::memory_order_relaxed),
                       std::memory_order_relaxed);
    }
    return *this;
  }
  job(const job&) = delete;
  job& operator=(const job&) = delete;
  /// A job never retrieved is cancelled and waited for: no work outlives its handle.
  ~job() { abandon(); }

  /// Items done, failed and total, rate and ETA (all zero for a moved-from job).
  [[nodiscard]] progress_info progress() const noexcept {
    if (!state_) return {};
    return detail::progress_of(*state_, start_, ready());
  }

  /// Stops the job: pending items are not started; returns once none can start. Nothing
  /// for a moved-from job.
  void cancel() noexcept {
    if (state_) state_->cancel_and_wait();
  }

  /// Whether the job has finished (get() will not block, or has returned).
  [[nodiscard]] bool ready() const noexcept {
    // Only const members of the shared future are used, by every thread: get() on
    // one thread does not change what ready() on another reads.
    return retrieved_.load(std::memory_order_acquire) ||
           (result_.valid() &&
            result_.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
  }

  /// Waits for the job to finish.
  void wait() const { result_.wait(); }

  /// Waits and returns the results; once.
  /// @throws map_error, cancelled_error, or whatever the map itself threw; std::future_error
  ///   (no_state) when called again, or on a moved-from job
  T get() {
    if (retrieved_.load(std::memory_order_relaxed) || !result_.valid()) {
      throw std::future_error(std::future_errc::no_state);
    }
    struct mark {
      std::atomic<bool>& retrieved;
      ~mark() { retrieved.store(true, std::memory_order_release); }  // returned or threw
    } on_return{retrieved_};
    if constexpr (std::is_void_v<T>) {
      result_.get();
    } else {
      // The shared state's own object, which nothing else reads: taken, not copied.
      return std::move(const_cast<T&>(result_.get()));
    }
  }

 private:
  void abandon() noexcept {
    if (state_ && result_.valid() && !retrieved_.load(std::memory_order_relaxed)) {
      state_->cancel_and_wait();
      result_.wait();
    }
  }

  std::shared_ptr<detail::run_state> state_;
  std::shared_future<T> result_;
  std::chrono::steady_clock::time_point start_;
  std::atomic<bool> retrieved_ = false;
};

/// Starts `map(xs, fn, opts)` on a thread of its own and returns at once.
/// The range is moved or copied into the job, as std::async does with its arguments: pass a
/// `std::span` or `std::views::all(v)` to map a container in place (it must then outlive
/// the job).
/// @throws option_error for a bad option, backend_unavailable for a backend that cannot run
///   here (both checked before the job starts)
namespace detail {

/// What a map_async job keeps of a range `Range`, and maps (its own copy, not const): the
/// range moved or copied, or for a C array, which cannot be copied as one, its items in a
/// vector.
template <class Range>
using async_items_t =
    std::conditional_t<std::is_array_v<std::remove_cvref_t<Range>>,
                       std::vector<std::ranges::range_value_t<Range>>, std::remove_cvref_t<Range>>;

/// `xs` as the `Items` a job keeps: moved or copied, or a C array's items in a vector.
template <class Items, class Range>
Items owned_items(Range&& xs) {
  if constexpr (std::is_array_v<std::remove_cvref_t<Range>>) {
    return Items(std::ranges::begin(xs), std::ranges::end(xs));
  } else {
    return Items(std::forward<Range>(xs));
  }
}

}  // namespace detail

template <std::ranges::input_range Range, class Fn>
  requires std::ranges::sized_range<Range> &&
           detail::callable_on_items<Fn, detail::async_items_t<Range>&>
[[nodiscard]] auto map_async(Range&& xs, Fn fn, options opts = {}) {
  using Items = detail::async_items_t<Range>;
  using R = detail::item_result_t<Fn, std::ranges::iterator_t<Items&>>;
  (void)detail::check_call_start(opts, static_cast<std::size_t>(std::ranges::size(xs)),
                                 detail::results_refused<R>());
  using Result = decltype(polymap::map(std::declval<Items&>(), std::declval<Fn>(), opts));
  const auto n = static_cast<std::size_t>(std::ranges::size(xs));
  auto state = std::make_shared<detail::run_state>(n);
  const auto start = std::chrono::steady_clock::now();
  std::future<Result> result =
      std::async(std::launch::async,
                 [state, items = detail::owned_items<Items>(std::forward<Range>(xs)),
                  fn = std::move(fn), opts = std::move(opts)]() mutable {
                   return detail::with_indexable(items, [&](auto first, std::size_t count) {
                     return detail::map_n(first, count, fn, opts, state.get());
                   });
                 });
  return job<Result>(std::move(state), std::move(result), start);
}

}  // namespace polymap
