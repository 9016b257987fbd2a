// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/output_spool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace polymap::cli::run {

namespace {

constexpr std::size_t chunk = 256 * 1024;  // bytes per read and write when copying

int write_all(int fd, const char* data, std::size_t size) noexcept {
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

int copy_bytes(int from, std::int64_t at, std::size_t size, int to) noexcept {
  if (size == 0) return 0;
  // A static buffer: copying never allocates, and a large piece costs no more memory than
  // a small one.
  static std::array<char, chunk> buffer;
  while (size > 0) {
    const ssize_t n = pread(from, buffer.data(), std::min(size, buffer.size()), at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    if (const int error = write_all(to, buffer.data(), static_cast<std::size_t>(n)); error != 0) {
      return error;
    }
    at += n;
    size -= static_cast<std::size_t>(n);
  }
  return 0;
}

std::size_t file_size(int fd) noexcept {
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 0) return 0;
  return static_cast<std::size_t>(st.st_size);
}

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
    // Nothing half-written stays: the piece is not there, and the file ends where it did.
    if (ftruncate(fd_, end_) != 0) {
      // The tail stays allocated until the file is truncated to 0 (release) or closed.
    }
    return error;
  };
  if (lseek(fd_, end_, SEEK_SET) < 0) return errno;
  if (const int error = copy_bytes(fd, 0, size, fd_); error != 0) return fail(error);
  if (const int error = write_all(fd_, data.data(), data.size()); error != 0) return fail(error);
  piece.offset = end_;
  piece.size = size + data.size();
  end_ += static_cast<std::int64_t>(piece.size);
  ++pieces_;
  return 0;
}

int output_spool::write_out(const extent& piece, std::size_t skip, std::size_t size,
                            int to) const noexcept {
  return copy_bytes(fd_, piece.offset + static_cast<std::int64_t>(skip), size, to);
}

void output_spool::release(const extent& piece) noexcept {
  if (pieces_ > 0) --pieces_;
  if (pieces_ == 0) {
    // None left: the file starts again from nothing.
    if (ftruncate(fd_, 0) == 0) end_ = 0;
    return;
  }
  // Best effort: a file system without hole punching keeps the space until the file is
  // truncated (when no piece is left) or closed.
  if (piece.size > 0) {
    (void)fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, piece.offset,
                    static_cast<off_t>(piece.size));
  }
}

}  // namespace polymap::cli::run
