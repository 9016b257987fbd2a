// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// `polymap run`: checks the options, reads the input sources and hands over to the runner.

#include <polymap/topology.hpp>

#include "cli/commands.hpp"
#include "cli/run/arg_sources.hpp"
#include "cli/run/fd_io.hpp"
#include "cli/run/placeholders.hpp"
#include "cli/run/rank_link.hpp"
#include "cli/run/runner.hpp"
#include "journal/journal.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace polymap::cli {

namespace {

/// Whether --joblog `path` is polymap's stdout: "-", or a name of the file that stdout is
/// (/dev/stdout, or /dev/stderr under 2>&1), where its lines would fall among --json's.
bool joblog_is_stdout(const std::string& path) {
  if (path == "-") return true;
  const std::string name = !path.empty() && path.front() == '+' ? path.substr(1) : path;
  struct stat file {};
  struct stat out {};
  return !name.empty() && stat(name.c_str(), &file) == 0 && fstat(1, &out) == 0 &&
         file.st_dev == out.st_dev && file.st_ino == out.st_ino;
}

}  // namespace

int run_run(const run_args& args) {
  run::open_closed_standard_fds();  // before anything opens a descriptor (MPI too)
  run::run_options options = args.options;
  const std::size_t usable = topology::current().usable_count();
  const std::optional<std::size_t> asked = args.jobs.empty() ? usable
                                                             : job_slots(args.jobs, usable);
  if (!asked) {  // CLI11 admits only its forms: a +N past the most, on this machine's CPUs
    print_error("polymap run: -j {}: more than {} job slots with {} usable CPUs\n",
               args.jobs, most_job_slots, usable);
    return exit_usage;
  }
  options.jobs = *asked;
  // CLI11 admits only the policy names parse_bind knows.
  options.bind = polymap::parse_bind(args.bind).value_or(polymap::bind::none);
  // Under an MPI launcher, rank 0 runs the batch and the other ranks serve its jobs, before
  // anything reads the input: only rank 0 reads it (stdin, files), and only rank 0 says
  // what is wrong with the command line.
  run::rank_role role;
  try {
    role = run::join_ranks();
  } catch (const std::exception& e) {
    print_error("polymap run: {}\n", error_text(e));
    return exit_failure;
  }
  if (role.serve) return run::serve_jobs(options, role.inherited);
  run::command_line line;
  try {
    line = run::split_command_line(args.words, args.arg_files);
    options.halt = run::parse_halt(args.halt);
  } catch (const std::runtime_error& e) {
    print_error("polymap run: {}\n", error_text(e));
    return exit_usage;
  }
  if (options.json && joblog_is_stdout(options.joblog)) {
    print_error("polymap run: --joblog {} and --json would both write to stdout: give "
                       "--joblog another file\n",
               options.joblog);
    return exit_usage;
  }
  if (options.retry_failed && options.journal.empty()) {
    print_error("polymap run: --retry-failed needs --journal\n");
    return exit_usage;
  }
  std::unique_ptr<run::command_template> command;
  try {
    command = std::make_unique<run::command_template>(line.command, line.sources.size(),
                                                      args.shell);
  } catch (const std::runtime_error& e) {
    print_error("polymap run: {}\n", error_text(e));
    return exit_usage;
  }
  run::item_product items;
  try {
    items = run::item_product(std::move(line.sources));
  } catch (const std::runtime_error& e) {
    print_error("polymap run: {}\n", error_text(e));
    return exit_usage;
  }
  if (args.dry_run) {
    // With a journal, what a rerun would run: neither the items done nor, without
    // --retry-failed, the ones that failed.
    std::unordered_map<std::string, item_state> recorded;
    if (!options.journal.empty() && access(options.journal.c_str(), F_OK) == 0) {
      try {
        recorded = journal(options.journal, {.lock_timeout = options.lock_timeout,
                                             .read_only = true})
                       .states();
      } catch (const journal_error& e) {
        print_error("polymap run: {}\n", error_text(e));
        return exit_failure;
      }
    }
    const std::vector<std::string> keys =
        recorded.empty() ? std::vector<std::string>{} : run::journal_keys(*command, items);
    // Every slot of the run, the other ranks' after rank 0's.
    const std::size_t slots = options.jobs + (role.link ? role.link->slots() : 0);
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!keys.empty()) {
        const auto found = recorded.find(keys[i]);
        const bool skipped = found != recorded.end() &&
                             (found->second == item_state::done ||
                              (found->second == item_state::failed && !options.retry_failed));
        if (skipped) continue;
      }
      const std::vector<std::string> argv = command->expand(items[i], i + 1, i % slots + 1);
      if (options.json) {
        // As the run's events are, one a line; bytes that are not UTF-8 become U+FFFD.
        const nlohmann::json event = {
            {"event", "dry-run"}, {"seq", i + 1}, {"slot", i % slots + 1}, {"command", argv}};
        fmt::print("{}\n",
                   event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      } else {
        fmt::print("{}\n", run::display_command(argv));
      }
    }
    return exit_ok;
  }
  if (!options.results.empty()) {
    // Checked before any item runs or is claimed, so that nothing is lost.
    try {
      run::prepare_results_dir(options.results);
    } catch (const std::runtime_error& e) {
      print_error("polymap run: {}\n", error_text(e));
      return exit_usage;
    }
  }
  return run::run_batch(options, *command, items, role.link.get());
}

}  // namespace polymap::cli
