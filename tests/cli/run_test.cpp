// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// End-to-end tests of `polymap run` without a journal: inputs, placeholders, quoting,
// output, timeouts, retries, --halt, --joblog, signals. They assert behaviour, never time.

#include "cli_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <sched.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace polymap::test;  // NOLINT(google-build-using-namespace): the test helpers

/// Splits NUL-terminated records.
std::vector<std::string> records(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (std::size_t nul = text.find('\0'); nul != std::string::npos; nul = text.find('\0', at)) {
    out.push_back(text.substr(at, nul - at));
    at = nul + 1;
  }
  return out;
}

const std::vector<std::string> hostile = {
    "with space", "quote'single", "quote\"double", "semi;colon", "$(touch PWNED)",
    "`touch PWNED2`", "new\nline", "-leading-dash", "\xff\xfe not UTF-8 \x80", "*", "a\\b", ""};

/// Runs printf '%s\0' over the hostile values, in argv form or, given `shell_arg`, through
/// --shell with `shell_arg` as printf's argument: a placeholder in some quoting (from a
/// fresh directory, where a $(touch) or `touch` that ran would leave a file).
void expect_hostile_values_arrive_intact(const std::string& shell_arg = "") {
  temp_dir dir;
  std::vector<std::string> args = {"run", "-k", "-j", "2"};
  if (!shell_arg.empty()) {
    args.insert(args.end(),
                {"--shell", "--", "cd " + dir.path() + " && printf '%s\\0' " + shell_arg});
  } else {
    args.insert(args.end(), {"--", "printf", "%s\\0", "{}"});
  }
  args.emplace_back(":::");
  args.insert(args.end(), hostile.begin(), hostile.end());
  const cli_output r = run_polymap(args, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(records(r.out), hostile);
  EXPECT_FALSE(std::filesystem::exists(dir / "PWNED"));
  EXPECT_FALSE(std::filesystem::exists(dir / "PWNED2"));
}

TEST(Run, HostileArgumentsArriveByteIdenticalWithoutShell) {
  expect_hostile_values_arrive_intact();
}

TEST(Run, HostileArgumentsArriveByteIdenticalThroughShell) {
  // A placeholder as a word of its own, and inside the quotes that shell users put around
  // one out of habit, or inside a command substitution: each refers to its value's variable
  // as it must there.
  for (const std::string arg :
       {"{}", "\"{}\"", "'{}'", "\"$(printf '%s' {})\"", "\"$(printf '%s' \"{}\")\"",
        "\"`printf '%s' {}`\"", "\"$(printf '%s' \"`printf '%s' '{}'`\")\"",
        "{} # a comment that holds {} too"}) {
    SCOPED_TRACE(arg);
    expect_hostile_values_arrive_intact(arg);
  }
}

TEST(Run, NoShellLineRunsAValueAsCode) {
  // Lines whose quoting is hard to follow (reviewers' lists): whatever polymap makes of
  // them, a value is never run by dash. Some of them fail, or print the value otherwise.
  const std::vector<std::string> lines = {
      "printf '[%s]' {}#{}",
      "echo $(echo a)#{}",
      "echo `echo \\\\{}`",
      "echo \"${x:-\"{}\"}\"",
      "echo `date # now` {}",
      "printf '%s' \\\n#{}",
      "echo \"$(case a in a) echo {};; esac)\"",
      "echo $'it\\'s' {}",
      "echo `echo \\`echo {}\\``",
      "x=\"$(case a in a) {};; esac)\"",
      "cat <\\\n<EOF\n\"\nEOF\n{}",
      "x=\"${y-'}\"; {}; : \"'\"",
  };
  // "touch PWNED" runs where a line gives it split into words at a command's place.
  const std::vector<std::string> values = {"$(touch PWNED)", ";touch PWNED;",
                                           "`touch PWNED`", "'\ntouch PWNED\n'",
                                           "\\';touch PWNED;echo \\", "touch PWNED"};
  for (const std::string& line : lines) {
    SCOPED_TRACE(line);
    temp_dir dir;
    std::vector<std::string> args = {"run", "--shell", "--", "cd " + dir.path() + "; " + line,
                                     ":::"};
    args.insert(args.end(), values.begin(), values.end());
    const cli_output r = run_polymap(args, dir);  // some are refused (exit 2): that is fine
    EXPECT_FALSE(std::filesystem::exists(dir / "PWNED")) << r.out << r.err;
  }
}

TEST(Run, AShellValueInAPatternIsLiteralAndEqualPlaceholdersShareOneArgument) {
  temp_dir dir;
  const cli_output r = run_polymap(
      {"run", "-k", "--shell", "--", "x=abc; printf '[%s]' \"${x#{}}\" {} {}", ":::", "a*"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "[abc][a*][a*]");  // "a*" is no glob there: abc does not start with it
  const cli_output dry = run_polymap({"run", "--dry-run", "--shell", "--", "echo {} {} {1}",
                                      ":::", "v"},
                                     dir);
  ASSERT_EQ(dry.status, 0) << dry.err;
  // {} and {} share one; {1} (the same value here, not always) has its own.
  EXPECT_EQ(dry.out, "/bin/sh -c '__polymap_1=${1}; __polymap_2=${2}; shift 2; echo "
                     "\"${__polymap_1}\" \"${__polymap_1}\" \"${__polymap_2}\"' sh v v\n");
}

TEST(Run, AShellPlaceholderThatNoQuotingKeepsIsAUsageError) {
  temp_dir dir;
  for (const auto& [line, where] : std::map<std::string, std::string>{
           {"echo \\{}", "right after a backslash"},
           {"echo \"\\{}\"", "right after a backslash"},
           {"echo ${}", "right after a $"},
           {"echo $(( {} + 1 ))", "inside an arithmetic $((...))"},
           {"while(( {} )); do break; done", "inside an arithmetic $((...)) or ((...))"},
           {"echo \"`echo \\\"{}\\\"`\"", "inside `...` after a backslash"},
           {"cat <<EOF\n{}\nEOF", "after a here-document's <<"}}) {
    SCOPED_TRACE(line);
    const cli_output r = run_polymap({"run", "--shell", "--", line, ":::", "x"}, dir);
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("placeholder {} " + where), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST(Run, OneOfSeveralMpiRanksWithoutAJournalSaysEveryRankRunsEveryItem) {
  temp_dir dir;
  const std::vector<std::string> args = {"run", "--", "true", ":::", "a", "b"};
  // What mpirun -n 4 puts in each rank's environment (the count is what matters).
  cli_process ranked(args, dir, -1, "/dev/null",
                     {"OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_RANK=2"});
  EXPECT_EQ(ranked.wait(), 0) << ranked.err();
  EXPECT_NE(ranked.err().find("one of 4 ranks of an MPI job, without --journal: every rank runs "
                              "every item"),
            std::string::npos)
      << ranked.err();
  // One rank, or a journal that the ranks share: nothing to say.
  cli_process alone(args, dir, -1, "/dev/null", {"OMPI_COMM_WORLD_SIZE=1"});
  EXPECT_EQ(alone.wait(), 0);
  EXPECT_EQ(alone.err(), "");
  std::vector<std::string> shared = {"run", "--journal", dir / "j.db", "--", "true", ":::", "a"};
  cli_process journaled(shared, dir, -1, "/dev/null", {"OMPI_COMM_WORLD_SIZE=4"});
  EXPECT_EQ(journaled.wait(), 0) << journaled.err();
  EXPECT_EQ(journaled.err().find("MPI job"), std::string::npos) << journaled.err();
}

TEST(Run, PlaceholdersExpandAsGnuParallel) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "--dry-run", "-j", "1", "--", "echo", "{}", "{.}", "{/}",
                                    "{//}", "{/.}", "{#}", "{%}", ":::", "dir/sub/a.tar.gz", "b"},
                                   dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "echo dir/sub/a.tar.gz dir/sub/a.tar a.tar.gz dir/sub a.tar 1 1\n"
            "echo b b b . b 2 1\n");
}

TEST(Run, PlaceholdersOfAWholeItemOfSeveralColumnsTransformEachColumn) {
  // As GNU parallel 20221122 gives them: {/} of d1/f1.txt ::: d2/f2.dat is "f1.txt f2.dat".
  temp_dir dir;
  const cli_output r = run_polymap({"run", "--dry-run", "--", "echo", "{/}", "{.}", "{//}",
                                    "{/.}", "{}", ":::", "d1/f1.txt", ":::", "d2/f2.dat"},
                                   dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out,
            "echo 'f1.txt f2.dat' 'd1/f1 d2/f2' 'd1 d2' 'f1 f2' 'd1/f1.txt d2/f2.dat'\n");
}

TEST(Run, DryRunWithJsonPrintsOneEventAnItem) {
  temp_dir dir;
  const cli_output r = run_polymap(
      {"run", "--dry-run", "--json", "-j", "2", "--", "echo", "{}", ":::", "a", "b c", "\xff"},
      dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3U) << r.out;
  const std::vector<std::vector<std::string>> argvs = {{"echo", "a"}, {"echo", "b c"},
                                                       {"echo", "\xef\xbf\xbd"}};
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const nlohmann::json event = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(event.at("event"), "dry-run");
    EXPECT_EQ(event.at("seq"), i + 1);
    EXPECT_EQ(event.at("slot"), i % 2 + 1);
    EXPECT_EQ(event.at("command").get<std::vector<std::string>>(), argvs[i]);
  }
}

// What GNU parallel 20221122 gives for paths with trailing, repeated or lone slashes, dots
// and nothing at all: {//} is Perl's dirname (trailing slashes do not count), {/} what
// follows the last slash, {.} and {/.} drop the last dot and what follows it there.
TEST(Run, PathPlaceholdersOfOddValuesMatchGnuParallel) {
  temp_dir dir;
  const std::vector<std::string> values = {"a/b/", "a/b", "a",   "/a",  "/",     "a/",
                                           "./a",  ".a",  "a.b/c", "a/.b", "a/b.c/", "",
                                           "a//b", "//",  "a.b.",  "..",   ".",      "a/.."};
  const std::vector<std::string> expected = {
      "a|||a/b/",  "a|b|b|a/b", ".|a|a|a",    "/|a|a|/a",     "/|||/",       ".|||a/",
      ".|a|a|./a", ".|.a||",    "a.b|c|c|a.b/c", "a|.b||a/",  "a|||a/b.c/",  ".|||",
      "a|b|b|a//b", "/|||//",   ".|a.b.|a.b|a.b", ".|..|.|.", ".|.||",       "a|..|.|a/."};
  std::vector<std::string> args = {"run",    "-k",   "-j",   "2",    "--",  "printf",
                                   "%s|%s|%s|%s\\n", "{//}", "{/}", "{/.}", "{.}", ":::"};
  args.insert(args.end(), values.begin(), values.end());
  const cli_output r = run_polymap(args, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(lines_of(r.out), expected);
}

TEST(Run, ColumnPlaceholdersNameTheirSource) {
  temp_dir dir;
  const cli_output r = run_polymap(
      {"run", "--dry-run", "--", "echo", "{2}", "{1}", "{2/}", "{2//}", ":::", "a", ":::", "x/y.z"},
      dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "echo x/y.z a y.z x\n");
}

TEST(Run, NoPlaceholderAppendsEachColumn) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "-k", "echo", ":::", "a", "b", ":::", "1", "2"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "a 1\na 2\nb 1\nb 2\n");
}

TEST(Run, ArgFilesAndFourColonSourcesGiveLines) {
  temp_dir dir;
  write_file(dir / "items", "one\ntwo words\n");
  write_file(dir / "more", "x\n");
  const cli_output r = run_polymap(
      {"run", "-k", "--arg-file", dir / "items", "--", "echo", "{1}-{2}", "::::", dir / "more"},
      dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "one-x\ntwo words-x\n");
}

TEST(Run, EachFileAfterFourColonsIsASourceOfItsOwn) {
  temp_dir dir;
  write_file(dir / "letters", "a\nb\n");
  write_file(dir / "digits", "1\n2\n");
  const cli_output r = run_polymap(
      {"run", "-k", "echo", "{1}{2}", "::::", dir / "letters", dir / "digits"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "a1\na2\nb1\nb2\n");
}

TEST(Run, AnEmptySourceBesideOthersIsOneEmptyValueAndAloneGivesNoItem) {
  temp_dir dir;
  write_file(dir / "empty", "");
  const cli_output r = run_polymap(
      {"run", "-k", "echo", "[{1}][{2}]", ":::", "a", "b", "::::", dir / "empty"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "[a][]\n[b][]\n");
  const cli_output none = run_polymap({"run", "echo", "x", "::::", dir / "empty"}, dir);
  EXPECT_EQ(none.status, 0) << none.err;
  EXPECT_EQ(none.out, "");
}

TEST(Run, AnInputLineWithANulIsAUsageErrorNamingItsLine) {
  temp_dir dir;
  write_file(dir / "items", std::string("fine\nb") + '\0' + "c\n");
  const cli_output r = run_polymap({"run", "echo", "::::", dir / "items"}, dir);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("'" + (dir / "items") + "', line 2, holds a NUL byte"), std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");  // nothing ran
  const cli_output folder = run_polymap({"run", "echo", "::::", dir.path()}, dir);
  EXPECT_EQ(folder.status, 2);
  EXPECT_NE(folder.err.find("it is a directory"), std::string::npos) << folder.err;
}

TEST(Run, UnknownPlaceholderIsAUsageErrorNamingIt) {
  temp_dir dir;
  for (const std::string bad : {"{..}", "{0}", "{3}", "{+/}", "{#1}"}) {
    SCOPED_TRACE(bad);
    const cli_output r = run_polymap({"run", "echo", bad, ":::", "a", ":::", "b"}, dir);
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find(bad), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(Run, LiteralBracesAreNotPlaceholders) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "echo", "{print $1}", "${HOME}", "{}", ":::", "a"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "{print $1} ${HOME} a\n");
}

TEST(Run, UnreadableArgFileIsAUsageErrorNamingIt) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "echo", "::::", dir / "missing"}, dir);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(dir / "missing"), std::string::npos) << r.err;
}

