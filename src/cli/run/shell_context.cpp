// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/shell_context.hpp"

#include <algorithm>
#include <stdexcept>

namespace polymap::cli::run {

namespace {

/// Whether a # after `c` starts a comment: after a blank or an operator, not inside a word.
bool ends_a_word(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == ';' || c == '&' || c == '|' || c == '(' ||
         c == ')' || c == '<' || c == '>';
}

/// `text` with a backslash before each character of `special`.
std::string escaped(std::string_view text, std::string_view special) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (special.find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
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
  if (skip_next_) {  // the ( of a $(
    skip_next_ = false;
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
    word_start_ = false;
    return;
  }
  const frame kind = stack_.back().kind;
  if (kind == frame::single) {
    if (c == '\'') stack_.pop_back();
    return;
  }
  if (c == '$' && next == '(') {  // $( and $((: a command, or arithmetic, to the matching )
    stack_.push_back({frame::parens, 1});
    skip_next_ = true;
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
  } else if (c == '(' && kind == frame::parens) {
    ++stack_.back().parens;
  } else if (c == ')' && kind == frame::parens) {
    if (--stack_.back().parens == 0) stack_.pop_back();
  } else if (c == '#' && word_start_) {
    comment_ = true;
    return;
  } else if (c == '<' && next == '<') {
    here_document_ = true;
  }
  dollar_ = c == '$';
  word_start_ = ends_a_word(c);
}

shell_position shell_scanner::here(std::string_view placeholder) const {
  const auto refuse = [&](const std::string& where) {
    return std::runtime_error(
        "placeholder " + std::string(placeholder) + " " + where +
        " in the --shell command: no quoting keeps a value as it is there; run the line "
        "without --shell, with the values as arguments (polymap run sh -c '... \"$1\"' sh " +
        std::string(placeholder) + ")");
  };
  if (here_document_) throw refuse("after a here-document's <<");
  shell_position at;
  at.backquotes = static_cast<unsigned>(
      std::count_if(stack_.begin(), stack_.end(),
                    [](const level& l) { return l.kind == frame::backquotes; }));
  if (comment_) {
    at.inside = shell_position::quotes::comment;
    return at;
  }
  if (escaped_) throw refuse("right after a backslash");
  if (dollar_) throw refuse("right after a $");
  const frame kind = stack_.back().kind;
  at.inside = kind == frame::single    ? shell_position::quotes::single
              : kind == frame::doubled ? shell_position::quotes::doubled
                                       : shell_position::quotes::none;
  return at;
}

std::string quote_for(const shell_position& where, std::string_view value) {
  std::string quoted;
  switch (where.inside) {
    case shell_position::quotes::none:
      quoted = shell_quote(std::string(value));
      break;
    case shell_position::quotes::single:
      for (const char c : value) {
        if (c == '\'') {
          quoted += "'\\''";  // out of the quotes, an escaped ', and back in
        } else {
          quoted += c;
        }
      }
      break;
    case shell_position::quotes::doubled:
      quoted = escaped(value, "\\$`\"");
      break;
    case shell_position::quotes::comment:
      quoted = value;
      std::replace(quoted.begin(), quoted.end(), '\n', ' ');
      break;
  }
  for (unsigned i = 0; i < where.backquotes; ++i) quoted = escaped(quoted, "\\$`");
  return quoted;
}

}  // namespace polymap::cli::run
