// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
//
// The mpi backend, run by mpirun on several ranks (tests/CMakeLists.txt): every test is a
// collective, made by every rank in the same order, and checks with EXPECT only after its
// calls, so that a failure on one rank cannot leave the others waiting for it. The suite
// MpiOutsideAJob runs without mpirun.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <numeric>
#include <optional>
#include <polymap/mpi/comm.hpp>
#include <polymap/polymap.hpp>
#include <ranges>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "backends/mpi/communicator.hpp"
#include "backends/mpi/share_report.hpp"

namespace {

using polymap::backend_kind;

const polymap::options on_mpi{.backend = backend_kind::mpi};

bool under_mpirun() { return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr; }

/// Whether this run initialises MPI with MPI_THREAD_MULTIPLE (ctest's mpi.thread_multiple),
/// for two calls at once on two communicators.
bool thread_multiple_run() { return std::getenv("POLYMAP_TEST_MPI_THREAD_MULTIPLE") != nullptr; }

/// Whether this run initialises MPI with MPI_THREAD_FUNNELED (ctest's mpi.funneled).
bool funneled_run() { return std::getenv("POLYMAP_TEST_MPI_FUNNELED") != nullptr; }

/// This rank and the job's size (MPI is initialised by polymap's first call, or here).
int rank() {
  int init = 0;
  MPI_Initialized(&init);
  if (init == 0) {
    int provided = 0;
    const int level = thread_multiple_run() ? MPI_THREAD_MULTIPLE
                      : funneled_run()      ? MPI_THREAD_FUNNELED
                                            : MPI_THREAD_SERIALIZED;
    MPI_Init_thread(nullptr, nullptr, level, &provided);
    // Finalised at exit by this process, not by a worker process forked from it.
    static const pid_t initialised_by = getpid();
    std::atexit([] {
      int finalized = 0;
      if (getpid() == initialised_by && MPI_Finalized(&finalized) == MPI_SUCCESS &&
          finalized == 0) {
        MPI_Finalize();
      }
    });
  }
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int ranks() {
  (void)rank();
  int n = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

std::uint64_t sum_over_ranks(std::uint64_t mine) {
  std::uint64_t all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
  return all;
}

/// The failures of the map_error that `call` threw; none when it threw none.
template <class Call>
std::vector<polymap::item_failure> failures_of(Call&& call) {
  try {
    call();
  } catch (const polymap::map_error& e) {
    return e.failures();
  }
  return {};
}

/// What `call` threw as a polymap::error ("" when nothing), and whether it was an
/// option_error.
template <class Call>
std::pair<std::string, bool> error_of(Call&& call) {
  try {
    call();
  } catch (const polymap::option_error& e) {
    return {e.what(), true};
  } catch (const polymap::error& e) {
    return {e.what(), false};
  }
  return {"", false};
}

/// A call that rank 1 refused alone: rank 1 threw its own option_error naming `option`, every
/// other rank a polymap::error naming rank 1 and the option; and the ranks still agree on
/// the next call.
void expect_refused_by_rank_1(const std::pair<std::string, bool>& thrown, const char* option) {
  const auto& [what, option_error] = thrown;
  EXPECT_EQ(option_error, rank() == 1) << what;
  EXPECT_NE(what.find(option), std::string::npos) << what;
  if (rank() != 1) {
    EXPECT_NE(what.find("rank 1"), std::string::npos) << what;
  }
  EXPECT_EQ(polymap::map(
                std::vector<int>(64, 2), [](int x) { return x + 1; }, on_mpi),
            std::vector<int>(64, 3));
}

class Mpi : public testing::Test {
 protected:
  void SetUp() override {
    if (!under_mpirun()) GTEST_SKIP() << "runs under mpirun (ctest runs it so)";
    // The test initialises MPI, whatever runs first (MpiInit covers polymap's own).
    (void)rank();
  }
};

TEST_F(Mpi, EveryRankGetsTheWholeResultAndEveryItemRanOnce) {
  constexpr std::size_t n = 10007;  // a prime: no chunk size divides it
  std::vector<std::int64_t> xs(n);
  std::iota(xs.begin(), xs.end(), -5000);
  std::atomic<std::uint64_t> ran_here{0};
  const auto ys = polymap::map(
      xs,
      [&](std::int64_t x) {
        ran_here.fetch_add(1, std::memory_order_relaxed);
        return x * x - 3;
      },
      on_mpi);
  ASSERT_EQ(ys.size(), n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(ys[i], xs[i] * xs[i] - 3) << "item " << i;
  EXPECT_EQ(sum_over_ranks(ran_here.load()), n);
}

TEST_F(Mpi, EveryOtherRankRunsAShare) {
  // Results say which rank made them. The farm hands chunks to whoever asks: a rank that
  // comes late may find them all gone, so the ranks start together and each item takes 2 ms
  // (a worker's first chunk, about 80 items, lasts far longer than the others take to ask).
  // Rank 0 runs chunks of its own only between answers, and may hand out every item first.
  const int me = rank();
  std::vector<int> xs(1000, 0);
  MPI_Barrier(MPI_COMM_WORLD);
  const auto made_by = polymap::map(
      xs,
      [me](int) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        return me;
      },
      on_mpi);
  const std::set<int> makers(made_by.begin(), made_by.end());
  for (int r = 1; r < ranks(); ++r) EXPECT_EQ(makers.count(r), 1U) << "rank " << r;
}

TEST_F(Mpi, ForEachRunsEveryIndexOnceOverAllRanks) {
  constexpr std::size_t n = 5000;
  std::vector<int> runs(n, 0);  // this rank's count of each index
  polymap::for_each(
      n, [&](std::size_t i) { ++runs[i]; }, on_mpi);
  std::vector<int> all(n, 0);
  MPI_Allreduce(runs.data(), all.data(), static_cast<int>(n), MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(all[i], 1) << "index " << i;
}

TEST_F(Mpi, NoItemsAndOneItem) {
  const std::vector<double> none;
  EXPECT_TRUE(polymap::map(
                  none, [](double x) { return x + 1; }, on_mpi)
                  .empty());
  const std::vector<double> one{2.5};
  const auto r = polymap::map(
      one, [](double x) { return x * 2; }, on_mpi);
  ASSERT_EQ(r.size(), 1U);
  EXPECT_EQ(r[0], 5.0);
}

TEST_F(Mpi, LargeResultsCrossInFull) {
  constexpr std::size_t n = 3'000'001;  // 24 MB of results: several chunks of megabytes
  std::vector<std::uint32_t> xs(n);
  std::iota(xs.begin(), xs.end(), 0U);
  std::vector<double> out(n, -1.0);
  polymap::map_into(
      xs, out, [](std::uint32_t x) { return 0.5 * x; }, on_mpi);
  std::size_t wrong = 0;
  for (std::size_t i = 0; i < n; ++i) wrong += out[i] != 0.5 * static_cast<double>(i) ? 1 : 0;
  EXPECT_EQ(wrong, 0U);
}

TEST_F(Mpi, AFailureFailsTheCallOnEveryRank) {
  std::vector<int> xs(2000);
  std::iota(xs.begin(), xs.end(), 0);
  const auto failures = failures_of([&] {
    (void)polymap::map(
        xs,
        [](int x) {
          if (x == 1234) throw std::runtime_error("item 1234 is bad");
          return x;
        },
        on_mpi);
  });
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].index, 1234U);
  EXPECT_NE(failures[0].what.find("item 1234 is bad"), std::string::npos);
  EXPECT_EQ(failures[0].kind, polymap::failure_kind::exception);
}

TEST_F(Mpi, AFailFastFailureStopsTheOtherRanks) {
  // Item 0 fails at once; every other item takes 1 ms. The ranks hear of the failure between
  // their chunks (guided: the first are a twelfth of the items on three ranks), so they run
  // a few chunks, never the seconds of work the rest would take.
  constexpr std::size_t n = 6000;
  std::vector<int> xs(n);
  std::iota(xs.begin(), xs.end(), 0);
  std::atomic<std::uint64_t> ran_here{0};
  const auto failures = failures_of([&] {
    (void)polymap::map(
        xs,
        [&](int x) {
          ran_here.fetch_add(1, std::memory_order_relaxed);
          if (x == 0) throw std::runtime_error("first item");
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          return x;
        },
        on_mpi);
  });
  // EXPECT only: the sum below is a collective every rank must reach.
  EXPECT_EQ(failures.size(), 1U);
  EXPECT_TRUE(failures.empty() || failures[0].index == 0U);
  EXPECT_LT(sum_over_ranks(ran_here.load()), n / 2);
}

TEST_F(Mpi, CollectListsEveryFailureAndKeepsTheOtherResults) {
  std::vector<int> xs(3000);
  std::iota(xs.begin(), xs.end(), 0);
  polymap::options o = on_mpi;
  o.on_error = polymap::on_error::collect;
  bool thrown = false;
  try {
    (void)polymap::map(
        xs,
        [](int x) {
          if (x % 500 == 7) throw std::runtime_error("bad " + std::to_string(x));
          return 3 * x;
        },
        o);
  } catch (const polymap::map_error& e) {
    thrown = true;
    std::vector<std::size_t> failed;
    for (const auto& f : e.failures()) failed.push_back(f.index);
    EXPECT_EQ(failed, (std::vector<std::size_t>{7, 507, 1007, 1507, 2007, 2507}));
    const auto& results = e.results<int>();
    ASSERT_EQ(results.size(), xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) {
      if (i % 500 == 7) {
        EXPECT_FALSE(results[i].has_value()) << i;
      } else {
        EXPECT_EQ(results[i].value_or(-1), 3 * static_cast<int>(i)) << i;
      }
    }
  }
  EXPECT_TRUE(thrown);
}

TEST_F(Mpi, ACancelOnOneRankCancelsEveryRank) {
  std::stop_source stop;
  if (rank() == ranks() - 1) stop.request_stop();
  polymap::options o = on_mpi;
  o.stop = stop.get_token();
  // Items that take a while: the cancel crosses in the first exchange, long before the
  // others could finish every item (a cancel that comes after the last item changes nothing).
  std::vector<int> xs(2'000, 1);
  bool cancelled = false;
  try {
    (void)polymap::map(
        xs,
        [](int x) {
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
          return x;
        },
        o);
  } catch (const polymap::cancelled_error&) {
    cancelled = true;
  }
  EXPECT_TRUE(cancelled);
}

TEST_F(Mpi, ResultsWithACodecCrossEncoded) {
  const int me = rank();
  std::vector<int> xs(3001);
  std::iota(xs.begin(), xs.end(), 0);
  // Strings of every length from 0 to 36 after the rank that made each.
  const auto texts = polymap::map(
      xs,
      [me](int x) {
        return std::to_string(me) + ":" +
               std::string(static_cast<std::size_t>(x % 37), static_cast<char>('a' + x % 26));
      },
      on_mpi);
  ASSERT_EQ(texts.size(), xs.size());
  std::set<char> makers;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    const std::string& t = texts[i];
    ASSERT_GE(t.size(), 2U) << i;
    makers.insert(t[0]);  // which ranks ran items: see EveryOtherRankRunsAShare
    EXPECT_EQ(t.substr(2), std::string(i % 37, static_cast<char>('a' + i % 26))) << i;
  }
  EXPECT_LE(makers.size(), static_cast<std::size_t>(ranks()));
  // Results in optional slots (bool) cross too.
  const auto odd = polymap::map(
      xs, [](int x) { return x % 2 == 1; }, on_mpi);
  for (std::size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(odd[i], i % 2 == 1) << i;
  // A vector per item, and a failure among them under collect: the others still arrive.
  polymap::options o = on_mpi;
  o.on_error = polymap::on_error::collect;
  bool thrown = false;
  try {
    (void)polymap::map(
        xs,
        [](int x) {
          if (x == 1500) throw std::runtime_error("no vector for 1500");
          return std::vector<double>(static_cast<std::size_t>(x % 5), 0.5 * x);
        },
        o);
  } catch (const polymap::map_error& e) {
    thrown = true;
    ASSERT_EQ(e.failures().size(), 1U);
    EXPECT_EQ(e.failures()[0].index, 1500U);
    const auto& partial = e.results<std::vector<double>>();
    for (std::size_t i = 0; i < xs.size(); ++i) {
      if (i == 1500) {
        EXPECT_FALSE(partial[i].has_value());
        continue;
      }
      ASSERT_TRUE(partial[i].has_value()) << i;
      EXPECT_EQ(*partial[i], std::vector<double>(i % 5, 0.5 * static_cast<double>(i))) << i;
    }
  }
  EXPECT_TRUE(thrown);
}

TEST_F(Mpi, LargeEncodedResultsCrossWhileRankZeroGoesOn) {
  // Chunks of encoded results far above the eager limit: rank 0 takes them as they come,
  // one chunk per rank at a time, and every result arrives whole, on rank 0 alone too.
  std::vector<int> xs(601);
  std::iota(xs.begin(), xs.end(), 0);
  const auto make = [](int x) {
    return std::string(static_cast<std::size_t>(20000 + x), static_cast<char>('A' + x % 26));
  };
  for (const auto where : {polymap::mpi::results::every_rank, polymap::mpi::results::rank0}) {
    polymap::options o = on_mpi;
    o.results = where;
    o.chunk = 7;
    const auto texts = polymap::map(xs, make, o);
    if (where == polymap::mpi::results::rank0 && rank() != 0) {
      EXPECT_TRUE(texts.empty());
      continue;
    }
    ASSERT_EQ(texts.size(), xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) {
      EXPECT_EQ(texts[i], make(static_cast<int>(i))) << "item " << i;
    }
  }
}

/// A result whose codec counts its decodes on this rank, and cannot encode the value 4321.
struct counted {
  std::string text;
};

std::atomic<int> decodes{0};

}  // namespace

template <>
struct polymap::codec<counted> {
  static void encode(const counted& c, std::string& out) {
    if (c.text == "4321") throw std::runtime_error("4321 has no bytes");
    out.append(c.text);
  }
  static counted decode(std::string_view bytes) {
    decodes.fetch_add(1, std::memory_order_relaxed);
    return counted{std::string(bytes)};
  }
};

namespace {

TEST_F(Mpi, EachEncodedResultCrossesOnceAndOneThatCannotBeEncodedFails) {
  const int me = rank();
  std::vector<int> xs(5000);
  std::iota(xs.begin(), xs.end(), 0);
  polymap::options o = on_mpi;
  o.on_error = polymap::on_error::collect;
  decodes = 0;
  std::vector<std::optional<counted>> results;
  std::size_t failed_index = 0;
  try {
    (void)polymap::map(
        xs, [me](int x) { return counted{x == 4321 ? "4321" : std::to_string(me)}; }, o);
  } catch (const polymap::map_error& e) {
    ASSERT_EQ(e.failures().size(), 1U);
    failed_index = e.failures()[0].index;
    EXPECT_NE(e.failures()[0].what.find("could not encode"), std::string::npos)
        << e.failures()[0].what;
    results = e.results<counted>();
  }
  if (ranks() == 1) {  // nothing crosses: no codec runs
    EXPECT_EQ(decodes.load(), 0);
    return;
  }
  EXPECT_EQ(failed_index, 4321U);
  ASSERT_EQ(results.size(), xs.size());
  // Rank 0 decodes each result another rank made once, and none of its own; the others
  // decode, at the end, each result rank 0 made (once) and any their codec could not send.
  std::size_t made_elsewhere = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (i == 4321) continue;
    ASSERT_TRUE(results[i].has_value()) << i;
    if (results[i]->text != "0") ++made_elsewhere;
  }
  if (me == 0) {
    EXPECT_EQ(static_cast<std::size_t>(decodes.load()), made_elsewhere);
  }
}

TEST_F(Mpi, AnOutputTooShortOnOneRankFailsTheCallOnEveryRank) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  const std::vector<int> xs(100, 1);
  std::vector<int> out(rank() == 1 ? 50 : 100);
  expect_refused_by_rank_1(error_of([&] {
                             polymap::map_into(
                                 xs, out, [](int x) { return x; }, on_mpi);
                           }),
                           "out");
}

struct no_codec {
  std::string name;
};

TEST_F(Mpi, ResultsThatCannotCrossAreRefusedOnEveryRank) {
  std::vector<int> xs(10, 1);
  try {
    (void)polymap::map(
        xs, [](int x) { return no_codec{std::to_string(x)}; }, on_mpi);
    ADD_FAILURE() << "no option_error";
  } catch (const polymap::option_error& e) {
    EXPECT_NE(std::string(e.what()).find("cross between ranks"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(polymap::detail::transferable_results),
              std::string::npos)
        << e.what();
  }
  // map_into that converts each result (int into double) keeps none to send.
  std::vector<double> out(xs.size());
  EXPECT_THROW(polymap::map_into(
                   xs, out, [](int x) { return x; }, on_mpi),
               polymap::option_error);
}

TEST_F(Mpi, RanksThatMakeDifferentCallsAllFail) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  std::vector<int> xs(100 + static_cast<std::size_t>(rank() == 0 ? 0 : 1), 1);
  const auto [what, option_error] = error_of([&] {
    (void)polymap::map(
        xs, [](int x) { return x; }, on_mpi);
  });
  EXPECT_NE(what.find("every rank must make the same call"), std::string::npos) << what;
  // The ranks still agree afterwards.
  EXPECT_EQ(polymap::map(
                std::vector<int>(64, 2), [](int x) { return x + 1; }, on_mpi),
            std::vector<int>(64, 3));
}

TEST_F(Mpi, ATimeoutRunsEachRanksShareOnWorkerProcesses) {
  polymap::run_report report;
  polymap::options o = on_mpi;
  o.timeout = std::chrono::milliseconds(300);
  o.on_error = polymap::on_error::collect;
  o.report = &report;
  std::vector<int> xs(40);
  std::iota(xs.begin(), xs.end(), 0);
  const auto failures = failures_of([&] {
    (void)polymap::map(
        xs,
        [](int x) {
          if (x == 17) std::this_thread::sleep_for(std::chrono::seconds(30));
          return x;
        },
        o);
  });
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].index, 17U);
  EXPECT_EQ(failures[0].kind, polymap::failure_kind::timeout);
  EXPECT_EQ(failures[0].backend, backend_kind::processes);
  EXPECT_EQ(report.backend, backend_kind::mpi);
  EXPECT_EQ(report.workers, static_cast<std::size_t>(ranks()));
}

