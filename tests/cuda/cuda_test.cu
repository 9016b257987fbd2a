// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The cuda backend: what runs without a GPU (the device-callable trait, the errors and the
// CPU fallback when there is no device), and, on a machine with one, the device conformance
// checks and the built-in kernels against a double-precision CPU reference.
#include <polymap/cuda/map.hpp>
#include <polymap/polymap.hpp>

#include "cuda/launch.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <thrust/device_vector.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace polymap {
namespace {

namespace k = polymap::kernels;

}  // namespace

struct marked_scale {
  using polymap_device_callable = void;
  float a;
  POLYMAP_HD float operator()(float x) const { return a * x; }
};
struct unmarked_scale {
  float a;
  POLYMAP_HD float operator()(float x) const { return a * x; }
};
/// Marked device-callable, but its items cannot be copied to a GPU byte for byte.
struct marked_length {
  using polymap_device_callable = void;
  std::size_t operator()(const std::string& s) const { return s.size(); }
};

// nvcc accepts an extended __host__ __device__ lambda only inside a function that is not a
// private member (a gtest TestBody is private) and not in an unnamed namespace: the lambdas
// of these tests are made by the free functions below.
namespace cuda_test {

struct hd_plus_one {
  using polymap_device_callable = void;
  POLYMAP_HD float operator()(float x) const { return x + 1; }
};
inline auto host_plus_one() {
  return [](float x) { return x + 1; };
}
/// 2x + 1 of every element, through an extended lambda.
inline std::vector<double> affine(const std::vector<float>& xs, const options& o) {
  auto f = [] __host__ __device__(float x) { return 2.0 * x + 1.0; };
  static_assert(is_device_callable_v<decltype(f)>);
  return cuda::map(xs, f, o);
}
inline void count_each(std::size_t n, int* c) {
  cuda::for_each(n, [=] __host__ __device__(std::size_t i) {
#if defined(__CUDA_ARCH__)
    atomicAdd(c + i, 1);
#else
    ++c[i];
#endif
  });
}

/// Writes 1 through `p` on the GPU: given a null pointer, an illegal address (a sticky error).
inline void write_one(int* p) {
  cuda::for_each(std::size_t{1}, [=] __host__ __device__(std::size_t i) { p[i] = 1; });
}

/// Run in a worker process of the processes backend: 1 when cuda::map leaves the GPU alone
/// there (automatic runs on the CPU, an explicit cuda is refused, naming the reason).
inline int gpu_left_alone(int x) {
  const std::vector<float> v(3, static_cast<float>(x));
  run_report report;
  const std::vector<float> w = cuda::map(v, hd_plus_one{}, {.report = &report});
  if (report.backend == backend::cuda || w != std::vector<float>(3, static_cast<float>(x + 1))) {
    return 0;
  }
  try {
    (void)cuda::map(v, hd_plus_one{}, {.backend = backend::cuda});
    return 0;
  } catch (const backend_unavailable& e) {
    return std::string(e.what()).find("worker process") != std::string::npos ? 1 : 0;
  }
}

/// 3x, after spinning some 2.5 ms per item on the GPU (the host's copy, never called, does
/// not): a streamed map of a few chunks of it runs long enough to be stopped in the middle.
struct slow_triple {
  using polymap_device_callable = void;
  POLYMAP_HD float operator()(float x) const {
#if defined(__CUDA_ARCH__)
    const long long start = clock64();
    while (clock64() - start < 5'000'000) {
    }
#endif
    return 3.0F * x;
  }
};

/// `out[i]` = the low byte of 7i + 3.
struct stamp_index {
  using polymap_device_callable = void;
  std::uint8_t* out;
  POLYMAP_HD void operator()(std::size_t i) const { out[i] = static_cast<std::uint8_t>(i * 7 + 3); }
};
struct add_one_byte {
  using polymap_device_callable = void;
  POLYMAP_HD std::uint8_t operator()(std::uint8_t x) const {
    return static_cast<std::uint8_t>(x + 1);
  }
};
/// Counts into `*wrong` the i where `got[i]` is not the low byte of 7i + 4.
struct count_wrong_stamps {
  using polymap_device_callable = void;
  const std::uint8_t* got;
  unsigned long long* wrong;
  POLYMAP_HD void operator()(std::size_t i) const {
    if (got[i] != static_cast<std::uint8_t>(i * 7 + 4)) {
#if defined(__CUDA_ARCH__)
      atomicAdd(wrong, 1ULL);
#else
      ++*wrong;
#endif
    }
  }
};

/// 2x + 1 of every element into `out`, through an extended lambda.
inline void affine_into(std::span<const float> xs, std::span<double> out, const options& o) {
  cuda::map_into(xs, out, [] __host__ __device__(float x) { return 2.0 * x + 1.0; }, o);
}

/// Counts every index of [0, n) into `c` with an extended __device__ lambda (device code
/// alone: for_each never runs its function on the host).
inline void count_each_on_device(std::size_t n, int* c) {
  auto f = [=] __device__(std::size_t i) { atomicAdd(c + i, 1); };
  static_assert(is_device_lambda_v<decltype(f)> && !is_device_callable_v<decltype(f)>);
  cuda::for_each(n, f);
}

/// Whether each element is positive: bool results, which a std::vector<bool> holds packed.
inline std::vector<bool> positive(const std::vector<float>& xs, const options& o) {
  return cuda::map(xs, [] __host__ __device__(float x) { return x > 0.0F; }, o);
}

// A span over device memory that is not const is read on the GPU, in place, as a const one
// is: the result stays on the device.
static_assert(std::is_same_v<decltype(cuda::map(std::declval<std::span<float>>(), hd_plus_one{})),
                             cuda::device_buffer<float>>);
static_assert(
    std::is_same_v<decltype(cuda::map(std::declval<std::span<const float>>(), hd_plus_one{})),
                   cuda::device_buffer<float>>);

// Compile-time proofs: they hold with or without a GPU.
static_assert(is_device_callable_v<hd_plus_one>);
static_assert(is_device_callable_v<marked_scale>);
static_assert(is_device_callable_v<slow_triple>);
static_assert(!is_device_callable_v<decltype(host_plus_one())>);
static_assert(!is_device_callable_v<unmarked_scale>);
static_assert(!is_device_callable_v<float (*)(float)>);

}  // namespace cuda_test

