// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The journal on its own, with several connections standing for several runners: claims,
// exactly-once recording, reclaiming a dead runner's items, resume, and refused files.

#include "journal/journal.hpp"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

using polymap::claimed_item;
using polymap::item_end;
using polymap::item_state;
using polymap::journal;
using polymap::journal_error;
using polymap::journal_item;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "polymap-journal-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/j.db";
  }
  void TearDown() override {
    std::filesystem::remove_all(dir_);
    std::filesystem::remove_all(dir_ + ".tmp");
  }

  static std::vector<journal_item> items(int n) {
    std::vector<journal_item> out;
    for (int i = 1; i <= n; ++i) {
      out.push_back({"key" + std::to_string(i), i, "cmd " + std::to_string(i)});
    }
    return out;
  }

  static item_end done(const claimed_item& c) {
    item_end e;
    e.id = c.id;
    e.state = item_state::done;
    e.attempts = 1;
    e.start = 1;
    e.end = 2;
    return e;
  }

  /// Registers `holder` and `other` as runners of one batch of two items, and has `holder`
  /// claim the first.
  static void share_two_items(journal& holder, journal& other) {
    holder.register_runner();
    other.register_runner();
    holder.add_items(items(2));
    other.add_items(items(2));
    ASSERT_EQ(holder.commit({}, 1).size(), 1U);
  }

  /// Ages `j`'s last renewal past the lease, as if it had stalled.
  void lapse_lease(const journal& j) const {
    sql("UPDATE runners SET heartbeat = heartbeat - " + std::to_string(journal::lease_seconds + 1) +
        " WHERE id = " + std::to_string(j.runner_id()));
  }
  /// Runs SQL on the file through a connection of its own.
  void sql(const std::string& text) const {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    EXPECT_EQ(sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << text;
    sqlite3_close(db);
  }

  /// Exit status of a child that could not set up what a test needs: the test skips.
  static constexpr int cannot_arrange = 77;

  /// Runs `body` in a child process; its exit status, 128+signal when killed.
  static int in_child(const std::function<int()>& body) {
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      int code = 3;
      try {
        code = body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
      }
      std::fflush(nullptr);
      _exit(code);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  /// Runs `body` in a child that may read the journal but not write in its folder: as
  /// `nobody` (65534) when this runs as root, the files made readable to all; else as this
  /// user with the folder made read-only. Its TMPDIR is `tmp`, a folder anyone may write.
  int as_reader_who_cannot_write(const std::string& tmp, const std::function<int()>& body) {
    const bool root = geteuid() == 0;
    chmod(tmp.c_str(), 01777);
    for (const char* suffix : {"", "-wal", "-shm"}) chmod((path_ + suffix).c_str(), 0644);
    chmod(dir_.c_str(), root ? 0755 : 0555);
    const int status = in_child([&] {
      if (root && (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
                   setresuid(65534, 65534, 65534) != 0)) {
        return cannot_arrange;
      }
      // A temporary folder that `nobody` cannot reach (TMPDIR under /root) proves nothing.
      if (access(path_.c_str(), R_OK) != 0 || access(dir_.c_str(), W_OK) == 0) {
        return cannot_arrange;
      }
      setenv("TMPDIR", tmp.c_str(), 1);
      return body();
    });
    chmod(dir_.c_str(), 0700);
    return status;
  }

  /// A journal whose runner was killed (no checkpoint, no cleanup): its log and index stay,
  /// with item 1 done and items 2 and 3 claimed; the runner's pid is gone.
  void leave_a_killed_runners_journal() const {
    ASSERT_EQ(in_child([&] {
                journal j(path_);
                j.register_runner();
                j.add_items(items(3));
                const std::vector<claimed_item> got = j.commit({}, 3);
                j.commit({done(got.at(0))}, 0);
                std::fflush(nullptr);
                _exit(0);  // as kill -9 would: no destructor, no checkpoint
                return 0;
              }),
              0);
    ASSERT_TRUE(std::filesystem::exists(path_ + "-wal"));
  }

  /// Whether `dir` holds nothing but `names`.
  static bool holds_only(const std::string& dir, const std::set<std::string>& names) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (names.count(entry.path().filename().string()) == 0) return false;
    }
    return true;
  }

  /// A fresh folder beside dir_, removed by TearDown.
  std::string scratch() const {
    const std::string tmp = dir_ + ".tmp";
    std::filesystem::create_directory(tmp);
    return tmp;
  }

  static std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  std::string dir_;
  std::string path_;
};

