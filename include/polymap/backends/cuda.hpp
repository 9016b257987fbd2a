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

/// What a map of host-resident data costs on a GPU: `fixed_seconds` for a call, plus
/// `seconds_per_byte` for each byte it moves (items in and results out), the staging copies
/// on the host, both directions over the link and the kernels included. `automatic` and
/// `polymap::cuda::explain` weigh it against the CPU backends.
struct host_map_costs {
  /// Used until measured: a launch and two copies, and 12 GB/s (PCIe 4 x16 moves about 25).
  static constexpr double default_fixed_seconds = 20e-6;
  static constexpr double default_seconds_per_byte = 1.0 / 12e9;

  double fixed_seconds = default_fixed_seconds;
  double seconds_per_byte = default_seconds_per_byte;
  bool measured = false;    ///< false: the defaults above
  std::string source = {};  ///< how they were found, or why they were not measured

  /// The predicted seconds of a call that moves `bytes` (in and out together).
  [[nodiscard]] double seconds(std::size_t bytes) const noexcept {
    return fixed_seconds + static_cast<double>(bytes) * seconds_per_byte;
  }
};

/// The costs of host-resident maps on `device`: the ones kept from an earlier measurement
/// of this GPU on this machine (by this version of polymap, under the same driver) in
/// $XDG_CACHE_HOME/polymap/measurements (else ~/.cache/polymap/), or else measured now
/// (measure_host_map_costs) and kept there. Known for the rest of the process after the
/// first call. Without a usable device, or when measuring fails (its error is kept), the
/// defaults, with `source` saying why.
[[nodiscard]] host_map_costs host_map_costs_on(int device);

/// Measures the costs of host-resident maps on `device` now, with polymap's own streamed
/// map: calls of one item (the fixed cost) and of 64 MiB each way (the cost per byte),
/// about 0.1 s once the CUDA context exists. Keeps them for this process and in the file
/// above (`source` says where, or why they could not be kept), as `polymap calibrate` does.
/// @throws backend_unavailable when `device` is not a usable device; cuda_error when a CUDA
///   call fails
[[nodiscard]] host_map_costs measure_host_map_costs(int device);

}  // namespace polymap::cuda
