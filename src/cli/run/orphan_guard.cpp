// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/orphan_guard.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>
#include <unordered_set>

namespace polymap::cli::run {

namespace {

[[noreturn]] void guard_main(int socket) {
  // A Ctrl-C reaches the whole foreground process group: the helper must stay to see
  // whether the runner really goes.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE}) signal(sig, SIG_IGN);
  // Hold no descriptor of the runner's: a reader of the runner's stdout must see EOF when
  // the runner exits, not when the helper does.
  const int null = open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd) {
    if (fd != socket) dup2(null, fd);
  }
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != socket) close(fd);
  }
  std::unordered_set<std::int32_t> groups;
  std::int32_t message = 0;
  for (;;) {
    const ssize_t n = recv(socket, &message, sizeof message, 0);
    if (n == static_cast<ssize_t>(sizeof message)) {
      if (message > 0) {
        groups.insert(message);
      } else {
        groups.erase(-message);
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // the runner closed the socket, or died
  }
  for (std::int32_t group : groups) kill(-group, SIGKILL);
  _exit(0);
}

}  // namespace

orphan_guard::orphan_guard() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    throw std::system_error(errno, std::generic_category(), "socketpair");
  }
  pid_ = fork();
  if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid_ == 0) {
    close(pair[0]);
    guard_main(pair[1]);
  }
  close(pair[1]);
  socket_ = pair[0];
}

orphan_guard::~orphan_guard() {
  close(socket_);
  int status = 0;
  waitpid(pid_, &status, 0);
}

void orphan_guard::add(pid_t group) noexcept {
  const std::int32_t message = group;
  // MSG_NOSIGNAL: a helper that died must not take the runner with it through SIGPIPE.
  (void)send(socket_, &message, sizeof message, MSG_NOSIGNAL);
}

void orphan_guard::remove(pid_t group) noexcept {
  const std::int32_t message = -group;
  (void)send(socket_, &message, sizeof message, MSG_NOSIGNAL);
}

}  // namespace polymap::cli::run