TEST_F(JournalTest, CreatesTheFileOwnerOnly) {
  const mode_t old = umask(022);
  {
    journal j(path_);
    j.register_runner();
  }
  umask(old);
  struct stat st {};
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
}

TEST_F(JournalTest, ClaimsInInputOrderAndEachItemOnceAcrossRunners) {
  journal a(path_);
  journal b(path_);
  a.register_runner();
  b.register_runner();
  a.add_items(items(10));
  b.add_items(items(10));
  std::set<std::string> seen;
  for (int round = 0; round < 5; ++round) {
    for (journal* j : {&a, &b}) {
      const std::vector<claimed_item> got = j->commit({}, 1);
      ASSERT_EQ(got.size(), 1U);
      EXPECT_TRUE(seen.insert(got[0].key).second) << got[0].key << " claimed twice";
      j->commit({done(got[0])}, 0);
    }
  }
  EXPECT_EQ(seen.size(), 10U);
  EXPECT_TRUE(a.commit({}, 1).empty());
  EXPECT_EQ(a.unfinished(), 0);
  EXPECT_EQ(a.summary(3).counts[static_cast<int>(item_state::done)], 10);
}

TEST_F(JournalTest, ClaimsOnlyItemsOfItsOwnBatch) {
  journal a(path_);
  journal b(path_);
  a.register_runner();
  b.register_runner();
  a.add_items(items(2));
  b.add_items({{"other", 1, "other"}});
  const std::vector<claimed_item> got = b.commit({}, 5);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].key, "other");
}

TEST_F(JournalTest, DeadRunnersItemsAreReclaimedAndItsLateEndIsNotRecorded) {
  journal dead(path_);
  journal alive(path_);
  dead.register_runner();
  alive.register_runner();
  dead.add_items(items(3));
  alive.add_items(items(3));
  const std::vector<claimed_item> held = dead.commit({}, 2);
  ASSERT_EQ(held.size(), 2U);
  // The same process plays both runners: give the first a pid that cannot exist.
  sql("UPDATE runners SET pid = 2147483647 WHERE id = " + std::to_string(dead.runner_id()));
  EXPECT_EQ(alive.reclaim_dead(), 2);
  const std::vector<claimed_item> again = alive.commit({}, 3);
  ASSERT_EQ(again.size(), 3U);
  EXPECT_EQ(again[0].key, held[0].key);  // interrupted items keep their place in the order
  // The dead runner's end comes too late: recorded exactly once, by the runner that has it.
  dead.commit({done(held[0])}, 0);
  std::vector<item_end> ends;
  for (const claimed_item& c : again) ends.push_back(done(c));
  alive.commit(ends, 0);
  const polymap::journal_summary s = alive.summary(10);
  EXPECT_EQ(s.counts[static_cast<int>(item_state::done)], 3);
  for (const polymap::journal_row& r : s.slowest) EXPECT_EQ(r.attempts, 1) << r.seq;
}

