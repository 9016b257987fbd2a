// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cli/run/shell_context.hpp"

#include <cstddef>
#include <string>
#include <vector>

namespace polymap::cli::run {

/// A command template with its placeholders found once: `{}` `{.}` `{/}` `{//}` `{/.}`
/// `{#}` `{%}` and `{N}` `{N.}` `{N/}` `{N//}` `{N/.}` for column N. A template without any
/// placeholder gets the columns appended as arguments, as GNU parallel does.
class command_template {
 public:
  /// @param words the command and its arguments as given
  /// @param columns the number of input sources
  /// @param shell whether the command line goes to `sh -c`: each placeholder's value then
  ///   comes in as an argument of its own, and the line refers to a shell variable that
  ///   holds it, written for where it stands (a plain word, inside '...' or "..."), so that
  ///   the shell takes the input as it is and never as code
  /// @throws std::runtime_error for an unknown placeholder or a column that does not exist,
  ///   naming it and the word it is in, and for a placeholder in a shell line where no
  ///   quoting can keep a value as it is (see shell_scanner::here)
  command_template(const std::vector<std::string>& words, std::size_t columns, bool shell);

  /// The argv of one job.
  /// @param item one value per column
  /// @param seq the 1-based input order ({#})
  /// @param slot the 1-based job slot ({%})
  [[nodiscard]] std::vector<std::string> expand(const std::vector<std::string>& item,
                                                std::size_t seq, std::size_t slot) const;

  /// The template as given, words joined by NUL: part of each item's journal key.
  [[nodiscard]] const std::string& identity() const noexcept { return identity_; }
  /// Whether the template is a --shell line.
  [[nodiscard]] bool shell() const noexcept { return shell_; }

 private:
  enum class kind { text, all, column, seq, slot };
  enum class transform { none, no_ext, base, dir, base_no_ext };
  struct piece {
    kind what = kind::text;
    transform how = transform::none;
    std::size_t column = 0;
    std::string text;      ///< the text; for a placeholder, as written (in errors)
    shell_position where = shell_position::code;  ///< --shell: where it stands in the line
    std::size_t variable = 0;  ///< --shell: its value's variable (from 1), shared by equals
  };
  using word = std::vector<piece>;

  [[nodiscard]] std::string value(const piece& p, const std::vector<std::string>& item,
                                  std::size_t seq, std::size_t slot) const;
  /// --shell: the name of variable `i` (from 1), which holds a placeholder's value.
  [[nodiscard]] static std::string shell_variable(std::size_t i);

  std::vector<word> words_;
  std::vector<piece> variables_;  ///< --shell: one placeholder for each variable, in order
  bool shell_;
  std::string identity_;
};

/// An argv as one line a user could paste into a shell.
[[nodiscard]] std::string display_command(const std::vector<std::string>& argv);

}  // namespace polymap::cli::run
