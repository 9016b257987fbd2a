// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/map_job.hpp>
#include <polymap/plan.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace polymap::detail {

/// What the cost of a call on top of its items' work depends on.
struct call_shape {
  std::size_t workers = 1;       ///< workers the call would use
  std::size_t items = 0;         ///< items it would run
  std::size_t result_bytes = 0;  ///< bytes of one fixed-size result; 0 for none or encoded
};

/// One backend behind one small interface. `polymap::backend` (the enum users write)
/// names a backend; an executor is what runs it.
class executor {
 public:
  virtual ~executor() = default;
  [[nodiscard]] virtual backend_kind kind() const noexcept = 0;
  /// Built in and usable on this machine now (e.g. a device is present).
  [[nodiscard]] virtual bool available() const noexcept = 0;
  /// Why `available()` is false, or a short description when it is true.
  [[nodiscard]] virtual std::string status() const = 0;
  /// Workers a call with these options would use.
  [[nodiscard]] virtual std::size_t parallelism(const options& opts) const noexcept = 0;
  /// What a call costs on top of its items' own work, in seconds, as measured here:
  /// start-up, fork-join, moving results.
  [[nodiscard]] virtual double overhead_seconds(const call_shape& call) const noexcept = 0;
  /// Checks what only this backend can check of a call's options, on the thread that makes
  /// the call (before map_async's job starts).
  /// @throws option_error naming the option
  virtual void check_call(const options& /*opts*/) const {}
  /// Runs items [job.begin, job.end) and blocks until they finished or the call stopped.
  /// Item failures go to job.state; fills `report` when not null.
  /// @throws polymap::error when the backend itself fails
  virtual void run(const map_job& job, run_report* report) = 0;
};

/// The executors of the backends, one factory per backend folder.
[[nodiscard]] executor& serial_executor();
[[nodiscard]] executor& threads_executor();
[[nodiscard]] executor& processes_executor();
[[nodiscard]] executor& cuda_executor();    // built when POLYMAP_HAS_CUDA
[[nodiscard]] executor& kokkos_executor();  // built when POLYMAP_HAS_KOKKOS
[[nodiscard]] executor& mpi_executor();     // built when POLYMAP_HAS_MPI

/// The executor of a concrete backend kind.
/// @throws backend_unavailable when `kind` is not built into this library
[[nodiscard]] executor& executor_for(backend_kind kind);

/// Whether `kind` is compiled into this library.
[[nodiscard]] bool is_built(backend_kind kind) noexcept;

/// Why a backend that is not built is missing, one sentence.
[[nodiscard]] std::string not_built_reason(backend_kind kind);

/// The executor of `kind` when it is built and available here; else null, with `why_not`
/// saying why (not built, or the executor's status).
[[nodiscard]] executor* usable_executor(backend_kind kind, std::string& why_not);

/// Tells the other ranks of an MPI job that this rank refuses a call on the mpi backend
/// before it runs (a bad option here alone), so that they end it too, each with an error
/// naming this rank and `why`, rather than wait for it for ever. Does nothing where the call
/// would not be collective (nested, or MPI is not reachable).
void refuse_collective_call(const map_job& job, const std::string& why) noexcept;

/// Whether this rank of a call on the mpi backend with options `o` will leave its results
/// on rank 0 (options::results rank0, on a rank but 0), as far as the calling thread can tell
/// before the call: false where MPI is not reachable or may not be asked now.
[[nodiscard]] bool results_on_another_rank(const options& o) noexcept;

/// Runs items [job.begin, job.end) on the backend that automatic picks among this
/// machine's own (serial, threads, processes: never the one the call asked for), with no
/// progress report, stop link or run report of its own: the share of a call that the mpi
/// backend gave this rank. Samples the cost into `stats` when it is unknown.
/// @return the backend the share ran on
backend_kind run_share(map_job& job, function_stats& stats);

}  // namespace polymap::detail
