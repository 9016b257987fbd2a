// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/shell_context.hpp"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string_view>

namespace polymap::cli::run {

namespace {

/// Whether a # after `c` starts a comment: after a blank or an operator, not inside a word.
bool ends_a_word(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '&' || c == '|' || c == '(' ||
         c == ')' || c == '<' || c == '>';
}

}  // namespace

std::string shell_quote(const std::string& arg) {
  if (!arg.empty() &&
      arg.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            "_-+=./:,@%") == std::string::npos) {
    return arg;
  }
  std::string quoted = "'";
  for (char c : arg) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  quoted += '\'';
  return quoted;
}

void shell_scanner::read(std::string_view text) {
  // The shell removes a line continuation (a backslash before a newline) wherever it is not
  // quoted, inside "..." too, before it reads the words: so does the scanner, in the
  // characters it looks ahead at too (<\⏎< is a here-document's <<).
  const auto joined = [text](std::size_t i) {
    while (i + 1 < text.size() && text[i] == '\\' && text[i + 1] == '\n') i += 2;
    return i;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size() && text[i + 1] == '\n' && joins_lines()) {
      // Inside `...` the scanner does not follow the backslashes (see here()).
      for (level& l : stack_) {
        if (l.kind == frame::backquotes) l.backslash = true;
      }
      ++i;
      continue;
    }
    const std::size_t next = joined(i + 1);
    const std::size_t after = next < text.size() ? joined(next + 1) : next;
    take(text[i], next < text.size() ? text[next] : '\0',
         after < text.size() ? text[after] : '\0');
  }
}

bool shell_scanner::joins_lines() const noexcept {
  return !escaped_ && !comment_ && stack_.back().kind != frame::single;
}

bool shell_scanner::quoted_braces() const noexcept {
  for (auto l = stack_.rbegin(); l != stack_.rend(); ++l) {
    if (l->kind != frame::braces) return l->kind == frame::doubled;
  }
  return false;
}

void shell_scanner::note_word(char c) {
  if ((c >= 'a' && c <= 'z') || ((c == '{' || c == '!') && word_start_)) {
    if (word_start_) {
      word_.clear();
      reserved_ = command_place_;  // a word at no command's place is no reserved word
    }
    if (reserved_) word_.push_back(c);
    return;
  }
  if (!ends_a_word(c)) {
    reserved_ = false;  // quoted, or with other characters: no reserved word
    return;
  }
  level& l = stack_.back();
  if (reserved_ && word_ == "case") {
    ++l.cases;
  } else if (reserved_ && word_ == "esac" && l.cases > 0) {
    --l.cases;
  }
  // After an operator, a command starts; after a word, only where that word is one of the
  // reserved words that a command follows.
  static constexpr std::string_view before_a_command[] = {
      "if", "then", "else", "elif", "while", "until", "do", "{", "!"};
  const bool operator_here = c == ';' || c == '&' || c == '|' || c == '(' || c == ')' ||
                             c == '\n';
  if (operator_here) {
    command_place_ = true;
  } else if (!word_start_) {  // the end of a word
    command_place_ = reserved_ && std::find(std::begin(before_a_command),
                                            std::end(before_a_command),
                                            word_) != std::end(before_a_command);
  }
  word_.clear();
  reserved_ = false;
}

bool shell_scanner::inside(frame kind) const noexcept {
  return std::any_of(stack_.begin(), stack_.end(),
                     [kind](const level& l) { return l.kind == kind; });
}

void shell_scanner::open(frame kind, unsigned parens, unsigned skip) {
  stack_.push_back({kind, parens});
  skip_ = skip;
  dollar_ = false;
  word_start_ = true;
  command_place_ = true;
  reserved_ = false;
}