/// The run_report notes of the mpi calls that the items of `outer_opts`'s map make, one
/// per item: where each ran.
std::set<std::string> notes_of_nested_calls(const polymap::options& outer_opts) {
  std::vector<int> xs(200, 2);
  std::mutex m;
  std::set<std::string> notes;
  const auto ys = polymap::map(
      xs,
      [&](int x) {
        polymap::run_report report;
        polymap::options inner_opts = on_mpi;
        inner_opts.report = &report;
        const std::vector<int> inner(3, x);
        const auto zs = polymap::map(
            inner, [](int y) { return y * 10; }, inner_opts);
        const std::lock_guard lock(m);
        notes.insert(report.note);
        return std::accumulate(zs.begin(), zs.end(), 0);
      },
      outer_opts);
  EXPECT_EQ(ys, std::vector<int>(200, 60));
  return notes;
}

TEST_F(Mpi, AMapInsideAnItemRunsInlineOnItsRank) {
  // Items of an mpi call, of a serial one (on the calling thread), of a threads one, and of
  // one automatic chooses (which samples items on the calling thread first): every inner
  // call runs inline, on every rank, whatever thread runs the item.
  const polymap::options outers[] = {
      on_mpi, {.backend = backend_kind::serial}, {.backend = backend_kind::threads}, {}};
  for (const polymap::options& outer : outers) {
    const std::set<std::string> notes = notes_of_nested_calls(outer);
    // A rank may run none of an mpi call's items (see EveryOtherRankRunsAShare).
    if (outer.backend == backend_kind::mpi && notes.empty()) continue;
    ASSERT_EQ(notes.size(), 1U) << to_string(outer.backend);
    EXPECT_NE(notes.begin()->find("nested in an item"), std::string::npos) << *notes.begin();
  }
}

