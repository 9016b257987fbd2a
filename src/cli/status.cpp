// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// `polymap status` and `polymap watch`: what a journal says about its batch.

#include "cli/commands.hpp"
#include "journal/journal.hpp"

#include <poll.h>
#include <unistd.h>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

namespace polymap::cli {

namespace {

nlohmann::json row_json(const journal_row& r) {
  return {{"id", r.id},             {"seq", r.seq},
          {"command", r.command},   {"state", state_name(r.state)},
          {"attempts", r.attempts}, {"exit", r.exit_code},    {"signal", r.signal},
          {"duration", r.duration}, {"reason", r.reason},     {"stderr_tail", r.stderr_tail}};
}

nlohmann::json summary_json(const journal_summary& s) {
  nlohmann::json j;
  nlohmann::json counts;
  for (std::size_t state = 0; state < s.counts.size(); ++state) {
    counts[state_name(static_cast<item_state>(state))] = s.counts[state];
  }
  // "running" counts what a live runner runs; the items of a runner that is gone (killed,
  // its machine stopped) are apart, so that the counts still add up to the total.
  counts["running"] = s.count(item_state::running) - s.runner_gone;
  counts["runner_gone"] = s.runner_gone;
  counts["total"] = s.total();
  j["counts"] = counts;
  j["failures"] = nlohmann::json::array();
  for (const journal_row& r : s.failures) j["failures"].push_back(row_json(r));
  j["slowest"] = nlohmann::json::array();
  for (const journal_row& r : s.slowest) j["slowest"].push_back(row_json(r));
  j["runners"] = nlohmann::json::array();
  for (const journal_runner& r : s.runners) {
    j["runners"].push_back({{"id", r.id},
                            {"host", r.host},
                            {"pid", r.pid},
                            {"alive", r.alive},
                            {"running", r.running},
                            {"started", r.started},
                            {"heartbeat", r.heartbeat}});
  }
  return j;
}

/// A failed item's stderr tail, indented, its control bytes but newlines and tabs as '?'.
std::string indent_tail(const std::string& tail) {
  std::string out = "      ";
  for (char c : printable(tail, "\n\t")) {
    out += c;
    if (c == '\n') out += "      ";
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return out;
}

void print_summary(const std::string& path, const journal_summary& s) {
  fmt::print("journal  {}\n", path);
  // The items of a runner that is gone show as interrupted, which is what the next runner
  // of the batch makes of them, and are not counted as running.
  const std::int64_t interrupted = s.count(item_state::interrupted) + s.runner_gone;
  std::string gone;
  if (s.runner_gone > 0) {
    gone = s.runner_gone == interrupted
               ? " (their runner is gone; run again to resume them)"
               : fmt::format(" ({} of them: their runner is gone; run again to resume them)",
                             s.runner_gone);
  }
  fmt::print("items    {} total: {} done, {} failed, {} running, {} pending, {} interrupted{}\n",
             s.total(), s.count(item_state::done), s.count(item_state::failed),
             s.count(item_state::running) - s.runner_gone, s.count(item_state::pending),
             interrupted, gone);
  if (!s.failures.empty()) {
    fmt::print("failures\n");
    for (const journal_row& r : s.failures) {
      const std::string how = r.signal != 0 ? fmt::format("signal {}", r.signal)
                                            : fmt::format("exit {}", r.exit_code);
      fmt::print("  #{} {} after {} attempt(s){}: {}\n", r.id, how, r.attempts,
                 r.reason.empty() ? "" : " (" + r.reason + ")", printable(r.command));
      if (!r.stderr_tail.empty()) fmt::print("{}\n", indent_tail(r.stderr_tail));
    }
  }
  if (!s.slowest.empty()) {
    fmt::print("slowest\n");
    for (const journal_row& r : s.slowest) {
      fmt::print("  {:10.3f} s  #{} {}\n", r.duration, r.id, printable(r.command));
    }
  }
  fmt::print("runners\n");
  bool any = false;
  for (const journal_runner& r : s.runners) {
    if (!r.alive) continue;
    any = true;
    fmt::print("  runner {} on {} pid {}: {} running\n", r.id, r.host, r.pid, r.running);
  }
  if (!any) fmt::print("  none live\n");
}

}  // namespace

int run_status(const status_args& args, bool watch) {
  journal_options options;
  // status and watch only read (read_only implies no create): any journal the user may read
  // will do, and nothing is created beside it.
  options.read_only = true;
  options.lock_timeout = args.lock_timeout;
  journal j(args.journal, options);
  for (;;) {
    const journal_summary s = j.summary(args.top);
    if (args.json) {
      // Commands and stderr tails are bytes, not always UTF-8: replace what JSON cannot
      // carry, as the runner does.
      fmt::print("{}\n",
                 summary_json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      if (watch && isatty(1) != 0) fmt::print("\x1b[H\x1b[2J");
      print_summary(args.journal, s);
    }
    // A watch whose output cannot be written ends, saying why.
    if (std::fflush(stdout) != 0 || std::ferror(stdout) != 0) {
      const int error = errno != 0 ? errno : EIO;
      std::fprintf(stderr, "polymap: cannot write to standard output: %s\n", std::strerror(error));
      std::clearerr(stdout);  // said: not again at the exit
      return exit_failure;
    }
    const int status = s.count(item_state::failed) > 0 ? exit_failure : exit_ok;
    if (!watch) return status;
    const bool live = std::any_of(s.runners.begin(), s.runners.end(),
                                  [](const journal_runner& r) { return r.alive; });
    // watch ends with the batch, or when no runner is left to finish it.
    if (!live) {
      if (s.unfinished() == 0) return status;
      std::fprintf(stderr,
                   "polymap watch: no runner is live and %lld item(s) are unfinished: "
                   "polymap run with --journal %s resumes them\n",
                   static_cast<long long>(s.unfinished()), args.journal.c_str());
      return exit_failure;
    }
    poll(nullptr, 0, static_cast<int>(args.interval * 1000));
  }
}

}  // namespace polymap::cli
