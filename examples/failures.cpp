// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Items that fail: collect every failure with its index, keep the good results.
#include <polymap/polymap.hpp>

#include <cstdio>
#include <stdexcept>
#include <vector>

int main() {
  std::vector<int> seeds(1000);
  for (int i = 0; i < 1000; ++i) seeds[static_cast<std::size_t>(i)] = i;
  auto run = [](int seed) {
    if (seed % 250 == 13) throw std::runtime_error("diverged at seed " + std::to_string(seed));
    return seed * 0.5;
  };
  try {
    (void)polymap::map(seeds, run, {.retries = 1, .on_error = polymap::on_error::collect});
  } catch (const polymap::map_error& e) {
    for (const polymap::item_failure& f : e.failures()) {
      std::printf("item %zu failed after %u attempts: %s\n", f.index, f.attempts, f.what.c_str());
    }
    const auto& results = e.results<double>();
    std::printf("result of item 14 still here: %.1f\n", results[14].value_or(-1));
    return e.failures().size() == 4 && results[14] == 7.0 ? 0 : 1;
  }
  return 1;
}