TEST_F(Mpi, AnOptionRefusedOnOneRankFailsTheCallOnEveryRank) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  polymap::options o = on_mpi;
  if (rank() == 1) o.workers = 100000;  // more than polymap allows: refused there alone
  const std::vector<int> xs(1000, 1);
  expect_refused_by_rank_1(error_of([&] {
                             (void)polymap::map(
                                 xs, [](int x) { return x; }, o);
                           }),
                           "workers");
}

TEST_F(Mpi, AnAsyncCallRefusedOnOneRankFailsOnEveryRank) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  polymap::options o = on_mpi;
  if (rank() == 1) o.workers = 100000;  // refused at map_async's call, on rank 1 alone
  const std::vector<int> xs(300, 1);
  expect_refused_by_rank_1(error_of([&] {
                             auto job = polymap::map_async(
                                 std::span<const int>(xs), [](int x) { return x; }, o);
                             (void)job.get();
                           }),
                           "workers");
}

TEST_F(Mpi, DifferentFunctionsOfTheSameShapeFailOnEveryRank) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  std::vector<int> xs(500, 1);
  const auto [what, option_error] = error_of([&] {
    if (rank() == 0) {
      (void)polymap::map(
          xs, [](int x) { return x + 1; }, on_mpi);
    } else {
      (void)polymap::map(
          xs, [](int x) { return x + 2; }, on_mpi);
    }
  });
  EXPECT_NE(what.find("another function or item type"), std::string::npos) << what;
}

