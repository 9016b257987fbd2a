// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/joblog.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace polymap::cli::run {

joblog::joblog(const std::string& path, bool append) {
  file_ = std::fopen(path.c_str(), append ? "ae" : "we");
  if (file_ == nullptr) {
    throw std::runtime_error("cannot open --joblog '" + path + "': " + std::strerror(errno));
  }
  std::fseek(file_, 0, SEEK_END);
  if (std::ftell(file_) == 0) {
    std::fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n",
               file_);
    std::fflush(file_);
  }
}

joblog::~joblog() { std::fclose(file_); }

void joblog::write(std::size_t seq, double start, double runtime, int exit_code, int signal,
                   const std::string& command) noexcept {
  // GNU parallel's own format string; ":" is its name for the local host. A newline in a
  // command would split the record, so it is written as a space, as GNU parallel does.
  std::string flat = command;
  for (char& c : flat) {
    if (c == '\n') c = ' ';
  }
  std::fprintf(file_, "%zu\t:\t%.3f\t% 8.3f\t0\t0\t%d\t%d\t%s\n", seq, start, runtime, exit_code,
               signal, flat.c_str());
  std::fflush(file_);
}

}  // namespace polymap::cli::run
