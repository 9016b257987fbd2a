// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Maps over a vector with an installed polymap and checks every result. The umbrella header
// pulls in every public header, so a header missing from the install tree shows here.
#include <polymap/config.hpp>
#include <polymap/polymap.hpp>

#include <cstddef>
#include <cstdio>
#include <exception>
#include <numeric>
#include <vector>

#ifdef POLYMAP_CONSUMER_KOKKOS
int run_kokkos_map();  // common/kokkos_map.cpp
#endif

static_assert(POLYMAP_HAS_HWLOC == EXPECTED_HAS_HWLOC,
              "polymap_HAS_HWLOC disagrees with config.hpp");
static_assert(POLYMAP_HAS_CUDA == EXPECTED_HAS_CUDA, "polymap_HAS_CUDA disagrees with config.hpp");
static_assert(POLYMAP_HAS_KOKKOS == EXPECTED_HAS_KOKKOS,
              "polymap_HAS_KOKKOS disagrees with config.hpp");
static_assert(POLYMAP_HAS_MPI == EXPECTED_HAS_MPI, "polymap_HAS_MPI disagrees with config.hpp");

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
  std::puts("find_package consumer: ok");
  return 0;
}
