// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// End-to-end tests of the polymap command: each test runs the built binary and checks its
// exit status and output, as a user or a script would see them.

#include <polymap/backends/cuda.hpp>
#include <polymap/topology.hpp>
#include <polymap/version.hpp>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "cli_process.hpp"

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

struct cli_result {
  int status = -1;  // exit status, or -1 when it did not exit normally
  std::string out;  // stdout, with stderr too when asked
};

using polymap::test::shell_quote;

/// Runs `polymap args...` and returns its exit status and output: stdout alone (stderr is
/// dropped, so that JSON parses) or stdout and stderr merged.
cli_result run_cli(const std::vector<std::string>& args, bool with_stderr = true);

/// Runs the shell command `command` and returns its exit status and stdout.
cli_result run_shell(const std::string& command) {
  cli_result result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.out.append(buffer.data(), n);
  }
  const int wait_status = pclose(pipe);
  if (wait_status != -1 && WIFEXITED(wait_status)) result.status = WEXITSTATUS(wait_status);
  return result;
}

cli_result run_cli(const std::vector<std::string>& args, bool with_stderr) {
  std::string command = polymap::test::polymap_command(args);
  command += with_stderr ? " 2>&1" : " 2>/dev/null";
  return run_shell(command);
}

const std::vector<std::string> kernels = {"saxpy", "stencil", "mandelbrot", "black_scholes", "pi",
                                          "nbody"};