namespace {

using cuda_test::hd_plus_one;
using cuda_test::host_plus_one;

bool have_gpu() { return cuda::device_count() > 0; }

/// What polymap keeps between processes ($XDG_CACHE_HOME/polymap: the GPU's measured costs)
/// goes to a folder of this run, not to the home folder of whoever runs the tests. Set once
/// per run: a death test's fresh process inherits the folder (and a test's own change of it).
const bool scratch_cache = [] {
  if (std::getenv("POLYMAP_TEST_SCRATCH_CACHE") != nullptr) return true;
  static std::string dir =
      (std::filesystem::temp_directory_path() / "polymap-cuda-tests-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) return false;
  ::setenv("XDG_CACHE_HOME", dir.c_str(), 1);
  ::setenv("POLYMAP_TEST_SCRATCH_CACHE", dir.c_str(), 1);
  static const pid_t owner = ::getpid();
  std::atexit([] {
    if (::getpid() != owner) return;  // a death test's forked child, exiting early
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  });
  return true;
}();

TEST(CudaBackend, WithoutADeviceItSaysWhy) {
  if (have_gpu()) GTEST_SKIP() << "a CUDA device is here: " << cuda::device_status();
  EXPECT_NE(cuda::device_status().find("no CUDA device"), std::string::npos)
      << cuda::device_status();
  std::vector<float> xs(100, 1.0F);
  try {
    (void)cuda::map(xs, hd_plus_one{}, {.backend = backend::cuda});
    ADD_FAILURE() << "ran on a GPU that is not here";
  } catch (const backend_unavailable& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
  // The generic path names the backend too, and automatic never picks it.
  EXPECT_THROW((void)polymap::map(xs, host_plus_one(), {.backend = backend::cuda}),
               backend_unavailable);
  run_report report;
  const std::vector<float> ys = cuda::map(xs, hd_plus_one{}, {.report = &report});
  EXPECT_NE(report.backend, backend::cuda);
  for (float y : ys) ASSERT_EQ(y, 2.0F);
}

TEST(CudaBackend, AWorkerProcessNeverTouchesTheGpu) {
  std::vector<int> xs(4, 7);
  const std::vector<int> ok =
      polymap::map(xs, cuda_test::gpu_left_alone, {.backend = backend::processes, .workers = 2});
  for (int y : ok) ASSERT_EQ(y, 1);
}

TEST(CudaBackend, ExplainSaysWhyAHostFunctionStaysOnTheCpu) {
  std::vector<float> xs(1000, 1.0F);
  const plan p = polymap::explain(xs, host_plus_one());
  bool found = false;
  for (const backend_estimate& e : p.estimates) {
    if (e.backend != backend::cuda) continue;
    found = true;
    EXPECT_FALSE(e.usable);
    EXPECT_FALSE(e.why_not.empty());
  }
  EXPECT_TRUE(found);
  EXPECT_NE(p.chosen, backend::cuda);
}

TEST(CudaBackend, ATimeoutOrMemoryCapKeepsAMapOffTheGpu) {
  std::vector<float> xs(100, 1.0F);
  // No GPU item can be stopped or capped: automatic hands the call to the processes backend.
  run_report report;
  const std::vector<float> ys = cuda::map(
      xs, hd_plus_one{}, {.timeout = std::chrono::seconds(30), .report = &report});
  EXPECT_EQ(report.backend, backend::processes);
  EXPECT_EQ(ys, std::vector<float>(100, 2.0F));
  for (const options& o : {options{.backend = backend::cuda, .timeout = std::chrono::seconds(1)},
                           options{.backend = backend::cuda, .memory_limit = 1 << 30}}) {
    try {
      (void)cuda::map(xs, hd_plus_one{}, o);
      ADD_FAILURE() << "a GPU map took a timeout or a memory cap";
    } catch (const option_error& e) {
      EXPECT_NE(std::string(e.what()).find("backend cuda"), std::string::npos) << e.what();
    }
  }
}

TEST(CudaBackend, AHostOnlyFunctionIsRefusedForCuda) {
  // On every machine, with or without a device: the function is at fault wherever it runs.
  std::vector<float> xs(10, 1.0F);
  try {
    (void)cuda::map(xs, unmarked_scale{2}, {.backend = backend::cuda});
    ADD_FAILURE() << "a host-only function was taken for the GPU";
  } catch (const backend_unavailable& e) {
    EXPECT_NE(std::string(e.what()).find("needs a device-callable function"), std::string::npos)
        << e.what();
  }
}

TEST(CudaBackend, HostMapIntoFillsTheCallersBufferOnTheCpuWithoutADevice) {
  std::vector<float> xs(10'007);
  std::iota(xs.begin(), xs.end(), -5000.0F);
  std::vector<double> out(xs.size() + 3, std::numeric_limits<double>::quiet_NaN());
  run_report report;
  cuda_test::affine_into(xs, out, {.report = &report});
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(out[i], 2.0 * xs[i] + 1.0) << i;
  for (std::size_t i = xs.size(); i < out.size(); ++i) EXPECT_TRUE(std::isnan(out[i])) << i;
  if (!have_gpu()) EXPECT_NE(report.backend, backend::cuda);

  // A host-only function stays on the CPU under automatic, and is refused for cuda.
  std::vector<float> ys(xs.size());
  cuda::map_into(std::span<const float>(xs), std::span<float>(ys), host_plus_one());
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], xs[i] + 1) << i;
  EXPECT_THROW(cuda::map_into(std::span<const float>(xs), std::span<float>(ys), host_plus_one(),
                              {.backend = backend::cuda}),
               backend_unavailable);

  // A buffer too short is refused before anything runs, naming the parameter.
  std::vector<double> short_out(xs.size() - 1, -1.0);
  try {
    cuda_test::affine_into(xs, short_out, {});
    ADD_FAILURE() << "wrote past a short buffer";
  } catch (const option_error& e) {
    EXPECT_NE(std::string(e.what()).find("out"), std::string::npos) << e.what();
  }
  for (double y : short_out) ASSERT_EQ(y, -1.0);
  if (!have_gpu()) {
    EXPECT_THROW(cuda_test::affine_into(xs, out, {.backend = backend::cuda}), backend_unavailable);
  }
}

/// The GPU's estimate in `p`, or null.
const backend_estimate* gpu_estimate(const plan& p) {
  for (const backend_estimate& e : p.estimates) {
    if (e.backend == backend::cuda) return &e;
  }
  return nullptr;
}

TEST(CudaBackend, ExplainWeighsTheGpuAndSaysWhyItCannotRun) {
  const std::vector<float> xs(1000, 1.0F);
  if (!have_gpu()) {
    const plan p = cuda::explain(xs, hd_plus_one{});
    EXPECT_NE(p.chosen, backend::cuda);
    ASSERT_NE(gpu_estimate(p), nullptr);
    EXPECT_FALSE(gpu_estimate(p)->usable);
    EXPECT_EQ(gpu_estimate(p)->why_not, cuda::device_status());
  }
  // What keeps a map off the GPU with or without a device: a host-only function, a timeout.
  const plan host_only = cuda::explain(xs, host_plus_one());
  EXPECT_NE(host_only.chosen, backend::cuda);
  ASSERT_NE(gpu_estimate(host_only), nullptr);
  EXPECT_NE(gpu_estimate(host_only)->why_not.find("needs a device-callable function"),
            std::string::npos)
      << gpu_estimate(host_only)->why_not;

  const plan capped = cuda::explain(xs, hd_plus_one{}, {.timeout = std::chrono::seconds(30)});
  EXPECT_EQ(capped.chosen, backend::processes);
  ASSERT_NE(gpu_estimate(capped), nullptr);
  EXPECT_NE(gpu_estimate(capped)->why_not.find("processes backend"), std::string::npos)
      << gpu_estimate(capped)->why_not;

  const plan requested = cuda::explain(xs, host_plus_one(), {.backend = backend::cuda});
  EXPECT_EQ(requested.chosen, backend::cuda);
  EXPECT_NE(requested.reason.find("not usable here: the GPU needs a device-callable function"),
            std::string::npos)
      << requested.reason;

  const std::vector<std::string> words(100, "word");
  const plan strings = cuda::explain(words, marked_length{});
  EXPECT_NE(strings.chosen, backend::cuda);
  ASSERT_NE(gpu_estimate(strings), nullptr);
  EXPECT_NE(gpu_estimate(strings)->why_not.find("trivially copyable"), std::string::npos)
      << gpu_estimate(strings)->why_not;

  EXPECT_EQ(cuda::explain(xs, hd_plus_one{}, {.backend = backend::serial}).chosen,
            backend::serial);
  EXPECT_THROW((void)cuda::explain(xs, hd_plus_one{}, {.nice = 40}), option_error);
}

TEST(CudaBackend, AMapNestedInAWorkerStaysInlineAndExplainSaysWhy) {
  // With or without a device: automatic keeps a call in a worker of another map on that
  // worker, and explain names that before anything the device could say.
  const std::vector<float> xs(1000, 1.0F);
  const std::vector<int> outer(4, 0);
  const std::vector<std::string> seen = polymap::map(outer, [&](int) {
    run_report report;
    const std::vector<float> ys = cuda::map(xs, hd_plus_one{}, {.report = &report});
    for (float y : ys) {
      if (y != 2.0F) return std::string("a wrong result");
    }
    if (report.backend != backend::serial) {
      return "ran on " + std::string(to_string(report.backend));
    }
    const plan p = cuda::explain(xs, hd_plus_one{});
    const backend_estimate* gpu = gpu_estimate(p);
    return gpu == nullptr ? std::string("no GPU estimate") : gpu->why_not;
  }, {.backend = backend::threads, .workers = 2});
  for (const std::string& why : seen) {
    EXPECT_EQ(why, "nested in a worker of another map: runs inline there");
  }
}

TEST(CudaBackend, WithoutADeviceTheHostMapCostsAreTheDefaultsAndSayWhy) {
  if (have_gpu()) GTEST_SKIP() << "a CUDA device is here: " << cuda::device_status();
  const cuda::host_map_costs c = cuda::host_map_costs_on(0);
  EXPECT_FALSE(c.measured);
  EXPECT_EQ(c.fixed_seconds, cuda::host_map_costs::default_fixed_seconds);
  EXPECT_EQ(c.seconds_per_byte, cuda::host_map_costs::default_seconds_per_byte);
  EXPECT_NE(c.source.find(cuda::device_status()), std::string::npos) << c.source;
  EXPECT_DOUBLE_EQ(c.seconds(12'000'000'000), 20e-6 + 1.0);
}

class CudaBackendDeathTest : public testing::Test {};

TEST_F(CudaBackendDeathTest, AContextLostToAStickyErrorIsSaidAndTheCpuGoesOn) {
  // What POLYMAP_CUDA_CHECK does on a sticky error, in a fresh process (the mark is for
  // the rest of the process): the GPU counts as gone, says why, and the CPU takes over.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        cuda::detail::mark_unusable("cudaErrorIllegalAddress");
        cuda::detail::mark_unusable("cudaErrorLaunchFailure");  // the first one is kept
        const std::string status = cuda::device_status();
        bool refused = false;
        std::vector<float> xs(1000, 1.0F);
        try {
          (void)cuda::map(xs, hd_plus_one{}, {.backend = backend::cuda});
        } catch (const backend_unavailable& e) {
          refused = std::string(e.what()).find("cudaErrorIllegalAddress") != std::string::npos;
        }
        run_report report;
        const std::vector<float> ys = cuda::map(xs, hd_plus_one{}, {.report = &report});
        std::exit(cuda::device_count() == 0 && cuda::devices().empty() && refused &&
                          status.find("sticky error (cudaErrorIllegalAddress)") !=
                              std::string::npos &&
                          report.backend != backend::cuda && ys == std::vector<float>(1000, 2.0F)
                      ? 0
                      : 1);
      },
      testing::ExitedWithCode(0), "");
}

class CudaDevice : public testing::Test {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << cuda::device_status();
  }
};

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-100.0F, 100.0F);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

