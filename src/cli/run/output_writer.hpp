// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cli/run/output_spool.hpp"
#include "cli/run/unblocked_stream.hpp"
#include "journal/journal.hpp"

#include <array>
#include <cerrno>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace polymap::cli::run {

/// An ended item's output. Each of its stdout and stderr is a capture not read yet (a file
/// of its own, closed once written out), bytes in memory, or, while --keep-order holds it
/// back, a piece of the spool file.
struct output_record {
  std::size_t item = 0;
  item_state state = item_state::done;  // what the runner counted it as
  int out_fd = -1;
  int err_fd = -1;
  std::string out;
  std::string err;
  std::string event;  // --json: after the stdout
  std::string log;    // the joblog line when the joblog is stdout: last, after the stderr,
                      // and not at all when the output is lost (as log_file)
  // The joblog line when the joblog is a file: written once the output is, and not at all
  // when the output is lost (the item runs again, and has its line then).
  std::string log_file;
  bool spooled = false;
  output_spool::extent spooled_out;  // the stdout, the event included
  output_spool::extent spooled_err;
  std::size_t in_memory = 0;  // bytes counted in output_writer's held memory
  // The item's end, recorded in the journal once this output is written out: an item whose
  // output -k holds back stays running there, so that a runner killed meanwhile (which
  // loses what it held) leaves it to run again rather than done with its output gone.
  std::optional<item_end> end;
};

/// What the runner does for the output_writer: while a write waits for a reader, and once a
/// record is written out.
class output_host {
 public:
  /// A descriptor polled while a write waits (the runner's signals: a job that ended, a
  /// stop): readable, tend() is told so.
  [[nodiscard]] virtual int wake_fd() const = 0;
  /// Until when (monotonic seconds) a write that waits for its reader may wait before
  /// tend(); nothing: give the write up (it returns stream_stalled). `progress_at`: when a
  /// stream that waited last took something (0: never).
  [[nodiscard]] virtual std::optional<double> wait_until(double progress_at, double now) const = 0;
  /// What must not wait for the write: `woken`, wake_fd() is readable.
  virtual void tend(bool woken, double now) = 0;
  /// A warning for the user (the spool file could not be used).
  virtual void warn(const std::string& message) = 0;
  /// `record` was written out; `error` is 0, or the errno of the first write that failed,
  /// on descriptor `fd` (1 or 2), and the output is lost.
  virtual void written(output_record& record, int error, int fd) = 0;

 protected:
  ~output_host() = default;
};

/// What a write to stdout or stderr returns when output_host::wait_until() gave it up.
inline constexpr int stream_stalled = ECANCELED;

/// polymap's own writes to its stdout (1) and stderr (2) while it runs a batch: each item's
/// output, written out in input order under --keep-order (held back in memory up to a
/// bound, the rest in an output_spool), and the runner's own lines.
/// - A write that fails marks its stream: nothing more is written there (nor to the other
///   stream when both are one file, 2>&1), and every later write there returns that error.
/// - A pipe, FIFO, socket or terminal is written without waiting in write() (an
///   unblocked_stream): while its reader takes nothing, the write waits in poll together
///   with the host's wake_fd(), and the host tends to what must go on meanwhile.
/// Thread safety: none.
class output_writer {
 public:
  output_writer(output_host& host, bool keep_order);
  output_writer(const output_writer&) = delete;
  output_writer& operator=(const output_writer&) = delete;
  ~output_writer();

  /// Writes the record of the item `order`-th in start order: at once, or, under
  /// --keep-order, once every earlier one is, holding it back until then.
  void emit(std::size_t order, output_record record);
  /// Writes out every record still held back, in order (at the end of a run, whose missing
  /// items will not come).
  void write_held();

  /// Writes `data` to `fd` (1 or 2). @return 0, or the errno of the failed write
  int put(int fd, std::string_view data);

  /// Writes `data` to a stream of the host's own besides stdout and stderr (a --joblog FIFO
  /// or terminal), waiting for it as for them. @return 0, or the errno of the failed write
  /// (stream_stalled: given up)
  int write_to(unblocked_stream& stream, std::string_view data);

  /// The errno of the first write to `fd` that failed; 0 while none has.
  [[nodiscard]] int error(int fd) const noexcept { return error_[static_cast<std::size_t>(fd)]; }
  /// Whether stdout and stderr are one file or pipe (2>&1).
  [[nodiscard]] bool shared() const noexcept { return shared_; }

 private:
  void write_record(output_record& record);
  void hold(std::size_t order, output_record record);
  bool spill(output_record& record, std::size_t out_size, std::size_t err_size);
  int put_file(int fd, int from);
  int put_spooled(int fd, const output_spool::extent& piece);
  template <class Write>
  int to_stream(int fd, std::size_t size, Write&& write);
  int write_stream(int fd, std::string_view data);
  int send_file(int fd, int from, std::size_t size);
  template <class TakeSome>
  int drain(unblocked_stream& stream, std::size_t size, TakeSome&& take_some);

  output_host& host_;
  bool keep_order_;
  std::array<int, 3> error_{};
  bool shared_ = false;
  // For a pipe, socket or terminal, how to write to it without waiting in write(); null
  // for a file.
  std::array<std::unique_ptr<unblocked_stream>, 3> unblocked_;
  double last_progress_ = 0;  // monotonic: when a pipe, socket or terminal last took bytes
  std::size_t next_emit_ = 0;
  std::map<std::size_t, output_record> held_;
  std::size_t held_memory_ = 0;          // bytes of held_ in memory
  std::unique_ptr<output_spool> spool_;  // made at the first spill
  bool spool_failed_ = false;            // said once
};

}  // namespace polymap::cli::run
