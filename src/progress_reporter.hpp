// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <polymap/detail/execute.hpp>
#include <polymap/detail/run_state.hpp>
#include <polymap/options.hpp>
#include <polymap/progress.hpp>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace polymap::detail {

/// Reports a call's progress about ten times a second while it runs, and once at the
/// end: to `options::on_progress`, and as a bar on stderr when `options::progress` is set
/// and stderr is a terminal. Starts no thread when neither is asked for.
/// Thread safety: owned by the calling thread; its own thread only reads `state`.
class progress_reporter {
 public:
  progress_reporter(const options& opts, const run_state& state);
  ~progress_reporter();
  progress_reporter(const progress_reporter&) = delete;
  progress_reporter& operator=(const progress_reporter&) = delete;

 private:
  void report(bool finished) noexcept;

  const options& opts_;
  const run_state& state_;
  const std::chrono::steady_clock::time_point start_;
  bool draw_ = false;
  bool callback_ok_ = true;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace polymap::detail
