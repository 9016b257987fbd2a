// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/shell_context.hpp"

#include <stdexcept>

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
  for (std::size_t i = 0; i < text.size(); ++i) {
    take(text[i], i + 1 < text.size() ? text[i + 1] : '\0');
  }
}

void shell_scanner::take(char c, char next) {
  if (skip_ > 0) {  // the ( of a $(, the (( of a $((
    --skip_;
    return;
  }
  if (comment_) {
    if (c == '\n') {
      comment_ = false;
      word_start_ = true;
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
  if (c == '$' && next == '(') {  // $( a command, or $(( arithmetic, to the matching )
    stack_.push_back({frame::parens, 1});
    skip_ = 1;
    word_start_ = true;
    return;
  }
  if (kind == frame::doubled) {
    if (c == '\\') {
      escaped_ = true;  // of the characters it escapes there, only " and ` matter here
    } else if (c == '"') {
      stack_.pop_back();
    } else if (c == '`') {
      stack_.push_back({frame::backquotes, 0});
    } else {
      dollar_ = c == '$';
    }
    return;
  }
  // Code: the command line itself, or inside $( ) or ` `.
  if (c == '\\') {
    escaped_ = true;
  } else if (c == '\'') {
    stack_.push_back({frame::single, 0});
  } else if (c == '"') {
    stack_.push_back({frame::doubled, 0});
  } else if (c == '`') {
    if (kind == frame::backquotes) {
      stack_.pop_back();
    } else {
      stack_.push_back({frame::backquotes, 0});
    }
  } else if (c == '(' && (kind == frame::parens || kind == frame::arithmetic)) {
    // $(( is arithmetic; so is a (( that opens a command (bash's arithmetic command).
    if (kind == frame::parens && stack_.back().parens == 1 && word_start_ && next != ')') {
      stack_.back().kind = frame::arithmetic;
    }
    ++stack_.back().parens;
  } else if (c == '(' && next == '(' && word_start_) {
    stack_.push_back({frame::arithmetic, 2});
    skip_ = 1;
  } else if (c == ')' && (kind == frame::parens || kind == frame::arithmetic)) {
    if (--stack_.back().parens == 0) {
      stack_.pop_back();
      dollar_ = false;
      word_start_ = false;  // the word goes on after $(...)
      return;
    }
  } else if (c == '#' && word_start_) {
    comment_ = true;
    return;
  } else if (c == '<' && next == '<') {
    here_document_ = true;
  }
  dollar_ = c == '$';
  word_start_ = ends_a_word(c);
}

shell_position shell_scanner::here(std::string_view placeholder) {
  const auto refuse = [&](const std::string& where) {
    return std::runtime_error(
        "placeholder " + std::string(placeholder) + " " + where +
        " in the --shell command: its value would not reach the command as it is there; run "
        "the line without --shell, with the values as arguments (polymap run sh -c "
        "'... \"$1\"' sh " +
        std::string(placeholder) + ")");
  };
  if (here_document_) throw refuse("after a here-document's <<");
  if (!comment_) {
    if (escaped_) throw refuse("right after a backslash");
    if (dollar_) throw refuse("right after a $");
    for (const level& l : stack_) {
      if (l.kind == frame::arithmetic) throw refuse("inside an arithmetic $((...))");
    }
  }
  word_start_ = false;  // the placeholder is part of a word
  const frame kind = stack_.back().kind;
  return kind == frame::single    ? shell_position::single
         : kind == frame::doubled ? shell_position::doubled
                                  : shell_position::code;
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
