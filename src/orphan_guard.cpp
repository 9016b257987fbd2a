// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "orphan_guard.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <system_error>

namespace polymap::detail {

namespace {

/// The helper, run by `sh -c` with its socket on descriptor 3. It says it runs ("r" and its
/// pid), then keeps the set of groups from lines "+<pgid>" and "-<pgid>" in a string, and
/// at the end of the stream (its maker gone, or done) kills what is left. The background
/// list of a shell without job control ignores SIGINT and SIGQUIT already.
constexpr const char* helper_script = R"(trap '' HUP INT QUIT PIPE TSTP TTIN TTOU
printf 'r%s\n' "$$" >&3
live=' '
while IFS= read -r m <&3; do
  g=${m#?}
  case $m in
    +*) live="$live$g " ;;
    -*) case $live in *" $g "*) live="${live%% "$g" *} ${live#* "$g" }" ;; esac ;;
  esac
done
for g in $live; do kill -s KILL -- "-$g" 2>/dev/null; done
)";

/// The shell that starts the helper in the background and exits: the helper's parent is
/// then init (or the nearest subreaper), not the maker.
constexpr const char* launcher_script = R"(sh -c "$0" polymap-guard &)";

/// How long the helper may take to say that it runs.
constexpr auto start_limit = std::chrono::seconds(5);

[[nodiscard]] std::system_error guard_error(int error, const char* what) {
  std::string text = std::string("polymap: orphan guard: ") + what;
  rlimit files{};
  if (error == EMFILE && getrlimit(RLIMIT_NOFILE, &files) == 0 &&
      text.find("ulimit -n") == std::string::npos) {
    text += " (the open-file limit, ulimit -n " + std::to_string(files.rlim_cur) +
            ", is too low)";
  }
  return std::system_error(error, std::generic_category(), text);
}

/// `fd` moved to 10 or above (close-on-exec): never a standard descriptor, nor the 3 that
/// the helper's end is copied to.
int moved_up(int fd) noexcept {
  const int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  if (high < 0) return fd;
  close(fd);
  return high;
}

/// Starts the launcher with `helper_end` as its descriptor 3.
/// @return 0 or the error of posix_spawn
int spawn_launcher(int helper_end, pid_t& launcher) {
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDWR, 0);
  posix_spawn_file_actions_adddup2(&files, 0, 1);
  posix_spawn_file_actions_adddup2(&files, 0, 2);
  posix_spawn_file_actions_adddup2(&files, helper_end, 3);
  posix_spawn_file_actions_addclosefrom_np(&files, 4);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  // A session of its own (no terminal, out of the maker's process group), every signal at
  // its default (none of the maker's handlers) and none blocked.
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attributes, &all);
  posix_spawnattr_setsigmask(&attributes, &none);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  char* argv[] = {const_cast<char*>("sh"), const_cast<char*>("-c"),
                  const_cast<char*>(launcher_script), const_cast<char*>(helper_script),
                  nullptr};
  char* envp[] = {const_cast<char*>("PATH=/usr/bin:/bin"), nullptr};
  const int rc = posix_spawn(&launcher, "/bin/sh", &files, &attributes, argv, envp);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&files);
  return rc;
}

/// Reads the helper's first line ("r<pid>") within start_limit.
/// @return its pid, or -1 (errno: ETIMEDOUT when it said nothing in time, EPIPE when it
///   ended first, or the error of poll or recv)
pid_t read_started(int socket) {
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + start_limit;
  while (line.find('\n') == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return -1;
    pollfd p{socket, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) errno = ETIMEDOUT;
    if (ready <= 0) return -1;
    char buffer[32];
    const ssize_t got = recv(socket, buffer, sizeof buffer, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got == 0) errno = EPIPE;
    if (got <= 0) return -1;
    line.append(buffer, static_cast<std::size_t>(got));
  }
  if (line.size() < 3 || line[0] != 'r') {
    errno = EPROTO;
    return -1;
  }
  return static_cast<pid_t>(std::strtol(line.c_str() + 1, nullptr, 10));
}

}  // namespace

orphan_guard::orphan_guard() {
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    throw guard_error(errno, "socketpair");
  }
  socket_ = moved_up(pair[0]);
  const int helper_end = moved_up(pair[1]);
  pid_t launcher = -1;
  const int rc = spawn_launcher(helper_end, launcher);
  close(helper_end);
  if (rc != 0) {
    close(socket_);
    throw guard_error(rc, "cannot run /bin/sh");
  }
  // ECHILD: the program ignores SIGCHLD, or its own handler reaped the launcher first.
  while (waitpid(launcher, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = read_started(socket_);
  if (pid_ <= 0) {
    int error = errno;
    close(socket_);
    std::string what = error == EPIPE ? "the helper ended before it started"
                                      : "the helper did not start";
    // Its shell needs a few descriptors of its own.
    rlimit files{};
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < 16) {
      what += " (the open-file limit, ulimit -n " + std::to_string(files.rlim_cur) +
              ", may be too low)";
      if (error == EPIPE) error = EMFILE;
    }
    throw guard_error(error, what.c_str());
  }
}

orphan_guard::~orphan_guard() {
  // The helper sees the end of the stream even where a child still holds this end; its
  // end closes when it exits, after the kills.
  (void)shutdown(socket_, SHUT_WR);
  char buffer[16];
  for (;;) {
    const ssize_t got = recv(socket_, buffer, sizeof buffer, 0);
    if (got > 0 || (got < 0 && errno == EINTR)) continue;
    break;
  }
  close(socket_);
}

void orphan_guard::send_line(char sign, pid_t group) const noexcept {
  char line[24];
  const int length = std::snprintf(line, sizeof line, "%c%d\n", sign, static_cast<int>(group));
  // A line this short goes in whole or not at all. MSG_DONTWAIT: a helper that stopped
  // reading must not stop its maker; MSG_NOSIGNAL: nor one that died.
  while (send(socket_, line, static_cast<std::size_t>(length), MSG_NOSIGNAL | MSG_DONTWAIT) < 0 &&
         errno == EINTR) {
  }
}

void orphan_guard::add(pid_t group) const noexcept { send_line('+', group); }

void orphan_guard::remove(pid_t group) const noexcept { send_line('-', group); }

}  // namespace polymap::detail
