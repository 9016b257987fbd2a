// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/options.hpp>

#include "cli/run/halt.hpp"
#include "cli/run/placeholders.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace polymap::cli::run {

/// Everything `polymap run` was told, checked.
struct run_options {
  std::size_t jobs = 1;                ///< job slots
  polymap::bind bind = polymap::bind::none;
  std::optional<int> nice;
  double timeout = 0;                  ///< seconds per attempt; 0: none
  unsigned retries = 0;                ///< extra attempts after a failure
  halt_policy halt;
  std::string joblog;
  std::string results;                 ///< directory for each item's stdout and stderr
  bool keep_order = false;
  bool progress = false;
  bool json = false;
  std::string journal;                 ///< empty: no journal
  bool retry_failed = false;
  double lock_timeout = 10;
};

/// Runs `items` through `command`: the loop of `polymap run`. Starts jobs in free slots,
/// reaps them, enforces timeouts, retries with backoff, --halt, signals (SIGINT/SIGTERM:
/// terminate the running jobs' process groups, record them interrupted, return 130/143;
/// SIGHUP: start nothing new and let running jobs finish), and records every end in the
/// journal before the slot it freed is used again.
/// @return the exit status of polymap: 0 all done, 1 an item failed, a halt, or a journal
///   error, 128+signal when stopped by SIGINT or SIGTERM
/// @throws journal_error when the journal cannot be opened; std::runtime_error when the
///   --results directory or the joblog cannot be written
int run_batch(const run_options& options, const command_template& command,
              const std::vector<std::vector<std::string>>& items);

}  // namespace polymap::cli::run
