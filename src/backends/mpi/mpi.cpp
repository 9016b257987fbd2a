// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <mutex>
#include <optional>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/remote.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>
#include <polymap/topology.hpp>
#include <string>

#include "backends/mpi/communicator.hpp"
#include "backends/mpi/task_farm.hpp"
#include "executor.hpp"
#include "once_per_process.hpp"

namespace polymap::detail {

namespace {

/// Why a call's results cannot cross between ranks, or nullopt when they can: none (for_each,
/// a void function), fixed-size ones kept one after another in the call's memory (sent as
/// they are), or any the call can read back and encode (trivially copyable, or a codec).
std::optional<std::string> results_refused(const map_job& job) {
  const result_transfer* t = job.transfer;
  if (t != nullptr && t->unsupported != nullptr) {
    return std::string("a result type that can cross between ranks: ") + transferable_results;
  }
  if (t != nullptr && t->deliver == nullptr) return std::nullopt;  // no results
  if (t != nullptr && t->fixed_size != 0 && t->fixed_target != nullptr) return std::nullopt;
  if (t != nullptr && t->encode != nullptr) return std::nullopt;
  return "a call whose results the ranks can send (map; map_into of a range of the "
         "function's own result type; for_each): imap's streams, and map_into that converts "
         "each result, do not cross between ranks in this version";
}

/// Whether the calling thread runs items of a map: a call on the mpi backend made there
/// runs inline, not collectively (whether an item runs on the calling thread differs between
/// ranks).
bool nested() noexcept { return in_item() || in_worker() || in_worker_process(); }

/// The mpi backend: the ranks of an MPI job share a call's items (see mpi::task_farm).
class mpi_executor_impl final : public executor {
 public:
  [[nodiscard]] backend_kind kind() const noexcept override { return backend_kind::mpi; }
  [[nodiscard]] bool available() const noexcept override {
    std::string why_not;
    return mpi::reachable(why_not);
  }
  [[nodiscard]] std::string status() const override {
    std::string why_not;
    if (!mpi::reachable(why_not)) return why_not;
    const int ranks = mpi::known_ranks();
    return (ranks > 0 ? std::to_string(ranks) : std::string("the")) +
           " ranks of this MPI job, each running its share on its own machine's backends";
  }
  [[nodiscard]] std::size_t parallelism(const options& o) const noexcept override {
    const int ranks = mpi::known_ranks(o.comm);
    const std::size_t here = o.workers != 0 ? o.workers : topology::current().usable_count();
    return static_cast<std::size_t>(ranks > 0 ? ranks : 1) * here;
  }
  [[nodiscard]] double overhead_seconds(const call_shape& /*call*/) const noexcept override {
    return 0;  // never weighed: automatic does not choose a collective backend
  }
  void check_call(const options& o) const override {
    // Nested, a call runs inline, and names no communicator to MPI. A call running on
    // another thread now, where MPI takes one at a time, leaves the check to the refusal
    // that this call then meets.
    if (!o.comm.fortran.has_value() || nested()) return;
    std::unique_lock<std::mutex> serial;
    if (may_call_mpi(serial)) mpi::communicator::validate(o.comm);
  }

  /// Whether this rank of a call with options `o` will leave its results on rank 0, as far
  /// as the calling thread can tell before the call (false where it cannot).
  [[nodiscard]] bool results_on_another_rank(const options& o) const noexcept {
    if (o.results != polymap::mpi::results::rank0 || nested()) return false;
    try {
      std::unique_lock<std::mutex> serial;
      return may_call_mpi(serial) && mpi::communicator::rank_in(o.comm) > 0;
    } catch (...) {
      return false;  // the call itself says what is wrong
    }
  }

  void run(const map_job& job, run_report* report) override {
    // Nested in an item (of any map, on any thread), a call runs there: the other ranks
    // are not making it.
    if (nested()) {
      serial_executor().run(job, report);
      if (report != nullptr) report->note = "nested in an item: ran inline there, not over MPI";
      return;
    }
    if (const std::optional<std::string> why = results_refused(job)) {
      bool from_env = false;
      (void)requested_backend(*job.opts, from_env);
      const option_error refusal(from_env ? "POLYMAP_BACKEND" : "backend", "mpi", *why);
      join_refused(job, refusal.what());
      throw refusal;
    }
    farm_call(job, nullptr, report);
  }

  /// Takes part in a call that this rank refuses before it runs (`why`), so that every
  /// rank ends it (the others throw polymap::error naming this rank and why), when the
  /// call can reach them; returns, for the caller to throw its own error.
  void join_refused(const map_job& job, const std::string& why) noexcept {
    try {
      farm_call(job, &why, nullptr);
    } catch (...) {
      // The call's own error is the one to throw here.
    }
  }

 private:
  /// Whether the calling thread may ask MPI now, short of MPI's own thread rules: always
  /// under MPI_THREAD_MULTIPLE; below it only while no call of polymap's on another thread
  /// holds MPI's one thread at a time (`serial` then holds it off until destroyed).
  bool may_call_mpi(std::unique_lock<std::mutex>& serial) const {
    if (mpi::communicator::thread_multiple()) return true;
    serial = std::unique_lock(serialised_, std::try_to_lock);
    return serial.owns_lock();
  }

  /// Runs `job` with the other ranks of its communicator, or, given `refused`, takes part in
  /// it only to end it everywhere with that reason.
  void farm_call(const map_job& job, const std::string* refused, run_report* report) {
    std::unique_lock<std::mutex> serial;
    mpi::communicator& comm = claim(job, serial);
    const std::unique_lock lock(comm.busy(), std::adopt_lock);
    const mpi::communicator::call_running running;
    mpi::task_farm farm(comm, job);
    farm.run(refused != nullptr ? *refused : std::string());
    if (report != nullptr) {
      report->backend = backend_kind::mpi;
      report->workers = static_cast<std::size_t>(comm.size());
      report->note = "rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) +
                     " ran " + std::to_string(farm.items_here()) + " items, on " + farm.ran_on();
    }
  }

  /// The communicator of the call, held for it (its busy() locked, for the caller to
  /// adopt). Ranks meet in the order of their calls on a communicator: two calls on one at
  /// once would mix their messages. Calls on two communicators may run at once where MPI
  /// takes calls from several threads at once; elsewhere `serial` holds every call apart.
  /// @throws polymap::error when another call holds the communicator, or MPI's one thread
  ///   at a time is taken; option_error for a communicator that cannot share a call
  mpi::communicator& claim(const map_job& job, std::unique_lock<std::mutex>& serial) {
    if (!may_call_mpi(serial)) {
      throw error(
          "polymap: backend mpi: another call on the mpi backend is running in this "
          "process, and MPI takes calls from one thread at a time: two calls at once need "
          "MPI_THREAD_MULTIPLE and a communicator each (options::comm)");
    }
    return mpi::communicator::claim(job.opts->comm);
  }

  mutable std::mutex serialised_;
};

constinit never_destroyed<mpi_executor_impl> the_executor;

}  // namespace

executor& mpi_executor() { return the_executor.value; }

bool results_on_another_rank(const options& o) noexcept {
  std::string why_not;
  return mpi::reachable(why_not) && the_executor.value.results_on_another_rank(o);
}

void refuse_collective_call(const map_job& job, const std::string& why) noexcept {
  if (nested()) return;  // not collective there
  std::string why_not;
  if (!mpi::reachable(why_not)) return;
  the_executor.value.join_refused(job, why);
}

}  // namespace polymap::detail
