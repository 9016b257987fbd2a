// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/map_job.hpp>
#include <polymap/options.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "backends/mpi/communicator.hpp"
#include "backends/mpi/share_report.hpp"

namespace polymap::detail::mpi {

/// One call spread over the ranks of an MPI job: a chunked task farm. Rank 0 hands out
/// chunks of the index space, guided (each about a quarter of what is left over the
/// ranks, so that the last ones are small and the ranks end together), and runs chunks of
/// its own between the requests it answers. Every other rank asks for its next chunk as
/// soon as it is given one, so that it has one in hand while rank 0 answers. Each rank runs
/// a chunk on its own machine's backends (automatic: serial, threads or processes), and
/// sends its results, failures and finished ranges to rank 0. At the end rank 0 tells every
/// rank the call's outcome and broadcasts the results: every rank returns the whole call
/// (or rank 0 alone keeps them, under options::results rank0).
///
/// Every rank of the communicator must make the same call (the same items, in the same
/// order of calls); rank 0 checks the number of items and the size of a result.
class task_farm {
 public:
  /// Results cross as job.transfer says: fixed-size ones as raw bytes, straight from the
  /// call's memory, others encoded one by one (the executor refused calls that have
  /// neither way).
  task_farm(communicator& comm, const map_job& job);

  /// Runs the call on every rank; leaves the outcome in job.state, as any backend does.
  /// `refused`: why this rank refuses the call (an option, a result type): it runs nothing
  /// but still takes part, so that every rank ends the call with that reason.
  /// @throws polymap::error on every rank when a rank refused the call, the ranks' calls
  ///   differ, or a rank's backend failed. A rank that fails in the middle of its messages
  ///   (an MPI error) ends the MPI job (MPI_Abort): the others would wait for it for ever.
  void run(const std::string& refused = {});

  /// The items this rank ran, and the backends they ran on (for run_report).
  [[nodiscard]] std::size_t items_here() const noexcept { return items_here_; }
  [[nodiscard]] std::string ran_on() const;

 private:
  void run_root();
  void run_worker();
  /// Runs `chunk` on this machine; failures and finished ranges go to the call's state.
  void run_here(index_range chunk);
  /// The next chunk to hand out (to this rank itself when `own`); empty when none is left
  /// or the call stops.
  index_range take(bool own);
  /// Rank 0: reads one report (with its results) and answers it with the next chunk.
  void serve_one();
  /// Rank 0: waits for the encoded results on their way from rank `from` (all ranks when
  /// negative) and stores them.
  void take_encoded(int from);
  /// Every rank: rank 0's account of the whole call, and the results.
  void finish();
  /// Appends the results of the items in `ranges` but those that failed, each as its index,
  /// its size and its bytes. @return the items whose codec threw (left out), as failures
  [[nodiscard]] std::vector<item_failure> encode_results(const std::vector<index_range>& ranges,
                                                         const std::vector<item_failure>& failures,
                                                         std::string& out) const;
  /// Stores the results that encode_results wrote, each of an item `within`.
  /// @return the items whose codec threw (not stored), as failures
  /// @throws polymap::error when `bytes` are not such results
  [[nodiscard]] std::vector<item_failure> decode_results(std::string_view bytes,
                                                         index_range within) const;
  [[nodiscard]] share_report identity() const;
  [[nodiscard]] bool stopped() const noexcept { return job_.state->stopping() || !error_.empty(); }

  communicator& comm_;
  map_job job_;
  options here_;                  ///< the call's options, for this machine's backends (automatic)
  std::byte* results_ = nullptr;  ///< fixed-size results: item i's at results_ + i * size
  std::size_t result_size_ = 0;
  bool encoded_ = false;            ///< results that cross encoded one by one
  bool results_to_rank0_ = false;  ///< options::results: rank 0 keeps them, nothing is broadcast
  std::uint64_t call_hash_ = 0;    ///< hash_of(job.call_type), sent with every report
  std::string encoded_out_;        ///< a worker's encoded results on their way
  function_stats stats_;
  std::size_t next_;         ///< rank 0: the first item not handed out
  std::vector<int> due_;     ///< rank 0: reports each rank still owes
  std::vector<char> heard_;  ///< rank 0: 1 for each rank that has asked for work
  /// Rank 0: encoded results on their way from each rank, and the chunk they are of.
  struct encoded_in {
    std::unique_ptr<std::string> bytes;  ///< not moved while MPI writes into it
    index_range chunk{};
  };
  std::vector<encoded_in> encoded_in_;
  std::string error_;        ///< why the call fails on every rank (rank 0's), or this rank's
                             ///< backend failed (a worker's, sent with its next report)
  std::string message_;      ///< the last message received
  std::size_t items_here_ = 0;
  unsigned ran_on_ = 0;  ///< a bit for each backend_kind a chunk ran on
};

}  // namespace polymap::detail::mpi