TEST(Cli, InfoMentionsUsableWorkerCount) {
  const cli_result r = run_cli({"info"});
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string expected =
      "usable workers  " + std::to_string(polymap::topology::current().usable_count());
  EXPECT_NE(r.out.find(expected), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("threads"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("POLYMAP_BACKEND"), std::string::npos) << r.out;
}

TEST(Cli, InfoJsonMatchesTopology) {
  const cli_result r = run_cli({"info", "--json"}, false);
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const polymap::topology& topo = polymap::topology::current();
  EXPECT_EQ(j.at("version").get<std::string>(), std::string(polymap::version));
  EXPECT_EQ(j.at("topology").at("usable_count").get<std::size_t>(), topo.usable_count());
  EXPECT_EQ(j.at("topology").at("usable_pus").get<std::vector<int>>(), topo.usable_pus());
  EXPECT_EQ(j.at("topology").at("cores").get<std::size_t>(), topo.cores().size());
  std::map<std::string, bool> built;
  for (const nlohmann::json& b : j.at("backends")) {
    built[b.at("name").get<std::string>()] = b.at("built").get<bool>();
  }
  EXPECT_TRUE(built.at("serial"));
  EXPECT_TRUE(built.at("threads"));
  EXPECT_EQ(built.size(), 6U);
}

TEST(Cli, BenchJsonListsEveryKernelOnEveryBackend) {
  const cli_result r = run_cli({"bench", "--json", "--size", "small", "--repeat", "1"}, false);
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json out = nlohmann::json::parse(r.out);
  // The run's context, as the table's head and foot give it.
  EXPECT_EQ(out.at("size"), "small");
  EXPECT_EQ(out.at("repeat"), 1);
  EXPECT_GE(out.at("usable_cpus").get<int>(), 1);
  EXPECT_FALSE(out.at("topology_source").get<std::string>().empty());
  EXPECT_EQ(out.at("results").at("pi").get<std::string>().rfind("pi ~ 3.1", 0), 0U) << out;
  const nlohmann::json& rows = out.at("rows");
  ASSERT_TRUE(rows.is_array());

  std::map<std::string, std::set<std::string>> ran;  // kernel -> backends that ran
  std::map<std::string, int> automatic_rows;
  std::map<std::string, int> chosen_rows;
  std::map<std::string, std::string> automatic_ran_on;
  std::map<std::string, std::string> chosen_backend;
  for (const nlohmann::json& row : rows) {
    const auto kernel = row.at("kernel").get<std::string>();
    const auto backend = row.at("backend").get<std::string>();
    // Every row has every key.
    for (const char* key : {"kernel", "backend", "skipped", "reason", "items", "seconds",
                            "median_seconds", "workers", "ran_on", "result_matches_serial",
                            "automatic_choice", "error", "decision", "note"}) {
      EXPECT_TRUE(row.contains(key)) << key << ": " << row.dump();
    }
    if (row.at("skipped").get<bool>()) {
      EXPECT_FALSE(row.at("reason").get<std::string>().empty()) << row.dump();
      continue;
    }
    ran[kernel].insert(backend);
    EXPECT_GT(row.at("items").get<double>(), 0) << row.dump();
    EXPECT_GT(row.at("median_seconds").get<double>(), 0) << row.dump();
    EXPECT_GT(row.at("items_per_second").get<double>(), 0) << row.dump();
    EXPECT_GT(row.at("speedup_vs_serial").get<double>(), 0) << row.dump();
    EXPECT_TRUE(row.at("result_matches_serial").get<bool>()) << row.dump();
    if (backend == "automatic") {
      ++automatic_rows[kernel];
      automatic_ran_on[kernel] = row.at("ran_on").get<std::string>();
    }
    if (row.at("automatic_choice").get<bool>()) {
      ++chosen_rows[kernel];
      chosen_backend[kernel] = backend;
    }
  }
  for (const std::string& kernel : kernels) {
    SCOPED_TRACE(kernel);
    EXPECT_TRUE(ran[kernel].contains("serial"));
    EXPECT_TRUE(ran[kernel].contains("threads"));
    EXPECT_TRUE(ran[kernel].contains("automatic"));
    EXPECT_EQ(automatic_rows[kernel], 1);
    // The row marked as automatic's choice is the backend the automatic row ran on.
    EXPECT_EQ(chosen_rows[kernel], 1);
    EXPECT_EQ(chosen_backend[kernel], automatic_ran_on[kernel]);
  }
}

TEST(Cli, BenchWarmsUpEachBackendOnceBeforeTheTimedRuns) {
  // POLYMAP_EXPLAIN=1 prints a line for each call of a map: count the calls of the kernel
  // on each backend. A warm-up run takes the one-off costs out of the timed ones.
  const polymap::test::temp_dir dir;
  const std::string command = "POLYMAP_EXPLAIN=1 " + shell_quote(POLYMAP_CLI_PATH) +
                              " bench --json --size small --repeat 2 --kernel saxpy >" +
                              shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  ASSERT_EQ(std::system(command.c_str()), 0) << polymap::test::read_file(dir / "err");
  const nlohmann::json rows =
      nlohmann::json::parse(polymap::test::read_file(dir / "out")).at("rows");
  const std::string err = polymap::test::read_file(dir / "err");
  int checked = 0;
  for (const nlohmann::json& row : rows) {
    const auto backend = row.at("backend").get<std::string>();
    if (row.at("skipped").get<bool>() || backend == "serial" || backend == "automatic") continue;
    const std::string call = "polymap: " + std::to_string(row.at("tasks").get<std::size_t>()) +
                             " items -> " + backend + ": requested by options::backend";
    int calls = 0;
    for (std::size_t at = err.find(call); at != std::string::npos; at = err.find(call, at + 1)) {
      ++calls;
    }
    EXPECT_EQ(calls, 3) << backend << ": one warm-up and two timed runs\n" << err;
    ++checked;
  }
  EXPECT_GE(checked, 2);  // threads and processes at least
}

TEST(Cli, PolymapExplainTakesTheUsualWordsForNo) {
  const polymap::test::temp_dir dir;
  for (const char* value : {"1", "yes", "0", "false", "No", "OFF", ""}) {
    const std::string command = std::string("POLYMAP_EXPLAIN='") + value + "' " +
                                shell_quote(POLYMAP_CLI_PATH) +
                                " bench --json --size small --repeat 1 --kernel saxpy >" +
                                shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
    ASSERT_EQ(std::system(command.c_str()), 0) << polymap::test::read_file(dir / "err");
    const bool explained =
        polymap::test::read_file(dir / "err").find(" items -> ") != std::string::npos;
    const std::string v = value;
    EXPECT_EQ(explained, v == "1" || v == "yes") << "POLYMAP_EXPLAIN='" << value << "'";
  }
}

TEST(Cli, BenchKernelOptionSelectsKernels) {
  const cli_result r = run_cli(
      {"bench", "--json", "--size", "small", "--repeat", "1", "--kernel", "pi,saxpy"}, false);
  ASSERT_EQ(r.status, 0) << r.out;
  std::set<std::string> seen;
  const nlohmann::json out = nlohmann::json::parse(r.out);
  for (const nlohmann::json& row : out.at("rows")) {
    seen.insert(row.at("kernel").get<std::string>());
  }
  EXPECT_EQ(seen, (std::set<std::string>{"pi", "saxpy"}));
}

TEST(Cli, BenchPrintsTable) {
  const cli_result r = run_cli({"bench", "--size", "small", "--repeat", "1", "--kernel", "pi"});
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("automatic's choice"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pi ~ 3.1"), std::string::npos) << r.out;
}

TEST(Cli, UnknownOptionExitsTwoNamingIt) {
  const cli_result r = run_cli({"info", "--no-such-option"});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("--no-such-option"), std::string::npos) << r.out;
}

TEST(Cli, UnknownCommandExitsTwoNamingIt) {
  const cli_result r = run_cli({"frobnicate"});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("frobnicate"), std::string::npos) << r.out;
}

