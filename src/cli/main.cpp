// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The polymap command: parses the command line and hands over to one command.

#include <polymap/version.hpp>

#include "cli/cli_args.hpp"
#include "cli/commands.hpp"

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace {

/// Writes what stdout still buffers: a command's output that cannot be written (a full
/// disk, a closed pipe) fails it, rather than leaving an empty file and status 0.
/// @return `code`, or exit_failure when stdout failed
int flushed(int code) {
  errno = 0;
  if (std::fflush(stdout) == 0 && std::ferror(stdout) == 0) return code;
  const int e = errno != 0 ? errno : EIO;
  polymap::cli::print_error("polymap: cannot write to standard output: {}\n", std::strerror(e));
  return code == polymap::cli::exit_ok ? polymap::cli::exit_failure : code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace polymap::cli;
  CLI::App app("polymap", "polymap");
  cli_args args;
  add_commands(app, args);

  // `polymap run [OPTIONS] [--] COMMAND...`: CLI11 sees only polymap's options; the
  // command and its inputs are kept byte for byte, a `--` among them included.
  std::vector<std::string> words(argv + 1, argv + argc);
  std::vector<std::string> command_words;
  if (!words.empty() && words.front() == "run") {
    try {
      run_words split = split_run_words(*app.get_subcommand("run"),
                                        std::vector<std::string>(words.begin() + 1, words.end()));
      words.resize(1);
      words.insert(words.end(), split.options.begin(), split.options.end());
      command_words = std::move(split.command);
    } catch (const std::runtime_error& e) {
      print_error("polymap run: {}\n", error_text(e));
      return exit_usage;
    }
  }
  std::reverse(words.begin(), words.end());  // CLI11 takes a vector in reverse order

  try {
    app.parse(words);
  } catch (const CLI::ParseError& e) {
    // CLI11 has an exit code per kind of error (105 for a validation error, 109 for an
    // unexpected argument...); every usage error of polymap is 2, as with most tools.
    const int code = app.exit(e);  // --help and --version print here, and exit 0
    return flushed(code == 0 ? exit_ok : exit_usage);
  }

  try {
    switch (args.what) {
      case command::info:
        return flushed(run_info(args.info));
      case command::bench:
        return flushed(run_bench(args.bench));
      case command::run:
        args.run.words.insert(args.run.words.end(), command_words.begin(), command_words.end());
        // A batch writes its jobs' output itself, and says when it cannot; --dry-run prints.
        return flushed(run_run(args.run));
      case command::status:
        return flushed(run_status(args.status, false));
      case command::watch:
        return flushed(run_status(args.status, true));
      case command::calibrate:
        return flushed(run_calibrate(args.calibrate));
      case command::none:
        break;
    }
    std::cerr << app.help();
    return exit_usage;
  } catch (const std::exception& e) {
    if (std::ferror(stdout) != 0) {
      // fmt's own text ("cannot write to file") does not say which.
      print_error("polymap: cannot write to standard output: {}\n", e.what());
    } else {
      print_error("polymap: {}\n", error_text(e));
    }
    return exit_failure;
  }
}
