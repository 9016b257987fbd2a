// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::cli::run {

/// Where a placeholder stands in a `--shell` command line, as a POSIX shell parses it:
/// what a reference to the shell variable that holds its value must look like there.
enum class shell_position {
  code,     ///< outside quotes: "${var}" (in $(...) and `...` too)
  single,   ///< inside '...': '"${var}"' (out of the quotes and back)
  doubled,  ///< inside "...": ${var}
};

/// Follows a `--shell` command line through the text around its placeholders: quotes,
/// backslashes, comments, `$(...)` and `...` substitutions, nested in one another. A value
/// never enters the line: the line refers to a shell variable that holds it, so a place
/// that the scanner reads wrongly (a `case` whose word is not at a command's place, bash's
/// `$'...'`) gives a value with quotes around it, or split into words (which run as a
/// command where they stand at a command's place), and never has the shell read its text
/// as code.
/// Here-documents and arithmetic are not followed: a placeholder after a `<<` or inside
/// `$((...))` is refused. A line the scanner does not end where it began is refused whole
/// (finish()).
/// A line that hands its own text to another shell (`sh -c '... {}'`, `eval`, `trap`,
/// `ssh host '...'`) hands it the value as text, which that shell parses: as in GNU parallel.
class shell_scanner {
 public:
  /// Reads the template's text up to the next placeholder (the words' text, and the spaces
  /// that join them).
  void read(std::string_view text);

  /// Where a placeholder after the text read so far stands; it counts as a word's
  /// character (a # after it starts no comment).
  /// @throws std::runtime_error naming `placeholder` where no reference keeps a value as it
  ///   is: after a backslash (it would escape the reference's first character), right after
  ///   a $, after a here-document's `<<`, inside $((...)) or ((...)) (bash evaluates a
  ///   variable's text there as an expression, commands in it included), or inside a `...`
  ///   after a backslash (the shell takes backslashes out before it reads the command: a
  ///   \" there may be a quote of its own, which this scanner does not follow)
  [[nodiscard]] shell_position here(std::string_view placeholder);

  /// Ends the line: the scanner must be back where it began (no quote, substitution,
  /// `${...}` or `case` left open), or it has misread the line somewhere, and every place it
  /// gave a placeholder is in doubt.
  /// @throws std::runtime_error naming `placeholder` (the line's first) when it is not
  void finish(std::string_view placeholder) const;

 private:
  enum class frame { top, parens, arithmetic, backquotes, braces, single, doubled };
  struct level {
    frame kind = frame::top;
    unsigned parens = 0;      ///< open parentheses of a $( ... ) or $(( ... )) frame, its own
    unsigned cases = 0;       ///< `case` commands open in it, whose patterns end in a )
    bool backslash = false;   ///< a `...` frame has held a backslash (which the shell takes
                              ///< out before it reads the command)
  };
  /// Whether a backslash before a newline here joins two lines (the shell removes both).
  [[nodiscard]] bool joins_lines() const noexcept;
  /// Notes the code character `c` in the word it is part of: a `case` or `esac` at a
  /// command's place opens or closes a case command (`parens`: `case` inside $(...)).
  void note_word(char c);
  /// Whether the innermost frames are the words of ${...} inside "...", where a ' is a
  /// character as any other.
  [[nodiscard]] bool quoted_braces() const noexcept;
  /// The text of a refusal of `placeholder`, which stands `where`.
  [[nodiscard]] static std::runtime_error refusal(std::string_view placeholder,
                                                  const std::string& where);
  /// Reads `c`, which `next` and `after` follow ('\0' at the end of the text).
  void take(char c, char next, char after);
  /// Enters a frame whose opening goes on for `skip` characters more.
  void open(frame kind, unsigned parens, unsigned skip);
  [[nodiscard]] bool inside(frame kind) const noexcept;

  std::vector<level> stack_{level{}};
  bool escaped_ = false;     // the last character was an unquoted backslash
  bool dollar_ = false;      // the last character was an unquoted, unescaped $
  bool comment_ = false;     // inside a # comment, until a newline
  bool word_start_ = true;   // a # here starts a comment
  bool here_document_ = false;
  bool command_place_ = true;  // a word here stands at a command's place (its name, or a
                               // reserved word such as case)
  std::string word_;           // the letters of the word being read, while reserved_
  bool reserved_ = false;      // the word so far may be a reserved word: unquoted letters
                               // at a command's place
  unsigned skip_ = 0;        // characters of an opening ($(, $((, ${, ((, <<<) read with it
};

/// `arg` quoted for a POSIX shell when it needs it ('...' with ' as '\''), as is otherwise.
[[nodiscard]] std::string shell_quote(const std::string& arg);

/// A reference to shell variable `name` that gives its value as it is at `where`.
[[nodiscard]] std::string reference_for(shell_position where, const std::string& name);

}  // namespace polymap::cli::run