// Sizes: empty, one, not a multiple of any block or chunk, and more than the staging holds
// (staging_slots chunks of staging_chunk_bytes).
constexpr std::size_t odd = 1'000'003;
constexpr std::size_t beyond_staging =
    cuda::staging_slots * cuda::staging_chunk_bytes / sizeof(float) * 5 / 4 + 7;

TEST_F(CudaDevice, HostMapMatchesTheCpuAtEverySize) {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{255}, odd, beyond_staging}) {
    const std::vector<float> xs = random_floats(n, static_cast<unsigned>(n));
    run_report report;
    const std::vector<double> ys =
        cuda_test::affine(xs, {.backend = backend::cuda, .report = &report});
    ASSERT_EQ(ys.size(), n);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(ys[i], 2.0 * xs[i] + 1.0) << "n " << n << " i " << i;
    if (n != 0) EXPECT_EQ(report.backend, backend::cuda);
    if (n != 0) EXPECT_TRUE(report.decision.requested) << report.decision.reason;
  }
}

TEST_F(CudaDevice, HostMapIntoWritesEveryElementAtEverySize) {
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{255}, odd, beyond_staging}) {
    const std::vector<float> xs = random_floats(n, static_cast<unsigned>(n) + 1);
    std::vector<double> out(n + 1, std::numeric_limits<double>::quiet_NaN());
    run_report report;
    cuda_test::affine_into(xs, out, {.backend = backend::cuda, .report = &report});
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], 2.0 * xs[i] + 1.0) << "n " << n << " i " << i;
    EXPECT_TRUE(std::isnan(out[n])) << "wrote past the input's length, n " << n;
    if (n != 0) EXPECT_EQ(report.backend, backend::cuda);
  }
  // One span on the device and one on the host: refused, naming both.
  const cuda::device_buffer<float> d(std::size_t{16});
  std::vector<float> host(16);
  EXPECT_THROW(cuda::map_into(d.span(), std::span<float>(host), marked_scale{2.0F}), option_error);
  EXPECT_THROW(cuda::map_into(std::span<const float>(host),
                              std::span<float>(const_cast<float*>(d.data()), 16),
                              marked_scale{2.0F}),
               option_error);
}