TEST(Run, AnEmptyPathIsAUsageErrorNotNoFile) {
  // `--journal "$J"` with J unset must not run the batch without its journal.
  temp_dir dir;
  for (const char* option : {"--journal", "--joblog", "--results"}) {
    SCOPED_TRACE(option);
    const cli_output r = run_polymap({"run", option, "", "--", "touch", dir / "ran", ":::", "a"},
                                     dir);
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find(std::string(option) + ": an empty path names no file"),
              std::string::npos)
        << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "ran"));
  EXPECT_EQ(run_polymap({"status", "--journal", ""}, dir).status, 2);
}

TEST(Run, MissingCommandFailsEachItemOnce) {
  temp_dir dir;
  const cli_output r =
      run_polymap({"run", "--", "polymap-no-such-command", "{}", ":::", "a", "b", "c"}, dir);
  EXPECT_EQ(r.status, 1);
  // One line per item, and the count at the end.
  const std::vector<std::string> lines = lines_of(r.err);
  ASSERT_EQ(lines.size(), 4U) << r.err;
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_NE(lines[i].find("cannot run 'polymap-no-such-command'"), std::string::npos) << r.err;
  }
  EXPECT_EQ(lines[3], "polymap: 3 of 3 items failed");
}

/// The tab-separated fields of a joblog line.
std::vector<std::string> joblog_fields(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  std::string field;
  while (std::getline(in, field, '\t')) fields.push_back(field);
  return fields;
}

TEST(Run, AProgramThatIsNotThereExits127AndOneThatCannotRun126) {
  temp_dir dir;
  write_file(dir / "not-a-program", "echo hi\n");  // readable, not executable
  const cli_output r = run_polymap({"run", "--joblog", dir / "log", "--", "{}", ":::",
                                    dir / "polymap-no-such-command", dir / "not-a-program"},
                                   dir);
  EXPECT_EQ(r.status, 1) << r.err;
  std::map<std::string, std::string> exitval;  // Seq -> Exitval
  for (const std::string& line : lines_of(read_file(dir / "log"))) {
    const std::vector<std::string> fields = joblog_fields(line);
    ASSERT_EQ(fields.size(), 9U) << line;
    exitval[fields[0]] = fields[6];
  }
  EXPECT_EQ(exitval["1"], "127") << read_file(dir / "log");
  EXPECT_EQ(exitval["2"], "126") << read_file(dir / "log");
  EXPECT_NE(r.err.find("cannot run '" + (dir / "not-a-program") + "': Permission denied"),
            std::string::npos)
      << r.err;
}

TEST(Run, EachFailedItemIsNamedOnStderrWithWhyAndTheRunCountsThem) {
  temp_dir dir;
  const std::string script =
      "case $0 in x3) exit 3;; slow) exec sleep 60;; self) kill -9 $$;; y*) exit 5;; esac";
  const cli_output r = run_polymap({"run", "--timeout", "0.5", "--", "sh", "-c", script, "{}",
                                    ":::", "ok", "x3", "slow", "self", std::string(300, 'y')},
                                   dir);
  EXPECT_EQ(r.status, 1);
  const std::string shown = "sh -c '" + script + "' ";
  EXPECT_NE(r.err.find("polymap: item 2 failed (exit status 3): " + shown + "x3\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("polymap: item 3 failed (timed out after 0.5 s): " + shown + "slow\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("polymap: item 4 failed (killed by signal SIGKILL): " + shown + "self\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("item 1 "), std::string::npos) << r.err;
  // A long command line is cut to 100 bytes.
  const std::string head = "polymap: item 5 failed (exit status 5): ";
  const std::size_t at = r.err.find(head);
  ASSERT_NE(at, std::string::npos) << r.err;
  const std::size_t from = at + head.size();
  const std::string cut = r.err.substr(from, r.err.find('\n', from) - from);
  EXPECT_EQ(cut.size(), 100U) << cut;
  EXPECT_EQ(cut.rfind(shown, 0), 0U) << cut;
  EXPECT_EQ(cut.substr(97), "...") << cut;
  EXPECT_EQ(lines_of(r.err).back(), "polymap: 4 of 5 items failed") << r.err;
  // The same with retries: the line comes once, after the last attempt.
  const cli_output retried =
      run_polymap({"run", "--retries", "1", "--", "sh", "-c", "exit 4", ":::", "a"}, dir);
  EXPECT_EQ(retried.err,
            "polymap: item 1 failed (exit status 4, after 2 attempts): sh -c 'exit 4' a\n"
            "polymap: 1 of 1 item failed\n");
}

TEST(Run, JsonLinesStayJsonWhenStderrGoesWithStdout) {
  temp_dir dir;
  // 2>&1: a line of text among the JSON lines would break a reader of the stream; the end
  // events and the summary say what failed.
  std::string command = polymap_command({"run", "--json", "--", "sh", "-c", "exit $0", ":::",
                                         "0", "1"});
  command += " >" + shell_quote(dir / "both") + " 2>&1";
  ASSERT_EQ(WEXITSTATUS(std::system(command.c_str())), 1);
  const std::vector<std::string> lines = lines_of(read_file(dir / "both"));
  EXPECT_EQ(lines.size(), 5U);
  for (const std::string& line : lines) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
}

TEST(Run, ExitStatusSaysWhetherAnyItemFailed) {
  temp_dir dir;
  const std::vector<std::string> args = {"run", "--", "sh", "-c", "exit $0", "{}", ":::", "0"};
  std::vector<std::string> ok = args;
  ok.emplace_back("0");
  std::vector<std::string> failing = args;
  failing.emplace_back("3");
  EXPECT_EQ(run_polymap(ok, dir).status, 0);
  EXPECT_EQ(run_polymap(failing, dir).status, 1);
}

TEST(Run, TimeoutKillsTheJobAndFailsIt) {
  temp_dir dir;
  const cli_output r = run_polymap(
      {"run", "--timeout", "0.2", "--joblog", dir / "log", "--", "sleep", "{}", ":::", "60"}, dir);
  EXPECT_EQ(r.status, 1) << r.err;
  const std::vector<std::string> log = lines_of(read_file(dir / "log"));
  ASSERT_EQ(log.size(), 2U);
  EXPECT_NE(log[1].find("\t-1\t15\tsleep 60"), std::string::npos) << log[1];
}

TEST(Run, RetriesRunAFailingItemAgainUntilItSucceeds) {
  temp_dir dir;
  // Fails on its first two attempts, succeeds on the third.
  const std::string script = "n=$(cat \"$0\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$0\"; "
                             "[ $n -ge 3 ]";
  EXPECT_EQ(run_polymap({"run", "--retries", "2", "--", "sh", "-c", script, "{}", ":::",
                         dir / "count"},
                        dir)
                .status,
            0);
  EXPECT_EQ(read_file(dir / "count"), "3\n");
  EXPECT_EQ(run_polymap({"run", "--retries", "1", "--", "sh", "-c", script, "{}", ":::",
                         dir / "count2"},
                        dir)
                .status,
            1);
  EXPECT_EQ(read_file(dir / "count2"), "2\n");
}

TEST(Run, HaltNowStopsAtTheFirstFailure) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "-j", "1", "--halt", "now,fail=1", "--joblog",
                                    dir / "log", "--", "sh", "-c", "exit $0", "{}", ":::", "0",
                                    "1", "0", "0", "0"},
                                   dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(lines_of(read_file(dir / "log")).size(), 3U) << read_file(dir / "log");
}

TEST(Run, HaltSoonPercentLetsRunningJobsFinish) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "-j", "1", "--halt", "soon,fail=50%", "--joblog",
                                    dir / "log", "--", "sh", "-c", "exit $0", "{}", ":::", "1",
                                    "0", "1", "0", "1", "0", "1", "0"},
                                   dir);
  EXPECT_EQ(r.status, 1);
  // A share of the run's 8 items, as GNU parallel takes it (not of the ended ones, of which
  // half failed from the first on): the fourth failure, the seventh job, halts.
  EXPECT_EQ(lines_of(read_file(dir / "log")).size(), 8U) << read_file(dir / "log");
  EXPECT_NE(r.err.find("--halt: 4 item(s) failed of 8, 50% or more"), std::string::npos) << r.err;
}

TEST(Run, HaltTakesGnuParallelsOlderForms) {
  temp_dir dir;
  // -j 1 over 0 1 0 0 0 (exit statuses): the joblog's lines (a header, then one per ended
  // job) say where it stopped. 0: never; 1: soon,fail=1; 2: now,fail=1.
  const std::map<std::string, std::size_t> lines = {{"0", 6}, {"1", 3}, {"2", 3}};
  for (const auto& [halt, expected] : lines) {
    const std::string log = dir / ("log" + halt);
    const cli_output r =
        run_polymap({"run", "-j", "1", "--halt", halt, "--joblog", log, "--", "sh", "-c",
                     "exit $0", "{}", ":::", "0", "1", "0", "0", "0"},
                    dir);
    EXPECT_EQ(r.status, 1) << halt << ": " << r.err;
    EXPECT_EQ(lines_of(read_file(log)).size(), expected) << halt;
  }
  // P%: soon,fail=P% of the run's items: one failure of 8 is 10% or more.
  const cli_output percent =
      run_polymap({"run", "-j", "1", "--halt", "10%", "--joblog", dir / "logp", "--", "sh", "-c",
                   "exit $0", "{}", ":::", "0", "1", "0", "0", "0", "0", "0", "0"},
                  dir);
  EXPECT_EQ(percent.status, 1) << percent.err;
  EXPECT_EQ(lines_of(read_file(dir / "logp")).size(), 3U) << read_file(dir / "logp");
  // -1 and -2 halt on a success in GNU parallel, which polymap does not do.
  const cli_output success = run_polymap({"run", "--halt", "-1", "echo", ":::", "a"}, dir);
  EXPECT_EQ(success.status, 2);
  EXPECT_NE(success.err.find("--halt '-1'"), std::string::npos) << success.err;
}

TEST(Run, SecondsOutOfRangeAreRefusedInPlainNumbers) {
  temp_dir dir;
  const std::map<std::vector<std::string>, std::string> refused = {
      {{"run", "--timeout", "-1", "echo", ":::", "a"}, "'-1' is not a number of seconds >= 0"},
      {{"run", "--lock-timeout", "x", "echo", ":::", "a"}, "'x' is not a number of seconds >= 0"},
      {{"watch", "--interval", "0.01", "--journal", dir / "j.db"},
       "'0.01' is not a number of seconds from 0.05 to 3600"}};
  for (const auto& [args, says] : refused) {
    const cli_output r = run_polymap(args, dir);
    EXPECT_EQ(r.status, 2) << args[1];
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    // CLI11's own ranges print the largest double in full: some 300 digits.
    EXPECT_LT(r.err.size(), 200U) << r.err;
    EXPECT_EQ(r.err.find("000000"), std::string::npos) << r.err;
  }
}

TEST(Run, BadHaltIsAUsageError) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "--halt", "later,fail=x", "echo", ":::", "a"}, dir);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("later,fail=x"), std::string::npos) << r.err;
}

