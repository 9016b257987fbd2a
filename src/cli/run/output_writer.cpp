// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/output_writer.hpp"

#include "cli/run/fd_io.hpp"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace polymap::cli::run {

namespace {

// What --keep-order holds back in memory: an item's output up to this size, while all that is
// held in memory stays under the total. The rest waits in the spool file (output_spool).
constexpr std::size_t held_item_memory = 1 << 20;
constexpr std::size_t held_total_memory = 16 << 20;

double mono_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}


}  // namespace

output_writer::output_writer(output_host& host, bool keep_order)
    : host_(host), keep_order_(keep_order), shared_(same_file(1, 2)) {
  for (int fd : {1, 2}) {
    if (unblocked_stream::may_block(fd)) unblocked_[fd] = std::make_unique<unblocked_stream>(fd);
  }
}

output_writer::~output_writer() = default;

void output_writer::emit(std::size_t order, output_record record) {
  if (!keep_order_) {
    write_record(record);
    return;
  }
  if (order != next_emit_) {
    hold(order, std::move(record));
    return;
  }
  write_record(record);
  ++next_emit_;
  while (!held_.empty() && held_.begin()->first == next_emit_) {
    write_record(held_.begin()->second);
    held_.erase(held_.begin());
    ++next_emit_;
  }
}

void output_writer::write_held() {
  for (auto& [order, record] : held_) write_record(record);
  held_.clear();
}

void output_writer::hold(std::size_t order, output_record record) {
  const std::size_t out_file = file_size(record.out_fd);
  const std::size_t err_file = file_size(record.err_fd);
  const std::size_t size = out_file + record.out.size() + record.event.size() + record.log.size() +
                           err_file + record.err.size();
  const bool fits = size <= held_item_memory && held_memory_ + size <= held_total_memory;
  if (fits || !spill(record, out_file, err_file)) {
    record.out.insert(0, pread_all(record.out_fd, 0, out_file));  // nothing for -1
    record.err.insert(0, pread_all(record.err_fd, 0, err_file));
    record.in_memory = size;
    held_memory_ += size;
  }
  if (record.out_fd >= 0) close(record.out_fd);
  if (record.err_fd >= 0) close(record.err_fd);
  record.out_fd = record.err_fd = -1;
  held_.emplace(order, std::move(record));
}

bool output_writer::spill(output_record& record, std::size_t out_size, std::size_t err_size) {
  // The file is made here, at the first spill, so that a $TMPDIR that cannot be used
  // costs only the runs that need it, and them only memory. Tried once: no file and a
  // failure said means that it could not be made.
  if (!spool_ && spool_failed_) return false;
  std::string failure;
  if (!spool_) {
    try {
      spool_ = std::make_unique<output_spool>(temp_dir_path());
    } catch (const std::runtime_error& e) {
      failure = e.what();
    }
  }
  int error = 0;
  if (spool_) {
    error = spool_->append(record.out_fd, out_size, record.out + record.event, record.spooled_out);
    if (error == 0) {
      error = spool_->append(record.err_fd, err_size, record.err, record.spooled_err);
      if (error != 0) spool_->release(record.spooled_out);
    }
    if (error != 0) {
      failure = "cannot write the output that -k/--keep-order holds back to a temporary file in '";
      failure += spool_->dir() + "': " + std::strerror(error);
    }
  }
  if (!failure.empty()) {
    // The output stays whole, in memory: losing a finished job's output, or stopping a
    // batch for want of temporary space, would be worse. Said once.
    if (!spool_failed_) host_.warn(failure + "; holding it in memory");
    spool_failed_ = true;
    return false;
  }
  record.spooled = true;
  record.out.clear();
  record.err.clear();
  record.event.clear();  // the joblog line (one line) stays in memory: it goes out last
  return true;
}

