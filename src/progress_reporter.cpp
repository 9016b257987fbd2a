// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "progress_reporter.hpp"

#include <polymap/detail/run_items.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include <unistd.h>

namespace polymap::detail {

progress_info progress_of(const run_state& state, std::chrono::steady_clock::time_point start,
                          bool finished) noexcept {
  progress_info p;
  p.total = state.total();
  p.done = state.done();
  p.failed = state.failed();
  p.elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  p.rate = p.elapsed > 0 ? static_cast<double>(p.done) / p.elapsed : 0;
  p.eta = p.rate > 0 && p.done < p.total ? static_cast<double>(p.total - p.done) / p.rate : 0;
  p.finished = finished;
  return p;
}

progress_reporter::progress_reporter(const options& opts, const run_state& state)
    : opts_(opts), state_(state), start_(std::chrono::steady_clock::now()) {
  draw_ = opts.progress && isatty(STDERR_FILENO) == 1;
  if (!draw_ && !opts.on_progress) return;
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) {
      lock.unlock();
      report(false);
      lock.lock();
    }
  });
}

progress_reporter::~progress_reporter() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  report(true);
}

void progress_reporter::report(bool finished) noexcept {
  const progress_info p = progress_of(state_, start_, finished);
  if (opts_.on_progress && callback_ok_) {
    try {
      opts_.on_progress(p);
    } catch (...) {
      // A throwing callback must not take the call down: it is dropped, and said so once.
      callback_ok_ = false;
      std::fprintf(stderr, "polymap: options::on_progress threw (%s); it is no longer called\n",
                   describe(std::current_exception()).c_str());
    }
  }
  if (!draw_) return;
  constexpr int width = 30;
  const double frac = p.total == 0 ? 1.0 : static_cast<double>(p.done) / static_cast<double>(p.total);
  const int filled = static_cast<int>(frac * width);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, ' ');
  std::fprintf(stderr, "\r[%s] %zu/%zu %5.1f%% %.0f/s ETA %.1fs%s%s", bar.c_str(), p.done,
               p.total, frac * 100.0, p.rate, p.eta,
               p.failed != 0 ? (" failed " + std::to_string(p.failed)).c_str() : "",
               finished ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace polymap::detail
