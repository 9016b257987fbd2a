// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The staging copies of a host-resident GPU map: every byte where it belongs and none
// outside, for copies below and above the size that goes to the thread pool, from the
// caller, from inside a map's workers, and from two threads at once.
#include <polymap/detail/parallel_copy.hpp>
#include <polymap/map.hpp>

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

namespace polymap {
namespace {

using detail::byte_copy;
using detail::parallel_copy;

constexpr std::size_t guard = 64;
constexpr unsigned char poison = 0xAB;

/// Sources of the given sizes with distinct contents, and poisoned targets with a guard
/// zone on both sides.
struct copies_of {
  std::vector<std::vector<unsigned char>> from, to;
  std::vector<byte_copy> list;

  explicit copies_of(const std::vector<std::size_t>& sizes, unsigned seed = 1) {
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      std::vector<unsigned char> src(sizes[k]);
      for (std::size_t i = 0; i < src.size(); ++i) {
        src[i] = static_cast<unsigned char>((i * 131 + k * 7 + seed) % 251);
      }
      from.push_back(std::move(src));
      to.emplace_back(sizes[k] + 2 * guard, poison);
    }
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      list.push_back({to[k].data() + guard, from[k].data(), sizes[k]});
    }
  }

  /// Empty when every target holds its source and every guard byte is untouched.
  [[nodiscard]] std::string mismatch() const {
    for (std::size_t k = 0; k < from.size(); ++k) {
      for (std::size_t i = 0; i < guard; ++i) {
        if (to[k][i] != poison || to[k][guard + from[k].size() + i] != poison) {
          return "copy " + std::to_string(k) + ": a guard byte was written";
        }
      }
      for (std::size_t i = 0; i < from[k].size(); ++i) {
        if (to[k][guard + i] != from[k][i]) {
          return "copy " + std::to_string(k) + ": byte " + std::to_string(i) + " differs";
        }
      }
    }
    return {};
  }
};

TEST(ParallelCopy, EveryByteLandsAndNoneOutside) {
  const std::size_t t = detail::parallel_copy_threshold;
  const std::vector<std::vector<std::size_t>> layouts = {
      {},
      {0},
      {1},
      {t - 1},
      {t},
      {3 * t + 17},
      {0, 5 * t + 3, 0, 1, 2 * t},
      {t / 2, t / 2},        // together at the threshold: the pool
      {8 * t, 8 * t + 4097},  // a staging step's size: results out, the next chunk in
  };
  for (const auto& sizes : layouts) {
    copies_of c(sizes);
    parallel_copy(c.list);
    const std::string bad = c.mismatch();
    EXPECT_TRUE(bad.empty()) << bad << " (" << sizes.size() << " copies)";
  }
}

TEST(ParallelCopy, WorksInsideAMapAndFromTwoThreadsAtOnce) {
  const std::size_t size = 3 * detail::parallel_copy_threshold + 5;
  // Inside a map's workers the pool is theirs: the copy runs on each worker's own thread.
  const std::vector<int> ok = polymap::map(
      std::vector<unsigned>{1, 2, 3, 4},
      [&](unsigned seed) {
        copies_of c({size, 77}, seed);
        parallel_copy(c.list);
        return c.mismatch().empty() ? 1 : 0;
      },
      {.backend = backend::threads});
  for (int y : ok) EXPECT_EQ(y, 1);

  // Two callers at once: one gets the pool, the other copies on its own thread.
  std::vector<std::string> bad(2);
  std::vector<std::thread> callers;
  for (unsigned k = 0; k < 2; ++k) {
    callers.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round) {
        copies_of c({size, size / 3}, k + 10);
        parallel_copy(c.list);
        if (bad[k].empty()) bad[k] = c.mismatch();
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_TRUE(bad[0].empty()) << bad[0];
  EXPECT_TRUE(bad[1].empty()) << bad[1];
}

}  // namespace
}  // namespace polymap