TEST_F(Mpi, AnItemThatExitsUnderATimeoutFailsAlone) {
  // In a worker process forked from a rank: its exit() must not finalise the rank's MPI.
  polymap::options o = on_mpi;
  o.timeout = std::chrono::seconds(60);
  o.on_error = polymap::on_error::collect;
  std::vector<int> xs(30);
  std::iota(xs.begin(), xs.end(), 0);
  const auto failures = failures_of([&] {
    (void)polymap::map(
        xs,
        [](int x) {
          if (x == 7) std::exit(3);
          return x;
        },
        o);
  });
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].index, 7U);
  EXPECT_EQ(failures[0].kind, polymap::failure_kind::exit);
  EXPECT_EQ(failures[0].exit_code, 3);
}

/// Waits until `ran` counts an item, 30 s at most (then the test goes on, and fails).
void wait_for_an_item(const std::atomic<int>& ran) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (ran.load() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GT(ran.load(), 0) << "no item ran on this rank within 30 s";
}

TEST_F(Mpi, ACancelDuringTheCallOnAWorkerRankCancelsEveryRank) {
  // The last rank cancels its job once one of its items ran; the rest would take seconds.
  std::vector<int> xs(6000, 1);
  std::atomic<int> ran{0};
  auto job = polymap::map_async(
      std::span<const int>(xs),
      [&ran](int x) {
        ran.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return x;
      },
      on_mpi);
  if (rank() == ranks() - 1) {
    wait_for_an_item(ran);
    job.cancel();
  }
  bool cancelled = false;
  try {
    (void)job.get();
  } catch (const polymap::cancelled_error&) {
    cancelled = true;
  }
  EXPECT_TRUE(cancelled);
  EXPECT_LT(sum_over_ranks(static_cast<std::uint64_t>(ran.load())), xs.size());
}

TEST_F(Mpi, AnAsyncJobDroppedOnOneRankCancelsTheCallOnEveryRank) {
  // The last rank drops its job once one of its items ran; the rest would take seconds.
  std::vector<int> xs(6000, 1);
  std::atomic<int> ran{0};
  const auto item = [&ran](int x) {
    ran.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return x;
  };
  bool cancelled = false;
  if (rank() == ranks() - 1) {
    auto job = polymap::map_async(std::span<const int>(xs), item, on_mpi);
    wait_for_an_item(ran);
    // Dropped here: its destructor cancels the call and waits for it.
  } else {
    auto job = polymap::map_async(std::span<const int>(xs), item, on_mpi);
    try {
      (void)job.get();
    } catch (const polymap::cancelled_error&) {
      cancelled = true;
    }
  }
  EXPECT_EQ(cancelled, rank() != ranks() - 1);
  EXPECT_LT(sum_over_ranks(static_cast<std::uint64_t>(ran.load())), xs.size());
}

