// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/execute.hpp>
#include <polymap/detail/remote.hpp>
#include <polymap/detail/results.hpp>
#include <polymap/detail/run_items.hpp>
#include <polymap/detail/through_iterator.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <polymap/plan.hpp>

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

/// Marks a function that may run on a GPU: `__host__ __device__` under nvcc, nothing
/// elsewhere. A function not so marked never goes to a GPU.
#if defined(__CUDACC__)
#define POLYMAP_HD __host__ __device__
#else
#define POLYMAP_HD
#endif

namespace polymap {

namespace detail {

template <class Range>
concept indexable_range =
    std::ranges::random_access_range<Range> && std::ranges::sized_range<Range>;

/// A function's result as a map keeps it: a std::vector<bool>'s bit reference (what a
/// generic lambda returns for an item of one) as the bool it refers to; anything else as
/// it is.
template <class R>
struct kept_result {
  using type = R;
};
template <>
struct kept_result<std::vector<bool>::reference> {
  using type = bool;
};

/// The result type of `fn` on one item of `It`, as a map keeps it.
template <class Fn, class It>
using item_result_t = typename kept_result<
    std::remove_cvref_t<std::invoke_result_t<Fn&, std::iter_reference_t<It>>>>::type;

/// `fn(item)`, as a map keeps it (see kept_result).
template <class Fn, class Item>
decltype(auto) apply_item(Fn& fn, Item&& item) {
  using raw = std::remove_cvref_t<std::invoke_result_t<Fn&, Item&&>>;
  if constexpr (std::is_same_v<raw, typename kept_result<raw>::type>) {
    return std::invoke(fn, std::forward<Item>(item));
  } else {
    return typename kept_result<raw>::type(std::invoke(fn, std::forward<Item>(item)));
  }
}

/// Applies `fn` to item i of `first` and stores the result at `out[i]`. `Private`: `out` is
/// the call's own memory, which no item can reach.
template <class It, class Fn, class Out, bool Private = false>
struct map_ctx {
  using result_type = item_result_t<Fn, It>;
  static constexpr bool fixed_results = true;
  static constexpr bool private_target = Private;
  It first;
  Fn* fn;
  Out out;

  static void store(const map_ctx& c, std::size_t i, result_type&& r) {
    put_result(c.out[static_cast<std::iter_difference_t<Out>>(i)], std::move(r));
  }

  /// Result i as the call keeps it, when it keeps what the function returns (a finished
  /// item's: an optional slot is then filled).
  static const result_type& load(const map_ctx& c, std::size_t i)
    requires(std::is_same_v<std::iter_value_t<Out>, result_type> ||
             std::is_same_v<std::iter_value_t<Out>, std::optional<result_type>>)
  {
    const auto& slot = c.out[static_cast<std::iter_difference_t<Out>>(i)];
    if constexpr (std::is_same_v<std::iter_value_t<Out>, result_type>) {
      return slot;  // a result that is an optional itself too
    } else {
      return *slot;
    }
  }

  /// The first result's bytes, when results are stored as they are, one after another.
  static std::byte* target(const map_ctx& c) noexcept
    requires(std::contiguous_iterator<Out> && std::is_same_v<std::iter_value_t<Out>, result_type>)
  {
    return reinterpret_cast<std::byte*>(std::to_address(c.out));
  }

  template <bool Guarded = true>
  static void chunk(const void* p, std::size_t b, std::size_t e, worker_context& w) {
    const auto& c = *static_cast<const map_ctx*>(p);
    auto compute = [&c](std::size_t i) -> decltype(auto) {
      return apply_item(*c.fn, c.first[static_cast<std::iter_difference_t<It>>(i)]);
    };
    if (w.remote != nullptr) {
      run_remote(b, e, w, compute);
      return;
    }
    run_items<Guarded>(b, e, w, [&c, &compute](std::size_t i) {
      put_result(c.out[static_cast<std::iter_difference_t<Out>>(i)], compute(i));
    });
  }
};

/// Applies `fn` to item i of `first` for its effect alone.
template <class It, class Fn>
struct apply_ctx {
  using result_type = void;
  static constexpr bool fixed_results = true;
  It first;
  Fn* fn;