TEST_F(CudaDevice, DeviceResidentInputIsNotCopiedAndOutputIsWritten) {
  const std::vector<float> xs = random_floats(odd, 7);
  const cuda::device_buffer<float> d{std::span<const float>(xs)};
  const cuda::device_buffer<float> out = cuda::map(d, marked_scale{3.0F});
  const std::vector<float> ys = out.to_host();
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], 3.0F * xs[i]);

  // map_into over poisoned output: every element must be overwritten.
  thrust::device_vector<float> poisoned(xs.size(), std::numeric_limits<float>::quiet_NaN());
  cuda::map_into(d.span(), std::span<float>(thrust::raw_pointer_cast(poisoned.data()), xs.size()),
                 marked_scale{-1.0F});
  std::vector<float> back(xs.size());
  thrust::copy(poisoned.begin(), poisoned.end(), back.begin());
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(back[i], -xs[i]) << i;

  thrust::device_vector<float> dv(xs.begin(), xs.end());
  const std::vector<float> from_thrust = cuda::map(dv, marked_scale{2.0F}).to_host();
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(from_thrust[i], 2.0F * xs[i]);
}

TEST_F(CudaDevice, ForEachRunsEveryIndexOnce) {
  // A POLYMAP_HD functor, and a [=] __device__ lambda, the natural way to write its body.
  for (auto* launch : {&cuda_test::count_each, &cuda_test::count_each_on_device}) {
    for (std::size_t n : {std::size_t{0}, std::size_t{1}, odd}) {
      thrust::device_vector<int> counts(n, 0);
      launch(n, thrust::raw_pointer_cast(counts.data()));
      std::vector<int> host(n);
      thrust::copy(counts.begin(), counts.end(), host.begin());
      for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(host[i], 1) << i;
    }
  }
}