TEST_F(Mpi, TwoRanksSendingMoreThanOneMessageHoldsToEachOtherBothGoOn) {
  // A message of more than 1 GiB goes in pieces. Sent by send_later() on two ranks to each
  // other at once, neither may wait in its send for the other's receive (as `polymap run`'s
  // rank does with a large report while rank 0 sends it an order): both then receive.
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  polymap::detail::mpi::communicator& comm = polymap::detail::mpi::communicator::get();
  if (comm.rank() < 2) {
    constexpr int tag = 99;  // none of polymap's own
    constexpr std::size_t size = (std::size_t{1} << 30) + 4096;
    const int peer = 1 - comm.rank();
    std::string out(size, static_cast<char>('a' + comm.rank()));
    out.back() = 'z';
    comm.send_later(out.data(), out.size(), peer, tag);
    std::string in;
    comm.receive(in, peer, tag);
    comm.wait_sent();
    EXPECT_EQ(in.size(), size);
    EXPECT_EQ(in.find_first_not_of(static_cast<char>('a' + peer)), size - 1);
    EXPECT_EQ(in.back(), 'z');
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_F(Mpi, AutomaticNeverChoosesMpiAndExplainSaysWhy) {
  std::vector<int> xs(1000, 1);
  const polymap::plan p = polymap::explain(xs, [](int x) { return x; });
  EXPECT_NE(p.chosen, backend_kind::mpi);
  bool listed = false;
  for (const auto& e : p.estimates) {
    if (e.backend != backend_kind::mpi) continue;
    listed = true;
    EXPECT_FALSE(e.usable);
    EXPECT_NE(e.why_not.find("collective"), std::string::npos) << e.why_not;
  }
  EXPECT_TRUE(listed);
  EXPECT_EQ(polymap::explain(
                xs, [](int x) { return x; }, on_mpi)
                .chosen,
            backend_kind::mpi);
}

/// `o` on the ranks of `comm`.
polymap::options on_comm(MPI_Comm comm, polymap::options o = on_mpi) {
  o.comm = polymap::mpi::comm(comm);
  return o;
}

TEST_F(Mpi, ResultsForRankZeroAloneStayThereAndEveryItemRunsOnce) {
  constexpr std::size_t n = 5003;
  std::vector<std::int64_t> xs(n);
  std::iota(xs.begin(), xs.end(), 7);
  polymap::options o = on_mpi;
  o.results = polymap::mpi::results::rank0;
  std::atomic<std::uint64_t> ran_here{0};
  const auto ys = polymap::map(
      xs,
      [&](std::int64_t x) {
        ran_here.fetch_add(1, std::memory_order_relaxed);
        return 3 * x;
      },
      o);
  // Encoded results (a codec), and a map_async, the same.
  const auto texts = polymap::map(
      xs, [](std::int64_t x) { return std::to_string(x); }, o);
  const auto later = polymap::map_async(
                         xs, [](std::int64_t x) { return x - 1; }, o)
                         .get();
  EXPECT_EQ(sum_over_ranks(ran_here.load()), n);
  if (rank() == 0) {
    ASSERT_EQ(ys.size(), n);
    ASSERT_EQ(texts.size(), n);
    ASSERT_EQ(later.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_EQ(ys[i], 3 * xs[i]) << "item " << i;
      EXPECT_EQ(texts[i], std::to_string(xs[i])) << "item " << i;
      EXPECT_EQ(later[i], xs[i] - 1) << "item " << i;
    }
  } else {
    EXPECT_TRUE(ys.empty());
    EXPECT_TRUE(texts.empty());
    EXPECT_TRUE(later.empty());
  }
}

TEST_F(Mpi, ResultsForRankZeroAloneWithFailuresGiveEveryRankTheFailures) {
  std::vector<int> xs(1500);
  std::iota(xs.begin(), xs.end(), 0);
  polymap::options o = on_mpi;
  o.results = polymap::mpi::results::rank0;
  o.on_error = polymap::on_error::collect;
  std::vector<std::optional<int>> partial;
  std::vector<polymap::item_failure> failures;
  try {
    (void)polymap::map(
        xs,
        [](int x) {
          if (x % 500 == 7) throw std::runtime_error("bad " + std::to_string(x));
          return x * 2;
        },
        o);
  } catch (const polymap::map_error& e) {
    failures = e.failures();
    partial = e.results<int>();
  }
  ASSERT_EQ(failures.size(), 3U);
  EXPECT_EQ(failures[1].index, 507U);
  ASSERT_EQ(partial.size(), xs.size());
  std::size_t present = 0;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (!partial[i]) continue;
    ++present;
    EXPECT_EQ(*partial[i], 2 * xs[i]) << "item " << i;
  }
  EXPECT_EQ(present, rank() == 0 ? xs.size() - 3 : 0U);
}

/// This process's resident memory in bytes (VmRSS of /proc/self/status); 0 when unknown.
std::size_t resident_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

TEST_F(Mpi, ResultsForRankZeroAloneCostEveryOtherRankMemoryForItsOwnItemsAlone) {
  // 512 MiB of results, 4 KiB each. A rank but 0 writes its items' results where no page
  // was touched before: its memory grows by what its own items return, not by all of it.
  using page_of_results = std::array<std::uint64_t, 512>;
  constexpr std::size_t n = std::size_t{1} << 17;
  constexpr std::size_t chunk = 4096;  // 16 MiB of results: a few huge pages at its ends
  polymap::options o = on_mpi;
  o.results = polymap::mpi::results::rank0;
  o.chunk = chunk;
  std::atomic<std::size_t> ran{0};
  std::atomic<std::size_t> most{0};  // the most memory this rank held while its items ran
  const std::size_t before = resident_bytes();
  const auto ys = polymap::map(
      std::views::iota(std::size_t{0}, n),
      [&](std::size_t i) {
        ran.fetch_add(1, std::memory_order_relaxed);
        if (i % 1024 == 0) {
          const std::size_t now = resident_bytes();
          std::size_t seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
        }
        page_of_results r;
        r.fill(3 * i);
        return r;
      },
      o);
  EXPECT_EQ(sum_over_ranks(ran.load()), n);
  ASSERT_GT(before, 0U) << "no VmRSS in /proc/self/status";
  if (rank() == 0) {
    ASSERT_EQ(ys.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(ys[i].front(), 3 * i) << "item " << i;
      ASSERT_EQ(ys[i].back(), 3 * i) << "item " << i;
    }
  } else {
    EXPECT_TRUE(ys.empty());
    // Its own results, a 2 MiB page at either end of each chunk, and 64 MiB for the rest
    // (MPI's buffers, threads): all results would be 512 MiB.
    const std::size_t own = ran.load() * sizeof(page_of_results);
    const std::size_t bound = own + (own / (chunk * sizeof(page_of_results)) + 1) * (4 << 20) +
                              (std::size_t{64} << 20);
    ASSERT_GT(most.load(), 0U) << "no item of this rank took a sample";
    EXPECT_LE(most.load() - std::min(most.load(), before), bound)
        << "ran " << ran.load() << " of " << n << " items";
  }
}

TEST_F(Mpi, RanksThatWantTheResultsInDifferentPlacesAllFail) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  polymap::options o = on_mpi;
  if (rank() == 1) o.results = polymap::mpi::results::rank0;
  const auto [what, option_error] = error_of([&] {
    (void)polymap::map(
        std::vector<int>(100, 1), [](int x) { return x; }, o);
  });
  EXPECT_FALSE(option_error);
  EXPECT_NE(what.find("every rank must make the same call"), std::string::npos) << what;
  EXPECT_NE(what.find("for rank 0 alone"), std::string::npos) << what;
  EXPECT_EQ(polymap::map(
                std::vector<int>(64, 2), [](int x) { return x + 1; }, on_mpi),
            std::vector<int>(64, 3));
}

TEST_F(Mpi, ACommunicatorOfTheProgramsSharesACallAmongItsRanksAlone) {
  // Two groups, even and odd ranks, each making a call of its own at the same time; the
  // odd group keeps its results on its rank 0 (world rank 1).
  const int me = rank();
  MPI_Comm group = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, me % 2, me, &group);
  int group_rank = 0;
  int group_size = 0;
  MPI_Comm_rank(group, &group_rank);
  MPI_Comm_size(group, &group_size);
  const std::size_t n = me % 2 == 0 ? 2001 : 999;  // the groups' calls differ
  std::vector<int> xs(n);
  std::iota(xs.begin(), xs.end(), 0);
  polymap::options o = on_comm(group);
  if (me % 2 == 1) o.results = polymap::mpi::results::rank0;
  polymap::run_report report;
  o.report = &report;
  std::atomic<std::uint64_t> ran_here{0};
  const auto ys = polymap::map(
      xs,
      [&](int x) {
        ran_here.fetch_add(1, std::memory_order_relaxed);
        return std::vector<int>{x, me % 2};
      },
      o);
  std::uint64_t ran_in_group = 0;
  const std::uint64_t mine = ran_here.load();
  MPI_Allreduce(&mine, &ran_in_group, 1, MPI_UINT64_T, MPI_SUM, group);
  EXPECT_EQ(ran_in_group, n);
  EXPECT_NE(report.note.find("rank " + std::to_string(group_rank) + " of " +
                             std::to_string(group_size)),
            std::string::npos)
      << report.note;
  if (me % 2 == 0 || group_rank == 0) {
    ASSERT_EQ(ys.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_EQ(ys[i], (std::vector<int>{xs[i], me % 2})) << "item " << i;
    }
  } else {
    EXPECT_TRUE(ys.empty());
  }
  MPI_Comm_free(&group);
}

