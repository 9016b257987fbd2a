// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "cli/run/runner.hpp"

namespace polymap::cli {

/// Exit statuses of the polymap command, as documented in `polymap --help`.
enum exit_status : int {
  exit_ok = 0,       ///< the command did what was asked
  exit_failure = 1,  ///< it ran and failed (e.g. a bench result differs from serial's)
  exit_usage = 2,    ///< bad command line
};

/// The subcommand that was given.
enum class command {
  none,
  info,
  bench,
  run,
  status,
  watch,
  calibrate,
};

/// `polymap info`.
struct info_args {
  bool json = false;
};

/// `polymap bench`.
struct bench_args {
  bool json = false;
  std::string size = "medium";       ///< small, medium or large
  unsigned repeat = 5;               ///< timed runs of each kernel on each backend
  std::vector<std::string> kernels;  ///< empty: all of them
};

/// `polymap calibrate`.
struct calibrate_args {
  bool json = false;
  std::vector<int> devices;  ///< CUDA devices to measure; empty: every one
};

/// `polymap run`: the options as given; run_command.cpp checks them.
struct run_args {
  /// What the runner takes as it is (nice, timeout, retries, joblog, results, -k,
  /// --progress, --json, --journal, --retry-failed, --lock-timeout); the rest below is
  /// checked and turned into runner options by run_run.
  run::run_options options;
  std::string jobs;  ///< -j as given (see job_slots()); empty: one per usable CPU
  std::string bind = "none";
  std::string halt = "never";
  bool dry_run = false;
  bool shell = false;
  std::vector<std::string> arg_files;
  std::vector<std::string> words;  ///< the command template and its input sources
};

/// The most job slots -j may ask for.
constexpr std::size_t most_job_slots = 100000;

/// The job slots that -j `spec` asks for, on a machine whose usable CPUs are `usable`: N, or
/// as with GNU parallel, +N and -N (the CPUs plus or minus N) and N% (a share of the CPUs),
/// at least 1 for the last three.
/// @return nullopt for none of those forms, for N = 0, and for more than most_job_slots
[[nodiscard]] std::optional<std::size_t> job_slots(const std::string& spec, std::size_t usable);

/// `polymap status` and `polymap watch`.
struct status_args {
  std::string journal;
  bool json = false;
  unsigned top = 5;       ///< failures and slowest items shown
  double interval = 1;    ///< watch: seconds between refreshes
  double lock_timeout = 10;
};

/// Everything the command line said.
struct cli_args {
  command what = command::none;
  info_args info;
  bench_args bench;
  run_args run;
  status_args status;
  calibrate_args calibrate;
};

/// Names of the built-in kernels, in the order bench runs them.
[[nodiscard]] const std::vector<std::string>& kernel_names();

/// The words after `polymap run`, split into polymap's options and the command.
struct run_words {
  std::vector<std::string> options;  ///< for CLI11: known options and their values
  std::vector<std::string> command;  ///< the command, its arguments and input sources, as given
};

/// Splits the words after `polymap run` as GNU parallel does: polymap's options come first;
/// the command starts after a `--` or at the first word that is not an option (nor an
/// option's value), and every word from there on belongs to it, `--` included.
/// @param run the `run` subcommand, which says which options exist and which take a value
/// @throws std::runtime_error naming a word that starts with `-` in the options' position
///   but is not one of run's options
[[nodiscard]] run_words split_run_words(const CLI::App& run, const std::vector<std::string>& words);

/// Declares the options and subcommands of `app`, writing what was parsed into `args`.
/// `args` must outlive the parse.
void add_commands(CLI::App& app, cli_args& args);

}  // namespace polymap::cli
