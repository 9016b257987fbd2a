// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What plain C++ may say to the mpi backend: which ranks share a call, and which of them
/// get its results. No MPI types: a program that does not include <mpi.h> names no
/// communicator but MPI_COMM_WORLD; <polymap/mpi/comm.hpp> makes a `comm_handle` of an
/// MPI_Comm.

#include <optional>

namespace polymap::mpi {

/// A communicator as plain C++ holds it: its Fortran handle (MPI_Comm_c2f), which is an int
/// in every MPI. Unset: MPI_COMM_WORLD. `polymap::mpi::comm(c)` (<polymap/mpi/comm.hpp>)
/// makes one.
struct comm_handle {
  std::optional<int> fortran = std::nullopt;

  friend bool operator==(const comm_handle&, const comm_handle&) = default;
};

/// Which ranks of a call on the mpi backend get its results.
enum class results {
  every_rank,  ///< every rank returns the whole result (rank 0 broadcasts it)
  rank0,       ///< rank 0 of the communicator alone: the others return none (nothing is
               ///< broadcast)
};

}  // namespace polymap::mpi