TEST_F(JournalTest, AddingALargeBatchLetsOtherRunnersWriteMeanwhile) {
  // A large batch goes in parts, each its own transaction: another runner that writes
  // meanwhile (registers, renews its lease) waits for a part, not for the whole batch, and
  // sees the batch grow part by part.
  constexpr int total = 100'000;
  journal adder(path_);
  journal other(path_, {.lock_timeout = 5});
  adder.register_runner();
  other.register_runner();
  const std::vector<journal_item> batch = items(total);
  std::atomic<bool> added{false};
  std::thread adding([&] {
    adder.add_items(batch);
    added = true;
  });
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  bool saw_part = false;
  int writes = 0;
  while (!added) {
    EXPECT_NO_THROW(other.renew_lease());
    ++writes;
    sqlite3_stmt* count = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*) FROM items", -1, &count, nullptr),
              SQLITE_OK);
    if (sqlite3_step(count) == SQLITE_ROW) {
      const std::int64_t n = sqlite3_column_int64(count, 0);
      saw_part = saw_part || (n > 0 && n < total);
    }
    sqlite3_finalize(count);
  }
  adding.join();
  sqlite3_close(db);
  EXPECT_TRUE(saw_part) << "after " << writes << " writes";
  EXPECT_EQ(adder.summary(1).counts[static_cast<int>(item_state::pending)], total);
}

TEST_F(JournalTest, RunnerOnAnotherHostIsDeadOnlyOnceItsLeaseLapses) {
  journal far(path_);
  journal here(path_);
  share_two_items(far, here);
  // On another host a pid says nothing: this one cannot exist here, yet the runner lives
  // while its heartbeat is fresh.
  const std::string id = std::to_string(far.runner_id());
  sql("UPDATE runners SET host = 'elsewhere.invalid', pid = 2147483647 WHERE id = " + id);
  EXPECT_EQ(here.reclaim_dead(), 0);
  const auto far_alive = [&] {
    for (const polymap::journal_runner& r : here.summary(1).runners) {
      if (r.id == far.runner_id()) return r.alive;
    }
    return false;
  };
  EXPECT_TRUE(far_alive());
  // Its last heartbeat older than the lease: dead, and its item goes to the next runner.
  sql("UPDATE runners SET heartbeat = heartbeat - " + std::to_string(journal::lease_seconds + 1) +
      " WHERE id = " + id);
  EXPECT_FALSE(far_alive());
  EXPECT_EQ(here.reclaim_dead(), 1);
  EXPECT_EQ(here.commit({}, 5).size(), 2U);
}

TEST_F(JournalTest, RunnerOnThisHostWhosePidWasReusedIsDead) {
  journal dead(path_);
  journal here(path_);
  share_two_items(dead, here);
  // The pid is a live process (this one), but it started at another tick since boot than
  // the runner did: the runner died and its pid went to another process.
  sql("UPDATE runners SET start_ticks = start_ticks - 100 WHERE id = " +
      std::to_string(dead.runner_id()));
  EXPECT_EQ(here.reclaim_dead(), 1);
  EXPECT_EQ(here.commit({}, 5).size(), 2U);
}

TEST_F(JournalTest, RunnerOfAnOlderJournalWhosePidWasReusedIsDead) {
  journal dead(path_);
  journal here(path_);
  share_two_items(dead, here);
  // A runner that a polymap before start_ticks registered has none: the pid is a live
  // process, but it started long after the runner registered in 1970.
  sql("UPDATE runners SET started = 1000, start_ticks = NULL WHERE id = " +
      std::to_string(dead.runner_id()));
  EXPECT_FALSE(here.summary(1).runners.empty());
  EXPECT_EQ(here.reclaim_dead(), 1);
  EXPECT_EQ(here.commit({}, 5).size(), 2U);
  // A journal without the column: a reader reads it as it is, and the next runner that
  // opens it gives it the column, and registers with its ticks.
  sql("ALTER TABLE runners DROP COLUMN start_ticks");
  journal reader(path_, {.read_only = true});
  for (const polymap::journal_runner& r : reader.summary(1).runners) {
    EXPECT_EQ(r.alive, r.id != dead.runner_id()) << r.id;
  }
  journal next(path_);
  next.register_runner();
  for (const polymap::journal_runner& r : next.summary(1).runners) {
    EXPECT_EQ(r.alive, r.id != dead.runner_id()) << r.id;
  }
}

