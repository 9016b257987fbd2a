// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace polymap::detail {

/// Whether an MPI launcher (mpirun, mpiexec, srun with PMI) started this process, by the
/// variables it sets: Open MPI's, PMIx's, PMI's (MPICH, Intel MPI, Slurm) or MVAPICH's.
/// Needs no MPI library.
[[nodiscard]] bool started_by_mpi_launcher() noexcept;

/// The ranks of the MPI job that the launcher started this process in, from its
/// environment; 0 when it does not say (or none started it).
[[nodiscard]] int mpi_launcher_ranks() noexcept;

}  // namespace polymap::detail
