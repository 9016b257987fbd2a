// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/backend.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace polymap {

/// The predicted time of one backend for a call.
struct backend_estimate {
  backend_kind backend{};
  bool usable = false;           ///< built, available here, and able to run this function
  std::string why_not = {};         ///< when not usable: why
  double seconds = 0;            ///< predicted wall time of the whole call
  std::size_t workers = 0;       ///< workers the call would use (its speed-up counts at
                                 ///< most the usable CPUs)
};

/// Which backend a call runs on and why: the answer of `explain()`.
struct plan {
  backend_kind chosen = backend_kind::serial;
  std::string reason = {};           ///< one sentence
  std::size_t items = 0;
  double seconds_per_item = 0;    ///< measured on the calling thread
  std::string cost_source = {};       ///< "sampled 8 items" or "history of 12 calls"
  std::vector<backend_estimate> estimates = {};
  bool requested = false;  ///< named by options::backend or POLYMAP_BACKEND, not predicted

  /// A few lines for people, as printed by POLYMAP_EXPLAIN=1.
  [[nodiscard]] std::string to_string() const;
};

namespace detail {

/// Puts `e` among `p`'s estimates, in place of that backend's, and says in `p.reason` what
/// it predicts and where that prediction comes from (`source`).
void add_estimate(plan& p, backend_estimate e, const std::string& source);

/// add_estimate, then the choice: `e.backend` when `requested`, else when it is usable and
/// predicted to finish no later than the backend `p` chose, unless that one was requested
/// (POLYMAP_BACKEND); the reason says which and why.
void weigh_estimate(plan& p, backend_estimate e, const std::string& source, bool requested);

}  // namespace detail

/// What one worker had applied to it.
struct worker_report {
  std::size_t worker = 0;
  std::vector<int> cpus = {};     ///< CPUs it was bound to (empty: not bound)
  bool bound = false;             ///< binding requested and applied
  std::optional<int> nice = {};   ///< nice value applied, when one was requested
  bool nice_applied = false;
};

/// What a call did, filled in when `options::report` points here.
struct run_report {
  plan decision = {};                 ///< the choice, as explain() would print it
  backend_kind backend{};         ///< where the items really ran
  std::size_t workers = 0;        ///< workers that took part
  std::vector<worker_report> worker_reports = {};
  std::string note = {};              ///< e.g. "pool busy: ran on the calling thread"
};

}  // namespace polymap
