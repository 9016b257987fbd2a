// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// End-to-end tests of `polymap run --journal`, `status` and `watch`: resume, kill -9 at
// random moments, several runners on one journal, and journals that cannot be used. Each
// job appends its item to a side file, so that executions are counted apart from what the
// journal records.

#include "cli_process.hpp"
#include "journal_query.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace polymap::test;  // NOLINT(google-build-using-namespace): the test helpers

/// Holds a journal's write lock, as another process's runner would, until released.
class journal_lock {
 public:
  explicit journal_lock(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK) << path;
    sqlite3_busy_timeout(db_, 10000);  // a runner may be in a short transaction of its own
    EXPECT_EQ(sqlite3_exec(db_, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK) << path;
  }
  journal_lock(const journal_lock&) = delete;
  journal_lock& operator=(const journal_lock&) = delete;
  ~journal_lock() { release(); }
  void release() {
    if (db_ == nullptr) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::vector<std::string> numbers(std::size_t n) {
  std::vector<std::string> items;
  for (std::size_t i = 1; i <= n; ++i) items.push_back(std::to_string(i));
  return items;
}

/// `run --journal J -j JOBS -- sh -c SCRIPT {2}.job {1} SIDE ::: ITEMS ::: MARKER`: the
/// job's $0 is "<marker>.job" (in no runner's argv), $1 the item, $2 the side file.
std::vector<std::string> journal_run(const temp_dir& dir, const std::string& script,
                                     const std::vector<std::string>& items, int jobs,
                                     std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"run", "--journal", dir / "j.db", "-j", std::to_string(jobs)};
  args.insert(args.end(), extra.begin(), extra.end());
  for (const char* word : {"--", "sh", "-c"}) args.emplace_back(word);
  args.push_back(script);
  args.insert(args.end(), {"{2}.job", "{1}", dir / "side", ":::"});
  args.insert(args.end(), items.begin(), items.end());
  args.insert(args.end(), {":::", dir / "m"});
  return args;
}

/// Waits up to 30 s for the file `path` to have something: what it has.
std::string wait_for_content(const std::string& path) {
  std::string content = read_file(path);
  for (int tries = 0; tries < 1500 && content.empty(); ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    content = read_file(path);
  }
  return content;
}

const std::string record_script = "echo \"$1\" >> \"$2\"";

/// Makes a file read-only until released or destroyed: mode 0400 and, for root (who writes
/// through a mode), the immutable attribute where the file system allows it.
class read_only_file {
 public:
  explicit read_only_file(std::string path) : path_(std::move(path)) {
    chmod(path_.c_str(), 0400);
    if (geteuid() == 0) immutable_ = set_immutable(true);
  }
  ~read_only_file() { release(); }
  read_only_file(const read_only_file&) = delete;
  read_only_file& operator=(const read_only_file&) = delete;

  /// Whether this process cannot write the file now.
  [[nodiscard]] bool holds() const { return geteuid() != 0 || immutable_; }
  /// Lets root write it again (the mode stays 0400).
  void release() {
    if (immutable_) (void)set_immutable(false);
    immutable_ = false;
  }

 private:
  [[nodiscard]] bool set_immutable(bool on) const {
    const int fd = open(path_.c_str(), O_RDONLY);
    if (fd < 0) return false;
    int flags = 0;
    bool done = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    if (done) {
      flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
      done = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
    }
    close(fd);
    return done;
  }

  std::string path_;
  bool immutable_ = false;
};

std::map<std::string, int> executions(const temp_dir& dir) {
  std::map<std::string, int> count;
  for (const std::string& line : lines_of(read_file(dir / "side"))) ++count[line];
  return count;
}

TEST(JournalRun, FileAndWalAreOwnerOnly) {
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(3), 2), dir).status, 0);
  for (const std::string name : {"j.db", "j.db-wal"}) {
    struct stat st {};
    if (stat((dir / name).c_str(), &st) != 0) continue;  // the WAL may be checkpointed away
    EXPECT_EQ(st.st_mode & 0777, 0600U) << name;
  }
}

TEST(JournalRun, ResumeSkipsDoneItemsAndRetriesFailedOnlyWhenAsked) {
  temp_dir dir;
  const std::string script = record_script + "; [ \"$1\" != 3 ] || [ -e \"$2.fixed\" ]";
  EXPECT_EQ(run_polymap(journal_run(dir, script, numbers(5), 2), dir).status, 1);
  EXPECT_EQ(executions(dir).size(), 5U);
  // Resumed: nothing runs, the failure stays, and the runner says so: the batch is not all
  // done (exit 1), and --retry-failed runs it again.
  const cli_output resumed = run_polymap(journal_run(dir, script, numbers(5), 2), dir);
  EXPECT_EQ(resumed.status, 1);
  EXPECT_NE(resumed.err.find("1 item(s) failed in earlier runs"), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.err.find("--retry-failed"), std::string::npos) << resumed.err;
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 5U);
  write_file(dir / "side.fixed", "");
  const cli_output r =
      run_polymap(journal_run(dir, script, numbers(6), 2, {"--retry-failed"}), dir);
  EXPECT_EQ(r.status, 0) << r.err;
  const auto count = executions(dir);
  EXPECT_EQ(count.at("3"), 2);
  EXPECT_EQ(count.at("6"), 1);
  EXPECT_EQ(count.at("1"), 1);
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "6");
}

/// Kills the runner with SIGKILL at `rounds` random moments, checking each time that no job
/// outlives it by a second, then resumes and checks that every item was recorded done
/// exactly once and that only items running at a kill ran again.
void kill_nine_then_resume(int rounds, std::size_t n, unsigned seed) {
  temp_dir dir;
  constexpr int jobs = 3;
  // The inner shell keeps the marker in its argv: grandchildren must die as well.
  const std::string script = record_script + "; sh -c 'sleep 0.05; :' \"$0\"; :";
  const std::vector<std::string> args = journal_run(dir, script, numbers(n), jobs);
  std::mt19937 random(seed);
  std::uniform_int_distribution<int> moment_ms(0, 400);
  int kills = 0;
  for (int round = 0; round < rounds; ++round) {
    cli_process p(args, dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(moment_ms(random)));
    p.signal(SIGKILL);
    if (p.wait() == 128 + SIGKILL) ++kills;
    const auto left = polymap::test::survivors_after(dir / "m.job", 1.0);
    EXPECT_TRUE(left.empty()) << "round " << round << ": " << left.size() << " job(s) alive";
  }
  const cli_output r = run_polymap(args, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string db = dir / "j.db";
  EXPECT_EQ(scalar(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM items WHERE state = 2"), std::to_string(n));
  // One recorded attempt each: an end recorded twice would show as 2.
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM items WHERE attempts != 1"), "0");
  const auto count = executions(dir);
  EXPECT_EQ(count.size(), n);  // none lost
  int reruns = 0;
  for (const auto& row : query(db, "SELECT seq, interruptions FROM items")) {
    const int ran = count.at(row[0]);
    reruns += ran - 1;
    // Run again only because it was running when a runner died.
    EXPECT_LE(ran - 1, std::stoi(row[1])) << "item " << row[0];
  }
  EXPECT_LE(reruns, kills * jobs);
}

TEST(JournalRun, KillNineAtTwentyMomentsLosesNothingAndRecordsOnce) {
  kill_nine_then_resume(20, 240, 12345);
}

// The soak: `ctest -L slow` runs it (scripts/test.sh leaves it out).
TEST(JournalRunSoak, DISABLED_KillNineAtTwoHundredMomentsLosesNothingAndRecordsOnce) {
  kill_nine_then_resume(200, 2000, static_cast<unsigned>(std::random_device{}()));
}

void several_runners_share_a_journal(int runners) {
  temp_dir dir;
  constexpr std::size_t n = 200;
  const std::vector<std::string> args = journal_run(dir, record_script, numbers(n), 2);
  std::vector<std::unique_ptr<cli_process>> started;
  for (int r = 0; r < runners; ++r) started.push_back(std::make_unique<cli_process>(args, dir));
  for (auto& p : started) EXPECT_EQ(p->wait(), 0) << p->err();
  const auto count = executions(dir);
  EXPECT_EQ(count.size(), n);
  for (const auto& [item, ran] : count) EXPECT_EQ(ran, 1) << "item " << item;
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"),
            std::to_string(n));
}

TEST(JournalRun, TwoRunnersDoEachItemOnce) { several_runners_share_a_journal(2); }

TEST(JournalRun, FourRunnersDoEachItemOnce) { several_runners_share_a_journal(4); }

TEST(JournalRun, StatusShowsTheLiveRunnerAndSigtermedItemsRunAgainOnResume) {
  temp_dir dir;
  const std::string script =
      record_script + "; while [ ! -e \"$2.go\" ]; do sh -c 'sleep 0.05; :' \"$0\"; done";
  const std::vector<std::string> args = journal_run(dir, script, numbers(5), 3);
  cli_process p(args, dir);
  ASSERT_TRUE(polymap::test::wait_for_processes(dir / "m.job", 3, 60)) << p.err();
  // Items are claimed before they start: status sees the live runner and what it runs.
  const cli_output live = run_polymap({"status", "--json", "--journal", dir / "j.db"}, dir);
  const nlohmann::json seen = nlohmann::json::parse(live.out);
  EXPECT_EQ(seen["counts"]["running"], 3) << live.out;
  ASSERT_EQ(seen["runners"].size(), 1U) << live.out;
  EXPECT_EQ(seen["runners"][0]["alive"], true);
  EXPECT_EQ(seen["runners"][0]["pid"], p.pid());
  EXPECT_EQ(seen["runners"][0]["running"], 3);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 143);
  EXPECT_TRUE(polymap::test::survivors_after(dir / "m.job", 1.0).empty());
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 4"), "3");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 1"), "0");
  // No runner is left to finish the batch: watch says so and ends.
  const cli_output stalled =
      run_polymap({"watch", "--interval", "0.1", "--journal", dir / "j.db"}, dir);
  EXPECT_EQ(stalled.status, 1);
  EXPECT_NE(stalled.out.find("3 interrupted"), std::string::npos) << stalled.out;
  EXPECT_NE(stalled.err.find("no runner is live and 5 item(s) are unfinished"), std::string::npos)
      << stalled.err;
  write_file(dir / "side.go", "");
  EXPECT_EQ(run_polymap(args, dir).status, 0);
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "5");
}

