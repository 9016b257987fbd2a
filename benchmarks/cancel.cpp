// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// How soon a cancelled map is over when its items cost more than the first ones: the first
// C items take about 50 ns and the 360 after them about 2 ms each, so a cost measured on the
// first items misjudges the others 40,000-fold.
//   BM_Cancel/<peer>/<C>, C = 40, 4000  the map runs in the background; once C + 4 items
//       have started, the caller cancels it and waits until the map is over. Time (manual):
//       from the cancel to the end of the map. Counter started_after_cancel: items that
//       began meanwhile.
// Peers: polymap (automatic, threads, processes) through map_async and cancel(); oneTBB's
// parallel_for, cancelled through its task_group_context; and OpenMP, which cannot cancel a
// loop unless OMP_CANCELLATION was set before the program started, as a hand-written
// dynamic loop that looks at a flag before each item: the least a cancel can cost.

#include "common.hpp"

#include <polymap/job.hpp>
#include <polymap/shared_memory.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_group.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr std::size_t slow_items = 360;

std::uint64_t cheap_iters = 1;
std::uint64_t slow_iters = 1;

/// Items started, in memory that worker processes share (the processes peer).
using start_count = polymap::shared_vector<std::atomic<std::size_t>>;

/// The item: cheap for the first `cheap`, slow after; counts its start.
struct item {
  std::atomic<std::size_t>* started;
  std::size_t cheap;
  std::uint64_t operator()(std::size_t i) const {
    started->fetch_add(1, std::memory_order_relaxed);
    return polymap_bench::spin(i < cheap ? cheap_iters : slow_iters, i);
  }
};

/// A map started in the background: `cancel()` asks it to stop, `wait()` returns when it is
/// over.
class running_map {
 public:
  virtual ~running_map() = default;
  virtual void cancel() = 0;
  virtual void wait() = 0;
};

class polymap_map final : public running_map {
 public:
  polymap_map(std::span<const std::size_t> xs, item fn, polymap::backend backend)
      : job_(polymap::map_async(xs, fn, {.backend = backend})) {}
  void cancel() override { job_.cancel(); }
  void wait() override {
    try {
      (void)job_.get();
    } catch (const polymap::cancelled_error&) {
    }
  }

 private:
  decltype(polymap::map_async(std::span<const std::size_t>{}, item{nullptr, 0})) job_;
};

class tbb_map final : public running_map {
 public:
  tbb_map(std::span<const std::size_t> xs, item fn)
      : out_(xs.size()), thread_([this, xs, fn] {
          tbb::parallel_for(
              tbb::blocked_range<std::size_t>(0, xs.size()),
              [&](const tbb::blocked_range<std::size_t>& r) {
                for (std::size_t i = r.begin(); i < r.end(); ++i) out_[i] = fn(xs[i]);
              },
              context_);
        }) {}
  void cancel() override { context_.cancel_group_execution(); }
  void wait() override { thread_.join(); }

 private:
  std::vector<std::uint64_t> out_;
  tbb::task_group_context context_;
  std::thread thread_;
};

class openmp_flag_map final : public running_map {
 public:
  openmp_flag_map(std::span<const std::size_t> xs, item fn)
      : out_(xs.size()), thread_([this, xs, fn] {
          const auto n = static_cast<std::ptrdiff_t>(xs.size());
#pragma omp parallel for schedule(dynamic, 1)
          for (std::ptrdiff_t i = 0; i < n; ++i) {
            if (stop_.load(std::memory_order_relaxed)) continue;
            out_[static_cast<std::size_t>(i)] = fn(xs[static_cast<std::size_t>(i)]);
          }
        }) {}
  void cancel() override { stop_.store(true, std::memory_order_relaxed); }
  void wait() override { thread_.join(); }

 private:
  std::vector<std::uint64_t> out_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

using starter = std::unique_ptr<running_map> (*)(std::span<const std::size_t>, item);

void run(benchmark::State& state, starter start) {
  const auto cheap = static_cast<std::size_t>(state.range(0));
  std::vector<std::size_t> xs(cheap + slow_items);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = i;
  start_count started(1);
  double after = 0;
  for (auto _ : state) {
    started[0].store(0);
    std::unique_ptr<running_map> m = start(xs, item{&started[0], cheap});
    // The slow items alone take 360 ms on one worker: a map that never gets there failed.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (started[0].load(std::memory_order_relaxed) < cheap + 4) {
      if (std::chrono::steady_clock::now() > give_up) {
        state.SkipWithError("the map never started its slow items");
        m->cancel();
        m->wait();
        return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    const std::size_t at_cancel = started[0].load();
    const auto t0 = std::chrono::steady_clock::now();
    m->cancel();
    m->wait();
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    after += static_cast<double>(started[0].load() - at_cancel);
  }
  state.counters["started_after_cancel"] =
      benchmark::Counter(after, benchmark::Counter::kAvgIterations);
}

template <polymap::backend B>
std::unique_ptr<running_map> start_polymap(std::span<const std::size_t> xs, item fn) {
  return std::make_unique<polymap_map>(xs, fn, B);
}

std::unique_ptr<running_map> start_tbb(std::span<const std::size_t> xs, item fn) {
  return std::make_unique<tbb_map>(xs, fn);
}

std::unique_ptr<running_map> start_openmp_flag(std::span<const std::size_t> xs, item fn) {
  return std::make_unique<openmp_flag_map>(xs, fn);
}

void register_all() {
  cheap_iters = polymap_bench::calibrate_spin(50e-9);
  slow_iters = polymap_bench::calibrate_spin(2e-3);
  polymap_bench::note_calibration("cheap_item", cheap_iters, 50e-9);
  benchmark::AddCustomContext("slow_item_iterations", std::to_string(slow_iters));
  const std::initializer_list<polymap_bench::peer<starter>> peers = {
      {"tbb", start_tbb},
      {"openmp_flag", start_openmp_flag},
      {"polymap_auto", start_polymap<polymap::backend::automatic>},
      {"polymap_threads", start_polymap<polymap::backend::threads>},
      {"polymap_processes", start_polymap<polymap::backend::processes>},
  };
  for (const auto& p : peers) {
    benchmark::RegisterBenchmark(("BM_Cancel/" + std::string(p.name)).c_str(), run, p.kernel)
        ->Arg(40)
        ->Arg(4000)
        ->UseManualTime()
        ->Iterations(10)
        ->Unit(benchmark::kMillisecond);
  }
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
