// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The GPU figures of issue 4, each against its peers in this binary:
// - BM_DeviceSaxpy: device-resident saxpy, 2^28 floats: polymap::cuda::for_each,
//   thrust::transform and a hand-written kernel (bytes: read x and y, write y).
// - BM_DeviceMap: device-resident y = 2x + 1 (cub::DeviceTransform under polymap) against
//   thrust::transform and a hand-written kernel, with a device-to-device copy as the ceiling.
// - BM_HostMap: host-resident map, 2^26 floats, streamed by polymap (map, which returns a
//   new vector, and map_into the caller's vector) against a naive copy-in, kernel, copy-out
//   on the same pageable data, and the pinned copy bandwidth, one direction after the other
//   and both at once (the ceiling of a stream that overlaps them); and the same map over
//   pinned buffers (polymap_cuda_into_pinned, naive_pinned), which polymap does not stage.
//   (bench_staging_copy times the host's share of that stream against oneTBB and OpenMP.)
// benchmarks/summarize.py checks the targets of issue 4 from the JSON output.
// - BM_EmptyLaunch: an empty polymap::cuda::for_each against a raw <<<1, 1>>> launch, both
//   synchronised.
// With no GPU the program says so and exits 0.
#include <polymap/cuda/map.hpp>

#include <benchmark/benchmark.h>
#include <thrust/device_vector.h>
#include <thrust/transform.h>

#include <algorithm>
#include <cstdio>
#include <span>
#include <vector>

namespace {

namespace pc = polymap::cuda;

struct saxpy_op {
  using polymap_device_callable = void;
  float a;
  POLYMAP_HD float operator()(float x, float y) const { return a * x + y; }
};
struct saxpy_at {
  using polymap_device_callable = void;
  float a;
  const float* x;
  float* y;
  POLYMAP_HD void operator()(std::size_t i) const { y[i] = a * x[i] + y[i]; }
};
struct affine {
  using polymap_device_callable = void;
  POLYMAP_HD float operator()(float x) const { return 2.0F * x + 1.0F; }
};
struct nothing {
  using polymap_device_callable = void;
  POLYMAP_HD void operator()(std::size_t) const {}
};

// The hand-written peers: each launch is checked (cudaGetLastError), as polymap checks its
// own, so that a launch that failed cannot pass for a fast one.
__global__ void saxpy_kernel(std::size_t n, float a, const float* x, float* y) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}
__global__ void affine_kernel(std::size_t n, const float* x, float* y) {
  const std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  if (i < n) y[i] = 2.0F * x[i] + 1.0F;
}
__global__ void empty_kernel() {}

unsigned blocks(std::size_t n) { return static_cast<unsigned>((n + 255) / 256); }

void set_bytes(benchmark::State& s, std::size_t n, double bytes_per_item) {
  s.SetItemsProcessed(static_cast<std::int64_t>(s.iterations() * n));
  s.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(s.iterations() * n) * bytes_per_item));
}