TEST(JournalRun, ARunnerClaimsOnceMoreBeforeItEndsAndTakesItemsAnotherRunnerGaveBack) {
  temp_dir dir;
  // x sleeps until it is stopped (or runs at once once go exists); y waits for go.
  const std::string script =
      "cd " + dir.path() + "; echo \"$1\" >> ran; if [ \"$1\" = y ]; then while [ ! -e go ]; do sleep 0.05; done; "
      "elif [ ! -e go ]; then exec sleep 30; fi";
  const auto args = [&](const char* jobs) {
    return std::vector<std::string>{"run",  "-j", jobs, "--journal", dir / "j.db", "--", "sh",
                                    "-c",   script, "sh", "{}",      ":::",        "x",  "y"};
  };
  const auto ran = [&] { return read_file(dir / "ran"); };
  const auto soon = [](const auto& done) {
    for (int i = 0; i < 1200 && !done(); ++i) usleep(50'000);
    return done();
  };
  cli_process first(args("1"), dir);
  ASSERT_TRUE(soon([&] { return ran() == "x\n"; })) << first.err();
  // The second runner claims y; its other slot finds nothing left to claim.
  cli_process second(args("2"), dir);
  ASSERT_TRUE(soon([&] { return ran() == "x\ny\n"; })) << second.err();
  first.signal(SIGTERM);  // x goes back to the journal, interrupted
  EXPECT_EQ(first.wait(), 143);
  write_file(dir / "go", "");
  EXPECT_EQ(second.wait(), 0) << second.err();
  EXPECT_EQ(ran(), "x\ny\nx\n");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "2");
}

TEST(JournalRun, BatchesWhoseWordsAndValuesJoinToTheSameBytesHaveTheirOwnItems) {
  // echo with values X and \x01C, and echo \x01X with value C: the same bytes in a row.
  temp_dir dir;
  const cli_output first = run_polymap(
      {"run", "--journal", dir / "j.db", "--", "echo", ":::", "X", ":::", "\x01" "C"}, dir);
  ASSERT_EQ(first.status, 0) << first.err;
  const cli_output second =
      run_polymap({"run", "--journal", dir / "j.db", "--", "echo", "\x01" "X", ":::", "C"}, dir);
  ASSERT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(second.out, "\x01" "X C\n");  // not taken for the first batch's item, done
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "2");
}

TEST(JournalRun, TheSameWordsAsAShellLineAreAnotherBatch) {
  // Without --shell, `echo {}; echo more` is one word: a program of that name, which does not
  // exist, so the item fails; as a --shell line it runs. It is not the first run's item.
  temp_dir dir;
  const std::vector<std::string> words = {"--", "echo {}; echo more", ":::", "x"};
  std::vector<std::string> plain = {"run", "--journal", dir / "j.db"};
  plain.insert(plain.end(), words.begin(), words.end());
  const cli_output first = run_polymap(plain, dir);
  EXPECT_EQ(first.status, 1) << first.err;
  std::vector<std::string> shell = {"run", "--journal", dir / "j.db", "--shell"};
  shell.insert(shell.end(), words.begin(), words.end());
  const cli_output second = run_polymap(shell, dir);
  EXPECT_EQ(second.status, 0) << second.err;
  EXPECT_EQ(second.out, "x\nmore\n");
  // Each batch resumes as itself.
  EXPECT_EQ(run_polymap(shell, dir).out, "");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items"), "2");
}

TEST(JournalRun, DryRunListsWhatARerunWouldRunAndChangesNothing) {
  temp_dir dir;
  const auto args = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = {"run", "--journal", dir / "j.db"};
    a.insert(a.end(), extra.begin(), extra.end());
    for (const char* w : {"--", "sh", "-c", "exit $(( $1 == 2 ))", "sh", "{}", ":::", "1", "2",
                          "3", "4"}) {
      a.emplace_back(w);
    }
    return a;
  };
  // Nothing recorded yet: every item, and no journal made.
  EXPECT_EQ(lines_of(run_polymap(args({"--dry-run"}), dir).out).size(), 4U);
  EXPECT_FALSE(std::filesystem::exists(dir / "j.db"));
  std::vector<std::string> first = args({});
  first.pop_back();  // items 1 to 3 run: 2 fails
  EXPECT_EQ(run_polymap(first, dir).status, 1);
  const std::string before = read_file(dir / "j.db");
  const cli_output dry = run_polymap(args({"--dry-run"}), dir);
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(dry.out, "sh -c 'exit $(( $1 == 2 ))' sh 4\n");
  const cli_output retry = run_polymap(args({"--dry-run", "--retry-failed"}), dir);
  EXPECT_EQ(retry.out, "sh -c 'exit $(( $1 == 2 ))' sh 2\nsh -c 'exit $(( $1 == 2 ))' sh 4\n");
  EXPECT_EQ(read_file(dir / "j.db"), before);
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 3"), "1");
  // A file that is no journal is an error, as for a run.
  write_file(dir / "bad.db", "not a journal");
  const cli_output bad = run_polymap(
      {"run", "--dry-run", "--journal", dir / "bad.db", "--", "echo", ":::", "a"}, dir);
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("not a polymap journal"), std::string::npos) << bad.err;
}

TEST(JournalRun, StatusShowsTheItemsOfAKilledRunnerAsInterrupted) {
  temp_dir dir;
  const std::string script =
      record_script + "; while [ ! -e \"$2.go\" ]; do sh -c 'sleep 0.05; :' \"$0\"; done";
  const std::vector<std::string> args = journal_run(dir, script, numbers(4), 2);
  cli_process p(args, dir);
  ASSERT_TRUE(polymap::test::wait_for_processes(dir / "m.job", 2, 60)) << p.err();
  p.signal(SIGKILL);
  EXPECT_EQ(p.wait(), 128 + SIGKILL);
  // Still `running` in the file, but nothing runs them: not "2 running" beside "none live".
  const cli_output text = run_polymap({"status", "--journal", dir / "j.db"}, dir);
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("4 total: 0 done, 0 failed, 0 running, 2 pending, 2 interrupted "
                          "(their runner is gone; run again to resume them)"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("none live"), std::string::npos) << text.out;
  const cli_output json = run_polymap({"status", "--json", "--journal", dir / "j.db"}, dir);
  const nlohmann::json counts = nlohmann::json::parse(json.out)["counts"];
  EXPECT_EQ(counts["running"], 0) << json.out;
  EXPECT_EQ(counts["runner_gone"], 2) << json.out;
  EXPECT_EQ(counts["interrupted"], 0) << json.out;
  EXPECT_EQ(counts["total"], 4) << json.out;
  write_file(dir / "side.go", "");
  EXPECT_EQ(run_polymap(args, dir).status, 0);
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "4");
}

TEST(JournalRun, StatusAndWatchLeaveNoFileBesideTheJournal) {
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(3), 1), dir).status, 0);
  ASSERT_FALSE(std::filesystem::exists(dir / "j.db-wal"));
  EXPECT_EQ(run_polymap({"status", "--journal", dir / "j.db"}, dir).status, 0);
  EXPECT_EQ(run_polymap({"watch", "--journal", dir / "j.db"}, dir).status, 0);
  // A -wal or -shm made by a reader is the reader's: it could keep the journal's owner from
  // writing it, or another user from reading it.
  EXPECT_FALSE(std::filesystem::exists(dir / "j.db-wal"));
  EXPECT_FALSE(std::filesystem::exists(dir / "j.db-shm"));
}