void output_writer::write_record(output_record& r) {
  // An ended item's output: its stdout, then its stderr (every write of the runner's to
  // them is unbuffered: nothing waits in stdio), then its joblog line on stdout; then the
  // host records it (written()). Once a write failed, the rest of the record is not
  // written: the item runs again and writes all of it then. Nor is anything more written to
  // the stream that failed (to_stream()): no event or joblog line after half of the output.
  int error = 0;
  int failed_fd = 0;
  const auto write = [&](int fd, const auto& put_part) {
    if (error != 0) return;
    error = put_part();
    if (error != 0) failed_fd = fd;
  };
  if (r.spooled) {
    write(1, [&] { return put_spooled(1, r.spooled_out); });
    write(2, [&] { return put_spooled(2, r.spooled_err); });
    spool_->release(r.spooled_out);
    spool_->release(r.spooled_err);
    r.spooled = false;
  }
  if (r.out_fd >= 0) {
    write(1, [&] { return put_file(1, r.out_fd); });
    close(r.out_fd);
    r.out_fd = -1;
  }
  write(1, [&] { return put(1, r.out); });
  write(1, [&] { return put(1, r.event); });
  if (r.err_fd >= 0) {
    write(2, [&] { return put_file(2, r.err_fd); });
    close(r.err_fd);
    r.err_fd = -1;
  }
  write(2, [&] { return put(2, r.err); });
  // The joblog line on stdout comes last, once all of the output is out: none for an item
  // whose output was lost, which runs again and has its line then.
  write(1, [&] { return put(1, r.log); });
  held_memory_ -= std::min(held_memory_, r.in_memory);
  r.in_memory = 0;
  host_.written(r, error, failed_fd);
}

int output_writer::put(int fd, std::string_view data) {
  return to_stream(fd, data.size(), [&] { return write_stream(fd, data); });
}

int output_writer::put_file(int fd, int from) {
  const std::size_t size = file_size(from);
  return to_stream(fd, size, [&] { return send_file(fd, from, size); });
}

int output_writer::put_spooled(int fd, const output_spool::extent& piece) {
  // Copied, not sent with sendfile: a pipe would hold references to the spool's pages, which
  // the spool gives back and writes again as soon as the piece is released.
  return to_stream(fd, piece.size, [&] {
    return spool_->write_out(piece,
                             [&](std::string_view bytes) { return write_stream(fd, bytes); });
  });
}

template <class Write>
int output_writer::to_stream(int fd, std::size_t size, Write&& write) {
  // Nothing to write cannot fail. Once a write to the stream failed, the next ones are not
  // tried: they would follow a partial line (a full disk), or go to a pipe nobody reads; the
  // run is stopping, and what they carried is lost as the first one's was.
  if (size == 0) return 0;
  const auto i = static_cast<std::size_t>(fd);
  if (error_[i] == 0) {
    error_[i] = write();
    // stdout and stderr that are one file (2>&1) fail together.
    if (shared_) error_[3 - i] = error_[i];
  }
  return error_[i];
}

int output_writer::write_stream(int fd, std::string_view data) {
  unblocked_stream* stream = unblocked_[static_cast<std::size_t>(fd)].get();
  return stream == nullptr ? write_all(fd, data) : write_to(*stream, data);
}

int output_writer::write_to(unblocked_stream& stream, std::string_view data) {
  return drain(stream, data.size(), [&](std::size_t) {
    const ssize_t n = stream.write_some(data);
    if (n > 0) data.remove_prefix(static_cast<std::size_t>(n));
    return n;
  });
}

int output_writer::send_file(int fd, int from, std::size_t size) {
  // sendfile into a pipe passes references to `from`'s pages, not copies: `from` must not
  // change once sent. A capture does not: it is closed, and never written again.
  unblocked_stream* stream = unblocked_[static_cast<std::size_t>(fd)].get();
  if (stream == nullptr) return send_all(from, 0, size, fd);
  std::int64_t at = 0;
  return drain(*stream, size, [&](std::size_t left) { return stream->send_some(from, at, left); });
}

template <class TakeSome>
int output_writer::drain(unblocked_stream& stream, std::size_t size, TakeSome&& take_some) {
  // A file takes a write at once (or fails). A pipe, socket or terminal takes it when its
  // reader reads, which may be never (a pager left open, Ctrl-S): `take_some(left)` gives
  // the stream what it takes now, and the rest waits for room and for the host's wake_fd()
  // at once, so that the run meanwhile still stops on a signal, kills the jobs past
  // --timeout and keeps its journal lease (output_host::tend()).
  while (size > 0) {
    const ssize_t n = take_some(size);
    if (n < 0) return errno;
    if (n > 0) {
      size -= static_cast<std::size_t>(n);
      last_progress_ = mono_now();
      continue;
    }
    const double now = mono_now();
    const std::optional<double> wake = host_.wait_until(last_progress_, now);
    if (!wake) return stream_stalled;
    std::array<pollfd, 2> fds{{{stream.fd(), POLLOUT, 0}, {host_.wake_fd(), POLLIN, 0}}};
    const double wait_ms = std::clamp(std::ceil((*wake - now) * 1000), 0.0, 3600000.0);
    if (poll(fds.data(), fds.size(), static_cast<int>(wait_ms)) < 0 && errno != EINTR) return errno;
    host_.tend(fds[1].revents != 0, mono_now());
  }
  return 0;
}

}  // namespace polymap::cli::run
