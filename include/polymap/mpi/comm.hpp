// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Names a communicator of the program's for `options::comm`: included from translation
/// units that include <mpi.h> themselves (and link the same MPI as polymap).

#include <mpi.h>

#include <polymap/backends/mpi.hpp>
#include <polymap/error.hpp>

namespace polymap::mpi {

/// The communicator `c` for `options::comm`: calls on the mpi backend made with it are
/// shared by its ranks alone (each of them makes the call), and its rank 0 hands out the
/// work. polymap talks over a duplicate of it, made at the first call; `c` must stay valid
/// until each call with it has returned (a map_async job: until its get() or wait()).
/// @throws option_error for any communicator but MPI_COMM_WORLD (the default) while MPI is
///   not initialised, or after it was finalised: MPI cannot name one then
[[nodiscard]] inline comm_handle comm(MPI_Comm c) {
  if (c == MPI_COMM_WORLD) return {};
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized == 0 || finalized != 0) {
    throw option_error("comm", "a communicator",
                       "MPI_COMM_WORLD, or one of an initialised MPI (the program has not "
                       "called MPI_Init, or has finalised it)");
  }
  return comm_handle{MPI_Comm_c2f(c)};
}

}  // namespace polymap::mpi
