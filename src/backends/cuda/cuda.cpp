// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// The cuda backend's executor and device queries: plain C++ over the CUDA runtime API
// (compiled by the host compiler; the device code is in kernels/cuda and in the user's .cu).
#include <polymap/backends/cuda.hpp>
#include <polymap/cuda/check.hpp>
#include <polymap/detail/execute.hpp>
#include <polymap/error.hpp>

#include "executor.hpp"
#include "once_per_process.hpp"

#include <cuda_runtime.h>

#include <atomic>
#include <string>

namespace polymap::cuda {
namespace {

struct probe {
  int count = 0;
  std::string status;
};

/// The device count, asked once per process (see once_per_process: loading the driver
/// takes milliseconds, and a fork meanwhile must not leave a child that waits for ever).
constinit polymap::detail::once_per_process<probe> devices_probed;

/// The device count: with no driver, cudaGetDeviceCount returns
/// cudaErrorInsufficientDriver, with a driver and no GPU cudaErrorNoDevice; both mean "no
/// GPU here" and neither may stop a CPU-only run.
const probe& devices_here() {
  return devices_probed.get([] {
    probe r;
    const cudaError_t e = cudaGetDeviceCount(&r.count);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      r.count = 0;
      r.status = std::string("no CUDA device: cudaGetDeviceCount returned ") +
                 cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    } else if (r.count == 0) {
      r.status = "no CUDA device: cudaGetDeviceCount found none";
    } else {
      cudaDeviceProp prop{};
      r.status = std::to_string(r.count) + " CUDA device(s)";
      if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
        r.status += ", device 0: " + std::string(prop.name);
      }
    }
    return r;
  });
}

/// The name of the sticky error that lost the CUDA context of this process, null until then.
std::atomic<const char*> lost_to{nullptr};

}  // namespace

namespace detail {

void mark_unusable(const char* error_name) noexcept {
  const char* none = nullptr;
  (void)lost_to.compare_exchange_strong(none, error_name, std::memory_order_acq_rel);
}

void require_device(int device) {
  const int count = device_count();
  if (count == 0) {
    throw backend_unavailable("polymap: backend cuda is not available here: " +
                              device_status());
  }
  if (device < 0 || device >= count) {
    throw option_error("device", std::to_string(device), "0 to " + std::to_string(count - 1));
  }
}

}  // namespace detail

int device_count() noexcept {
  // A forked worker of the processes backend shares its parent's CUDA state, which a
  // child must never touch, not even to count devices.
  if (polymap::detail::in_worker_process()) return 0;
  if (lost_to.load(std::memory_order_acquire) != nullptr) return 0;
  try {
    return devices_here().count;
  } catch (...) {
    return 0;
  }
}

std::string device_status() {
  if (polymap::detail::in_worker_process()) {
    return "no CUDA device in a worker process of the processes backend: a forked child "
           "never touches the GPU";
  }
  if (const char* lost = lost_to.load(std::memory_order_acquire); lost != nullptr) {
    return std::string("no CUDA device: the CUDA context was lost to a sticky error (") + lost +
           "); the GPU is unusable for the rest of this process";
  }
  return devices_here().status;
}

std::vector<device_info> devices() {
  std::vector<device_info> out;
  for (int i = 0; i < device_count(); ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) {
      (void)cudaGetLastError();
      continue;
    }
    out.push_back(device_info{.index = i,
                              .name = p.name,
                              .compute_major = p.major,
                              .compute_minor = p.minor,
                              .memory_bytes = p.totalGlobalMem,
                              .multiprocessors = p.multiProcessorCount});
  }
  return out;
}

}  // namespace polymap::cuda

namespace polymap::detail {
namespace {

/// The GPU as a backend of the generic, type-erased path. That path carries host code only
/// (a map_job's chunk function was compiled for the CPU), so the GPU cannot run it: a call
/// must come through polymap::cuda::map / for_each, which nvcc compiles for the device in
/// the user's .cu. This executor makes the backend show up as built, says whether a device
/// is here, and turns an explicit request from host code into a clear error.
class cuda_executor_impl final : public executor {
 public:
  [[nodiscard]] backend_kind kind() const noexcept override { return backend_kind::cuda; }
  [[nodiscard]] bool available() const noexcept override { return cuda::device_count() > 0; }
  [[nodiscard]] std::string status() const override { return cuda::device_status(); }
  [[nodiscard]] std::size_t parallelism(const options&) const noexcept override { return 1; }
  [[nodiscard]] double overhead_seconds(const call_shape& /*call*/) const noexcept override {
    return 20e-6;
  }
  void run(const map_job&, run_report*) override {
    throw backend_unavailable(
        "polymap: backend cuda runs only functions compiled for the GPU: call "
        "polymap::cuda::map or polymap::cuda::for_each (#include <polymap/cuda/map.hpp>) "
        "from a .cu file with a [] __host__ __device__ lambda or a functor marked "
        "polymap_device_callable");
  }
};

constinit never_destroyed<cuda_executor_impl> the_executor;

}  // namespace

executor& cuda_executor() { return the_executor.value; }

}  // namespace polymap::detail
