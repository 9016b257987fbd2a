// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// polymap bench: the built-in kernels on every backend that is here, and on automatic.

#include <polymap/backend.hpp>
#include <polymap/config.hpp>
#include <polymap/map.hpp>
#include <polymap/options.hpp>
#include <polymap/plan.hpp>
#include <polymap/shared_memory.hpp>
#include <polymap/topology.hpp>
#include <polymap/version.hpp>

#include "cli/commands.hpp"
#include "cpu/kernels.hpp"
// Plain declarations: without CUDA nothing calls them (see ran_on_gpu), so nothing
// needs their definitions.
#include "cuda/launch.hpp"
#include "executor.hpp"
#include "topology/binding.hpp"

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace polymap::cli {

namespace {

namespace k = polymap::kernels;

/// Seed of every input and of the Monte-Carlo stream: the same numbers on every run.
constexpr std::uint64_t seed = 20240601;

/// Problem sizes. medium, the default, is sized so that the whole bench (6 kernels x 3
/// backends x 5 repetitions) takes a few seconds on 2 cores: each serial run is tens of
/// milliseconds, long enough to dwarf the thread pool's fork-join.
struct problem_size {
  std::size_t saxpy_n;
  std::size_t stencil_n;
  std::size_t mandelbrot_width;
  std::size_t mandelbrot_height;
  std::size_t black_scholes_n;
  std::size_t pi_blocks;
  std::size_t pi_samples_per_block;
  std::size_t nbody_n;
};

problem_size size_named(const std::string& name) {
  if (name == "small") return {1U << 16, 256, 256, 192, 1U << 13, 64, 2048, 256};
  if (name == "large") return {1U << 26, 4096, 2048, 1536, 1U << 23, 8192, 16384, 8192};
  return {1U << 23, 2048, 1024, 768, 1U << 20, 2048, 4096, 1536};
}

/// The first index where `got` differs from `want` under `same`, described; or nothing.
template <class T, class Same>
std::optional<std::string> first_difference(const shared_vector<T>& got,
                                            const shared_vector<T>& want, std::string_view unit,
                                            Same same) {
  if (got.size() != want.size()) {
    return fmt::format("{} {}s, serial gave {}", got.size(), unit, want.size());
  }
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (!same(got[i], want[i])) {
      return fmt::format("{} {} is {}, serial gave {}", unit, i, got[i], want[i]);
    }
  }
  return std::nullopt;
}

/// Equal within 1e-12 relative; a NaN (an element that was never written) never is.
bool close(double got, double want) {
  return got == want || std::abs(got - want) <= 1e-12 * std::max(std::abs(got), std::abs(want));
}

/// The same for an option price: within 1e-9 of the larger of 1 and the price. The GPU's
/// erfc, exp and log differ from glibc's in the last bits, and a price that is a difference
/// of two nearly equal terms (a call far out of the money) carries that error unscaled.
bool close_price(double got, double want) {
  return got == want || std::abs(got - want) <= 1e-9 * std::max(1.0, std::abs(want));
}

/// Runs `gpu` when the options ask for the cuda backend, and says so in the report. The
/// lambdas of the workloads are host code, which no GPU runs: on cuda a workload calls the
/// same kernel precompiled for the GPU (kernels/cuda), copies in and out included.
template <class Gpu>
bool ran_on_gpu([[maybe_unused]] const options& opts, [[maybe_unused]] Gpu&& gpu) {
#if POLYMAP_HAS_CUDA
  if (opts.backend != backend_kind::cuda) return false;
  gpu();
  if (opts.report != nullptr) {
    opts.report->backend = backend_kind::cuda;
    opts.report->workers = 1;
  }
  return true;
#else
  return false;
#endif
}

/// One kernel with its data: runs it on any backend and checks the result against a
/// reference run.
class workload {
 public:
  virtual ~workload() = default;
  [[nodiscard]] virtual std::string_view name() const noexcept = 0;
  /// What an item is: "element", "cell", ...
  [[nodiscard]] virtual std::string_view unit() const noexcept = 0;
  /// Items of work in one run, in `unit`.
  [[nodiscard]] virtual std::size_t items() const noexcept = 0;
  /// Indices of the for_each in one run (rows, blocks, ...).
  [[nodiscard]] virtual std::size_t tasks() const noexcept = 0;
  /// Bytes one run must move to and from memory; 0 where the kernel is compute bound.
  [[nodiscard]] virtual double bytes() const noexcept { return 0; }
  /// Overwrites the outputs with values no run produces, so that an index that a backend
  /// skips shows up as a difference (untimed).
  virtual void reset() = 0;
  /// One run on the backend of `opts` (timed).
  virtual void run(const options& opts) = 0;
  /// Keeps the current outputs as the reference.
  virtual void keep_reference() = 0;
  /// Where the current outputs differ from the reference; nothing when they do not.
  [[nodiscard]] virtual std::optional<std::string> difference() const = 0;
  /// A line about the result, e.g. the estimate of pi; empty for none.
  [[nodiscard]] virtual std::string summary() const { return {}; }
};

class saxpy_workload final : public workload {
 public:
  explicit saxpy_workload(std::size_t n) : x_(n), y0_(n), y_(n) {
    for (std::size_t i = 0; i < n; ++i) {
      x_[i] = static_cast<float>(k::unit_interval(k::random_bits(seed, 2 * i)));
      y0_[i] = static_cast<float>(k::unit_interval(k::random_bits(seed, 2 * i + 1)));
    }
  }
  std::string_view name() const noexcept override { return "saxpy"; }
  std::string_view unit() const noexcept override { return "element"; }
  std::size_t items() const noexcept override { return x_.size(); }
  std::size_t tasks() const noexcept override { return x_.size(); }
  // Read x and y, write y: the STREAM convention, without the write-allocate traffic.
  double bytes() const noexcept override {
    return 3.0 * sizeof(float) * static_cast<double>(x_.size());
  }
  void reset() override { std::copy(y0_.begin(), y0_.end(), y_.begin()); }
  void run(const options& opts) override {
    const float a = 2.5F;
    const float* x = x_.data();
    float* y = y_.data();
    if (ran_on_gpu(opts, [&] { k::gpu::saxpy(x_.size(), a, x, y); })) return;
    polymap::for_each(
        x_.size(), [=](std::size_t i) noexcept { k::saxpy(i, a, x, y); }, opts);
  }
  void keep_reference() override { reference_ = y_; }
  std::optional<std::string> difference() const override {
    return first_difference(y_, reference_, "element",
                            [](float g, float w) { return close(g, w); });
  }

 private:
  shared_vector<float> x_, y0_, y_, reference_;
};

class stencil_workload final : public workload {
 public:
  explicit stencil_workload(std::size_t n) : n_(n), in_(n * n), out_(n * n) {
    for (std::size_t i = 0; i < in_.size(); ++i) {
      in_[i] = k::unit_interval(k::random_bits(seed, i));
    }
  }
  std::string_view name() const noexcept override { return "stencil"; }
  std::string_view unit() const noexcept override { return "cell"; }
  std::size_t items() const noexcept override { return n_ * n_; }
  std::size_t tasks() const noexcept override { return n_; }
  // Each cell read once from memory (its neighbours come from cache) and written once.
  double bytes() const noexcept override {
    return 2.0 * sizeof(double) * static_cast<double>(n_ * n_);
  }
  void reset() override {
    std::fill(out_.begin(), out_.end(), std::numeric_limits<double>::quiet_NaN());
  }
  void run(const options& opts) override {
    const std::size_t n = n_;
    const double* in = in_.data();
    double* out = out_.data();
    if (ran_on_gpu(opts, [&] { k::gpu::jacobi(n, in, out); })) return;
    polymap::for_each(
        n, [=](std::size_t row) noexcept { k::jacobi_row(row, n, in, out); }, opts);
  }
  void keep_reference() override { reference_ = out_; }
  std::optional<std::string> difference() const override {
    return first_difference(out_, reference_, "cell", close);
  }

 private:
  std::size_t n_;
  shared_vector<double> in_, out_, reference_;
};

class mandelbrot_workload final : public workload {
 public:
  mandelbrot_workload(std::size_t width, std::size_t height)
      : width_(width), height_(height), image_(width * height) {}
  std::string_view name() const noexcept override { return "mandelbrot"; }
  std::string_view unit() const noexcept override { return "pixel"; }
  std::size_t items() const noexcept override { return image_.size(); }
  std::size_t tasks() const noexcept override { return height_; }
  void reset() override { std::fill(image_.begin(), image_.end(), std::uint16_t{0xFFFF}); }
  void run(const options& opts) override {
    const std::size_t width = width_;
    const std::size_t height = height_;
    std::uint16_t* out = image_.data();
    if (ran_on_gpu(opts, [&] { k::gpu::mandelbrot(width, height, out); })) return;
    polymap::for_each(
        height, [=](std::size_t row) noexcept { k::mandelbrot_row(row, width, height, out); },
        opts);
  }
  void keep_reference() override { reference_ = image_; }
  std::optional<std::string> difference() const override {
    return first_difference(image_, reference_, "pixel",
                            [](std::uint16_t g, std::uint16_t w) { return g == w; });
  }

 private:
  std::size_t width_, height_;
  shared_vector<std::uint16_t> image_, reference_;
};

class black_scholes_workload final : public workload {
 public:
  explicit black_scholes_workload(std::size_t n) : options_(n), prices_(n) {
    for (std::size_t i = 0; i < n; ++i) options_[i] = k::bs_sample_option(seed, i);
  }
  std::string_view name() const noexcept override { return "black_scholes"; }
  std::string_view unit() const noexcept override { return "option"; }
  std::size_t items() const noexcept override { return options_.size(); }
  std::size_t tasks() const noexcept override { return options_.size(); }
  void reset() override {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::fill(prices_.begin(), prices_.end(), k::bs_price{.call = nan, .put = nan});
  }
  void run(const options& opts) override {
    const k::bs_option* in = options_.data();
    k::bs_price* out = prices_.data();
    // The portfolio is bs_sample_option(seed, i), which the GPU draws itself.
    if (ran_on_gpu(opts, [&] { k::gpu::black_scholes(seed, options_.size(), out); })) return;
    polymap::for_each(
        options_.size(), [=](std::size_t i) noexcept { out[i] = k::black_scholes(in[i]); }, opts);
  }
  void keep_reference() override { reference_ = prices_; }
  std::optional<std::string> difference() const override {
    for (std::size_t i = 0; i < prices_.size(); ++i) {
      const k::bs_price& g = prices_[i];
      const k::bs_price& w = reference_[i];
      if (!close_price(g.call, w.call) || !close_price(g.put, w.put)) {
        return fmt::format("option {} is (call {}, put {}), serial gave (call {}, put {})", i,
                           g.call, g.put, w.call, w.put);
      }
    }
    return std::nullopt;
  }

 private:
  std::vector<k::bs_option> options_;
  shared_vector<k::bs_price> prices_, reference_;
};

class pi_workload final : public workload {
 public:
  pi_workload(std::size_t blocks, std::size_t samples_per_block)
      : samples_per_block_(samples_per_block), hits_(blocks) {}
  std::string_view name() const noexcept override { return "pi"; }
  std::string_view unit() const noexcept override { return "sample"; }
  std::size_t items() const noexcept override { return hits_.size() * samples_per_block_; }
  std::size_t tasks() const noexcept override { return hits_.size(); }
  void reset() override {
    std::fill(hits_.begin(), hits_.end(), std::numeric_limits<std::uint64_t>::max());
  }
  void run(const options& opts) override {
    const std::size_t per_block = samples_per_block_;
    std::uint64_t* hits = hits_.data();
    if (ran_on_gpu(opts, [&] { k::gpu::pi_blocks(seed, hits_.size(), per_block, hits); })) return;
    polymap::for_each(
        hits_.size(),
        [=](std::size_t block) noexcept { hits[block] = k::pi_block_hits(seed, block, per_block); },
        opts);
  }
  void keep_reference() override { reference_ = hits_; }
  std::optional<std::string> difference() const override {
    return first_difference(hits_, reference_, "block",
                            [](std::uint64_t g, std::uint64_t w) { return g == w; });
  }
  std::string summary() const override {
    const std::uint64_t total = std::accumulate(hits_.begin(), hits_.end(), std::uint64_t{0});
    return fmt::format("pi ~ {:.6f} from {} samples ({} hits)", k::pi_estimate(total, items()),
                       items(), total);
  }

 private:
  std::size_t samples_per_block_;
  shared_vector<std::uint64_t> hits_, reference_;
};

class nbody_workload final : public workload {
 public:
  explicit nbody_workload(std::size_t n) : in_(n), out_(n) {
    for (std::size_t i = 0; i < n; ++i) in_[i] = k::nbody_sample(seed, i, n);
  }
  std::string_view name() const noexcept override { return "nbody"; }
  std::string_view unit() const noexcept override { return "interaction"; }
  std::size_t items() const noexcept override { return in_.size() * in_.size(); }
  std::size_t tasks() const noexcept override { return in_.size(); }
  void reset() override {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::fill(out_.begin(), out_.end(), k::body{nan, nan, nan, nan, nan, nan, nan});
  }
  void run(const options& opts) override {
    const std::size_t n = in_.size();
    const k::body* in = in_.data();
    k::body* out = out_.data();
    if (ran_on_gpu(opts, [&] { k::gpu::nbody(n, in, out, dt, softening); })) return;
    polymap::for_each(
        n, [=](std::size_t i) noexcept { k::nbody_step(i, n, in, out, dt, softening); }, opts);
  }
  void keep_reference() override { reference_ = out_; }
  std::optional<std::string> difference() const override {
    for (std::size_t i = 0; i < out_.size(); ++i) {
      const k::body& g = out_[i];
      const k::body& w = reference_[i];
      if (!close(g.x, w.x) || !close(g.y, w.y) || !close(g.z, w.z) || !close(g.vx, w.vx) ||
          !close(g.vy, w.vy) || !close(g.vz, w.vz)) {
        return fmt::format("body {} is at ({}, {}, {}), serial gave ({}, {}, {})", i, g.x, g.y,
                           g.z, w.x, w.y, w.z);
      }
    }
    return std::nullopt;
  }

 private:
  static constexpr double dt = 1e-3;
  static constexpr double softening = 1e-2;
  shared_vector<k::body> in_, out_, reference_;
};

std::unique_ptr<workload> make_workload(const std::string& name, const problem_size& s) {
  if (name == "saxpy") return std::make_unique<saxpy_workload>(s.saxpy_n);
  if (name == "stencil") return std::make_unique<stencil_workload>(s.stencil_n);
  if (name == "mandelbrot") {
    return std::make_unique<mandelbrot_workload>(s.mandelbrot_width, s.mandelbrot_height);
  }
  if (name == "black_scholes") return std::make_unique<black_scholes_workload>(s.black_scholes_n);
  if (name == "nbody") return std::make_unique<nbody_workload>(s.nbody_n);
  return std::make_unique<pi_workload>(s.pi_blocks, s.pi_samples_per_block);
}

/// One line of the results: a kernel on a backend.
struct result_row {
  std::string kernel = {};
  backend_kind backend{};
  std::string unit = {};
  std::size_t items = 0;
  std::size_t tasks = 0;
  bool skipped = false;
  std::string skip_reason = {};
  std::vector<double> seconds = {};  // one per repetition
  double median = 0;
  double items_per_second = 0;
  std::optional<double> gb_per_second = {};
  double speedup = 0;
  std::size_t workers = 0;                       // of the last repetition
  std::map<backend_kind, unsigned> ran_on = {};  // repetitions per backend the items ran on
  bool automatic_choice = false;                 // the backend automatic ran this kernel on
  std::string decision = {};                     // automatic only: why
  std::string note = {};                         // from the run report, e.g. a busy pool
  bool matches_serial = true;
  std::string error = {};  // what a run threw; no further runs were made
};

double median_of(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  const std::size_t mid = xs.size() / 2;
  return xs.size() % 2 == 1 ? xs[mid] : 0.5 * (xs[mid - 1] + xs[mid]);
}

/// The backend most repetitions ran on.
std::optional<backend_kind> mostly_ran_on(const result_row& row) {
  std::optional<backend_kind> best;
  unsigned most = 0;
  for (const auto& [kind, count] : row.ran_on) {
    if (count > most) {
      best = kind;
      most = count;
    }
  }
  return best;
}

/// Runs `w` once untimed on `kind`, then `repeat` times timed, checking each run against
/// the reference. Appends to `errors` what went wrong.
result_row measure(workload& w, backend_kind kind, unsigned repeat,
                   std::vector<std::string>& errors) {
  result_row row{.kernel = std::string(w.name()),
                 .backend = kind,
                 .unit = std::string(w.unit()),
                 .items = w.items(),
                 .tasks = w.tasks()};
  // Run 0 is the warm-up, not timed: the first run of a kernel on a backend pays one-off
  // costs (first touch of the backend's buffers, code and data not in cache yet,
  // automatic's first sample) that would otherwise be the whole figure of --repeat 1.
  for (unsigned rep = 0; rep <= repeat; ++rep) {
    w.reset();
    run_report report;
    const options opts{.backend = kind, .report = &report};
    const auto start = std::chrono::steady_clock::now();
    try {
      w.run(opts);
    } catch (const std::exception& e) {
      row.matches_serial = false;
      row.error = e.what();
      errors.push_back(
          fmt::format("kernel {} on backend {} failed: {}", w.name(), to_string(kind), e.what()));
      break;
    }
    if (rep == 0) continue;
    row.seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    ++row.ran_on[report.backend];
    row.workers = report.workers;
    if (!report.note.empty()) row.note = report.note;
    if (kind == backend_kind::automatic) row.decision = report.decision.reason;
    if (const std::optional<std::string> diff = w.difference(); diff && row.matches_serial) {
      row.matches_serial = false;
      errors.push_back(fmt::format("kernel {} on backend {} differs from serial: {}", w.name(),
                                   to_string(kind), *diff));
    }
  }
  if (!row.seconds.empty()) {
    row.median = median_of(row.seconds);
    const double per_second = row.median > 0 ? 1.0 / row.median : 0.0;
    row.items_per_second = static_cast<double>(row.items) * per_second;
    if (w.bytes() > 0) row.gb_per_second = w.bytes() * per_second / 1e9;
  }
  return row;
}

/// Backends this bench runs (built and available here), and those it skips with why.
struct backend_plan {
  std::vector<backend_kind> run = {};
  std::vector<std::pair<backend_kind, std::string>> skipped = {};
};

backend_plan plan_backends() {
  backend_plan p;
  for (backend_kind kind : all_backends) {
    std::string why_not;
    if (kind == backend_kind::mpi) {
      // The kernels write their output through for_each, which over MPI each rank keeps
      // for the items it ran; and a bench is one machine's.
      p.skipped.emplace_back(kind, "the kernels' output would stay on the rank that made it; "
                                   "bench measures this machine (bench_mpi_farm measures mpi)");
      continue;
    }
    if (detail::usable_executor(kind, why_not) == nullptr) {
      p.skipped.emplace_back(kind, std::move(why_not));
    } else {
      p.run.push_back(kind);
    }
  }
  p.run.push_back(backend_kind::automatic);
  return p;
}

/// "8.39 M", "512 k", "1.02 G": a count for people.
std::string si(double v) {
  constexpr const char* prefixes[] = {"", " k", " M", " G", " T"};
  std::size_t p = 0;
  while (std::abs(v) >= 1000 && p + 1 < std::size(prefixes)) {
    v /= 1000;
    ++p;
  }
  return fmt::format("{:.3g}{}", v, prefixes[p]);
}

std::string seconds_text(double s) {
  if (s < 1e-3) return fmt::format("{:.1f} us", s * 1e6);
  if (s < 1) return fmt::format("{:.2f} ms", s * 1e3);
  return fmt::format("{:.3f} s", s);
}

/// How each backend's results are compared with serial's.
constexpr const char* checked_against_serial =
    "bitwise for mandelbrot and pi, within 1e-12 relative for the floating-point kernels";

nlohmann::ordered_json to_json(const result_row& r, const std::string& size, unsigned repeat) {
  // Every row has every key, null where it has no value.
  const auto or_null = [](bool has, auto value) {
    return has ? nlohmann::ordered_json(value) : nlohmann::ordered_json(nullptr);
  };
  // A backend skipped, or failed before its first timed run, has no numbers: null, not 0.
  const bool timed = !r.skipped && !r.seconds.empty();
  const auto number = [timed](std::optional<double> v) {
    return timed && v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
  };
  const std::optional<backend_kind> ran_on = r.skipped ? std::nullopt : mostly_ran_on(r);
  nlohmann::ordered_json j;
  j["kernel"] = r.kernel;
  j["backend"] = std::string(to_string(r.backend));
  j["skipped"] = r.skipped;
  j["reason"] = or_null(r.skipped, r.skip_reason);
  j["size"] = size;
  j["unit"] = r.unit;
  j["items"] = r.items;
  j["tasks"] = r.tasks;
  j["automatic_choice"] = r.automatic_choice;
  j["repeat"] = r.skipped ? 0U : repeat;
  j["seconds"] = r.skipped ? std::vector<double>{} : r.seconds;
  j["median_seconds"] = number(r.median);
  j["items_per_second"] = number(r.items_per_second);
  j["gb_per_second"] = number(r.gb_per_second);
  j["speedup_vs_serial"] = number(r.speedup > 0 ? std::optional<double>(r.speedup) : std::nullopt);
  j["workers"] = or_null(!r.skipped, r.workers);
  j["ran_on"] = ran_on ? nlohmann::ordered_json(std::string(to_string(*ran_on)))
                       : nlohmann::ordered_json(nullptr);
  j["result_matches_serial"] = or_null(!r.skipped, r.matches_serial);
  j["error"] = or_null(!r.error.empty(), r.error);
  j["decision"] = or_null(!r.skipped && r.backend == backend_kind::automatic, r.decision);
  j["note"] = or_null(!r.note.empty(), r.note);
  return j;
}

void print_table(const std::vector<result_row>& rows, const backend_plan& backends,
                 const bench_args& args, const std::vector<std::string>& summaries) {
  const topology& topo = topology::current();
  fmt::print("polymap bench: size {}, median of {} run{}; {} worker{} on CPUs {} ({})\n\n",
             args.size, args.repeat, args.repeat == 1 ? "" : "s", topo.usable_count(),
             topo.usable_count() == 1 ? "" : "s", detail::format_cpu_list(topo.usable_pus()),
             topo.source());
  fmt::print("{:<14} {:<10} {:>18} {:>10} {:>10} {:>7} {:>7}\n", "kernel", "backend", "items",
             "median", "items/s", "GB/s", "speedup");
  std::string last_kernel;
  for (const result_row& r : rows) {
    if (r.skipped) continue;
    if (!last_kernel.empty() && r.kernel != last_kernel) fmt::print("\n");
    last_kernel = r.kernel;
    std::string mark;
    if (r.backend == backend_kind::automatic) {
      if (const std::optional<backend_kind> on = mostly_ran_on(r)) {
        mark = fmt::format("ran on {}", to_string(*on));
      }
    } else if (r.automatic_choice) {
      mark = "<- automatic's choice";
    }
    if (!r.error.empty()) {
      mark = fmt::format("FAILED: {}", r.error);
    } else if (!r.matches_serial) {
      mark += mark.empty() ? "MISMATCH" : ", MISMATCH";
    }
    const std::string items = si(static_cast<double>(r.items)) + " " + r.unit + "s";
    std::string line =
        r.seconds.empty()
            ? fmt::format("{:<14} {:<10} {:>18} {:>10} {:>10} {:>7} {:>7}  {}", r.kernel,
                          to_string(r.backend), items, "-", "-", "-", "-", mark)
            : fmt::format(
                  "{:<14} {:<10} {:>18} {:>10} {:>10} {:>7} {:>6.2f}x  {}", r.kernel,
                  to_string(r.backend), items, seconds_text(r.median), si(r.items_per_second),
                  r.gb_per_second ? fmt::format("{:.1f}", *r.gb_per_second) : std::string("-"),
                  r.speedup, mark);
    line.erase(line.find_last_not_of(' ') + 1);
    fmt::print("{}\n", line);
  }

  std::vector<std::string> decisions;
  std::vector<std::string> notes;
  for (const result_row& r : rows) {
    if (r.backend == backend_kind::automatic && !r.decision.empty()) {
      decisions.push_back(fmt::format("  {:<14} {}", r.kernel, r.decision));
    }
    if (!r.note.empty()) {
      notes.push_back(fmt::format("  {} on {}: {}", r.kernel, to_string(r.backend), r.note));
    }
  }
  if (!decisions.empty()) {
    fmt::print("\nautomatic's decisions\n");
    for (const std::string& d : decisions) fmt::print("{}\n", d);
  }
  if (!backends.skipped.empty()) {
    fmt::print("\nskipped backends\n");
    for (const auto& [kind, reason] : backends.skipped) {
      fmt::print("  {:<14} {}\n", to_string(kind), reason);
    }
  }
  if (!notes.empty()) {
    fmt::print("\nnotes\n");
    for (const std::string& n : notes) fmt::print("{}\n", n);
  }
  fmt::print("\nresults checked against serial: {}\n", checked_against_serial);
  for (const std::string& s : summaries) fmt::print("{}\n", s);
}

}  // namespace

