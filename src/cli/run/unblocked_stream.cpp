// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/unblocked_stream.hpp"

#include "cli/run/fd_io.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

namespace polymap::cli::run {

unblocked_stream::unblocked_stream(int fd) noexcept : fd_(fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return;
  if (S_ISSOCK(st.st_mode)) {
    way_ = way::socket;
    return;
  }
  // Opening a pseudo-terminal's master (/dev/ptmx) again makes a new terminal, not the same.
  int pty_number = 0;
  if (isatty(fd) != 0 && ioctl(fd, TIOCGPTN, &pty_number) == 0) return;
  // A new open file on the same pipe or terminal, with flags of its own. Fails where the
  // pipe has no reader left (ENXIO: the writes below say EPIPE then), without /proc, or
  // on a terminal that polymap's user may not open.
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  own_ = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  struct stat opened {};
  if (own_ >= 0 && (fstat(own_, &opened) != 0 || opened.st_dev != st.st_dev ||
                    opened.st_ino != st.st_ino || opened.st_rdev != st.st_rdev)) {
    close(own_);  // not the same file after all
    own_ = -1;
  }
  if (own_ >= 0) {
    way_ = way::reopened;
    fd_ = own_;
  }
}

unblocked_stream::~unblocked_stream() {
  if (own_ >= 0) close(own_);
}

bool unblocked_stream::may_block(int fd) noexcept {
  struct stat st {};
  if (fstat(fd, &st) != 0) return false;
  return S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || isatty(fd) != 0;
}

ssize_t unblocked_stream::write_some(std::string_view data) noexcept {
  ssize_t n = -1;
  switch (way_) {
    case way::reopened:
      n = ::write(fd_, data.data(), data.size());
      break;
    case way::socket:
      n = send(fd_, data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      break;
    case way::pieces: {
      // Room for PIPE_BUF bytes at least, or an error that the write says: a pipe takes a
      // piece that size without waiting, where a larger one would wait for all but its tail.
      pollfd p{fd_, POLLOUT, 0};
      if (poll(&p, 1, 0) == 0) return 0;
      n = ::write(fd_, data.data(), std::min<std::size_t>(data.size(), PIPE_BUF));
      break;
    }
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
  if (n == 0 && !data.empty()) {
    errno = ENOSPC;  // as write_all() says of a write of nothing
    return -1;
  }
  return n;
}

ssize_t unblocked_stream::send_some(int from, std::int64_t& at, std::size_t size) noexcept {
  if (way_ == way::reopened) {
    auto offset = static_cast<off_t>(at);
    const ssize_t n = sendfile(fd_, from, &offset, size);
    if (n > 0) {
      at = offset;
      return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n == 0 && size > 0) {
      errno = EIO;  // `from` ends sooner
      return -1;
    }
    // A file that cannot be sent from (EINVAL): read and written instead, below.
    if (n < 0 && errno != EINVAL && errno != ENOSYS) return -1;
  }
  int error = 0;
  // In pieces, no more than a piece is read: the rest would be read again.
  const std::string_view piece =
      read_piece(from, at, way_ == way::pieces ? std::min<std::size_t>(size, PIPE_BUF) : size, error);
  if (error != 0) {
    errno = error;
    return -1;
  }
  const ssize_t n = write_some(piece);
  if (n > 0) at += n;
  return n;
}

}  // namespace polymap::cli::run