TEST_F(Mpi, ARankLeftOutOfACommunicatorIsToldSo) {
  // The last rank is in no group: MPI_Comm_split gives it MPI_COMM_NULL.
  const int me = rank();
  const bool left_out = me == ranks() - 1 && ranks() > 1;
  MPI_Comm group = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, left_out ? MPI_UNDEFINED : 0, me, &group);
  std::vector<int> xs(300, 4);
  const auto [what, option_error] = error_of([&] {
    const auto ys = polymap::map(
        xs, [](int x) { return x * x; }, on_comm(group));
    EXPECT_EQ(ys, std::vector<int>(300, 16));
  });
  if (left_out) {
    EXPECT_TRUE(option_error);
    EXPECT_NE(what.find("comm"), std::string::npos) << what;
    EXPECT_NE(what.find("MPI_COMM_NULL"), std::string::npos) << what;
  } else {
    EXPECT_EQ(what, "");
    MPI_Comm_free(&group);
  }
}

TEST_F(Mpi, OnMpiCommSelfEachRankRunsACallOfItsOwn) {
  // Each rank alone: a call of 500 items on one rank, whatever the others do meanwhile (here
  // calls of other sizes).
  const std::size_t n = 500 + static_cast<std::size_t>(rank());
  std::vector<int> xs(n);
  std::iota(xs.begin(), xs.end(), 0);
  polymap::run_report report;
  polymap::options o = on_comm(MPI_COMM_SELF);
  o.report = &report;
  std::atomic<std::size_t> ran_here{0};
  const auto ys = polymap::map(
      xs,
      [&ran_here](int x) {
        ran_here.fetch_add(1, std::memory_order_relaxed);
        return 3 * x;
      },
      o);
  ASSERT_EQ(ys.size(), n);
  for (std::size_t i = 0; i < n; ++i) EXPECT_EQ(ys[i], 3 * xs[i]) << "item " << i;
  EXPECT_EQ(ran_here.load(), n);
  EXPECT_NE(report.note.find("rank 0 of 1"), std::string::npos) << report.note;
}

TEST_F(Mpi, AnIntercommunicatorIsAnOptionError) {
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  // Even ranks and odd ranks, joined by an intercommunicator between the groups' leaders
  // (world ranks 0 and 1).
  const int me = rank();
  MPI_Comm group = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, me % 2, me, &group);
  MPI_Comm inter = MPI_COMM_NULL;
  MPI_Intercomm_create(group, 0, MPI_COMM_WORLD, me % 2 == 0 ? 1 : 0, 17, &inter);
  (void)polymap::map(
      std::vector<int>(50, 1), [](int x) { return x; }, on_mpi);  // frees what was freed
  const std::size_t before = polymap::detail::mpi::communicator::alive();
  const auto [what, option_error] = error_of([&] {
    (void)polymap::map(
        std::vector<int>(50, 1), [](int x) { return x; }, on_comm(inter));
  });
  EXPECT_TRUE(option_error) << what;
  EXPECT_NE(what.find("comm"), std::string::npos) << what;
  EXPECT_NE(what.find("intercommunicator"), std::string::npos) << what;
  EXPECT_EQ(polymap::detail::mpi::communicator::alive(), before);  // nothing duplicated
  // map_async refuses it on the calling thread, before any job starts.
  bool job_started = false;
  const auto [async_what, async_option_error] = error_of([&] {
    auto job = polymap::map_async(
        std::vector<int>(50, 1), [](int x) { return x; }, on_comm(inter));
    job_started = true;
    (void)job.get();
  });
  EXPECT_FALSE(job_started);
  EXPECT_TRUE(async_option_error) << async_what;
  EXPECT_NE(async_what.find("intercommunicator"), std::string::npos) << async_what;
  MPI_Comm_free(&inter);
  MPI_Comm_free(&group);
}

TEST_F(Mpi, TheDuplicateOfACommunicatorGoesWithIt) {
  // MPI_COMM_WORLD named, and one duplicate of the program's after another, each freed.
  std::vector<int> xs(200, 1);
  EXPECT_EQ(polymap::map(
                xs, [](int x) { return x + 1; }, on_comm(MPI_COMM_WORLD)),
            std::vector<int>(200, 2));
  const std::size_t before = polymap::detail::mpi::communicator::alive();
  for (int round = 0; round < 40; ++round) {
    MPI_Comm mine = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &mine);
    const polymap::options o = on_comm(mine);
    EXPECT_EQ(polymap::map(
                  xs, [round](int x) { return x + round; }, o),
              std::vector<int>(200, 1 + round));
    // One duplicate of it, kept for the next call; the last round's went at this call.
    EXPECT_EQ(polymap::detail::mpi::communicator::alive(), before + 1) << "round " << round;
    EXPECT_EQ(polymap::map(
                  xs, [round](int x) { return x - round; }, o),
              std::vector<int>(200, 1 - round));
    EXPECT_EQ(polymap::detail::mpi::communicator::alive(), before + 1) << "round " << round;
    MPI_Comm_free(&mine);
  }
  (void)polymap::map(
      xs, [](int x) { return x; }, on_mpi);  // frees what the program freed
  EXPECT_EQ(polymap::detail::mpi::communicator::alive(), before);
}

/// Why a test that needs MPI at thread level `wanted` cannot run in this process ("" when
/// it can): ctest's entry `entry` initialises MPI so; in that run, another level fails the test.
std::string needs_level(int wanted, bool this_run_asks_it, const char* entry) {
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  if (level == wanted) return "";
  if (this_run_asks_it) ADD_FAILURE() << "MPI was not initialised at the level this run asks";
  return std::string("MPI at another thread level (ctest's ") + entry + " has the one needed)";
}

TEST_F(Mpi, TwoCallsAtOnceOnTwoCommunicatorsRunTogetherUnderThreadMultiple) {
  const std::string why =
      needs_level(MPI_THREAD_MULTIPLE, thread_multiple_run(), "mpi.thread_multiple");
  if (!why.empty()) GTEST_SKIP() << why;
  MPI_Comm first = MPI_COMM_NULL;
  MPI_Comm second = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &first);
  MPI_Comm_dup(MPI_COMM_WORLD, &second);
  // The first call's items wait (up to 20 s) until the second call has returned here: it
  // can only when the two run at once, on every rank.
  std::atomic<bool> second_done{false};
  std::string errors[2];
  std::thread other([&] {
    try {
      const auto ys = polymap::map(
          std::vector<int>(300, 2), [](int x) { return x + 1; }, on_comm(second));
      if (ys != std::vector<int>(300, 3)) errors[1] = "wrong results";
    } catch (const std::exception& e) {
      errors[1] = e.what();
    }
    second_done.store(true);
  });
  try {
    const auto ys = polymap::map(
        std::vector<int>(40, 1),
        [&](int x) {
          const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
          while (!second_done.load() && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          return second_done.load() ? x : -1;
        },
        on_comm(first, {.backend = backend_kind::mpi, .workers = 1}));
    if (ys != std::vector<int>(40, 1)) errors[0] = "an item waited in vain";
  } catch (const std::exception& e) {
    errors[0] = e.what();
  }
  other.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  MPI_Comm_free(&first);
  MPI_Comm_free(&second);
}

