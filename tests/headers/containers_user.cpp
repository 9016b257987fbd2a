// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// A user's maps over ranges that cannot be indexed (a std::list, a std::map, a filter view),
// compiled by tests/headers/CMakeLists.txt with the compilers and flags users are known to
// use; run here too, so that what compiles also gives the right results.
#include <polymap/polymap.hpp>

#include <list>
#include <map>
#include <ranges>
#include <utility>
#include <vector>

int main() {
  std::list<int> numbers{1, 2, 3};
  const std::vector<int> doubled = polymap::map(numbers, [](int x) { return x * 2; });
  std::map<int, int> pairs{{1, 2}, {3, 4}};
  const std::vector<int> sums =
      polymap::map(pairs, [](const std::pair<const int, int>& p) { return p.first + p.second; });
  polymap::for_each(3, [&](std::size_t) {});
  polymap::map(numbers, [](int& x) { x += 10; });  // the list's own items
  return doubled == std::vector<int>{2, 4, 6} && sums == std::vector<int>{3, 7} &&
                 numbers == std::list<int>{11, 12, 13}
             ? 0
             : 1;
}
