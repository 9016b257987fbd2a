// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Names a communicator of the program's for `options::comm`: included from translation
/// units that include <mpi.h> themselves (and link the same MPI as polymap).

#include <mpi.h>

#include <polymap/backends/mpi.hpp>

namespace polymap::mpi {

/// The communicator `c` for `options::comm`: calls on the mpi backend made with it are
/// shared by its ranks alone (each of them makes the call), and its rank 0 hands out the
/// work. polymap talks over a duplicate of it, made at the first call and freed when the
/// program frees `c`.
[[nodiscard]] inline comm_handle comm(MPI_Comm c) { return comm_handle{MPI_Comm_c2f(c)}; }

}  // namespace polymap::mpi
