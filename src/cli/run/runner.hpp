// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/options.hpp>

#include "cli/run/arg_sources.hpp"
#include "cli/run/halt.hpp"
#include "cli/run/placeholders.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace polymap::cli::run {

class rank_link;

/// Everything `polymap run` was told, checked.
struct run_options {
  std::size_t jobs = 1;                ///< job slots
  polymap::bind bind = polymap::bind::none;
  std::optional<int> nice;
  double timeout = 0;                  ///< seconds per attempt; 0: none
  unsigned retries = 0;                ///< extra attempts after a failure
  halt_policy halt;
  std::string joblog;                  ///< "-": stdout; "+FILE": append to FILE
  std::string results;                 ///< directory for each item's stdout and stderr
  bool keep_order = false;
  bool progress = false;
  bool json = false;
  std::string journal;                 ///< empty: no journal
  bool retry_failed = false;
  double lock_timeout = 10;
};

/// Creates the --results directory `dir` unless it is one already, and checks that it can
/// be written. @throws std::runtime_error naming it and the cause
void prepare_results_dir(const std::string& dir);

/// Runs `items` through `command`: the loop of `polymap run`. Starts jobs in free slots,
/// reaps them, enforces timeouts, retries with backoff, --halt, signals (SIGINT, SIGTERM and
/// SIGHUP: terminate the running jobs' process groups, record them interrupted, return
/// 128+signal; a stdout or stderr whose reader is gone stops it the same way, with SIGPIPE),
/// and records every end in the journal once the item's output is written out, before the
/// slot it freed is used again, but for an item whose output --keep-order holds back: that
/// one stays running in the journal until its turn comes and its output is written. Each
/// item's --results files go to DIR/N, N its id in the journal or, without one, its position.
/// Each item's --results files are written before its end is recorded; a write that fails
/// stops the run and records the item interrupted. So does a write of an item's output to
/// stdout or stderr (SIGPIPE and SIGXFSZ are ignored while it runs: a pipe whose reader is
/// gone stops the run as SIGPIPE would, with a notice on stderr unless that is the pipe; any
/// other error, a full disk or the file size limit, with a message and exit status 1); after
/// a write to one of them failed, nothing more is written there. A stdout or stderr that is
/// not being read holds that output, and the start of new jobs, but not the rest: the wait
/// for it still takes the stopping signals, collects the jobs that exit, sends the --timeout
/// kills and renews the lease; once the run stops its jobs it gives up when nothing went out
/// for 1 s (at once after a second stopping signal), and the item is recorded interrupted. A --joblog file gets an
/// item's line once its output is written, none when it is lost. Each failed item gets a
/// line on stderr (its number, why, its command line) as it fails, and the run a count of
/// them at its end, unless the joblog is stderr; when --json writes to stderr's pipe or
/// file, polymap's lines there are JSON events (`warning`, `error`) or left out where the
/// events say it already. The caller opens descriptors 0, 1 and 2 that are closed on
/// /dev/null first, for polymap and its jobs (open_closed_standard_fds(), before anything
/// opens a descriptor: MPI too).
/// @return the exit status of polymap, the first of these that applies: 1 for a journal
///   error; 128+signal when stopped by SIGINT, SIGTERM or SIGHUP; 141 when stopped by a
///   closed stdout or stderr; 1 for a --results file or an item's output that could not be
///   written; 1 for a halt or a failed item (in this run, or in an earlier one of the
///   journal without --retry-failed); else 0
/// The caller checks the --results directory first (prepare_results_dir), before anything
/// runs or is claimed.
/// Under --keep-order, output held back past a bound in memory waits in an unnamed file in
/// $TMPDIR (else /tmp), made when the first output has to wait there; where it cannot be
/// made, or a write to it fails, that output is kept in memory, with a warning (once).
/// @throws journal_error when the journal cannot be opened; std::runtime_error when the
///   joblog cannot be used or a --results item folder cannot be made
/// With `ranks` (rank 0 of an MPI job, join_ranks()), the other ranks' slots follow this
/// machine's: their jobs start there, and their ends and output come back here, to be
/// written, recorded and retried as this machine's are.
int run_batch(const run_options& options, const command_template& command,
              const item_product& items, rank_link* ranks = nullptr);

/// Each item's key in a journal: the command template and the item's bytes, plus how many
/// identical items came before it (stable when the input is reordered or extended, unlike a
/// sequence number).
[[nodiscard]] std::vector<std::string> journal_keys(
    const command_template& command, const item_product& items);

}  // namespace polymap::cli::run
