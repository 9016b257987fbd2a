// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/run_state.hpp>

#include <cstddef>

namespace polymap {
struct options;
struct plan;
}

namespace polymap::detail {

struct result_transfer;

/// Runs items [begin, end) of a call: the typed loop, behind one indirect call per chunk.
using chunk_fn = void (*)(const void* ctx, std::size_t begin, std::size_t end,
                          worker_context& worker);

/// A call as a backend sees it: an index space and a way to run any chunk of it.
struct map_job {
  std::size_t begin = 0;            ///< first index still to run
  std::size_t end = 0;              ///< one past the last index
  chunk_fn run_chunk = nullptr;
  const void* ctx = nullptr;
  run_state* state = nullptr;
  const options* opts = nullptr;
  double seconds_per_item = 0;      ///< measured cost, 0 when unknown
  bool ascending = false;           ///< hand out chunks in index order (streaming)
  std::size_t max_chunk = 0;        ///< upper bound on a chunk, 0 for none
  /// How results come back from a worker process; null: the call cannot run in one.
  const result_transfer* transfer = nullptr;
  /// Where the call runs, decided by its caller (polymap::cuda::map weighed the GPU and
  /// chose a CPU backend): execute() runs it there and reports this plan, with no sampling
  /// or deciding of its own. Null: execute() decides.
  const plan* decided = nullptr;
  /// The call's type (its function, item and result types), as the compiler names it: the
  /// mpi backend checks that every rank makes the same call. Null when unknown (no RTTI).
  const char* call_type = nullptr;
};

}  // namespace polymap::detail
