// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace polymap::detail {

/// Marks the calling thread, for good, as a pool worker: maps called from it run inline.
void mark_worker_thread() noexcept;

/// Marks the calling thread as a worker while it lives (the caller taking part in a call,
/// a Kokkos thread running a call's chunk).
class worker_scope {
 public:
  worker_scope() noexcept;
  ~worker_scope();
  worker_scope(const worker_scope&) = delete;
  worker_scope& operator=(const worker_scope&) = delete;

 private:
  bool was_;
};

}  // namespace polymap::detail