TEST(Cli, BadOptionValueExitsTwo) {
  const cli_result r = run_cli({"bench", "--size", "huge"});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("huge"), std::string::npos) << r.out;
}

/// Points XDG_CACHE_HOME at a new folder for a test's lifetime: what polymap keeps there
/// must not land in the home folder of whoever runs the tests.
class scratch_cache {
 public:
  scratch_cache() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "polymap-cache-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
    if (const char* old = std::getenv("XDG_CACHE_HOME")) old_ = old;
    ::setenv("XDG_CACHE_HOME", dir_.c_str(), 1);
  }
  ~scratch_cache() {
    if (old_) {
      ::setenv("XDG_CACHE_HOME", old_->c_str(), 1);
    } else {
      ::unsetenv("XDG_CACHE_HOME");
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  scratch_cache(const scratch_cache&) = delete;
  scratch_cache& operator=(const scratch_cache&) = delete;
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
  std::optional<std::string> old_;
};

TEST(Cli, CalibrateMeasuresTheCpuAndKeepsEveryGpusCosts) {
  const scratch_cache cache;
  const cli_result r = run_cli({"calibrate", "--json"}, false);
  ASSERT_EQ(r.status, 0) << r.out;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_GT(j.at("cpu_share").get<double>(), 0) << r.out;
  EXPECT_LE(j.at("cpu_share").get<double>(), 1) << r.out;
  EXPECT_GT(j.at("threads").at("fork_join_seconds").get<double>(), 0) << r.out;
  EXPECT_GE(j.at("threads").at("workers").get<std::size_t>(), 1U) << r.out;
  EXPECT_GT(j.at("processes").at("fork_seconds").get<double>(), 0) << r.out;
  EXPECT_GT(j.at("processes").at("seconds_per_result_byte").get<double>(), 0) << r.out;
  EXPECT_EQ(j.at("cuda").at("status").get<std::string>(), polymap::cuda::device_status());
  const nlohmann::json& gpus = j.at("cuda").at("devices");
  ASSERT_EQ(gpus.size(), static_cast<std::size_t>(polymap::cuda::device_count())) << r.out;
  for (const nlohmann::json& g : gpus) {
    EXPECT_GT(g.at("fixed_seconds").get<double>(), 0) << r.out;
    EXPECT_GT(g.at("seconds_per_byte").get<double>(), 0) << r.out;
    EXPECT_GT(g.at("first_bytes").get<std::size_t>(), 0U) << r.out;
    EXPECT_GT(g.at("first_seconds_per_byte").get<double>(), 0) << r.out;
    EXPECT_NE(g.at("source").get<std::string>().find("kept in " + cache.dir().string()),
              std::string::npos)
        << r.out;
  }
  EXPECT_EQ(std::filesystem::exists(cache.dir() / "polymap" / "measurements"), !gpus.empty());
}

TEST(Cli, CalibrateSaysWhatItMeasuredAndWhyNotTheGpu) {
  const scratch_cache cache;
  const cli_result r = run_cli({"calibrate"});
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("fork-join"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("a result byte"), std::string::npos) << r.out;
  if (polymap::cuda::device_count() == 0) {
    EXPECT_NE(r.out.find(polymap::cuda::device_status() + ": nothing to measure"),
              std::string::npos)
        << r.out;
  } else {
    EXPECT_NE(r.out.find("cuda 0      a host-resident map: measured on device 0"),
              std::string::npos)
        << r.out;
  }
}

/// Processes that spin on this process's CPUs (they inherit its affinity and cgroup) while
/// the object lives, and die with this process whatever ends it.
class cpu_hogs {
 public:
  explicit cpu_hogs(std::size_t n) {
    const pid_t self = getpid();
    for (std::size_t i = 0; i < n; ++i) {
      const pid_t pid = fork();
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != self) _exit(0);  // the test died before the line above
        volatile std::uint64_t spins = 0;
        for (;;) spins = spins + 1;
      }
      if (pid > 0) pids_.push_back(pid);
    }
  }
  ~cpu_hogs() {
    for (pid_t pid : pids_) kill(pid, SIGKILL);
    for (pid_t pid : pids_) waitpid(pid, nullptr, 0);
  }
  cpu_hogs(const cpu_hogs&) = delete;
  cpu_hogs& operator=(const cpu_hogs&) = delete;

 private:
  std::vector<pid_t> pids_;
};