/// What a second call with `second_options`, made by another thread while a call on
/// MPI_COMM_WORLD runs here, threw: the first call's items wait until the second returned.
/// The second is refused before any message, so no rank waits for it. Every rank runs items
/// of the first call: one at a time, of 15 ms each, from a start together (some 0.3 s of
/// them a rank on three ranks: a rank would have to wait for its first for most of a second).
std::string second_call_at_once(const polymap::options& second_options,
                                const polymap::options& first_options = on_mpi) {
  // Every rank in the call and at its start together, and items long enough that no rank
  // runs them all before another asks for one.
  EXPECT_EQ(polymap::map(
                std::vector<int>(64, 1), [](int x) { return x; }, on_mpi),
            std::vector<int>(64, 1));
  MPI_Barrier(MPI_COMM_WORLD);
  polymap::options one_worker = first_options;
  one_worker.workers = 1;
  one_worker.chunk = 1;
  std::atomic<bool> refused{false};
  std::string second_error;
  std::thread second;
  std::once_flag once;
  const auto ys = polymap::map(
      std::vector<int>(60, 1),
      [&](int x) {
        std::call_once(once, [&] {
          second = std::thread([&] {
            second_error = error_of([&] {
                             (void)polymap::map(
                                 std::vector<int>(5, 1), [](int y) { return y; }, second_options);
                           }).first;
            refused.store(true);
          });
        });
        while (!refused.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(15));
        return x;
      },
      one_worker);
  EXPECT_EQ(ys, std::vector<int>(60, 1));
  if (!second.joinable()) {
    ADD_FAILURE() << "this rank ran no item of the first call";
    return {};
  }
  second.join();
  return second_error;
}

TEST_F(Mpi, ASecondCallAtOnceIsRefusedWithoutThreadMultiple) {
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  if (level == MPI_THREAD_MULTIPLE) GTEST_SKIP() << "MPI with MPI_THREAD_MULTIPLE";
  MPI_Comm mine = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &mine);
  const std::string what = second_call_at_once(on_comm(mine));
  EXPECT_NE(what.find("MPI_THREAD_MULTIPLE"), std::string::npos) << what;
  MPI_Comm_free(&mine);
}

TEST_F(Mpi, TwoCallsAtOnceOnOneCommunicatorAreRefused) {
  const std::string what = second_call_at_once(on_mpi);
  EXPECT_NE(what.find("another call"), std::string::npos) << what;
  // The same on a communicator of the program's, whose duplicate the first call made.
  MPI_Comm mine = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &mine);
  const std::string again = second_call_at_once(on_comm(mine), on_comm(mine));
  EXPECT_NE(again.find("another call"), std::string::npos) << again;
  MPI_Comm_free(&mine);
}