TEST_F(CudaDevice, BoolResultsComeBackInAVectorOfBool) {
  const std::vector<float> xs = random_floats(odd, 11);
  for (const backend_kind b : {backend::cuda, backend::automatic}) {
    const std::vector<bool> got = cuda_test::positive(xs, {.backend = b});
    ASSERT_EQ(got.size(), xs.size());
    for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(got[i], xs[i] > 0.0F) << i;
  }
}

TEST_F(CudaDevice, ASpanOfNonConstDeviceMemoryIsReadInPlace) {
  const std::vector<float> xs = random_floats(odd, 13);
  cuda::device_buffer<float> d{std::span<const float>(xs)};
  const std::vector<float> ys = cuda::map(d.span(), marked_scale{3.0F}).to_host();
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], 3.0F * xs[i]) << i;
}

TEST_F(CudaDevice, AsyncMapReportsProgressAndResults) {
  const std::vector<float> xs = random_floats(beyond_staging, 3);
  auto job = cuda::map_async(xs, marked_scale{2.0F}, {.backend = backend::cuda});
  const std::vector<float> ys = job.get();
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], 2.0F * xs[i]);
  // Items in device memory: refused at the call, which copies its items on the host first.
  const cuda::device_buffer<float> d{std::span<const float>(xs)};
  EXPECT_THROW((void)cuda::map_async(d.span(), marked_scale{2.0F}), option_error);
}

