// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The polymap command: parses the command line and hands over to one command.

#include <polymap/version.hpp>

#include "cli/cli_args.hpp"
#include "cli/commands.hpp"

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <iostream>

int main(int argc, char** argv) {
  using namespace polymap::cli;
  CLI::App app("polymap", "polymap");
  cli_args args;
  add_commands(app, args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 has an exit code per kind of error (105 for a validation error, 109 for an
    // unexpected argument...); every usage error of polymap is 2, as with most tools.
    const int code = app.exit(e);
    return code == 0 ? exit_ok : exit_usage;
  }

  try {
    switch (args.what) {
      case command::info:
        return run_info(args.info);
      case command::bench:
        return run_bench(args.bench);
      case command::not_implemented:
        fmt::print(stderr, "polymap {}: not implemented in polymap {} yet (see README)\n",
                   args.command_name, polymap::version);
        return exit_usage;
      case command::none:
        break;
    }
    std::cerr << app.help();
    return exit_usage;
  } catch (const std::exception& e) {
    fmt::print(stderr, "polymap: {}\n", e.what());
    return exit_failure;
  }
}
