// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// A parameter sweep over the ranks of an MPI job: `mpirun -n 4 ./mpi_sweep`. Every rank makes
// the same call; the ranks share the items, and every rank gets every result, in order. Then
// the same sweep with the results kept on rank 0 alone, which writes them out.
#include <mpi.h>
#include <polymap/polymap.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

/// A stand-in for a simulation whose cost depends on its parameter: the trapezoid rule on
/// sin(k x) over [0, pi] with more steps for larger k.
double simulate(int k) {
  const int steps = 1000 * (1 + k % 50);
  const double h = M_PI / steps;
  double sum = 0;
  for (int i = 1; i < steps; ++i) sum += std::sin(k * i * h);
  return sum * h;
}

}  // namespace

int main() {
  std::vector<int> ks(2000);
  for (int i = 0; i < 2000; ++i) ks[static_cast<std::size_t>(i)] = i + 1;
  polymap::run_report report;
  const std::vector<double> areas =
      polymap::map(ks, simulate, {.backend = polymap::backend::mpi, .report = &report});
  std::printf("%s\n", report.note.c_str());
  // The integral of sin(k x) over [0, pi] is 2/k for odd k and 0 for even k.
  int wrong = 0;
  for (std::size_t i = 0; i < ks.size(); ++i) {
    const double exact = ks[i] % 2 == 1 ? 2.0 / ks[i] : 0.0;
    if (std::abs(areas[i] - exact) > 1e-3) ++wrong;
  }
  std::printf("%zu results, %d off\n", areas.size(), wrong);

  // Results that only rank 0 needs are not broadcast: every other rank gets none.
  const std::vector<double> kept = polymap::map(
      ks, simulate, {.backend = polymap::backend::mpi, .results = polymap::mpi::results::rank0});
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);  // MPI is initialised: polymap's first call did it
  if (rank == 0) {
    if (kept != areas) ++wrong;
    std::printf("rank 0 keeps the %zu results of the second sweep\n", kept.size());
  } else if (!kept.empty()) {
    ++wrong;
  }
  return wrong == 0 ? 0 : 1;
}
