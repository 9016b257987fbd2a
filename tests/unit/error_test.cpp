// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/error.hpp>

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace polymap {
namespace {

TEST(MapError, SortsFailuresAndSummarisesThem) {
  std::vector<item_failure> failures;
  for (std::size_t i : {9u, 2u, 5u, 7u}) {
    failures.push_back({.index = i,
                        .backend = backend::threads,
                        .kind = failure_kind::exception,
                        .what = "boom " + std::to_string(i),
                        .signal = 0,
                        .exit_code = 0,
                        .attempts = 1});
  }
  const map_error e(failures, 10);
  ASSERT_EQ(e.failures().size(), 4u);
  EXPECT_EQ(e.failures()[0].index, 2u);
  EXPECT_EQ(e.failures()[3].index, 9u);
  EXPECT_EQ(e.total(), 10u);
  const std::string text = e.what();
  EXPECT_NE(text.find("4 of 10 items failed"), std::string::npos) << text;
  EXPECT_NE(text.find("item 2 (threads, exception, 1 attempt): boom 2"), std::string::npos) << text;
  EXPECT_NE(text.find("and 1 more"), std::string::npos) << text;
}

/// The text of the polymap::error that `call` throws ("" when none).
template <class Call>
std::string error_text(Call&& call) {
  try {
    call();
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

TEST(MapError, ResultsOfTheWrongTypeOrOfNoneAreRefusedSayingWhich) {
  map_error e({}, 3);
  const std::string none = error_text([&] { (void)e.results<int>(); });
  EXPECT_NE(none.find("kept no results in the error"), std::string::npos) << none;
  e.set_results(std::vector<std::optional<int>>{1, std::nullopt, 3});
  EXPECT_EQ(e.results<int>().size(), 3u);
  EXPECT_FALSE(e.results<int>()[1].has_value());
  const std::string wrong = error_text([&] { (void)e.results<double>(); });
  EXPECT_NE(wrong.find("T is not the result type"), std::string::npos) << wrong;
}

TEST(OptionError, NamesOptionValueAndAllowed) {
  const option_error e("workers", "-3", "0 or more");
  EXPECT_EQ(std::string(e.what()), "polymap: option 'workers' = -3 is not allowed: expected 0 or more");
}

TEST(FailureKind, Names) {
  EXPECT_EQ(to_string(failure_kind::timeout), "timeout");
  EXPECT_EQ(to_string(failure_kind::signal), "signal");
}

}  // namespace
}  // namespace polymap
