// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Runs the polymap binary from a test as a user's shell would, without a shell: argv
// bytes arrive as given, the pid is known (to signal it), stdout and stderr go to files.
#pragma once

#include "cli/run/shell_context.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace polymap::test {

/// A fresh directory under the temporary directory, removed with its contents.
class temp_dir {
 public:
  temp_dir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "polymap-test-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

/// `arg` quoted for /bin/sh, as polymap run quotes it.
using polymap::cli::run::shell_quote;

/// `polymap args...` as a /bin/sh command: the binary and each argument quoted.
inline std::string polymap_command(const std::vector<std::string>& args) {
  std::string command = shell_quote(POLYMAP_CLI_PATH);
  for (const std::string& arg : args) {
    // Two appends, not `" " + shell_quote(arg)`: GCC 12 at -O3 warns a false -Wrestrict on
    // that (https://gcc.gnu.org/bugzilla/show_bug.cgi?id=105329; drop with GCC 12).
    command += ' ';
    command += shell_quote(arg);
  }
  return command;
}

/// Runs `polymap args...` under a soft file size limit of `blocks` (1 KiB each), which stands
/// for a full disk: polymap ignores SIGXFSZ while it runs a batch, so a write past it fails
/// with EFBIG. Its stdout goes to /dev/null and its stderr to the file `err`. A job may lift
/// the soft limit for itself.
/// @return std::system's status
inline int run_polymap_on_a_full_disk(const std::vector<std::string>& args, int blocks,
                                      const std::string& err) {
  std::string command = "ulimit -S -f " + std::to_string(blocks) + "; exec ";
  command += polymap_command(args);
  command += " >/dev/null 2>";
  command += shell_quote(err);
  return std::system(command.c_str());
}

/// The bytes of a file; what could be read when it fails half-way, as a file under /proc does
/// when its process exits while it is read (an ifstream would throw then).
inline std::string read_file(const std::string& path) {
  std::string data;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return data;
  char buffer[4096];
  for (;;) {
    const ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    data.append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return data;
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

/// For cli_process's `stderr_fd` or `stdout_fd`: the stream closed, as by `2>&-` or `>&-`.
inline constexpr int closed_stream = -2;

/// A running polymap.
class cli_process {
 public:
  /// Starts `polymap args...` with stdout and stderr in `dir`/out.N and err.N; with
  /// `stderr_fd` >= 0, stderr is that descriptor instead (a terminal, say), and so is stdout
  /// with `stdout_fd` >= 0 (a pipe); either is closed when it is closed_stream. Its stdin is
  /// the file `stdin_path`. Its environment is the test's, with each `NAME=value` of `env`
  /// added or in place of the test's own. With a `launcher` (its absolute path first, then
  /// its arguments), that runs polymap: `mpirun -n 3 polymap args...`.
  cli_process(const std::vector<std::string>& args, const temp_dir& dir, int stderr_fd = -1,
              const std::string& stdin_path = "/dev/null", const std::vector<std::string>& env = {},
              int stdout_fd = -1, const std::vector<std::string>& launcher = {}) {
    static int counter = 0;
    ++counter;
    out_path_ = dir / ("out." + std::to_string(counter));
    err_path_ = dir / ("err." + std::to_string(counter));
    std::vector<std::string> words = launcher;
    words.emplace_back(POLYMAP_CLI_PATH);
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, stdin_path.c_str(), O_RDONLY, 0);
    if (stdout_fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
    } else if (stdout_fd == closed_stream) {
      posix_spawn_file_actions_addclose(&actions, 1);
    } else {
      posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                       0644);
    }
    if (stderr_fd >= 0) {
      posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    } else if (stderr_fd == closed_stream) {
      posix_spawn_file_actions_addclose(&actions, 2);
    } else {
      posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    std::vector<std::string> variables = env;
    for (char** var = environ; *var != nullptr; ++var) {
      const std::string entry = *var;
      const std::string name = entry.substr(0, entry.find('=') + 1);
      bool replaced = false;
      for (const std::string& e : env) replaced = replaced || e.rfind(name, 0) == 0;
      if (!replaced) variables.push_back(entry);
    }
    std::vector<char*> envp;
    for (std::string& v : variables) envp.push_back(v.data());
    envp.push_back(nullptr);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + words[0]);
  }
  cli_process(const cli_process&) = delete;
  cli_process& operator=(const cli_process&) = delete;
  ~cli_process() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  [[nodiscard]] pid_t pid() const { return pid_; }
  void signal(int sig) const { kill(pid_, sig); }

  /// Waits for the exit: the exit status, 128+signal when killed by one.
  int wait() {
    rusage ignored{};
    return wait(ignored);
  }
  /// The same, with what polymap (and the jobs it waited for) used in `usage`: ru_maxrss is
  /// the peak resident set of the largest of them, in KiB.
  int wait(rusage& usage) {
    int status = 0;
    wait4(pid_, &status, 0, &usage);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  /// Waits up to `seconds` for the exit: its status as wait() gives it, or nothing while
  /// polymap still runs then.
  std::optional<int> wait_for(double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    for (;;) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  [[nodiscard]] std::string out() const { return read_file(out_path_); }
  [[nodiscard]] std::string err() const { return read_file(err_path_); }

 private:
  pid_t pid_ = -1;
  std::string out_path_;
  std::string err_path_;
};

/// What a finished polymap printed.
struct cli_output {
  int status = -1;
  std::string out;
  std::string err;
};

/// Runs polymap to its end; `input`, when given, is what it reads on stdin.
inline cli_output run_polymap(const std::vector<std::string>& args, const temp_dir& dir,
                              const std::optional<std::string>& input = std::nullopt) {
  std::string stdin_path = "/dev/null";
  if (input) {
    stdin_path = dir / "stdin";
    write_file(stdin_path, *input);
  }
  cli_process p(args, dir, -1, stdin_path);
  cli_output r;
  r.status = p.wait();
  r.out = p.out();
  r.err = p.err();
  return r;
}

/// Pids of the processes whose command line contains `marker`.
inline std::vector<pid_t> processes_with(const std::string& marker) {
  std::vector<pid_t> found;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = readdir(proc)) {
    const pid_t pid = std::atoi(entry->d_name);
    if (pid <= 0) continue;
    const std::string cmdline = read_file("/proc/" + std::string(entry->d_name) + "/cmdline");
    const std::string stat = read_file("/proc/" + std::string(entry->d_name) + "/stat");
    // A zombie has run to its end: only its parent's wait is missing.
    const std::size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z') continue;
    if (cmdline.find(marker) != std::string::npos) found.push_back(pid);
  }
  closedir(proc);
  return found;
}

/// Waits up to `seconds` for no process to carry `marker`; the ones still there.
inline std::vector<pid_t> survivors_after(const std::string& marker, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::vector<pid_t> left = processes_with(marker);
  while (!left.empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    left = processes_with(marker);
  }
  return left;
}

/// Waits up to `seconds` for process `pid` to end (a zombie has ended): whether it did.
inline bool ended_within(pid_t pid, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const std::size_t paren = stat.rfind(')');
    if (stat.empty() || (paren != std::string::npos && paren + 2 < stat.size() &&
                         stat[paren + 2] == 'Z')) {
      return true;
    }
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

/// Waits up to `seconds` for process `pid` to be gone: ended and waited for by its parent
/// (no zombie left): whether it was.
inline bool reaped_within(pid_t pid, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  const std::string path = "/proc/" + std::to_string(pid);
  for (;;) {
    if (access(path.c_str(), F_OK) != 0) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

/// Waits up to `seconds` for the pipe whose read end is `fd` to hold `bytes` unread: whether
/// it does.
inline bool pipe_holds(int fd, int bytes, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    int unread = 0;
    if (ioctl(fd, FIONREAD, &unread) == 0 && unread >= bytes) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

/// A new pseudo-terminal: its master side, open (closed with the object), and the path of
/// its terminal side.
struct pseudo_terminal {
  int master = -1;
  std::string terminal;
  pseudo_terminal() {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
      throw std::runtime_error("no pseudo-terminal");
    }
    terminal = ptsname(master);
  }
  pseudo_terminal(const pseudo_terminal&) = delete;
  pseudo_terminal& operator=(const pseudo_terminal&) = delete;
  ~pseudo_terminal() {
    if (master >= 0) close(master);
  }
};

/// A pipe for polymap's stdout that the test holds open without reading, as a pager left
/// open does; closed with the object.
struct unread_pipe {
  int fds[2] = {-1, -1};
  unread_pipe() {
    if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  }
  unread_pipe(const unread_pipe&) = delete;
  unread_pipe& operator=(const unread_pipe&) = delete;
  ~unread_pipe() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
  /// Fills the pipe, as output that was never read does: the next write to it waits.
  void fill() const {
    const std::string bytes(static_cast<std::size_t>(fcntl(fds[1], F_GETPIPE_SZ)), 'x');
    if (::write(fds[1], bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
      throw std::runtime_error("cannot fill a pipe");
    }
  }
  void close_write_end() {
    close(fds[1]);
    fds[1] = -1;
  }
  /// Reads `size` bytes, or what comes before the end.
  std::string read(std::size_t size) const {
    std::string data;
    char buffer[65536];
    while (data.size() < size) {
      const ssize_t n = ::read(fds[0], buffer, std::min(sizeof buffer, size - data.size()));
      if (n <= 0) break;
      data.append(buffer, static_cast<std::size_t>(n));
    }
    return data;
  }
};

/// More than a pipe holds (64 KiB by default).
inline constexpr std::size_t stuck_output = 300000;

/// Waits up to 30 s for the pipe of `out` to be full.
inline bool pipe_full(const unread_pipe& out) {
  return pipe_holds(out.fds[0], fcntl(out.fds[0], F_GETPIPE_SZ), 30);
}

/// Waits up to `seconds` for `count` processes to carry `marker`.
inline bool wait_for_processes(const std::string& marker, std::size_t count, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (processes_with(marker).size() >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

/// Lines of `text`.
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

}  // namespace polymap::test
