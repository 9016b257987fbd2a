// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/cli_args.hpp"

#include <polymap/version.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace polymap::cli {

namespace {

constexpr const char* exit_status_text =
    "Exit status: 0 success; 1 the command ran and failed (e.g. a bench result that differs\n"
    "from serial's, an item of run that failed, now or in an earlier run of its journal, a\n"
    "--halt, a journal error; status and watch: the journal has failed items or cannot be\n"
    "read, or watch found no live runner to finish the batch); 129/130/143 run was stopped\n"
    "by SIGHUP/SIGINT/SIGTERM; 141 run stopped because its stdout or stderr is a pipe nobody\n"
    "reads; 2 a usage error: an unknown option or command, or no command at all (which\n"
    "prints this help on stderr).\n"
    "Environment: POLYMAP_BACKEND forces a backend for automatic calls; POLYMAP_EXPLAIN=1\n"
    "prints each automatic choice on stderr.";

/// A number of seconds from `min` to `max` (no upper bound when `max` is 0). Its message
/// names the bounds as a person writes them: CLI::NonNegativeNumber and CLI::Range print
/// theirs with six decimals, and the largest double in full (some 300 digits).
CLI::Validator seconds(double min, double max = 0) {
  const std::string allowed =
      max > 0 ? fmt::format("from {:g} to {:g}", min, max) : fmt::format(">= {:g}", min);
  return CLI::Validator(
      [allowed, min, max](std::string& value) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(value.c_str(), &end);
        const bool number = !value.empty() && end == value.c_str() + value.size();
        if (number && std::isfinite(v) && v >= min && (max <= 0 || v <= max)) return {};
        return "'" + value + "' is not a number of seconds " + allowed;
      },
      "SECONDS " + allowed);
}

/// A whole number, in decimal, from `min` to `max`: CLI11's own reading takes "1e2" and
/// "0x5" too, and CLI::Range then says "not in range" of a value that is in it.
CLI::Validator whole_number(long long min, long long max) {
  const std::string allowed = fmt::format("a whole number from {} to {}", min, max);
  return CLI::Validator(
      [allowed, min, max](std::string& value) -> std::string {
        const std::size_t digits = !value.empty() && (value[0] == '-' || value[0] == '+');
        const bool whole = value.size() > digits && value.size() - digits <= 18 &&
                           value.find_first_not_of("0123456789", digits) == std::string::npos;
        if (whole) {
          const long long v = std::stoll(value);
          if (v >= min && v <= max) return {};
        }
        return "'" + value + "' is not " + allowed;
      },
      fmt::format("INT in [{} - {}]", min, max));
}

/// A -j value: job_slots() says which.
CLI::Validator job_count() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        if (job_slots(value, 1)) return {};
        return "'" + value + "' is no job count: N (1 to " + std::to_string(most_job_slots) +
               "), +N or -N (the usable CPUs plus or minus N), or N% (a share of them)";
      },
      "N|+N|-N|N%");
}

/// A path that names a file: an empty one (`--journal "$J"` with J unset) is refused, not
/// taken for no file at all.
CLI::Validator a_path(bool plus = false) {
  return CLI::Validator(
      [plus](std::string& value) -> std::string {
        // --joblog's +FILE appends to FILE: a + alone names no file either.
        const bool empty = value.empty() || (plus && value == "+");
        return empty ? "an empty path names no file" : std::string();
      },
      "");
}

