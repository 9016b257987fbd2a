// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// What plain C++ may ask of the cuda backend: whether a GPU is here and what it is. No
/// CUDA types: a CPU-only user includes this without nvcc.

#include <cstddef>
#include <string>
#include <vector>

namespace polymap::cuda {

/// One CUDA device as the runtime reports it.
struct device_info {
  int index = 0;
  std::string name = {};
  int compute_major = 0;
  int compute_minor = 0;
  std::size_t memory_bytes = 0;
  int multiprocessors = 0;
};

/// Number of CUDA devices usable now: 0 when polymap was built without CUDA, when there is
/// no driver (cudaErrorInsufficientDriver) or no device (cudaErrorNoDevice), after a sticky
/// error, and in a worker process of the processes backend (which never touches the GPU).
[[nodiscard]] int device_count() noexcept;

/// Why there is no usable device, or a description of the devices when there are some.
[[nodiscard]] std::string device_status();

/// Every usable device; empty when there is none.
[[nodiscard]] std::vector<device_info> devices();

}  // namespace polymap::cuda
