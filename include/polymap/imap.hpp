// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/execute.hpp>
#include <polymap/detail/results.hpp>
#include <polymap/detail/run_items.hpp>
#include <polymap/map.hpp>
#include <polymap/options.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace polymap {

namespace detail {

/// Default window of a stream: enough results in flight to keep every worker busy.
[[nodiscard]] std::size_t default_window(const options& opts) noexcept;

/// The shared state of one stream: the results computed ahead of the consumer.
template <class R>
struct stream_state {
  stream_state(std::size_t n, std::size_t window_size) : run(n), window(window_size) {}

  run_state run;
  const std::size_t window;
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::size_t, std::optional<R>> ready;  // an empty optional: the item failed
  std::size_t yielded = 0;     // results handed to the consumer (or skipped as failed)
  std::size_t next_index = 0;  // ordered: the index to hand out next
  bool finished = false;
  std::exception_ptr error;    // from the run itself (options, backend)

  /// Blocks a worker until items below `end` fit into the window, or the stream stops.
  void admit(std::size_t end, bool ordered) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] {
      // Without overflow: a window of SIZE_MAX has no bound.
      const std::size_t base = ordered ? next_index : yielded;
      return run.stopping() || end <= base || end - base <= window;
    });
  }
};

template <class It, class Fn, class R>
struct stream_ctx {
  using result_type = R;
  // Each result is handed on as it arrives, so results come as messages, not in bulk.
  static constexpr bool fixed_results = false;
  It first;
  Fn* fn;
  stream_state<R>* stream;
  bool ordered;

  static void store(const stream_ctx& c, std::size_t i, std::optional<R>&& r) {
    {
      std::lock_guard lock(c.stream->mutex);
      c.stream->ready.emplace(i, std::move(r));
    }
    c.stream->changed.notify_all();
  }
  static void store_failed(const void* p, std::size_t i) {
    store(*static_cast<const stream_ctx*>(p), i, std::nullopt);
  }

  template <bool Guarded = true>
  static void chunk(const void* p, std::size_t b, std::size_t e, worker_context& w) {
    const auto& c = *static_cast<const stream_ctx*>(p);
    auto compute = [&c](std::size_t i) -> R {
      return apply_item(*c.fn, c.first[static_cast<std::iter_difference_t<It>>(i)]);
    };
    if (w.remote != nullptr) {
      // In a worker process: the results go to the caller, which keeps the stream.
      run_remote(b, e, w, compute);
      return;
    }
    c.stream->admit(e, c.ordered);
    std::vector<std::optional<R>> out(e - b);
    run_items<Guarded>(b, e, w,
                       [&out, &compute, b](std::size_t i) { out[i - b].emplace(compute(i)); });
    {
      std::lock_guard lock(c.stream->mutex);
      for (std::size_t i = b; i < e; ++i) c.stream->ready.emplace(i, std::move(out[i - b]));
    }
    c.stream->changed.notify_all();
  }
};

/// The transfer of a stream: each result, or its failure, is handed on as it arrives.
template <class Ctx>
inline constexpr result_transfer stream_transfer = [] {
  result_transfer t = transfer_for<Ctx, typename Ctx::result_type, false>();
  t.deliver_failed = &Ctx::store_failed;
  return t;
}();

}  // namespace detail

/// Results of `imap`, streamed while the map runs: an input range of (index, value) pairs.
///
/// At most `options::window` results are computed ahead of the consumer, so a slow
/// consumer does not make results pile up. Leaving the loop early cancels the rest; so
/// does `options::stop`, after which iterating throws `cancelled_error` (or `map_error`
/// for items that failed before), however many results were computed ahead.
/// Iterating past a failed item throws `map_error`: under fail_fast, once the results that
/// were ready when the run stopped are yielded (in order: those before the failed item);
/// under collect, after the last good result.
/// Thread safety: one consumer thread.
template <class R>
class stream {
 public:
  using value_type = std::pair<std::size_t, R>;

  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = stream::value_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(stream* s) : s_(s) { ++*this; }
    value_type& operator*() const { return *s_->current_; }
    value_type* operator->() const { return &*s_->current_; }
    iterator& operator++() {
      if (!s_->advance()) s_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) { return it.s_ == nullptr; }

