// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/joblog.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace polymap::cli::run {

joblog::joblog(const std::string& path, bool append) {
  bool header = true;
  if (path == "-") {
    file_ = stdout;
  } else {
    const bool plus = !path.empty() && path.front() == '+';
    const std::string name = plus ? path.substr(1) : path;
    file_ = std::fopen(name.c_str(), plus || append ? "ae" : "we");
    if (file_ == nullptr) {
      throw std::runtime_error("cannot open --joblog '" + name + "': " + std::strerror(errno));
    }
    struct stat st {};
    if (fstat(fd(), &st) == 0 && S_ISREG(st.st_mode)) {
      header = st.st_size == 0;
    } else {
      header = !plus;
    }
  }
  if (header) {
    std::fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
               file_);
    std::fflush(file_);
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

std::string joblog::line(std::size_t seq, double start, double runtime, int exit_code, int signal,
                         const std::string& command) {
  // GNU parallel's own format string; ":" is its name for the local host. A newline in a
  // command would split the record, so it is written as a space (GNU parallel writes a NUL).
  std::string flat = command;
  for (char& c : flat) {
    if (c == '\n') c = ' ';
  }
  char fields[128];
  std::snprintf(fields, sizeof fields, "%zu\t:\t%.3f\t% 8.3f\t0\t0\t%d\t%d\t", seq, start, runtime,
                exit_code, signal);
  return fields + flat + "\n";
}

void joblog::write(const std::string& line) noexcept {
  std::fputs(line.c_str(), file_);
  std::fflush(file_);
}

}  // namespace polymap::cli::run
