// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The journal on its own, with several connections standing for several runners: claims,
// exactly-once recording, reclaiming a dead runner's items, resume, and refused files.

#include "journal/journal.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
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
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::vector<journal_item> items(int n) {
    std::vector<journal_item> out;
    for (int i = 1; i <= n; ++i) out.push_back({"key" + std::to_string(i), i, "cmd " + std::to_string(i)});
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
  // The pid is a live process (this one), but it started long after the runner registered
  // in 1970: the runner died and its pid went to another process.
  sql("UPDATE runners SET pid = " + std::to_string(getpid()) +
      ", started = 1000 WHERE id = " + std::to_string(dead.runner_id()));
  EXPECT_EQ(here.reclaim_dead(), 1);
  EXPECT_EQ(here.commit({}, 5).size(), 2U);
}

TEST_F(JournalTest, RunnerOnThisHostIsDeadOnceItsLeaseLapses) {
  journal stalled(path_);
  journal here(path_);
  share_two_items(stalled, here);
  // Its pid is alive and its own, but it has not renewed its lease for longer than the lease.
  lapse_lease(stalled);
  for (const polymap::journal_runner& r : here.summary(1).runners) {
    EXPECT_EQ(r.alive, r.id == here.runner_id()) << r.id;
  }
  EXPECT_EQ(here.reclaim_dead(), 1);
  EXPECT_EQ(here.commit({}, 5).size(), 2U);
}

TEST_F(JournalTest, RunnerTakenForDeadIsLiveAgainOnceItRenewsItsLease) {
  journal stalled(path_);
  journal here(path_);
  share_two_items(stalled, here);
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
