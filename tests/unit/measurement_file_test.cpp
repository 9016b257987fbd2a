// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The file of measurements kept between processes ($XDG_CACHE_HOME/polymap).
#include "measurement_file.hpp"

#include <gtest/gtest.h>

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::detail {
namespace {

namespace fs = std::filesystem;

class MeasurementFile : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "polymap-measurements-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, ec);
    fs::remove_all(dir_, ec);
  }
  [[nodiscard]] std::string text(const fs::path& p) const {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  fs::path dir_;
};

/// Saves under the file's lock; the error text, empty when saved.
std::string save(const measurement_file& f, std::string_view key, std::vector<double> values) {
  const measurement_file::lock_result r = f.take_lock(std::chrono::seconds(5));
  if (!r.held) return "no lock: " + r.why_not;
  return f.save(key, values, *r.held);
}

/// Exit status of a child that tries to take `f`'s lock within `wait`: 0 when it got it,
/// 2 when another process held it all along, -1 when there is no child.
int lock_in_child(const measurement_file& f, std::chrono::milliseconds wait) {
  const pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    const measurement_file::lock_result r = f.take_lock(wait);
    ::_exit(r.held ? 0 : r.busy ? 2 : 1);
  }
  int status = 0;
  if (::waitpid(child, &status, 0) != child) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(MeasurementFile, ASaveRemovesWhatADeadSaveLeftAndNothingElse) {
  const measurement_file f(dir_ / "costs");
  // A save killed between mkostemp and rename leaves costs.XXXXXX behind.
  for (const char* name : {"costs.a1B2c3", "costs.keepme1", "costs.lock", "other.a1B2c3",
                           "costs.a1-2c3"}) {
    std::ofstream(dir_ / name) << "x\n";
  }
  ASSERT_EQ(save(f, "k", {1.0}), "");
  EXPECT_FALSE(fs::exists(dir_ / "costs.a1B2c3"));
  for (const char* kept : {"costs.keepme1", "costs.lock", "other.a1B2c3", "costs.a1-2c3"}) {
    EXPECT_TRUE(fs::exists(dir_ / kept)) << kept;
  }
  EXPECT_EQ(f.find("k", 1), std::vector<double>{1.0});
}

TEST_F(MeasurementFile, AMissingFileHasNothing) {
  const measurement_file f(dir_ / "none" / "costs");
  EXPECT_EQ(f.find("a", 2), std::nullopt);
}

TEST_F(MeasurementFile, SavedNumbersReadBackExactlyAndOtherKeysStay) {
  const measurement_file f(dir_ / "sub" / "costs");  // the folder is made
  const std::vector<double> a{2.5e-5, 1.0 / 23e9};
  const std::vector<double> b{0.1, 3.0};
  ASSERT_EQ(save(f, "gpu/one", a), "");
  ASSERT_EQ(save(f, "gpu/two", b), "");
  EXPECT_EQ(f.find("gpu/one", 2), a);  // bit for bit: the shortest round-trip text
  EXPECT_EQ(f.find("gpu/two", 2), b);
  EXPECT_EQ(f.find("gpu/one", 3), std::nullopt) << "a count that differs is no match";

  const std::vector<double> a2{7e-6, 1e-11};
  ASSERT_EQ(save(f, "gpu/one", a2), "");
  EXPECT_EQ(f.find("gpu/one", 2), a2);
  EXPECT_EQ(f.find("gpu/two", 2), b);
  const std::string t = text(f.path());
  EXPECT_EQ(t.find("gpu/one"), t.rfind("gpu/one")) << "one line per key:\n" << t;

  struct stat st {};
  ASSERT_EQ(::stat(f.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600U);
}

TEST_F(MeasurementFile, LinesThatDoNotParseAreSkippedAndDroppedOnTheNextSave) {
  const measurement_file f(dir_ / "costs");
  {
    std::ofstream out(f.path());
    out << "good 1 2\n"
        << "bad 1 two\n"
        << "nan 1 nan\n"
        << "\n"
        << "inf inf 2\n"
        << "short 1\n";
  }
  EXPECT_EQ(f.find("good", 2), (std::vector<double>{1, 2}));
  EXPECT_EQ(f.find("bad", 2), std::nullopt);
  EXPECT_EQ(f.find("nan", 2), std::nullopt);
  EXPECT_EQ(f.find("inf", 2), std::nullopt);
  EXPECT_EQ(f.find("short", 2), std::nullopt);
  ASSERT_EQ(save(f, "new", {4}), "");
  EXPECT_EQ(text(f.path()), "good 1 2\nshort 1\nnew 4\n");
}

TEST_F(MeasurementFile, AFolderThatCannotBeWrittenIsSaidAndLosesNothing) {
  if (::geteuid() == 0) {
    // root writes through permissions: a path under a regular file cannot be made by anyone.
    const fs::path file = dir_ / "plain";
    std::ofstream(file) << "x";
    const measurement_file f(file / "costs");
    const std::string why = save(f, "k", {1});
    EXPECT_NE(why.find(file.string()), std::string::npos) << why;
    EXPECT_EQ(text(file), "x");
    return;
  }
  const measurement_file f(dir_ / "costs");
  ASSERT_EQ(save(f, "k", {1}), "");
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  const std::string why = save(f, "k", {2});
  EXPECT_NE(why.find(dir_.string()), std::string::npos) << why;
  EXPECT_EQ(f.find("k", 1), (std::vector<double>{1}));
}

TEST_F(MeasurementFile, ALockHeldElsewhereIsWaitedForOnlySoLong) {
  const measurement_file f(dir_ / "costs");
  measurement_file::lock_result r = f.take_lock(std::chrono::seconds(5));
  ASSERT_TRUE(r.held) << r.why_not;
  EXPECT_EQ(lock_in_child(f, std::chrono::milliseconds(50)), 2) << "two processes held it";
  r.held.reset();
  EXPECT_EQ(lock_in_child(f, std::chrono::milliseconds(50)), 0) << "not let go";
}

TEST_F(MeasurementFile, AForkedChildDoesNotKeepTheLockHeld) {
  // A worker process forked while the lock is held (the processes backend forks from the
  // calling process) may outlive it by hours: the lock must go with its holder.
  const measurement_file f(dir_ / "costs");
  measurement_file::lock_result r = f.take_lock(std::chrono::seconds(5));
  ASSERT_TRUE(r.held) << r.why_not;
  const pid_t sleeper = ::fork();
  ASSERT_GE(sleeper, 0) << "fork failed";
  if (sleeper == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the test
    ::alarm(60);
    ::pause();
    ::_exit(0);
  }
  r.held.reset();
  EXPECT_EQ(lock_in_child(f, std::chrono::milliseconds(500)), 0)
      << "the forked child kept the lock held";
  ::kill(sleeper, SIGKILL);
  (void)::waitpid(sleeper, nullptr, 0);
}

TEST_F(MeasurementFile, TheCacheFolderFollowsXdgThenHome) {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::optional<std::string> old_xdg = xdg ? std::optional<std::string>(xdg) : std::nullopt;
  const std::optional<std::string> old_home =
      home ? std::optional<std::string>(home) : std::nullopt;
  ::setenv("XDG_CACHE_HOME", "/xdg/cache", 1);
  ::setenv("HOME", "/home/someone", 1);
  EXPECT_EQ(cache_dir(), fs::path("/xdg/cache/polymap"));
  ::setenv("XDG_CACHE_HOME", "relative/is/ignored", 1);
  EXPECT_EQ(cache_dir(), fs::path("/home/someone/.cache/polymap"));
  ::unsetenv("XDG_CACHE_HOME");
  ::unsetenv("HOME");
  EXPECT_EQ(cache_dir(), fs::path());
  if (old_xdg) ::setenv("XDG_CACHE_HOME", old_xdg->c_str(), 1);
  if (old_home) ::setenv("HOME", old_home->c_str(), 1);
}

}  // namespace
}  // namespace polymap::detail
