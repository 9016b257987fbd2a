// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The kokkos backend for the generic path: a call's chunks, which are host code, run as a
// Kokkos::parallel_for over Kokkos's default host execution space (Serial, OpenMP or
// Threads, whichever the user's Kokkos was built with). A user's own KOKKOS_FUNCTION on a
// device space goes through <polymap/kokkos/map.hpp> instead.
#include <polymap/detail/execute.hpp>
#include <polymap/kokkos/map.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>

#include "chunk_sizer.hpp"
#include "executor.hpp"
#include "once_per_process.hpp"
#include "worker_flag.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <string>
#include <type_traits>

namespace polymap::detail {
namespace {

using host_space = Kokkos::DefaultHostExecutionSpace;

constinit once_per_process<std::string> start_problem_found;

class kokkos_executor_impl final : public executor {
 public:
  [[nodiscard]] backend_kind kind() const noexcept override { return backend_kind::kokkos; }
  /// A program that initialised Kokkos itself has it running; otherwise Kokkos must be able
  /// to start here (one built with CUDA cannot without a device).
  [[nodiscard]] bool available() const noexcept override {
    return Kokkos::is_initialized() || start_problem().empty();
  }
  [[nodiscard]] std::string status() const override {
    std::string s = std::string("Kokkos ") + std::to_string(KOKKOS_VERSION / 10000) + "." +
                    std::to_string(KOKKOS_VERSION / 100 % 100) + "." +
                    std::to_string(KOKKOS_VERSION % 100) + ", host execution space " +
                    host_space::name();
    if (!available()) s += ": unavailable, " + start_problem();
    return s;
  }
  [[nodiscard]] std::size_t parallelism(const options& o) const noexcept override {
    const auto c = static_cast<std::size_t>(std::max(1, host_concurrency()));
    return o.workers != 0 ? std::min(o.workers, c) : c;
  }
  [[nodiscard]] double overhead_seconds(const call_shape& /*call*/) const noexcept override {
    return host_concurrency() > 1 ? 5e-6 : 0.2e-6;
  }

  void run(const map_job& job, run_report* report) override {
    if (in_worker()) {
      run_nested(job, report);
      return;
    }
    // Initialised only if the program has not done it, finalised at exit only then:
    // Kokkos cannot start again after a finalize (kokkos/kokkos#4195).
    kokkos::ensure_initialized();
    // A fixed chunk size, from the measured cost when there is one: a Kokkos range has no
    // feedback from one chunk to the next. Unknown cost: a few chunks per worker, at most
    // 4096 items each, which each run in pieces that grow from one item towards the
    // sizer's target, so that a cancel or a fail_fast stop is seen within about a piece.
    const chunk_sizer sizer(job);
    const std::size_t left = job.end - job.begin;
    std::size_t size =
        sizer.adaptive() ? std::clamp<std::size_t>(left / (8 * parallelism(*job.opts)), 1, 4096)
                         : std::max<std::size_t>(1, sizer.size());
    // A stream (imap) bounds chunks to half its window: a larger one would wait for a
    // consumer that waits for it.
    if (job.max_chunk != 0) size = std::min(size, job.max_chunk);
    size = std::min(size, left);  // a chunk of SIZE_MAX: one chunk, and no overflow below
    const std::size_t chunks = left == 0 ? 0 : (left - 1) / size + 1;
    const map_job* j = &job;
    // One worker context per chunk: Kokkos gives no stable worker index on every space.
    Kokkos::parallel_for(
        "polymap::kokkos", Kokkos::RangePolicy<host_space>(0, chunks),
        [j, size](const std::size_t c) {
          if (j->state->stopping()) return;
          const worker_scope nested_calls_run_inline;
          worker_context w = make_worker(*j->state, *j->opts, backend_kind::kokkos);
          const std::size_t end = std::min(j->end, j->begin + (c + 1) * size);
          chunk_sizer(*j).run_all(*j, j->begin + c * size, end, w);
          w.flush();
        });
    host_space().fence();
    if (report != nullptr) {
      const options& o = *job.opts;
      report->backend = backend_kind::kokkos;
      report->workers = parallelism(o);
      report->note = std::string("Kokkos host execution space ") + host_space::name();
      if (places_workers(o) || o.workers > report->workers) {
        report->note += ": options::bind, nice and workers beyond its concurrency do not apply "
                        "(Kokkos places and counts its own threads)";
      }
    }
  }

 private:
  /// A call nested in an item of another map: its chunks run on the item's thread (Kokkos'
  /// host space does not nest: Kokkos 4's OpenMP takes a lock that the running
  /// parallel_for holds).
  static void run_nested(const map_job& job, run_report* report) {
    worker_context w = make_worker(*job.state, *job.opts, backend_kind::kokkos);
    chunk_sizer(job).run_all(job, job.begin, job.end, w);
    w.flush();
    if (report != nullptr) {
      report->backend = backend_kind::kokkos;
      report->workers = 1;
      report->note = "nested in an item of another map: ran inline on its thread";
    }
  }

  /// Why Kokkos cannot start in this process (empty: it can), asked once: the question may
  /// start the CUDA driver.
  static const std::string& start_problem() noexcept {
    return start_problem_found.get([]() noexcept {
      try {
        return kokkos::detail::why_kokkos_cannot_start();
      } catch (...) {
        return std::string();  // out of memory for the text: let initialise say it
      }
    });
  }

  /// The host space's threads: asked of Kokkos once it runs (an execution space made before
  /// Kokkos::initialize is an error in Kokkos 4, an abort in 5); before, Serial's one or the
  /// usable CPUs, which a parallel host space takes by default.
  static int host_concurrency() noexcept {
    if (!Kokkos::is_initialized()) {
#if defined(KOKKOS_ENABLE_SERIAL)
      if constexpr (std::is_same_v<host_space, Kokkos::Serial>) return 1;
#endif
      return static_cast<int>(topology::current().usable_count());
    }
    return host_space().concurrency();
  }
};

constinit never_destroyed<kokkos_executor_impl> the_executor;

}  // namespace

executor& kokkos_executor() { return the_executor.value; }

}  // namespace polymap::detail
