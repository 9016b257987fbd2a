// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>

namespace polymap {

/// How far a map has come. Rates and times are in seconds.
struct progress_info {
  std::size_t total = 0;    ///< items in the call
  std::size_t done = 0;     ///< items finished (succeeded or failed)
  std::size_t failed = 0;   ///< items that failed after all their attempts
  double elapsed = 0;       ///< seconds since the call started
  double rate = 0;          ///< items per second so far
  double eta = 0;           ///< seconds left at the current rate (0 when unknown or done)
  bool finished = false;    ///< true on the last report of the call
};

}  // namespace polymap
