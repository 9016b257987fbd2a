// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Timings of polymap's own streamed host-resident map (cuda::detail::stream_map), from
/// which src/backends/cuda/host_map_costs.cpp fits the costs automatic weighs. Plain C++:
/// the device code is in host_map_probe.cu.

#include <cstddef>

namespace polymap::cuda::detail {

/// The best (lowest) seconds of several calls of each size, and the bytes each moved.
struct host_map_timings {
  double one_item = 0;   ///< a call of one item: the fixed cost
  double one_chunk = 0;  ///< a call of one staging chunk, whose copies overlap nothing
  double full = 0;       ///< a call of eight chunks, the pipeline full
  std::size_t one_chunk_bytes = 0;
  std::size_t full_bytes = 0;
  /// The thread pool took calls of its own before and after the timings: the staging
  /// copies were spread over it, not left to one thread by another call holding it.
  bool pool_free = false;
};

/// Times stream_map of an identity function on 4-byte items on `device`, after one call
/// that pays what only a first call pays (the context, the module, the staging set, the
/// thread pool's threads, the pages).
/// @throws cuda_error when a CUDA call fails; std::bad_alloc
[[nodiscard]] host_map_timings time_host_map(int device);

}  // namespace polymap::cuda::detail