int run_bench(const bench_args& args) {
  const problem_size size = size_named(args.size);
  const backend_plan backends = plan_backends();
  std::vector<std::string> selected;
  for (const std::string& name : kernel_names()) {
    if (args.kernels.empty() ||
        std::find(args.kernels.begin(), args.kernels.end(), name) != args.kernels.end()) {
      selected.push_back(name);
    }
  }

  // Start what starts on first use (the thread pool, which also times its fork-join then)
  // before any timed run, so that the first kernel does not pay for it.
  for (backend_kind kind : backends.run) {
    if (kind == backend_kind::automatic) continue;
    polymap::for_each(
        4 * topology::current().usable_count(), [](std::size_t) noexcept {},
        options{.backend = kind});
  }

  std::vector<result_row> rows;
  std::vector<std::string> errors;
  std::vector<std::string> summaries;
  nlohmann::ordered_json results = nlohmann::ordered_json::object();  // kernel: its summary
  for (const std::string& name : selected) {
    std::unique_ptr<workload> w = make_workload(name, size);
    // The reference: an untimed serial run, which also faults in every page of the outputs
    // and gives automatic a first measurement of the kernel's cost.
    w->reset();
    w->run(options{.backend = backend_kind::serial});
    w->keep_reference();
    if (std::string s = w->summary(); !s.empty()) {
      results[name] = s;
      summaries.push_back(std::move(s));
    }

    const std::size_t first = rows.size();
    for (backend_kind kind : backends.run) rows.push_back(measure(*w, kind, args.repeat, errors));
    for (const auto& [kind, reason] : backends.skipped) {
      rows.push_back(result_row{.kernel = name,
                                .backend = kind,
                                .unit = std::string(w->unit()),
                                .items = w->items(),
                                .tasks = w->tasks(),
                                .skipped = true,
                                .skip_reason = reason});
    }

    // Speed-ups against this kernel's serial row, and automatic's choice marked on the row
    // of the backend it ran on.
    const auto kernel_rows = std::span(rows).subspan(first);
    double serial_median = 0;
    std::optional<backend_kind> chosen;
    for (const result_row& r : kernel_rows) {
      if (r.backend == backend_kind::serial) serial_median = r.median;
      if (r.backend == backend_kind::automatic) chosen = mostly_ran_on(r);
    }
    for (result_row& r : kernel_rows) {
      if (!r.skipped && r.median > 0) r.speedup = serial_median / r.median;
      r.automatic_choice = chosen && r.backend == *chosen;
    }
  }

  if (args.json) {
    // What the table's head and foot say, then its rows.
    const topology& topo = topology::current();
    nlohmann::ordered_json out;
    out["polymap"] = std::string(polymap::version);
    out["size"] = args.size;
    out["repeat"] = args.repeat;
    out["usable_cpus"] = topo.usable_count();
    out["usable_cpu_list"] = detail::format_cpu_list(topo.usable_pus());
    out["topology_source"] = topo.source();
    out["checked"] = checked_against_serial;
    out["results"] = results;
    out["rows"] = nlohmann::ordered_json::array();
    for (const result_row& r : rows) out["rows"].push_back(to_json(r, args.size, args.repeat));
    fmt::print("{}\n", out.dump(2));
  } else {
    print_table(rows, backends, args, summaries);
  }
  for (const std::string& e : errors) print_error("polymap bench: {}\n", e);
  return errors.empty() ? exit_ok : exit_failure;
}

}  // namespace polymap::cli
