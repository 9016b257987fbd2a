// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cli/cli_args.hpp"

#include <fmt/core.h>

#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <utility>

namespace polymap::cli {

/// An error's text for a line that starts with "polymap: " or "polymap run: " itself: without
/// the "polymap: " that the library's own errors start with.
[[nodiscard]] inline std::string_view error_text(const std::exception& e) noexcept {
  constexpr std::string_view prefix = "polymap: ";
  std::string_view text = e.what();
  if (text.starts_with(prefix)) text.remove_prefix(prefix.size());
  return text;
}

/// `text` as a terminal may show it: its control bytes (a CR, an escape sequence, which would
/// move the cursor or redraw lines) as '?', but those in `keep` (a tail's newlines and tabs).
[[nodiscard]] inline std::string printable(std::string text, std::string_view keep = {}) {
  for (char& c : text) {
    const bool control = static_cast<unsigned char>(c) < 0x20 || c == '\x7f';
    if (control && keep.find(c) == std::string_view::npos) c = '?';
  }
  return text;
}

/// Prints to stderr as fmt::print(stderr, ...) does, but never throws: a stderr that cannot
/// be written (a full disk, a closed descriptor) loses the message, not the exit status
/// (fmt's exception, thrown while an error is said, would end in abort()).
template <class... Args>
void print_error(fmt::format_string<Args...> format, Args&&... args) noexcept {
  try {
    const std::string text = fmt::format(format, std::forward<Args>(args)...);
    (void)std::fwrite(text.data(), 1, text.size(), stderr);
    (void)std::fflush(stderr);
  } catch (...) {  // no memory for the text: nothing can be said
  }
}

/// `polymap info`: prints the topology, the backends and the environment.
/// @return an exit status
int run_info(const info_args& args);

/// `polymap bench`: runs the built-in kernels on every available backend.
/// @return exit_ok, or exit_failure when a backend's results differ from serial's or a run
///   threw
int run_bench(const bench_args& args);

/// `polymap calibrate`: measures the CPU backends' constants and each GPU's host-map costs
/// (kept for later processes) and prints them.
/// @return exit_ok, exit_failure when a GPU's measurement failed, exit_usage for a
///   --device that is not here
int run_calibrate(const calibrate_args& args);

/// `polymap run`: runs a command over the items of its input sources.
/// @return exit_ok, exit_failure when an item failed, a --halt triggered or the journal
///   failed, exit_usage for a bad command line, 128+signal when stopped by SIGINT/SIGTERM
/// @throws journal_error when the journal cannot be opened (main prints it)
int run_run(const run_args& args);

/// `polymap status` (once) and `polymap watch` (refreshed until no runner is live and
/// nothing is left to run).
/// @return exit_ok, or exit_failure when the journal has failed items
/// @throws journal_error when the journal is missing or cannot be read
int run_status(const status_args& args, bool watch);

}  // namespace polymap::cli