  template <bool Guarded = true>
  static void chunk(const void* p, std::size_t b, std::size_t e, worker_context& w) {
    const auto& c = *static_cast<const apply_ctx*>(p);
    auto compute = [&c](std::size_t i) {
      (void)std::invoke(*c.fn, c.first[static_cast<std::iter_difference_t<It>>(i)]);
    };
    if (w.remote != nullptr) {
      run_remote(b, e, w, compute);
      return;
    }
    run_items<Guarded>(b, e, w, compute);
  }
};

/// The transfer of results for a context type (see result_transfer).
template <class Ctx>
inline constexpr result_transfer transfer_of =
    transfer_for<Ctx, typename Ctx::result_type, Ctx::fixed_results>();

/// Runs a call whose chunks are `Ctx::chunk`: inline when it is too small to measure,
/// through `execute()` otherwise (always, with a state of the caller's or a decision of the
/// caller's: see map_job::decided). Throws option_error before anything runs (on either
/// path), map_error or cancelled_error after the fact (with the results in `slots`, empty
/// for a call without results). Returns whether the results are here: not on the mpi
/// backend's other ranks under options::results rank0.
template <class R, class Ctx, class Slot>
bool run_call(const Ctx& ctx, std::size_t n, const options& opts, function_stats& stats,
              std::span<Slot> slots, run_state* external = nullptr,
              const plan* decided = nullptr) {
  const inline_run how = external == nullptr && decided == nullptr
                             ? run_inline(opts, stats, n)
                             : inline_run::no;
  if (how != inline_run::no) {
    // execute() checks the options of the other path: a bad option is refused whatever
    // the size of the call (run_inline only looks at the options it needs).
    check_options(opts);
    run_state state(n);
    worker_context w = make_worker(state, opts, backend_kind::serial);
    const inline_items_scope in_items;
    // Neither cancellable nor observed: no chunk guard, which would cost more than the items.
    if (how == inline_run::timed) {
      const auto start = std::chrono::steady_clock::now();
      Ctx::template chunk<false>(&ctx, 0, n, w);
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
      record_cost(stats, took.count() / static_cast<double>(std::max<std::size_t>(n, 1)));
    } else {
      Ctx::template chunk<false>(&ctx, 0, n, w);
    }
    if (state.has_failures()) {
      w.flush();
      throw_if_failed<R>(state, slots);
    }
    return true;
  }
  run_state local(n);
  run_state& state = external != nullptr ? *external : local;
  map_job job = make_job(n, &Ctx::template chunk<true>, &ctx, state, opts);
  job.transfer = &transfer_of<Ctx>;
#if defined(__GXX_RTTI) || defined(__cpp_rtti)
  job.call_type = typeid(Ctx).name();
#endif
  job.decided = decided;
  (void)execute(job, stats);
  throw_if_failed<R>(state, slots);
  return !state.results_elsewhere();
}

/// map() of the `n` items from `first`; `external` and `decided` as for run_call.
template <class It, class Fn>
auto map_n(It first, std::size_t n, Fn& fn, const options& opts, run_state* external = nullptr,
           const plan* decided = nullptr) {
  using R = item_result_t<Fn, It>;
  function_stats& stats = stats_for<std::iter_value_t<It>>(fn);
  if constexpr (std::is_void_v<R>) {
    const apply_ctx<It, Fn> ctx{first, &fn};
    run_call<void, apply_ctx<It, Fn>, char>(ctx, n, opts, stats, {}, external, decided);
  } else if (results_kept_elsewhere(opts)) {
    // This rank's results go to rank 0 and nowhere else: into memory that is not written
    // first, so that only the pages of this rank's own items are ever touched.
    const auto scratch = std::make_unique_for_overwrite<slot_t<R>[]>(n);
    const std::span<slot_t<R>> slots(scratch.get(), n);
    const map_ctx<It, Fn, slot_t<R>*, true> ctx{first, &fn, slots.data()};
    if (!run_call<R>(ctx, n, opts, stats, slots, external, decided)) return std::vector<R>{};
    return finish_results<R>(slots);  // they stayed here after all (every one is written)
  } else {
    std::vector<slot_t<R>> slots = make_slots<R>(n);
    const map_ctx<It, Fn, slot_t<R>*, true> ctx{first, &fn, slots.data()};
    if (!run_call<R>(ctx, n, opts, stats, std::span<slot_t<R>>(slots), external, decided)) {
      return std::vector<R>{};  // rank 0 of an mpi call keeps them
    }
    return finish_results<R>(std::move(slots));
  }
}

/// The reference a map's function is given for an item of `Range` (see with_indexable):
/// the range's own, or for a range that can be read only once, its copied item.
template <class Range>
using item_reference_t =
    std::conditional_t<std::ranges::forward_range<Range>, std::ranges::range_reference_t<Range>,
                       std::ranges::range_value_t<Range>&>;

/// Whether a map can call `Fn` on the items of `Range`: the constraint of map(), explain(),
/// imap() and map_async(), which a function of the wrong parameter fails at the call.
template <class Fn, class Range>
concept callable_on_items = std::invocable<Fn&, item_reference_t<Range>>;

/// Calls `body(first, n)` on the range itself when it can be indexed; on its items where
/// they are, through a vector of their iterators, when it can be read more than once (a
/// std::list, a filter view: a function that takes an item by reference sees the range's
/// own); or on a vector of its items otherwise (an input range is read once, on the calling
/// thread).
template <class Range, class Body>
decltype(auto) with_indexable(Range&& xs, Body&& body) {
  if constexpr (indexable_range<Range>) {
    return body(std::ranges::begin(xs), static_cast<std::size_t>(std::ranges::size(xs)));
  } else if constexpr (std::ranges::forward_range<Range>) {
    using iterator = std::ranges::iterator_t<Range>;
    std::vector<iterator> at;
    for (iterator it = std::ranges::begin(xs); it != std::ranges::end(xs); ++it) at.push_back(it);
    return body(through_iterator<iterator>(at.data()), at.size());
  } else {
    std::vector<std::ranges::range_value_t<Range>> items;
    for (auto&& x : xs) items.push_back(std::forward<decltype(x)>(x));
    return body(items.begin(), items.size());
  }
}

/// Calls `fn(i)` for its effect alone.
template <class Fn>
struct index_ctx {
  using result_type = void;
  static constexpr bool fixed_results = true;
  Fn* fn;

