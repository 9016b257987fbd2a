// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "orphan_guard.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <system_error>
#include <unordered_set>

namespace polymap::detail {

namespace {

/// The helper's descriptor for the socket, once it has closed every other.
constexpr int helper_socket = 3;

/// Exit status of the first child when it could not fork the helper.
constexpr int no_helper = 1;

[[noreturn]] void guard_main(int socket) {
  // The terminal's signals reach the whole foreground process group: the helper must stay
  // to see whether its maker really goes.
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU}) {
    signal(sig, SIG_IGN);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  (void)prctl(PR_SET_NAME, "polymap-guard");
  // Hold no descriptor of the maker's: a reader of its stdout must see EOF when it exits,
  // not when the helper does; a file it deleted must not stay allocated.
  if (socket != helper_socket) {
    dup2(socket, helper_socket);
    close(socket);
  }
  const int null = open("/dev/null", O_RDWR);
  for (int fd = 0; fd < 3; ++fd) {
    if (null >= 0 && null != fd) dup2(null, fd);
  }
  close_range(helper_socket + 1, UINT_MAX, 0);
  (void)!chdir("/");  // nor its working directory's file system
  std::unordered_set<std::int32_t> groups;
  std::int32_t message = 0;
  for (;;) {
    const ssize_t n = recv(helper_socket, &message, sizeof message, 0);
    if (n == static_cast<ssize_t>(sizeof message)) {
      if (message > 0) {
        groups.insert(message);
      } else {
        groups.erase(-message);
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // the maker closed the socket, or died
  }
  for (std::int32_t group : groups) kill(-group, SIGKILL);
  _exit(0);
}

}  // namespace

orphan_guard::orphan_guard() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    throw std::system_error(errno, std::generic_category(), "polymap: orphan guard: socketpair");
  }
  const pid_t first = fork();
  if (first < 0) {
    const int error = errno;
    close(pair[0]);
    close(pair[1]);
    throw std::system_error(error, std::generic_category(), "polymap: orphan guard: fork");
  }
  if (first == 0) {
    // The helper's parent exits at once: init (or the nearest subreaper) adopts it.
    close(pair[0]);
    const pid_t helper = fork();
    if (helper == 0) guard_main(pair[1]);
    _exit(helper < 0 ? no_helper : 0);
  }
  close(pair[1]);
  socket_ = pair[0];
  int status = 0;
  pid_t got = 0;
  while ((got = waitpid(first, &status, 0)) < 0 && errno == EINTR) {
  }
  // ECHILD: the program ignores SIGCHLD, or its own handler reaped the child first; the
  // helper then tells by closing its end, which add() does not need to know.
  if (got == first && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    close(socket_);
    throw std::system_error(EAGAIN, std::generic_category(),
                            "polymap: orphan guard: fork of the helper");
  }
}

orphan_guard::~orphan_guard() {
  // The helper sees the end of the stream even where a child still holds this end; its
  // end closes when it exits, after the kills.
  (void)shutdown(socket_, SHUT_WR);
  char byte = 0;
  while (recv(socket_, &byte, sizeof byte, 0) < 0 && errno == EINTR) {
  }
  close(socket_);
}

void orphan_guard::add(pid_t group) const noexcept {
  const std::int32_t message = group;
  // MSG_NOSIGNAL: a helper that died must not take its maker with it through SIGPIPE.
  (void)send(socket_, &message, sizeof message, MSG_NOSIGNAL);
}

void orphan_guard::remove(pid_t group) const noexcept {
  const std::int32_t message = -group;
  (void)send(socket_, &message, sizeof message, MSG_NOSIGNAL);
}

}  // namespace polymap::detail