TEST(Run, JoblogIsReadByGnuParallelResume) {
  if (std::system("parallel --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no GNU parallel";
  temp_dir dir;
  ASSERT_EQ(run_polymap({"run", "--joblog", dir / "log", "echo", ":::", "a", "b", "c"}, dir).status,
            0);
  const std::string resume = "cd " + dir.path() +
                             " && parallel --will-cite --resume --joblog log echo ::: a b c d "
                             "> resumed 2>&1";
  ASSERT_EQ(std::system(resume.c_str()), 0) << read_file(dir / "resumed");
  EXPECT_EQ(read_file(dir / "resumed"), "d\n");
}

/// Whether `line` is a joblog line of item `seq` whose command ends with `command_end`.
bool is_joblog_line(const std::string& line, int seq, const std::string& command_end) {
  return line.rfind(std::to_string(seq) + "\t:\t", 0) == 0 &&
         std::count(line.begin(), line.end(), '\t') == 8 && line.size() >= command_end.size() &&
         line.compare(line.size() - command_end.size(), command_end.size(), command_end) == 0;
}

const std::string joblog_header =
    "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand";

/// A `sh -c` script for the items `first` and `second`: `first` echoes its name only once
/// `second` has echoed its own and ended, so `first` always ends last.
std::string first_waits_for_second(const temp_dir& dir) {
  const std::string done = dir / "second.done";
  return "if [ \"$0\" = first ]; then while [ ! -e '" + done +
         "' ]; do sleep 0.01; done; echo first; else echo second; touch '" + done + "'; fi";
}

// As in GNU parallel: `--joblog -` is stdout, the header first and each item's line after
// its output, in input order with -k (the first item here ends last).
TEST(Run, JoblogDashIsStdoutWithEachLineAfterItsItemsOutput) {
  temp_dir dir;
  const std::string script = first_waits_for_second(dir);
  const std::string command =
      "cd " + shell_quote(dir.path()) + " && " +
      polymap_command({"run", "-k", "-j", "2", "--joblog", "-", "--", "sh", "-c", script, ":::",
                       "first", "second"}) +
      " >out 2>err";
  ASSERT_EQ(std::system(command.c_str()), 0) << read_file(dir / "err");
  const std::vector<std::string> lines = lines_of(read_file(dir / "out"));
  ASSERT_EQ(lines.size(), 5U) << read_file(dir / "out");
  EXPECT_EQ(lines[0], joblog_header);
  EXPECT_EQ(lines[1], "first");
  EXPECT_TRUE(is_joblog_line(lines[2], 1, "\t0\t0\tsh -c " + shell_quote(script) + " first"))
      << lines[2];
  EXPECT_EQ(lines[3], "second");
  EXPECT_TRUE(is_joblog_line(lines[4], 2, " second")) << lines[4];
  EXPECT_FALSE(std::filesystem::exists(dir / "-"));
  EXPECT_EQ(read_file(dir / "err"), "");
}

TEST(Run, AJoblogOnStdoutWithJsonIsAUsageError) {
  // Its lines would fall among the JSON events: "-", and any name of the file stdout is.
  temp_dir dir;
  for (const std::string log : {"-", "/dev/stdout", "+/dev/stdout"}) {
    SCOPED_TRACE(log);
    const cli_output r = run_polymap({"run", "--joblog", log, "--json", "echo", ":::", "a"}, dir);
    EXPECT_EQ(r.status, 2);
    EXPECT_NE(r.err.find("--joblog " + log + " and --json"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  // A + alone names no file.
  EXPECT_EQ(run_polymap({"run", "--joblog", "+", "echo", ":::", "a"}, dir).status, 2);
}

TEST(Run, AJoblogLineCutShortByAFullFileIsTakenBackOut) {
  // A file size limit of 1 KiB stands for a full disk: a line that does not fit is cut.
  temp_dir dir;
  const std::string log = dir / "log";
  std::vector<std::string> args = {"run", "-j", "1", "--joblog", log, "true", ":::"};
  for (int i = 0; i < 40; ++i) args.push_back(std::to_string(i));
  cli_process p(args, dir, -1, "/dev/null", {}, -1,
                {"/bin/sh", "-c", "ulimit -f 2; trap '' XFSZ; exec \"$@\"", "sh"});
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_NE(p.err().find("cannot write to --joblog"), std::string::npos) << p.err();
  const std::string text = read_file(log);
  ASSERT_FALSE(text.empty());
  EXPECT_LT(text.size(), 1024U);
  EXPECT_EQ(text.back(), '\n');  // whole lines only
  const std::vector<std::string> lines = lines_of(text);
  ASSERT_GT(lines.size(), 2U);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    EXPECT_TRUE(is_joblog_line(lines[i], static_cast<int>(i), "true " + std::to_string(i - 1)))
        << lines[i];
  }
}

// `--joblog +FILE` appends to FILE as GNU parallel does; the header goes only into a file
// that is new or empty, so that `parallel --resume` does not take a job's line for it.
TEST(Run, JoblogPlusFileAppendsWithTheHeaderOnlyInANewOrEmptyFile) {
  temp_dir dir;
  const std::string log = dir / "log";
  ASSERT_EQ(run_polymap({"run", "--joblog", "+" + log, "echo", ":::", "a"}, dir).status, 0);
  ASSERT_EQ(run_polymap({"run", "--joblog", "+" + log, "echo", ":::", "b", "c"}, dir).status, 0);
  std::vector<std::string> lines = lines_of(read_file(log));
  ASSERT_EQ(lines.size(), 4U) << read_file(log);
  EXPECT_EQ(lines[0], joblog_header);
  EXPECT_TRUE(is_joblog_line(lines[1], 1, "\techo a")) << lines[1];
  EXPECT_TRUE(is_joblog_line(lines[2], 1, "\techo b") || is_joblog_line(lines[2], 2, "\techo c"))
      << lines[2];
  EXPECT_FALSE(std::filesystem::exists(dir / ("+" + log)));
  // An empty file gets the header; without the "+" a file is written anew.
  write_file(log, "");
  ASSERT_EQ(run_polymap({"run", "--joblog", "+" + log, "echo", ":::", "d"}, dir).status, 0);
  lines = lines_of(read_file(log));
  ASSERT_EQ(lines.size(), 2U) << read_file(log);
  EXPECT_EQ(lines[0], joblog_header);
  ASSERT_EQ(run_polymap({"run", "--joblog", log, "echo", ":::", "e"}, dir).status, 0);
  lines = lines_of(read_file(log));
  ASSERT_EQ(lines.size(), 2U) << read_file(log);
  EXPECT_TRUE(is_joblog_line(lines[1], 1, "\techo e")) << lines[1];
}

// A joblog that is a pipe gets the header as a file does (GNU parallel's `--joblog
// /dev/stdout | ...` too).
TEST(Run, JoblogOnAPipeStartsWithTheHeader) {
  temp_dir dir;
  const std::string command = polymap_command({"run", "--joblog", "/dev/stdout", "true", ":::",
                                               "a"}) +
                              " 2>" + shell_quote(dir / "err") + " | cat >" +
                              shell_quote(dir / "out");
  ASSERT_EQ(std::system(command.c_str()), 0) << read_file(dir / "err");
  const std::vector<std::string> lines = lines_of(read_file(dir / "out"));
  ASSERT_EQ(lines.size(), 2U) << read_file(dir / "out");
  EXPECT_EQ(lines[0], joblog_header);
  EXPECT_TRUE(is_joblog_line(lines[1], 1, "\ttrue a")) << lines[1];
}

const bool have_gnu_parallel = std::system("parallel --version >/dev/null 2>&1") == 0;

// As GNU parallel writes them: JobRuntime "%10.3f", Send 0 (but with --pipe), Receive the
// bytes of the job's stdout (not its stderr). polymap counts them where it captures the
// output (-k, --json, --results) and writes 0 where the output goes straight to its stdout,
// as GNU parallel does under -u.
TEST(Run, JoblogFieldsAreGnuParallels) {
  temp_dir dir;
  const std::string script = "printf abc; printf 12345 >&2";
  const std::vector<std::pair<std::vector<std::string>, std::string>> runs = {
      {{}, "0"},
      {{"-k"}, "3"},
      {{"--json"}, "3"},
      {{"--results", dir / "res"}, "3"},
      {{"--journal", dir / "j.db"}, "0"}};
  const std::regex runtime(" *[0-9]+\\.[0-9]{3}");
  int run = 0;
  for (const auto& [options, received] : runs) {
    // A log of its own: with --journal, the joblog is appended to (a resumed run).
    const std::string log = dir / ("log" + std::to_string(++run));
    std::vector<std::string> args = {"run", "--joblog", log};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(), {"--", "sh", "-c", script, "x", ":::", "a"});
    const cli_output r = run_polymap(args, dir);
    ASSERT_EQ(r.status, 0) << r.err;
    const std::vector<std::string> lines = lines_of(read_file(log));
    ASSERT_EQ(lines.size(), 2U) << read_file(log);
    const std::vector<std::string> fields = joblog_fields(lines[1]);
    ASSERT_EQ(fields.size(), 9U) << lines[1];
    EXPECT_EQ(fields[3].size(), 10U) << lines[1];
    EXPECT_TRUE(std::regex_match(fields[3], runtime)) << lines[1];
    EXPECT_EQ(fields[4], "0") << lines[1];
    EXPECT_EQ(fields[5], received) << options.size() << ": " << lines[1];
  }
  if (!have_gnu_parallel) return;
  const std::string gnu = "cd " + shell_quote(dir.path()) +
                          " && parallel --will-cite -q -k --joblog glog sh -c " +
                          shell_quote(script) + " x ::: a >/dev/null 2>&1";
  ASSERT_EQ(std::system(gnu.c_str()), 0);
  const std::vector<std::string> gnu_lines = lines_of(read_file(dir / "glog"));
  ASSERT_EQ(gnu_lines.size(), 2U);
  const std::vector<std::string> gnu_fields = joblog_fields(gnu_lines[1]);
  ASSERT_EQ(gnu_fields.size(), 9U) << gnu_lines[1];
  EXPECT_EQ(gnu_fields[3].size(), 10U) << gnu_lines[1];
  EXPECT_EQ(gnu_fields[4], "0") << gnu_lines[1];
  EXPECT_EQ(gnu_fields[5], "3") << gnu_lines[1];
}

// Exitval as GNU parallel writes it: the exit status, 0 for a job killed by a signal (Signal
// says which), -1 for one that ran past --timeout.
// A --joblog file that cannot take its lines (a file size limit standing for a full disk)
// does not stop the run: the items are done, and the failure is said once.
TEST(Run, JoblogThatCannotBeWrittenIsAWarningOnce) {
  temp_dir dir;
  std::vector<std::string> args{"run", "--joblog", dir / "log", "--", "true", ":::"};
  for (int i = 1; i <= 60; ++i) args.push_back(std::to_string(i));
  const int status = run_polymap_on_a_full_disk(args, 1, dir / "err");
  const std::string err = read_file(dir / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  const std::string warning = "polymap: warning: cannot write to --joblog '" + (dir / "log") +
                              "': File too large;";
  EXPECT_EQ(err.rfind(warning, 0), 0U) << err;
  EXPECT_EQ(err.find(warning, 1), std::string::npos) << err;
  // The header and the lines that fitted under the limit.
  const std::vector<std::string> lines = lines_of(read_file(dir / "log"));
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front().rfind("Seq\t", 0), 0U);
  EXPECT_LT(lines.size(), 61U);
}

TEST(Run, AStdoutThatCannotBeWrittenIsSaidOnceNamingWhatWasLost) {
  temp_dir dir;
  for (const bool joblog : {false, true}) {
    std::vector<std::string> args = {"run", "-k"};
    if (joblog) args.insert(args.end(), {"--joblog", "-"});
    args.insert(args.end(), {"--", "echo", ":::", "a", "b"});
    const std::string command = polymap_command(args) + " >/dev/full 2>" + shell_quote(dir / "err");
    const int status = std::system(command.c_str());
    const std::string err = read_file(dir / "err");
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1) << err;
    const std::string said = joblog ? "cannot write the output or joblog line of item 1 to stdout"
                                    : "cannot write the output of item 1 to stdout";
    EXPECT_NE(err.find(said + ": No space left on device"), std::string::npos) << err;
    EXPECT_EQ(lines_of(err).size(), 1U) << err;
  }
}

TEST(Run, NoProcessToBeHadMakesJobsWaitNotTheRunFail) {
  // As user nobody under `ulimit -u 4`: polymap and its orphan guard take two processes, so
  // two of -j 4's jobs run at a time and the others' starts fail with EAGAIN. They wait and
  // start when a process is free (the whole run stopped, its -k output lost, before).
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run polymap as nobody";
  if (std::system("setpriv --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no setpriv";
  if (std::system("id nobody >/dev/null 2>&1") != 0) GTEST_SKIP() << "no user nobody";
  temp_dir dir;
  chmod(dir.path().c_str(), 0777);
  std::string command = "cd " + shell_quote(dir.path()) +
                        " && setpriv --reuid=nobody --regid=nogroup --clear-groups bash -c " +
                        shell_quote("ulimit -u 4; exec " +
                                    polymap_command({"run", "-j", "4", "-k", "--", "sh", "-c",
                                                     "echo $1; exec sleep 0.2", "sh", "{}", ":::",
                                                     "1", "2", "3", "4", "5", "6"}));
  command += " >" + shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  const int status = std::system(command.c_str());
  const std::string err = read_file(dir / "err");
  if (err.find("orphan guard") != std::string::npos) GTEST_SKIP() << err;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  EXPECT_EQ(read_file(dir / "out"), "1\n2\n3\n4\n5\n6\n") << err;
}

TEST(Run, ACommandThatCannotStartIsRetriedAsAFailedOne) {
  // The program appears a moment after the first attempt (a build that writes it, a file
  // system that mounts late): --retries takes it, as for a job that failed.
  temp_dir dir;
  const std::string program = dir / "later.sh";
  cli_process p({"run", "--retries", "8", "--", program, ":::", "a"}, dir);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  write_file(program + ".new", "#!/bin/sh\necho ran $1\n");
  chmod((program + ".new").c_str(), 0755);
  std::filesystem::rename(program + ".new", program);
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.out(), "ran a\n");
}

TEST(Run, JoblogExitvalOfAJobKilledByASignalIsZero) {
  temp_dir dir;
  const std::string script = "kill -9 $$";
  const cli_output r =
      run_polymap({"run", "--joblog", dir / "log", "--", "sh", "-c", script, "x", ":::", "a"}, dir);
  EXPECT_EQ(r.status, 1);
  const std::vector<std::string> lines = lines_of(read_file(dir / "log"));
  ASSERT_EQ(lines.size(), 2U) << read_file(dir / "log");
  const std::vector<std::string> fields = joblog_fields(lines[1]);
  ASSERT_EQ(fields.size(), 9U) << lines[1];
  EXPECT_EQ(fields[6], "0") << lines[1];
  EXPECT_EQ(fields[7], "9") << lines[1];
  if (!have_gnu_parallel) return;
  // The shell that GNU parallel starts is the job it sees die.
  const std::string gnu = "cd " + shell_quote(dir.path()) +
                          " && parallel --will-cite --joblog glog " + shell_quote(script) +
                          " ::: a >/dev/null 2>&1";
  (void)std::system(gnu.c_str());
  const std::vector<std::string> gnu_lines = lines_of(read_file(dir / "glog"));
  ASSERT_EQ(gnu_lines.size(), 2U);
  const std::vector<std::string> gnu_fields = joblog_fields(gnu_lines[1]);
  ASSERT_EQ(gnu_fields.size(), 9U) << gnu_lines[1];
  EXPECT_EQ(gnu_fields[6], "0") << gnu_lines[1];
  EXPECT_EQ(gnu_fields[7], "9") << gnu_lines[1];
}

// A newline would split the record: GNU parallel writes it as a NUL (and its --retry-failed
// turns it back into a newline).
TEST(Run, JoblogWritesANewlineInACommandAsANul) {
  temp_dir dir;
  ASSERT_EQ(run_polymap({"run", "--joblog", dir / "log", "echo", ":::", "x\ny"}, dir).status, 0);
  const std::vector<std::string> lines = lines_of(read_file(dir / "log"));
  ASSERT_EQ(lines.size(), 2U) << read_file(dir / "log");
  const std::string command = std::string("echo 'x") + '\0' + "y'";
  EXPECT_TRUE(is_joblog_line(lines[1], 1, "\t" + command)) << lines[1];
  if (!have_gnu_parallel) return;
  write_file(dir / "input", std::string("x\ny") + '\0');
  const std::string gnu = "cd " + shell_quote(dir.path()) +
                          " && parallel --will-cite -0 --joblog glog -a input echo >/dev/null";
  ASSERT_EQ(std::system(gnu.c_str()), 0);
  const std::vector<std::string> gnu_lines = lines_of(read_file(dir / "glog"));
  ASSERT_EQ(gnu_lines.size(), 2U);
  EXPECT_EQ(joblog_fields(gnu_lines[1]).back(), command);
}

TEST(Run, ResultsKeepEachItemsOutput) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "--results", dir / "res", "--", "sh", "-c",
                                    "echo out $0; echo err $0 >&2", "{}", ":::", "a", "b"},
                                   dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_file(dir / "res/1/stdout"), "out a\n");
  EXPECT_EQ(read_file(dir / "res/2/stderr"), "err b\n");
  EXPECT_TRUE(r.out.empty());
}

