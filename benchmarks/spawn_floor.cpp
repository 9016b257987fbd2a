// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The floor for a batch runner: a bare posix_spawn loop that keeps J copies of a program
// running until N have run, reaping with waitpid. No output, no bookkeeping.
//
//   bench_spawn_floor N J PROGRAM   (prints the seconds it took)

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

extern char** environ;

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: bench_spawn_floor N J PROGRAM\n");
    return 2;
  }
  const long n = std::atol(argv[1]);
  const long jobs = std::atol(argv[2]);
  const auto start = std::chrono::steady_clock::now();
  long started = 0;
  long running = 0;
  while (started < n || running > 0) {
    while (running < jobs && started < n) {
      // The item as an argument, as the runners given the same work pass it.
      std::string item = std::to_string(started + 1);
      char* child_argv[] = {argv[3], item.data(), nullptr};
      pid_t pid = 0;
      if (posix_spawnp(&pid, argv[3], nullptr, nullptr, child_argv, environ) != 0) {
        std::perror("posix_spawnp");
        return 1;
      }
      ++started;
      ++running;
    }
    int status = 0;
    if (waitpid(-1, &status, 0) > 0) --running;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.6f\n", seconds);
  return 0;
}
