// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/fd_io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <new>
#include <system_error>

namespace polymap::cli::run {

namespace {

constexpr std::size_t chunk = 256 * 1024;  // bytes per read and write when copying

/// Waits until `fd` can be written: a stdout that its owner made non-blocking fills up as a
/// blocking one does, and the output must still go out whole.
/// @return 0, or the errno of a poll() that failed otherwise than by EINTR
int wait_writable(int fd) noexcept {
  pollfd p{fd, POLLOUT, 0};
  for (;;) {
    if (poll(&p, 1, -1) >= 0) return 0;  // an error or hang-up there: the write says which
    if (errno != EINTR) return errno;
  }
}

}  // namespace

int write_all(int fd, std::string_view data) noexcept {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (const int error = wait_writable(fd); error != 0) return error;
      continue;
    }
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

std::string pread_all(int fd, std::int64_t offset, std::size_t size) {
  std::string data(size, '\0');
  std::size_t got = 0;
  while (got < size) {
    const ssize_t n = pread(fd, data.data() + got, size - got,
                            static_cast<off_t>(offset + static_cast<std::int64_t>(got)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  data.resize(got);
  return data;
}

std::string_view read_piece(int from, std::int64_t at, std::size_t size, int& error) noexcept {
  // A static buffer: copying never allocates, and a large piece costs no more memory than
  // a small one.
  static std::array<char, chunk> buffer;
  for (;;) {
    const ssize_t n = pread(from, buffer.data(), std::min(size, buffer.size()), at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : EIO;
      return {};
    }
    return {buffer.data(), static_cast<std::size_t>(n)};
  }
}

int copy_bytes(int from, std::int64_t at, std::size_t size, int to) noexcept {
  return copy_bytes(from, at, size, [to](std::string_view piece) { return write_all(to, piece); });
}

int send_all(int from, std::int64_t at, std::size_t size, int to) noexcept {
  while (size > 0) {
    auto offset = static_cast<off_t>(at);
    const ssize_t n = sendfile(to, from, &offset, size);
    if (n > 0) {
      at = offset;
      size -= static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) return EIO;  // `from` ends sooner
    // EINVAL, ENOSYS: these two cannot; EAGAIN: `to` was left non-blocking (write_all waits).
    if (errno == EINVAL || errno == ENOSYS || errno == EAGAIN) return copy_bytes(from, at, size, to);
    return errno;
  }
  return 0;
}

bool same_file(int a, int b) noexcept {
  struct stat sa {};
  struct stat sb {};
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

std::size_t file_size(int fd) noexcept {
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 0) return 0;
  return static_cast<std::size_t>(st.st_size);
}

fd_fit jobs_within_fd_limit(std::size_t wanted, std::size_t per_job) noexcept {
  rlimit limit{};
  if (per_job == 0 || getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return {wanted, 0};
  }
  std::size_t open_now = 32;  // where they cannot be counted
  try {
    if (const std::vector<int> fds = open_descriptors(); !fds.empty()) open_now = fds.size();
  } catch (const std::bad_alloc&) {
  }
  constexpr std::size_t spare = 16;
  const auto cur = static_cast<std::size_t>(limit.rlim_cur);
  const std::size_t free_fds = cur > open_now + spare ? cur - open_now - spare : 0;
  return {std::min(wanted, free_fds / per_job), cur};
}

void open_closed_standard_fds() noexcept {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    const int opened = open("/dev/null", O_RDWR);  // the lowest free number: fd itself
    if (opened >= 0 && opened != fd) {
      dup2(opened, fd);
      close(opened);
    }
  }
}

std::vector<int> open_descriptors() {
  std::vector<int> fds;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (const dirent* entry = readdir(dir)) {
      const int fd = std::atoi(entry->d_name);
      if (entry->d_name[0] != '.' && fd != dirfd(dir)) fds.push_back(fd);
    }
    closedir(dir);
  }
  return fds;
}

void close_on_exec_but(const std::vector<int>& kept) noexcept {
  std::vector<int> open;
  try {
    open = open_descriptors();
  } catch (const std::bad_alloc&) {
    return;
  }
  for (int fd : open) {
    if (fd <= 2 || std::find(kept.begin(), kept.end(), fd) != kept.end()) continue;
    const int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC) == 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

int make_capture() {
  const int fd = memfd_create("polymap-job", MFD_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "memfd_create");
  return fd;
}

std::string read_all(int fd) { return pread_all(fd, 0, file_size(fd)); }

}  // namespace polymap::cli::run
