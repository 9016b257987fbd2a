// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// `polymap run` over the ranks of an MPI job: `mpirun -n 3 polymap run ...`, as root too and
// oversubscribed on a machine with fewer cores (Open MPI's variables below).

#include "cli_process.hpp"
#include "journal_query.hpp"

#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using polymap::test::cli_process;
using polymap::test::lines_of;
using polymap::test::read_file;
using polymap::test::temp_dir;
using polymap::test::write_file;

const std::vector<std::string> mpirun_environment = {
    "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
    "OMPI_MCA_rmaps_base_oversubscribe=1", "OMPI_MCA_btl_vader_single_copy_mechanism=none"};

/// `mpirun -n ranks mpirun_args... polymap args...`, its stdin the file `stdin_path`, with
/// `env` added, and `ulimit -n` set to `fd_limit` (when not 0).
std::unique_ptr<cli_process> start_ranks(int ranks, const std::vector<std::string>& args,
                                         const temp_dir& dir,
                                         const std::string& stdin_path = "/dev/null",
                                         const std::vector<std::string>& env = {},
                                         int fd_limit = 0,
                                         const std::vector<std::string>& mpirun_args = {}) {
  std::vector<std::string> variables = mpirun_environment;
  variables.insert(variables.end(), env.begin(), env.end());
  std::vector<std::string> launcher = {POLYMAP_MPIEXEC, "-n", std::to_string(ranks)};
  launcher.insert(launcher.end(), mpirun_args.begin(), mpirun_args.end());
  if (fd_limit > 0) {
    launcher.insert(launcher.begin(),
                    {"/bin/sh", "-c", "ulimit -n " + std::to_string(fd_limit) + "; exec \"$@\"",
                     "sh"});
  }
  return std::make_unique<cli_process>(args, dir, -1, stdin_path, variables, -1, launcher);
}