TEST(Cli, CalibrateSaysWhenOtherWorkTookItsCpus) {
  const scratch_cache cache;
  // Twice as many spinning processes as CPUs: calibrate gets a third of them at most.
  const cpu_hogs hogs(2 * polymap::topology::current().usable_count());
  const cli_result text = run_cli({"calibrate"});
  ASSERT_EQ(text.status, 0) << text.out;
  EXPECT_NE(text.out.find("of its CPUs while measuring (other work runs on them): these "
                          "figures are a busy machine's"),
            std::string::npos)
      << text.out;
  const cli_result json = run_cli({"calibrate", "--json"}, false);
  ASSERT_EQ(json.status, 0) << json.out;
  EXPECT_LT(nlohmann::json::parse(json.out).at("cpu_share").get<double>(), 0.8) << json.out;
}

TEST(Cli, CalibrateRefusesADeviceThatIsNotHere) {
  const scratch_cache cache;
  const cli_result r = run_cli({"calibrate", "--device", "99"});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("--device 99"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(cache.dir() / "polymap"));
}

TEST(Cli, OutputThatCannotBeWrittenFailsTheCommand) {
  // Output smaller than stdio's buffer is written at exit, where a failure went unseen.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"info"}, {"info", "--json"}, {"calibrate", "--json"},
        {"bench", "--size", "small", "--kernel", "saxpy", "--repeat", "1"}, {"--help"},
        {"--version"}, {"run", "--dry-run", "--", "echo", ":::", "a"}}) {
    std::string command = polymap::test::polymap_command(args);
    command += " 2>&1 >/dev/full";
    const cli_result result = run_shell(command);
    EXPECT_EQ(result.status, 1) << args[0] << ": " << result.out;
    EXPECT_NE(result.out.find("cannot write to standard output"), std::string::npos)
        << result.out;
  }
}

TEST(Cli, VersionPrintsVersion) {
  const cli_result r = run_cli({"--version"});
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(std::string(polymap::version)), std::string::npos) << r.out;
}

TEST(Cli, NoCommandPrintsUsageAndExitsTwo) {
  const cli_result r = run_cli({});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("Usage"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("bench"), std::string::npos) << r.out;
}

TEST(Cli, HelpExitsZero) {
  const cli_result r = run_cli({"--help"});
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("Exit status"), std::string::npos) << r.out;
}

}  // namespace