TEST(Run, JsonEventsDescribeEachJob) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "--json", "--", "sh", "-c", "echo $0; exit $1", "{1}",
                                    "{2}", ":::", "x", ":::", "0", "2"},
                                   dir);
  EXPECT_EQ(r.status, 1);
  int ends = 0;
  bool summary = false;
  for (const std::string& line : lines_of(r.out)) {
    const nlohmann::json event = nlohmann::json::parse(line);
    if (event["event"] == "end") {
      ++ends;
      EXPECT_EQ(event["stdout"], "x\n");
      EXPECT_EQ(event["state"], event["exit"] == 0 ? "done" : "failed");
    }
    if (event["event"] == "summary") {
      summary = true;
      EXPECT_EQ(event["done"], 1);
      EXPECT_EQ(event["failed"], 1);
    }
  }
  EXPECT_EQ(ends, 2);
  EXPECT_TRUE(summary);
}

TEST(Run, ProgressDrawsCountsRateAndEtaOnATerminalOnly) {
  temp_dir dir;
  const std::vector<std::string> args = {"run", "--progress", "-j", "1", "--",  "sh",
                                         "-c",  "exit $0",    ":::", "0",  "0", "1"};
  int terminal = -1;
  int job_side = -1;
  ASSERT_EQ(openpty(&terminal, &job_side, nullptr, nullptr, nullptr), 0);
  fcntl(terminal, F_SETFD, FD_CLOEXEC);
  fcntl(job_side, F_SETFD, FD_CLOEXEC);
  cli_process p(args, dir, job_side);
  close(job_side);
  // Read until every holder of the terminal (polymap, its jobs, its guard) has closed it:
  // the read then fails with EIO. The poll bound only keeps a broken run from hanging.
  std::string drawn;
  char buffer[4096];
  for (pollfd fd{terminal, POLLIN, 0}; poll(&fd, 1, 60000) > 0;) {
    const ssize_t n = read(terminal, buffer, sizeof buffer);
    if (n <= 0) break;
    drawn.append(buffer, static_cast<std::size_t>(n));
  }
  close(terminal);
  EXPECT_EQ(p.wait(), 1);
  EXPECT_NE(drawn.find("3/3 ended: 2 done, 1 failed, 0 running, "), std::string::npos) << drawn;
  EXPECT_NE(drawn.find("/s, ETA "), std::string::npos) << drawn;
  // Not a terminal: no bar in a log file, only the failed item and the count.
  const cli_output r = run_polymap(args, dir);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err,
            "polymap: item 3 failed (exit status 1): sh -c 'exit $0' 1\n"
            "polymap: 1 of 3 items failed\n");
}

TEST(Run, ItemsComeFromStdinWithADashOrWithoutAnySource) {
  temp_dir dir;
  const std::string input = "first item\nsecond\n";
  const cli_output dash = run_polymap({"run", "-k", "-a", "-", "--", "echo", "<{}>"}, dir, input);
  ASSERT_EQ(dash.status, 0) << dash.err;
  EXPECT_EQ(dash.out, "<first item>\n<second>\n");
  const cli_output none = run_polymap({"run", "-k", "--", "echo", "[{#}]", "{}"}, dir, input);
  ASSERT_EQ(none.status, 0) << none.err;
  EXPECT_EQ(none.out, "[1] first item\n[2] second\n");
}

// `polymap run ... 2>&1 >/dev/null | head -n 1` without a journal: the jobs write their
// stderr straight to the pipe and die of SIGPIPE once head is gone; the run stops as it does
// for stdout, with 141, and no item failed.
TEST(Run, StderrToAPipeWhoseReaderHasGoneStopsTheRun) {
  temp_dir dir;
  std::vector<std::string> args = {"run", "-j", "2", "--", "sh", "-c", "echo \"$0\" >&2", ":::"};
  for (int i = 1; i <= 2000; ++i) args.push_back(std::to_string(i));
  std::string command = "{ " + polymap_command(args);
  command += " 2>&1 >/dev/null; echo $? >" + shell_quote(dir / "status");
  command += "; } | head -n 1 >" + shell_quote(dir / "first");
  ASSERT_EQ(std::system(command.c_str()), 0);
  EXPECT_FALSE(read_file(dir / "first").empty());
  EXPECT_EQ(read_file(dir / "status"), "141\n");
}

// A job that fails without writing, while polymap's stdout is a pipe whose reader is gone
// (`| grep -q`, `| true`), failed: the run goes on and says so, as GNU parallel does.
TEST(Run, JobThatFailsWhileStdoutIsAClosedPipeFailed) {
  temp_dir dir;
  const std::vector<std::string> args = {"run", "-j", "1", "--", "sh", "-c", "sleep 0.2; exit $0",
                                         ":::", "0", "3", "0"};
  std::string command = "{ " + polymap_command(args);
  command += " 2>" + shell_quote(dir / "err") + "; echo $? >" + shell_quote(dir / "status");
  command += "; } | true";
  ASSERT_EQ(std::system(command.c_str()), 0);
  EXPECT_EQ(read_file(dir / "status"), "1\n") << read_file(dir / "err");
  EXPECT_NE(read_file(dir / "err").find("item 2 failed (exit status 3)"), std::string::npos)
      << read_file(dir / "err");
}

// --halt soon lets the running jobs end as they end, and starts no retry: one that fails
// then, with retries left, is interrupted before its retry (as a retry that was waiting),
// and its output is written. Item b fails once the runner has collected a's third failure
// (whose pid a wrote: gone once collected), which started the halt.
TEST(Run, JobThatFailsDuringAHaltSoonIsInterruptedBeforeItsRetryWithItsOutput) {
  temp_dir dir;
  const std::string side = dir / "side";
  const std::string script =
      "if [ \"$0\" = a ]; then echo $$ >> \"$1\"; exit 3; fi; "
      "while [ \"$(cat \"$1\" 2>/dev/null | wc -l)\" -lt 3 ]; do sleep 0.05; done; "
      "third=$(sed -n 3p \"$1\"); "
      "for i in $(seq 1000); do kill -0 \"$third\" 2>/dev/null || break; sleep 0.01; done; "
      "echo b-out; echo b-err >&2; exit 4";
  const cli_output r = run_polymap({"run", "-k", "--halt", "soon,fail=1", "--retries", "2", "-j",
                                    "2", "--", "sh", "-c", script, "{}", side, ":::", "b", "a"},
                                   dir);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.out, "b-out\n");
  EXPECT_NE(r.err.find("b-err\n"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("item 1 failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("item 2 failed (exit status 3, after 3 attempts)"), std::string::npos)
      << r.err;
}

// The first item cannot end before the second has: -k still prints it first.
// `polymap run -k ... | head -n 1` without a journal: polymap's own write to the pipe fails
// once head is gone, and it ends as quietly as `yes | head` does, with 141.
TEST(Run, OutputToAPipeWhoseReaderHasGoneEndsQuietlyWithoutAJournal) {
  temp_dir dir;
  std::vector<std::string> args = {"run", "-k", "-j", "2", "echo", ":::"};
  for (int i = 1; i <= 2000; ++i) args.push_back(std::to_string(i));
  std::string command = "{ " + polymap_command(args);
  command += " 2>" + shell_quote(dir / "err") + "; echo $? >" + shell_quote(dir / "status");
  command += "; } | head -n 1 >" + shell_quote(dir / "first");
  ASSERT_EQ(std::system(command.c_str()), 0);
  EXPECT_EQ(read_file(dir / "first"), "1\n");
  EXPECT_EQ(read_file(dir / "status"), "141\n") << read_file(dir / "err");
  EXPECT_EQ(read_file(dir / "err"), "");
}

TEST(Run, KeepOrderHoldsBackAnItemThatEndsFirst) {
  temp_dir dir;
  const std::string script = first_waits_for_second(dir);
  const cli_output r =
      run_polymap({"run", "-k", "-j", "2", "--", "sh", "-c", script, ":::", "first", "second"},
                  dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "first\nsecond\n");
  // Without -k the output comes as the items end.
  std::filesystem::remove(dir / "second.done");
  const cli_output loose =
      run_polymap({"run", "-j", "2", "--", "sh", "-c", script, ":::", "first", "second"}, dir);
  ASSERT_EQ(loose.status, 0) << loose.err;
  EXPECT_EQ(loose.out, "second\nfirst\n");
}

/// A -k run of `slow` then `count` items of `bytes` bytes of output each: the first item
/// ends only once polymap has reaped all the others (a job's /proc entry stays until then),
/// so that -k holds all their output back (the waits give up after about a minute, so that a
/// failed item or a reused pid cannot hang the test). `extra` goes before the command.
std::vector<std::string> keep_order_behind_a_slow_item(const temp_dir& dir, int count,
                                                       std::size_t bytes,
                                                       const std::vector<std::string>& extra) {
  const std::string d = "'" + dir.path() + "/'";
  const std::string script =
      "if [ \"$0\" = slow ]; then n=0; while [ $(ls " + d + " | grep -c '[.]done$') -lt " +
      std::to_string(count) + " ] && [ $n -lt 6000 ]; do n=$((n+1)); sleep 0.01; done; "
      "for f in " + d + "*.done; do while [ -e /proc/$(cat \"$f\") ] && [ $n -lt 6000 ]; "
      "do n=$((n+1)); sleep 0.01; done; done; echo slow; "
      "echo slow-err >&2; else yes \"item $0\" | head -c " + std::to_string(bytes) +
      "; echo \"err $0\" >&2; echo $$ >" + d + "$0.pid; mv " + d + "$0.pid " + d +
      "$0.done; fi";
  std::vector<std::string> args = {"run", "-k", "-j", std::to_string(count + 1)};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"--", "sh", "-c", script, ":::", "slow"});
  for (int i = 1; i <= count; ++i) args.push_back(std::to_string(i));
  return args;
}

