// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// A consumer's own Kokkos translation unit: it includes <polymap/kokkos/map.hpp> and runs a
// KOKKOS_LAMBDA through polymap::kokkos::map. Built only when polymap has Kokkos, and linked
// with polymap::kokkos.
#include <polymap/kokkos/map.hpp>

#include <cstddef>
#include <cstdio>
#include <exception>
#include <numeric>
#include <vector>

int run_kokkos_map() {
  try {
    std::vector<int> xs(1000);
    std::iota(xs.begin(), xs.end(), 0);
    const std::vector<int> ys =
        polymap::kokkos::map(xs, KOKKOS_LAMBDA(int x) { return 2 * x + 1; });
    if (ys.size() != xs.size()) {
      std::fprintf(stderr, "polymap::kokkos::map: %zu results for %zu items\n", ys.size(),
                   xs.size());
      return 1;
    }
    for (std::size_t i = 0; i < xs.size(); ++i) {
      if (ys[i] != 2 * xs[i] + 1) {
        std::fprintf(stderr, "polymap::kokkos::map: result %zu is %d\n", i, ys[i]);
        return 1;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "polymap::kokkos::map threw: %s\n", e.what());
    return 1;
  }
  std::puts("polymap::kokkos::map: ok");
  return 0;
}
