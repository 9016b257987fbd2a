// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/joblog.hpp"

#include "cli/run/fd_io.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace polymap::cli::run {

joblog::joblog(const std::string& path, bool append) {
  if (path == "-") {
    file_ = stdout;
    name_ = path;
  } else {
    const bool plus = !path.empty() && path.front() == '+';
    const std::string name = plus ? path.substr(1) : path;
    name_ = name;
    made_ = access(name.c_str(), F_OK) != 0;
    file_ = std::fopen(name.c_str(), plus || append ? "ae" : "we");
    if (file_ == nullptr) {
      throw std::runtime_error("cannot open --joblog '" + name + "': " + std::strerror(errno));
    }
    struct stat st {};
    if (fstat(fd(), &st) == 0 && S_ISREG(st.st_mode)) {
      wants_header_ = st.st_size == 0;
    } else {
      wants_header_ = !plus;
    }
    if (unblocked_stream::may_block(fd())) stream_ = std::make_unique<unblocked_stream>(fd());
  }
}

joblog::~joblog() {
  if (file_ == stdout) {
    std::fflush(file_);
  } else {
    std::fclose(file_);
  }
}

int joblog::fd() const noexcept { return fileno(file_); }

void joblog::remove_if_unwritten() noexcept {
  struct stat st {};
  if (made_ && fstat(fd(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0) {
    (void)unlink(name_.c_str());
  }
}

std::string joblog::line(std::size_t seq, const std::string& host, double start, double runtime,
                         std::size_t received, int exit_code, int signal,
                         const std::string& command) {
  // GNU parallel's formats ("%.3f" and "%10.3f"); Send is 0 but with --pipe. A newline in a
  // command would split the record: it is written as a NUL, as GNU parallel does, whose
  // --retry-failed turns it back into a newline.
  std::string flat = command;
  for (char& c : flat) {
    if (c == '\n') c = '\0';
  }
  char head[32];
  char fields[128];
  std::snprintf(head, sizeof head, "%zu\t", seq);
  std::snprintf(fields, sizeof fields, "\t%.3f\t%10.3f\t0\t%zu\t%d\t%d\t", start, runtime,
                received, exit_code, signal);
  return head + host + fields + flat + "\n";
}

int joblog::write(const std::string& line) noexcept {
  // Straight to the descriptor, past stdio's buffer: nothing of a line whose write failed
  // waits there to come out later, before another line.
  struct stat st {};
  const bool file = fstat(fd(), &st) == 0 && S_ISREG(st.st_mode);
  const int error = write_all(fd(), line);
  // A line cut short (a full disk) is taken back out of a file: the next line must not be
  // glued to it, where `parallel --resume` would read neither.
  if (error != 0 && file) (void)ftruncate(fd(), st.st_size);
  return error;
}

}  // namespace polymap::cli::run
