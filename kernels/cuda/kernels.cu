// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The built-in kernels compiled for the GPU: the POLYMAP_HD functions of kernels/cpu, run by
// polymap::cuda::for_each. Compiled with --fmad=false (CMakeLists.txt) so that the GPU rounds
// like the CPU and `polymap bench` can compare the results with serial's.
#include <polymap/cuda/map.hpp>

#include "cuda/launch.hpp"

#include <thrust/execution_policy.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/transform_reduce.h>

#include <new>
#include <optional>
#include <span>

namespace polymap::kernels::gpu {
namespace {

namespace pc = polymap::cuda;

/// Where `p` points, named for device_for's errors.
pc::detail::named_place at(const char* name, const void* p) {
  return {name, pc::detail::where_is(p)};
}

/// An input as the GPU sees it: in place when it is already in memory the GPU reads (`at`
/// says where `p` points), else a copy.
template <class T>
class device_in {
 public:
  device_in(const T* p, const pc::detail::named_place& at, std::size_t n, int device) : ptr_(p) {
    if (n != 0 && !pc::detail::on_gpu(at.place)) {
      copy_.emplace(std::span<const T>(p, n), device);
      ptr_ = copy_->data();
    }
  }
  [[nodiscard]] const T* get() const noexcept { return ptr_; }