void device_saxpy(benchmark::State& s, int peer) {
  const auto n = static_cast<std::size_t>(s.range(0));
  thrust::device_vector<float> x(n, 1.0F), y(n, 2.0F);
  float* yp = thrust::raw_pointer_cast(y.data());
  const float* xp = thrust::raw_pointer_cast(x.data());
  for (auto _ : s) {
    if (peer == 0) {
      pc::for_each(n, saxpy_at{2.5F, xp, yp});
    } else if (peer == 1) {
      thrust::transform(x.begin(), x.end(), y.begin(), y.begin(), saxpy_op{2.5F});
      POLYMAP_CUDA_CHECK(cudaDeviceSynchronize());
    } else {
      saxpy_kernel<<<blocks(n), 256>>>(n, 2.5F, xp, yp);
      POLYMAP_CUDA_CHECK(cudaGetLastError());
      POLYMAP_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }
  set_bytes(s, n, 3 * sizeof(float));
}

void device_map(benchmark::State& s, int peer) {
  const auto n = static_cast<std::size_t>(s.range(0));
  thrust::device_vector<float> x(n, 1.0F), y(n);
  const std::span<const float> in(thrust::raw_pointer_cast(x.data()), n);
  const std::span<float> out(thrust::raw_pointer_cast(y.data()), n);
  for (auto _ : s) {
    if (peer == 0) {
      pc::map_into(in, out, affine{});
    } else if (peer == 1) {
      thrust::transform(x.begin(), x.end(), y.begin(), affine{});
      POLYMAP_CUDA_CHECK(cudaDeviceSynchronize());
    } else if (peer == 2) {
      affine_kernel<<<blocks(n), 256>>>(n, in.data(), out.data());
      POLYMAP_CUDA_CHECK(cudaGetLastError());
      POLYMAP_CUDA_CHECK(cudaDeviceSynchronize());
    } else {
      // A device-to-device cudaMemcpy returns before the copy is done: wait for it, as the
      // other peers wait for their kernels.
      POLYMAP_CUDA_CHECK(
          cudaMemcpy(out.data(), in.data(), n * sizeof(float), cudaMemcpyDeviceToDevice));
      POLYMAP_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }
  set_bytes(s, n, 2 * sizeof(float));
}

void host_map(benchmark::State& s, int peer) {
  const auto n = static_cast<std::size_t>(s.range(0));
  std::vector<float> x(n, 1.0F), y(n);
  pc::device_buffer<float> dx(n), dy(n);
  for (auto _ : s) {
    if (peer == 0) {
      y = pc::map(x, affine{}, {.backend = polymap::backend::cuda});
    } else if (peer == 1) {
      pc::map_into(std::span<const float>(x), std::span<float>(y), affine{},
                   {.backend = polymap::backend::cuda});
    } else {
      POLYMAP_CUDA_CHECK(cudaMemcpy(dx.data(), x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
      affine_kernel<<<blocks(n), 256>>>(n, dx.data(), dy.data());
      POLYMAP_CUDA_CHECK(cudaGetLastError());
      POLYMAP_CUDA_CHECK(cudaMemcpy(y.data(), dy.data(), n * sizeof(float), cudaMemcpyDeviceToHost));
    }
    benchmark::DoNotOptimize(y.data());
  }
  set_bytes(s, n, 2 * sizeof(float));
}

/// The same map over page-locked host buffers (cudaMallocHost), which polymap copies to and
/// from without staging: polymap's map_into against the naive copy-in, kernel, copy-out.
void host_map_pinned(benchmark::State& s, int peer) {
  const auto n = static_cast<std::size_t>(s.range(0));
  float* x = nullptr;
  float* y = nullptr;
  POLYMAP_CUDA_CHECK(cudaMallocHost(&x, n * sizeof(float)));
  POLYMAP_CUDA_CHECK(cudaMallocHost(&y, n * sizeof(float)));
  std::fill(x, x + n, 1.0F);
  pc::device_buffer<float> dx(n), dy(n);
  for (auto _ : s) {
    if (peer == 0) {
      pc::map_into(std::span<const float>(x, n), std::span<float>(y, n), affine{},
                   {.backend = polymap::backend::cuda});
    } else {
      POLYMAP_CUDA_CHECK(cudaMemcpy(dx.data(), x, n * sizeof(float), cudaMemcpyHostToDevice));
      affine_kernel<<<blocks(n), 256>>>(n, dx.data(), dy.data());
      POLYMAP_CUDA_CHECK(cudaGetLastError());
      POLYMAP_CUDA_CHECK(cudaMemcpy(y, dy.data(), n * sizeof(float), cudaMemcpyDeviceToHost));
    }
    benchmark::DoNotOptimize(y);
  }
  (void)cudaFreeHost(x);
  (void)cudaFreeHost(y);
  set_bytes(s, n, 2 * sizeof(float));
}

/// The ceilings of a host-resident map: pinned copies in and out, no kernel, one direction
/// after the other (`overlapped` false) or both at once on two streams, as the streamed map
/// overlaps them.
void pinned_copies(benchmark::State& s, bool overlapped) {
  const auto n = static_cast<std::size_t>(s.range(0));
  const std::size_t bytes = n * sizeof(float);
  float* in = nullptr;
  float* out = nullptr;
  POLYMAP_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&in), bytes, 0));
  POLYMAP_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&out), bytes, 0));
  pc::device_buffer<float> d_in(n), d_out(n);
  cudaStream_t up = nullptr, down = nullptr;
  POLYMAP_CUDA_CHECK(cudaStreamCreateWithFlags(&up, cudaStreamNonBlocking));
  POLYMAP_CUDA_CHECK(cudaStreamCreateWithFlags(&down, cudaStreamNonBlocking));
  for (auto _ : s) {
    POLYMAP_CUDA_CHECK(cudaMemcpyAsync(d_in.data(), in, bytes, cudaMemcpyHostToDevice, up));
    if (!overlapped) POLYMAP_CUDA_CHECK(cudaStreamSynchronize(up));
    POLYMAP_CUDA_CHECK(cudaMemcpyAsync(out, d_out.data(), bytes, cudaMemcpyDeviceToHost, down));
    POLYMAP_CUDA_CHECK(cudaStreamSynchronize(up));
    POLYMAP_CUDA_CHECK(cudaStreamSynchronize(down));
  }
  (void)cudaStreamDestroy(up);
  (void)cudaStreamDestroy(down);
  (void)cudaFreeHost(in);
  (void)cudaFreeHost(out);
  set_bytes(s, n, 2 * sizeof(float));
}