/// The polymap of `rank` among the processes whose command line holds `marker` (its
/// environment says which rank it is), waiting up to 10 s for it; -1 when there is none.
pid_t pid_of_rank(const std::string& marker, int rank) {
  const std::string variable = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (int i = 0; i < 500; ++i) {
    for (pid_t pid : polymap::test::processes_with(marker)) {
      const std::string proc = "/proc/" + std::to_string(pid);
      const std::string env = read_file(proc + "/environ");
      if (read_file(proc + "/cmdline").rfind(POLYMAP_CLI_PATH, 0) == 0 &&
          env.find(variable + '\0') != std::string::npos) {
        return pid;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

struct ranks_output {
  int status = -1;
  std::string out;
  std::string err;
};

ranks_output run_ranks(int ranks, const std::vector<std::string>& args, const temp_dir& dir) {
  auto p = start_ranks(ranks, args, dir);
  ranks_output r;
  r.status = p->wait();
  r.out = p->out();
  r.err = p->err();
  return r;
}

std::vector<std::string> numbers(int n) {
  std::vector<std::string> v;
  for (int i = 1; i <= n; ++i) v.push_back(std::to_string(i));
  return v;
}

/// The --json end events of a run, by item number.
std::map<int, nlohmann::json> ends(const std::string& out) {
  std::map<int, nlohmann::json> found;
  for (const std::string& line : lines_of(out)) {
    const nlohmann::json event = nlohmann::json::parse(line, nullptr, false);
    if (event.is_object() && event.value("event", "") == "end") {
      found[event["seq"].get<int>()] = event;
    }
  }
  return found;
}

nlohmann::json journal_counts(const temp_dir& dir, const std::string& journal) {
  const polymap::test::cli_output s =
      polymap::test::run_polymap({"status", "--journal", journal, "--json"}, dir);
  return nlohmann::json::parse(s.out, nullptr, false)["counts"];
}

std::vector<std::string> with_items(std::vector<std::string> args, int n) {
  args.emplace_back(":::");
  for (const std::string& i : numbers(n)) args.push_back(i);
  return args;
}

TEST(RunRanks, TheRanksShareTheBatchAndRankZeroWritesEveryOutputOnce) {
  temp_dir dir;
  // Each job says which rank ran it; every rank has two slots.
  const ranks_output r = run_ranks(
      3,
      with_items({"run", "-j", "2", "--json", "--joblog", dir / "log", "--", "sh", "-c",
                  "echo item $0 rank $POLYMAP_RANK; echo to stderr $0 >&2; sleep 0.2"},
                 24),
      dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::map<int, nlohmann::json> ended = ends(r.out);
  ASSERT_EQ(ended.size(), 24U) << r.out;
  std::set<std::string> ranks;
  std::set<int> slots;
  for (const auto& [seq, event] : ended) {
    EXPECT_EQ(event["state"], "done") << event;
    const std::string out = event["stdout"].get<std::string>();
    EXPECT_EQ(out.rfind("item " + std::to_string(seq) + " rank ", 0), 0U) << out;
    EXPECT_EQ(event["stderr"], "to stderr " + std::to_string(seq) + "\n");
    ranks.insert(out.substr(out.find("rank ") + 5));
    slots.insert(event["slot"].get<int>());
  }
  // Rank 0's own slots are 1 and 2; the other ranks' follow: every rank ran jobs.
  EXPECT_EQ(ranks, (std::set<std::string>{"0\n", "1\n", "2\n"}));
  EXPECT_EQ(slots, (std::set<int>{1, 2, 3, 4, 5, 6}));
  for (const auto& [seq, event] : ended) {
    const int slot = event["slot"].get<int>();
    const std::string rank = event["stdout"].get<std::string>().substr(
        event["stdout"].get<std::string>().find("rank ") + 5);
    EXPECT_EQ(rank, std::to_string((slot - 1) / 2) + "\n") << "slot " << slot;
    EXPECT_EQ(event["rank"], (slot - 1) / 2) << event;
  }
  // One joblog line per item, from rank 0, with the host of the rank that ran it.
  const std::vector<std::string> log = lines_of(read_file(dir / "log"));
  EXPECT_EQ(log.size(), 25U);
}

TEST(RunRanks, OutputInInputOrderWithKeepOrderAndResultsFilesForEveryRank) {
  temp_dir dir;
  // Later items end sooner: -k still writes them in input order.
  const ranks_output r = run_ranks(
      3,
      with_items({"run", "-j", "1", "-k", "--results", dir / "res", "--", "sh", "-c",
                  "sleep 0.$(( (13 - $0) % 4 )); echo out $0; echo err $0 >&2"},
                 12),
      dir);
  ASSERT_EQ(r.status, 0) << r.err;
  // --results keeps each item's output in files, and writes nothing to stdout.
  for (int i = 1; i <= 12; ++i) {
    EXPECT_EQ(read_file(dir / ("res/" + std::to_string(i) + "/stdout")),
              "out " + std::to_string(i) + "\n");
    EXPECT_EQ(read_file(dir / ("res/" + std::to_string(i) + "/stderr")),
              "err " + std::to_string(i) + "\n");
  }
  const ranks_output ordered = run_ranks(
      3,
      with_items({"run", "-j", "1", "-k", "--", "sh", "-c",
                  "sleep 0.$(( (13 - $0) % 4 )); echo out $0"},
                 12),
      dir);
  ASSERT_EQ(ordered.status, 0) << ordered.err;
  std::vector<std::string> expected;
  for (const std::string& i : numbers(12)) expected.push_back("out " + i);
  EXPECT_EQ(lines_of(ordered.out), expected);
}

TEST(RunRanks, FailuresTimeoutsRetriesAndMissingCommandsOnOtherRanks) {
  temp_dir dir;
  // -j 1 on each of 3 ranks: items 2 and 3 start on ranks 1 and 2.
  const ranks_output r = run_ranks(
      3,
      {"run", "-j", "1", "--json", "--timeout", "1", "--retries", "1", "--", "sh", "-c",
       "case $0 in 2) exit 3;; 3) exec sleep 30;; 4) exec no-such-command-here;; esac; echo $0",
       ":::", "1", "2", "3", "4", "5"},
      dir);
  EXPECT_EQ(r.status, 1) << r.err;
  const std::map<int, nlohmann::json> ended = ends(r.out);
  ASSERT_EQ(ended.size(), 5U) << r.out;
  EXPECT_EQ(ended.at(1)["state"], "done");
  EXPECT_EQ(ended.at(5)["state"], "done");
  EXPECT_EQ(ended.at(2)["state"], "failed");
  EXPECT_EQ(ended.at(2)["exit"], 3);
  EXPECT_EQ(ended.at(2)["attempts"], 2);
  EXPECT_EQ(ended.at(3)["state"], "failed");
  EXPECT_EQ(ended.at(3)["signal"], 15);
  EXPECT_EQ(ended.at(3)["reason"], "timeout after 1 s");
  EXPECT_EQ(ended.at(4)["state"], "failed");
  EXPECT_EQ(ended.at(4)["exit"], 127);
  EXPECT_NE(r.err.find("item 3 failed (timed out after 1 s, after 2 attempts)"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("3 of 5 items failed"), std::string::npos) << r.err;
}

TEST(RunRanks, ACommandThatCannotStartOnAnotherRankSaysWhere) {
  temp_dir dir;
  // -j 1: item 2 goes to rank 1.
  const ranks_output r =
      run_ranks(2, {"run", "-j", "1", "--", "no-such-command-{}", ":::", "a", "b"}, dir);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("cannot run 'no-such-command-a': No such file or directory"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("cannot run 'no-such-command-b' on "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" (rank 1): No such file or directory"), std::string::npos) << r.err;
}

TEST(RunRanks, InputIsReadOnceByRankZero) {
  temp_dir dir;
  write_file(dir / "input", "a\nb\nc\nd\ne\nf\n");
  auto p = start_ranks(3, {"run", "-j", "1", "-k", "echo", "got"}, dir, dir / "input");
  ASSERT_EQ(p->wait(), 0) << p->err();
  EXPECT_EQ(p->out(), "got a\ngot b\ngot c\ngot d\ngot e\ngot f\n");
  // A dry run prints each command once, not once per rank.
  const ranks_output dry = run_ranks(3, {"run", "--dry-run", "echo", ":::", "x", "y"}, dir);
  ASSERT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(dry.out, "echo x\necho y\n");
}

TEST(RunRanks, AJobIsNoRankOfTheRunsMpiJobAndMayStartOneOfItsOwn) {
  temp_dir dir;
  // Each job runs an MPI job of two ranks of its own: with the launcher's variables of the
  // rank that started it, that mpirun would take itself for part of the run's job and fail.
  const ranks_output r = run_ranks(
      2,
      {"run", "-j", "1", "-k", "--", "sh", "-c",
       "mpirun -n 2 sh -c 'echo nested $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE' | sort; "
       "echo job $0 on rank $POLYMAP_RANK of $POLYMAP_RANKS",
       ":::", "a", "b"},
      dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "nested 0 of 2\nnested 1 of 2\njob a on rank 0 of 2\n"
            "nested 0 of 2\nnested 1 of 2\njob b on rank 1 of 2\n");
  // Under a launcher's one rank, polymap runs the batch alone, and its jobs are outside too.
  const ranks_output alone = run_ranks(
      1,
      {"run", "-j", "1", "--", "sh", "-c",
       "mpirun -n 1 sh -c 'echo nested $OMPI_COMM_WORLD_SIZE'; "
       "echo $POLYMAP_RANK of $POLYMAP_RANKS",
       ":::", "a"},
      dir);
  ASSERT_EQ(alone.status, 0) << alone.err;
  EXPECT_EQ(alone.out, "nested 1\n0 of 1\n");
}

TEST(RunRanks, OnlyRankZeroReadsTheInput) {
  temp_dir dir;
  // A FIFO is read once: a rank that opened it too would wait for a writer for ever, or
  // take items away from rank 0.
  const std::string fifo = dir / "items";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] { write_file(fifo, "a\nb\nc\nd\ne\nf\n"); });
  auto p = start_ranks(3, {"run", "-j", "1", "-k", "--", "echo", "got", "::::", fifo}, dir);
  const std::optional<int> status = p->wait_for(60);
  writer.join();
  ASSERT_TRUE(status.has_value()) << "the ranks did not end";
  EXPECT_EQ(*status, 0) << p->err();
  EXPECT_EQ(p->out(), "got a\ngot b\ngot c\ngot d\ngot e\ngot f\n");
}

TEST(RunRanks, EveryRankBindsItsOwnJobs) {
  temp_dir dir;
  // Two slots on each of two ranks, bound one CPU each (`--bind-to none`: each rank may use
  // every CPU, as one rank per node would).
  auto p = start_ranks(2, {"run", "-j", "2", "--bind", "pu", "-k", "--", "sh", "-c",
                           "echo $POLYMAP_RANK $(grep Cpus_allowed_list /proc/self/status)",
                           ":::", "1", "2", "3", "4"},
                       dir, "/dev/null", {}, 0, {"--bind-to", "none"});
  ASSERT_EQ(p->wait(), 0) << p->err();
  const std::vector<std::string> lines = lines_of(p->out());
  ASSERT_EQ(lines.size(), 4U) << p->out();
  std::set<std::string> ranks;
  for (const std::string& line : lines) {
    ranks.insert(line.substr(0, 1));
    const std::string cpus = line.substr(line.find(':') + 1);
    EXPECT_EQ(cpus.find_first_of(",-"), std::string::npos) << line;
  }
  EXPECT_EQ(ranks, (std::set<std::string>{"0", "1"})) << p->out();
}

TEST(RunRanks, EachRankFitsItsSlotsToItsOpenFileLimit) {
  temp_dir dir;
  // -j 60 on each rank under ulimit -n 100: every rank runs fewer at a time, and no job
  // fails for want of a descriptor.
  auto p = start_ranks(2, with_items({"run", "-j", "60", "--", "sh", "-c", "sleep 0.2"}, 150), dir,
                       "/dev/null", {}, 100);
  EXPECT_EQ(p->wait(), 0) << p->err();
  EXPECT_NE(p->err().find("rank 1: -j 60 needs more file descriptors"), std::string::npos)
      << p->err();
  EXPECT_EQ(p->err().find("failed"), std::string::npos) << p->err();
}

/// Three ranks of one slot, each job trapping SIGTERM to clean up for 0.3 s; `stop` signals
/// (one signal, however it reaches the ranks) once the three run. Each job gets one SIGTERM,
/// and the second it has before the SIGKILL to clean up (a second stop would kill at once).
void one_signal_is_one_stop(const std::function<void(cli_process&, const temp_dir&)>& stop) {
  temp_dir dir;
  const std::string log = dir / "log";
  auto p = start_ranks(
      3,
      {"run", "-j", "1", "--journal", dir / "j.db", "--", "sh", "-c",
       "trap 'echo term $0 >> " + log + "; sleep 0.3; echo cleaned $0 >> " + log +
           "; exit 1' TERM; echo started $0 >> " + log + "; sleep 30 & wait",
       ":::", "1", "2", "3", "4", "5", "6"},
      dir, "/dev/null", {"OMPI_MCA_odls_base_sigkill_timeout=3"});
  for (int i = 0; i < 300 && lines_of(read_file(log)).size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(lines_of(read_file(log)).size(), 3U) << p->err();
  stop(*p, dir);
  ASSERT_TRUE(p->wait_for(60).has_value()) << "the ranks did not stop";
  std::vector<std::string> lines = lines_of(read_file(log));
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"cleaned 1", "cleaned 2", "cleaned 3", "started 1",
                                             "started 2", "started 3", "term 1", "term 2",
                                             "term 3"}));
  EXPECT_EQ(journal_counts(dir, dir / "j.db")["interrupted"], 3);
}

TEST(RunRanks, OneSigtermToMpirunIsOneStopWithItsGrace) {
  // mpirun passes it on to every rank.
  one_signal_is_one_stop([](cli_process& p, const temp_dir&) { p.signal(SIGTERM); });
}

TEST(RunRanks, OneSignalThatReachesAnotherRankBeforeRankZeroIsOneStop) {
  // As a scheduler signals each node's ranks, in no set order: rank 1 first, then rank 0
  // (which has heard of rank 1's by then), then rank 2.
  one_signal_is_one_stop([](cli_process&, const temp_dir& dir) {
    const pid_t ranks[] = {pid_of_rank(dir.path(), 1), pid_of_rank(dir.path(), 0),
                           pid_of_rank(dir.path(), 2)};
    for (pid_t pid : ranks) {
      ASSERT_GT(pid, 0);
      kill(pid, SIGTERM);
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  });
}

TEST(RunRanks, AnMpirunThatIsGoneStopsEveryRank) {
  temp_dir dir;
  // mpirun exits at a second Ctrl-C without passing a signal on (here: killed), and leaves
  // the ranks be: each sees its launcher gone and stops its jobs, as on a SIGHUP.
  const std::string log = dir / "log";
  const std::vector<std::string> args = {
      "run", "-j", "1", "--journal", dir / "j.db", "--", "sh", "-c",
      "trap 'echo term $0 >> " + log + "; exit 1' TERM; echo start $0 >> " + log +
          "; [ -e " + (dir / "quick") + " ] || { sleep 30 & wait; }",
      ":::", "1", "2", "3", "4", "5", "6"};
  auto p = start_ranks(3, args, dir);
  for (int i = 0; i < 300 && lines_of(read_file(log)).size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(lines_of(read_file(log)).size(), 3U) << p->err();
  p->signal(SIGKILL);
  (void)p->wait();
  EXPECT_EQ(polymap::test::survivors_after(dir.path(), 20), std::vector<pid_t>{})
      << "a rank or a job outlived mpirun";
  std::vector<std::string> lines = lines_of(read_file(log));
  std::sort(lines.begin(), lines.end());
  EXPECT_EQ(lines, (std::vector<std::string>{"start 1", "start 2", "start 3", "term 1", "term 2",
                                             "term 3"}));
  // The rerun takes back what the stop left, whatever rank 0 could record before MPI ended it.
  write_file(dir / "quick", "");
  auto again = start_ranks(3, args, dir);
  ASSERT_EQ(again->wait(), 0) << again->err();
  EXPECT_EQ(journal_counts(dir, dir / "j.db")["done"], 6);
}

TEST(RunRanks, ASignalStillEndsRankZeroWhileItOpensAJoblogFifo) {
  temp_dir dir;
  const std::string fifo = dir / "log";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto p = start_ranks(3, {"run", "-j", "1", "--joblog", fifo, "--", "echo", ":::", "1"}, dir);
  // Rank 0, once it waits in its open().
  const pid_t rank0 = pid_of_rank(fifo, 0);
  ASSERT_GT(rank0, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(rank0, SIGTERM);
  const std::optional<int> status = p->wait_for(30);
  ASSERT_TRUE(status.has_value()) << "a SIGTERM did not end rank 0";
  EXPECT_NE(*status, 0);
}

/// Runs 18 items of 0.6 s on 3 ranks of one slot each with a journal; `stop` stops the run
/// (a signal) once a few items are done, and a second run does the rest. Each job appends
/// its number to a file at its very end: every item is there once, though some were stopped
/// (twice for one stopped between its last line and its exit).
/// What rank 0 said on stderr must hold `said`.
void stop_then_resume(const std::function<void(cli_process&, const temp_dir&)>& stop,
                      const std::string& said = "") {
  temp_dir dir;
  const std::string journal = dir / "j.db";
  const std::vector<std::string> args = with_items(
      {"run", "-j", "1", "--journal", journal, "--", "sh", "-c",
       "echo $POLYMAP_RANK $PPID >> " + (dir / "parents") + "; sleep 0.6; echo $0 >> " +
           (dir / "done")},
      18);
  auto first = start_ranks(3, args, dir);
  // Until some items are done, on every rank.
  for (int i = 0; i < 300 && lines_of(read_file(dir / "done")).size() < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GE(lines_of(read_file(dir / "done")).size(), 4U) << first->err();
  // Halfway through the next jobs, mostly: few end as the stop comes.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop(*first, dir);
  const std::optional<int> status = first->wait_for(60);
  ASSERT_TRUE(status.has_value()) << "the ranks did not stop";
  EXPECT_NE(*status, 0) << first->err();
  EXPECT_NE(first->err().find(said), std::string::npos) << first->err();
  const nlohmann::json counts = journal_counts(dir, journal);
  EXPECT_GT(counts["pending"].get<int>() + counts["interrupted"].get<int>(), 0) << counts;
  EXPECT_EQ(counts["running"], 0) << counts;
  EXPECT_EQ(counts["failed"], 0) << counts;
  // A job stopped between its last line and its exit did its work and yet runs again, as it
  // would on one machine: it must be one that the journal says was interrupted.
  std::string stopped = polymap::test::items_in_state(journal, 4);
  std::replace(stopped.begin(), stopped.end(), ',', '\n');
  const std::vector<std::string> stopped_items = lines_of(stopped);
  const std::set<std::string> interrupted(stopped_items.begin(), stopped_items.end());

  auto second = start_ranks(3, args, dir);
  ASSERT_EQ(second->wait(), 0) << second->err();
  EXPECT_EQ(journal_counts(dir, journal)["done"], 18);
  std::map<std::string, int> runs;
  for (const std::string& item : lines_of(read_file(dir / "done"))) ++runs[item];
  std::vector<std::string> done;
  std::size_t twice = 0;
  for (const auto& [item, n] : runs) {
    done.push_back(item);
    twice += n == 2 ? 1 : 0;
    EXPECT_TRUE(n == 1 || (n == 2 && interrupted.contains(item)))
        << "item " << item << " ran to its end " << n << " times";
  }
  EXPECT_LE(twice, 3U) << "more items ran twice than the stop could catch at their end, one a rank";
  std::sort(done.begin(), done.end(), [](const std::string& a, const std::string& b) {
    return std::stoi(a) < std::stoi(b);
  });
  EXPECT_EQ(done, numbers(18));
}

TEST(RunRanks, SigtermToMpirunStopsEveryRankAndAResumeDoesTheRestOnce) {
  stop_then_resume([](cli_process& p, const temp_dir&) { p.signal(SIGTERM); });
}

TEST(RunRanks, ASignalToAnotherRankAloneStopsTheRunAndAResumeDoesTheRestOnce) {
  stop_then_resume([](cli_process&, const temp_dir& dir) {
    // The polymap of rank 1: the parent of the jobs that rank 1 ran.
    for (const std::string& line : lines_of(read_file(dir / "parents"))) {
      if (line.rfind("1 ", 0) == 0) {
        kill(std::stoi(line.substr(2)), SIGTERM);
        return;
      }
    }
    ADD_FAILURE() << "rank 1 ran no job";
  }, "polymap: warning: rank 1 (on ");
}

}  // namespace
