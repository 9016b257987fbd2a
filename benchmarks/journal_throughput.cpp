// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// How many item ends one runner records per second in the journal, committing them as
// `polymap run` does: each transaction records the ends of the last batch and claims the
// next one. Prints one line per batch size: "batch ends_per_second".
//
//   bench_journal DIR [ITEMS]

#include "journal/journal.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_journal DIR [ITEMS]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const long items = argc > 2 ? std::atol(argv[2]) : 50000;
  for (std::size_t batch : {1UL, 2UL, 16UL, 64UL, 256UL}) {
    const std::string path = dir + "/bench-" + std::to_string(batch) + ".db";
    for (const char* suffix : {"", "-wal", "-shm"}) unlink((path + suffix).c_str());
    polymap::journal j(path);
    j.register_runner();
    std::vector<polymap::journal_item> all;
    for (long i = 1; i <= items; ++i) {
      all.push_back({"true\x01" + std::to_string(i), i, "true " + std::to_string(i)});
    }
    j.add_items(all);
    const auto start = std::chrono::steady_clock::now();
    std::vector<polymap::claimed_item> held = j.commit({}, batch);
    long ended = 0;
    while (!held.empty()) {
      std::vector<polymap::item_end> ends;
      for (const polymap::claimed_item& c : held) {
        polymap::item_end e;
        e.id = c.id;
        e.attempts = 1;
        e.worker = 1;
        e.start = 1;
        e.end = 2;
        ends.push_back(e);
      }
      ended += static_cast<long>(ends.size());
      held = j.commit(ends, batch);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%zu %.0f\n", batch, static_cast<double>(ended) / seconds);
    for (const char* suffix : {"", "-wal", "-shm"}) unlink((path + suffix).c_str());
  }
  return 0;
}