void shell_scanner::take(char c, char next, char after) {
  if (skip_ > 0) {  // the rest of an opening: the ( of $(, the {  of ${, ...
    --skip_;
    return;
  }
  if (comment_) {
    if (c == '\n') {
      comment_ = false;
      word_start_ = true;
    } else if (c == '`' && stack_.back().kind == frame::backquotes) {
      comment_ = false;  // the backquote ends the comment, and the substitution
      stack_.pop_back();
      word_start_ = false;
    }
    return;
  }
  const bool was_escaped = escaped_;
  escaped_ = false;
  dollar_ = false;
  if (was_escaped) {
    if (c != '\n') word_start_ = false;  // a line continuation leaves the word as it was
    return;
  }
  const frame kind = stack_.back().kind;
  if (kind == frame::single) {
    if (c == '\'') stack_.pop_back();
    return;
  }
  // Openings that hold anywhere but inside '...'.
  if (c == '$' && next == '(') {
    if (after == '(') {
      open(frame::arithmetic, 2, 2);  // $((
    } else {
      open(frame::parens, 1, 1);  // $(
    }
    return;
  }
  if (c == '$' && next == '{') {
    open(frame::braces, 0, 1);  // ${, to its }
    return;
  }
  if (c == '\\') {
    escaped_ = true;  // the next character decides whether a word goes on
    // Inside backquotes (in "..." there too) the shell takes backslashes out before it
    // reads the command, which this scanner does not follow.
    for (level& l : stack_) {
      if (l.kind == frame::backquotes) l.backslash = true;
    }
    return;
  }
  if (kind == frame::doubled) {
    if (c == '"') {
      stack_.pop_back();
    } else if (c == '`') {
      open(frame::backquotes, 0, 0);
    } else {
      dollar_ = c == '$';
    }
    return;
  }
  // Code: the command line, inside $( ), ` `, $(( )), or the word of a ${ }.
  note_word(c);
  if (c == '\'' && quoted_braces()) {
    // "${x-'...'}": the ' is a character of the word.
  } else if (c == '\'') {
    stack_.push_back({frame::single, 0});
  } else if (c == '"') {
    stack_.push_back({frame::doubled, 0});
  } else if (c == '`') {
    if (kind == frame::backquotes) {
      stack_.pop_back();
    } else {
      open(frame::backquotes, 0, 0);
      return;
    }
  } else if (c == '}' && kind == frame::braces) {
    stack_.pop_back();
  } else if (c == '(' && next == '(' && kind != frame::arithmetic) {
    open(frame::arithmetic, 2, 1);  // bash's (( )); in sh two subshells, refused inside too
    return;
  } else if (c == '(' && (kind == frame::parens || kind == frame::arithmetic)) {
    ++stack_.back().parens;
  } else if (c == ')' && kind == frame::parens && stack_.back().parens == 1 &&
             stack_.back().cases > 0) {
    word_start_ = true;  // a case pattern's end, not the substitution's
    return;
  } else if (c == ')' && (kind == frame::parens || kind == frame::arithmetic)) {
    if (--stack_.back().parens == 0) {
      stack_.pop_back();
      word_start_ = false;  // the word goes on after $(...)
    } else {
      word_start_ = true;  // a subshell's ), an operator
    }
    return;
  } else if (c == '#' && word_start_ && kind != frame::braces && kind != frame::arithmetic) {
    comment_ = true;
    return;
  } else if (c == '<' && next == '<' && kind != frame::braces && kind != frame::arithmetic) {
    if (after == '<') {
      skip_ = 2;  // bash's <<< here-string: a word, not a document
    } else {
      here_document_ = true;
    }
  }
  dollar_ = c == '$';
  word_start_ = ends_a_word(c);
}

std::runtime_error shell_scanner::refusal(std::string_view placeholder, const std::string& where) {
  return std::runtime_error(
      "placeholder " + std::string(placeholder) + " " + where +
      " in the --shell command: its value would not reach the command as it is there; run "
      "the line without --shell, with the values as arguments (polymap run sh -c "
      "'... \"$1\"' sh " +
      std::string(placeholder) + ")");
}

void shell_scanner::finish(std::string_view placeholder) const {
  if (stack_.size() > 1 || stack_.front().cases > 0) {
    throw refusal(placeholder,
                  "and every other, since the line ends inside a quote, $(...), `...`, ${...} "
                  "or case (left open, or read otherwise than sh reads it),");
  }
}

shell_position shell_scanner::here(std::string_view placeholder) {
  const auto refuse = [&](const std::string& where) { return refusal(placeholder, where); };
  if (here_document_) throw refuse("after a here-document's <<");
  if (!comment_) {
    if (escaped_) throw refuse("right after a backslash");
    if (dollar_) throw refuse("right after a $");
    if (inside(frame::arithmetic)) throw refuse("inside an arithmetic $((...)) or ((...))");
    // The shell takes the backslashes out of a `...` before it reads the command: a \"
    // there may be a quote of the command's own, which this scanner does not follow.
    if (std::any_of(stack_.begin(), stack_.end(), [](const level& l) {
          return l.kind == frame::backquotes && l.backslash;
        })) {
      throw refuse("inside `...` after a backslash (write $(...) there)");
    }
  }
  word_start_ = false;  // the placeholder is part of a word
  reserved_ = false;
  const frame kind = stack_.back().kind;
  return kind == frame::single    ? shell_position::single
         : kind == frame::doubled ? shell_position::doubled
                                  : shell_position::code;  // a ${ }'s word too: "${v}"
}

std::string reference_for(shell_position where, const std::string& name) {
  switch (where) {
    case shell_position::single:
      return "'\"${" + name + "}\"'";
    case shell_position::doubled:
      return "${" + name + "}";
    case shell_position::code:
      break;
  }
  return "\"${" + name + "}\"";
}

}  // namespace polymap::cli::run
