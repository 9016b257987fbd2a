// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/arg_sources.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>

namespace polymap::cli::run {

namespace {

/// The lines of `in`, which `name` names in an error.
/// @throws std::runtime_error for a line with a NUL byte, which no argument can carry
std::vector<std::string> read_lines(std::istream& in, const std::string& name) {
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find('\0') != std::string::npos) {
      throw std::runtime_error(name + ", line " + std::to_string(lines.size() + 1) +
                               ", holds a NUL byte, which no command argument can carry: "
                               "polymap run takes text, one item a line");
    }
    lines.push_back(line);
  }
  return lines;
}

std::vector<std::string> read_stdin() { return read_lines(std::cin, "stdin"); }

std::vector<std::string> read_arg_file(const std::string& path) {
  if (path == "-") return read_stdin();
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    throw std::runtime_error("cannot read argument file '" + path + "': it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read argument file '" + path + "': " +
                             std::strerror(errno));
  }
  std::vector<std::string> lines = read_lines(in, "argument file '" + path + "'");
  if (in.bad()) throw std::runtime_error("error reading argument file '" + path + "'");
  return lines;
}

/// Whether `word` starts an input source (`:::` values or `::::` files).
/// @throws std::runtime_error for GNU parallel's linked sources, which would otherwise be
///   taken for values and give another batch than the user meant
bool starts_source(const std::string& word) {
  if (word == ":::+" || word == "::::+") {
    throw std::runtime_error(word +
                             " (linked input sources, as in GNU parallel) is not supported: "
                             "polymap run combines its sources as a cartesian product; put "
                             "the linked values in one source, e.g. `::: a,1 b,2`, and split "
                             "them in the command");
  }
  return word == ":::" || word == "::::";
}

}  // namespace

command_line split_command_line(const std::vector<std::string>& words,
                                const std::vector<std::string>& arg_files) {
  command_line result;
  std::size_t i = 0;
  for (; i < words.size() && !starts_source(words[i]); ++i) {
    result.command.push_back(words[i]);
  }
  if (result.command.empty()) {
    throw std::runtime_error("no command to run: give it after the options, e.g. "
                             "`polymap run -- echo {} ::: a b`");
  }
  for (const std::string& file : arg_files) result.sources.push_back(read_arg_file(file));
  while (i < words.size()) {
    const bool files = words[i] == "::::";
    ++i;
    std::vector<std::string> values;
    for (; i < words.size() && !starts_source(words[i]); ++i) {
      if (files) {
        // Each file is a source of its own, as in GNU parallel.
        result.sources.push_back(read_arg_file(words[i]));
      } else {
        values.push_back(words[i]);
      }
    }
    if (!files) result.sources.push_back(std::move(values));
  }
  if (result.sources.empty()) result.sources.push_back(read_stdin());
  return result;
}

item_product::item_product(std::vector<std::vector<std::string>> sources) {
  // GNU parallel's rule: beside a source with values, an empty one is one empty value.
  const bool any = std::any_of(sources.begin(), sources.end(),
                               [](const std::vector<std::string>& s) { return !s.empty(); });
  if (!any) return;
  for (std::vector<std::string>& source : sources) {
    if (source.empty()) source.emplace_back();
  }
  std::size_t total = 1;
  const std::size_t limit = max_values / sources.size();
  for (const std::vector<std::string>& source : sources) {
    // Checked before the multiplication: 64 sources of two values must not wrap to 0 items.
    if (total > limit / source.size()) {
      throw std::runtime_error((sources.size() == 1 ? std::string("the input has")
                                                    : "the " + std::to_string(sources.size()) +
                                                          " input sources combine into") +
                               " more than " + std::to_string(limit) +
                               " items (the most polymap run takes): give fewer sources or values");
    }
    total *= source.size();
  }
  sources_ = std::move(sources);
  size_ = total;
}

std::vector<std::string> item_product::operator[](std::size_t i) const {
  // A number in mixed radix, the last source its lowest digit.
  std::vector<std::string> item(sources_.size());
  for (std::size_t s = sources_.size(); s-- > 0;) {
    const std::size_t n = sources_[s].size();
    item[s] = sources_[s][i % n];
    i /= n;
  }
  return item;
}

}  // namespace polymap::cli::run
