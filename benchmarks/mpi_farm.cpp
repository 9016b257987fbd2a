// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
//
// The mpi backend against what an MPI user writes by hand: each rank computes a contiguous
// block of the items (a static split) and MPI_Allgatherv gives every rank the whole result,
// as polymap's mpi backend does. Run under mpirun (benchmarks/mpi_farm.sh); not a Google
// Benchmark program, whose adaptive iteration counts would differ between ranks and leave a
// collective waiting. Every variant runs ROUNDS times, interleaved; rank 0 prints the median
// wall time of each (from a barrier to the last rank's end) and its ratio to the static split.
//
//   mpirun -n 2 bench_mpi_farm [ROUNDS] [WORKERS_PER_RANK]
//
// Workloads: uniform (20,000 items of about 25 us), skewed (20,000 items whose cost grows
// from 0 to about 50 us with the index: a static split gives the last rank three quarters
// of the work on two ranks) and cheap (10^7 items of a few ns with 8-byte results: what the
// farm's messages and the broadcast of results cost). Each twice: every rank gets the results
// (MPI_Allgatherv by hand), and rank 0 alone (MPI_Gatherv; polymap's options::results rank0).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <polymap/polymap.hpp>
#include <string>
#include <vector>

#include "common.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

int rank = 0;
int ranks = 1;

/// The static split: this rank computes its block, then every rank gets every block (or
/// rank 0 alone, `to_root`: the others return nothing).
template <class Fn>
std::vector<double> static_split(std::size_t n, Fn fn, bool to_root) {
  std::vector<int> counts(static_cast<std::size_t>(ranks));
  std::vector<int> displs(static_cast<std::size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    const std::size_t b = n * static_cast<std::size_t>(r) / static_cast<std::size_t>(ranks);
    const std::size_t e = n * static_cast<std::size_t>(r + 1) / static_cast<std::size_t>(ranks);
    counts[static_cast<std::size_t>(r)] = static_cast<int>(e - b);
    displs[static_cast<std::size_t>(r)] = static_cast<int>(b);
  }
  std::vector<double> out(n);
  const auto me = static_cast<std::size_t>(rank);
  for (int i = displs[me]; i < displs[me] + counts[me]; ++i) {
    out[static_cast<std::size_t>(i)] = fn(static_cast<std::size_t>(i));
  }
  if (!to_root) {
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out.data(), counts.data(), displs.data(),
                   MPI_DOUBLE, MPI_COMM_WORLD);
  } else if (rank == 0) {
    MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, out.data(), counts.data(), displs.data(),
                MPI_DOUBLE, 0, MPI_COMM_WORLD);
  } else {
    MPI_Gatherv(out.data() + displs[me], counts[me], MPI_DOUBLE, nullptr, nullptr, nullptr,
                MPI_DOUBLE, 0, MPI_COMM_WORLD);
    return {};
  }
  return out;
}

/// Seconds from a barrier to the end of `run` on the slowest rank.
double timed(const std::function<void()>& run) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = clock_type::now();
  run();
  MPI_Barrier(MPI_COMM_WORLD);
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct workload {
  std::string name;
  std::size_t n;
  std::function<double(std::size_t)> item;
};

}  // namespace

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 7;
  const std::size_t workers = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;

  // Every rank spins the same count, measured on rank 0.
  std::uint64_t per_25us = rank == 0 ? polymap_bench::calibrate_spin(25e-6) : 0;
  MPI_Bcast(&per_25us, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);

  const std::vector<workload> loads = {
      {"uniform", 20'000,
       [=](std::size_t i) { return static_cast<double>(polymap_bench::spin(per_25us, i) >> 40); }},
      {"skewed", 20'000,
       [=](std::size_t i) {
         return static_cast<double>(polymap_bench::spin(per_25us * 2 * i / 20'000, i) >> 40);
       }},
      {"cheap", 10'000'000, [](std::size_t i) { return 0.5 * static_cast<double>(i) + 1.0; }},
  };

  const polymap::options on_mpi{.backend = polymap::backend_kind::mpi, .workers = workers};
  polymap::options to_root = on_mpi;
  to_root.results = polymap::mpi::results::rank0;
  if (rank == 0) {
    std::printf("ranks %d, %zu worker(s) per rank, %d rounds (median wall time)\n\n", ranks,
                workers, rounds);
    std::printf("| workload | static split + MPI_Allgatherv | polymap mpi | ratio "
                "| static split + MPI_Gatherv to rank 0 | polymap mpi, results rank0 | ratio |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
  }
  for (const workload& w : loads) {
    // [0]: every rank gets the results; [1]: rank 0 alone.
    std::vector<double> by_hand[2];
    std::vector<double> by_polymap[2];
    std::vector<std::size_t> index(w.n);
    std::iota(index.begin(), index.end(), std::size_t{0});
    for (int r = 0; r < rounds; ++r) {
      for (int root = 0; root < 2; ++root) {
        std::vector<double> expect;
        std::vector<double> got;
        by_hand[root].push_back(timed([&] { expect = static_split(w.n, w.item, root == 1); }));
        by_polymap[root].push_back(
            timed([&] { got = polymap::map(index, w.item, root == 1 ? to_root : on_mpi); }));
        if (got != expect) {
          std::fprintf(stderr, "rank %d: %s: polymap's results differ from the static split's\n",
                       rank, w.name.c_str());
          MPI_Abort(MPI_COMM_WORLD, 1);
        }
      }
    }
    if (rank == 0) {
      std::printf("| %s (%zu items)", w.name.c_str(), w.n);
      for (int root = 0; root < 2; ++root) {
        const double hand = median(by_hand[root]);
        const double mine = median(by_polymap[root]);
        std::printf(" | %.4f s | %.4f s | %.2fx", hand, mine, hand / mine);
      }
      std::printf(" |\n");
    }
  }
  MPI_Finalize();
  return 0;
}