TEST_F(Mpi, TwoCallsAtOnceWhileTheDuplicateIsBeingMadeAreRefusedOnce) {
  const std::string why =
      needs_level(MPI_THREAD_MULTIPLE, thread_multiple_run(), "mpi.thread_multiple");
  if (!why.empty()) GTEST_SKIP() << why;
  if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
  // Rank 0 makes two first calls on a new communicator from two threads. The duplicate that
  // the first makes (collectively) cannot be done before the other ranks call, which they
  // do only once rank 0 saw one of its two refused: the other call finds it being made.
  MPI_Comm mine = MPI_COMM_NULL;
  MPI_Comm_dup(MPI_COMM_WORLD, &mine);
  const polymap::options o = on_comm(mine);
  const std::vector<int> xs(100, 3);
  const auto call = [&] {
    return error_of([&] {
      const auto ys = polymap::map(
          xs, [](int x) { return x * 2; }, o);
      if (ys != std::vector<int>(100, 6)) throw polymap::error("wrong results");
    });
  };
  if (rank() == 0) {
    std::pair<std::string, bool> thrown[2];
    std::atomic<int> refused{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 2; ++t) {
      threads.emplace_back([&, t] {
        thrown[t] = call();
        if (!thrown[t].first.empty()) refused.fetch_add(1);
      });
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (refused.load() == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_EQ(refused.load(), 1) << "no call refused within 30 s";
    for (int r = 1; r < ranks(); ++r) MPI_Send(nullptr, 0, MPI_BYTE, r, 23, MPI_COMM_WORLD);
    for (auto& t : threads) t.join();
    EXPECT_EQ(refused.load(), 1) << "calls of the two refused";
    const std::string& what = thrown[0].first.empty() ? thrown[1].first : thrown[0].first;
    EXPECT_NE(what.find("another call"), std::string::npos) << what;
  } else {
    MPI_Recv(nullptr, 0, MPI_BYTE, 0, 23, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    EXPECT_EQ(call().first, "");
  }
  MPI_Comm_free(&mine);
}

TEST_F(Mpi, UnderFunneledOnlyTheMainThreadMakesACall) {
  const std::string why = needs_level(MPI_THREAD_FUNNELED, funneled_run(), "mpi.funneled");
  if (!why.empty()) GTEST_SKIP() << why;
  // A call from another thread is refused on each rank by itself, before any message.
  const auto unavailable = [](auto&& call) {
    try {
      call();
    } catch (const polymap::backend_unavailable& e) {
      return std::string(e.what());
    } catch (const std::exception& e) {
      return "not backend_unavailable: " + std::string(e.what());
    }
    return std::string("nothing thrown");
  };
  const std::vector<int> xs(64, 2);
  std::string what;
  std::thread other([&] {
    what = unavailable([&] {
      (void)polymap::map(
          xs, [](int x) { return x + 1; }, on_mpi);
    });
  });
  other.join();
  EXPECT_NE(what.find("main thread"), std::string::npos) << what;
  EXPECT_NE(what.find("MPI_THREAD_FUNNELED"), std::string::npos) << what;
  // map_async's job runs on a thread of its own: the same at its get().
  const std::string async_what = unavailable([&] {
    auto job = polymap::map_async(
        std::span<const int>(xs), [](int x) { return x + 1; }, on_mpi);
    (void)job.get();
  });
  EXPECT_NE(async_what.find("main thread"), std::string::npos) << async_what;
  // The main thread's calls run, and the ranks still agree.
  EXPECT_EQ(polymap::map(
                xs, [](int x) { return x + 1; }, on_mpi),
            std::vector<int>(64, 3));
}

TEST(MpiInit, TheFirstCallInitialisesMpiWhenTheProgramHasNot) {
  // Run first, on its own (ctest's mpi.polymap_initialises): every other test initialises
  // MPI itself.
  if (!under_mpirun()) GTEST_SKIP() << "runs under mpirun (ctest runs it so)";
  int init = 1;
  MPI_Initialized(&init);
  ASSERT_EQ(init, 0) << "run this test first, alone";
  EXPECT_EQ(polymap::map(
                std::vector<int>(100, 3), [](int x) { return 2 * x; }, on_mpi),
            std::vector<int>(100, 6));
  MPI_Initialized(&init);
  EXPECT_EQ(init, 1);
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  EXPECT_EQ(level, MPI_THREAD_SERIALIZED);
  EXPECT_EQ(sum_over_ranks(1), static_cast<std::uint64_t>(ranks()));
}

TEST(MpiExit, AnItemThatExitsEndsTheJobWhenPolymapInitialisedMpi) {
  // Run alone (ctest's mpi.an_item_exits), which passes when rank 1 said it exits and no
  // call returned, within its timeout: finalising MPI at that exit waited for ever for
  // ranks that waited for rank 1.
  if (std::getenv("POLYMAP_TEST_MPI_EXIT") == nullptr) {
    GTEST_SKIP() << "run by ctest's mpi.an_item_exits alone";
  }
  const char* world_rank = std::getenv("OMPI_COMM_WORLD_RANK");
  const bool exits = world_rank != nullptr && std::string(world_rank) == "1";
  (void)polymap::map(std::vector<int>(400, 1), [exits](int x) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (exits) {
      std::printf("an item exits on rank 1\n");
      std::fflush(stdout);
      std::exit(0);
    }
    return x;
  }, on_mpi);
  std::printf("the call returned\n");
}

TEST(MpiOutsideAJob, ACommunicatorBeforeMpiInitIsAnOptionError) {
  if (under_mpirun()) GTEST_SKIP() << "runs without mpirun";
  EXPECT_EQ(polymap::mpi::comm(MPI_COMM_WORLD), polymap::mpi::comm_handle{});
  const auto [what, option_error] = error_of([] { (void)polymap::mpi::comm(MPI_COMM_SELF); });
  EXPECT_TRUE(option_error);
  EXPECT_NE(what.find("MPI_Init"), std::string::npos) << what;
  int init = 1;
  MPI_Initialized(&init);
  EXPECT_EQ(init, 0);
}

TEST(MpiOptions, CommAndResultsAskForTheMpiBackend) {
  std::vector<int> xs(10, 1);
  const auto [comm_what, comm_option] = error_of([&] {
    (void)polymap::map(
        xs, [](int x) { return x; },
        {.backend = backend_kind::threads, .comm = polymap::mpi::comm_handle{3}});
  });
  EXPECT_TRUE(comm_option);
  EXPECT_NE(comm_what.find("comm"), std::string::npos) << comm_what;
  EXPECT_NE(comm_what.find("threads"), std::string::npos) << comm_what;
  const auto [results_what, results_option] = error_of([&] {
    (void)polymap::map(
        xs, [](int x) { return x; }, {.results = polymap::mpi::results::rank0});
  });
  EXPECT_TRUE(results_option);
  EXPECT_NE(results_what.find("results"), std::string::npos) << results_what;
  EXPECT_NE(results_what.find("automatic"), std::string::npos) << results_what;
  const auto [bad_what, bad_option] = error_of([&] {
    (void)polymap::map(
        xs, [](int x) { return x; },
        {.backend = backend_kind::mpi, .results = static_cast<polymap::mpi::results>(7)});
  });
  EXPECT_TRUE(bad_option);
  EXPECT_NE(bad_what.find("every_rank or rank0"), std::string::npos) << bad_what;
}

TEST(ShareReport, RoundTripsAndRefusesWhatIsNotOne) {
  polymap::detail::mpi::share_report r;
  r.begin = 3;
  r.end = 77;
  r.result_size = 8;
  r.call_type = 0x1234567890abcdefULL;
  r.chunk = {10, 20};
  r.done = 9;
  r.stopping = true;
  r.results_to_rank0 = true;
  r.error = "why";
  r.ranges = {{10, 12}, {13, 20}};
  r.failures.push_back({.index = 12,
                        .backend = backend_kind::processes,
                        .kind = polymap::failure_kind::signal,
                        .what = std::string("killed\0by", 9),
                        .signal = 11,
                        .exit_code = 0,
                        .attempts = 2});
  std::string bytes;
  encode(r, bytes);
  const auto back = polymap::detail::mpi::decode(bytes);
  EXPECT_EQ(back.begin, 3U);
  EXPECT_EQ(back.end, 77U);
  EXPECT_EQ(back.result_size, 8U);
  EXPECT_EQ(back.call_type, 0x1234567890abcdefULL);
  EXPECT_EQ(back.chunk.begin, 10U);
  EXPECT_EQ(back.chunk.end, 20U);
  EXPECT_EQ(back.done, 9U);
  EXPECT_TRUE(back.stopping);
  EXPECT_FALSE(back.cancelled);
  EXPECT_TRUE(back.results_to_rank0);
  EXPECT_EQ(back.error, "why");
  ASSERT_EQ(back.ranges.size(), 2U);
  EXPECT_EQ(back.ranges[1].begin, 13U);
  EXPECT_EQ(back.ranges[1].end, 20U);
  ASSERT_EQ(back.failures.size(), 1U);
  EXPECT_EQ(back.failures[0].index, 12U);
  EXPECT_EQ(back.failures[0].backend, backend_kind::processes);
  EXPECT_EQ(back.failures[0].kind, polymap::failure_kind::signal);
  EXPECT_EQ(back.failures[0].what, std::string("killed\0by", 9));
  EXPECT_EQ(back.failures[0].signal, 11);
  EXPECT_EQ(back.failures[0].attempts, 2U);
  // Every shorter prefix, and one byte more, is refused rather than read past its end.
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_THROW((void)polymap::detail::mpi::decode(std::string_view(bytes).substr(0, n)),
                 polymap::error)
        << n;
  }
  EXPECT_THROW((void)polymap::detail::mpi::decode(bytes + "x"), polymap::error);
}

TEST(MpiOutsideAJob, TheBackendSaysItNeedsALauncher) {
  if (under_mpirun()) GTEST_SKIP() << "runs without mpirun";
  std::vector<int> xs(10, 1);
  try {
    (void)polymap::map(
        xs, [](int x) { return x; }, on_mpi);
    ADD_FAILURE() << "no backend_unavailable";
  } catch (const polymap::backend_unavailable& e) {
    EXPECT_NE(std::string(e.what()).find("MPI launcher"), std::string::npos) << e.what();
  }
  int init = 1;
  MPI_Initialized(&init);
  EXPECT_EQ(init, 0) << "polymap initialised MPI for a call it refused";
}

}  // namespace