TEST(JournalRun, StatusShowsCountsFailuresWithStderrAndRunners) {
  temp_dir dir;
  const std::string script = "[ \"$1\" != 2 ] || { echo broken item >&2; exit 7; }";
  EXPECT_EQ(run_polymap(journal_run(dir, script, numbers(3), 1), dir).status, 1);
  const cli_output text = run_polymap({"status", "--journal", dir / "j.db"}, dir);
  EXPECT_EQ(text.status, 1);
  EXPECT_NE(text.out.find("3 total: 2 done, 1 failed"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("#2 exit 7"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("broken item"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("none live"), std::string::npos) << text.out;
  const cli_output json = run_polymap({"status", "--json", "--journal", dir / "j.db"}, dir);
  const nlohmann::json j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["counts"]["done"], 2);
  EXPECT_EQ(j["failures"][0]["stderr_tail"], "broken item\n");
  EXPECT_EQ(j["slowest"].size(), 2U);
  // watch on a finished batch prints once and ends.
  const cli_output watch =
      run_polymap({"watch", "--interval", "0.1", "--journal", dir / "j.db"}, dir);
  EXPECT_EQ(watch.status, 1);
  EXPECT_NE(watch.out.find("3 total"), std::string::npos) << watch.out;
}

TEST(JournalRun, StatusNamesItemsByTheirIdInTheJournal) {
  temp_dir dir;
  // b joins in the second run, first in its input: position 1, id 2 (its --results folder).
  const std::string script = "[ \"$1\" != b ]";
  EXPECT_EQ(run_polymap(journal_run(dir, script, {"a"}, 1), dir).status, 0);
  EXPECT_EQ(run_polymap(journal_run(dir, script, {"b", "a"}, 1), dir).status, 1);
  const cli_output text = run_polymap({"status", "--journal", dir / "j.db"}, dir);
  EXPECT_NE(text.out.find("#2 exit 1"), std::string::npos) << text.out;
  const nlohmann::json j =
      nlohmann::json::parse(run_polymap({"status", "--json", "--journal", dir / "j.db"}, dir).out);
  EXPECT_EQ(j["failures"][0]["id"], 2);
  EXPECT_EQ(j["failures"][0]["seq"], 1);
}

TEST(JournalRun, StatusOfAMissingJournalSaysSo) {
  temp_dir dir;
  const cli_output r = run_polymap({"status", "--journal", dir / "none.db"}, dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no such file"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "none.db"));
}

TEST(JournalRun, CorruptJournalIsRefusedUntouched) {
  temp_dir dir;
  const std::string garbage(8192, 'x');
  write_file(dir / "j.db", garbage);
  const cli_output r = run_polymap(journal_run(dir, record_script, numbers(2), 1), dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("corrupt or not a polymap journal"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(dir / "j.db"), garbage);
  EXPECT_FALSE(std::filesystem::exists(dir / "side"));
  // A --joblog that the run made before it found the journal unusable is not left behind;
  // one that was there stays as it was.
  std::vector<std::string> logged = journal_run(dir, record_script, numbers(2), 1);
  logged.insert(logged.begin() + 1, {"--joblog", dir / "made.log"});
  EXPECT_EQ(run_polymap(logged, dir).status, 1);
  EXPECT_FALSE(std::filesystem::exists(dir / "made.log"));
  write_file(dir / "kept.log", "");
  logged[2] = dir / "kept.log";
  EXPECT_EQ(run_polymap(logged, dir).status, 1);
  EXPECT_TRUE(std::filesystem::exists(dir / "kept.log"));
}

TEST(JournalRun, JournalOfANewerVersionIsRefused) {
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(2), 1), dir).status, 0);
  query(dir / "j.db", "PRAGMA user_version = 99");
  const cli_output r = run_polymap(journal_run(dir, record_script, numbers(3), 1), dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("newer polymap (format 99"), std::string::npos) << r.err;
}

TEST(JournalRun, AnotherApplicationsDatabaseIsRefused) {
  temp_dir dir;
  query(dir / "j.db", "CREATE TABLE mine(x)");
  const cli_output r = run_polymap(journal_run(dir, record_script, numbers(2), 1), dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("not a polymap journal"), std::string::npos) << r.err;
}

TEST(JournalRun, LockedJournalFailsAfterTheLockTimeout) {
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(2), 1), dir).status, 0);
  journal_lock holder(dir / "j.db");
  const cli_output r = run_polymap(
      journal_run(dir, record_script, numbers(3), 1, {"--lock-timeout", "0.2"}), dir);
  holder.release();
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("locked by another process for more than 0.2 s"), std::string::npos)
      << r.err;
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 2U);
}

TEST(JournalRun, ALockTimeoutLongerThanSQLiteHoldsStillWaits) {
  // 3e6 s is more milliseconds than an int holds: wrapped, it waited for nothing.
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(2), 1), dir).status, 0);
  journal_lock holder(dir / "j.db");
  cli_process p(journal_run(dir, record_script, numbers(3), 1, {"--lock-timeout", "3000000"}),
                dir);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  holder.release();
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 3U);
}

TEST(JournalRun, ReadOnlyJournalIsRefused) {
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(2), 1), dir).status, 0);
  const std::string db = dir / "j.db";
  read_only_file locked(db);
  if (!locked.holds()) GTEST_SKIP() << "root, and the file cannot be made immutable here";
  const cli_output r = run_polymap(journal_run(dir, record_script, numbers(3), 1), dir);
  locked.release();
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("read-only"), std::string::npos) << r.err;
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 2U);
}

TEST(JournalRun, FullDiskStopsWithAClearErrorAndResumeFinishes) {
  temp_dir dir;
  constexpr std::size_t n = 600;
  // A file size limit stands for a full disk: the items fit, then the write-ahead log
  // cannot grow past 400 KiB while ends are recorded.
  const std::vector<std::string> args = journal_run(dir, record_script, numbers(n), 2);
  const int status = run_polymap_on_a_full_disk(args, 400, dir / "err");
  EXPECT_NE(status, 0);
  const std::string err = read_file(dir / "err");
  EXPECT_NE(err.find("journal " + (dir / "j.db")), std::string::npos) << err;
  EXPECT_TRUE(err.find("disk is full") != std::string::npos ||
              err.find("file too large") != std::string::npos)
      << err;
  const cli_output r = run_polymap(args, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(scalar(dir / "j.db", "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), std::to_string(n));
  EXPECT_EQ(executions(dir).size(), n);
}

TEST(JournalRun, SighupedItemsAreInterruptedAndRunAgainOnResume) {
  temp_dir dir;
  // Each job waits for the go file, 60 s at most: a runner that let them run on would end.
  const std::string script = record_script +
                             "; i=0; while [ ! -e \"$2.go\" ] && [ $i -lt 1200 ]; do "
                             "sh -c 'sleep 0.05; :' \"$0\"; i=$((i+1)); done";
  const std::vector<std::string> args = journal_run(dir, script, numbers(6), 2);
  cli_process p(args, dir);
  ASSERT_TRUE(polymap::test::wait_for_processes(dir / "m.job", 2, 60)) << p.err();
  p.signal(SIGHUP);
  EXPECT_EQ(p.wait(), 128 + SIGHUP);
  EXPECT_TRUE(polymap::test::survivors_after(dir / "m.job", 1.0).empty());
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 4"), "2");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 0"), "4");
  write_file(dir / "side.go", "");
  EXPECT_EQ(run_polymap(args, dir).status, 0);
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "6");
}

TEST(JournalRun, AnInterruptedItemKeepsNoResultsFolderUntilItsRerunEnds) {
  temp_dir dir;
  // Each job prints, then waits for the go file (60 s at most).
  const std::string script = "echo partial-$1; echo said >&2; i=0; while [ ! -e \"$2.go\" ] && "
                             "[ $i -lt 1200 ]; do sh -c 'sleep 0.05; :' \"$0\"; i=$((i+1)); done";
  std::vector<std::string> args = journal_run(dir, script, numbers(1), 1);
  args.insert(args.begin() + 1, {"--results", dir / "res"});
  cli_process p(args, dir);
  ASSERT_TRUE(polymap::test::wait_for_processes(dir / "m.job", 1, 60)) << p.err();
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 128 + SIGTERM);
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 4"), "1");
  // A folder with a stdout cut off would look like a finished item's.
  EXPECT_FALSE(std::filesystem::exists(dir / "res/1")) << p.err();
  write_file(dir / "side.go", "");
  ASSERT_EQ(run_polymap(args, dir).status, 0);
  EXPECT_EQ(read_file(dir / "res/1/stdout"), "partial-1\n");
}

TEST(JournalRun, StatusAndWatchJsonCarryBytesThatAreNotUtf8) {
  temp_dir dir;
  const std::string script = "printf '\\377\\376 broken\\n' >&2; exit 1";
  std::vector<std::string> args = journal_run(dir, script, {"\xff\xfe", "ok"}, 1);
  EXPECT_EQ(run_polymap(args, dir).status, 1);
  for (const char* command : {"status", "watch"}) {
    const cli_output r = run_polymap({command, "--json", "--journal", dir / "j.db"}, dir);
    EXPECT_EQ(r.status, 1) << command << ": " << r.err;
    const nlohmann::json j = nlohmann::json::parse(lines_of(r.out).at(0));
    EXPECT_EQ(j["counts"]["failed"], 2) << r.out;
    ASSERT_EQ(j["failures"].size(), 2U) << r.out;
    // The bytes JSON cannot carry are replaced (U+FFFD), the rest is kept.
    EXPECT_EQ(j["failures"][0]["stderr_tail"], "\xef\xbf\xbd\xef\xbf\xbd broken\n");
    EXPECT_NE(j["failures"][0]["command"].get<std::string>().find("\xef\xbf\xbd"),
              std::string::npos);
  }
}

TEST(JournalRun, StatusReadsAJournalItMayNotWrite) {
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(3), 1), dir).status, 0);
  const std::string db = dir / "j.db";
  read_only_file locked(db);
  if (!locked.holds()) GTEST_SKIP() << "root, and the file cannot be made immutable here";
  const cli_output status = run_polymap({"status", "--journal", db}, dir);
  const cli_output watch = run_polymap({"watch", "--json", "--journal", db}, dir);
  locked.release();
  EXPECT_EQ(status.status, 0) << status.err;
  EXPECT_NE(status.out.find("3 total: 3 done"), std::string::npos) << status.out;
  EXPECT_EQ(watch.status, 0) << watch.err;
  EXPECT_EQ(nlohmann::json::parse(lines_of(watch.out).at(0))["counts"]["done"], 3) << watch.out;
}

