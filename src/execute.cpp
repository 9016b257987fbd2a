// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/config.hpp>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/remote.hpp>
#include <polymap/error.hpp>
#include <polymap/topology.hpp>

#include "executor.hpp"
#include "once_per_process.hpp"
#include "progress_reporter.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>

namespace polymap::detail {

std::atomic<double> inline_limit{0};

function_stats& stats_of_function(std::uintptr_t address, const function_stats* type) {
  // A thread that calls the same function again (a loop of maps, maps nested in items)
  // takes no lock: entries live as long as the program.
  thread_local std::pair<std::uintptr_t, const function_stats*> last_key{};
  thread_local function_stats* last = nullptr;
  if (last != nullptr && last_key.first == address && last_key.second == type) return *last;
  static std::mutex mutex;
  static std::map<std::pair<std::uintptr_t, const function_stats*>,
                  std::unique_ptr<function_stats>>
      functions;
  const std::lock_guard lock(mutex);
  std::unique_ptr<function_stats>& stats = functions[{address, type}];
  if (!stats) stats = std::make_unique<function_stats>();
  last_key = {address, type};
  last = stats.get();
  return *stats;
}

namespace {

using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point start) {
  return std::chrono::duration<double>(clock::now() - start).count();
}

/// The environment's say, read once.
struct environment {
  std::optional<backend_kind> backend;
  std::string backend_text;  // set when POLYMAP_BACKEND is set
  bool explain = false;
};

environment read_environment() {
  environment r;
  if (const char* b = std::getenv("POLYMAP_BACKEND"); b != nullptr && *b != '\0') {
    r.backend_text = b;
    r.backend = parse_backend(b);
  }
  if (const char* x = std::getenv("POLYMAP_EXPLAIN"); x != nullptr) {
    // Set and not one of the usual words for "no" (as a shell user would write it).
    std::string v(x);
    std::transform(v.begin(), v.end(), v.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    r.explain = !v.empty() && v != "0" && v != "false" && v != "no" && v != "off";
  }
  return r;
}

/// The environment as first read (see once_per_process: a fork during the first reading
/// must not leave a child that waits for it for ever).
constinit once_per_process<environment> environment_read;

const environment& env() { return environment_read.get(read_environment); }


/// Parallel work must beat serial by this factor before it is chosen: a wrong choice
/// of threads for small work costs more than a wrong choice of serial near the break-even.
constexpr double parallel_margin = 0.8;

/// Time budget for sampling an unknown function on the calling thread.
constexpr double sample_budget = 2e-6;

/// Runs items from job.begin on the calling thread in batches of 1, 1, 2, 4, ... until about
/// `sample_budget` has passed (and at least two batches ran, since the first item of a
/// program often pays for cold caches and lazy initialisation), never more than a sixteenth
/// of the call. The results are kept. Returns the lowest seconds per item of the batches.
double sample(map_job& job, std::size_t& sampled) {
  worker_context w = make_worker(*job.state, *job.opts, backend_kind::serial);
  const std::size_t limit =
      std::min(sample_max_items, std::max<std::size_t>(1, (job.end - job.begin) / 16));
  double spent = 0;
  double per_item = 0;
  std::size_t batch = 1;
  int batches = 0;
  sampled = 0;
  while (job.begin < job.end && (spent < sample_budget || batches < 2) && sampled < limit &&
         !job.state->stopping()) {
    std::size_t step = std::min({batch, job.end - job.begin, limit - sampled});
    if (job.max_chunk != 0) step = std::min(step, job.max_chunk);
    const std::size_t e = job.begin + step;
    const auto start = clock::now();
    job.run_chunk(job.ctx, job.begin, e, w);
    const double took = seconds_since(start);
    spent += took;
    sampled += step;
    const double this_batch = took / static_cast<double>(step);
    per_item = batches == 0 ? this_batch : std::min(per_item, this_batch);
    job.begin = e;
    if (batches++ != 0) batch *= 2;
  }
  w.flush();
  return per_item;
}

void set_inline_limit(double fork_join, std::size_t workers) {
  if (!env().backend_text.empty() || env().explain) {
    inline_limit.store(0, std::memory_order_relaxed);
    return;
  }
  if (workers <= 1) {
    inline_limit.store(1e300, std::memory_order_relaxed);
    return;
  }
  // threads win when fj + W/P < margin * W, i.e. W > fj / (margin - 1/P).
  const double p = static_cast<double>(workers);
  inline_limit.store(fork_join / (parallel_margin - 1.0 / p), std::memory_order_relaxed);
}

/// The estimate of one backend for `left` items of `work` seconds in all, each with a
/// fixed-size result of `result_bytes` (0: none, or encoded). `verbose` fills in the
/// reason a backend is not usable (text costs more than a small call's whole work).
backend_estimate estimate(backend_kind kind, const options& o, std::size_t left, double work,
                          std::size_t result_bytes, bool verbose) {
  backend_estimate e{.backend = kind, .usable = false, .why_not = {}, .seconds = 0, .workers = 0};
  if (!is_built(kind)) {
    if (verbose) e.why_not = not_built_reason(kind);
    return e;
  }
  executor& ex = executor_for(kind);
  if (!ex.available()) {
    if (verbose) e.why_not = ex.status();
    return e;
  }
  if (kind == backend_kind::mpi) {
    bool from_env = false;
    if (requested_backend(o, from_env) != backend_kind::mpi) {
      if (verbose) {
        e.why_not = "a call on the mpi backend is collective (every rank must make it), so "
                    "automatic never chooses it: ask for it with options::backend or "
                    "POLYMAP_BACKEND";
      }
      return e;
    }
    // Asked for: every rank's machine runs a share (a timeout or cap on worker processes).
    e.usable = true;
    e.workers = std::min(ex.parallelism(o), std::max<std::size_t>(left, 1));
    e.seconds = work / static_cast<double>(std::max<std::size_t>(e.workers, 1));
    return e;
  }
  if (kind == backend_kind::cuda) {
    // This path holds host code only: the GPU runs a call through polymap::cuda::map.
    if (verbose) {
      e.why_not = "the function is not device-callable here: only polymap::cuda::map and "
                  "for_each (nvcc, a __host__ __device__ lambda or a functor marked "
                  "polymap_device_callable) run it on the GPU";
    }
    return e;
  }
  if (kind != backend_kind::processes && stops_or_caps(o)) {
    if (verbose) {
      e.why_not = std::string("cannot hold options::") + stop_or_cap_option(o) +
                  ": only worker processes can be stopped or capped";
    }
    return e;
  }
  e.usable = true;
  e.workers = std::min(ex.parallelism(o), std::max<std::size_t>(left, 1));
  const double overhead =
      ex.overhead_seconds({.workers = e.workers, .items = left, .result_bytes = result_bytes});
  // Workers beyond the usable CPUs take turns on them: CPU-bound items finish no sooner.
  // The overhead still counts every worker (each process is forked).
  const std::size_t cpus = std::max<std::size_t>(topology::current().usable_count(), 1);
  const std::size_t lanes = std::clamp<std::size_t>(e.workers, 1, cpus);
  // The inline limit is for plain calls (no options::workers), which use every usable CPU:
  // one call's worker count must not move it (workers = 1 would keep every later plain
  // call inline for good).
  if (kind == backend_kind::threads) set_inline_limit(overhead, cpus);
  e.seconds = overhead + work / static_cast<double>(lanes);
  return e;
}

/// Decides where a call runs. Only a `verbose` decision (explain, POLYMAP_EXPLAIN, a
/// report) carries its reasons and every backend's estimate: building that text would cost
/// more than the fork-join of a small call. `here`: a share of a call that another backend
/// (mpi) spreads over machines, which runs on this machine's own backends whatever the
/// call asked for. `sampled`, when given, is set to the number of items sampled.
plan decide(map_job& job, function_stats& stats, bool may_sample, bool verbose,
            bool here = false, std::size_t* sampled = nullptr) {
  const options& o = *job.opts;
  plan p;
  p.items = job.end - job.begin;
  // check_options has refused what the requested backend cannot hold.
  bool from_env = false;
  const backend_kind requested =
      here ? backend_kind::automatic : requested_backend(o, from_env);

  if (in_worker_process() && !stops_or_caps(o)) {
    // Worker processes have no thread pool (its threads live in the caller) and must
    // never touch a GPU: every map in them is a plain loop, but for one that needs a
    // timeout or a memory cap, which gets worker processes of its own (below).
    p.chosen = backend_kind::serial;
    if (verbose) p.reason = "inside a worker process: runs inline there";
    return p;
  }
  // An item that needs a timeout or a memory cap, or asked for the isolation of worker
  // processes (by options or POLYMAP_BACKEND), must never run on the calling thread, not
  // even to be timed: a crash there would end the program.
  if (stops_or_caps(o) || requested == backend_kind::processes) {
    may_sample = false;
  }
  // Binding and nice apply to pool threads and worker processes: the calling thread runs
  // no item of such a call, not even to time it.
  const bool placed = places_workers(o);
  if (placed) may_sample = false;

  // The per-item cost: from history when there is one, else from a sample.
  double cost = stats.seconds_per_item.load(std::memory_order_relaxed);
  if (cost > 0) {
    if (verbose) {
      const std::uint32_t calls = stats.measured.load();
      p.cost_source = calls != 0 ? "history of " + std::to_string(calls) + " calls"
                                 : std::string("an earlier sample (no call measured yet)");
    }
  } else if (may_sample && job.begin < job.end) {
    std::size_t count = 0;
    cost = sample(job, count);
    if (sampled != nullptr) *sampled = count;
    if (verbose) {
      p.cost_source = "sampled " + std::to_string(count) + " items on the calling thread";
    }
    if (stats.seconds_per_item.load(std::memory_order_relaxed) <= 0) {
      stats.seconds_per_item.store(cost, std::memory_order_relaxed);
    }
  } else if (verbose) {
    p.cost_source = "unknown";
  }
  p.seconds_per_item = cost;

  const std::size_t left = job.end - job.begin;
  const double work = cost * static_cast<double>(left);
  const std::size_t result_bytes = job.transfer != nullptr ? job.transfer->fixed_size : 0;
  backend_estimate serial = estimate(backend_kind::serial, o, left, work, result_bytes, verbose);
  backend_estimate threads = estimate(backend_kind::threads, o, left, work, result_bytes, verbose);
  if (verbose) {
    for (backend_kind kind : all_backends) {
      if (kind == backend_kind::serial) {
        p.estimates.push_back(serial);
      } else if (kind == backend_kind::threads) {
        p.estimates.push_back(threads);
      } else {
        p.estimates.push_back(estimate(kind, o, left, work, result_bytes, true));
      }
    }
  }

  if (requested != backend_kind::automatic) {
    p.chosen = requested;
    p.requested = true;
    if (verbose) {
      p.reason = from_env ? "requested by POLYMAP_BACKEND" : "requested by options::backend";
    }
    return p;
  }
  // Before the nesting rule: a timeout or a memory cap holds in a nested call too.
  if (stops_or_caps(o)) {
    const std::string what = std::string("options::") + stop_or_cap_option(o);
    if (!is_built(backend_kind::processes)) {
      throw backend_unavailable("polymap: " + what +
                                " needs the processes backend: " +
                                not_built_reason(backend_kind::processes));
    }
    p.chosen = backend_kind::processes;
    if (verbose) p.reason = what + " needs worker processes that can be killed";
    return p;
  }
  if (in_worker()) {
    p.chosen = backend_kind::serial;
    if (verbose) p.reason = "nested in a worker of another map: runs inline in that worker";
    return p;
  }
  if (left == 0) {
    p.chosen = backend_kind::serial;
    if (verbose) {
      p.reason = p.items == 0 ? "no items" : "every item already ran while the cost was sampled";
    }
  } else if (placed && threads.usable) {
    p.chosen = backend_kind::threads;
    if (verbose) {
      p.reason = std::string("options::") + (o.bind != bind::none ? "bind" : "nice") +
                 " applies to pool threads: the calling thread runs none of the items";
    }
  } else if (threads.usable && threads.workers > 1 &&
             threads.seconds < parallel_margin * serial.seconds) {
    p.chosen = backend_kind::threads;
    if (verbose) {
      char ratio[32];
      std::snprintf(ratio, sizeof ratio, "%.2f", serial.seconds / threads.seconds);
      p.reason = std::string("threads predicted ") + ratio + "x faster than serial";
    }
  } else {
    p.chosen = backend_kind::serial;
    if (verbose) {
      // More workers than CPUs take turns on them: one usable CPU runs nothing in parallel.
      p.reason = threads.workers <= 1 || topology::current().usable_count() <= 1
                     ? "one usable CPU (or one item): nothing to run in parallel"
                 : cost <= 0 ? "the cost is unknown (nothing was sampled), so no work is "
                               "predicted; the call itself times its first items, and may "
                               "choose otherwise"
                             : "too little work to repay a fork-join of the thread pool";
    }
  }
  return p;
}

}  // namespace

namespace {

/// The executor of `kind`, when it can run here.
/// @throws backend_unavailable naming the backend and why
executor& usable_executor(backend_kind kind) {
  executor& ex = executor_for(kind);
  if (!ex.available()) {
    throw backend_unavailable("polymap: backend " + std::string(to_string(kind)) +
                              " is not available here: " + ex.status());
  }
  return ex;
}

}  // namespace

backend_kind run_share(map_job& job, function_stats& stats) {
  const plan p = decide(job, stats, true, false, true);
  executor& ex = usable_executor(p.chosen);
  if (job.begin < job.end) ex.run(job, nullptr);
  return p.chosen;
}

backend_kind check_backend_available(const options& o) {
  bool from_env = false;
  const backend_kind requested = requested_backend(o, from_env);
  // A worker process runs what it is given on its own thread (decide() says so).
  if (requested != backend_kind::automatic && !in_worker_process()) {
    usable_executor(requested).check_call(o);
  }
  return requested;
}

backend_kind requested_backend(const options& o, bool& from_env) {
  from_env = false;
  if (o.backend != backend_kind::automatic || env().backend_text.empty()) return o.backend;
  if (!env().backend) {
    throw option_error("POLYMAP_BACKEND", env().backend_text,
                       "automatic, serial, threads, processes, cuda, kokkos or mpi");
  }
  from_env = true;
  return *env().backend;
}

std::size_t default_window(const options& opts) noexcept {
  const std::size_t workers = opts.workers != 0 ? opts.workers : topology::current().usable_count();
  return std::max<std::size_t>(64, 16 * workers);
}

plan make_plan(map_job& job, function_stats& stats, plan_sample how) {
  check_options(*job.opts);
  check_backend_available(*job.opts);
  std::size_t sampled = 0;
  plan p = decide(job, stats, how == plan_sample::copies, true, false, &sampled);
  if (sampled != 0) {
    p.cost_source += ", on copies of them";
    if (const std::size_t failed = job.state->failed(); failed != 0) {
      p.cost_source += " (" + std::to_string(failed) + " failed: the cost is theirs)";
    }
  } else if (how == plan_sample::uncopyable && p.cost_source == "unknown") {
    p.cost_source = "unknown: explain runs the function on copies of items, and these cannot "
                    "be copied";
  }
  return p;
}

namespace {

/// The value of the option that stop_or_cap_option() names.
std::string stop_or_cap_value(const options& o) {
  return o.timeout.count() > 0 ? std::to_string(o.timeout.count()) + " s"
                               : std::to_string(o.memory_limit) + " bytes";
}

}  // namespace

void refuse_stop_or_cap(const options& o, const std::string& backend) {
  throw option_error(stop_or_cap_option(o), stop_or_cap_value(o),
                     "none with backend " + backend +
                         ": only the processes backend can stop or cap an item");
}

void refuse_results(const options& o, const char* needs) {
  const std::string why = std::string("a result type that can come back from a worker process: ") +
                          needs;
  bool from_env = false;
  const backend_kind asked = requested_backend(o, from_env);
  if (asked == backend_kind::processes || !stops_or_caps(o)) {
    throw option_error(from_env ? "POLYMAP_BACKEND" : "backend", "processes", why);
  }
  throw option_error(stop_or_cap_option(o), stop_or_cap_value(o),
                     "none, or " + why + " (" + stop_or_cap_option(o) +
                         " runs the items in worker processes)");
}

void explain_if_asked(const plan& p) {
  if (env().explain) std::fprintf(stderr, "%s", p.to_string().c_str());
}

namespace {

using stop_link = std::optional<std::stop_callback<std::function<void()>>>;

/// Links `options::stop` to the call's state: a stop cancels the call.
void link_stop(stop_link& link, const options& o, run_state& state) {
  if (o.stop.stop_possible()) {
    link.emplace(o.stop, std::function<void()>([&state] { state.cancel_and_wait(); }));
  }
}

}  // namespace

void run_watched(run_state& state, const options& o, const std::function<void()>& body) {
  check_options(o);
  stop_link on_stop;
  link_stop(on_stop, o, state);
  progress_reporter progress(o, state);
  if (!state.stopping()) body();
}

#if POLYMAP_HAS_MPI
namespace {

/// Whether a call asks for the mpi backend (by its options or POLYMAP_BACKEND), without
/// throwing for a POLYMAP_BACKEND that names none.
bool asks_for_mpi(const options& o) noexcept {
  return o.backend == backend_kind::mpi ||
         (o.backend == backend_kind::automatic && env().backend == backend_kind::mpi);
}

}  // namespace
#endif

void refuse_across_ranks(const options& o, std::size_t items, const std::string& why) noexcept {
#if POLYMAP_HAS_MPI
  if (!asks_for_mpi(o)) return;
  run_state state(items);
  const map_job job = make_job(items, nullptr, nullptr, state, o);
  refuse_collective_call(job, why);
#else
  (void)o;
  (void)items;
  (void)why;
#endif
}

bool results_kept_elsewhere(const options& o) noexcept {
#if POLYMAP_HAS_MPI
  return asks_for_mpi(o) && results_on_another_rank(o);
#else
  (void)o;
  return false;
#endif
}

backend_kind check_call_start(const options& o, std::size_t items,
                              const char* results_refused) {
  try {
    check_options(o);
    const backend_kind asked = check_backend_available(o);
    if (results_refused != nullptr &&
        (asked == backend_kind::processes ||
         (asked == backend_kind::automatic && stops_or_caps(o)))) {
      refuse_results(o, results_refused);
    }
    return asked;
  } catch (const std::exception& e) {
    refuse_across_ranks(o, items, e.what());
    throw;
  }
}

backend_kind execute(map_job& job, function_stats& stats) {
  const options& o = *job.opts;
  backend_kind requested = backend_kind::automatic;
  try {
    check_options(o);
    // A backend asked for by name must be usable, even for a call with nothing to run, and
    // before decide() samples items on the calling thread (one named by POLYMAP_BACKEND).
    requested = job.decided != nullptr ? job.decided->chosen : check_backend_available(o);
  } catch (const std::exception& e) {
    // Refused here alone (an option that another rank's machine allows): the other ranks
    // of a collective call must hear of it, or they would wait for this one for ever.
    refuse_across_ranks(o, job.end - job.begin, e.what());
    throw;
  }
  run_state& state = *job.state;
  stop_link on_stop;
  link_stop(on_stop, o, state);
  progress_reporter progress(o, state);
  // A call on the mpi backend is collective: every rank takes part, even with nothing to
  // run or a stop before the start (its cancel then reaches every rank).
  const bool collective =
      requested == backend_kind::mpi && !in_item() && !in_worker() && !in_worker_process();
  if (!collective && (job.begin == job.end || state.stopping())) {
    if (o.report != nullptr) {
      o.report->backend = backend_kind::serial;
      o.report->decision.items = job.end - job.begin;
      o.report->decision.chosen = backend_kind::serial;
      o.report->decision.reason = job.begin == job.end ? "no items: nothing ran"
                                                       : "stopped before it started: nothing ran";
    }
    return backend_kind::serial;
  }

  const bool verbose = env().explain || o.report != nullptr;
  // A backend asked for by name (POLYMAP_BACKEND too) runs every item: none runs on the
  // calling thread first, where that backend may still refuse the call (cuda, for a
  // function that is not device-callable).
  plan p = job.decided != nullptr
               ? *job.decided
               : decide(job, stats, requested == backend_kind::automatic, verbose);
  explain_if_asked(p);
  executor& ex = usable_executor(p.chosen);
  const std::size_t items = job.end - job.begin;
  job.seconds_per_item = stats.seconds_per_item.load(std::memory_order_relaxed);
  // Workers start with blocks of items that take about half the stop-check interval at the
  // cost measured by earlier calls; at one item when the cost is only sampled, which a few
  // cheap first items can misjudge by orders of magnitude (run_items).
  if (job.seconds_per_item > 0 && stats.measured.load(std::memory_order_relaxed) != 0) {
    const double half = std::chrono::duration<double>(stop_check_interval).count() / 2;
    state.set_first_block(
        static_cast<std::size_t>(std::clamp(half / job.seconds_per_item, 1.0, 1e9)));
  }
  if (items != 0 || collective) ex.run(job, o.report);

  // Feed the history with the time workers spent inside chunks: no dispatch, no waiting,
  // no fork-join, so that the estimate does not drift with the backend it ran on.
  if (items != 0 && !state.stopping()) record_cost(stats, state.busy_seconds_per_item());
  if (o.report != nullptr) {
    if (items == 0) o.report->backend = p.chosen;
    o.report->decision = std::move(p);
  }
  return ex.kind();
}

}  // namespace polymap::detail
