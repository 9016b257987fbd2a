// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace polymap::detail {

/// What a call on worker processes costs besides its items.
struct process_costs {
  /// Forking a worker of this process, its end and reaping it: the caller forks its
  /// workers one after the other.
  double fork_seconds = 1e-3;
  /// Moving one byte of results through the store: a worker writes it to pages new
  /// to the store, the caller reads it back.
  double byte_seconds = 1e-9;
};

/// The costs of this process, measured at the first call (milliseconds: three forks and
/// 1 MiB moved); later calls return what it measured. A thread that calls while another
/// thread of the process measures waits for that measurement.
[[nodiscard]] process_costs measured_process_costs() noexcept;

/// Fault injection for tests: when set, the measurement calls it between its forks, the
/// moment at which a fork by another thread of the program copies a measurement in
/// progress into the child. Null in real programs.
inline void (*measure_hook)() = nullptr;

}  // namespace polymap::detail