TEST(JournalRun, ResultsWriteFailureRecordsNoHalfDoneItemAndResumeFinishes) {
  temp_dir dir;
  // A file size limit stands for a full disk (the journal stays well under it): item 2's
  // 4 MB of output cannot be kept. The job lifts its own limit.
  const std::string script =
      record_script + "; ulimit -f unlimited; [ \"$1\" != 2 ] || head -c 4000000 /dev/zero";
  const std::vector<std::string> args =
      journal_run(dir, script, numbers(3), 1, {"--results", dir / "res"});
  const int status = run_polymap_on_a_full_disk(args, 1000, dir / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = read_file(dir / "err");
  EXPECT_NE(err.find("cannot write --results file '" + (dir / "res/2/stdout") + "'"),
            std::string::npos)
      << err;
  EXPECT_FALSE(std::filesystem::exists(dir / "res/2/stdout"));
  EXPECT_EQ(scalar(dir / "j.db", "SELECT state FROM items WHERE seq = 2"), "4");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT state FROM items WHERE seq = 3"), "0");
  // With room again, the rerun runs item 2 again and keeps its whole output.
  const cli_output r = run_polymap(args, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_file(dir / "res/2/stdout").size(), 4000000U);
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "3");
}

/// The pids of `parent`'s children whose command line starts with `name`.
std::vector<pid_t> children_named(pid_t parent, const std::string& name) {
  std::vector<pid_t> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const pid_t pid = std::atoi(entry.path().filename().c_str());
    if (pid <= 0) continue;
    const std::string stat = read_file(entry.path() / "stat");
    const std::size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    // After the command's parenthesis: " state ppid ...".
    std::istringstream fields(stat.substr(paren + 1));
    std::string state;
    pid_t ppid = 0;
    fields >> state >> ppid;
    if (ppid != parent || state == "Z") continue;
    if (read_file(entry.path() / "cmdline").rfind(name + '\0', 0) == 0) found.push_back(pid);
  }
  return found;
}

TEST(JournalRun, JobsKilledTogetherWithTheirRunnerAreInterruptedNotFailed) {
  // As Slurm or systemd stop a job step or a service: one SIGTERM to each process of the
  // cgroup, the jobs a moment before their runner. Five rounds: the order in which the
  // runner sees the deaths and its own signal varies.
  for (int round = 0; round < 5; ++round) {
    temp_dir dir;
    cli_process p(journal_run(dir, record_script + "; exec sleep 30", numbers(8), 4), dir);
    std::vector<pid_t> jobs;
    for (int i = 0; i < 3000 && jobs.size() < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      jobs = children_named(p.pid(), "sleep");
    }
    ASSERT_EQ(jobs.size(), 4U) << p.err();
    jobs.push_back(p.pid());
    std::string command = "kill -TERM";
    for (const pid_t pid : jobs) {
      command += ' ';
      command += std::to_string(pid);
    }
    ASSERT_EQ(std::system(command.c_str()), 0);
    EXPECT_EQ(p.wait(), 143) << p.err();
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 3"), "0") << p.err();
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 4"), "4");
    // Nothing new started in the slots the killed jobs freed.
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 0"), "4");
    EXPECT_EQ(executions(dir).size(), 4U);
  }
}

// The same where the runner sees the jobs' ends first and its own signal after them (here:
// it is stopped while they end): interrupted too, jobs killed by SIGTERM and jobs that exit
// 143 from a handler of it (a shell's trap, a JVM) alike.
TEST(JournalRun, JobsEndedByASigtermThatTheirRunnerGetsAfterwardsAreInterrupted) {
  for (const bool trapped : {false, true}) {
    SCOPED_TRACE(trapped ? "trap 'exit 143' TERM" : "killed by SIGTERM");
    temp_dir dir;
    const std::string job = trapped ? "; trap 'exit 143' TERM; sleep 30 & wait" : "; exec sleep 30";
    cli_process p(journal_run(dir, record_script + job, numbers(8), 4), dir);
    std::vector<pid_t> jobs;
    for (int i = 0; i < 3000 && jobs.size() < 4; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      jobs = children_named(p.pid(), trapped ? "sh" : "sleep");
    }
    ASSERT_EQ(jobs.size(), 4U) << p.err();
    p.signal(SIGSTOP);
    for (const pid_t job_pid : jobs) kill(job_pid, SIGTERM);
    for (const pid_t job_pid : jobs) EXPECT_TRUE(ended_within(job_pid, 30));
    p.signal(SIGTERM);
    p.signal(SIGCONT);
    EXPECT_EQ(p.wait(), 143) << p.err();
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 3"), "0") << p.err();
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 4"), "4");
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 0"), "4");
  }
}

TEST(JournalRun, SignalWhileTheJournalLoadsStartsNothing) {
  temp_dir dir;
  ASSERT_EQ(run_polymap(journal_run(dir, record_script, numbers(1), 1), dir).status, 0);
  // Another process holds the journal's write lock: the runner waits for it at start-up.
  journal_lock holder(dir / "j.db");
  cli_process p(journal_run(dir, record_script, numbers(3), 2, {"--lock-timeout", "30"}), dir);
  // Once it has the journal open, its signals are its own to handle.
  std::string fds = "/proc/";
  fds += std::to_string(p.pid());
  fds += "/fd";
  bool opened = false;
  for (int i = 0; i < 500 && !opened; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::error_code ignored;
    for (const auto& fd : std::filesystem::directory_iterator(fds, ignored)) {
      opened = opened || std::filesystem::read_symlink(fd.path(), ignored) == dir / "j.db";
    }
  }
  p.signal(SIGINT);
  holder.release();
  ASSERT_TRUE(opened);
  EXPECT_EQ(p.wait(), 130) << p.err();
  EXPECT_EQ(executions(dir).size(), 1U);  // the first run's item only
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 0"), "2");
}

TEST(JournalRun, ResultsFolderStaysWithItsItemWhenTheInputIsReorderedOrExtended) {
  temp_dir dir;
  const auto run = [&](const std::vector<std::string>& items) {
    std::vector<std::string> args = {"run", "--journal", dir / "j.db", "--results", dir / "res",
                                     "--",  "sh",        "-c",         "echo result-of-$1", "x",
                                     ":::"};
    args.insert(args.end(), items.begin(), items.end());
    return run_polymap(args, dir);
  };
  ASSERT_EQ(run({"a", "b"}).status, 0);
  ASSERT_EQ(run({"z", "a", "b"}).status, 0);
  EXPECT_EQ(read_file(dir / "res/1/stdout"), "result-of-a\n");
  EXPECT_EQ(read_file(dir / "res/2/stdout"), "result-of-b\n");
  EXPECT_EQ(read_file(dir / "res/3/stdout"), "result-of-z\n");
  // A --json end event names the folder: the item's id, not its place in this run's input.
  std::vector<std::string> json = {"run", "--json", "--journal", dir / "j.db", "--results",
                                   dir / "res", "--", "echo", ":::", "y"};
  const cli_output events = run_polymap(json, dir);
  ASSERT_EQ(events.status, 0) << events.err;
  bool ended = false;
  for (const std::string& line : lines_of(events.out)) {
    const nlohmann::json event = nlohmann::json::parse(line);
    if (event["event"] != "end") continue;
    ended = true;
    EXPECT_EQ(event["seq"], 1);
    EXPECT_EQ(event["id"], 4);
    EXPECT_EQ(read_file(dir / "res/4/stdout"), "y\n");
  }
  EXPECT_TRUE(ended) << events.out;
}

TEST(JournalRun, ClosedStdoutStopsTheBatchAndRecordsNoFailure) {
  // `polymap run ... | head -n 1`: once head is gone, the jobs writing to the pipe die of
  // SIGPIPE, or a shell whose pipeline's last command died of it exits 141. The batch stops as
  // on a signal, and a rerun resumes it.
  const std::vector<std::vector<std::string>> commands = {{"echo"},
                                                         {"sh", "-c", "echo \"$0\" | cat"}};
  for (const std::vector<std::string>& job : commands) {
    SCOPED_TRACE(job.back());
    temp_dir dir;
    std::vector<std::string> args = {"run", "-j", "2", "--journal", dir / "j.db"};
    args.insert(args.end(), job.begin(), job.end());
    args.emplace_back(":::");
    const std::vector<std::string> items = numbers(300);
    args.insert(args.end(), items.begin(), items.end());
    std::string command = "{ " + polymap_command(args);
    command += " 2>" + shell_quote(dir / "err") + "; echo $? >" + shell_quote(dir / "status");
    command += "; } | head -n 1 >" + shell_quote(dir / "first");
    ASSERT_EQ(std::system(command.c_str()), 0);
    EXPECT_EQ(read_file(dir / "status"), "141\n") << read_file(dir / "err");
    EXPECT_EQ(read_file(dir / "err").find("failed"), std::string::npos) << read_file(dir / "err");
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 3"), "0");
    EXPECT_NE(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "300");
    const cli_output rerun = run_polymap(args, dir);
    EXPECT_EQ(rerun.status, 0) << rerun.err;
    EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "300");
  }
}

