// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// A program that runs a map on worker processes whose items never end, for processes_test
// to send SIGTERM or SIGKILL to. Each item prints "worker <pid> item <index>" on stdout when
// it starts.
// Usage: polymap_sigterm_helper default|own-handler|after-crash|grandchildren
//   default        leaves SIGTERM alone: polymap's guard cleans up, then the program dies of it
//   own-handler    installs a handler first, which prints "handled" and exits with status 7
//   after-crash    as default, but the first item crashes first, so that a replacement
//                  worker is running when SIGTERM comes
//   grandchildren  as default, but each item first forks a child of its own that never
//                  ends, and prints "grandchild <pid>" before its worker line
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <polymap/polymap.hpp>
#include <string>

namespace {

void write_line(const std::string& line) {
  const std::string text = line + "\n";
  (void)!write(STDOUT_FILENO, text.data(), text.size());
}

extern "C" void on_sigterm(int) {
  constexpr char text[] = "handled\n";
  (void)!write(STDOUT_FILENO, text, sizeof text - 1);
  _exit(7);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode != "default" && mode != "own-handler" && mode != "after-crash" &&
      mode != "grandchildren") {
    std::fprintf(stderr, "usage: %s default|own-handler|after-crash|grandchildren\n", argv[0]);
    return 2;
  }
  if (mode == "own-handler") {
    struct sigaction sa {};
    sa.sa_handler = on_sigterm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
  }
  const bool crash = mode == "after-crash";
  const bool grandchildren = mode == "grandchildren";
  polymap::for_each(crash ? 3 : 2,
                    [crash, grandchildren](std::size_t i) {
                      if (crash && i == 0) {
                        std::signal(SIGSEGV, SIG_DFL);
                        std::raise(SIGSEGV);
                      }
                      if (grandchildren) {
                        const pid_t child = fork();
                        if (child == 0) {
                          for (;;) pause();
                        }
                        write_line("grandchild " + std::to_string(child));
                      }
                      write_line("worker " + std::to_string(getpid()) + " item " +
                                 std::to_string(i));
                      for (;;) pause();
                    },
                    {.backend = polymap::backend_kind::processes,
                     .workers = 2,
                     .on_error = polymap::on_error::collect,
                     .chunk = 1});
  write_line("map returned");
  return 0;
}
