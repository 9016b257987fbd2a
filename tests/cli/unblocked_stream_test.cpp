// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// unblocked_stream: a write to a pipe, socket or terminal that nobody reads never waits, and
// the stream's own descriptor keeps its flags.
#include "cli/run/unblocked_stream.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace polymap::cli::run {
namespace {

/// Writes `data` over and over until the stream takes nothing: the bytes it took. Each
/// call returns at once, or the test hangs (ctest's timeout fails it).
std::size_t fill(unblocked_stream& stream, const std::string& data) {
  std::size_t total = 0;
  for (;;) {
    const ssize_t n = stream.write_some(data);
    EXPECT_GE(n, 0) << std::strerror(errno);
    if (n <= 0) return total;
    total += static_cast<std::size_t>(n);
  }
}

const std::string megabyte(1 << 20, 'x');

TEST(UnblockedStream, PipeNobodyReadsFillsWithoutWaitingAndKeepsItsFlags) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  EXPECT_TRUE(unblocked_stream::may_block(fds[1]));
  const int flags = fcntl(fds[1], F_GETFL);
  {
    unblocked_stream stream(fds[1]);
    const std::size_t taken = fill(stream, megabyte);
    EXPECT_EQ(taken, static_cast<std::size_t>(fcntl(fds[1], F_GETPIPE_SZ)));
    EXPECT_EQ(fcntl(fds[1], F_GETFL), flags);  // still blocking, as the caller left it
    // What it took is in the pipe; a page read makes room again.
    std::string got(4096, '\0');
    ASSERT_EQ(read(fds[0], got.data(), got.size()), 4096);
    EXPECT_EQ(got, megabyte.substr(0, 4096));
    EXPECT_GT(stream.write_some(megabyte), 0);
  }
  close(fds[0]);
  close(fds[1]);
}

TEST(UnblockedStream, PipeWhoseReaderHasGoneSaysEpipe) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  close(fds[0]);
  struct sigaction ignore {};
  struct sigaction old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, &old);
  unblocked_stream stream(fds[1]);
  errno = 0;
  EXPECT_EQ(stream.write_some("x"), -1);
  EXPECT_EQ(errno, EPIPE);
  sigaction(SIGPIPE, &old, nullptr);
  close(fds[1]);
}

TEST(UnblockedStream, SocketNobodyReadsFillsWithoutWaiting) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  EXPECT_TRUE(unblocked_stream::may_block(fds[0]));
  {
    unblocked_stream stream(fds[0]);
    EXPECT_GT(fill(stream, megabyte), 0U);
    EXPECT_EQ(fcntl(fds[0], F_GETFL) & O_NONBLOCK, 0);
  }
  close(fds[0]);
  close(fds[1]);
}

TEST(UnblockedStream, TerminalNobodyReadsFillsWithoutWaiting) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    if (master >= 0) close(master);
    GTEST_SKIP() << "no pseudo-terminal here: " << std::strerror(errno);
  }
  const int terminal = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(terminal, 0) << std::strerror(errno);
  EXPECT_TRUE(unblocked_stream::may_block(terminal));
  {
    unblocked_stream stream(terminal);
    EXPECT_GT(fill(stream, megabyte), 0U);
  }
  close(terminal);
  close(master);
}

/// A file of `size` bytes 0, 1, 2, ... 255, 0, 1, ... without a name.
int pattern_file(std::size_t size) {
  const int fd = memfd_create("pattern", MFD_CLOEXEC);
  std::string data(size, '\0');
  for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>(i % 256);
  EXPECT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(size));
  return fd;
}

/// Sends all of a pattern_file() of `size` bytes through `stream`, reading `reader` whenever
/// the stream takes nothing: what the reader got.
std::string send_through(unblocked_stream& stream, int reader, std::size_t size) {
  const int file = pattern_file(size);
  std::string got;
  std::int64_t at = 0;
  while (static_cast<std::size_t>(at) < size) {
    const ssize_t n = stream.send_some(file, at, size - static_cast<std::size_t>(at));
    EXPECT_GE(n, 0) << std::strerror(errno);
    if (n < 0) break;
    if (n == 0) {
      char buffer[65536];
      const ssize_t r = read(reader, buffer, sizeof buffer);
      if (r > 0) got.append(buffer, static_cast<std::size_t>(r));
    }
  }
  close(file);
  for (;;) {  // what is still in the pipe or socket
    char buffer[65536];
    const ssize_t r = recv(reader, buffer, sizeof buffer, MSG_DONTWAIT);
    const ssize_t p = r < 0 && errno == ENOTSOCK ? read(reader, buffer, sizeof buffer) : r;
    if (p <= 0) break;
    got.append(buffer, static_cast<std::size_t>(p));
  }
  return got;
}

TEST(UnblockedStream, FileSentThroughAPipeOrSocketArrivesWholeAndInOrder) {
  constexpr std::size_t size = (1 << 20) + 123;
  std::string expected(size, '\0');
  for (std::size_t i = 0; i < size; ++i) expected[i] = static_cast<char>(i % 256);
  {
    SCOPED_TRACE("pipe");
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);  // the reader does not wait either
    unblocked_stream stream(fds[1]);
    EXPECT_EQ(send_through(stream, fds[0], size), expected);
    close(fds[0]);
    close(fds[1]);
  }
  {
    SCOPED_TRACE("socket");
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    unblocked_stream stream(fds[0]);
    EXPECT_EQ(send_through(stream, fds[1], size), expected);
    close(fds[0]);
    close(fds[1]);
  }
}

TEST(UnblockedStream, FileShorterThanSaidIsAnError) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  const int file = pattern_file(10);
  unblocked_stream stream(fds[1]);
  std::int64_t at = 10;
  errno = 0;
  EXPECT_EQ(stream.send_some(file, at, 5), -1);
  EXPECT_EQ(errno, EIO);
  close(file);
  close(fds[0]);
  close(fds[1]);
}

// A pseudo-terminal's master is written as it is: opening /dev/ptmx again would make a new
// terminal, whose output nobody reads.
TEST(UnblockedStream, PseudoTerminalMasterIsWrittenItself) {
  const int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    if (master >= 0) close(master);
    GTEST_SKIP() << "no pseudo-terminal here: " << std::strerror(errno);
  }
  const int terminal = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  ASSERT_GE(terminal, 0) << std::strerror(errno);
  {
    unblocked_stream stream(master);
    EXPECT_EQ(stream.write_some("hello\n"), 6);
  }
  // The terminal's side gets the bytes a moment later (the kernel moves them in a worker).
  pollfd readable{terminal, POLLIN, 0};
  EXPECT_EQ(poll(&readable, 1, 30000), 1);
  char got[16] = {};
  EXPECT_EQ(read(terminal, got, sizeof got), 6);
  EXPECT_STREQ(got, "hello\n");
  close(terminal);
  close(master);
}

TEST(UnblockedStream, FileAndDevNullNeverWait) {
  const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(null, 0);
  EXPECT_FALSE(unblocked_stream::may_block(null));
  close(null);
  char path[] = "/tmp/polymap-unblocked-XXXXXX";
  const int file = mkstemp(path);
  ASSERT_GE(file, 0);
  unlink(path);
  EXPECT_FALSE(unblocked_stream::may_block(file));
  close(file);
}

}  // namespace
}  // namespace polymap::cli::run