/// What keep_order_behind_a_slow_item prints on stdout and on stderr.
std::pair<std::string, std::string> keep_order_output(int count, std::size_t bytes) {
  std::string out = "slow\n";
  std::string err = "slow-err\n";
  for (int i = 1; i <= count; ++i) {
    const std::string line = "item " + std::to_string(i) + "\n";
    std::string item;
    while (item.size() < bytes) item += line;
    item.resize(bytes);
    out += item;
    err += "err " + std::to_string(i) + "\n";
  }
  return {out, err};
}

// Eight outputs of 20 MB that end before the first item wait on disk, not in polymap's
// memory, and come out whole and in order.
TEST(Run, KeepOrderHoldsLargeOutputsOutOfMemory) {
  temp_dir dir;
  temp_dir spool_dir;
  constexpr int count = 8;
  constexpr std::size_t bytes = 20'000'000;
  cli_process p(keep_order_behind_a_slow_item(dir, count, bytes, {}), dir, -1, "/dev/null",
                {"TMPDIR=" + spool_dir.path()});
  rusage usage{};
  const int status = p.wait(usage);
  const std::string err = p.err();
  ASSERT_EQ(status, 0) << err;
  const auto [out_expected, err_expected] = keep_order_output(count, bytes);
  const std::string out = p.out();
  EXPECT_EQ(out.size(), out_expected.size());
  EXPECT_TRUE(out == out_expected) << "the output differs from what the items printed";
  EXPECT_EQ(err, err_expected);
  // Held in memory, the outputs alone would take 160 MB; polymap itself takes about 10.
  EXPECT_LT(usage.ru_maxrss, 64 * 1024) << "peak RSS in KiB";
  // The temporary file had no name.
  EXPECT_TRUE(std::filesystem::is_empty(spool_dir.path()));
}

