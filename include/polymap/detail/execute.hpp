// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>
#include <polymap/detail/map_job.hpp>
#include <polymap/options.hpp>
#include <polymap/plan.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

namespace polymap::detail {

/// What polymap has learnt about one function: its per-item cost, from sampling and from
/// earlier calls. One instance per (function type, item type, result type).
/// Thread safety: all fields are atomics.
struct function_stats {
  std::atomic<double> seconds_per_item{0};  ///< 0: never measured
  std::atomic<std::uint32_t> calls{0};
  std::atomic<std::uint32_t> measured{0};   ///< calls that fed the estimate
};

/// The stats of the function type `Fn` applied to items `Item`.
template <class Fn, class Item>
[[nodiscard]] function_stats& stats_for() noexcept {
  static function_stats stats;  // one per instantiation, i.e. per (Fn, Item)
  return stats;
}

/// The stats of the function at `address`, one of the functions of a function pointer type
/// whose own stats are `type`.
/// Thread safety: any thread.
[[nodiscard]] function_stats& stats_of_function(std::uintptr_t address,
                                                const function_stats* type);

/// The stats of `fn` applied to items `Item`: its type's, or for a pointer to a function,
/// the function's own (every `double(*)(double)` is one type, of many functions whose costs
/// have nothing to do with each other).
template <class Item, class Fn>
[[nodiscard]] function_stats& stats_for(const Fn& fn) {
  if constexpr (std::is_pointer_v<Fn> && std::is_function_v<std::remove_pointer_t<Fn>>) {
    return stats_of_function(reinterpret_cast<std::uintptr_t>(fn), &stats_for<Fn, Item>());
  } else {
    return stats_for<Fn, Item>();
  }
}

/// Largest serial work (seconds) that the automatic choice keeps on the calling thread
/// without a decision: set once the pool has measured its fork-join; 0 until then, and
/// for good when POLYMAP_BACKEND or POLYMAP_EXPLAIN ask for every call to be decided.
extern std::atomic<double> inline_limit;

[[nodiscard]] inline double inline_serial_limit() noexcept {
  return inline_limit.load(std::memory_order_relaxed);
}

/// True when `opts` asks for nothing that the inline serial loop cannot give.
[[nodiscard]] inline bool is_plain(const options& o) noexcept {
  return o.workers == 0 && o.bind == bind::none && o.cpus.empty() && !o.nice &&
         o.timeout.count() == 0 && o.memory_limit == 0 && !o.progress && !o.on_progress &&
         !o.stop.stop_possible() && o.report == nullptr && o.chunk == 0;
}

/// How a call runs without a backend.
enum class inline_run {
  no,     ///< through execute(): a backend, a decision
  plain,  ///< a plain loop on the calling thread
  timed,  ///< the same, timed, to keep the function's history fresh
};

/// Whether a call of `n` items may run as a plain loop on the calling thread, without a
/// backend: an automatic call whose history says it is too small to parallelise. Every
/// 64th such call is timed (two clock reads), so that the history follows the program.
[[nodiscard]] inline inline_run run_inline(const options& o, function_stats& s,
                                           std::size_t n) noexcept {
  if (o.backend != backend_kind::automatic || !is_plain(o)) return inline_run::no;
  const double cost = s.seconds_per_item.load(std::memory_order_relaxed);
  if (cost <= 0 || static_cast<double>(n) * cost >= inline_serial_limit()) return inline_run::no;
  const std::uint32_t calls = s.calls.load(std::memory_order_relaxed) + 1;
  s.calls.store(calls, std::memory_order_relaxed);
  return calls % 64 == 0 ? inline_run::timed : inline_run::plain;
}

/// Feeds one measurement (seconds per item inside the loop) into the history. The first
/// one replaces the estimate from sampling, which a program's first items (cold caches,
/// lazy binding, first touch of the output) can inflate a thousandfold.
inline void record_cost(function_stats& s, double seconds_per_item) noexcept {
  if (seconds_per_item <= 0) return;
  const double old = s.seconds_per_item.load(std::memory_order_relaxed);
  const bool measured_before = s.measured.fetch_add(1, std::memory_order_relaxed) != 0;
  s.seconds_per_item.store(
      old > 0 && measured_before ? 0.25 * old + 0.75 * seconds_per_item : seconds_per_item,
      std::memory_order_relaxed);
}

/// The context of worker `worker` of a call with options `o`, running on `backend`.
[[nodiscard]] inline worker_context make_worker(run_state& state, const options& o,
                                                backend_kind backend, std::size_t worker = 0) {
  return worker_context{.worker = worker,
                        .backend = backend,
                        .state = &state,
                        .retries = o.retries,
                        .fail_fast = o.on_error == on_error::fail_fast,
                        .ranges = {}};
}

/// A call of `n` items whose chunks `run_chunk(ctx, ...)` runs, with options `o`.
[[nodiscard]] inline map_job make_job(std::size_t n, chunk_fn run_chunk, const void* ctx,
                                      run_state& state, const options& o) noexcept {
  return map_job{.begin = 0,
                 .end = n,
                 .run_chunk = run_chunk,
                 .ctx = ctx,
                 .state = &state,
                 .opts = &o,
                 .seconds_per_item = 0,
                 .ascending = false,
                 .max_chunk = 0,
                 .transfer = nullptr,
                 .decided = nullptr};
}

/// How far a call has come, from its counters and its start time.
[[nodiscard]] progress_info progress_of(const run_state& state,
                                        std::chrono::steady_clock::time_point start,
                                        bool finished) noexcept;

/// Checks the options of a call, before anything runs, whatever the call's size and
/// whichever path runs it: each field, POLYMAP_BACKEND, and a timeout or memory cap asked
/// of a backend that cannot hold it. Cheap enough for the inline path (no allocation
/// unless it throws).
/// @throws option_error naming the first bad option
void check_options(const options& o);

/// Checks the options of `call`, a function of polymap::kokkos that runs one Kokkos kernel:
/// beyond check_options(), none may ask for what such a kernel cannot do (workers, bind,
/// nice, a timeout, retries, collect, a chunk, progress).
/// @throws option_error naming the first option that does not apply
void check_kernel_options(const options& o, std::string_view call);

/// Checks that the backend a call asks for (options::backend, else POLYMAP_BACKEND) is
/// built and usable here, for calls that start before they run (map_async, imap).
/// @return the backend asked for (automatic when none is)
/// @throws option_error for a bad POLYMAP_BACKEND, backend_unavailable naming the backend
backend_kind check_backend_available(const options& o);

/// Tells the other ranks of an MPI job that this rank refuses a call of `items` items on
/// the mpi backend before it starts (`why`), when the call asks for that backend and would
/// be collective here: they end it with this rank's reason rather than wait for it.
void refuse_across_ranks(const options& o, std::size_t items, const std::string& why) noexcept;

/// Whether a map with options `o` will keep its results on another rank (the mpi backend's
/// rank 0, under options::results rank0, asked on a rank but 0), as far as the calling
/// thread can tell before the call; false where it cannot. Such a rank writes the results of
/// its own items into a buffer it never returns.
[[nodiscard]] bool results_kept_elsewhere(const options& o) noexcept;

/// check_options() and check_backend_available() at the start of a call that runs later
/// (map_async, imap), and whether its results can come back from the worker processes that
/// it asks for (`results_refused`: why not, or null; see results_refused()). A call on the
/// mpi backend that this rank refuses here still reaches the other ranks, which end it with
/// this rank's reason rather than wait for it.
/// @return the backend asked for (automatic when none is)
/// @throws what those two throw, and refuse_results()'s option_error
backend_kind check_call_start(const options& o, std::size_t items,
                              const char* results_refused = nullptr);

/// Refuses a call whose results cannot come back from the worker processes it runs on
/// (`needs`: what they would need, results_refused()), naming what sent it there: options::backend, POLYMAP_BACKEND, or a timeout or
/// memory cap, which only worker processes hold.
/// @throws option_error
[[noreturn]] void refuse_results(const options& o, const char* needs);

/// The backend a call asks for: options::backend, else POLYMAP_BACKEND when it is set.
/// @param from_env set to whether the answer came from POLYMAP_BACKEND
/// @throws option_error when POLYMAP_BACKEND names no backend
[[nodiscard]] backend_kind requested_backend(const options& o, bool& from_env);

/// Runs a call: checks its options, chooses the backend, runs the items, reports progress.
/// Failures are left in `job.state`.
/// @return the backend the items ran on
/// @throws option_error, backend_unavailable
backend_kind execute(map_job& job, function_stats& stats);

/// Runs `body`, a call that no executor runs (a host-resident map on the GPU), as `execute`
/// runs one: the options are checked first, `options::stop` cancels `state` (which `body`
/// polls between its steps, counting what it finishes with `state.add_done`), and progress
/// is reported to `options::on_progress` and the bar as for any call.
/// @throws option_error before `body` runs; whatever `body` throws
void run_watched(run_state& state, const options& o, const std::function<void()>& body);

/// The most items a call (or explain()) runs on the calling thread to measure a function
/// whose cost is not known: the first ones.
inline constexpr std::size_t sample_max_items = 64;

/// What explain() may run to measure a function whose cost is not known.
enum class plan_sample {
  copies,      ///< copies of the first items (what the function does to them stays there)
  known,       ///< nothing: the function's cost is already known
  uncopyable,  ///< nothing: the items cannot be copied
};

/// Decides where a call would run, sampling items [job.begin, ...) as `how` says when the
/// cost is unknown.
/// @throws option_error
[[nodiscard]] plan make_plan(map_job& job, function_stats& stats, plan_sample how);

/// Whether a call's items need to be stopped or capped (options::timeout, memory_limit),
/// which only worker processes allow.
[[nodiscard]] inline bool stops_or_caps(const options& o) noexcept {
  return o.timeout.count() > 0 || o.memory_limit != 0;
}

/// Whether `o` places the workers (`bind`, `nice`): what pool threads and worker processes
/// take, and the calling thread never does.
[[nodiscard]] inline bool places_workers(const options& o) noexcept {
  return o.bind != bind::none || o.nice.has_value();
}

/// The option that makes `stops_or_caps(o)` true ("timeout" before "memory_limit").
[[nodiscard]] inline const char* stop_or_cap_option(const options& o) noexcept {
  return o.timeout.count() > 0 ? "timeout" : "memory_limit";
}

/// Refuses a timeout or a memory cap for `backend` (its name, and where it came from).
/// @throws option_error naming the option
[[noreturn]] void refuse_stop_or_cap(const options& o, const std::string& backend);

/// Prints `p` on stderr when POLYMAP_EXPLAIN asks for every decision (as `execute` does
/// for its own): for decisions made outside it, such as a map sent to the GPU.
void explain_if_asked(const plan& p);

/// Whether the calling thread is a worker of a running map (nested calls run inline).
[[nodiscard]] bool in_worker() noexcept;

/// Whether the calling thread is running items of a map now: in a chunk on any backend (the
/// caller's own share and its sampling included), or in a call that runs inline. A call on
/// the mpi backend made there runs inline, in that item: the other ranks are not making it.
[[nodiscard]] bool in_item() noexcept;

/// Marks the calling thread as running the items of an inline call (which has no chunk
/// guard) until destroyed.
class inline_items_scope {
 public:
  inline_items_scope() noexcept;
  ~inline_items_scope();
  inline_items_scope(const inline_items_scope&) = delete;
  inline_items_scope& operator=(const inline_items_scope&) = delete;
};

/// Whether this process is a worker process of a map (processes backend): every map in it
/// runs on its one thread, and never on a GPU.
[[nodiscard]] bool in_worker_process() noexcept;

/// Marks this process as a worker process, and its thread as a worker.
void mark_worker_process() noexcept;

/// Says that this process has forked: its private pages are write-protected until written.
void note_forked() noexcept;

/// Readies a large, freshly allocated buffer before it is filled: transparent huge pages
/// where the kernel has them and, after a fork (note_forked), every page made writable in
/// one call (MADV_POPULATE_WRITE) rather than by one fault per page. The allocator hands
/// out memory that a fork write-protected, and a fault costs far more than a page walk.
void prepare_large_buffer(void* data, std::size_t bytes) noexcept;

}  // namespace polymap::detail