/// What a run whose stdout was a pipe closed after its first line left.
struct closed_pipe_run {
  int status = -1;
  std::string first_line;
  std::string err;  // empty when stderr was the pipe too
};

/// Runs `args` with stdout (and, with `stderr_too`, stderr: 2>&1) a pipe whose reader takes
/// one line and goes, as `| head -n 1` does; then creates the file `go`, which the jobs still
/// running wait for, so that their output comes once the pipe has no reader.
closed_pipe_run run_into_a_pipe_closed_after_one_line(const std::vector<std::string>& args,
                                                      const temp_dir& dir, const std::string& go,
                                                      bool stderr_too) {
  closed_pipe_run r;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2";
    return r;
  }
  cli_process p(args, dir, stderr_too ? fds[1] : -1, "/dev/null", {}, fds[1]);
  close(fds[1]);
  char c = 0;
  while (read(fds[0], &c, 1) == 1 && c != '\n') r.first_line += c;
  close(fds[0]);
  write_file(go, "");
  r.status = p.wait();
  if (!stderr_too) r.err = p.err();
  return r;
}

/// How a job of closed_pipe_items() writes "out-N": to stdout, or to stderr.
enum class job_writes { to_stdout, to_stderr };

/// Items 1 to 6 of journal_run() under -j 2 with `extra`: item 1 writes "out-1" and ends at
/// once, the others wait for the file side.go (60 s at most), then write "out-N".
std::vector<std::string> closed_pipe_items(const temp_dir& dir, job_writes where,
                                           const std::vector<std::string>& extra) {
  const std::string script =
      record_script +
      "; if [ \"$1\" != 1 ]; then i=0; while [ ! -e \"$2.go\" ] && [ $i -lt 1200 ]; do "
      "sleep 0.05; i=$((i+1)); done; fi; echo \"out-$1\"" +
      (where == job_writes::to_stderr ? " >&2" : "");
  return journal_run(dir, script, numbers(6), 2, extra);
}

/// The seqs of the items in `state`, in order, joined by commas.
std::string items_in_state(const temp_dir& dir, int state) {
  return polymap::test::items_in_state(dir / "j.db", state);
}

/// What expect_closed_pipe_stops_and_resume_finishes() saw of the first run.
struct closed_pipe_outcome {
  std::string first_line;  // what the pipe's reader read
  std::string done;        // the items it recorded done, as items_in_state() gives them
};

/// Runs closed_pipe_items() into a pipe closed after its first line, where polymap itself
/// writes what the jobs still running print once it is closed (captured output, a joblog
/// line): polymap stops with 141 and says so once (unless stderr is the pipe), leaves no item
/// running in the journal and records item 2, which ended after the close, interrupted, not
/// done. A rerun with a stdout that is read does the rest: every item done, and no item
/// that the first run recorded done runs again.
closed_pipe_outcome expect_closed_pipe_stops_and_resume_finishes(
    const std::vector<std::string>& extra, job_writes where, bool stderr_too) {
  temp_dir dir;
  const std::vector<std::string> args = closed_pipe_items(dir, where, extra);
  const closed_pipe_run r =
      run_into_a_pipe_closed_after_one_line(args, dir, dir / "side.go", stderr_too);
  EXPECT_EQ(r.status, 141) << r.err;
  if (!stderr_too) {
    const std::string notice = "stdout is a pipe whose reader has gone: stopping";
    const std::size_t at = r.err.find(notice);
    EXPECT_NE(at, std::string::npos) << r.err;
    EXPECT_EQ(r.err.find(notice, at + 1), std::string::npos) << r.err;
  }
  EXPECT_EQ(items_in_state(dir, 1), "");  // none left running
  EXPECT_EQ(items_in_state(dir, 3), "");  // none failed
  EXPECT_EQ(scalar(dir / "j.db", "SELECT state FROM items WHERE seq = 2"), "4");
  const closed_pipe_outcome first{r.first_line, items_in_state(dir, 2)};
  const cli_output rerun = run_polymap(args, dir);
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(items_in_state(dir, 2), "1,2,3,4,5,6");
  std::istringstream done(first.done);
  for (std::string item; std::getline(done, item, ',');) {
    EXPECT_EQ(executions(dir)[item], 1) << "item " << item << " was recorded done, yet ran again";
  }
  return first;
}

TEST(JournalRun, ClosedStdoutUnderAJoblogLineStopsTheBatchAndResumeFinishes) {
  // `--joblog -`: polymap writes each item's line to stdout itself.
  const closed_pipe_outcome r =
      expect_closed_pipe_stops_and_resume_finishes({"--joblog", "-"}, job_writes::to_stderr, false);
  EXPECT_EQ(r.first_line.rfind("Seq\tHost", 0), 0U) << r.first_line;
}

TEST(JournalRun, ClosedStdoutUnderJsonEventsStopsTheBatchAndResumeFinishes) {
  const closed_pipe_outcome r =
      expect_closed_pipe_stops_and_resume_finishes({"--json"}, job_writes::to_stdout, false);
  EXPECT_TRUE(nlohmann::json::accept(r.first_line)) << r.first_line;
}

TEST(JournalRun, ClosedStdoutUnderKeepOrderStopsTheBatchAndResumeFinishes) {
  const closed_pipe_outcome r =
      expect_closed_pipe_stops_and_resume_finishes({"-k"}, job_writes::to_stdout, false);
  EXPECT_EQ(r.first_line, "out-1");
  EXPECT_EQ(r.done, "1");  // the one whose output was read
}

TEST(JournalRun, ClosedStderrPipeUnderCapturedStderrStopsTheBatchAndResumeFinishes) {
  // 2>&1 | head: with a journal polymap captures each job's stderr and writes it out itself.
  const closed_pipe_outcome r =
      expect_closed_pipe_stops_and_resume_finishes({}, job_writes::to_stderr, true);
  EXPECT_EQ(r.first_line, "out-1");
  EXPECT_EQ(r.done, "1");
}

// A stdout that cannot take an item's output (a file size limit standing for a full disk)
// stops the run, and the item is not recorded done: its output is lost, so a rerun runs it.
// The rest of that item's output (its stderr) is not written either: the rerun writes it.
TEST(JournalRun, StdoutFileThatCannotTakeAnItemsOutputStopsAndResumeFinishes) {
  temp_dir dir;
  const std::string script = record_script +
                             "; ulimit -S -f unlimited; [ \"$1\" != 2 ] || "
                             "head -c 2000000 /dev/zero; echo \"out-$1\"; echo \"err-$1\" >&2";
  const std::vector<std::string> args = journal_run(dir, script, numbers(3), 1, {"-k"});
  std::string command = "ulimit -S -f 1024; exec " + polymap_command(args);
  command += " >" + shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  const int status = std::system(command.c_str());
  const std::string err = read_file(dir / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_NE(err.find("cannot write the output of item 2 to stdout: File too large"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("err-1\n"), std::string::npos) << err;
  EXPECT_EQ(err.find("err-2"), std::string::npos) << err;
  EXPECT_EQ(items_in_state(dir, 2), "1");
  EXPECT_EQ(items_in_state(dir, 4), "2");
  const cli_output rerun = run_polymap(args, dir);
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(items_in_state(dir, 2), "1,2,3");
  EXPECT_EQ(rerun.out, std::string(2000000, '\0') + "out-2\nout-3\n");
  EXPECT_EQ(rerun.err, "err-2\nerr-3\n");
}

/// The lines of `text`, sorted.
std::vector<std::string> sorted_lines(const std::string& text) {
  std::vector<std::string> lines = lines_of(text);
  std::sort(lines.begin(), lines.end());
  return lines;
}

// A closed stderr (2>&-) or stdout (>&-) is /dev/null to polymap and its jobs, as to a
// shell's commands: no descriptor that polymap opens takes its number, so what polymap and
// the jobs write to the other stream is all there, with no write error, and every item is
// done.
TEST(JournalRun, ClosedStderrOrStdoutIsAsDevNullAndEveryItemIsDone) {
  for (const bool stderr_closed : {true, false}) {
    SCOPED_TRACE(stderr_closed ? "2>&-" : ">&-");
    temp_dir dir;
    const std::string script = record_script + "; echo \"out-$1\"; echo \"err-$1\" >&2";
    const std::vector<std::string> args = journal_run(dir, script, numbers(4), 2);
    cli_process p(args, dir, stderr_closed ? closed_stream : -1, "/dev/null", {},
                  stderr_closed ? -1 : closed_stream);
    EXPECT_EQ(p.wait(), 0) << p.err();
    EXPECT_EQ(items_in_state(dir, 2), "1,2,3,4");
    const std::string open_stream = stderr_closed ? p.out() : p.err();
    const std::string kind = stderr_closed ? "out-" : "err-";
    EXPECT_EQ(sorted_lines(open_stream),
              (std::vector<std::string>{kind + "1", kind + "2", kind + "3", kind + "4"}))
        << open_stream;
  }
}

/// Runs polymap with `args` in `dir` to its end, its stderr a pipe that nobody reads from the
/// start; `err` stays empty.
cli_output run_with_unread_stderr(const std::vector<std::string>& args, const temp_dir& dir) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2";
    return {};
  }
  close(fds[0]);
  cli_process p(args, dir, fds[1]);
  close(fds[1]);
  cli_output r;
  r.status = p.wait();
  r.out = p.out();
  return r;
}