TEST_F(CudaDevice, EightCallerThreadsAtOnce) {
  // Each call leases its own staging set; the thread pool's staging copies go to whichever
  // call finds it free, the others copy on their own thread.
  std::vector<std::vector<float>> inputs;
  for (unsigned t = 0; t < 8; ++t) inputs.push_back(random_floats(odd + t, 100 + t));
  std::vector<std::vector<double>> outputs(8);
  std::vector<std::string> errors(8);
  std::vector<std::thread> callers;
  for (std::size_t t = 0; t < 8; ++t) {
    callers.emplace_back([&, t] {
      try {
        outputs[t] = cuda_test::affine(inputs[t], {.backend = backend::cuda});
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (std::thread& c : callers) c.join();
  for (std::size_t t = 0; t < 8; ++t) {
    ASSERT_EQ(errors[t], "") << "caller " << t;
    ASSERT_EQ(outputs[t].size(), inputs[t].size()) << "caller " << t;
    for (std::size_t i = 0; i < inputs[t].size(); ++i) {
      ASSERT_EQ(outputs[t][i], 2.0 * inputs[t][i] + 1.0) << "caller " << t << " i " << i;
    }
  }
}

TEST_F(CudaDevice, StopAndProgressWorkOnAStreamedMap) {
  const std::vector<float> xs = random_floats(beyond_staging, 9);
  // A stop requested before the call: nothing runs, the buffer keeps its poison.
  std::stop_source stopped;
  stopped.request_stop();
  std::vector<float> out(xs.size(), std::numeric_limits<float>::quiet_NaN());
  try {
    cuda::map_into(std::span<const float>(xs), std::span<float>(out), marked_scale{2.0F},
                   {.backend = backend::cuda, .stop = stopped.get_token()});
    ADD_FAILURE() << "a stopped call ran";
  } catch (const cancelled_error& e) {
    EXPECT_EQ(e.done(), 0u);
    EXPECT_EQ(e.total(), xs.size());
  }
  for (float y : out) ASSERT_TRUE(std::isnan(y));

  // Progress: the last report, at the end, has every item done.
  std::size_t last_done = 0;
  int reports = 0;
  const std::vector<float> ys = cuda::map(
      xs, marked_scale{2.0F},
      {.backend = backend::cuda, .on_progress = [&](const progress_info& p) {
         last_done = p.done;
         ++reports;
       }});
  EXPECT_GE(reports, 1);
  EXPECT_EQ(last_done, xs.size());
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], 2.0F * xs[i]) << i;

  // A cancel while it runs stops between chunks and returns once the chunks in flight have
  // landed: what finished is whole chunks, or all, and nothing lands after cancel() returns.
  auto job = cuda::map_async(xs, marked_scale{3.0F}, {.backend = backend::cuda});
  job.cancel();
  const std::size_t done_at_cancel = job.progress().done;
  try {
    const std::vector<float> zs = job.get();
    for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(zs[i], 3.0F * xs[i]) << i;
  } catch (const cancelled_error& e) {
    const std::size_t chunk = cuda::staging_chunk_bytes / sizeof(float);
    EXPECT_LT(e.done(), xs.size());
    EXPECT_EQ(e.done() % chunk, 0u) << e.done();
    EXPECT_EQ(e.done(), done_at_cancel);
  }
}

TEST_F(CudaDevice, AStopInTheMiddleLeavesWhatItDidNotRunUntouched) {
  // Sixteen chunks of a function that takes milliseconds a chunk: the first progress report
  // (every 100 ms) comes in the middle and stops the call. What finished is whole chunks,
  // counted in done(); every element after them keeps its poison: nothing lands after the
  // call returns.
  const std::size_t chunk = cuda::staging_chunk_bytes / sizeof(float);
  const std::vector<float> xs = random_floats(16 * chunk + 5, 21);
  std::vector<float> out(xs.size(), std::numeric_limits<float>::quiet_NaN());
  std::stop_source stop;
  options o{.backend = backend::cuda, .stop = stop.get_token()};
  o.on_progress = [&](const progress_info& p) {
    if (p.done > 0) stop.request_stop();
  };
  std::size_t done = xs.size();
  try {
    cuda::map_into(std::span<const float>(xs), std::span<float>(out), cuda_test::slow_triple{},
                   o);
  } catch (const cancelled_error& e) {
    done = e.done();
    EXPECT_EQ(done % chunk, 0u) << done;
    EXPECT_GT(done, 0u);
  }
  for (std::size_t i = 0; i < done; ++i) ASSERT_EQ(out[i], 3.0F * xs[i]) << i;
  for (std::size_t i = done; i < xs.size(); ++i) ASSERT_TRUE(std::isnan(out[i])) << i;
  if (done == xs.size()) {
    GTEST_SKIP() << "the call ended before a progress report could stop it: the stop in the "
                    "middle was not exercised on this GPU";
  }
}

TEST_F(CudaDevice, MoreThanTwoToTheThirtyOneItemsOnTheDevice) {
  // Indices past what an int holds: for_each writes every one, map reads and writes them.
  constexpr std::size_t n = (std::size_t{1} << 31) + 77;
  thrust::device_vector<std::uint8_t> stamps(n, 0);
  std::uint8_t* const p = thrust::raw_pointer_cast(stamps.data());
  cuda::for_each(n, cuda_test::stamp_index{p});
  const cuda::device_buffer<std::uint8_t> next =
      cuda::map(std::span<const std::uint8_t>(p, n), cuda_test::add_one_byte{});
  ASSERT_EQ(next.size(), n);
  thrust::device_vector<unsigned long long> wrong(1, 0);
  cuda::for_each(n, cuda_test::count_wrong_stamps{next.data(),
                                                  thrust::raw_pointer_cast(wrong.data())});
  EXPECT_EQ(wrong[0], 0ULL);
  // The last elements, read on the host: a count that stopped at 2^31 would miss them above.
  std::vector<std::uint8_t> tail(1000);
  ASSERT_EQ(cudaMemcpy(tail.data(), next.data() + n - tail.size(), tail.size(),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (std::size_t j = 0; j < tail.size(); ++j) {
    const std::size_t i = n - tail.size() + j;
    ASSERT_EQ(tail[j], static_cast<std::uint8_t>(i * 7 + 4)) << i;
  }
}

TEST_F(CudaDevice, DeviceResidentDataRunsOnTheGpuThatHoldsIt) {
  if (cuda::device_count() < 2) {
    GTEST_SKIP() << "needs two GPUs: " << cuda::device_status();
  }
  const std::vector<float> xs = random_floats(odd, 11);
  const cuda::device_buffer<float> on1{std::span<const float>(xs), 1};
  // options::device is 0; the data is on GPU 1, which is where the kernel must run.
  const cuda::device_buffer<float> ys = cuda::map(on1, marked_scale{2.0F});
  EXPECT_EQ(ys.device(), 1);
  const std::vector<float> back = ys.to_host();
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(back[i], 2.0F * xs[i]) << i;

  cuda::device_buffer<float> y1{std::span<const float>(xs), 1};
  k::gpu::saxpy(xs.size(), 2.0F, on1.data(), y1.data());
  const std::vector<float> saxpy = y1.to_host();
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(saxpy[i], 2.0F * xs[i] + xs[i]) << i;

  // Input on one GPU, output on another: refused, naming both.
  cuda::device_buffer<float> on0(xs.size(), 0);
  try {
    cuda::map_into(on1.span(), on0.span(), marked_scale{2.0F});
    ADD_FAILURE() << "a kernel was sent to read one GPU and write another";
  } catch (const option_error& e) {
    EXPECT_NE(std::string(e.what()).find("GPUs 1 and 0"), std::string::npos) << e.what();
  }
  // A kernel reading another GPU's memory would have lost the context to a sticky error.
  EXPECT_GE(cuda::device_count(), 2) << cuda::device_status();
}

TEST_F(CudaDevice, OutOfMemoryIsACudaErrorAndTheHostGoesOn) {
  try {
    cuda::device_buffer<char> huge(std::size_t{1} << 50);  // 1 PiB
    ADD_FAILURE() << "allocated 1 PiB";
  } catch (const cuda_error& e) {
    EXPECT_EQ(e.name(), "cudaErrorMemoryAllocation") << e.what();
  }
  std::vector<float> xs(1000, 1.0F);
  const std::vector<float> cpu = polymap::map(xs, host_plus_one(), {.backend = backend::threads});
  const std::vector<float> gpu = cuda::map(xs, hd_plus_one{}, {.backend = backend::cuda});
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(cpu[i], gpu[i]);
}

TEST_F(CudaDevice, HostMapCostsAreMeasuredOnceAndWeighedByAutomatic) {
  const cuda::host_map_costs c = cuda::host_map_costs_on(0);
  EXPECT_TRUE(c.measured) << c.source;
  EXPECT_NE(c.source.find("measured on device 0"), std::string::npos) << c.source;
  EXPECT_GT(c.fixed_seconds, 0.0);
  EXPECT_LT(c.fixed_seconds, 0.05) << c.source;
  EXPECT_GT(1 / c.seconds_per_byte, 1e8) << c.source;   // above 0.1 GB/s
  EXPECT_LT(1 / c.seconds_per_byte, 1e13) << c.source;  // below 10 TB/s
  const cuda::host_map_costs again = cuda::host_map_costs_on(0);
  EXPECT_EQ(again.fixed_seconds, c.fixed_seconds);
  EXPECT_EQ(again.seconds_per_byte, c.seconds_per_byte);

  const std::vector<float> xs = random_floats(odd, 3);
  const plan p = cuda::explain(xs, hd_plus_one{});
  ASSERT_NE(gpu_estimate(p), nullptr);
  EXPECT_TRUE(gpu_estimate(p)->usable);
  EXPECT_DOUBLE_EQ(gpu_estimate(p)->seconds, c.seconds(odd * 2 * sizeof(float)));
  EXPECT_NE(p.reason.find(p.chosen == backend::cuda ? "cuda predicted to finish first"
                                                      : "; cuda predicted"),
            std::string::npos)
      << p.reason;

  // The call says where it ran, and the GPU's estimate is in its report either way.
  run_report report;
  const std::vector<float> ys = cuda::map(xs, hd_plus_one{}, {.report = &report});
  for (std::size_t i = 0; i < xs.size(); ++i) ASSERT_EQ(ys[i], xs[i] + 1) << i;
  EXPECT_EQ(report.backend, report.decision.chosen) << report.decision.to_string();
  ASSERT_NE(gpu_estimate(report.decision), nullptr) << report.decision.to_string();
  EXPECT_TRUE(gpu_estimate(report.decision)->usable) << report.decision.to_string();
}

/// Page-locked host memory, freed at the end of its scope.
template <class T>
class pinned_array {
 public:
  explicit pinned_array(std::size_t n) : n_(n) {
    if (cudaMallocHost(&p_, n * sizeof(T)) != cudaSuccess) p_ = nullptr;
  }
  ~pinned_array() {
    if (p_ != nullptr) (void)cudaFreeHost(p_);
  }
  pinned_array(const pinned_array&) = delete;
  pinned_array& operator=(const pinned_array&) = delete;
  [[nodiscard]] T* data() const { return p_; }
  [[nodiscard]] std::span<T> span() const { return {p_, n_}; }

 private:
  T* p_ = nullptr;
  std::size_t n_;
};

TEST_F(CudaDevice, PinnedBuffersAreReadAndWrittenInPlace) {
  const std::size_t n = beyond_staging;
  const std::vector<float> src = random_floats(n, 11);
  const pinned_array<float> in(n);
  const pinned_array<double> out(n + 1);
  ASSERT_NE(in.data(), nullptr);
  ASSERT_NE(out.data(), nullptr);
  // What stream_map looks at to skip its staging copies.
  EXPECT_TRUE(cuda::detail::is_pinned(in.data(), n * sizeof(float)));
  EXPECT_TRUE(cuda::detail::is_pinned(out.data(), (n + 1) * sizeof(double)));
  EXPECT_FALSE(cuda::detail::is_pinned(src.data(), n * sizeof(float)));
  EXPECT_FALSE(cuda::detail::is_pinned(in.data(), 0));

  std::copy(src.begin(), src.end(), in.data());
  std::fill(out.data(), out.data() + n + 1, std::numeric_limits<double>::quiet_NaN());
  cuda_test::affine_into(in.span(), out.span(), {.backend = backend::cuda});
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(out.data()[i], 2.0 * src[i] + 1.0) << i;
  EXPECT_TRUE(std::isnan(out.data()[n])) << "wrote past the input's length";

  // Pinned input, pageable output.
  std::vector<double> pageable(n, std::numeric_limits<double>::quiet_NaN());
  cuda_test::affine_into(in.span(), pageable, {.backend = backend::cuda});
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(pageable[i], 2.0 * src[i] + 1.0) << i;

  // Pageable input, a registered vector as the output.
  std::vector<double> registered(n, std::numeric_limits<double>::quiet_NaN());
  ASSERT_EQ(cudaHostRegister(registered.data(), n * sizeof(double), cudaHostRegisterDefault),
            cudaSuccess);
  EXPECT_TRUE(cuda::detail::is_pinned(registered.data(), n * sizeof(double)));
  cuda_test::affine_into(src, registered, {.backend = backend::cuda});
  EXPECT_EQ(cudaHostUnregister(registered.data()), cudaSuccess);
  for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(registered[i], 2.0 * src[i] + 1.0) << i;
}

class CudaDeviceDeathTest : public CudaDevice {};

TEST_F(CudaDevice, MeasuredCostsAreReadBackFromTheFile) {
  const cuda::host_map_costs measured = cuda::measure_host_map_costs(0);
  ASSERT_TRUE(measured.measured) << measured.source;
  const char* cache_env = std::getenv("XDG_CACHE_HOME");
  ASSERT_NE(cache_env, nullptr);
  const std::string cache = cache_env;  // setenv below may free what getenv returned
  EXPECT_NE(measured.source.find("kept in " + cache), std::string::npos) << measured.source;
  // What a new process sees: nothing known in memory, the file read, bit for bit.
  cuda::detail::forget_host_map_costs();
  const cuda::host_map_costs read =
      cuda::host_map_costs_on(0, cuda::if_unknown::use_defaults);
  EXPECT_TRUE(read.measured) << read.source;
  EXPECT_EQ(read.fixed_seconds, measured.fixed_seconds);
  EXPECT_EQ(read.first_bytes, measured.first_bytes);
  EXPECT_EQ(read.first_seconds_per_byte, measured.first_seconds_per_byte);
  EXPECT_EQ(read.seconds_per_byte, measured.seconds_per_byte);
  EXPECT_NE(read.source.find("kept in " + cache), std::string::npos) << read.source;

  // With nothing kept, use_defaults does not measure, and a later call still may.
  const std::string elsewhere = cache + "/elsewhere";
  ::setenv("XDG_CACHE_HOME", elsewhere.c_str(), 1);
  cuda::detail::forget_host_map_costs();
  const cuda::host_map_costs unknown = cuda::host_map_costs_on(0, cuda::if_unknown::use_defaults);
  EXPECT_FALSE(unknown.measured) << unknown.source;
  EXPECT_NE(unknown.source.find("not measured yet"), std::string::npos) << unknown.source;
  EXPECT_TRUE(cuda::host_map_costs_on(0).measured);
  ::setenv("XDG_CACHE_HOME", cache.c_str(), 1);
}

TEST_F(CudaDeviceDeathTest, AStickyErrorLeavesTheGpuUnusableAndTheCpuGoingOn) {
  // A fresh process: the lost context must not take the other tests' GPU with it.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        bool thrown = false;
        try {
          cuda_test::write_one(nullptr);
        } catch (const cuda_error&) {
          thrown = true;
        }
        std::vector<float> xs(1000, 1.0F);
        run_report report;
        const std::vector<float> ys = cuda::map(xs, hd_plus_one{}, {.report = &report});
        std::exit(thrown && cuda::device_count() == 0 && report.backend != backend::cuda &&
                          ys == std::vector<float>(1000, 2.0F) &&
                          cuda::device_status().find("sticky") != std::string::npos
                      ? 0
                      : 1);
      },
      testing::ExitedWithCode(0), "");
}

TEST_F(CudaDevice, ABadDeviceIndexIsAnOptionError) {
  std::vector<float> xs(10, 1.0F);
  EXPECT_THROW((void)cuda::map(xs, hd_plus_one{}, {.backend = backend::cuda, .device = 999}),
               option_error);
}

/// Relative error of `got` against the double-precision reference `want`.
double relative(double got, double want) {
  return got == want ? 0 : std::abs(got - want) / std::max(std::abs(want), 1e-300);
}

TEST_F(CudaDevice, BuiltInKernelsMatchTheCpuReference) {
  constexpr std::uint64_t seed = 42;
  // saxpy: float on both sides and no contraction on either (--fmad=false; baseline x86-64
  // has no FMA), so exact against the host's float; against double, within the two float
  // roundings (2^-24 each) of the terms, since a*x + y may cancel.
  {
    const std::size_t n = odd;
    std::vector<float> x = random_floats(n, 1), y = random_floats(n, 2);
    std::vector<float> gy = y;
    k::gpu::saxpy(n, 2.5F, x.data(), gy.data());
    for (std::size_t i = 0; i < n; ++i) {
      const float product = 2.5F * x[i];
      ASSERT_EQ(gy[i], product + y[i]) << "saxpy " << i;
      const double want = 2.5 * static_cast<double>(x[i]) + static_cast<double>(y[i]);
      const double bound = 0x1p-23 * (2.5 * std::abs(static_cast<double>(x[i])) +
                                      std::abs(static_cast<double>(y[i])));
      ASSERT_LE(std::abs(gy[i] - want), bound) << "saxpy " << i;
    }
  }
  {  // stencil: double, same operations in the same order
    const std::size_t n = 257;
    std::vector<double> in(n * n), want(n * n), got(n * n, std::numeric_limits<double>::quiet_NaN());
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = k::unit_interval(k::random_bits(seed, i));
    for (std::size_t r = 0; r < n; ++r) k::jacobi_row(r, n, in.data(), want.data());
    k::gpu::jacobi(n, in.data(), got.data());
    for (std::size_t i = 0; i < in.size(); ++i) ASSERT_LE(relative(got[i], want[i]), 1e-15) << i;
  }
  {  // Mandelbrot: exact escape counts with --fmad=false
    const std::size_t w = 301, h = 203;
    std::vector<std::uint16_t> want(w * h), got(w * h, 0xFFFF);
    for (std::size_t r = 0; r < h; ++r) k::mandelbrot_row(r, w, h, want.data());
    k::gpu::mandelbrot(w, h, got.data());
    for (std::size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
  }
  {  // Black-Scholes: the device's erfc/log/exp differ from glibc's in the last bits
    const std::size_t n = 10'007;
    std::vector<k::bs_price> got(n, k::bs_price{-1, -1});
    k::gpu::black_scholes(seed, n, got.data());
    for (std::size_t i = 0; i < n; ++i) {
      const k::bs_price want = k::black_scholes(k::bs_sample_option(seed, i));
      ASSERT_LE(std::abs(got[i].call - want.call), 1e-9 * std::max(1.0, want.call)) << i;
      ASSERT_LE(std::abs(got[i].put - want.put), 1e-9 * std::max(1.0, want.put)) << i;
    }
  }
  {  // pi: integers, exact
    std::uint64_t want = 0;
    for (std::size_t b = 0; b < 1001; ++b) want += k::pi_block_hits(seed, b, 1000);
    EXPECT_EQ(k::gpu::pi_hits(seed, 1001, 1000), want);
  }
  {  // n-body: the device's sqrt is correctly rounded, the sum order is the same
    const std::size_t n = 999;
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<k::body> in(n), want(n), got(n, k::body{nan, nan, nan, nan, nan, nan, nan});
    for (std::size_t i = 0; i < n; ++i) in[i] = k::nbody_sample(seed, i, n);
    for (std::size_t i = 0; i < n; ++i) k::nbody_step(i, n, in.data(), want.data(), 1e-3, 1e-2);
    k::gpu::nbody(n, in.data(), got.data(), 1e-3, 1e-2);
    for (std::size_t i = 0; i < n; ++i) {
      const k::body& g = got[i];
      const k::body& w = want[i];
      for (auto field : {&k::body::x, &k::body::y, &k::body::z, &k::body::vx, &k::body::vy,
                         &k::body::vz, &k::body::mass}) {
        ASSERT_LE(relative(g.*field, w.*field), 1e-12) << i;
      }
    }
  }
}

}  // namespace
}  // namespace polymap
