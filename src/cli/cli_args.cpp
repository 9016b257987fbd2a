// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/cli_args.hpp"

#include <polymap/version.hpp>

#include <string>
#include <vector>

namespace polymap::cli {

namespace {

constexpr const char* exit_status_text =
    "Exit status: 0 success; 1 the command ran and failed (e.g. a bench result that differs\n"
    "from serial's); 2 a usage error: an unknown option or command, no command at all (which\n"
    "prints this help on stderr), or a command that is not implemented yet.\n"
    "Environment: POLYMAP_BACKEND forces a backend for automatic calls; POLYMAP_EXPLAIN=1\n"
    "prints each automatic choice on stderr.";

/// A command of DESIGN.md that this version does not have. It is registered so that it
/// fails with a clear message rather than as an unknown command; it accepts any arguments
/// (prefix_command) so that `polymap run -j 8 -- ./x {}` reaches that message too.
void add_future_command(CLI::App& app, cli_args& args, const std::string& name,
                        const std::string& description) {
  CLI::App* sub = app.add_subcommand(name, description + " (not implemented yet)");
  sub->prefix_command();
  sub->callback([&args, name] {
    args.what = command::not_implemented;
    args.command_name = name;
  });
}

}  // namespace

const std::vector<std::string>& kernel_names() {
  static const std::vector<std::string> names = {"saxpy", "stencil", "mandelbrot", "black_scholes",
                                                 "pi",    "nbody"};
  return names;
}

void add_commands(CLI::App& app, cli_args& args) {
  app.description("polymap " + std::string(polymap::version) +
                  ": one map for every core. Shows what polymap sees on this machine and how "
                  "its backends compare.");
  app.footer(exit_status_text);
  app.set_version_flag("--version", "polymap " + std::string(polymap::version));
  app.require_subcommand(0, 1);

  CLI::App* info = app.add_subcommand(
      "info", "Topology, usable CPUs and worker count, backends in this build, environment");
  info->add_flag("--json", args.info.json, "Print one JSON object instead of text");
  info->callback([&args] { args.what = command::info; });

  CLI::App* bench = app.add_subcommand(
      "bench",
      "Run the built-in kernels on every available backend and on automatic; check that every "
      "backend's results equal serial's");
  bench->add_flag("--json", args.bench.json,
                  "Print a JSON array of result rows instead of a table");
  bench
      ->add_option("--size", args.bench.size,
                   "Problem size: small (well under a second), medium (a few seconds on 2 cores), "
                   "large (about 1 GB of memory)")
      ->check(CLI::IsMember({"small", "medium", "large"}))
      ->capture_default_str();
  bench->add_option("--repeat", args.bench.repeat, "Timed runs per kernel and backend (median)")
      ->check(CLI::Range(1U, 1000U))
      ->capture_default_str();
  bench
      ->add_option("--kernel", args.bench.kernels,
                   "Run only this kernel (repeatable, or comma-separated); default: all")
      ->check(CLI::IsMember(kernel_names()))
      ->delimiter(',')
      ->allow_extra_args(false)
      ->type_name("NAME");
  bench->callback([&args] { args.what = command::bench; });

  add_future_command(app, args, "run", "Run a function or a command over many items");
  add_future_command(app, args, "status", "Counts, failures and slowest items of a journal");
  add_future_command(app, args, "watch", "Live view of a journal");
  add_future_command(app, args, "calibrate", "Measure this machine's constants for automatic");
}

}  // namespace polymap::cli
