// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <polymap/detail/run_state.hpp>
#include <polymap/error.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace polymap::detail::mpi {

/// What one rank tells another about a call: a worker rank to rank 0 after each chunk
/// (which is also its request for the next), and rank 0 to every rank at the end (the
/// whole call's outcome). Results travel apart from it, as raw bytes.
struct share_report {
  // The call as the sender sees it, which rank 0 checks against its own: every rank must
  // make the same call.
  std::uint64_t begin = 0;               ///< first item of the call
  std::uint64_t end = 0;                 ///< one past its last
  std::uint64_t result_size = 0;         ///< bytes of one result; 0 for none
  std::uint64_t call_type = 0;           ///< a hash of the call's type name; 0: unknown
  bool results_to_rank0 = false;         ///< options::results is rank0
  index_range chunk{};                   ///< the chunk it ran (whose results follow); empty: none
  std::uint64_t done = 0;                ///< items that succeeded
  bool stopping = false;                 ///< the call stopped there (a fail_fast failure, a cancel)
  bool cancelled = false;                ///< by a cancel
  std::string error = {};                ///< why the call fails on every rank: a rank's backend
                                         ///< failed (not an item), or the ranks' calls differ
  std::vector<index_range> ranges = {};  ///< the items that finished (for partial results)
  std::vector<item_failure> failures = {};  ///< the items that failed
};

/// Appends the bytes of `report` to `out`.
void encode(const share_report& report, std::string& out);

/// The report that `bytes` hold.
/// @throws polymap::error when they are not one (a message from another program)
[[nodiscard]] share_report decode(std::string_view bytes);

}  // namespace polymap::detail::mpi