// stderr a pipe whose reader has gone, stdout a file: the item whose stderr (captured under
// --journal) polymap could not write is interrupted, with stderr named as the stream that
// failed, the running one is stopped, and polymap exits 141 with no notice (it would go to
// that pipe) on stdout either. A rerun does the rest.
TEST(JournalRun, ClosedStderrPipeWithStdoutAFileStopsTheBatchAndResumeFinishes) {
  temp_dir dir;
  // Item 1 writes "out-1" to stderr and ends at once; the others wait for side.go.
  const std::vector<std::string> args = closed_pipe_items(dir, job_writes::to_stderr, {});
  const cli_output r = run_with_unread_stderr(args, dir);
  EXPECT_EQ(r.status, 141);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(items_in_state(dir, 1), "");  // none left running
  EXPECT_EQ(items_in_state(dir, 3), "");  // none failed
  EXPECT_EQ(items_in_state(dir, 4), "1,2");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT reason FROM items WHERE seq = 1"),
            "its stderr could not be written: Broken pipe");
  write_file(dir / "side.go", "");
  const cli_output rerun = run_polymap(args, dir);
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(items_in_state(dir, 2), "1,2,3,4,5,6");
  EXPECT_EQ(sorted_lines(rerun.err),
            (std::vector<std::string>{"out-1", "out-2", "out-3", "out-4", "out-5", "out-6"}));
}

// The same with the joblog on stdout: an item's line comes after all of its output, its
// stderr included, so an item whose stderr is lost has none.
TEST(JournalRun, ItemWhoseStderrIsLostHasNoJoblogLineOnStdout) {
  temp_dir dir;
  const std::vector<std::string> args =
      closed_pipe_items(dir, job_writes::to_stderr, {"--joblog", "-"});
  const cli_output r = run_with_unread_stderr(args, dir);
  EXPECT_EQ(r.status, 141);
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 1U) << r.out;  // the header alone
  EXPECT_EQ(lines[0].rfind("Seq\t", 0), 0U) << lines[0];
  EXPECT_EQ(items_in_state(dir, 4), "1,2");
}

// An item whose output is lost has no line in a --joblog file, where `parallel --resume`
// would take it as done: the journal records it interrupted, and it gets its line when it
// runs again.
TEST(JournalRun, ItemWhoseOutputIsLostHasNoJoblogLineUntilItRunsAgain) {
  temp_dir dir;
  const std::vector<std::string> args =
      closed_pipe_items(dir, job_writes::to_stdout, {"-k", "--joblog", dir / "log"});
  const closed_pipe_run r =
      run_into_a_pipe_closed_after_one_line(args, dir, dir / "side.go", false);
  EXPECT_EQ(r.status, 141) << r.err;
  EXPECT_EQ(r.first_line, "out-1");
  EXPECT_EQ(items_in_state(dir, 2), "1");  // the one whose output was read
  EXPECT_EQ(scalar(dir / "j.db", "SELECT state FROM items WHERE seq = 2"), "4");  // lost
  const auto seqs = [&dir] {
    std::vector<std::string> seq;
    for (const std::string& line : lines_of(read_file(dir / "log"))) {
      seq.push_back(line.substr(0, line.find('\t')));
    }
    std::sort(seq.begin(), seq.end());
    return seq;
  };
  EXPECT_EQ(seqs(), (std::vector<std::string>{"1", "Seq"}));
  const cli_output rerun = run_polymap(args, dir);
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(seqs(), (std::vector<std::string>{"1", "2", "3", "4", "5", "6", "Seq"}));
}

// A stop by a signal keeps its exit status when an item's output then cannot be written:
// SIGTERM stops the only job, whose output -k captured, and stdout is full (/dev/full).
// The failure is said, and the item is interrupted.
TEST(JournalRun, OutputThatCannotBeWrittenAfterASigtermKeepsTheSignalsExitStatus) {
  temp_dir dir;
  // Item 2 ends at once, and -k holds its output back behind item 1, which runs until the
  // SIGTERM: then item 2's output is written, to a stdout that cannot take it.
  const std::string script =
      record_script +
      "; if [ \"$1\" = 2 ]; then echo \"out-$1\"; echo $$ > \"$2.2\"; exit 0; fi; i=0; "
      "while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done";
  const std::vector<std::string> args = journal_run(dir, script, numbers(2), 2, {"-k"});
  const int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(full, 0);
  cli_process p(args, dir, -1, "/dev/null", {}, full);
  close(full);
  const pid_t second = std::atoi(wait_for_content(dir / "side.2").c_str());
  ASSERT_GT(second, 0);
  ASSERT_TRUE(reaped_within(second, 30));  // its end is taken, its output held
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 143) << p.err();
  const std::string err = p.err();
  EXPECT_NE(err.find("cannot write the output of item 2 to stdout: No space left on device"),
            std::string::npos)
      << err;
  EXPECT_EQ(items_in_state(dir, 4), "1,2");
}

TEST(JournalRun, JsonOnStderrLeavesOutTheEarlierFailuresNoteAndItsSummaryCountsThem) {
  temp_dir dir;
  const std::string script = record_script + "; [ \"$1\" != 2 ]";
  ASSERT_EQ(run_polymap(journal_run(dir, script, numbers(3), 1), dir).status, 1);
  std::string command = polymap_command(journal_run(dir, script, numbers(4), 1, {"--json"}));
  command += " >" + shell_quote(dir / "both") + " 2>&1";
  EXPECT_EQ(WEXITSTATUS(std::system(command.c_str())), 1);
  const std::vector<std::string> lines = lines_of(read_file(dir / "both"));
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
  const nlohmann::json summary = nlohmann::json::parse(lines.back());
  EXPECT_EQ(summary["done"], 1) << lines.back();
  EXPECT_EQ(summary["failed_earlier"], 1) << lines.back();
}

/// Under -k -j 2 over items 1 to 6: items 1 and 6 write "begin-N", then wait for the go
/// file (60 s at most); 2 to 5 end at once, ahead of item 1, so -k holds their output
/// ("out-N") back: item 2's 2 MiB (`held_big` bytes of x before it) in its temporary file, the
/// rest in memory. They all run in the second slot, one after the other: once item 6 has
/// started (its line is in the side file), the runner has dealt with the ends of 2 to 5.
constexpr std::size_t held_items = 6;
constexpr std::size_t held_big = 2 << 20;

std::vector<std::string> held_output_run(const temp_dir& dir) {
  const std::string script = "if [ \"$1\" = 1 ] || [ \"$1\" = 6 ]; then echo \"begin-$1\"; fi; " +
                             record_script +
                             "; if [ \"$1\" = 1 ] || [ \"$1\" = 6 ]; then i=0; "
                             "while [ ! -e \"$2.go\" ] && [ $i -lt 1200 ]; do "
                             "sh -c 'sleep 0.05; :' \"$0\"; i=$((i+1)); done; fi; "
                             "[ \"$1\" != 2 ] || head -c " +
                             std::to_string(held_big) + " /dev/zero | tr '\\0' x; echo \"out-$1\"";
  return journal_run(dir, script, numbers(held_items), 2, {"-k"});
}

/// Waits for every item of held_output_run() to have started.
bool all_started(const temp_dir& dir) {
  for (int i = 0; i < 3000 && executions(dir).size() < held_items; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return executions(dir).size() == held_items;
}

TEST(JournalRun, KillNineWhileKeepOrderHoldsOutputBackLosesNoOutput) {
  temp_dir dir;
  constexpr std::size_t n = held_items;
  constexpr std::size_t big = held_big;
  const std::vector<std::string> args = held_output_run(dir);
  cli_process p(args, dir);
  ASSERT_TRUE(all_started(dir)) << p.err();
  // Ended, but their output is not out yet: still running in the journal (and in `polymap
  // status`), not done.
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "0");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 1"), std::to_string(n));
  p.signal(SIGKILL);
  EXPECT_EQ(p.wait(), 128 + SIGKILL);
  EXPECT_TRUE(polymap::test::survivors_after(dir / "m.job", 1.0).empty());
  write_file(dir / "side.go", "");
  const cli_output resumed = run_polymap(args, dir);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), std::to_string(n));
  // Every item's output reached stdout, in one run or the other: at least once.
  const std::string out = p.out() + resumed.out;
  for (std::size_t item = 1; item <= n; ++item) {
    EXPECT_NE(out.find("out-" + std::to_string(item) + "\n"), std::string::npos)
        << "item " << item << "'s output is lost";
  }
  EXPECT_NE(out.find(std::string(big, 'x') + "out-2\n"), std::string::npos);
}

TEST(JournalRun, SigtermWhileKeepOrderHoldsOutputBackWritesItAndRecordsItDone) {
  temp_dir dir;
  const std::vector<std::string> args = held_output_run(dir);
  cli_process p(args, dir);
  ASSERT_TRUE(all_started(dir)) << p.err();
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 143) << p.err();
  // Items 1 and 6 are interrupted; what was held back is written out, in order, and done.
  // What 1 and 6 wrote before the stop is not: the rerun writes their output whole, once.
  EXPECT_EQ(p.out(), std::string(held_big, 'x') + "out-2\nout-3\nout-4\nout-5\n");
  const auto in_state = [&](int state) {
    return scalar(dir / "j.db",
                  "SELECT group_concat(seq) FROM (SELECT seq FROM items WHERE state = " +
                      std::to_string(state) + " ORDER BY seq)");
  };
  EXPECT_EQ(in_state(2), "2,3,4,5");
  EXPECT_EQ(in_state(4), "1,6");
  write_file(dir / "side.go", "");
  const cli_output resumed = run_polymap(args, dir);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_EQ(resumed.out, "begin-1\nout-1\nbegin-6\nout-6\n");
}