TEST_F(JournalTest, RunnerOnThisHostStaysLiveWhenTheWallClockSteps) {
  journal stepped(path_);
  journal here(path_);
  share_two_items(stepped, here);
  // The clock stepped an hour forward after the runner registered (NTP, a resumed VM): its
  // process now seems to have started long after its registration, but it is the same
  // process, at the same tick since boot.
  sql("UPDATE runners SET started = started - 3600 WHERE id = " +
      std::to_string(stepped.runner_id()));
  EXPECT_EQ(here.reclaim_dead(), 0);
  for (const polymap::journal_runner& r : here.summary(1).runners) EXPECT_TRUE(r.alive) << r.id;
}

TEST_F(JournalTest, RunnerWhoseProcessIsAZombieIsDead) {
  journal dead(path_);
  journal here(path_);
  share_two_items(dead, here);
  // A runner killed and not reaped (no init reaps it in its container): its pid still
  // answers kill(pid, 0).
  const pid_t zombie = fork();
  if (zombie == 0) _exit(0);
  ASSERT_GT(zombie, 0);
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(zombie), &info, WEXITED | WNOWAIT), 0);  // not reaped
  sql("UPDATE runners SET pid = " + std::to_string(zombie) + ", start_ticks = NULL, started = " +
      "started + 3600 WHERE id = " + std::to_string(dead.runner_id()));
  EXPECT_EQ(here.reclaim_dead(), 1);
  waitpid(zombie, nullptr, 0);
  EXPECT_EQ(here.commit({}, 5).size(), 2U);
}

TEST_F(JournalTest, RunnerOnThisHostWhosePidIsItsOwnKeepsItsItemsPastItsLease) {
  journal stopped(path_);
  journal here(path_);
  share_two_items(stopped, here);
  // Its pid is alive and its own, but it has not renewed its lease for longer than the
  // lease: stopped (Ctrl-Z, a Slurm suspend), not dead. Its items must not run twice.
  lapse_lease(stopped);
  for (const polymap::journal_runner& r : here.summary(1).runners) EXPECT_TRUE(r.alive) << r.id;
  EXPECT_EQ(here.reclaim_dead(), 0);
  EXPECT_EQ(here.commit({}, 5).size(), 1U);  // its own item alone
}

TEST_F(JournalTest, RunnerTakenForDeadIsLiveAgainOnceItRenewsItsLease) {
  journal stalled(path_);
  journal here(path_);
  share_two_items(stalled, here);
  // On another host (a pid there says nothing here), silent for longer than the lease.
  const std::string id = std::to_string(stalled.runner_id());
  sql("UPDATE runners SET host = 'elsewhere.invalid' WHERE id = " + id);
  lapse_lease(stalled);
  EXPECT_EQ(here.reclaim_dead(), 1);
  stalled.renew_lease();
  bool alive = false;
  for (const polymap::journal_runner& r : here.summary(1).runners) {
    if (r.id == stalled.runner_id()) alive = r.alive;
  }
  EXPECT_TRUE(alive);
  // What it claims now stays its own.
  const std::vector<claimed_item> claimed = stalled.commit({}, 1);
  ASSERT_EQ(claimed.size(), 1U);
  EXPECT_EQ(here.reclaim_dead(), 0);
  stalled.commit({done(claimed[0])}, 0);
  EXPECT_EQ(here.summary(1).count(item_state::done), 1);
}

TEST_F(JournalTest, LiveRunnerOnThisHostIsNotReclaimed) {
  journal holder(path_);
  journal here(path_);
  share_two_items(holder, here);
  EXPECT_EQ(here.reclaim_dead(), 0);
  EXPECT_EQ(here.commit({}, 5).size(), 1U);
}

