// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Every bad option is refused when the call starts, naming the option, the value and what
// is allowed, and nothing runs.
#include <polymap/polymap.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace polymap {
namespace {

/// Runs a map with `o` and returns the option_error it threw (failing if none).
option_error refused(const options& o) {
  std::vector<int> xs(100, 1);
  std::atomic<int> calls{0};
  try {
    (void)polymap::map(xs, [&](int x) { ++calls; return x; }, o);
  } catch (const option_error& e) {
    EXPECT_EQ(calls.load(), 0) << "items ran despite a bad option";
    return e;
  }
  ADD_FAILURE() << "no option_error";
  return option_error("", "", "");
}

TEST(Options, TooManyWorkers) {
  const option_error e = refused({.workers = 1'000'000});
  EXPECT_EQ(e.option(), "workers");
  EXPECT_EQ(e.value(), "1000000");
  EXPECT_NE(std::string(e.what()).find("workers"), std::string::npos);
}

TEST(Options, NiceOutOfRange) {
  EXPECT_EQ(refused({.nice = 20}).option(), "nice");
  EXPECT_EQ(refused({.nice = -21}).option(), "nice");
}

TEST(Options, NegativeOrInfiniteTimeout) {
  EXPECT_EQ(refused({.timeout = std::chrono::seconds(-1)}).option(), "timeout");
  EXPECT_EQ(refused({.timeout = std::chrono::duration<double>(
                         std::numeric_limits<double>::infinity())})
                .option(),
            "timeout");
}

TEST(Options, BindCpusNeedsAList) {
  EXPECT_EQ(refused({.bind = bind::cpus}).option(), "cpus");
}

TEST(Options, CpuListNeedsBindCpus) {
  EXPECT_EQ(refused({.bind = bind::core, .cpus = {0}}).option(), "cpus");
}

TEST(Options, UnusableCpu) {
  const option_error e = refused({.bind = bind::cpus, .cpus = {100'000}});
  EXPECT_EQ(e.option(), "cpus");
  EXPECT_NE(std::string(e.what()).find("100000"), std::string::npos);
}

TEST(Options, NegativeDevice) {
  const option_error e = refused({.device = -1});
  EXPECT_EQ(e.option(), "device");
  EXPECT_EQ(e.value(), "-1");
}

TEST(Options, EnumeratorsThatNameNothing) {
  const option_error b = refused({.backend = static_cast<backend_kind>(42)});
  EXPECT_EQ(b.option(), "backend");
  EXPECT_EQ(b.value(), "42");
  EXPECT_EQ(refused({.bind = static_cast<bind>(42)}).option(), "bind");
  EXPECT_EQ(refused({.on_error = static_cast<on_error>(42)}).option(), "on_error");
}

TEST(Options, TooManyRetries) { EXPECT_EQ(refused({.retries = 1'000'000}).option(), "retries"); }

TEST(Options, CheckedBeforeAnAsyncJobStarts) {
  std::vector<int> xs(10, 1);
  EXPECT_THROW((void)polymap::map_async(xs, [](int x) { return x; }, {.nice = 99}), option_error);
  EXPECT_THROW((void)polymap::imap(xs, [](int x) { return x; }, {.nice = 99}), option_error);
}

/// One option of each kind that check_options refuses, including what the backend asked
/// for cannot hold (decided, before, only once a backend was being chosen).
std::vector<options> bad_options() {
  return {options{.workers = 1'000'000},
          options{.nice = 99},
          options{.timeout = std::chrono::seconds(-1)},
          options{.retries = 1'000'000},
          options{.bind = bind::core, .cpus = {0}},
          options{.backend = backend::threads, .timeout = std::chrono::seconds(1)},
          options{.backend = backend::serial, .memory_limit = 1 << 30}};
}

TEST(Options, RefusedAtTheCallWhateverTheNumberOfItems) {
  std::atomic<int> calls{0};
  const auto fn = [&calls](int x) {
    calls.fetch_add(1, std::memory_order_relaxed);
    return x + 1;
  };
  // Give `fn` a history, so that a call of a few items takes map's inline path (a plain
  // loop on the caller) rather than execute(): both must refuse the same options.
  (void)polymap::explain(std::vector<int>(100'000, 1), fn);
  using Fn = std::remove_cvref_t<decltype(fn)>;  // as map() deduces it
  EXPECT_NE(detail::run_inline({}, detail::stats_for<Fn, int>(), 1), detail::inline_run::no)
      << "a call of one item does not take the inline path: that path goes untested";
  calls = 0;
  for (const std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}}) {
    for (const options& o : bad_options()) {
      std::vector<int> xs(n, 1);
      EXPECT_THROW((void)polymap::map(xs, fn, o), option_error) << n << " items";
      // At the call: a job or a stream that is never waited for must not swallow it.
      EXPECT_THROW((void)polymap::map_async(std::vector<int>(n, 1), fn, o), option_error)
          << n << " items";
      EXPECT_THROW((void)polymap::imap(xs, fn, o), option_error) << n << " items";
    }
  }
  EXPECT_EQ(calls.load(), 0) << "items ran despite a bad option";
}

TEST(Options, NegativeCountForEach) {
  EXPECT_THROW(polymap::for_each(-1, [](std::size_t) {}), option_error);
}

TEST(Options, NamesRoundTrip) {
  for (backend_kind b : all_backends) EXPECT_EQ(parse_backend(to_string(b)), b);
  EXPECT_EQ(parse_backend("automatic"), backend::automatic);
  EXPECT_FALSE(parse_backend("gpu-please").has_value());
  for (bind p : {bind::none, bind::core, bind::pu, bind::numa, bind::package, bind::cpus}) {
    EXPECT_EQ(parse_bind(to_string(p)), p);
  }
  EXPECT_FALSE(parse_bind("socket-ish").has_value());
}

}  // namespace
}  // namespace polymap