// polymap writes an item's output to a pipe that nobody reads: SIGTERM still stops the run
// (it used to wait in the write until the reader read). The item whose output could not be
// written is recorded interrupted, and the rerun writes it.
TEST(JournalRun, SigtermStopsARunWhoseStdoutIsNotReadAndTheRerunWritesTheOutput) {
  temp_dir dir;
  const std::vector<std::string> args =
      journal_run(dir, "head -c " + std::to_string(stuck_output) + " /dev/zero; echo \"out-$1\"",
                  numbers(1), 1, {"-k"});
  unread_pipe out;
  cli_process p(args, dir, -1, "/dev/null", {}, out.fds[1]);
  out.close_write_end();
  ASSERT_TRUE(pipe_full(out)) << p.err();
  p.signal(SIGTERM);
  const std::optional<int> status = p.wait_for(30);
  ASSERT_TRUE(status.has_value()) << "polymap did not stop while its stdout was full";
  EXPECT_EQ(*status, 143) << p.err();
  EXPECT_NE(p.err().find("stdout is not being read"), std::string::npos) << p.err();
  EXPECT_EQ(items_in_state(dir, 4), "1");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT reason FROM items WHERE seq = 1"),
            "its stdout was not being read when the run stopped");
  const cli_output rerun = run_polymap(args, dir);
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(rerun.out, std::string(stuck_output, '\0') + "out-1\n");
  EXPECT_EQ(items_in_state(dir, 2), "1");
}

/// Two items under -k, --timeout 1 and -j 2, started, with stdout a pipe that nobody reads:
/// item 1 writes more than the pipe holds, and polymap waits for the pipe with it; item 2
/// runs `second` (its $2 is the file `side`).
struct stuck_stdout_run {
  unread_pipe out;
  cli_process polymap;
  stuck_stdout_run(const temp_dir& dir, const std::string& second)
      : polymap(journal_run(dir,
                            "if [ \"$1\" = 1 ]; then head -c " + std::to_string(stuck_output) +
                                " /dev/zero; else " + second + "; fi",
                            numbers(2), 2, {"-k", "--timeout", "1"}),
                dir, -1, "/dev/null", {}, out.fds[1]) {
    out.close_write_end();
  }
};


// While polymap waits for its stdout's reader, --timeout still stops a job that runs past
// it (the wait used to hold the whole runner); once the reader reads, all of the output
// comes out.
TEST(JournalRun, TimeoutStopsAJobWhileStdoutWaitsForItsReader) {
  temp_dir dir;
  stuck_stdout_run run(dir, "echo $$ > \"$2\"; exec sleep 60");
  ASSERT_TRUE(pipe_full(run.out)) << run.polymap.err();
  const pid_t sleeper = std::atoi(wait_for_content(dir / "side").c_str());
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(ended_within(sleeper, 30)) << "the job past --timeout was not stopped";
  EXPECT_EQ(run.out.read(stuck_output), std::string(stuck_output, '\0'));
  const std::optional<int> status = run.polymap.wait_for(30);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 1) << run.polymap.err();  // item 2 failed: its timeout
  EXPECT_EQ(items_in_state(dir, 2), "1");
  EXPECT_EQ(items_in_state(dir, 3), "2");
}

// --halt now stops the other jobs when an item fails, also while that item's own output waits
// for a reader that does not read.
TEST(Run, HaltNowDoesNotWaitForAReaderOfTheFailedItemsOutput) {
  temp_dir dir;
  unread_pipe out;
  // Item 1 fails once item 2 runs (a halt before would stop item 2 before it said so).
  const std::string side = dir / "side";
  const std::string script = "if [ \"$1\" = 1 ]; then while [ ! -s " + side +
                             " ]; do sleep 0.01; done; head -c " + std::to_string(stuck_output) +
                             " /dev/zero; exit 1; fi; echo $$ > " + side + ".new; mv " + side +
                             ".new " + side + "; exec sleep 60";
  cli_process p({"run", "-j", "2", "-k", "--halt", "now,fail=1", "--", "sh", "-c", script, "sh",
                 "{}", ":::", "1", "2"},
                dir, -1, "/dev/null", {}, out.fds[1]);
  const pid_t sleeper = std::atoi(wait_for_content(side).c_str());
  ASSERT_GT(sleeper, 0);
  EXPECT_TRUE(ended_within(sleeper, 30)) << "the halt waited for the output's reader";
  EXPECT_TRUE(pipe_full(out));  // nothing has read it yet
  EXPECT_EQ(out.read(stuck_output), std::string(stuck_output, '\0'));
  const std::optional<int> status = p.wait_for(30);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 1) << p.err();
}

// A job that ends by itself while polymap waits for its stdout's reader ends as it ended:
// not timed out when its --timeout passes during the wait, since it ended before.
TEST(JournalRun, JobThatEndsWhileStdoutWaitsIsNotTimedOutAfterwards) {
  temp_dir dir;
  stuck_stdout_run run(dir, "sleep 0.3; echo ended > \"$2\"");
  ASSERT_TRUE(pipe_full(run.out)) << run.polymap.err();
  ASSERT_EQ(wait_for_content(dir / "side"), "ended\n");
  // Past item 2's deadline, with its end not taken yet: the write still waits.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(run.out.read(stuck_output), std::string(stuck_output, '\0'));
  const std::optional<int> status = run.polymap.wait_for(30);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0) << run.polymap.err();
  EXPECT_EQ(items_in_state(dir, 2), "1,2");
}

// While polymap waits for its stdout's reader it keeps the journal's lease (other runners
// would take its items as a dead runner's once the lease lapsed), and a journal that fails
// then (locked past --lock-timeout) ends the run rather than leaving it waiting.
TEST(JournalRun, LeaseIsRenewedWhileStdoutWaitsAndAJournalFailureThenEndsTheRun) {
  temp_dir dir;
  unread_pipe out;
  cli_process p(journal_run(dir, "head -c " + std::to_string(stuck_output) + " /dev/zero",
                            numbers(1), 1, {"-k", "--lock-timeout", "0.5"}),
                dir, -1, "/dev/null", {}, out.fds[1]);
  out.close_write_end();
  ASSERT_TRUE(pipe_full(out)) << p.err();
  const std::string heartbeat = "SELECT heartbeat FROM runners WHERE state = 0";
  const std::string first = scalar(dir / "j.db", heartbeat);
  ASSERT_FALSE(first.empty());
  std::string now = first;
  // Renewed every 10 s.
  for (int tries = 0; tries < 1500 && now == first; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    now = scalar(dir / "j.db", heartbeat);
  }
  EXPECT_NE(now, first) << "the lease was not renewed while stdout waited";
  EXPECT_TRUE(pipe_holds(out.fds[0], fcntl(out.fds[0], F_GETPIPE_SZ), 0)) << "the write ended";
  journal_lock holder(dir / "j.db");
  const std::optional<int> status = p.wait_for(30);
  holder.release();
  ASSERT_TRUE(status.has_value()) << "a journal failure while stdout waited did not end the run";
  EXPECT_EQ(*status, 1);
  EXPECT_NE(p.err().find("locked by another process"), std::string::npos) << p.err();
}

/// The last `end` event of --json lines; null when there is none.
nlohmann::json last_end_event(const std::string& out) {
  nlohmann::json end;
  for (const std::string& line : lines_of(out)) {
    const nlohmann::json event = nlohmann::json::parse(line);
    if (event["event"] == "end") end = event;
  }
  return end;
}

// Under --json, an interrupted item's end event has no "stdout" (dropped: the rerun writes
// it), which an empty one would not tell; its "stderr" is there.
TEST(JournalRun, JsonEventOfAnInterruptedItemHasNoStdout) {
  temp_dir dir;
  const std::string script =
      record_script + "; echo begin; echo said >&2; echo $$ > \"$2.pid\"; exec sleep 30";
  cli_process p(journal_run(dir, script, numbers(1), 1, {"--json"}), dir);
  const pid_t job = std::atoi(wait_for_content(dir / "side.pid").c_str());
  ASSERT_GT(job, 0);
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 143) << p.err();
  const nlohmann::json end = last_end_event(p.out());
  ASSERT_FALSE(end.is_null()) << p.out();
  EXPECT_EQ(end["state"], "interrupted");
  EXPECT_FALSE(end.contains("stdout")) << p.out();
  EXPECT_EQ(end["stderr"], "said\n") << p.out();
}