TEST_F(JournalTest, ReadOnlyJournalIsReadWithoutWriting) {
  {
    journal runner(path_);
    runner.register_runner();
    runner.add_items(items(2));
    runner.finish_runner();
  }
  // A write lands in the write-ahead log first and in the file at the last close: compare
  // both once the reader is gone (a missing log reads as empty).
  const std::string before = read_all(path_);
  const std::string log_before = read_all(path_ + "-wal");
  {
    journal reader(path_, {.read_only = true});
    EXPECT_EQ(reader.summary(5).count(item_state::pending), 2);
    EXPECT_THROW(reader.register_runner(), journal_error);
  }
  EXPECT_EQ(read_all(path_), before);
  EXPECT_EQ(read_all(path_ + "-wal"), log_before);
}

TEST_F(JournalTest, ReaderThroughASymbolicLinkSeesWhatTheRunnerWrote) {
  // SQLite keeps the -wal beside the file the link points to: a reader that looked for it
  // beside the link took the journal for one without a log, and read what was checkpointed.
  journal runner(path_);
  runner.register_runner();
  runner.add_items(items(3));
  const std::string link = dir_ + "/link.db";
  ASSERT_EQ(symlink(path_.c_str(), link.c_str()), 0);
  journal reader(link, {.read_only = true});
  const polymap::journal_summary s = reader.summary(5);
  EXPECT_EQ(s.count(item_state::pending), 3);
  ASSERT_EQ(s.runners.size(), 1U);
  EXPECT_TRUE(s.runners[0].alive);
}

TEST_F(JournalTest, APathThatIsNoRegularFileIsRefusedBeforeAnythingOpensIt) {
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const auto& [path, what] : std::vector<std::pair<std::string, std::string>>{
           {fifo, "it is a FIFO"}, {dir_, "it is a directory"}, {"/dev/null", "it is a device"}}) {
    for (const bool read_only : {false, true}) {
      SCOPED_TRACE(path + (read_only ? " (reader)" : ""));
      try {
        journal j(path, {.read_only = read_only});
        ADD_FAILURE() << "opened";
      } catch (const journal_error& e) {
        EXPECT_NE(std::string(e.what()).find(path + ": " + what), std::string::npos) << e.what();
      }
    }
  }
  EXPECT_NE(access("/dev/null-journal", F_OK), 0);  // nothing beside the device
}

TEST_F(JournalTest, ReaderLeavesNoFileBesideAnIdleJournal) {
  {
    journal runner(path_);
    runner.register_runner();
    runner.add_items(items(2));
    runner.finish_runner();
  }
  ASSERT_FALSE(std::filesystem::exists(path_ + "-wal"));
  {
    journal reader(path_, {.read_only = true});
    EXPECT_EQ(reader.summary(5).count(item_state::pending), 2);
    EXPECT_EQ(reader.summary(5).count(item_state::pending), 2);  // as watch does
  }
  // A -wal or -shm left by a reader would be its user's: the journal's owner could not
  // write through it, nor another user read.
  EXPECT_TRUE(holds_only(dir_, {"j.db"}));
}

TEST_F(JournalTest, ReaderWhoCannotWriteTheFolderReadsAnIdleJournal) {
  {
    journal runner(path_);
    runner.register_runner();
    runner.add_items(items(2));
  }
  const std::string tmp = scratch();
  const int status = as_reader_who_cannot_write(tmp, [&] {
    journal reader(path_, {.read_only = true});
    return reader.summary(5).count(item_state::pending) == 2 ? 0 : 1;
  });
  if (status == cannot_arrange) GTEST_SKIP() << "no other user can reach " << dir_;
  EXPECT_EQ(status, 0);
  EXPECT_TRUE(holds_only(dir_, {"j.db"}));
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
}

