// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace polymap::cli::run {

/// Where a placeholder stands in a `--shell` command line, as a POSIX shell parses it: what
/// a value inserted there must be quoted for to reach the command as it is.
struct shell_position {
  enum class quotes {
    none,     ///< a plain word: 'value', with ' as '\''
    single,   ///< inside '...': value with ' as '\''
    doubled,  ///< inside "...": value with \ $ ` " escaped
    comment,  ///< after a #: value with no newline, which would end the comment
  };
  quotes inside = quotes::none;
  /// The `...` command substitutions it stands in: the shell reads a backslash before
  /// $ ` \ there once before it parses the command, so each one escapes them once more.
  unsigned backquotes = 0;
};

/// Follows a `--shell` command line through the text around its placeholders: quotes,
/// backslashes, comments, `$(...)` and `...` substitutions, nested in one another.
/// Here-documents are not followed: a placeholder after a `<<` is refused.
class shell_scanner {
 public:
  /// Reads the template's text up to the next placeholder (the words' text, and the spaces
  /// that join them).
  void read(std::string_view text);

  /// Where a placeholder after the text read so far stands (a value quoted for it leaves
  /// the parse where it was).
  /// @throws std::runtime_error naming `placeholder` where no quoting can keep a value as it
  ///   is: after a backslash (it would escape the quoting's first character), right after a
  ///   $ (it would make a parameter or a command of it), or after a here-document's `<<`
  [[nodiscard]] shell_position here(std::string_view placeholder) const;

 private:
  enum class frame { top, parens, backquotes, single, doubled };
  struct level {
    frame kind = frame::top;
    unsigned parens = 0;  ///< open parentheses of a $( ... ) frame, its own included
  };
  void take(char c, char next);

  std::vector<level> stack_{level{}};
  bool escaped_ = false;     // the last character was an unquoted backslash
  bool dollar_ = false;      // the last character was an unquoted, unescaped $
  bool comment_ = false;     // inside a # comment, until a newline
  bool word_start_ = true;   // a # here starts a comment
  bool here_document_ = false;
  bool skip_next_ = false;   // the second character of $( is read with the first
};

/// `arg` quoted for a POSIX shell when it needs it ('...' with ' as '\''), as is otherwise.
[[nodiscard]] std::string shell_quote(const std::string& arg);

/// `value` quoted so that the shell takes it as it is at `where`.
[[nodiscard]] std::string quote_for(const shell_position& where, std::string_view value);

}  // namespace polymap::cli::run
