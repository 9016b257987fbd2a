// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// POLYMAP_CUDA_CHECK: every CUDA runtime call of polymap goes through it, so that a failure
/// becomes a `polymap::cuda_error` naming the code, the call, the file and the line.

#include <polymap/error.hpp>

#include <cuda_runtime.h>

#include <string>

namespace polymap::cuda::detail {

/// Throws cuda_error for any code but cudaSuccess.
/// @throws cuda_error with `code()` the cudaError_t value and `name()` e.g.
///   "cudaErrorMemoryAllocation"
inline void check(cudaError_t code, const char* expr, const char* file, int line) {
  if (code == cudaSuccess) return;
  // Clears a non-sticky error (an out-of-memory, a bad launch configuration) so that the
  // next call on this thread starts clean. A sticky one (an illegal address in a kernel)
  // stays: the context is lost, and every later call reports it, which is what lets the
  // caller see that the GPU is unusable and go on with a CPU backend.
  (void)cudaGetLastError();
  throw cuda_error(static_cast<int>(code), cudaGetErrorName(code),
                   std::string("polymap: ") + expr + " failed at " + file + ":" +
                       std::to_string(line) + ": " + cudaGetErrorName(code) + " (" +
                       cudaGetErrorString(code) + ")");
}

}  // namespace polymap::cuda::detail

/// Checks the cudaError_t of `expr`; throws polymap::cuda_error with the file and line.
#define POLYMAP_CUDA_CHECK(expr) ::polymap::cuda::detail::check((expr), #expr, __FILE__, __LINE__)