void add_run_command(CLI::App& app, run_args& run, cli_args& args) {
  CLI::App* sub = app.add_subcommand(
      "run",
      "Run a command for every item, GNU parallel style: polymap run [OPTIONS] [--] COMMAND "
      "[ARGS...] ::: VALUES... [::: VALUES...] [:::: FILE...]. Placeholders: {} {.} {/} {//} "
      "{/.} {#} {%} {N}; without any, the item is appended. The command runs as argv, never "
      "through a shell, unless --shell.");
  // The command and its inputs never reach CLI11: main() splits them off with
  // split_run_words, so that their own options (`ls -l {}`) and `--` arrive untouched.
  // An option given twice takes its last value, as with GNU parallel (`alias p='polymap
  // run -j 4'`, then `p -j 2 ...`).
  sub->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  sub->add_option("-j,--jobs", run.jobs,
                  "Jobs at a time: N, +N or -N (the usable CPUs plus or minus N), N% (a share "
                  "of them); default: the usable CPUs")
      ->check(job_count());
  sub->add_option("--bind", run.bind, "Pin each job slot: none, core, pu, numa or package")
      ->check(CLI::IsMember({"none", "core", "pu", "numa", "package"}))
      ->capture_default_str();
  sub->add_option("--nice", run.options.nice, "Nice value of the jobs")
      ->check(whole_number(-20, 19));
  sub->add_option("--timeout", run.options.timeout,
                  "Seconds an attempt may run before its process group gets SIGTERM, then "
                  "SIGKILL 1 s later (0: none)")
      ->check(seconds(0));
  sub->add_option("--retries", run.options.retries,
                  "Run a failed item up to N more times, waiting 0.1 s, 0.2 s, 0.4 s... "
                  "(at most 10 s) between attempts")
      ->check(whole_number(0, 1000));
  sub->add_option("--halt", run.halt,
                  "Stop after failures: now,fail=N (kill running jobs) or soon,fail=N (let "
                  "them finish), where N is a count of failed items or a share P% of the "
                  "run's items; never (default); GNU parallel's 0 (never), 1 (soon,fail=1), "
                  "2 (now,fail=1) and P% (soon,fail=P%)");
  sub->add_option("--joblog", run.options.joblog,
                  "Log each ended job in GNU parallel's joblog format to FILE; - is "
                  "stdout, +FILE appends to FILE")
      ->check(a_path(true));
  sub->add_option("--results", run.options.results,
                  "Keep each item's stdout and stderr in DIR/SEQ/{stdout,stderr}, written "
                  "atomically")
      ->check(a_path());
  sub->add_flag("-k,--keep-order", run.options.keep_order,
                "Print outputs in input order (what waits goes to a file in $TMPDIR)");
  sub->add_flag("--dry-run", run.dry_run, "Print the commands instead of running them");
  sub->add_flag("--shell", run.shell,
                "Run the command line with /bin/sh -c; each value comes in as an argument of its "
                "own, which the line refers to as a shell variable (no value enters the line)");
  sub->add_flag("--progress", run.options.progress,
                "A progress bar on stderr when it is a terminal: done, failed, running, rate, ETA");
  sub->add_flag("--json", run.options.json,
                "JSON lines on stdout: a start and an end event per job (with its output unless "
                "--results) and a summary");
  sub->add_option("-a,--arg-file", run.arg_files, "Items from FILE, one per line (repeatable)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false)
      ->type_name("FILE");
  sub->add_option("--journal", run.options.journal,
                  "SQLite journal: resume where a previous run stopped, share the batch with "
                  "other runners")
      ->check(a_path());
  sub->add_flag("--retry-failed", run.options.retry_failed,
                "With --journal: run failed items again");
  sub->add_option("--lock-timeout", run.options.lock_timeout,
                  "Seconds to wait for a journal locked by another process")
      ->check(seconds(0))
      ->capture_default_str();
  sub->callback([sub, &run, &args] {
    run.words = sub->remaining();
    args.what = command::run;
  });
}

void add_status_command(CLI::App& app, status_args& status, cli_args& args,
                        const std::string& name, const std::string& description) {
  CLI::App* sub = app.add_subcommand(name, description);
  sub->add_option("--journal", status.journal, "The journal of a polymap run")
      ->required()
      ->check(a_path());
  sub->add_flag("--json", status.json, "One JSON object (watch: one per refresh)");
  sub->add_option("--top", status.top, "Failures and slowest items to show")
      ->check(whole_number(0, 100000))
      ->capture_default_str();
  sub->add_option("--lock-timeout", status.lock_timeout,
                  "Seconds to wait for a journal locked by another process")
      ->check(seconds(0))
      ->capture_default_str();
  if (name == "watch") {
    sub->add_option("--interval", status.interval, "Seconds between refreshes")
        ->check(seconds(0.05, 3600))
        ->capture_default_str();
  }
  const command what = name == "watch" ? command::watch : command::status;
  sub->callback([&args, what] { args.what = what; });
}

/// Whether `opt` takes a value (an option, not a flag).
bool takes_value(const CLI::Option& opt) { return opt.get_expected_max() > 0; }

[[noreturn]] void unknown_option(const std::string& word) {
  throw std::runtime_error("unknown option '" + word +
                           "' (give the command after `--` if it starts with '-'); see "
                           "polymap run --help");
}

}  // namespace