// A retry that a stop cancels while it waits: its item is interrupted, and its --json end
// event has no "stdout" (dropped with the failed attempt's output) and that attempt's runtime.
TEST(JournalRun, JsonEventOfARetryCancelledWhileItWaitsHasNoStdout) {
  temp_dir dir;
  const std::string script = record_script + "; echo out; exit 3";
  cli_process p(journal_run(dir, script, numbers(1), 1, {"--json", "--retries", "10"}), dir);
  // Two attempts failed: the third waits (0.2 s), or has just started.
  for (int tries = 0; tries < 1500 && lines_of(read_file(dir / "side")).size() < 2; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 143) << p.err();
  const nlohmann::json end = last_end_event(p.out());
  ASSERT_FALSE(end.is_null()) << p.out();
  EXPECT_EQ(end["state"], "interrupted");
  EXPECT_FALSE(end.contains("stdout")) << p.out();
  EXPECT_GT(end["duration"].get<double>(), 0.0) << p.out();  // the attempt's, not none
  EXPECT_EQ(items_in_state(dir, 4), "1");
}

// --retries counts the failed attempts of earlier runs: a runner killed between two
// attempts does not give the item a fresh count on the next run (each failed attempt is
// recorded as it fails), and --retry-failed does. The second attempt kills the runner.
TEST(JournalRun, RetriesCountTheFailedAttemptsOfEarlierRuns) {
  temp_dir dir;
  const std::string script =
      record_script + "; [ \"$(wc -l < \"$2\")\" -eq 2 ] && { kill -KILL $PPID; exec sleep 30; }; "
                      "exit 3";
  const std::vector<std::string> args = journal_run(dir, script, numbers(1), 1, {"--retries", "2"});
  const cli_output killed = run_polymap(args, dir);
  EXPECT_EQ(killed.status, 128 + SIGKILL) << killed.err;
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 2U);
  // One attempt failed, one was the runner's death: two failed attempts are left.
  const cli_output rerun = run_polymap(args, dir);
  EXPECT_EQ(rerun.status, 1) << rerun.err;
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 4U) << rerun.err;
  EXPECT_NE(rerun.err.find("after 3 attempts"), std::string::npos) << rerun.err;
  EXPECT_EQ(items_in_state(dir, 3), "1");
  // Failed: a rerun runs it no more, --retry-failed runs it with --retries afresh.
  EXPECT_EQ(run_polymap(args, dir).status, 1);
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 4U);
  std::vector<std::string> again = args;
  again.insert(again.begin() + 1, "--retry-failed");
  const cli_output retried = run_polymap(again, dir);
  EXPECT_EQ(retried.status, 1) << retried.err;
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 7U) << retried.err;
}

// status text shows an item's control bytes (a CR and an escape sequence that would redraw
// the line) as '?', in its command line and its stderr tail (--json has the bytes).
TEST(JournalRun, StatusShowsControlBytesEscaped) {
  temp_dir dir;
  const std::string item = "\r\x1b[2Kfake";
  const cli_output r = run_polymap({"run", "--journal", dir / "j.db", "--", "sh", "-c",
                                    "printf '%s\\n' \"$1\" >&2; exit 3", "sh", "{}", ":::", item},
                                   dir);
  EXPECT_EQ(r.status, 1) << r.err;
  const cli_output text = run_polymap({"status", "--journal", dir / "j.db"}, dir);
  EXPECT_EQ(text.out.find('\r'), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find('\x1b'), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("'??[2Kfake'"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("      ??[2Kfake"), std::string::npos) << text.out;
}

// A journal reused with another command (a fixed typo) gets a batch of new items; the run
// says that the old batch's items that are not done stay behind.
TEST(JournalRun, ARunWithAnotherCommandSaysWhatTheJournalLeavesBehind) {
  temp_dir dir;
  const cli_output first = run_polymap(journal_run(dir, "exit 3", numbers(2), 1), dir);
  EXPECT_EQ(first.status, 1) << first.err;
  EXPECT_EQ(first.err.find("items of other commands"), std::string::npos) << first.err;
  const cli_output other = run_polymap(journal_run(dir, record_script, numbers(2), 1), dir);
  EXPECT_EQ(other.status, 0) << other.err;
  EXPECT_NE(other.err.find("also holds 2 items of other commands"), std::string::npos)
      << other.err;
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 2U);
}

// An attempt that fails once the run has begun to stop its jobs, with retries left, is not a
// failed item: its retry is cancelled, it is interrupted, and a rerun runs it. (The runner is
// stopped while the job fails, so that it takes that end after its own SIGTERM.)
TEST(JournalRun, AttemptThatFailsWithRetriesLeftAfterAStopIsInterrupted) {
  temp_dir dir;
  const std::string script =
      record_script + "; [ -e \"$2.ok\" ] && exit 0; echo $$ > \"$2.pid\"; sleep 0.5; exit 3";
  const std::vector<std::string> args = journal_run(dir, script, numbers(1), 1, {"--retries", "1"});
  cli_process p(args, dir);
  const pid_t job = std::atoi(wait_for_content(dir / "side.pid").c_str());
  ASSERT_GT(job, 0);
  p.signal(SIGSTOP);
  EXPECT_TRUE(ended_within(job, 30));
  p.signal(SIGTERM);
  p.signal(SIGCONT);
  EXPECT_EQ(p.wait(), 143) << p.err();
  EXPECT_EQ(items_in_state(dir, 4), "1") << p.err();
  write_file(dir / "side.ok", "");
  const cli_output rerun = run_polymap(args, dir);
  EXPECT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(items_in_state(dir, 2), "1");
}

// A job that a SIGTERM of its own ended (not the runner's, nor one sent with it) has
// failed: its end waits 0.3 s for the runner's own signal, and a stop that is not a signal
// (--halt now) does not make it interrupted. Item 2 fails once the runner has collected
// item 1 (its pid gone, for up to 10 s).
TEST(JournalRun, JobThatSigtermedItselfBeforeAHaltFailed) {
  temp_dir dir;
  const std::string script =
      record_script +
      "; case \"$1\" in 1) echo $$ > \"$2.pid\"; kill -TERM $$;; "
      "2) for i in $(seq 1000); do [ -s \"$2.pid\" ] && "
      "! kill -0 \"$(cat \"$2.pid\")\" 2>/dev/null && break; sleep 0.01; done; exit 3;; "
      "*) exec sleep 30;; esac";
  const cli_output r =
      run_polymap(journal_run(dir, script, numbers(4), 3, {"--halt", "now,fail=1"}), dir);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(items_in_state(dir, 3), "1,2") << r.err;
  EXPECT_EQ(items_in_state(dir, 4), "3");
}

// The same, with its end collected while polymap waited for its stdout's reader, and the
// runner's SIGTERM a while later: failed, not one that the stop stopped.
TEST(JournalRun, JobThatSigtermedItselfWhileStdoutWaitedFailed) {
  temp_dir dir;
  stuck_stdout_run run(dir, "echo $$ > \"$2\"; kill -TERM $$");
  ASSERT_TRUE(pipe_full(run.out)) << run.polymap.err();
  const pid_t job = std::atoi(wait_for_content(dir / "side").c_str());
  ASSERT_GT(job, 0);
  ASSERT_TRUE(reaped_within(job, 30));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // past the 0.3 s wait
  run.polymap.signal(SIGTERM);
  const std::optional<int> status = run.polymap.wait_for(30);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 143) << run.polymap.err();
  EXPECT_EQ(items_in_state(dir, 3), "2") << run.polymap.err();
  EXPECT_EQ(items_in_state(dir, 4), "1");
}

TEST(JournalRun, ResultsKeepTheStderrTailOfAFailedItemInTheJournal) {
  temp_dir dir;
  // The command line does not say what its stderr says.
  const std::string script = "printf 'broken %s\\n' item >&2; exit 7";
  for (const bool results : {false, true}) {
    const std::string db = dir / (results ? "with.db" : "without.db");
    std::vector<std::string> args = {"run", "--journal", db};
    if (results) args.insert(args.end(), {"--results", dir / "res"});
    args.insert(args.end(), {"--", "sh", "-c", script, "x", ":::", "a"});
    EXPECT_EQ(run_polymap(args, dir).status, 1);
    EXPECT_EQ(scalar(db, "SELECT stderr_tail FROM items"), "broken item\n") << results;
    const cli_output status = run_polymap({"status", "--journal", db}, dir);
    EXPECT_NE(status.out.find("broken item"), std::string::npos) << status.out;
  }
  EXPECT_EQ(read_file(dir / "res/1/stderr"), "broken item\n");
}

TEST(JournalRun, InterruptedJobThatExitsZeroOnSigtermRunsAgainOnResume) {
  temp_dir dir;
  // The job cleans up on SIGTERM and exits 0 (`trap '...; exit' TERM`), without its work done.
  const std::string script = "trap 'exit 0' TERM; " + record_script +
                             "; i=0; while [ ! -e \"$2.go\" ] && [ $i -lt 600 ]; do sleep 0.1; "
                             "i=$((i+1)); done";
  const std::vector<std::string> args = journal_run(dir, script, numbers(3), 2);
  cli_process p(args, dir);
  for (int i = 0; i < 3000 && executions(dir).size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(executions(dir).size(), 2U) << p.err();
  p.signal(SIGINT);
  EXPECT_EQ(p.wait(), 130) << p.err();
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 4"), "2");
  EXPECT_EQ(scalar(dir / "j.db", "SELECT count(*) FROM items WHERE state = 2"), "0");
  write_file(dir / "side.go", "");
  EXPECT_EQ(run_polymap(args, dir).status, 0);
  EXPECT_EQ(executions(dir).size(), 3U);
  EXPECT_EQ(lines_of(read_file(dir / "side")).size(), 5U);  // items 1 and 2 ran again
}

}  // namespace
