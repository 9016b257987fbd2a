// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Maps over a vector with polymap built by add_subdirectory() and checks every result.
#include <polymap/polymap.hpp>

#include <cstddef>
#include <cstdio>
#include <exception>
#include <numeric>
#include <vector>

#ifdef POLYMAP_CONSUMER_KOKKOS
int run_kokkos_map();  // common/kokkos_map.cpp
#endif

int main() {
  try {
    std::vector<long> xs(10000);
    std::iota(xs.begin(), xs.end(), 0L);
    const auto ys = polymap::map(xs, [](long x) { return 3 * x + 1; });
    if (ys.size() != xs.size()) {
      std::fprintf(stderr, "expected %zu results, got %zu\n", xs.size(), ys.size());
      return 1;
    }
    for (std::size_t i = 0; i < xs.size(); ++i) {
      if (ys[i] != 3 * xs[i] + 1) {
        std::fprintf(stderr, "result %zu is %ld, expected %ld\n", i, ys[i], 3 * xs[i] + 1);
        return 1;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "polymap::map threw: %s\n", e.what());
    return 1;
  }
#ifdef POLYMAP_CONSUMER_KOKKOS
  if (run_kokkos_map() != 0) return 1;
#endif
  std::puts("add_subdirectory consumer: ok");
  return 0;
}