   private:
    stream* s_ = nullptr;
  };

  template <class Start>
  stream(std::size_t n, std::size_t window, bool ordered, on_error policy, std::stop_token stop,
         Start&& start)
      : state_(std::make_unique<detail::stream_state<R>>(n, window)),
        ordered_(ordered),
        policy_(policy),
        stop_(std::move(stop)) {
    driver_ = std::thread([this, start = std::forward<Start>(start)]() mutable {
      try {
        start(*state_);
      } catch (...) {
        std::lock_guard lock(state_->mutex);
        state_->error = std::current_exception();
      }
      {
        std::lock_guard lock(state_->mutex);
        state_->finished = true;
      }
      state_->changed.notify_all();
    });
  }
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;
  ~stream() {
    {
      std::lock_guard lock(state_->mutex);
      state_->run.cancel();
    }
    state_->changed.notify_all();
    if (driver_.joinable()) driver_.join();
  }

  [[nodiscard]] iterator begin() { return iterator(this); }
  [[nodiscard]] std::default_sentinel_t end() const noexcept { return {}; }

 private:
  /// Moves the next result into `current_`; false at the end.
  /// @throws map_error for failed items, or what the run threw
  bool advance() {
    auto& st = *state_;
    std::unique_lock lock(st.mutex);
    const bool fail_fast = policy_ == on_error::fail_fast;
    for (;;) {
      if (st.error) std::rethrow_exception(st.error);
      // A stop after the last result stops nothing: the stream ends as it would have.
      if (stop_.stop_requested() && st.yielded < st.run.total()) {
        // Results the workers finished ahead of the consumer are not yielded either: the
        // stream ends where the stop found its consumer, as a job's get() would.
        st.run.cancel();
        st.changed.notify_all();  // workers waiting for room in the window see the stop
        st.changed.wait(lock, [&] { return st.finished; });
        if (st.error) std::rethrow_exception(st.error);
        if (st.run.has_failures()) throw_failures(lock);
        throw cancelled_error(st.yielded, st.run.total());
      }
      auto it = ordered_ ? st.ready.find(st.next_index) : st.ready.begin();
      if (it != st.ready.end()) {
        if (!it->second && fail_fast && ordered_) {
          // In order, the stream ends at a failed item: the run is stopping; report it
          // once it has.
          st.changed.wait(lock, [&] { return st.finished; });
          throw_failures(lock);
        }
        std::optional<R> value = std::move(it->second);
        const std::size_t index = it->first;
        st.ready.erase(it);
        ++st.yielded;
        if (ordered_) ++st.next_index;
        st.changed.notify_all();
        if (value) {
          current_.emplace(index, std::move(*value));
          return true;
        }
        continue;  // a failed item: reported at the end
      }
      if (fail_fast && st.run.has_failures()) {
        // The run is stopping: the results that are ready when it has stopped are all
        // there will be; they are yielded first.
        if (!st.finished) {
          st.changed.wait(lock, [&] { return st.finished; });
          continue;
        }
        throw_failures(lock);
      }
      if (st.finished) {
        if (st.error) std::rethrow_exception(st.error);
        if (st.run.has_failures() || st.run.cancelled()) throw_failures(lock);
        return false;
      }
      st.changed.wait(lock);
    }
  }

  void throw_failures(std::unique_lock<std::mutex>& lock) {
    lock.unlock();
    detail::throw_if_failed<R>(state_->run);
  }

  std::unique_ptr<detail::stream_state<R>> state_;
  bool ordered_;
  on_error policy_;
  std::stop_token stop_;  ///< options::stop
  std::optional<value_type> current_;
  std::thread driver_;
};

/// Applies `fn` to every item of `xs` and streams the results while the map runs:
/// `for (auto&& [index, value] : imap(xs, fn)) ...`. In input order by default;
/// `.ordered = false` yields results as they complete. The input must outlive the stream.
/// @throws option_error for a bad option, backend_unavailable for a backend that cannot run
///   here (both before anything runs); iterating throws
///   map_error for failed items
template <std::ranges::random_access_range Range, class Fn>
  requires std::ranges::sized_range<Range> && detail::callable_on_items<Fn, Range&>
[[nodiscard]] auto imap(Range& xs, Fn fn, const options& opts = {}) {
  using It = std::ranges::iterator_t<Range>;
  using R = detail::item_result_t<Fn, It>;
  static_assert(!std::is_void_v<R>,
                "polymap::imap: the function returns nothing, so there is nothing to stream: "
                "use polymap::for_each or polymap::map");
  (void)detail::check_call_start(opts, static_cast<std::size_t>(std::ranges::size(xs)),
                                 detail::results_refused<R>());
  const auto n = static_cast<std::size_t>(std::ranges::size(xs));
  const std::size_t window = opts.window != 0 ? opts.window : detail::default_window(opts);
  return stream<R>(n, window, opts.ordered, opts.on_error, opts.stop,
                   [first = std::ranges::begin(xs), fn = std::move(fn), opts, n, window](
                       detail::stream_state<R>& st) mutable {
                     const detail::stream_ctx<It, Fn, R> ctx{first, &fn, &st, opts.ordered};
                     detail::map_job job = detail::make_job(
                         n, &detail::stream_ctx<It, Fn, R>::template chunk<true>, &ctx, st.run,
                         opts);
                     job.ascending = true;
                     job.transfer = &detail::stream_transfer<detail::stream_ctx<It, Fn, R>>;
                     job.max_chunk = std::max<std::size_t>(1, window / 2);
                     (void)detail::execute(job, detail::stats_for<std::iter_value_t<It>>(fn));
                   });
}

}  // namespace polymap
