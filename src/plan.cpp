// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/plan.hpp>
#include <polymap/version.hpp>

#include <cstdio>
#include <string>

namespace polymap {

std::string_view library_version() noexcept { return POLYMAP_VERSION_STRING; }

namespace {
std::string seconds_text(double s) {
  char buf[32];
  if (s < 1e-6) {
    std::snprintf(buf, sizeof buf, "%.1f ns", s * 1e9);
  } else if (s < 1e-3) {
    std::snprintf(buf, sizeof buf, "%.2f us", s * 1e6);
  } else if (s < 1) {
    std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  }
  return buf;
}
}  // namespace

std::string plan::to_string() const {
  std::string text = "polymap: " + std::to_string(items) + " items -> " +
                     std::string(polymap::to_string(chosen)) + ": " + reason + "\n";
  text += "  cost per item " + seconds_text(seconds_per_item) + " (" + cost_source + ")\n";
  for (const backend_estimate& e : estimates) {
    text += "  " + std::string(polymap::to_string(e.backend)) + ": ";
    if (e.usable) {
      text += "predicted " + seconds_text(e.seconds) + " on " + std::to_string(e.workers) +
              (e.workers == 1 ? " worker" : " workers");
    } else {
      text += "not usable: " + e.why_not;
    }
    text += e.backend == chosen ? "  <- chosen\n" : "\n";
  }
  return text;
}

namespace detail {

namespace {
const backend_estimate* estimate_of(const plan& p, backend_kind kind) {
  for (const backend_estimate& e : p.estimates) {
    if (e.backend == kind) return &e;
  }
  return nullptr;
}

void put_estimate(plan& p, backend_estimate e) {
  for (backend_estimate& old : p.estimates) {
    if (old.backend == e.backend) {
      old = std::move(e);
      return;
    }
  }
  p.estimates.push_back(std::move(e));
}
}  // namespace

void add_estimate(plan& p, backend_estimate e, const std::string& source) {
  if (e.usable) {
    p.reason += "; " + std::string(polymap::to_string(e.backend)) + " predicted " +
                seconds_text(e.seconds) + " (" + source + ")";
  }
  put_estimate(p, std::move(e));
}

void weigh_estimate(plan& p, backend_estimate e, const std::string& source, bool requested) {
  if (requested) {
    p.chosen = e.backend;
    p.requested = true;
    p.reason = e.usable ? "requested by options::backend"
                        : "requested by options::backend, but not usable here: " + e.why_not;
    put_estimate(p, std::move(e));
    return;
  }
  const backend_estimate* chosen = estimate_of(p, p.chosen);
  if (!p.requested && e.usable && chosen != nullptr && chosen->usable &&
      e.seconds <= chosen->seconds) {
    p.reason = std::string(polymap::to_string(e.backend)) + " predicted to finish first: " +
               seconds_text(e.seconds) + " (" + source + ") against " +
               seconds_text(chosen->seconds) + " on " +
               std::string(polymap::to_string(p.chosen));
    p.chosen = e.backend;
    put_estimate(p, std::move(e));
    return;
  }
  add_estimate(p, std::move(e), source);
}

}  // namespace detail

}  // namespace polymap
