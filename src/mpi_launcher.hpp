// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <string_view>

namespace polymap::detail {

/// Whether an MPI launcher (mpirun, mpiexec, srun with PMI) started this process, by the
/// variables it sets: Open MPI's, PMIx's, PMI's (MPICH, Intel MPI, Slurm) or MVAPICH's.
/// Needs no MPI library.
[[nodiscard]] bool started_by_mpi_launcher() noexcept;

/// The ranks of the MPI job that the launcher started this process in, from its
/// environment; 0 when it does not say (or none started it).
[[nodiscard]] int mpi_launcher_ranks() noexcept;

/// This process's rank in the MPI job that the launcher started it in, from its
/// environment; -1 when it does not say (or none started it).
[[nodiscard]] int mpi_launcher_rank() noexcept;

/// Whether the environment variable `name` is one with which a launcher tells a process its
/// place in an MPI job (its rank, the job's size, the launcher's address): a program started
/// with it would take itself for that rank and fail to initialise MPI. Its MCA parameters
/// (OMPI_MCA_btl_..., PMIX_MCA_...), which a user may set for every MPI program, are not.
[[nodiscard]] bool names_a_place_in_an_mpi_job(std::string_view name) noexcept;

}  // namespace polymap::detail
