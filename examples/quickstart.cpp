// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The README's first example: a map whose backend polymap picks, and why it picked it.
#include <polymap/polymap.hpp>

#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

int main() {
  std::vector<double> xs(1'000'000);
  std::iota(xs.begin(), xs.end(), 0.0);
  auto simulate = [](double x) { return std::sin(x) * std::exp(-x * 1e-6); };

  polymap::run_report report;
  const std::vector<double> ys = polymap::map(xs, simulate, {.report = &report});

  std::printf("%zu results, ys[42] = %.6f, ran on %s\n", ys.size(), ys[42],
              std::string(polymap::to_string(report.backend)).c_str());
  std::printf("%s", polymap::explain(xs, simulate).to_string().c_str());
  return ys[42] == simulate(42.0) ? 0 : 1;
}