void empty_launch(benchmark::State& s, int peer) {
  for (auto _ : s) {
    if (peer == 0) {
      pc::for_each(1, nothing{});
    } else {
      empty_kernel<<<1, 1>>>();
      POLYMAP_CUDA_CHECK(cudaGetLastError());
      POLYMAP_CUDA_CHECK(cudaDeviceSynchronize());
    }
  }
  s.SetItemsProcessed(static_cast<std::int64_t>(s.iterations()));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (pc::device_count() == 0) {
    std::printf("bench_gpu: %s; nothing to measure\n", pc::device_status().c_str());
    return 0;
  }
  const std::int64_t big = std::int64_t{1} << 28;
  const std::int64_t host = std::int64_t{1} << 26;
  const char* peers3[] = {"polymap_cuda", "thrust_transform", "hand_kernel", "d2d_copy"};
  for (int p = 0; p < 3; ++p) {
    benchmark::RegisterBenchmark((std::string("BM_DeviceSaxpy/") + peers3[p]).c_str(), device_saxpy, p)
        ->Arg(big)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  for (int p = 0; p < 4; ++p) {
    benchmark::RegisterBenchmark((std::string("BM_DeviceMap/") + peers3[p]).c_str(), device_map, p)
        ->Arg(big)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  const char* host_peers[] = {"polymap_cuda", "polymap_cuda_into", "naive_copy_compute_copy"};
  for (int p = 0; p < 3; ++p) {
    benchmark::RegisterBenchmark((std::string("BM_HostMap/") + host_peers[p]).c_str(), host_map, p)
        ->Arg(host)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  const char* pinned_peers[] = {"polymap_cuda_into_pinned", "naive_pinned"};
  for (int p = 0; p < 2; ++p) {
    benchmark::RegisterBenchmark((std::string("BM_HostMap/") + pinned_peers[p]).c_str(),
                                 host_map_pinned, p)
        ->Arg(host)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  for (const bool overlapped : {false, true}) {
    benchmark::RegisterBenchmark(overlapped ? "BM_HostMap/pinned_copies_overlapped"
                                            : "BM_HostMap/pinned_copies_sequential",
                                 pinned_copies, overlapped)
        ->Arg(host)->UseRealTime()->Unit(benchmark::kMillisecond);
  }
  const char* launch_peers[] = {"polymap_cuda", "raw_kernel"};
  for (int p = 0; p < 2; ++p) {
    benchmark::RegisterBenchmark((std::string("BM_EmptyLaunch/") + launch_peers[p]).c_str(), empty_launch, p)
        ->UseRealTime()->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