 private:
  const T* ptr_;
  std::optional<pc::device_buffer<T>> copy_;
};

/// Whether a kernel reads an output before it writes it (saxpy's y).
enum class reads_output : bool { no, yes };

/// An output as the GPU sees it: in place in device memory, else a device buffer (holding a
/// copy of the host's values when the kernel reads them) copied back to the host by `finish()`.
template <class T>
class device_out {
 public:
  device_out(T* p, const pc::detail::named_place& at, std::size_t n, int device,
             reads_output reads = reads_output::no)
      : host_(p), ptr_(p), n_(n) {
    if (n != 0 && !pc::detail::on_gpu(at.place)) {
      buffer_.emplace(n, device);
      ptr_ = buffer_->data();
      if (reads == reads_output::yes) {
        POLYMAP_CUDA_CHECK(cudaMemcpy(ptr_, host_, n * sizeof(T), cudaMemcpyHostToDevice));
      }
    }
  }
  [[nodiscard]] T* get() const noexcept { return ptr_; }
  void finish() {
    if (buffer_) {
      POLYMAP_CUDA_CHECK(cudaMemcpy(host_, ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    }
  }

 private:
  T* host_;
  T* ptr_;
  std::size_t n_;
  std::optional<pc::device_buffer<T>> buffer_;
};

options on(int device) { return options{.backend = backend_kind::cuda, .device = device}; }

}  // namespace

void saxpy(std::size_t n, float a, const float* x, float* y, int device) {
  pc::detail::require_device(device);
  const auto x_at = at("x", x);
  const auto y_at = at("y", y);
  device = pc::detail::device_for({x_at, y_at}, device);
  const device_in<float> dx(x, x_at, n, device);
  device_out<float> dy(y, y_at, n, device, reads_output::yes);
  const float* xp = dx.get();
  float* yp = dy.get();
  pc::for_each(n, [=] __host__ __device__(std::size_t i) { kernels::saxpy(i, a, xp, yp); },
               on(device));
  dy.finish();
}

void jacobi(std::size_t n, const double* in, double* out, int device) {
  pc::detail::require_device(device);
  const auto in_at = at("in", in);
  const auto out_at = at("out", out);
  device = pc::detail::device_for({in_at, out_at}, device);
  const device_in<double> din(in, in_at, n * n, device);
  device_out<double> dout(out, out_at, n * n, device);
  const double* ip = din.get();
  double* op = dout.get();
  // One thread per cell: a row per thread, as on the CPU, would leave most of the GPU idle.
  pc::for_each(
      n * n, [=] __host__ __device__(std::size_t c) { jacobi_cell(c / n, c % n, n, ip, op); },
      on(device));
  dout.finish();
}

void mandelbrot(std::size_t width, std::size_t height, std::uint16_t* out, int device) {
  pc::detail::require_device(device);
  const auto out_at = at("out", out);
  device = pc::detail::device_for({out_at}, device);
  device_out<std::uint16_t> dout(out, out_at, width * height, device);
  std::uint16_t* op = dout.get();
  pc::for_each(
      width * height,
      [=] __host__ __device__(std::size_t p) {
        const std::size_t row = p / width;
        const std::size_t col = p % width;
        // The same arithmetic as mandelbrot_row, one pixel per thread.
        const double cy =
            1.5 - 3.0 * (static_cast<double>(row) + 0.5) / static_cast<double>(height);
        const double cx =
            -2.0 + 3.0 * (static_cast<double>(col) + 0.5) / static_cast<double>(width);
        op[p] = mandelbrot_escape(cx, cy);
      },
      on(device));
  dout.finish();
}

void black_scholes(std::uint64_t seed, std::size_t n, bs_price* out, int device) {
  pc::detail::require_device(device);
  const auto out_at = at("out", out);
  device = pc::detail::device_for({out_at}, device);
  device_out<bs_price> dout(out, out_at, n, device);
  bs_price* op = dout.get();
  pc::for_each(
      n,
      [=] __host__ __device__(std::size_t i) {
        op[i] = kernels::black_scholes(bs_sample_option(seed, i));
      },
      on(device));
  dout.finish();
}

std::uint64_t pi_hits(std::uint64_t seed, std::size_t blocks, std::size_t samples_per_block,
                      int device) {
  pc::detail::require_device(device);
  if (blocks == 0) return 0;
  const pc::device_guard guard(device);
  pc::detail::clear_stale_error();  // Thrust reports the thread's last error after its launch
  try {
    return thrust::transform_reduce(
        thrust::device, thrust::counting_iterator<std::size_t>(0),
        thrust::counting_iterator<std::size_t>(blocks),
        [=] __host__ __device__(std::size_t b) { return pi_block_hits(seed, b, samples_per_block); },
        std::uint64_t{0}, thrust::plus<std::uint64_t>());
  } catch (const thrust::system_error& e) {
    // Through the check, as every other failure: a lost context marks the GPU unusable.
    pc::detail::check(static_cast<cudaError_t>(e.code().value()), "thrust::transform_reduce in pi_hits",
                      __FILE__, __LINE__);
    throw;  // a code of cudaSuccess: not a CUDA failure after all
  } catch (const std::bad_alloc&) {
    // Thrust's own temporary storage: the same out-of-memory as any other allocation.
    pc::detail::check(cudaErrorMemoryAllocation, "thrust::transform_reduce in pi_hits",
                      __FILE__, __LINE__);
    throw;  // unreachable: check throws for any code but cudaSuccess
  }
}

void pi_blocks(std::uint64_t seed, std::size_t blocks, std::size_t samples_per_block,
               std::uint64_t* hits, int device) {
  pc::detail::require_device(device);
  const auto hits_at = at("hits", hits);
  device = pc::detail::device_for({hits_at}, device);
  device_out<std::uint64_t> dout(hits, hits_at, blocks, device);
  std::uint64_t* op = dout.get();
  pc::for_each(
      blocks,
      [=] __host__ __device__(std::size_t b) { op[b] = pi_block_hits(seed, b, samples_per_block); },
      on(device));
  dout.finish();
}

void nbody(std::size_t n, const body* in, body* out, double dt, double softening, int device) {
  pc::detail::require_device(device);
  const auto in_at = at("in", in);
  const auto out_at = at("out", out);
  device = pc::detail::device_for({in_at, out_at}, device);
  const device_in<body> din(in, in_at, n, device);
  device_out<body> dout(out, out_at, n, device);
  const body* ip = din.get();
  body* op = dout.get();
  pc::for_each(
      n, [=] __host__ __device__(std::size_t i) { nbody_step(i, n, ip, op, dt, softening); },
      on(device));
  dout.finish();
}

}  // namespace polymap::kernels::gpu
