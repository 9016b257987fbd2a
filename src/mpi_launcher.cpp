// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "mpi_launcher.hpp"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>

namespace polymap::detail {

namespace {

constexpr const char* size_variables[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE",
                                          "MV2_COMM_WORLD_SIZE"};
constexpr const char* rank_variables[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK",
                                          "MV2_COMM_WORLD_RANK"};

// What Open MPI 4 (mpirun's ORTE and PMIx), MPICH's Hydra and Intel MPI (PMI), MVAPICH and
// Slurm's PMI plugins give each rank about its place in the job.
constexpr std::array<std::string_view, 10> place_prefixes = {
    "OMPI_COMM_WORLD_", "OMPI_MCA_orte_", "OMPI_MCA_ess", "OMPI_MCA_pmix", "PMIX_", "PMI_",
    "MV2_COMM_WORLD_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "OMPI_FIRST_RANKS"};
constexpr std::array<std::string_view, 7> place_names = {
    "OMPI_UNIVERSE_SIZE", "OMPI_NUM_APP_CTX", "OMPI_APP_CTX_NUM_PROCS", "OMPI_COMMAND",
    "OMPI_ARGV", "OMPI_FILE_LOCATION", "OMPI_MCA_initial_wdir"};

}  // namespace

bool names_a_place_in_an_mpi_job(std::string_view name) noexcept {
  if (name.starts_with("PMIX_MCA_")) return false;
  return std::any_of(place_prefixes.begin(), place_prefixes.end(),
                     [&](std::string_view p) { return name.starts_with(p); }) ||
         std::find(place_names.begin(), place_names.end(), name) != place_names.end();
}

bool started_by_mpi_launcher() noexcept {
  for (const char* name : rank_variables) {
    if (std::getenv(name) != nullptr) return true;
  }
  return mpi_launcher_ranks() > 0;
}

namespace {

/// The first of `names` set to a number of at least `least`, or -1.
template <std::size_t N>
int first_number(const char* const (&names)[N], int least) noexcept {
  for (const char* name : names) {
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') {
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (*end == '\0' && n >= least && n <= INT_MAX) return static_cast<int>(n);
    }
  }
  return -1;
}

}  // namespace

int mpi_launcher_ranks() noexcept { return std::max(first_number(size_variables, 1), 0); }

int mpi_launcher_rank() noexcept { return first_number(rank_variables, 0); }

}  // namespace polymap::detail
