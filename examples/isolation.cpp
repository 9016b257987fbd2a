// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Items that crash or hang: with a timeout the call runs on worker processes, and each bad
// item fails alone, with its cause, while the others finish.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <polymap/polymap.hpp>
#include <thread>
#include <vector>

int main() {
  std::vector<int> cases(200);
  for (int i = 0; i < 200; ++i) cases[static_cast<std::size_t>(i)] = i;
  auto simulate = [](int c) {
    if (c == 42) std::raise(SIGKILL);                                 // a crash
    if (c == 99) std::this_thread::sleep_for(std::chrono::hours(1));  // a hang
    return c * 0.5;
  };
  polymap::run_report report;
  try {
    (void)polymap::map(cases, simulate,
                       {.timeout = std::chrono::seconds(1),
                        .on_error = polymap::on_error::collect,
                        .report = &report});
  } catch (const polymap::map_error& e) {
    for (const polymap::item_failure& f : e.failures()) {
      std::printf("case %zu: %s (%s)\n", f.index, f.what.c_str(),
                  std::string(polymap::to_string(f.kind)).c_str());
    }
    const auto& results = e.results<double>();
    std::printf("ran on %s; case 43 still here: %.1f\n",
                std::string(polymap::to_string(report.backend)).c_str(), results[43].value_or(-1));
    return e.failures().size() == 2 && results[43] == 21.5 ? 0 : 1;
  }
  return 1;
}
