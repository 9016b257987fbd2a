// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/output_spool.hpp"

#include "cli/run/fd_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace polymap::cli::run {

std::string temp_dir_path() {
  const char* dir = std::getenv("TMPDIR");
  return dir != nullptr && *dir != '\0' ? std::string(dir) : std::string("/tmp");
}

output_spool::output_spool(std::string dir) : dir_(std::move(dir)) {
  fd_ = open(dir_.c_str(), O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
  int error = fd_ < 0 ? errno : 0;
  if (fd_ < 0 && (error == EOPNOTSUPP || error == EISDIR || error == EINVAL)) {
    // A file system without O_TMPFILE: a named file, unlinked at once.
    std::string name = dir_ + "/polymap-keep-order-XXXXXX";
    fd_ = mkostemp(name.data(), O_CLOEXEC);
    error = fd_ < 0 ? errno : 0;
    if (fd_ >= 0) unlink(name.c_str());
  }
  if (fd_ < 0) {
    throw std::runtime_error(
        "cannot create a temporary file for the output that -k/--keep-order "
        "holds back in '" +
        dir_ + "' ($TMPDIR, else /tmp): " + std::strerror(error));
  }
}

output_spool::~output_spool() {
  if (fd_ >= 0) close(fd_);
}

int output_spool::append(int fd, std::size_t size, const std::string& data,
                         extent& piece) noexcept {
  const auto fail = [&](int error) {
    // The piece is not there: the next one goes at end_, over what this one left. Cutting
    // that tail only gives its space back (see cut()).
    cut(end_);
    return error;
  };
  if (lseek(fd_, end_, SEEK_SET) < 0) return errno;
  if (const int error = copy_bytes(fd, 0, size, fd_); error != 0) return fail(error);
  if (const int error = write_all(fd_, data); error != 0) return fail(error);
  piece.offset = end_;
  piece.size = size + data.size();
  end_ += static_cast<std::int64_t>(piece.size);
  ++pieces_;
  return 0;
}

void output_spool::release(const extent& piece) noexcept {
  if (pieces_ > 0) --pieces_;
  if (pieces_ == 0) {
    // None left: the file starts again from nothing.
    if (cut(0)) end_ = 0;
    return;
  }
  // Best effort: a file system without hole punching keeps the space until the file is
  // truncated (when no piece is left) or closed.
  if (piece.size > 0) {
    (void)fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, piece.offset,
                    static_cast<off_t>(piece.size));
  }
}

bool output_spool::cut(std::int64_t size) noexcept { return ftruncate(fd_, size) == 0; }

}  // namespace polymap::cli::run