std::optional<std::size_t> job_slots(const std::string& spec, std::size_t usable) {
  if (spec.empty()) return std::nullopt;
  const char sign = spec.front() == '+' || spec.front() == '-' ? spec.front() : 0;
  const bool share = sign == 0 && spec.back() == '%';
  const std::string digits = spec.substr(sign != 0 ? 1 : 0, spec.size() - (sign != 0 || share));
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  const std::size_t n = std::stoul(digits);
  std::size_t slots = n;
  if (sign == '+') slots = usable + n;
  if (sign == '-') slots = usable > n ? usable - n : 1;
  if (share) slots = std::max<std::size_t>(1, usable * n / 100);
  if (slots == 0 || slots > most_job_slots) return std::nullopt;
  return slots;
}

run_words split_run_words(const CLI::App& run, const std::vector<std::string>& words) {
  run_words out;
  std::size_t i = 0;
  while (i < words.size()) {
    const std::string& word = words[i];
    if (word == "--") {
      ++i;  // the one `--` that ends polymap's options; any later one is the command's
      break;
    }
    if (word.size() < 2 || word[0] != '-') break;  // the command starts here
    out.options.push_back(word);
    ++i;
    bool needs_next = false;
    if (word[1] == '-') {
      const std::size_t eq = word.find('=');
      const CLI::Option* opt = run.get_option_no_throw(word.substr(0, eq));
      if (opt == nullptr) unknown_option(word);
      needs_next = takes_value(*opt) && eq == std::string::npos;
    } else {
      // Short options, possibly grouped (`-kj4`, `-kj 4`): a value ends the group.
      for (std::size_t k = 1; k < word.size(); ++k) {
        const CLI::Option* opt = run.get_option_no_throw(std::string{'-', word[k]});
        if (opt == nullptr) {
          unknown_option(word.size() == 2 ? word : std::string{'-', word[k]} + "' in '" + word);
        }
        if (takes_value(*opt)) {
          needs_next = k + 1 == word.size();
          break;
        }
      }
    }
    if (needs_next && i < words.size()) out.options.push_back(words[i++]);
  }
  out.command.assign(words.begin() + static_cast<std::ptrdiff_t>(i), words.end());
  return out;
}

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
                  "Print one JSON object (the run's context and its result rows) instead of a "
                  "table");
  bench
      ->add_option("--size", args.bench.size,
                   "Problem size: small (well under a second), medium (a few seconds on 2 cores), "
                   "large (about 1 GB of memory)")
      ->check(CLI::IsMember({"small", "medium", "large"}))
      ->capture_default_str();
  bench
      ->add_option("--repeat", args.bench.repeat,
                   "Timed runs per kernel and backend (median), after one untimed warm-up run")
      ->check(whole_number(1, 1000))
      ->capture_default_str();
  bench
      ->add_option("--kernel", args.bench.kernels,
                   "Run only this kernel (repeatable, or comma-separated); default: all")
      ->check(CLI::IsMember(kernel_names()))
      ->delimiter(',')
      ->allow_extra_args(false)
      ->type_name("NAME");
  bench->callback([&args] { args.what = command::bench; });

  add_run_command(app, args.run, args);
  add_status_command(app, args.status, args, "status",
                     "Counts, failures with their stderr, slowest items and live runners of a "
                     "journal");
  add_status_command(app, args.status, args, "watch",
                     "The same as status, refreshed until the batch is finished (Ctrl-C stops)");
  CLI::App* calibrate = app.add_subcommand(
      "calibrate",
      "Measure the constants that automatic weighs: the thread pool's fork-join and the "
      "processes backend's fork and copy costs (each process measures these itself at its "
      "first call), and each GPU's host-resident map costs, which are kept in "
      "$XDG_CACHE_HOME/polymap/measurements for every later process");
  calibrate->add_flag("--json", args.calibrate.json, "Print one JSON object instead of text");
  calibrate->add_option("--device", args.calibrate.devices,
                        "A CUDA device to measure (repeatable; default: every one)");
  calibrate->callback([&args] { args.what = command::calibrate; });
}

}  // namespace polymap::cli
