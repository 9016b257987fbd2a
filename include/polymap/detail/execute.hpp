// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>
#include <polymap/detail/map_job.hpp>
#include <polymap/options.hpp>
#include <polymap/plan.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <typeinfo>

namespace polymap::detail {

/// What polymap has learnt about one function: its per-item cost, from sampling and from
/// earlier calls. One instance per (function type, item type, result type).
/// Thread safety: all fields are atomics.
struct function_stats {
  const std::type_info* type = nullptr;
  std::atomic<double> seconds_per_item{0};  ///< 0: never measured
  std::atomic<std::uint32_t> calls{0};
  std::atomic<std::uint32_t> measured{0};   ///< calls that fed the estimate
};

template <class... Ts>
struct stats_key {};

/// The stats of the function type `Fn` applied to items `Item`.
template <class Fn, class Item>
[[nodiscard]] function_stats& stats_for() noexcept {
  static function_stats stats{&typeid(stats_key<Fn, Item>)};
  return stats;
}

/// Largest serial work (seconds) that the automatic choice keeps on the calling thread
/// without timing it; 0 when the inline path is disabled (POLYMAP_BACKEND, POLYMAP_EXPLAIN).
[[nodiscard]] double inline_serial_limit() noexcept;

/// True when `opts` asks for nothing that the inline serial loop cannot give.
[[nodiscard]] inline bool is_plain(const options& o) noexcept {
  return o.workers == 0 && o.bind == bind::none && o.cpus.empty() && !o.nice &&
         o.timeout.count() == 0 && o.memory_limit == 0 && !o.progress && !o.on_progress &&
         !o.stop.stop_possible() && o.report == nullptr && o.chunk == 0;
}

/// Whether a call of `n` items may run as a plain loop on the calling thread, without a
/// backend: an automatic call whose history says it is too small to parallelise, or
/// a plain serial call. Every 64th call takes the measured path to keep the history fresh.
[[nodiscard]] inline bool run_inline(const options& o, function_stats& s, std::size_t n) noexcept {
  if (o.backend != backend_kind::automatic || !is_plain(o)) return false;
  const double cost = s.seconds_per_item.load(std::memory_order_relaxed);
  if (cost <= 0) return false;
  const std::uint32_t calls = s.calls.load(std::memory_order_relaxed) + 1;
  s.calls.store(calls, std::memory_order_relaxed);
  if (calls % 64 == 0) return false;
  return static_cast<double>(n) * cost < inline_serial_limit();
}

/// Checks the options of a call.
/// @throws option_error naming the first bad option
void check_options(const options& o);

/// Runs a call: checks its options, chooses the backend, runs the items, reports progress.
/// Failures are left in `job.state`.
/// @return the backend the items ran on
/// @throws option_error, backend_unavailable
backend_kind execute(map_job& job, function_stats& stats);

/// Decides where a call would run, sampling items [job.begin, ...) when the cost is unknown.
/// @throws option_error
[[nodiscard]] plan make_plan(map_job& job, function_stats& stats);

/// Whether the calling thread is a worker of a running map (nested calls run inline).
[[nodiscard]] bool in_worker() noexcept;

/// Asks the kernel for transparent huge pages over a large, freshly allocated buffer.
void advise_huge_pages(void* data, std::size_t bytes) noexcept;

}  // namespace polymap::detail