TEST_F(JournalTest, ReaderWhoCannotWriteTheFolderReadsALiveRunnersLatestCommits) {
  journal runner(path_);
  runner.register_runner();
  runner.add_items(items(3));
  const std::vector<claimed_item> got = runner.commit({}, 2);
  runner.commit({done(got.at(0))}, 0);
  const std::string tmp = scratch();
  // The runner's -shm exists and the reader may not write it: SQLite reads the log itself.
  const int status = as_reader_who_cannot_write(tmp, [&] {
    journal reader(path_, {.read_only = true});
    const polymap::journal_summary s = reader.summary(5);
    const bool live = s.runners.size() == 1 && s.runners[0].alive;
    return s.count(item_state::done) == 1 && s.count(item_state::running) == 1 &&
                   s.runner_gone == 0 && live
               ? 0
               : 1;
  });
  if (status == cannot_arrange) GTEST_SKIP() << "no other user can reach " << dir_;
  EXPECT_EQ(status, 0);
  EXPECT_TRUE(holds_only(dir_, {"j.db", "j.db-wal", "j.db-shm"}));
  EXPECT_TRUE(std::filesystem::is_empty(tmp));
}

TEST_F(JournalTest, ReaderWhoCannotWriteTheFolderReadsTheLogOfAKilledRunnerWithoutItsIndex) {
  leave_a_killed_runners_journal();
  // Its -shm gone too: SQLite would have to create one to read the log in place.
  std::filesystem::remove(path_ + "-shm");
  const std::string tmp = scratch();
  const int status = as_reader_who_cannot_write(tmp, [&] {
    journal reader(path_, {.read_only = true});
    const polymap::journal_summary s = reader.summary(5);
    // The commits are in the log only: a read of the file alone would find no item done.
    return s.count(item_state::done) == 1 && s.runner_gone == 2 ? 0 : 1;
  });
  if (status == cannot_arrange) GTEST_SKIP() << "no other user can reach " << dir_;
  EXPECT_EQ(status, 0);
  EXPECT_TRUE(holds_only(dir_, {"j.db", "j.db-wal"}));
  EXPECT_TRUE(std::filesystem::is_empty(tmp)) << "the private copy is left in " << tmp;
}

