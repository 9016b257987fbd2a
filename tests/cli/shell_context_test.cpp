// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Where the --shell scanner puts a placeholder, and the references it writes there.
#include "cli/run/shell_context.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace polymap::cli::run {
namespace {

/// Where a placeholder stands after `before`.
shell_position after(const std::string& before) {
  shell_scanner line;
  line.read(before);
  return line.here("{}");
}

TEST(ShellScanner, FollowsQuotesAndSubstitutions) {
  EXPECT_EQ(after("echo "), shell_position::code);
  EXPECT_EQ(after("echo '"), shell_position::single);
  EXPECT_EQ(after("echo \""), shell_position::doubled);
  EXPECT_EQ(after("echo 'a' \"b\" "), shell_position::code);
  EXPECT_EQ(after("echo \"it's "), shell_position::doubled);
  EXPECT_EQ(after("echo 'say \"hi\" "), shell_position::single);
  EXPECT_EQ(after("echo \"\\\" "), shell_position::doubled);  // an escaped quote
  EXPECT_EQ(after("echo \\' "), shell_position::code);
  EXPECT_EQ(after("echo \"$(printf '%s' "), shell_position::code);
  EXPECT_EQ(after("echo \"$(printf '%s' \""), shell_position::doubled);
  EXPECT_EQ(after("echo \"$(date)"), shell_position::doubled);
  EXPECT_EQ(after("echo \"`date` "), shell_position::doubled);
  EXPECT_EQ(after("echo `printf '"), shell_position::single);
  EXPECT_EQ(after("echo # it's\necho "), shell_position::code);  // a comment's quote
  // The word of a ${...}: a reference quoted as outside quotes (a literal pattern).
  EXPECT_EQ(after("echo \"${x#"), shell_position::code);
  EXPECT_EQ(after("echo ${x:-"), shell_position::code);
  EXPECT_EQ(after("echo \"${x:-\""), shell_position::doubled);
  EXPECT_EQ(after("echo \"${x:-a}"), shell_position::doubled);
  // A # right after a backquote starts a comment, which a backquote ends there.
  EXPECT_EQ(after("echo `#'\nprintf \"[%s]\" \""), shell_position::doubled);
  EXPECT_EQ(after("echo `date # now` '"), shell_position::single);
  // Subshells and case patterns inside $( ), << in arithmetic, bash's <<<.
  EXPECT_EQ(after("echo \"$( (printf %s "), shell_position::code);
  EXPECT_EQ(after("echo \"$(case a in (a) printf %s "), shell_position::code);
  EXPECT_EQ(after("x=$((1<<2)); echo "), shell_position::code);
  EXPECT_EQ(after("cat <<< "), shell_position::code);
  EXPECT_EQ(after("echo \"`printf %s "), shell_position::code);  // no backslash before it
  // A line continuation leaves the word as it was: a # after it may start a comment.
  EXPECT_EQ(after(": \\\n#\"\n"), shell_position::code);
}

TEST(ShellScanner, APlaceholderIsPartOfAWord) {
  shell_scanner line;
  line.read("echo ");
  EXPECT_EQ(line.here("{1}"), shell_position::code);
  line.read("#");  // inside the word: no comment
  EXPECT_EQ(line.here("{2}"), shell_position::code);
  line.read(" '");
  EXPECT_EQ(line.here("{3}"), shell_position::single);
}

TEST(ShellScanner, RefusesWhereNoReferenceKeepsTheValue) {
  for (const std::string before :
       {"echo \\", "echo \"\\", "echo $", "echo \"$", "cat <<EOF\n", "echo $(( 1 + ",
        "(( x = ", "while(( ", "! (( ", "echo \"`printf %s \\\"",
        "x=`: \"\\\\\" \"; "}) {
    SCOPED_TRACE(before);
    EXPECT_THROW((void)after(before), std::runtime_error);
  }
  // After a subshell inside $( ) has closed, and after << inside quotes, all is well.
  EXPECT_EQ(after("echo $( (date) ) "), shell_position::code);
  EXPECT_EQ(after("echo '<<' "), shell_position::code);
}

/// Where each placeholder stands in `pieces` (text, placeholder, text, ...), after the
/// scanner has finished the line.
std::vector<shell_position> places(const std::vector<std::string>& pieces) {
  shell_scanner line;
  std::vector<shell_position> where;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    if (i % 2 == 0) {
      line.read(pieces[i]);
    } else {
      where.push_back(line.here(pieces[i]));
    }
  }
  line.finish(pieces.at(1));
  return where;
}

TEST(ShellScanner, FollowsCaseCommandsLineContinuationsAndQuotesInQuotedBraces) {
  using enum shell_position;
  // A case pattern's ) inside $(...) does not end the substitution.
  EXPECT_EQ(places({"x=\"$(case a in a) ", "{}", ";; esac) ", "{}", "\""}),
            (std::vector{code, doubled}));
  EXPECT_EQ(places({"x=\"$(if true; then case a in (a) ", "{}", ";; esac; fi)", "{}", "\""}),
            (std::vector{code, doubled}));
  EXPECT_EQ(places({"x=\"$({ ! case a in a) ", "{}", ";; esac; })", "{}", "\""}),
            (std::vector{code, doubled}));
  // A word case at no command's place opens no case.
  EXPECT_EQ(places({"x=\"$(echo case in a) ", "{}", "\""}), (std::vector{doubled}));
  // The shell joins lines at a backslash and a newline before it reads the words.
  EXPECT_THROW((void)after("cat <\\\n<EOF\n\"\nEOF\n"), std::runtime_error);
  EXPECT_EQ(after("echo \"$\\\n(echo "), code);
  EXPECT_EQ(after("echo '\\\n"), single);  // not inside '...'
  // Inside "${x-...}" a ' is a character of the word, not a quote.
  EXPECT_EQ(places({"echo \"${x-'", "{}", "'}\""}), (std::vector{code}));
  EXPECT_EQ(places({"echo ${x-'", "{}", "'}"}), (std::vector{single}));
}

TEST(ShellScanner, RefusesALineThatDoesNotEndWhereItBegan) {
  for (const std::vector<std::string>& pieces :
       {std::vector<std::string>{"echo '", "{}"}, {"echo \"$(", "{}", "\""},
        {"x=$(case ", "{}", " in a) :;; ) "}, {"echo ${x-", "{}"}, {"echo `", "{}"}}) {
    SCOPED_TRACE(pieces[0]);
    try {
      (void)places(pieces);
      ADD_FAILURE() << "not refused";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("placeholder {} and every other, since the line ends "
                                           "inside"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(ShellScanner, ReferencesForEachPlace) {
  EXPECT_EQ(reference_for(shell_position::code, "v"), "\"${v}\"");
  EXPECT_EQ(reference_for(shell_position::single, "v"), "'\"${v}\"'");
  EXPECT_EQ(reference_for(shell_position::doubled, "v"), "${v}");
}

TEST(ShellQuote, QuotesWhatNeedsIt) {
  EXPECT_EQ(shell_quote("plain-word_1.txt"), "plain-word_1.txt");
  EXPECT_EQ(shell_quote(""), "''");
  EXPECT_EQ(shell_quote("it's $x"), "'it'\\''s $x'");
}

}  // namespace
}  // namespace polymap::cli::run
