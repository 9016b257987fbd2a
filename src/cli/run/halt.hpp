// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <string>

namespace polymap::cli::run {

/// `--halt`: when failures stop a run (GNU parallel's now|soon,fail=N|P%).
struct halt_policy {
  bool enabled = false;
  bool now = false;          ///< kill running jobs (now) or let them finish (soon)
  std::size_t count = 0;     ///< halt at this many failed items
  double percent = 0;        ///< or at this share of the run's items (GNU parallel's)

  /// Whether `failed` failed items of a run of `total` trigger the halt.
  [[nodiscard]] bool reached(std::size_t failed, std::size_t total) const noexcept;
};

/// Parses "now,fail=1", "soon,fail=3", "now,fail=10%", "never", or GNU parallel's older
/// forms "0" (never), "1" (soon,fail=1), "2" (now,fail=1) and "P%" (soon,fail=P%).
/// @throws std::runtime_error naming the value and what is accepted
[[nodiscard]] halt_policy parse_halt(const std::string& text);

}  // namespace polymap::cli::run