TEST_F(JournalTest, ReaderReadsAJournalOnAReadOnlyFileSystem) {
  {
    journal runner(path_);
    runner.register_runner();
    runner.add_items(items(2));
  }
  const std::string killed = dir_ + "/killed";
  std::filesystem::create_directory(killed);
  const std::string idle = path_;
  path_ = killed + "/j.db";
  leave_a_killed_runners_journal();
  path_ = idle;
  // The folder mounted read-only in a mount namespace of the child's own.
  const int status = in_child([&] {
    const bool root = geteuid() == 0;
    if (unshare(root ? CLONE_NEWNS : CLONE_NEWUSER | CLONE_NEWNS) != 0 ||
        mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        mount(dir_.c_str(), dir_.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
        mount(nullptr, dir_.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      return cannot_arrange;
    }
    if (open((dir_ + "/probe").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600) >= 0) return 4;
    journal reader(idle, {.read_only = true});
    if (reader.summary(5).count(item_state::pending) != 2) return 1;
    // A killed runner's log and index, which cannot be written here.
    journal left(killed + "/j.db", {.read_only = true});
    const polymap::journal_summary s = left.summary(5);
    return s.count(item_state::done) == 1 && s.runner_gone == 2 ? 0 : 2;
  });
  if (status == cannot_arrange) GTEST_SKIP() << "cannot mount a read-only folder here";
  EXPECT_EQ(status, 0);
}

TEST_F(JournalTest, ItemsOfAKilledRunnerAreCountedApart) {
  leave_a_killed_runners_journal();
  journal reader(path_, {.read_only = true});
  const polymap::journal_summary s = reader.summary(5);
  EXPECT_EQ(s.count(item_state::running), 2);
  EXPECT_EQ(s.runner_gone, 2);
  ASSERT_EQ(s.runners.size(), 1U);
  EXPECT_FALSE(s.runners[0].alive);
}

TEST_F(JournalTest, ReadOnlyOpenOfAMissingJournalFailsWithoutCreatingIt) {
  EXPECT_THROW(journal(path_, {.read_only = true}), journal_error);
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(JournalTest, ItemsHeldByAFinishedRunnerAreReclaimed) {
  journal stopped(path_);
  journal next(path_);
  share_two_items(stopped, next);
  // As after a journal error: the runner could not record its end, but did finish.
  stopped.finish_runner();
  EXPECT_EQ(next.reclaim_dead(), 1);
  EXPECT_EQ(next.commit({}, 5).size(), 2U);
}

TEST_F(JournalTest, ResumeKeepsDoneItemsAndRetriesFailedOnlyWhenAsked) {
  {
    journal j(path_);
    j.register_runner();
    j.add_items(items(2));
    const std::vector<claimed_item> got = j.commit({}, 2);
    item_end failed = done(got[1]);
    failed.state = item_state::failed;
    failed.exit_code = 3;
    failed.stderr_tail = "boom";
    j.commit({done(got[0]), failed}, 0);
    j.finish_runner();
  }
  journal j(path_);
  j.register_runner();
  j.add_items(items(2));
  EXPECT_TRUE(j.commit({}, 5).empty());
  const polymap::journal_summary s = j.summary(5);
  ASSERT_EQ(s.failures.size(), 1U);
  EXPECT_EQ(s.failures[0].exit_code, 3);
  EXPECT_EQ(s.failures[0].stderr_tail, "boom");
  EXPECT_EQ(j.retry_failed(), 1);
  EXPECT_EQ(j.commit({}, 5).size(), 1U);
}

TEST_F(JournalTest, GivenBackItemIsClaimableAgainWithoutAnAttempt) {
  journal j(path_);
  j.register_runner();
  j.add_items(items(1));
  const std::vector<claimed_item> got = j.commit({}, 1);
  ASSERT_EQ(got.size(), 1U);
  item_end back;
  back.id = got[0].id;
  back.state = item_state::pending;
  const std::vector<claimed_item> again = j.commit({back}, 1);
  ASSERT_EQ(again.size(), 1U);
  // One real attempt, which fails: the item shows that one attempt, not two.
  item_end failed = done(again[0]);
  failed.state = item_state::failed;
  failed.exit_code = 1;
  EXPECT_TRUE(j.commit({failed}, 1).empty());
  const polymap::journal_summary s = j.summary(1);
  ASSERT_EQ(s.failures.size(), 1U);
  EXPECT_EQ(s.failures[0].attempts, 1);
}

TEST_F(JournalTest, RefusesAFileOfANewerFormat) {
  { journal j(path_); }
  sql("PRAGMA user_version = 7");
  try {
    journal j(path_);
    FAIL() << "opened";
  } catch (const journal_error& e) {
    EXPECT_NE(std::string(e.what()).find("newer polymap (format 7"), std::string::npos) << e.what();
  }
}

TEST_F(JournalTest, RefusesAFileThatIsNotADatabase) {
  std::ofstream(path_) << std::string(4096, 'z');
  EXPECT_THROW(journal j(path_), journal_error);
}

TEST_F(JournalTest, StatusDoesNotCreateAMissingJournal) {
  polymap::journal_options options;
  options.create = false;
  EXPECT_THROW(journal j(path_, options), journal_error);
  EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(JournalTest, LockHeldPastTheTimeoutIsAnError) {
  journal j(path_, {.lock_timeout = 0.1});
  j.register_runner();
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  try {
    j.add_items(items(1));
    ADD_FAILURE() << "wrote through a lock";
  } catch (const journal_error& e) {
    EXPECT_NE(std::string(e.what()).find("locked by another process"), std::string::npos);
  }
  sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(holder);
}

TEST_F(JournalTest, LocalTemporaryDirectoryIsNotANetworkFileSystem) {
  EXPECT_FALSE(polymap::on_network_file_system(path_));
}

}  // namespace