// The same into a pipe, which polymap writes without waiting (a descriptor of its own,
// sendfile for the captures): what was held on disk comes out whole and in order. The
// reader lags, as a pager or a network copy does, so that the end of each piece is still in
// the pipe when polymap gives the piece's space back (a hole punched in the file, whose
// partial pages are zeroed in place): a piece sent with sendfile, which puts references to
// the file's pages into the pipe, would reach the reader with zeros at its ends.
TEST(Run, KeepOrderHoldsLargeOutputsOutOfMemoryAndWritesThemWholeIntoAPipe) {
  temp_dir dir;
  temp_dir spool_dir;
  constexpr int count = 6;
  constexpr std::size_t bytes = 5'000'000;
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  cli_process p(keep_order_behind_a_slow_item(dir, count, bytes, {}), dir, -1, "/dev/null",
                {"TMPDIR=" + spool_dir.path()}, fds[1]);
  close(fds[1]);
  const auto [out_expected, err_expected] = keep_order_output(count, bytes);
  std::string out;
  char buffer[65536];
  while (out.size() < out_expected.size()) {
    const ssize_t n = read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  close(fds[0]);
  ASSERT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(out.size(), out_expected.size());
  const auto differs = std::mismatch(out.begin(), out.end(), out_expected.begin(),
                                     out_expected.end());
  EXPECT_TRUE(differs.first == out.end())
      << "the output differs from what the items printed at byte " << (differs.first - out.begin());
}

// The temporary file of -k is made only when output has to wait on disk: with a $TMPDIR
// that cannot be used, a run whose held-back output fits in memory does not notice.
TEST(Run, KeepOrderWithATempDirThatCannotBeUsedRunsWhenTheOutputFitsInMemory) {
  temp_dir dir;
  cli_process p({"run", "-k", "-j", "2", "--", "sh", "-c", first_waits_for_second(dir),
                 ":::", "first", "second"},
                dir, -1, "/dev/null", {"TMPDIR=" + (dir / "no-such-dir")});
  EXPECT_EQ(p.wait(), 0) << p.err();
  EXPECT_EQ(p.out(), "first\nsecond\n");
  EXPECT_EQ(p.err(), "");
}

// Output that would wait on disk stays in memory when the file cannot be made there, with
// a warning naming the directory: it comes out whole and in order.
TEST(Run, KeepOrderWithATempDirThatCannotBeUsedHoldsTheOutputInMemory) {
  temp_dir dir;
  const std::string missing = dir / "no-such-dir";
  constexpr int count = 3;
  constexpr std::size_t bytes = 3'000'000;
  cli_process p(keep_order_behind_a_slow_item(dir, count, bytes, {}), dir, -1, "/dev/null",
                {"TMPDIR=" + missing});
  const int status = p.wait();
  const std::string err = p.err();
  ASSERT_EQ(status, 0) << err;
  const auto [out_expected, err_expected] = keep_order_output(count, bytes);
  const std::string out = p.out();
  EXPECT_EQ(out.size(), out_expected.size());
  EXPECT_TRUE(out == out_expected) << "the output differs from what the items printed";
  const std::string warning =
      "polymap: warning: cannot create a temporary file for the output "
      "that -k/--keep-order holds back in '" +
      missing +
      "' ($TMPDIR, else /tmp): No such file or directory; holding it in "
      "memory\n";
  EXPECT_EQ(err.find(warning), 0U) << err;
  EXPECT_EQ(err.substr(std::min(err.size(), warning.size())), err_expected);
}

// When the temporary file cannot take held-back output (here a file size limit of 1 MiB,
// standing for a full disk), it is held in memory: the output is whole and in order.
TEST(Run, KeepOrderKeepsHeldOutputInMemoryWhenTheTempFileIsFull) {
  temp_dir dir;
  temp_dir spool_dir;
  constexpr int count = 3;
  constexpr std::size_t bytes = 3'000'000;
  // The jobs lift the limit for themselves; polymap's stdout is a pipe, which it does not
  // limit.
  std::vector<std::string> args = keep_order_behind_a_slow_item(dir, count, bytes, {});
  for (std::string& arg : args) {
    if (arg.rfind("if [", 0) == 0) arg = "ulimit -S -f unlimited; " + arg;
  }
  const std::string command = "(ulimit -S -f 1024; TMPDIR=" + shell_quote(spool_dir.path()) +
                              " exec " + polymap_command(args) + " 2>" + shell_quote(dir / "err") +
                              ") | cat >" + shell_quote(dir / "out");
  ASSERT_EQ(std::system(command.c_str()), 0) << read_file(dir / "err");
  const auto [out_expected, err_expected] = keep_order_output(count, bytes);
  const std::string out = read_file(dir / "out");
  EXPECT_EQ(out.size(), out_expected.size());
  EXPECT_TRUE(out == out_expected) << "the output differs from what the items printed";
  const std::string err = read_file(dir / "err");
  const std::string warning = "polymap: warning: cannot write the output that -k/--keep-order "
                              "holds back to a temporary file in '" +
                              spool_dir.path() + "': File too large; holding it in memory\n";
  EXPECT_EQ(err.find(warning), 0U) << err;
  EXPECT_EQ(err.substr(std::min(err.size(), warning.size())), err_expected);
}

TEST(Run, BindPinsEachSlotToItsOwnCpu) {
  temp_dir dir;
  const cli_output r =
      run_polymap({"run", "-k", "-j", "2", "--bind", "pu", "--", "sh", "-c",
                   "echo {%} $(grep Cpus_allowed_list: /proc/self/status | cut -f2)", ":::", "a",
                   "b"},
                  dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::vector<std::string> out = lines_of(r.out);
  ASSERT_EQ(out.size(), 2U) << r.out;
  std::map<std::string, std::string> cpus_of_slot;
  for (const std::string& line : out) {
    const std::size_t space = line.find(' ');
    ASSERT_NE(space, std::string::npos) << line;
    const std::string cpus = line.substr(space + 1);
    ASSERT_FALSE(cpus.empty()) << line;
    EXPECT_EQ(cpus.find_first_not_of("0123456789"), std::string::npos) << "not one CPU: " << line;
    cpus_of_slot[line.substr(0, space)] = cpus;
  }
  // Both items start at once, one in each slot: with two CPUs or more, each has its own.
  ASSERT_EQ(cpus_of_slot.size(), 2U) << r.out;
  cpu_set_t mine;
  CPU_ZERO(&mine);
  ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
  if (CPU_COUNT(&mine) >= 2) {
    EXPECT_NE(cpus_of_slot["1"], cpus_of_slot["2"]) << r.out;
  }
}

TEST(Run, EveryBindPolicyNarrowsOrKeepsTheJobsCpus) {
  std::ifstream self("/proc/self/status");
  std::string own;
  for (std::string line; std::getline(self, line);) {
    if (line.rfind("Cpus_allowed_list:", 0) == 0) own = line.substr(line.find('\t') + 1);
  }
  for (const char* policy : {"none", "core", "numa", "package"}) {
    SCOPED_TRACE(policy);
    temp_dir dir;
    const cli_output r =
        run_polymap({"run", "-k", "-j", "2", "--bind", policy, "--", "sh", "-c",
                     "echo {%} $(grep Cpus_allowed_list: /proc/self/status | cut -f2)", ":::",
                     "a", "b"},
                    dir);
    ASSERT_EQ(r.status, 0) << r.err;
    const std::vector<std::string> out = lines_of(r.out);
    ASSERT_EQ(out.size(), 2U) << r.out;
    std::map<std::string, std::string> cpus_of_slot;
    for (const std::string& line : out) {
      const std::size_t space = line.find(' ');
      ASSERT_NE(space, std::string::npos) << line;
      const std::string cpus = line.substr(space + 1);
      ASSERT_FALSE(cpus.empty()) << line;
      EXPECT_EQ(cpus.find_first_not_of("0123456789,-"), std::string::npos) << line;
      cpus_of_slot[line.substr(0, space)] = cpus;
      // Without binding a job keeps the runner's CPUs.
      if (std::string(policy) == "none") {
        EXPECT_EQ(cpus, own) << line;
      }
    }
    if (std::string(policy) == "core" && cpus_of_slot.size() == 2 &&
        sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
      EXPECT_NE(cpus_of_slot["1"], cpus_of_slot["2"]) << r.out;
    }
  }
}

/// The largest {%} of a run with `jobs` (-j's words) over `items` items: its job slots.
std::size_t slots_of_a_run(const std::vector<std::string>& jobs, int items) {
  temp_dir dir;
  std::vector<std::string> args = {"run"};
  args.insert(args.end(), jobs.begin(), jobs.end());
  for (const char* word : {"--", "sh", "-c", "echo $1; sleep 0.2", "sh", "{%}", ":::"}) {
    args.emplace_back(word);
  }
  for (int i = 0; i < items; ++i) args.push_back(std::to_string(i));
  const cli_output r = run_polymap(args, dir);
  EXPECT_EQ(r.status, 0) << r.err;
  std::size_t most = 0;
  for (const std::string& line : polymap::test::lines_of(r.out)) {
    most = std::max<std::size_t>(most, std::stoul(line));
  }
  return most;
}

// A count that is not a whole number is refused as such, not as "not in range" of a value
// that is in it (1e2 is 100); nor is 0x5 read as 5.
TEST(Run, CountsMustBeWholeNumbers) {
  temp_dir dir;
  for (const char* value : {"1e2", "0x5", "1.5", "", "+"}) {
    const cli_output r =
        run_polymap({"run", "--retries", value, "--dry-run", "echo", ":::", "a"}, dir);
    EXPECT_EQ(r.status, 2) << value;
    EXPECT_NE(r.err.find("is not a whole number from 0 to 1000"), std::string::npos) << r.err;
  }
  const cli_output nice =
      run_polymap({"run", "--nice", "-21", "--dry-run", "echo", ":::", "a"}, dir);
  EXPECT_NE(nice.err.find("'-21' is not a whole number from -20 to 19"), std::string::npos)
      << nice.err;
  EXPECT_EQ(run_polymap({"run", "--retries", "+3", "--nice", "-5", "--dry-run", "echo", ":::", "a"},
                        dir)
                .status,
            0);
}

TEST(Run, JobsTakeGnuParallelsRelativeForms) {
  temp_dir dir;
  const cli_output info = run_polymap({"info", "--json"}, dir);
  const std::size_t usable = nlohmann::json::parse(info.out)["topology"]["usable_count"];
  const int items = static_cast<int>(usable) + 3;
  EXPECT_EQ(slots_of_a_run({"-j", "+1"}, items), usable + 1);
  EXPECT_EQ(slots_of_a_run({"-j", "-1"}, items), std::max<std::size_t>(1, usable - 1));
  EXPECT_EQ(slots_of_a_run({"-j", "50%"}, items), std::max<std::size_t>(1, usable / 2));
  EXPECT_EQ(slots_of_a_run({"-j", "200%"}, 2 * items), 2 * usable);
  // An option given twice takes its last value.
  EXPECT_EQ(slots_of_a_run({"-j", "3", "-j", "1"}, items), 1U);
  for (const char* bad : {"0", "+", "1.5", "5x", "%", "-", "100001"}) {
    const cli_output r = run_polymap({"run", "-j", bad, "--", "true", ":::", "a"}, dir);
    EXPECT_EQ(r.status, 2) << bad;
    EXPECT_NE(r.err.find("is no job count"), std::string::npos) << r.err;
  }
}

TEST(Run, NiceSetsTheJobsNiceValue) {
  temp_dir dir;
  // Field 19 of /proc/self/stat is the nice value (the command name has no space here).
  const cli_output r = run_polymap(
      {"run", "--nice", "7", "--", "sh", "-c", "cut -d' ' -f19 /proc/$$/stat", ":::", "a"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "7\n");
}

TEST(Run, ANiceTheSystemRefusesIsSaidOnce) {
  // Without CAP_SYS_NICE (setpriv takes it away from root too), a nice below polymap's own
  // is refused: the jobs run, at polymap's nice, and the run says so.
  if (std::system("setpriv --version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no setpriv";
  temp_dir dir;
  errno = 0;
  const int own = getpriority(PRIO_PROCESS, 0);
  if (own <= -20) GTEST_SKIP() << "polymap runs at the lowest nice already";
  std::string command = "setpriv --inh-caps=-sys_nice --bounding-set=-sys_nice -- ";
  command += polymap::test::polymap_command(
      {"run", "-k", "--nice", std::to_string(own - 1), "--", "sh", "-c",
       "cut -d' ' -f19 /proc/$$/stat", ":::", "a", "b", "c"});
  command += " >" + shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  const int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  const std::string err = polymap::test::read_file(dir / "err");
  if (err.find("setpriv:") != std::string::npos) GTEST_SKIP() << err;
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  const std::string nice = std::to_string(own);
  EXPECT_EQ(polymap::test::read_file(dir / "out"), nice + "\n" + nice + "\n" + nice + "\n");
  const std::string warning = "polymap: warning: --nice " + std::to_string(own - 1) +
                              " was refused (Permission denied): jobs run at nice " + nice;
  EXPECT_NE(err.find(warning), std::string::npos) << err;
  EXPECT_EQ(err.find(warning), err.rfind(warning)) << "said more than once: " << err;
}

/// Sends `sig` to a runner while three jobs, each with a child of its own, run: polymap
/// exits 128 + `sig` and no job or child of one is left a second later.
void expect_stop_signal_ends_every_job(int sig) {
  temp_dir dir;
  const std::string marker = dir / "stop";
  // The job's $0 is "<marker>.job", a string that polymap's own argv does not contain; its
  // child shell carries it too, so that grandchildren are checked as well.
  cli_process p({"run", "-j", "3", "--", "sh", "-c", "sh -c 'sleep 60; :' \"$0\"; :", "{2}.job",
                 ":::", "1", "2", "3", "4", ":::", marker},
                dir);
  ASSERT_TRUE(polymap::test::wait_for_processes(marker + ".job", 6, 60)) << p.err();
  p.signal(sig);
  EXPECT_EQ(p.wait(), 128 + sig);
  EXPECT_TRUE(polymap::test::survivors_after(marker + ".job", 1.0).empty());
}

/// The state letter of process `pid` ('T' when stopped), '?' when it is gone.
char process_state(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const std::size_t comm_end = stat.rfind(')');
  return comm_end == std::string::npos || comm_end + 2 >= stat.size() ? '?' : stat[comm_end + 2];
}

/// Waits up to `seconds` for `done()`.
template <class Done>
bool within(double seconds, Done done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

TEST(Run, CtrlZStopsTheJobsWithTheRunAndTheContinueContinuesThem) {
  // The jobs are in sessions of their own, out of the terminal's reach: polymap stops them.
  temp_dir dir;
  const std::string ticks = dir / "ticks";
  cli_process p({"run", "-j", "2", "--timeout", "30", "--", "sh", "-c",
                 "while :; do echo x >> \"$0.$1\"; sleep 0.02; done", ticks, "{}", ":::", "a",
                 "b"},
                dir);
  const auto size = [&] { return read_file(ticks + ".a").size() + read_file(ticks + ".b").size(); };
  ASSERT_TRUE(within(30, [&] { return size() > 0; })) << p.err();
  p.signal(SIGTSTP);
  ASSERT_TRUE(within(30, [&] { return process_state(p.pid()) == 'T'; })) << p.err();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // a write under way ends
  const std::size_t stopped_at = size();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(size(), stopped_at) << "a job ran on while polymap was stopped";
  p.signal(SIGCONT);
  EXPECT_TRUE(within(30, [&] { return size() > stopped_at; })) << "the jobs were not continued";
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait(), 128 + SIGTERM) << p.err();
}

TEST(Run, SigtermTerminatesEveryJobAndExits143) { expect_stop_signal_ends_every_job(SIGTERM); }

TEST(Run, SigintTerminatesEveryJobAndExits130) { expect_stop_signal_ends_every_job(SIGINT); }

// A hangup (the terminal closed) stops the batch as SIGTERM does: nothing is left running
// and unrecorded, and the exit status says that it did not all run.
TEST(Run, SighupTerminatesEveryJobAndExits129) { expect_stop_signal_ends_every_job(SIGHUP); }

/// Waits up to 60 s for `p`'s stdout to hold `text`.
bool wait_for_output(const cli_process& p, const std::string& text) {
  for (int i = 0; i < 3000; ++i) {
    if (p.out().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// A job's child that ignores SIGTERM gets the SIGKILL that follows it, even once the job's
// first process has died of the SIGTERM and been reaped (--timeout here; a stop alike).
TEST(Run, ChildThatIgnoresSigtermOfATimedOutJobIsKilled) {
  temp_dir dir;
  const std::string script =
      "sh -c 'trap \"\" TERM; exec sleep 300' & echo $! > \"$0\"; sleep 200; true";
  cli_process p({"run", "--timeout", "1", "--", "sh", "-c", script, dir / "child", ":::", "x"},
                dir);
  std::string child_text;
  for (int tries = 0; tries < 1500 && child_text.empty(); ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    child_text = read_file(dir / "child");
  }
  const pid_t child = std::atoi(child_text.c_str());
  ASSERT_GT(child, 0);
  EXPECT_EQ(p.wait(), 1) << p.err();
  const bool killed = ended_within(child, 10);
  if (!killed) kill(child, SIGKILL);
  EXPECT_TRUE(killed) << "the child that ignores SIGTERM outlived polymap";
}

TEST(Run, SignalWhileARetryWaitsEndsTheItemInterrupted) {
  temp_dir dir;
  // Each attempt fails at once and the next waits 0.1 s, 0.2 s, 0.4 s...: a signal after the
  // second start comes while the item waits for a retry or runs one; either way it ends.
  cli_process p({"run", "--retries", "10", "--json", "--", "sh", "-c", "exit 3", ":::", "a"}, dir);
  ASSERT_TRUE(wait_for_output(p, "\"attempt\":2")) << p.err();
  p.signal(SIGHUP);
  EXPECT_EQ(p.wait(), 128 + SIGHUP) << p.err();
  const std::vector<std::string> lines = lines_of(p.out());
  ASSERT_GE(lines.size(), 2U) << p.out();
  const nlohmann::json end = nlohmann::json::parse(lines[lines.size() - 2]);
  EXPECT_EQ(end["event"], "end") << p.out();
  EXPECT_EQ(end["state"], "interrupted") << p.out();
  const nlohmann::json summary = nlohmann::json::parse(lines.back());
  EXPECT_EQ(summary["event"], "summary");
  EXPECT_EQ(summary["done"], 0);
  EXPECT_EQ(summary["failed"], 0);
  EXPECT_EQ(summary["interrupted"], 1);
  EXPECT_EQ(summary["signal"], SIGHUP);
}

TEST(Run, DoubleDashAfterTheCommandStartsBelongsToTheCommand) {
  temp_dir dir;
  cli_output r = run_polymap({"run", "-k", "echo", "--", "{}", ":::", "a", "-n"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "-- a\n-- -n\n");
  r = run_polymap({"run", "--dry-run", "ls", "-l", "--", "{}", ":::", "-a"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "ls -l -- -a\n");
  r = run_polymap({"run", "-k", "echo", ":::", "a", "--", "b"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "a\n--\nb\n");
  // Only the first `--`, before the command, ends polymap's options.
  r = run_polymap({"run", "-k", "-j", "2", "--", "echo", "--", "{}", ":::", "x"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "-- x\n");
}

TEST(Run, UnknownOptionBeforeTheCommandIsAUsageErrorNamingIt) {
  temp_dir dir;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"run", "--dryrun", "--", "echo", ":::", "a"},
        std::vector<std::string>{"run", "-kx", "echo", ":::", "a"},
        std::vector<std::string>{"run", "-k", "--no-such", "echo", ":::", "a"}}) {
    const cli_output r = run_polymap(args, dir);
    EXPECT_EQ(r.status, 2) << args[1];
    EXPECT_NE(r.err.find("unknown option"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(args[1] == "-k"    ? "--no-such"
                         : args[1] == "-kx" ? "-x"
                                            : "--dryrun"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(r.out, "");
  }
  // Known options in every form still reach polymap: grouped, attached and `=` values.
  const cli_output r =
      run_polymap({"run", "-kj2", "--nice=3", "--dry-run", "echo", "-n", ":::", "a"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "echo -n a\n");
}

TEST(Run, ResultsPathThatIsNotADirectoryFailsBeforeAnyItemRuns) {
  temp_dir dir;
  write_file(dir / "notadir", "kept\n");
  const cli_output r = run_polymap({"run", "--results", dir / "notadir", "--", "sh", "-c",
                                    "echo ran >> \"$0\"", dir / "side", ":::", "a", "b"},
                                   dir);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(dir / "notadir"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not a directory"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "side"));
  EXPECT_EQ(read_file(dir / "notadir"), "kept\n");
}

TEST(Run, ResultsDirectoryThatCannotBeWrittenFailsBeforeAnyItemRuns) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes in a directory whatever its mode";
  temp_dir dir;
  std::filesystem::create_directory(dir / "res");
  std::filesystem::permissions(dir / "res", std::filesystem::perms::owner_read |
                                                std::filesystem::perms::owner_exec);
  const cli_output r = run_polymap({"run", "--results", dir / "res", "--", "sh", "-c",
                                    "echo ran >> \"$0\"", dir / "side", ":::", "a"},
                                   dir);
  std::filesystem::permissions(dir / "res", std::filesystem::perms::owner_all);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("cannot write in --results directory"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "side"));
}

// A --results folder whose modes let root write, but where no folder can be made (/proc),
// fails before any item runs too: a folder is made there to see.
TEST(Run, ResultsDirectoryWhereNoFolderCanBeMadeFailsBeforeAnyItemRuns) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "--results", "/proc", "--", "sh", "-c",
                                    "echo ran >> \"$0\"", dir / "side", ":::", "a"},
                                   dir);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("--results directory '/proc'"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "side"));
}

// An error said to a stderr that cannot be written (full, closed) loses the message, not
// the exit status: polymap aborted (134) when its error message could not be written.
TEST(Run, AnErrorToAStderrThatCannotBeWrittenKeepsItsExitStatus) {
  const std::string polymap = shell_quote(POLYMAP_CLI_PATH);
  const auto status_of = [](const std::string& command) {
    const int raw = std::system(command.c_str());
    return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  };
  EXPECT_EQ(status_of(polymap + " run --bogus echo ::: a 2>/dev/full"), 2);
  EXPECT_EQ(status_of(polymap + " run --bogus echo ::: a 2>&-"), 2);
  EXPECT_EQ(status_of(polymap + " run echo {0} ::: a 2>/dev/full"), 2);
  EXPECT_EQ(status_of(polymap + " status --journal /nonexistent/j.db 2>/dev/full"), 1);
  EXPECT_EQ(status_of(polymap + " info >/dev/full 2>&1"), 1);
}

TEST(Run, ResultsFileThatCannotBeWrittenIsAnErrorNamingIt) {
  temp_dir dir;
  // A file size limit stands for a full disk: polymap may write 1000 blocks, the job (which
  // lifts its own limit) prints 4 MB. polymap ignores SIGXFSZ: the write fails with EFBIG.
  const int status = run_polymap_on_a_full_disk(
      {"run", "-j", "1", "--results", dir / "res", "--", "sh", "-c",
       "ulimit -f unlimited; head -c \"$1\" /dev/zero", "sh", ":::", "10", "4000000", "20"},
      1000, dir / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  const std::string err = read_file(dir / "err");
  EXPECT_NE(err.find("cannot write --results file '" + (dir / "res/2/stdout") + "'"),
            std::string::npos)
      << err;
  EXPECT_EQ(read_file(dir / "res/1/stdout").size(), 10U);
  // No half file: the item's output is whole or not there at all.
  EXPECT_FALSE(std::filesystem::exists(dir / "res/2/stdout"));
  EXPECT_FALSE(std::filesystem::exists(dir / "res/3"));  // nothing started after the failure
}

TEST(Run, OverflowingColumnNumberIsAUsageErrorNamingThePlaceholder) {
  temp_dir dir;
  const cli_output r =
      run_polymap({"run", "--", "echo", "{99999999999999999999999}", ":::", "a"}, dir);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("{99999999999999999999999}"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(Run, TooLargeCartesianProductIsAUsageError) {
  temp_dir dir;
  // 2^64 items wrap to 0 in a 64-bit count; 2^40 cannot be held.
  for (int sources : {64, 40}) {
    std::vector<std::string> args = {"run", "--", "echo"};
    for (int s = 0; s < sources; ++s) args.insert(args.end(), {":::", "a", "b"});
    const cli_output r = run_polymap(args, dir);
    EXPECT_EQ(r.status, 2) << sources;
    std::string says = "the ";
    says += std::to_string(sources);
    says += " input sources combine into more than";
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST(Run, ItemsAreMadeAsTheyRunNotHeldAsAProductOfTheSources) {
  // Two sources of 5000 lines: 25 million items, of which the first fails and halts the run.
  // Each item held in memory took about 160 bytes (some 4 GB here).
  temp_dir dir;
  std::string lines;
  for (int i = 0; i < 5000; ++i) lines += std::to_string(i) + "\n";
  write_file(dir / "values", lines);
  cli_process p({"run", "-j", "1", "--halt", "now,fail=1", "--", "false", "::::",
                 dir / "values", "::::", dir / "values"},
                dir);
  rusage usage{};
  EXPECT_EQ(p.wait(usage), 1) << p.err();
  EXPECT_NE(p.err().find("item 1 failed"), std::string::npos) << p.err();
  EXPECT_LT(usage.ru_maxrss, 256 * 1024) << "peak RSS in KiB";
}

TEST(Run, PlaceholderInsideOtherBracesIsReplaced) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "-k", "--", "printf", "%s|", "BEGIN{print \"got {}\"}",
                                    "a{{}}b", "${HOME}", "{print $1}", "{x{1}", ":::", "v"},
                                   dir);
  ASSERT_EQ(r.status, 0) << r.err;
  // Replaced wherever it stands; other braces stay text, and nothing is appended.
  EXPECT_EQ(r.out, "BEGIN{print \"got v\"}|a{v}b|${HOME}|{print $1}|{xv|");
}

// polymap ignores SIGXFSZ while it runs a batch (a write of its own past `ulimit -f` fails
// and is handled), but its jobs start with the default, as from a shell: a job that writes
// past the limit dies of SIGXFSZ, and the item fails saying so.
TEST(Run, JobPastTheFileSizeLimitDiesOfSigxfszAsFromAShell) {
  temp_dir dir;
  const std::vector<std::string> args{
      "run", "--", "sh", "-c", "exec head -c 300000 /dev/zero > \"$1\"", "sh", ":::", dir / "big"};
  std::string command = "ulimit -S -f 100; exec " + polymap_command(args);
  command += " >" + shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  const int status = std::system(command.c_str());
  const std::string err = read_file(dir / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_NE(err.find("item 1 failed (killed by signal SIGXFSZ)"), std::string::npos) << err;
}

TEST(Run, AnOpenFileLimitTooLowForTheOrphanGuardIsNamed) {
  temp_dir dir;
  // The redirections first: the shell itself needs descriptors above 8 for them.
  std::string command = "exec >" + shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err");
  command += "; ulimit -n 8; exec " + polymap_command({"run", "--", "true", ":::", "a"});
  const int status = std::system(command.c_str());
  const std::string err = read_file(dir / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << err;
  EXPECT_NE(err.find("ulimit -n 8"), std::string::npos) << err;
  EXPECT_EQ(err.find("polymap: polymap:"), std::string::npos) << err;
  EXPECT_EQ(err.find("timed out"), std::string::npos) << err;
}

/// Runs 30 items under `-j 100` and `option` (-k or --json: each job's output captured in two
/// descriptors) with an open-file limit of 40, which 100 jobs cannot fit in, and the shell's
/// `redirect`ions. @return std::system's status
int run_jobs_above_the_open_file_limit(const std::string& option, const std::string& redirect) {
  std::vector<std::string> args{
      "run", option, "-j", "100", "--", "sh", "-c", "sleep 0.05; echo \"$1\"", "sh", ":::"};
  for (int i = 1; i <= 30; ++i) args.push_back(std::to_string(i));
  const std::string command = "ulimit -n 40; exec " + polymap_command(args) + redirect;
  return std::system(command.c_str());
}

TEST(Run, JobsAboveTheOpenFileLimitAreLoweredWithAWarning) {
  temp_dir dir;
  const int status = run_jobs_above_the_open_file_limit(
      "-k", " >" + shell_quote(dir / "out") + " 2>" + shell_quote(dir / "err"));
  const std::string err = read_file(dir / "err");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  std::vector<std::string> expected;
  for (int i = 1; i <= 30; ++i) expected.push_back(std::to_string(i));
  EXPECT_EQ(lines_of(read_file(dir / "out")), expected);
  EXPECT_NE(err.find("warning: -j 100"), std::string::npos) << err;
  EXPECT_NE(err.find("ulimit -n 40"), std::string::npos) << err;
  EXPECT_EQ(err.find("Too many open files"), std::string::npos) << err;
}

// With --json and a stderr that cannot take the warning (a pipe whose reader has gone), the
// warning is an event on stdout: said somewhere, and the run goes on.
TEST(Run, WarningThatStderrCannotTakeIsAJsonEventOnStdout) {
  temp_dir dir;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);  // inherited by the shell: its stderr
  close(fds[0]);
  const int status = run_jobs_above_the_open_file_limit(
      "--json", " >" + shell_quote(dir / "out") + " 2>&" + std::to_string(fds[1]));
  close(fds[1]);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const std::vector<std::string> lines = lines_of(read_file(dir / "out"));
  ASSERT_FALSE(lines.empty());
  const nlohmann::json first = nlohmann::json::parse(lines.front(), nullptr, false);
  EXPECT_EQ(first.value("event", ""), "warning") << lines.front();
  EXPECT_NE(first.value("message", "").find("ulimit -n 40"), std::string::npos) << lines.front();
  EXPECT_EQ(nlohmann::json::parse(lines.back(), nullptr, false).value("done", 0), 30);
}

// With --json 2>&1 the warning is an event among the JSON lines, not a line of text.
TEST(Run, JobsLoweredToTheOpenFileLimitKeepJsonLinesWithAWarningEvent) {
  temp_dir dir;
  const int status =
      run_jobs_above_the_open_file_limit("--json", " >" + shell_quote(dir / "both") + " 2>&1");
  const std::vector<std::string> lines = lines_of(read_file(dir / "both"));
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  const nlohmann::json first = nlohmann::json::parse(lines.front(), nullptr, false);
  EXPECT_EQ(first.value("event", ""), "warning") << lines.front();
  EXPECT_NE(first.value("message", "").find("ulimit -n 40"), std::string::npos) << lines.front();
}

/// A job that cleans up on SIGTERM and then exits 0, as a script with `trap '...; exit' TERM`
/// does: it says "trapping" once its trap is set, then runs for up to a minute.
const std::string exits_zero_on_sigterm =
    "trap 'exit 0' TERM; echo trapping; i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); "
    "done";

TEST(Run, TimedOutJobThatExitsZeroOnSigtermStillFails) {
  temp_dir dir;
  const cli_output r = run_polymap({"run", "--timeout", "0.5", "--joblog", dir / "log", "--",
                                    "sh", "-c", exits_zero_on_sigterm, ":::", "a"},
                                   dir);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("polymap: item 1 failed (timed out after 0.5 s)"), std::string::npos)
      << r.err;
  // Not a success in the joblog either: `parallel --resume-failed` runs it again.
  const std::vector<std::string> log = lines_of(read_file(dir / "log"));
  ASSERT_EQ(log.size(), 2U);
  EXPECT_NE(log[1].find("\t-1\t0\tsh -c"), std::string::npos) << log[1];
}

TEST(Run, HaltNowRecordsAStoppedJobThatExitsZeroAsInterrupted) {
  temp_dir dir;
  // Item "fail" fails once item "trap" runs with its trap set: --halt now stops "trap", which
  // exits 0 on the SIGTERM without having done its work.
  const std::string script =
      "if [ \"$0\" = fail ]; then i=0; while [ ! -s \"$1\" ] && [ $i -lt 600 ]; do sleep 0.05; "
      "i=$((i+1)); done; exit 3; fi; exec > \"$1\"; " +
      exits_zero_on_sigterm;
  const cli_output r =
      run_polymap({"run", "-j", "2", "--json", "--halt", "now,fail=1", "--", "sh", "-c", script,
                   "{}", dir / "trapping", ":::", "trap", "fail"},
                  dir);
  EXPECT_EQ(r.status, 1) << r.err;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_FALSE(lines.empty());
  const nlohmann::json summary = nlohmann::json::parse(lines.back());
  EXPECT_EQ(summary["done"], 0) << r.out;
  EXPECT_EQ(summary["failed"], 1) << r.out;
  EXPECT_EQ(summary["interrupted"], 1) << r.out;
}

TEST(Run, ResultsWriteRemovesTempFilesThatAKilledRunLeft) {
  temp_dir dir;
  // What a runner killed (kill -9) while it wrote item 1's files leaves behind.
  std::filesystem::create_directories(dir / "res/1");
  write_file(dir / "res/1/.stdout.tmp.999999999", "half");
  write_file(dir / "res/1/.stderr.tmp.999999998", "half");
  write_file(dir / "res/1/notes", "the user's");
  const cli_output r = run_polymap({"run", "--results", dir / "res", "echo", ":::", "a"}, dir);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_file(dir / "res/1/stdout"), "a\n");
  EXPECT_FALSE(std::filesystem::exists(dir / "res/1/.stdout.tmp.999999999"));
  EXPECT_FALSE(std::filesystem::exists(dir / "res/1/.stderr.tmp.999999998"));
  EXPECT_EQ(read_file(dir / "res/1/notes"), "the user's");
}

TEST(Run, JsonLinesStayJsonWhenAnItemCannotRunOrTheRunHalts) {
  temp_dir dir;
  // 2>&1: the "cannot run" line and the --halt notice would break the JSON lines; the end
  // events (with their reason) and the summary (with "halted") say it.
  const auto all_json = [&](const std::vector<std::string>& args, int expected_status) {
    std::string command = polymap_command(args);
    command += " >" + shell_quote(dir / "both") + " 2>&1";
    EXPECT_EQ(WEXITSTATUS(std::system(command.c_str())), expected_status);
    const std::vector<std::string> lines = lines_of(read_file(dir / "both"));
    EXPECT_FALSE(lines.empty());
    for (const std::string& line : lines) {
      EXPECT_TRUE(nlohmann::json::accept(line)) << line;
    }
    return lines.empty() ? nlohmann::json() : nlohmann::json::parse(lines.back());
  };
  EXPECT_EQ(all_json({"run", "--json", "--", "polymap-no-such-command", ":::", "a"}, 1)["failed"],
            1);
  EXPECT_EQ(all_json({"run", "-j", "1", "--json", "--halt", "1", "--", "sh", "-c", "exit $0",
                      ":::", "1", "0"},
                     1)["halted"],
            true);
}

TEST(Run, LinkedInputSourcesAreAUsageError) {
  temp_dir dir;
  write_file(dir / "values", "1\n2\n");
  for (const std::string word : {":::+", "::::+"}) {
    const std::string values = word == ":::+" ? "1" : dir / "values";
    const cli_output r =
        run_polymap({"run", "-k", "echo", "{1}", ":::", "a", "b", word, values}, dir);
    EXPECT_EQ(r.status, 2) << word;
    EXPECT_NE(r.err.find(word + " (linked"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("not supported"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

// --- Streams that do not take output at once -------------------------------------------
// polymap writes to a pipe, socket or terminal without waiting in write(): while one does
// not take what it writes, a signal, --timeout and the journal's lease still act.

/// A command whose job (a shell, and its `sleep 60` child) carries `marker` in its argv.
std::vector<std::string> sleeping_jobs(const std::string& marker, std::vector<std::string> run) {
  run.insert(run.end(), {"-j", "2", "--", "sh", "-c", "sleep 60; :", marker, ":::", "1", "2"});
  return run;
}

// A terminal paused with Ctrl-S takes nothing: SIGTERM still stops a run whose --progress
// bar waits for it (the draw used to wait in write() until the terminal went on).
TEST(Run, SigtermStopsARunWhoseProgressWaitsForAPausedTerminal) {
  temp_dir dir;
  int terminal = -1;
  int job_side = -1;
  ASSERT_EQ(openpty(&terminal, &job_side, nullptr, nullptr, nullptr), 0);
  fcntl(terminal, F_SETFD, FD_CLOEXEC);
  fcntl(job_side, F_SETFD, FD_CLOEXEC);
  ASSERT_EQ(tcflow(job_side, TCOOFF), 0);
  const std::string marker = dir / "paused";
  cli_process p(sleeping_jobs(marker, {"run", "--progress"}), dir, job_side);
  EXPECT_TRUE(wait_for_processes(marker, 2, 30));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a few draws
  p.signal(SIGTERM);
  const std::optional<int> status = p.wait_for(30);
  close(job_side);
  close(terminal);
  ASSERT_TRUE(status.has_value()) << "polymap did not stop while its terminal was paused";
  EXPECT_EQ(*status, 143);
  EXPECT_TRUE(survivors_after(marker, 1.0).empty());
}

// The `--joblog -` header goes to stdout before any job starts: SIGTERM still stops a run
// whose stdout is a full pipe that is not read.
TEST(Run, SigtermStopsARunWhoseJoblogHeaderWaitsForAFullPipe) {
  temp_dir dir;
  unread_pipe out;
  out.fill();
  const std::string marker = dir / "header";
  cli_process p(sleeping_jobs(marker, {"run", "--joblog", "-"}), dir, -1, "/dev/null", {},
                out.fds[1]);
  out.close_write_end();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  p.signal(SIGTERM);
  const std::optional<int> status = p.wait_for(30);
  ASSERT_TRUE(status.has_value()) << "polymap did not stop while its stdout was full";
  EXPECT_EQ(*status, 143) << p.err();
  EXPECT_TRUE(survivors_after(marker, 1.0).empty());
}

/// Waits up to 30 s for the pipe whose read end is `fd` to hold `bytes` unread, and then
/// as many for a second on end (its writer waits for room): whether it did.
bool pipe_settles(int fd, int bytes) {
  int held = -1;
  auto since = std::chrono::steady_clock::now();
  const auto until = since + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < until) {
    int unread = 0;
    if (ioctl(fd, FIONREAD, &unread) != 0) return false;
    if (unread != held) {
      held = unread;
      since = std::chrono::steady_clock::now();
    } else if (held >= bytes &&
               std::chrono::steady_clock::now() - since >= std::chrono::seconds(1)) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Under `stty tostop` a process of the background that writes to its terminal is stopped
// (SIGTTOU), and each job is a process group of its own: it has a session of its own too, with
// no controlling terminal, so that it still writes to the terminal it was given and sets its
// modes, and the run ends (it used to wait for stopped jobs for good). /dev/tty, which would
// let a job take the terminal's foreground from polymap, cannot be opened.
TEST(Run, JobsWriteToATerminalWithTostopAndTheRunEnds) {
  temp_dir dir;
  const pseudo_terminal pty;
  const int master = pty.master;
  const std::string& terminal = pty.terminal;
  {
    const int fd = open(terminal.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    termios modes{};
    ASSERT_EQ(tcgetattr(fd, &modes), 0);
    modes.c_lflag |= TOSTOP;
    ASSERT_EQ(tcsetattr(fd, TCSANOW, &modes), 0);
    close(fd);
  }
  // polymap leads a session of its own whose terminal this is: it is the foreground.
  // Each job sets the terminal's modes too (`stty`), which stops a background process even
  // without tostop.
  std::vector<std::string> words = {
      POLYMAP_CLI_PATH, "run", "-j", "2", "--", "sh", "-c",
      "stty echo <&1 && echo \"$0\" && { true </dev/tty || echo \"no-tty-$0\"; } 2>/dev/null",
      ":::", "a", "b"};
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, terminal.c_str(), O_RDWR, 0);  // the session's
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  ASSERT_EQ(posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ), 0);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  std::string out;
  char buffer[256];
  int status = 0;
  bool ended = false;
  for (int tries = 0; tries < 1500 && !ended; ++tries) {
    for (pollfd readable{master, POLLIN, 0}; poll(&readable, 1, 0) > 0;) {
      const ssize_t n = read(master, buffer, sizeof buffer);
      if (n <= 0) break;
      out.append(buffer, static_cast<std::size_t>(n));
    }
    ended = waitpid(pid, &status, WNOHANG) == pid;
    if (!ended) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!ended) {
    kill(pid, SIGKILL);  // its jobs die with it (PR_SET_PDEATHSIG)
    waitpid(pid, nullptr, 0);
  }
  // What came last (the terminal hands it over a moment later).
  for (pollfd readable{master, POLLIN, 0}; poll(&readable, 1, 200) > 0;) {
    const ssize_t n = read(master, buffer, sizeof buffer);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  ASSERT_TRUE(ended) << "polymap did not end: " << out;
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_NE(out.find("a\r\n"), std::string::npos) << out;  // the terminal's newline
  EXPECT_NE(out.find("b\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("no-tty-a\r\n"), std::string::npos) << out;
}

// A --joblog FIFO holds the run neither while polymap waits for its reader to open it nor
// while the reader does not read: SIGTERM stops it either way.
TEST(Run, JoblogFifoThatIsNotReadDoesNotHoldTheRun) {
  temp_dir dir;
  const std::string fifo = dir / "joblog";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  {
    cli_process p({"run", "--joblog", fifo, "--", "true", ":::", "a"}, dir);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    p.signal(SIGTERM);
    const std::optional<int> status = p.wait_for(30);
    ASSERT_TRUE(status.has_value()) << "polymap did not stop while its --joblog FIFO had no reader";
    EXPECT_EQ(*status, 143) << p.err();
  }
  // Opened and never read: lines of 5 KB fill it (about 50 KB of 64 KiB go in whole pages),
  // and a line waits for room.
  const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  std::vector<std::string> args = {"run", "--joblog", fifo, "-j", "2", "--", "true", ":::"};
  for (int i = 0; i < 100; ++i) args.push_back(std::to_string(i) + std::string(5000, 'x'));
  cli_process p(args, dir);
  EXPECT_TRUE(pipe_settles(reader, 40000)) << p.err();
  p.signal(SIGTERM);
  const std::optional<int> status = p.wait_for(30);
  close(reader);
  ASSERT_TRUE(status.has_value()) << "polymap did not stop while its --joblog FIFO was not read";
  EXPECT_EQ(*status, 143) << p.err();
  EXPECT_NE(p.err().find("cannot write to --joblog '" + fifo +
                         "': it was not being read when the run stopped"),
            std::string::npos)
      << p.err();
}

// A job that ends while polymap waits for its stdout's reader is collected as it ends (its
// runtime is its own, and no zombie waits for the reader), not once the write is done.
TEST(Run, JobThatEndsWhileStdoutWaitsIsCollectedAtOnce) {
  temp_dir dir;
  unread_pipe out;
  cli_process p({"run", "-k", "-j", "2", "--", "sh", "-c",
                 "if [ \"$0\" = 1 ]; then head -c " + std::to_string(stuck_output) +
                     " /dev/zero; else sleep 0.5; echo $$ > \"$1\"; fi",
                 "{}", dir / "side", ":::", "1", "2"},
                dir, -1, "/dev/null", {}, out.fds[1]);
  out.close_write_end();
  ASSERT_TRUE(pipe_full(out)) << p.err();
  std::string side;
  for (int tries = 0; tries < 1500 && side.empty(); ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    side = read_file(dir / "side");
  }
  const pid_t job = std::atoi(side.c_str());
  ASSERT_GT(job, 0);
  EXPECT_TRUE(reaped_within(job, 30)) << "the job that ended stayed a zombie while stdout waited";
  EXPECT_TRUE(pipe_holds(out.fds[0], fcntl(out.fds[0], F_GETPIPE_SZ), 0)) << "the write ended";
  EXPECT_EQ(out.read(stuck_output), std::string(stuck_output, '\0'));
  EXPECT_EQ(p.wait(), 0) << p.err();
}

/// Reads `fd` in the background, `piece` bytes every `pause`, until the end or stop().
class slow_reader {
 public:
  slow_reader(int fd, std::size_t piece, std::chrono::milliseconds pause)
      : thread_([this, fd, piece, pause] {
          std::vector<char> buffer(piece);
          while (!stop_) {
            const ssize_t n = read(fd, buffer.data(), buffer.size());
            if (n <= 0) break;
            received_ += static_cast<std::size_t>(n);
            std::this_thread::sleep_for(pause);
          }
        }) {}
  slow_reader(const slow_reader&) = delete;
  slow_reader& operator=(const slow_reader&) = delete;
  ~slow_reader() { stop(); }
  /// Waits for the thread; its read returns once every writer of the stream is gone.
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  [[nodiscard]] std::size_t received() const { return received_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<std::size_t> received_{0};
  std::thread thread_;
};

// Once the run stops, the write of an item's output goes on as long as the reader takes
// some of it (it gives up only after a second with nothing taken), and a second signal gives
// it up at once.
TEST(Run, SecondSigtermGivesUpOutputThatAReaderStillTakesSlowly) {
  temp_dir dir;
  unread_pipe out;
  cli_process p({"run", "-k", "--", "sh", "-c", "head -c 50000000 /dev/zero", ":::", "1"}, dir,
                -1, "/dev/null", {}, out.fds[1]);
  out.close_write_end();
  ASSERT_TRUE(pipe_full(out)) << p.err();
  slow_reader reader(out.fds[0], 4096, std::chrono::milliseconds(50));  // 80 KB/s: 10 min
  p.signal(SIGTERM);
  EXPECT_FALSE(p.wait_for(3).has_value()) << "output still being read was given up";
  const std::size_t before = reader.received();
  p.signal(SIGTERM);
  std::optional<int> status = p.wait_for(30);
  if (!status) p.signal(SIGKILL);
  reader.stop();
  ASSERT_TRUE(status.has_value()) << "a second SIGTERM did not give the output up";
  EXPECT_EQ(*status, 143);
  EXPECT_GT(before, 3 * 4096U) << "the reader took nothing while the write went on";
  EXPECT_LT(reader.received(), 50000000U);
  EXPECT_NE(p.err().find("stdout is not being read"), std::string::npos) << p.err();
}

/// `count` items of `bytes` bytes each ("item N" lines), and what they print, in order.
std::pair<std::vector<std::string>, std::string> numbered_outputs(int count, std::size_t bytes) {
  std::vector<std::string> args = {
      "run", "-k", "-j", "3", "--", "sh", "-c",
      "yes \"item $0\" | head -c " + std::to_string(bytes), ":::"};
  std::string expected;
  for (int i = 1; i <= count; ++i) {
    args.push_back(std::to_string(i));
    const std::string line = "item " + std::to_string(i) + "\n";
    std::string item;
    while (item.size() < bytes) item += line;
    item.resize(bytes);
    expected += item;
  }
  return {args, expected};
}

/// Reads `fd` until `size` bytes came, the end, or 30 s without a byte.
std::string read_stream(int fd, std::size_t size) {
  std::string data;
  char buffer[65536];
  for (pollfd readable{fd, POLLIN, 0}; data.size() < size && poll(&readable, 1, 30000) > 0;) {
    const ssize_t n = read(fd, buffer, std::min(sizeof buffer, size - data.size()));
    if (n <= 0) break;
    data.append(buffer, static_cast<std::size_t>(n));
  }
  return data;
}

// A socket (a stdout that ssh or a network service hands over) takes the output whole, and
// one that is not read does not hold a run that SIGTERM stops.
TEST(Run, OutputIntoASocketComesWholeAndAnUnreadSocketStillLetsTheRunStop) {
  temp_dir dir;
  const auto [args, expected] = numbered_outputs(4, 400000);
  {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    cli_process p(args, dir, -1, "/dev/null", {}, fds[1]);
    close(fds[1]);
    const std::string out = read_stream(fds[0], expected.size() + 1);
    close(fds[0]);
    ASSERT_EQ(p.wait(), 0) << p.err();
    EXPECT_EQ(out.size(), expected.size());
    EXPECT_TRUE(out == expected) << "the output differs from what the items printed";
  }
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  cli_process p(args, dir, -1, "/dev/null", {}, fds[1]);
  close(fds[1]);
  EXPECT_TRUE(pipe_holds(fds[0], 100000, 30)) << "polymap wrote nothing into the socket";
  p.signal(SIGTERM);
  const std::optional<int> status = p.wait_for(30);
  close(fds[0]);
  ASSERT_TRUE(status.has_value()) << "polymap did not stop while its socket was not read";
  EXPECT_EQ(*status, 143) << p.err();
}

// A pseudo-terminal's master as stdout (polymap run by a terminal emulator, expect or
// script(1) that hands its own side over): the output reaches the terminal's side whole.
TEST(Run, OutputIntoAPseudoTerminalsMasterReachesTheTerminal) {
  temp_dir dir;
  const pseudo_terminal pty;
  const int master = pty.master;
  const int terminal = open(pty.terminal.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(terminal, 0);
  termios raw{};
  ASSERT_EQ(tcgetattr(terminal, &raw), 0);
  cfmakeraw(&raw);  // the bytes as they are: no echo, no line editing, no flow control
  ASSERT_EQ(tcsetattr(terminal, TCSANOW, &raw), 0);
  const auto [args, expected] = numbered_outputs(3, 100000);
  cli_process p(args, dir, -1, "/dev/null", {}, master);
  const std::string out = read_stream(terminal, expected.size());
  const std::optional<int> status = p.wait_for(30);
  close(terminal);
  ASSERT_TRUE(status.has_value()) << "polymap did not end";
  EXPECT_EQ(*status, 0) << p.err();
  EXPECT_EQ(out.size(), expected.size());
  EXPECT_TRUE(out == expected) << "the output differs from what the items printed";
}

}  // namespace
