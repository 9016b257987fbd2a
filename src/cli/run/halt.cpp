// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/halt.hpp"

#include <stdexcept>

namespace polymap::cli::run {

bool halt_policy::reached(std::size_t failed, std::size_t total) const noexcept {
  if (!enabled || failed == 0) return false;
  if (percent > 0) {
    // GNU parallel's share: of every item of the run, not of those ended so far.
    return static_cast<double>(failed) * 100.0 >= percent * static_cast<double>(total);
  }
  return failed >= count;
}

halt_policy parse_halt(const std::string& text) {
  const auto bad = [&] {
    return std::runtime_error("--halt '" + text +
                              "': use now,fail=N, soon,fail=N, now,fail=P% or soon,fail=P% "
                              "(N >= 1, 0 < P <= 100), never, or GNU parallel's older forms "
                              "0 (never), 1 (soon,fail=1), 2 (now,fail=1) and P% (soon,fail=P%)");
  };
  halt_policy policy;
  if (text.empty() || text == "never" || text == "0") return policy;
  // GNU parallel's older forms: 1, 2 and P%. Its -1 and -2 halt on a success, which
  // polymap does not do: they are refused below with the rest.
  if (text == "1") return parse_halt("soon,fail=1");
  if (text == "2") return parse_halt("now,fail=1");
  const std::size_t comma = text.find(',');
  if (comma == std::string::npos && text.back() == '%') {
    try {
      return parse_halt("soon,fail=" + text);
    } catch (const std::runtime_error&) {
      throw bad();
    }
  }
  if (comma == std::string::npos) throw bad();
  const std::string when = text.substr(0, comma);
  const std::string what = text.substr(comma + 1);
  if (when != "now" && when != "soon") throw bad();
  if (what.rfind("fail=", 0) != 0 || what.size() <= 5) throw bad();
  std::string number = what.substr(5);
  const bool percent = number.back() == '%';
  if (percent) number.pop_back();
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(number, &used);
  } catch (const std::exception&) {
    throw bad();
  }
  if (used != number.size() || number.empty()) throw bad();
  policy.enabled = true;
  policy.now = when == "now";
  if (percent) {
    if (!(value > 0 && value <= 100)) throw bad();
    policy.percent = value;
  } else {
    // Bounded before the cast, which is undefined for infinity and huge values.
    if (!(value >= 1 && value <= 1e15) ||
        value != static_cast<double>(static_cast<std::size_t>(value))) {
      throw bad();
    }
    policy.count = static_cast<std::size_t>(value);
  }
  return policy;
}

}  // namespace polymap::cli::run
