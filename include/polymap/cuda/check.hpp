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

/// Marks the GPU of this process unusable after a sticky error (the CUDA context is lost):
/// from then on `device_count()` is 0, `device_status()` says why, `automatic` keeps every call
/// on the CPU and an explicit cuda request throws `backend_unavailable`. Defined in the
/// library (src/backends/cuda).
/// `error_name` must outlive the process (cudaGetErrorName's strings do); the first one is kept.
void mark_unusable(const char* error_name) noexcept;

/// Whether `code` is sticky: the context is corrupted and every later call fails with it.
[[nodiscard]] constexpr bool is_sticky(cudaError_t code) noexcept {
  switch (code) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorContained:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorExternalDevice: return true;
    default: return false;
  }
}

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
  // A sticky error survives cudaGetLastError: the one still there is what lost the context
  // (`code` may be a later call's own failure), else `code` itself when it is a sticky kind.
  const cudaError_t left = cudaPeekAtLastError();
  if (left != cudaSuccess) {
    mark_unusable(cudaGetErrorName(left));
  } else if (is_sticky(code)) {
    mark_unusable(cudaGetErrorName(code));
  }
  throw cuda_error(static_cast<int>(code), cudaGetErrorName(code),
                   std::string("polymap: ") + expr + " failed at " + file + ":" +
                       std::to_string(line) + ": " + cudaGetErrorName(code) + " (" +
                       cudaGetErrorString(code) + ")");
}

/// Clears an error that an earlier call on this thread left unchecked (the program's own,
/// or a clean-up's whose failure changes nothing), so that the cudaGetLastError after the
/// next launch reports that launch alone. A sticky error stays: the launch reports it.
inline void clear_stale_error() noexcept { (void)cudaGetLastError(); }

}  // namespace polymap::cuda::detail

/// Checks the cudaError_t of `expr`; throws polymap::cuda_error with the file and line.
#define POLYMAP_CUDA_CHECK(expr) ::polymap::cuda::detail::check((expr), #expr, __FILE__, __LINE__)
