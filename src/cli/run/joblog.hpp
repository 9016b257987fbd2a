// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cli/run/unblocked_stream.hpp"

#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>

namespace polymap::cli::run {

/// `--joblog FILE` in GNU parallel's format (tab-separated Seq, Host, Starttime,
/// JobRuntime, Send, Receive, Exitval, Signal, Command), so that `parallel --resume
/// --joblog FILE` reads it. One line per ended item, flushed as it ends.
/// Thread safety: none.
class joblog {
 public:
  /// Opens `path` as GNU parallel does: "-" is polymap's stdout, "+FILE" appends to FILE;
  /// any other FILE is appended to when `append` (a resumed journal run), else truncated.
  /// The header comes first (wants_header()), unless what is appended to may have one
  /// already: a regular file that is not empty, or a pipe or terminal given as "+FILE". GNU
  /// parallel writes no header with "+FILE" at all, which its --resume then takes the first
  /// line for.
  /// @throws std::runtime_error naming the file when it cannot be opened
  joblog(const std::string& path, bool append);
  joblog(const joblog&) = delete;
  joblog& operator=(const joblog&) = delete;
  ~joblog();

  /// Whether it is polymap's stdout ("-"), where each line goes after its item's output.
  [[nodiscard]] bool on_stdout() const noexcept { return file_ == stdout; }

  /// Whether the file wants the header line first: the caller writes it (`header`), with
  /// write() or, on stdout, with the item's output.
  [[nodiscard]] bool wants_header() const noexcept { return wants_header_; }
  static constexpr const char* header =
      "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";

  /// Its file descriptor.
  [[nodiscard]] int fd() const noexcept;

  /// The line of one ended item, its newline included: `host` is where it ran (":" for this
  /// machine, as GNU parallel writes it), `received` is Receive, the bytes of the item's
  /// stdout (0 where polymap did not capture it), and a newline in `command` is written as a
  /// NUL, as GNU parallel does.
  [[nodiscard]] static std::string line(std::size_t seq, const std::string& host, double start,
                                        double runtime, std::size_t received, int exit_code,
                                        int signal, const std::string& command);

  /// Writes a line at once (past stdio's buffer), however long the file takes it: a pipe,
  /// FIFO, socket or terminal is better written through stream().
  /// @return 0, or the errno of the write that failed (a full disk, EPIPE)
  [[nodiscard]] int write(const std::string& line) noexcept;
  /// How to write the file without waiting in write() where it is a pipe, FIFO, socket or
  /// terminal (not stdout: see on_stdout()); null for a file, which takes a write at once.
  [[nodiscard]] unblocked_stream* stream() const noexcept { return stream_.get(); }

  /// The file's name as given ("-" for stdout, no "+").
  [[nodiscard]] const std::string& name() const noexcept { return name_; }

  /// Removes the file when this joblog made it and nothing was written to it: a run that
  /// stops before its first job (an unusable journal) leaves nothing behind.
  void remove_if_unwritten() noexcept;

 private:
  std::FILE* file_ = nullptr;
  std::string name_;
  bool made_ = false;  ///< the file did not exist before
  bool wants_header_ = true;
  std::unique_ptr<unblocked_stream> stream_;
};

}  // namespace polymap::cli::run
