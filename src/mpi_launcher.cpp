// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "mpi_launcher.hpp"

#include <cstdlib>

namespace polymap::detail {

namespace {

constexpr const char* size_variables[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE",
                                          "MV2_COMM_WORLD_SIZE"};
constexpr const char* rank_variables[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK",
                                          "MV2_COMM_WORLD_RANK"};

}  // namespace

bool started_by_mpi_launcher() noexcept {
  for (const char* name : rank_variables) {
    if (std::getenv(name) != nullptr) return true;
  }
  return mpi_launcher_ranks() > 0;
}

int mpi_launcher_ranks() noexcept {
  for (const char* name : size_variables) {
    if (const char* v = std::getenv(name); v != nullptr) {
      const int n = std::atoi(v);
      if (n > 0) return n;
    }
  }
  return 0;
}

}  // namespace polymap::detail
