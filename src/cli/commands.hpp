// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include "cli/cli_args.hpp"

namespace polymap::cli {

/// `polymap info`: prints the topology, the backends and the environment.
/// @return an exit status
int run_info(const info_args& args);

/// `polymap bench`: runs the built-in kernels on every available backend.
/// @return exit_ok, or exit_failure when a backend's results differ from serial's or a run
///   threw
int run_bench(const bench_args& args);

}  // namespace polymap::cli
