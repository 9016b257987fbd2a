// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/error.hpp>

#include <algorithm>
#include <string>

namespace polymap {

option_error::option_error(std::string option, std::string value, std::string allowed)
    : error("polymap: option '" + option + "' = " + value + " is not allowed: expected " +
            allowed),
      option_(std::move(option)),
      value_(std::move(value)),
      allowed_(std::move(allowed)) {}

cancelled_error::cancelled_error(std::size_t done, std::size_t total)
    : error("polymap: map cancelled after " + std::to_string(done) + " of " +
            std::to_string(total) + " items"),
      done_(done),
      total_(total) {}

std::string_view to_string(failure_kind kind) noexcept {
  switch (kind) {
    case failure_kind::exception: return "exception";
    case failure_kind::signal: return "signal";
    case failure_kind::exit: return "exit";
    case failure_kind::timeout: return "timeout";
    case failure_kind::memory: return "memory";
  }
  return "unknown";
}

namespace {

std::vector<item_failure> sorted(std::vector<item_failure> failures) {
  std::sort(failures.begin(), failures.end(),
            [](const item_failure& a, const item_failure& b) { return a.index < b.index; });
  return failures;
}

std::string summary(const std::vector<item_failure>& failures, std::size_t total) {
  std::string text = "polymap: " + std::to_string(failures.size()) + " of " +
                     std::to_string(total) + " items failed";
  constexpr std::size_t shown = 3;
  for (std::size_t i = 0; i < failures.size() && i < shown; ++i) {
    const item_failure& f = failures[i];
    text += i == 0 ? ": " : "; ";
    text += "item " + std::to_string(f.index) + " (" + std::string(to_string(f.backend)) + ", " +
            std::string(to_string(f.kind)) + ", " + std::to_string(f.attempts) +
            (f.attempts == 1 ? " attempt" : " attempts") + "): " + f.what;
  }
  if (failures.size() > shown) {
    text += "; and " + std::to_string(failures.size() - shown) + " more";
  }
  return text;
}

}  // namespace

// Delegating sorts the failures once: the message and the member come from the same vector.
map_error::map_error(std::vector<item_failure> failures, std::size_t total)
    : map_error(sorted(std::move(failures)), total, 0) {}

map_error::map_error(std::vector<item_failure>&& sorted_failures, std::size_t total, int)
    : error(summary(sorted_failures, total)), failures_(std::move(sorted_failures)), total_(total) {}

}  // namespace polymap
