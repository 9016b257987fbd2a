// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace polymap::cli::run {

/// The words after `polymap run`'s options, split as GNU parallel does: the command
/// template, then input sources introduced by `:::` (the values that follow) and `::::`
/// (files of lines; `-` is stdin).
struct command_line {
  std::vector<std::string> command;               ///< the template, never empty
  std::vector<std::vector<std::string>> sources;  ///< one list of values per source
};

/// Splits `words` and reads the argument files (`::::` and `arg_files`, one item a line;
/// each file a source of its own). With no source at all, the items are the lines of stdin.
/// @throws std::runtime_error naming the file that cannot be read or the line that holds a
///   NUL byte, or saying that the command is missing or that a `:::+` or `::::+` (linked
///   sources) is not supported
[[nodiscard]] command_line split_command_line(const std::vector<std::string>& words,
                                              const std::vector<std::string>& arg_files);

/// The most values (items times columns) a batch may have.
inline constexpr std::size_t max_values = 100'000'000;

/// The items of a batch: every combination of one value from each source, the last source
/// varying fastest (GNU parallel's order), each with one column per source. As in GNU
/// parallel, an empty source beside one with values gives one empty value; when all are
/// empty there is none. Each item is made when it is asked for: only the sources are held,
/// not their product.
class item_product {
 public:
  item_product() = default;
  /// @throws std::runtime_error when the combinations hold more than max_values values
  explicit item_product(std::vector<std::vector<std::string>> sources);

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  /// Item i (i < size()): one value from each source.
  [[nodiscard]] std::vector<std::string> operator[](std::size_t i) const;

 private:
  std::vector<std::vector<std::string>> sources_;
  std::size_t size_ = 0;
};

}  // namespace polymap::cli::run
