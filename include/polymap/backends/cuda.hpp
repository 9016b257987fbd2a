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

/// What a map of host-resident data costs on a GPU, the staging copies on the host, both
/// directions over the link and the kernels included (not the function's own work on the
/// GPU, which the copies are taken to hide): `fixed_seconds` for a call, plus, for the
/// bytes it moves (items in and results out), `first_seconds_per_byte` for each of the
/// first `first_bytes` (one chunk, whose copies overlap nothing) and `seconds_per_byte` for
/// each byte after them (the pipeline full). `automatic` and `polymap::cuda::explain` weigh
/// it against the CPU backends.
struct host_map_costs {
  /// Used until measured: a launch and two copies, and 12 GB/s (PCIe 4 x16 moves about 25).
  static constexpr double default_fixed_seconds = 20e-6;
  static constexpr double default_seconds_per_byte = 1.0 / 12e9;
  /// The least any GPU takes: a launch, two copies and the waits take longer than this, and
  /// no link moves more bytes a second. A measurement beyond them is of a busy machine.
  static constexpr double least_fixed_seconds = 5e-6;
  static constexpr double most_bytes_per_second = 2000e9;

  double fixed_seconds = default_fixed_seconds;
  std::size_t first_bytes = 0;
  double first_seconds_per_byte = default_seconds_per_byte;
  double seconds_per_byte = default_seconds_per_byte;
  bool measured = false;    ///< false: the defaults above
  std::string source = {};  ///< how they were found, or why they were not measured
  /// Why the GPU is not to be chosen by `automatic` in this process (empty: it may be): it
  /// failed when it was used (its context could not be made, a copy or a launch failed).
  std::string unusable = {};

  /// The predicted seconds of a call that moves `bytes` (in and out together).
  [[nodiscard]] double seconds(std::size_t bytes) const noexcept {
    const std::size_t first = bytes < first_bytes ? bytes : first_bytes;
    return fixed_seconds + static_cast<double>(first) * first_seconds_per_byte +
           static_cast<double>(bytes - first) * seconds_per_byte;
  }
};

/// What host_map_costs_on does when the costs of a device are not known yet.
enum class if_unknown {
  measure,       ///< measure them now, and keep them
  use_defaults,  ///< return the defaults, saying so; a later call may still measure
};

/// The costs of host-resident maps on `device`: the ones known in this process, else those
/// kept from an earlier measurement of this GPU on this machine (with this many usable
/// CPUs, under this driver, by this version of polymap) in
/// $XDG_CACHE_HOME/polymap/measurements (else ~/.cache/polymap/), else measured now
/// (measure_host_map_costs) and kept there. With `if_unknown::use_defaults` nothing is
/// measured or waited for: the defaults stand in, and a later call may still measure.
/// Processes that need the same device's costs at once measure it one at a time: the
/// others wait (up to 30 s) and read what the first kept. Without a usable device, or when
/// measuring fails (its error is kept for the process), the defaults, with `source` saying
/// why.
[[nodiscard]] host_map_costs host_map_costs_on(int device,
                                               if_unknown unknown = if_unknown::measure);

/// Marks `device` as one that `automatic` does not choose in this process any more, for
/// `why` (what failed when it was used): host_map_costs_on then says so in `unusable`.
void mark_failed(int device, const std::string& why);

/// Measures the costs of host-resident maps on `device` now, with polymap's own streamed
/// map: the best of several calls of one item, of one chunk (8 MiB each way) and of eight
/// chunks (64 MiB each way), some 0.1 s once the CUDA context exists (estimated from the
/// bytes moved; not yet timed on a GPU). Keeps them for this
/// process and in the file above (`source` says where, or why they could not be kept), as
/// `polymap calibrate` does.
/// @throws backend_unavailable when `device` is not a usable device; cuda_error when a CUDA
///   call fails; error when the timings make no sense (a fixed cost outside 5 us to 50 ms,
///   a rate outside 0.1 to 2000 GB/s: the machine was too busy to measure)
[[nodiscard]] host_map_costs measure_host_map_costs(int device);

namespace detail {
/// @throws backend_unavailable when there is no usable CUDA device; option_error when
///   `device` is not one of them
void require_device(int device);
/// Forgets the costs known in this process (not those kept on disk): for tests.
void forget_host_map_costs() noexcept;
}  // namespace detail

}  // namespace polymap::cuda
