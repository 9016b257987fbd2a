// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace polymap::cli::run {

/// `--joblog FILE` in GNU parallel's format (tab-separated Seq, Host, Starttime,
/// JobRuntime, Send, Receive, Exitval, Signal, Command), so that `parallel --resume
/// --joblog FILE` reads it. One line per ended item, flushed as it ends.
/// Thread safety: none.
class joblog {
 public:
  /// Opens `path`: appends when `append` (a resumed journal run), truncates otherwise;
  /// writes the header to an empty file.
  /// @throws std::runtime_error naming the file when it cannot be opened
  joblog(const std::string& path, bool append);
  joblog(const joblog&) = delete;
  joblog& operator=(const joblog&) = delete;
  ~joblog();

  /// One ended item.
  void write(std::size_t seq, double start, double runtime, int exit_code, int signal,
             const std::string& command) noexcept;

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace polymap::cli::run
