// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Results as they complete, a job in the background, an index-space loop.
#include <polymap/polymap.hpp>

#include <cstdio>
#include <vector>

int main() {
  std::vector<int> xs(10'000);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = static_cast<int>(i);

  long sum = 0;
  for (auto&& [index, value] : polymap::imap(xs, [](int x) { return 2L * x; }, {.ordered = false})) {
    sum += value - 2L * xs[index];  // every result arrives once, in any order
  }

  auto job = polymap::map_async(xs, [](int x) { return x + 1; });
  const auto ys = job.get();
  std::printf("async: %zu results, done %zu of %zu\n", ys.size(), job.progress().done,
              job.progress().total);

  std::vector<double> y(1 << 20, 1.0);
  const std::vector<double> x(1 << 20, 2.0);
  polymap::for_each(y.size(), [&](std::size_t i) { y[i] += 0.5 * x[i]; });
  std::printf("stream check %ld, y[7] = %.1f\n", sum, y[7]);
  return sum == 0 && ys[9] == 10 && y[7] == 2.0 ? 0 : 1;
}