  template <bool Guarded = true>
  static void chunk(const void* p, std::size_t b, std::size_t e, worker_context& w) {
    const auto& c = *static_cast<const index_ctx*>(p);
    auto compute = [&c](std::size_t i) { std::invoke(*c.fn, i); };
    if (w.remote != nullptr) {
      run_remote(b, e, w, compute);
      return;
    }
    run_items<Guarded>(b, e, w, compute);
  }
};

}  // namespace detail

/// Applies `fn` to every item of `xs` on the backend that finishes soonest, and returns the
/// results in input order.
/// @param xs any input range; random-access sized ranges are read in place
/// @param fn called once per item (more with `retries`), from several threads at once
/// @param opts see `options`
/// @return `std::vector` of the results (nothing when `fn` returns void); empty on every
///   rank but 0 of a call on the mpi backend with `results` rank0
/// @throws option_error for a bad option, backend_unavailable for a backend that is not
///   here, map_error when items failed, cancelled_error when the call was cancelled
template <std::ranges::input_range Range, class Fn>
  requires detail::callable_on_items<Fn, Range>
auto map(Range&& xs, Fn fn, const options& opts = {}) {
  return detail::with_indexable(std::forward<Range>(xs), [&](auto first, std::size_t n) {
    return detail::map_n(first, n, fn, opts);
  });
}

namespace detail {

/// map_into() with `external` and `decided` as for run_call.
template <std::ranges::random_access_range In, std::ranges::random_access_range Out, class Fn>
  requires std::ranges::sized_range<In> && std::ranges::sized_range<Out>
void map_into(const In& xs, Out&& out, Fn& fn, const options& opts,
              run_state* external = nullptr, const plan* decided = nullptr) {
  static_assert(!std::is_same_v<std::ranges::range_value_t<Out>, bool> ||
                    std::is_lvalue_reference_v<std::ranges::range_reference_t<Out>>,
                "polymap::map_into: a std::vector<bool> packs its elements into shared words, "
                "which two workers cannot write at once: map into a vector of char, or use "
                "polymap::map, which returns a std::vector<bool>");
  const auto n = static_cast<std::size_t>(std::ranges::size(xs));
  if (static_cast<std::size_t>(std::ranges::size(out)) < n) {
    const option_error refusal("out", std::to_string(std::ranges::size(out)) + " elements",
                               "at least as many elements as the input (" + std::to_string(n) +
                                   ")");
    refuse_across_ranks(opts, n, refusal.what());
    throw refusal;
  }
  using Ctx = map_ctx<std::ranges::iterator_t<const In>, Fn, std::ranges::iterator_t<Out>>;
  function_stats& stats = stats_for<std::ranges::range_value_t<In>>(fn);
  const Ctx ctx{std::ranges::begin(xs), &fn, std::ranges::begin(out)};
  run_call<typename Ctx::result_type, Ctx, char>(ctx, n, opts, stats, {}, external, decided);
}

}  // namespace detail

/// Applies `fn` to every item of `xs` and writes result i to `out[i]`: no allocation, and
/// each page of `out` is first touched by the worker that computes it.
/// @throws the same as map(); `option_error` when `out` is shorter than `xs`
template <std::ranges::random_access_range In, std::ranges::random_access_range Out, class Fn>
  requires std::ranges::sized_range<In> && std::ranges::sized_range<Out>
void map_into(const In& xs, Out&& out, Fn fn, const options& opts = {}) {
  detail::map_into(xs, std::forward<Out>(out), fn, opts);
}

/// Calls `fn(i)` for every i in [0, n), HPC style.
/// @throws the same as map()
template <std::integral Index, class Fn>
  requires std::invocable<Fn&, std::size_t>
void for_each(Index n, Fn fn, const options& opts = {}) {
  if (std::cmp_less(n, 0)) {  // no "n < 0" warning for an unsigned Index
    throw option_error("n", std::to_string(n), "a count of zero or more");
  }
  detail::function_stats& stats = detail::stats_for<std::size_t>(fn);
  const detail::index_ctx<Fn> ctx{&fn};
  detail::run_call<void, detail::index_ctx<Fn>, char>(ctx, static_cast<std::size_t>(n), opts,
                                                      stats, {});
}

/// Where `map(xs, fn, opts)` would run and why, with the predicted time of each backend.
/// When the function's cost is not known yet, runs it on copies of the first few items (up
/// to about 2 us of work, at most 64 items) on the calling thread to measure it, as the call
/// itself would on the items; the copies and the results are discarded, so the items are
/// never changed (no sample when they cannot be copied). What else the function does
/// (output, files) happens.
/// @throws option_error for a bad option, backend_unavailable for a backend asked for by
///   name that cannot run here (as map() would)
template <std::ranges::input_range Range, class Fn>
  requires detail::callable_on_items<Fn, Range> ||
           std::invocable<Fn&, std::ranges::range_value_t<Range>&>  // its copies
[[nodiscard]] plan explain(Range&& xs, Fn fn, const options& opts = {}) {
  return detail::with_indexable(std::forward<Range>(xs), [&](auto first, std::size_t n) {
    using It = decltype(first);
    using Item = std::iter_value_t<It>;
    detail::function_stats& stats = detail::stats_for<Item>(fn);
    detail::run_state state(n);
    if constexpr (std::copy_constructible<Item>) {
      // Sampling reads only the first items: copied here, before any clock runs; none when
      // the function's cost is known from earlier calls, and nothing is sampled.
      const bool known = stats.seconds_per_item.load(std::memory_order_relaxed) > 0;
      std::vector<Item> copies;
      if (!known) {
        copies.reserve(std::min(n, detail::sample_max_items));
        for (std::size_t i = 0; i < std::min(n, detail::sample_max_items); ++i) {
          copies.push_back(first[static_cast<std::iter_difference_t<It>>(i)]);
        }
      }
      using Copies = typename std::vector<Item>::iterator;
      const detail::apply_ctx<Copies, Fn> ctx{copies.begin(), &fn};
      detail::map_job job = detail::make_job(
          n, &detail::apply_ctx<Copies, Fn>::template chunk<true>, &ctx, state, opts);
      return detail::make_plan(job, stats,
                               known ? detail::plan_sample::known : detail::plan_sample::copies);
    } else {
      const detail::apply_ctx<It, Fn> ctx{first, &fn};
      detail::map_job job = detail::make_job(
          n, &detail::apply_ctx<It, Fn>::template chunk<true>, &ctx, state, opts);
      return detail::make_plan(job, stats, detail::plan_sample::uncopyable);
    }
  });
}

}  // namespace polymap
