// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Runs a user's own `POLYMAP_HD` function on a GPU: include this from a .cu file compiled by
/// nvcc with --extended-lambda (linking polymap::polymap adds the flag), as with Thrust.
///
/// - `map(device_span_or_buffer, fn)`: device-resident input, never copied; the result stays
///   on the device (a `device_buffer`). cub::DeviceTransform does the work: it reaches more
///   of an H100's bandwidth than thrust::transform (NVIDIA/cccl#1673, #2086).
/// - `map(host_range, fn)`: host-resident input, streamed in chunks through pinned staging
///   buffers on several streams, so that the copy in of one chunk, the kernel of another and
///   the copy out of a third overlap.
/// - `for_each(n, fn)`: `fn(i)` for i in [0, n) on the GPU; `fn` must only touch memory the
///   GPU can reach (device buffers, managed memory).
/// - `explain(host_range, fn)`: where `map` would run and why, the GPU's predicted time
///   (copies included, from costs measured on the device) among the CPU backends'.
///
/// With `backend::automatic` a host-resident map runs on the GPU only when a device is here,
/// the function is proven device-callable (`is_device_callable_v`) and the GPU is predicted
/// to finish first; otherwise it is `polymap::map` on the CPU. GPU code cannot throw, so a
/// GPU map has no item failures; CUDA failures throw `cuda_error`.

#if !defined(__CUDACC__)
#error "<polymap/cuda/map.hpp> runs your function on a GPU: include it from a .cu file compiled by nvcc"
#endif

#include <polymap/backends/cuda.hpp>
#include <polymap/cuda/check.hpp>
#include <polymap/cuda/device_buffer.hpp>
#include <polymap/detail/execute.hpp>
#include <polymap/detail/parallel_copy.hpp>
#include <polymap/detail/results.hpp>
#include <polymap/detail/run_items.hpp>
#include <polymap/device_callable.hpp>
#include <polymap/job.hpp>
#include <polymap/map.hpp>

#include <cub/device/device_transform.cuh>
#include <cuda_runtime.h>
#include <thrust/device_vector.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace polymap::cuda {

/// Threads per block of polymap's own kernels: a multiple of the warp, enough blocks per
/// multiprocessor to hide latency on sm_80 and sm_90.
inline constexpr unsigned block_threads = 256;
/// Streams (and staging slots) of a host-resident map: three keep the copy in, the kernel
/// and the copy out of consecutive chunks all busy; a fourth absorbs jitter.
inline constexpr std::size_t staging_slots = 4;
/// Bytes per chunk of a host-resident map, of its items or its results, whichever are
/// wider: large enough that a copy runs at PCIe
/// bandwidth (the latency of one cudaMemcpyAsync is about 10 us), small enough that the
/// pipeline fills quickly.
inline constexpr std::size_t staging_chunk_bytes = std::size_t{8} << 20;

namespace detail {

template <class Fn, class In, class Out>
__global__ void map_kernel(Fn fn, const In* in, Out* out, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(blockDim.x) * gridDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    out[i] = fn(in[i]);
  }
}

template <class Fn>
__global__ void index_kernel(Fn fn, std::size_t n) {
  const std::size_t stride = static_cast<std::size_t>(blockDim.x) * gridDim.x;
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += stride) {
    fn(i);
  }
}

/// Blocks for `n` items: one item per thread, as a hand-written kernel launches them (the
/// kernels' grid-stride loop only takes over beyond the largest grid, 2^31 - 1 blocks).
inline unsigned grid_for(std::size_t n) {
  constexpr std::size_t max_blocks = (std::size_t{1} << 31) - 1;
  return static_cast<unsigned>(
      std::clamp<std::size_t>((n + block_threads - 1) / block_threads, 1, max_blocks));
}

/// @throws option_error when `options::device` names no device that is here. With none
///   here (a worker process of the processes backend included) any index passes: the call
///   then runs on the CPU, or is refused as unavailable.
inline void check_device(const options& o) {
  const int count = device_count();
  if (count > 0 && (o.device < 0 || o.device >= count)) {
    throw option_error("device", std::to_string(o.device), "0 to " + std::to_string(count - 1));
  }
}

/// What keeps a call off the GPU: the GPU's rules, checked in this order, for every cuda::
/// call and for explain.
enum class gpu_obstacle {
  none,
  stop_or_cap,             // a timeout or a memory cap, which no GPU item can have
  nested,                  // automatic, in a worker of another map: runs inline there
  not_device_callable,     // nvcc cannot prove the function runs on a GPU
  not_trivially_copyable,  // items or results that cannot be copied there byte for byte
  no_device,
};

/// What keeps a call of `Fn` with `o` off the GPU, or none. `copyable`: its items and
/// results can be copied to the GPU byte for byte (or stay there).
/// @throws option_error when options::device names no device that is here
template <class Fn, bool copyable, bool device_only = false>
gpu_obstacle obstacle_to_gpu(const options& o) {
  check_device(o);
  if (polymap::detail::stops_or_caps(o)) return gpu_obstacle::stop_or_cap;
  // An explicit cuda is obeyed in a worker too; automatic keeps a nested call inline.
  if (o.backend == backend_kind::automatic && polymap::detail::in_worker()) {
    return gpu_obstacle::nested;
  }
  if constexpr (!(is_device_callable_v<Fn> || (device_only && is_device_lambda_v<Fn>))) {
    return gpu_obstacle::not_device_callable;
  } else if constexpr (!copyable) {
    return gpu_obstacle::not_trivially_copyable;
  } else {
    return device_count() > 0 ? gpu_obstacle::none : gpu_obstacle::no_device;
  }
}

/// `obstacle` in words: explain's reason, and the error of an explicit cuda.
inline std::string why_not_gpu(gpu_obstacle obstacle) {
  switch (obstacle) {
    case gpu_obstacle::none: return {};
    case gpu_obstacle::stop_or_cap:
      return "a timeout or a memory cap: only the processes backend can stop or cap an item";
    case gpu_obstacle::nested: return "nested in a worker of another map: runs inline there";
    case gpu_obstacle::not_device_callable:
      return "the GPU needs a device-callable function: a [] __host__ __device__ lambda (nvcc "
             "--extended-lambda) or a functor with `using polymap_device_callable = void;`";
    case gpu_obstacle::not_trivially_copyable:
      return "the GPU needs items and results that are trivially copyable";
    case gpu_obstacle::no_device: return device_status();
  }
  return "unknown obstacle";
}

/// Whether a cuda:: call of `Fn` runs on the GPU: for automatic, when nothing keeps it off;
/// for an explicit cuda, always, or it is refused. Other backends: never.
/// @throws option_error for a bad device index, or a timeout or memory cap with backend cuda;
///   backend_unavailable when backend cuda meets any other obstacle
template <class Fn, bool copyable = true, bool device_only = false>
bool wants_gpu(const options& o) {
  if (o.backend != backend_kind::automatic && o.backend != backend_kind::cuda) return false;
  const gpu_obstacle obstacle = obstacle_to_gpu<Fn, copyable, device_only>(o);
  if (obstacle == gpu_obstacle::none) return true;
  if (o.backend == backend_kind::automatic) return false;
  if (obstacle == gpu_obstacle::stop_or_cap) polymap::detail::refuse_stop_or_cap(o, "cuda");
  throw backend_unavailable("polymap: backend cuda is not usable here: " + why_not_gpu(obstacle));
}

/// Whether items of `T` and results of `R` can be copied to a GPU byte for byte.
template <class T, class R>
inline constexpr bool gpu_copyable_v =
    std::is_trivially_copyable_v<T> && std::is_trivially_copyable_v<R>;

/// wants_gpu for a host-resident map of `T` to `R`.
template <class T, class R, class Fn>
bool host_wants_gpu(const options& o) {
  return wants_gpu<Fn, gpu_copyable_v<T, R>>(o);
}

/// Host-resident maps that can go to the GPU at all: device-callable, trivially copyable.
template <class T, class R, class Fn>
inline constexpr bool gpu_mappable_v = is_device_callable_v<Fn> && gpu_copyable_v<T, R>;

/// Pinned host buffers, device buffers and streams of one host-resident map at a time,
/// kept between calls by the staging_pool below.
struct staging {
  struct slot {
    cudaStream_t stream = nullptr;
    cudaEvent_t done = nullptr;
    void* host_in = nullptr;
    void* host_out = nullptr;
    void* dev_in = nullptr;
    void* dev_out = nullptr;
    std::size_t first = 0, count = 0;  // the chunk in flight, count 0 for none
  };
  int device = -1;
  std::size_t in_bytes = 0, out_bytes = 0;            // each slot's device buffers
  std::size_t host_in_bytes = 0, host_out_bytes = 0;  // its pinned ones (0: none)
  std::array<slot, staging_slots> slots{};

  staging() = default;
  staging(const staging&) = delete;
  staging& operator=(const staging&) = delete;
  ~staging() { release(); }

  void release() noexcept {
    for (slot& s : slots) {
      if (s.stream != nullptr) (void)cudaStreamDestroy(s.stream);
      if (s.done != nullptr) (void)cudaEventDestroy(s.done);
      if (s.host_in != nullptr) (void)cudaFreeHost(s.host_in);
      if (s.host_out != nullptr) (void)cudaFreeHost(s.host_out);
      if (s.dev_in != nullptr) (void)cudaFree(s.dev_in);
      if (s.dev_out != nullptr) (void)cudaFree(s.dev_out);
      s = slot{};
    }
    device = -1;
    in_bytes = out_bytes = host_in_bytes = host_out_bytes = 0;
  }

  /// Makes every slot hold `in` and `out` bytes on `dev`, and as many pinned host bytes
  /// for the sides that are staged: `host_in`, `host_out` (0 for a caller's buffer that is
  /// pinned already, which the GPU copies from or to directly). Only a buffer that is too
  /// small is made again; the streams and events are kept unless the device changes.
  /// @throws cuda_error (an allocation failure leaves the staging empty, not half made)
  void reserve(int dev, std::size_t in, std::size_t out, std::size_t host_in,
               std::size_t host_out) {
    if (dev != device) release();
    try {
      for (slot& s : slots) {
        if (s.stream == nullptr) {
          // Blocking streams: each chunk waits for what the program queued before on the
          // legacy default stream (a kernel writing what `fn` reads), as Thrust's calls do.
          POLYMAP_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamDefault));
          POLYMAP_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
        }
        grow(s.host_in, host_in_bytes, host_in, pinned);
        grow(s.host_out, host_out_bytes, host_out, pinned);
        grow(s.dev_in, in_bytes, in, on_device);
        grow(s.dev_out, out_bytes, out, on_device);
      }
    } catch (...) {
      release();
      throw;
    }
    device = dev;
    in_bytes = std::max(in_bytes, in);
    out_bytes = std::max(out_bytes, out);
    host_in_bytes = std::max(host_in_bytes, host_in);
    host_out_bytes = std::max(host_out_bytes, host_out);
  }

 private:
  enum memory_kind : bool { pinned, on_device };

  /// Makes `p`, of `have` bytes, hold `want` when it holds fewer.
  static void grow(void*& p, std::size_t have, std::size_t want, memory_kind kind) {
    if (want <= have && (p != nullptr || want == 0)) return;
    if (p != nullptr) (void)(kind == pinned ? cudaFreeHost(p) : cudaFree(p));
    p = nullptr;
    POLYMAP_CUDA_CHECK(kind == pinned ? cudaHostAlloc(&p, want, cudaHostAllocDefault)
                                      : cudaMalloc(&p, want));
  }
};

/// Staging sets kept between calls, for any thread: cudaHostAlloc costs milliseconds, far
/// more than a small map, and map_async runs each call on a thread of its own. A call takes
/// one for its length; at most `kept` wait in the pool (128 MiB each, half of it pinned).
class staging_pool {
 public:
  static constexpr std::size_t kept = 4;

  static staging_pool& instance() {
    static staging_pool pool;
    return pool;
  }

  /// A set for a call on `device`: one made there when the pool has one (a set of another
  /// device would be freed and made again, some 10 ms for its 128 MiB), else any.
  [[nodiscard]] std::unique_ptr<staging> take(int device) {
    {
      const std::lock_guard lock(mutex_);
      if (!free_.empty()) {
        auto found = std::find_if(free_.begin(), free_.end(),
                                  [device](const auto& s) { return s->device == device; });
        if (found == free_.end()) found = free_.end() - 1;
        std::unique_ptr<staging> s = std::move(*found);
        free_.erase(found);
        return s;
      }
    }
    return std::make_unique<staging>();
  }

  /// Keeps `s` for a later call, or frees it when the pool is full: after the lock is let
  /// go, since freeing pinned and device memory waits for the whole device.
  void give_back(std::unique_ptr<staging> s) noexcept {
    {
      const std::lock_guard lock(mutex_);
      if (free_.size() < kept) free_.push_back(std::move(s));  // reserved: cannot throw
    }
    s.reset();
  }

 private:
  staging_pool() { free_.reserve(kept); }
  std::mutex mutex_;
  std::vector<std::unique_ptr<staging>> free_;
};

/// One call's staging set, back to the pool when the call ends.
class staging_lease {
 public:
  explicit staging_lease(int device) : set_(staging_pool::instance().take(device)) {}
  ~staging_lease() { staging_pool::instance().give_back(std::move(set_)); }
  staging_lease(const staging_lease&) = delete;
  staging_lease& operator=(const staging_lease&) = delete;
  [[nodiscard]] staging& operator*() noexcept { return *set_; }

 private:
  std::unique_ptr<staging> set_;
};

/// Where a pointer points, as the runtime sees it.
struct memory_place {
  cudaMemoryType type = cudaMemoryTypeUnregistered;  ///< plain host memory: Unregistered
  int device = -1;  ///< for device memory, the GPU whose memory it is
};

/// @throws cuda_error for any failure but the "invalid value" of plain host memory on old
///   runtimes (a lost context among them, which must not pass for host memory)
inline memory_place place_of(const void* p) {
  cudaPointerAttributes a{};
  const cudaError_t code = cudaPointerGetAttributes(&a, p);
  if (code == cudaErrorInvalidValue) {
    (void)cudaGetLastError();  // plain host memory on old runtimes
    return {};
  }
  POLYMAP_CUDA_CHECK(code);
  return {.type = a.type, .device = a.device};
}

/// The kind of memory `p` points to.
inline cudaMemoryType memory_type(const void* p) { return place_of(p).type; }

/// Whether the `bytes` at `p` are page-locked host memory (cudaHostAlloc, cudaMallocHost,
/// cudaHostRegister), which the copy engines read and write without a staging copy: the
/// first and the last byte are.
inline bool is_pinned(const void* p, std::size_t bytes) {
  return bytes != 0 && memory_type(p) == cudaMemoryTypeHost &&
         memory_type(static_cast<const char*>(p) + bytes - 1) == cudaMemoryTypeHost;
}

/// Host-resident map: input `in[0, n)` (contiguous host memory) to `out[0, n)`.
/// `state` counts the chunks done and is polled for a cancel between chunks.
/// Each step waits for the chunk that last used a slot, then copies its results out of the
/// slot's pinned buffer and the next chunk into it, both at once across the thread pool
/// (one thread's memcpy cannot keep up with the link), and queues the next chunk's copy in,
/// kernel and copy out on the slot's stream. Input or output that is already pinned skips
/// its staging copy: the GPU copies straight from or to it.
template <class In, class R, class Fn>
void stream_map(const In* in, R* out, std::size_t n, Fn& fn, int device,
                polymap::detail::run_state& state) {
  static_assert(std::is_trivially_copyable_v<In> && std::is_trivially_copyable_v<R>,
                "polymap::cuda::map: items and results must be trivially copyable to go to a GPU");
  using polymap::detail::byte_copy;
  if (n == 0) return;
  // Active in the call's state until every chunk in flight has landed: a cancel
  // (options::stop, job.cancel()) returns only then, as on the CPU it waits for the chunks
  // that run.
  const polymap::detail::chunk_guard in_flight(state);
  if (!in_flight.entered()) return;
  device_guard on(device);
  // Chunks are cut by the wider of an item and a result: neither side's buffers outgrow
  // staging_chunk_bytes.
  const std::size_t chunk =
      std::max<std::size_t>(1, staging_chunk_bytes / std::max(sizeof(In), sizeof(R)));
  const std::size_t per_chunk = std::min(chunk, n);
  const bool in_pinned = is_pinned(in, n * sizeof(In));
  const bool out_pinned = is_pinned(out, n * sizeof(R));
  staging_lease lease(device);
  staging& st = *lease;
  st.reserve(device, per_chunk * sizeof(In), per_chunk * sizeof(R),
             in_pinned ? 0 : per_chunk * sizeof(In), out_pinned ? 0 : per_chunk * sizeof(R));
  // The copy of slot `s`'s finished results to the caller's output, once they are there
  // (none when the GPU wrote them there itself).
  auto results_of = [&](staging::slot& s) -> byte_copy {
    if (s.count == 0) return {};
    POLYMAP_CUDA_CHECK(cudaEventSynchronize(s.done));
    if (out_pinned) return {};
    return {out + s.first, s.host_out, s.count * sizeof(R)};
  };
  auto delivered = [&](staging::slot& s) {
    if (s.count != 0) state.add_done(s.count);
    s.count = 0;
  };
  try {
    std::size_t c = 0;
    for (std::size_t first = 0; first < n; first += chunk, ++c) {
      if (state.stopping()) break;
      staging::slot& s = st.slots[c % staging_slots];
      const std::size_t count = std::min(chunk, n - first);
      const std::array<byte_copy, 2> copies{
          results_of(s),
          in_pinned ? byte_copy{} : byte_copy{s.host_in, in + first, count * sizeof(In)}};
      polymap::detail::parallel_copy(copies);
      delivered(s);
      const void* from = in_pinned ? static_cast<const void*>(in + first) : s.host_in;
      void* to = out_pinned ? static_cast<void*>(out + first) : s.host_out;
      POLYMAP_CUDA_CHECK(
          cudaMemcpyAsync(s.dev_in, from, count * sizeof(In), cudaMemcpyHostToDevice, s.stream));
      clear_stale_error();
      map_kernel<<<grid_for(count), block_threads, 0, s.stream>>>(
          fn, static_cast<const In*>(s.dev_in), static_cast<R*>(s.dev_out), count);
      POLYMAP_CUDA_CHECK(cudaGetLastError());
      POLYMAP_CUDA_CHECK(
          cudaMemcpyAsync(to, s.dev_out, count * sizeof(R), cudaMemcpyDeviceToHost, s.stream));
      POLYMAP_CUDA_CHECK(cudaEventRecord(s.done, s.stream));
      s.first = first;
      s.count = count;
    }
    std::array<byte_copy, staging_slots> rest{};
    for (std::size_t k = 0; k < staging_slots; ++k) rest[k] = results_of(st.slots[k]);
    polymap::detail::parallel_copy(rest);
    for (staging::slot& s : st.slots) delivered(s);
  } catch (...) {
    // Leave no chunk in flight that could write into the caller's buffers later.
    for (staging::slot& s : st.slots) {
      if (s.stream != nullptr) (void)cudaStreamSynchronize(s.stream);
      s.count = 0;
    }
    throw;
  }
}

/// A host-resident map on the GPU as a call of its own: `options::stop` and `on_progress`
/// work as on the CPU (stop between chunks), and a stopped call throws cancelled_error.
/// `state` is the caller's when it has one (map_async), else the call's own.
template <class In, class R, class Fn>
void watched_stream_map(const In* in, R* out, std::size_t n, Fn& fn, const options& opts,
                        polymap::detail::run_state* state = nullptr) {
  std::optional<polymap::detail::run_state> own;
  if (state == nullptr) state = &own.emplace(n);
  polymap::detail::run_watched(*state, opts,
                               [&] { stream_map(in, out, n, fn, opts.device, *state); });
  polymap::detail::throw_if_failed<R>(*state);
}

/// Runs `gpu`, a host-resident map that the options put on the GPU. When the GPU fails it
/// (a cuda_error: a device held by another process, out of memory, a fault) under
/// `automatic`, which chose the GPU itself, the device is marked unusable for `automatic` in
/// this process, `failure` is set to the error and false is returned: the caller runs the
/// call on the CPU (its items may then run twice). A call that asked for cuda throws.
/// @return whether the map ran on the GPU
template <class Gpu>
bool ran_on_gpu(const options& opts, Gpu&& gpu, std::string& failure) {
  try {
    gpu();
    return true;
  } catch (const cuda_error& e) {
    if (opts.backend != backend_kind::automatic) throw;
    failure = e.what();
    polymap::cuda::mark_failed(opts.device, failure);
    return false;
  }
}

/// A vector of `n` results that a GPU writes through a plain pointer, filled by `fill(R*)`;
/// a `std::vector<bool>` (packed bits, no data()) is filled through a buffer of bools.
template <class R, class Fill>
std::vector<R> gpu_results(std::size_t n, Fill&& fill) {
  if constexpr (std::is_same_v<R, bool>) {
    const std::unique_ptr<bool[]> staged(new bool[n]);  // NOLINT(modernize-avoid-c-arrays)
    fill(staged.get());
    return std::vector<bool>(staged.get(), staged.get() + n);
  } else {
    std::vector<R> out = polymap::detail::make_large_vector<R>(n);
    fill(out.data());
    return out;
  }
}

/// Device-resident map: `in` and `out` are device pointers; nothing is copied.
template <class In, class R, class Fn>
void device_map(const In* in, R* out, std::size_t n, Fn& fn, int device) {
  if (n == 0) return;
  device_guard on(device);
  clear_stale_error();  // DeviceTransform returns the thread's last error after its launch
  POLYMAP_CUDA_CHECK(cub::DeviceTransform::Transform(in, out, static_cast<std::int64_t>(n), fn,
                                                     cudaStream_t{}));
  POLYMAP_CUDA_CHECK(cudaStreamSynchronize(cudaStream_t{}));
}

/// Where `p` points: asked of the runtime only when a device is here (a worker process,
/// which must not touch CUDA, has none); otherwise plain host memory.
inline memory_place where_is(const void* p) {
  return device_count() == 0 ? memory_place{} : place_of(p);
}

/// Whether `m` is memory the GPU reads directly (device or managed memory).
inline bool on_gpu(const memory_place& m) {
  return m.type == cudaMemoryTypeDevice || m.type == cudaMemoryTypeManaged;
}

/// Whether `p` points to memory the GPU reads directly.
inline bool is_device_pointer(const void* p) { return on_gpu(where_is(p)); }

/// Where a pointer that a call reads or writes points, named for its errors.
struct named_place {
  const char* name;
  memory_place place;
};

/// The GPU that must run a kernel over `places`: the one whose memory holds those in
/// device memory (a GPU cannot read another's memory without peer access), else `device`
/// (options::device; host and managed memory are reached from any GPU).
/// @throws option_error when two of them are in the memory of different GPUs
inline int device_for(std::initializer_list<named_place> places, int device) {
  const named_place* holder = nullptr;
  int held_on = device;
  for (const named_place& np : places) {
    if (np.place.type != cudaMemoryTypeDevice) continue;
    if (holder == nullptr) {
      holder = &np;
      held_on = np.place.device;
    } else if (np.place.device != held_on) {
      throw option_error(std::string(holder->name) + ", " + np.name,
                         "memory of GPUs " + std::to_string(held_on) + " and " +
                             std::to_string(np.place.device),
                         "the memory of one GPU (or host or managed memory)");
    }
  }
  return held_on;
}

/// The least time any GPU could take for a host-resident map moving `bytes`.
inline double gpu_lower_bound(std::size_t bytes) {
  return host_map_costs::least_fixed_seconds +
         static_cast<double>(bytes) / host_map_costs::most_bytes_per_second;
}

/// The GPU's estimate for a host-resident map of `n` items, copies included, set against
/// `cpu` (polymap::explain's plan); `source` says where its costs come from. Measuring the
/// costs takes a CUDA context and some 0.1 s (estimated), so the defaults stand in when the
/// answer cannot depend on them: a backend named by options::backend or POLYMAP_BACKEND, a
/// CPU that finishes before any GPU could.
/// @throws option_error for a bad device index
template <class T, class R, class Fn>
backend_estimate gpu_estimate(std::size_t n, const options& o, const plan& cpu,
                              std::string& source) {
  backend_estimate e{.backend = backend_kind::cuda,
                     .usable = false,
                     .why_not = why_not_gpu(obstacle_to_gpu<Fn, gpu_copyable_v<T, R>>(o)),
                     .seconds = 0,
                     .workers = 0};
  if (!e.why_not.empty()) return e;
  const std::size_t bytes = n * (sizeof(T) + sizeof(R));
  bool worth_measuring = !cpu.requested && o.backend != backend_kind::cuda;
  for (const backend_estimate& c : cpu.estimates) {
    if (c.backend == cpu.chosen && c.usable && c.seconds < gpu_lower_bound(bytes)) {
      worth_measuring = false;
    }
  }
  const host_map_costs costs = host_map_costs_on(
      o.device, worth_measuring ? if_unknown::measure : if_unknown::use_defaults);
  if (device_count() == 0) {  // the context was lost while measuring
    e.why_not = device_status();
    return e;
  }
  if (!costs.unusable.empty()) {
    e.why_not = "the GPU failed when it was used in this process: " + costs.unusable;
    return e;
  }
  e.usable = true;
  e.workers = 1;
  e.seconds = costs.seconds(bytes);
  source = "copies included, " + costs.source;
  return e;
}

/// A decision for a host-resident map, and where the GPU's estimate in it comes from.
struct host_choice {
  plan decision;
  std::string gpu_source = {};
};

/// The plan of a host-resident map of `xs`: polymap::explain's CPU estimates, weighed
/// against the GPU's.
template <class T, class R, class Fn>
host_choice host_plan(std::span<const T> xs, Fn& fn, const options& opts) {
  options cpu = opts;
  cpu.backend = backend_kind::automatic;
  host_choice c{.decision = polymap::explain(xs, fn, cpu)};
  backend_estimate gpu = gpu_estimate<T, R, Fn>(xs.size(), opts, c.decision, c.gpu_source);
  polymap::detail::weigh_estimate(c.decision, std::move(gpu), c.gpu_source,
                                  opts.backend == backend_kind::cuda);
  return c;
}

/// Why a map of device-resident data runs on the GPU.
inline constexpr const char* device_resident = "device-resident input: no CPU backend can read it";

/// A decision that needed no weighing: the GPU, for `reason` (`requested`: named by
/// options::backend).
inline plan gpu_plan(std::size_t items, std::string reason, bool requested = false) {
  plan p;
  p.chosen = backend_kind::cuda;
  p.items = items;
  p.reason = std::move(reason);
  p.requested = requested;
  return p;
}

/// Where a host-resident map that may run on the GPU (wants_gpu was true) goes: for backend
/// cuda there, as requested; for automatic, where host_plan predicts it finishes first. An
/// empty input stays on the CPU with nothing weighed (no CUDA call, no sampling).
template <class T, class R, class Fn>
host_choice host_decision(std::span<const T> xs, Fn& fn, const options& opts) {
  host_choice c;
  if (opts.backend == backend_kind::cuda) {
    c.decision = gpu_plan(xs.size(), "requested by options::backend", true);
  } else if (xs.empty()) {
    c.decision.chosen = backend_kind::serial;
    c.decision.reason = "no items";
    return c;
  } else {
    c = host_plan<T, R>(xs, fn, opts);
  }
  // A call that stays on the CPU is printed by execute(), which runs this decision (see
  // map_job::decided); one on the GPU here.
  if (c.decision.chosen == backend_kind::cuda) polymap::detail::explain_if_asked(c.decision);
  return c;
}

/// Says in the call's report, when it asks for one, that the call ran on the GPU, and why.
inline void note_gpu(const options& o, plan decision) {
  if (o.report == nullptr) return;
  o.report->backend = backend_kind::cuda;
  o.report->workers = 1;
  o.report->worker_reports.clear();
  o.report->decision = std::move(decision);
}

/// The same for a call that needed no weighing: no text is made unless a report asks for it
/// (an empty for_each must cost no more than a raw launch).
inline void note_gpu(const options& o, std::size_t items, const char* reason) {
  if (o.report != nullptr) note_gpu(o, gpu_plan(items, reason));
}

/// The host-resident map of the `n` items at `in` into `into` (host memory) that `decision`
/// put on the GPU; when the GPU fails it under `automatic` (see ran_on_gpu), the call runs on
/// the CPU into the same place, and the report says why. `state` as for watched_stream_map.
template <class T, class R, class Fn>
void host_map_on_gpu(const T* in, R* into, std::size_t n, Fn& fn, const options& opts,
                     plan decision, polymap::detail::run_state* state = nullptr) {
  std::string failure;
  if (ran_on_gpu(opts, [&] { watched_stream_map(in, into, n, fn, opts, state); }, failure)) {
    note_gpu(opts, std::move(decision));
    return;
  }
  polymap::detail::map_into(std::span<const T>(in, n), std::span<R>(into, n), fn, opts, state);
  if (opts.report == nullptr) return;
  if (!opts.report->note.empty()) opts.report->note += "; ";
  opts.report->note += "ran on the CPU: the GPU that automatic chose failed (" + failure +
                       "), and is not chosen again in this process";
}

}  // namespace detail

/// Applies `fn` to every element of device-resident `xs` on the GPU; nothing is copied.
/// It runs on the GPU whose memory holds `xs` (options::device for managed memory).
/// @param xs device memory (a device_buffer's span, or a span over cudaMalloc'd memory)
/// @param fn a device-callable function of one element
/// @return the results, in a device_buffer on the same device
/// @throws backend_unavailable with no device or a function that is not device-callable,
///   cuda_error when a CUDA call fails (cudaErrorMemoryAllocation for the output)
template <class T, class Fn>
[[nodiscard]] auto map(std::span<const T> xs, Fn fn, const options& opts = {})
    -> device_buffer<std::remove_cvref_t<std::invoke_result_t<Fn&, const T&>>> {
  using R = std::remove_cvref_t<std::invoke_result_t<Fn&, const T&>>;
  options o = opts;
  o.backend = backend_kind::cuda;  // device memory: no CPU backend can read it
  (void)detail::wants_gpu<Fn>(o);
  const detail::memory_place where = xs.empty() ? detail::memory_place{}
                                                : detail::where_is(xs.data());
  if (!xs.empty() && !detail::on_gpu(where)) {
    // A kernel reading host memory would fault: a host span belongs to the other overload.
    throw option_error("xs", "a span over host memory",
                       "device or managed memory; pass a host range (a vector) to stream it");
  }
  o.device = detail::device_for({{"xs", where}}, o.device);
  device_buffer<R> out(xs.size(), o.device);
  if constexpr (is_device_callable_v<Fn>) {
    detail::device_map(xs.data(), out.data(), xs.size(), fn, o.device);
  }
  detail::note_gpu(opts, xs.size(), detail::device_resident);
  return out;
}

/// The same for a span of non-const elements (a device_buffer's span(), a span over
/// cudaMalloc'd memory), which the overload above does not deduce.
template <class T, class Fn>
  requires(!std::is_const_v<T>)
[[nodiscard]] auto map(std::span<T> xs, Fn fn, const options& opts = {}) {
  return polymap::cuda::map(std::span<const T>(xs), std::move(fn), opts);
}

/// The same for a device_buffer.
template <class T, class Fn>
[[nodiscard]] auto map(const device_buffer<T>& xs, Fn fn, const options& opts = {}) {
  return polymap::cuda::map(std::span<const T>(xs.data(), xs.size()), std::move(fn), opts);
}

/// The same for a thrust::device_vector.
template <class T, class Alloc, class Fn>
[[nodiscard]] auto map(const thrust::device_vector<T, Alloc>& xs, Fn fn, const options& opts = {}) {
  return polymap::cuda::map(
      std::span<const T>(thrust::raw_pointer_cast(xs.data()), xs.size()), std::move(fn), opts);
}

/// Writes `fn(xs[i])` to `out[i]`. Both spans over device (or managed) memory: on the GPU
/// whose memory holds them, nothing copied. Both over host memory: as `map` of a host range
/// (streamed through the GPU when the options ask for cuda, or ask for automatic and the GPU
/// is predicted faster; else `polymap::map_into` on the CPU), with no result vector to
/// allocate. A CPU backend named by the options runs it with no CUDA call.
/// @throws the same as map(); option_error when `out` is shorter than `xs`, when one span
///   is on the device and the other on the host, or when they are on two GPUs
template <class T, class R, class Fn>
void map_into(std::span<const T> xs, std::span<R> out, Fn fn, const options& opts = {}) {
  if (out.size() < xs.size()) {
    throw option_error("out", std::to_string(out.size()) + " elements",
                       "at least as many elements as the input (" +
                           std::to_string(xs.size()) + ")");
  }
  const std::span<R> into = out.first(xs.size());
  if (opts.backend != backend_kind::automatic && opts.backend != backend_kind::cuda) {
    // A CPU backend, named: no CUDA call (asking where the buffers are makes a context).
    polymap::map_into(xs, into, fn, opts);
    return;
  }
  const detail::memory_place in_place =
      xs.empty() ? detail::memory_place{} : detail::where_is(xs.data());
  const detail::memory_place out_place =
      xs.empty() ? detail::memory_place{} : detail::where_is(out.data());
  const bool in_on_device = detail::on_gpu(in_place);
  const bool out_on_device = detail::on_gpu(out_place);
  if (in_on_device != out_on_device) {
    throw option_error("xs, out",
                       in_on_device ? "input on the device, output on the host"
                                    : "input on the host, output on the device",
                       "both on the device, or both on the host");
  }
  if (in_on_device) {
    options o = opts;
    o.backend = backend_kind::cuda;  // device memory: no CPU backend can read it
    (void)detail::wants_gpu<Fn>(o);
    o.device = detail::device_for({{"xs", in_place}, {"out", out_place}}, o.device);
    if constexpr (is_device_callable_v<Fn>) {
      detail::device_map(xs.data(), into.data(), xs.size(), fn, o.device);
      detail::note_gpu(opts, xs.size(), detail::device_resident);
    }
    return;
  }
  if (!detail::host_wants_gpu<T, R, Fn>(opts)) {
    polymap::map_into(xs, into, fn, opts);
    return;
  }
  if constexpr (detail::gpu_mappable_v<T, R, Fn>) {
    detail::host_choice c = detail::host_decision<T, R>(xs, fn, opts);
    if (c.decision.chosen != backend_kind::cuda) {
      polymap::detail::map_into(xs, into, fn, opts, nullptr, &c.decision);
    } else {
      detail::host_map_on_gpu(xs.data(), into.data(), xs.size(), fn, opts,
                              std::move(c.decision));
    }
  }
}

/// map_into of a span of non-const elements, which the overload above does not deduce.
template <class T, class R, class Fn>
  requires(!std::is_const_v<T>)
void map_into(std::span<T> xs, std::span<R> out, Fn fn, const options& opts = {}) {
  polymap::cuda::map_into(std::span<const T>(xs), out, std::move(fn), opts);
}

/// Applies `fn` to every item of the host-resident contiguous range `xs` and returns the
/// results in input order: on the GPU (streamed through pinned buffers) when the options
/// ask for cuda, or ask for automatic and the GPU is predicted faster; else `polymap::map`.
/// A range in device or managed memory is read in place.
/// @throws option_error, backend_unavailable, cuda_error; map_error only from a CPU backend
template <std::ranges::contiguous_range Range, class Fn>
  requires std::ranges::sized_range<Range>
[[nodiscard]] auto map(Range&& xs, Fn fn, const options& opts = {}) {
  using T = std::ranges::range_value_t<Range>;
  using R = std::remove_cvref_t<std::invoke_result_t<Fn&, const T&>>;
  const std::size_t n = std::ranges::size(xs);
  const T* in = std::ranges::data(xs);
  if (!detail::host_wants_gpu<T, R, Fn>(opts)) return polymap::map(xs, fn, opts);
  if constexpr (!detail::gpu_mappable_v<T, R, Fn>) {
    return polymap::map(xs, fn, opts);  // unreachable: host_wants_gpu was false
  } else {
    const detail::memory_place where = n == 0 ? detail::memory_place{} : detail::where_is(in);
    if (detail::on_gpu(where)) {
      const int device = detail::device_for({{"xs", where}}, opts.device);
      device_buffer<R> d(n, device);
      detail::device_map(in, d.data(), n, fn, device);
      detail::note_gpu(opts, n, detail::device_resident);
      return d.to_host();
    }
    detail::host_choice c = detail::host_decision<T, R>(std::span<const T>(in, n), fn, opts);
    if (c.decision.chosen != backend_kind::cuda) {
      return polymap::detail::map_n(in, n, fn, opts, nullptr, &c.decision);
    }
    return detail::gpu_results<R>(n, [&](R* into) {
      detail::host_map_on_gpu(in, into, n, fn, opts, std::move(c.decision));
    });
  }
}

/// Where `map(xs, fn, opts)` would run and why, with the predicted time of each backend:
/// the CPU backends' as polymap::explain predicts them, and the GPU's, copies included, from
/// the costs measured at the device's first use (host_map_costs_on; that first use takes
/// some 0.1 s, estimated). A range in device memory runs on the GPU and is not weighed.
/// @throws option_error for a bad option
template <std::ranges::contiguous_range Range, class Fn>
  requires std::ranges::sized_range<Range>
[[nodiscard]] plan explain(Range&& xs, Fn fn, const options& opts = {}) {
  using T = std::ranges::range_value_t<Range>;
  using R = std::remove_cvref_t<std::invoke_result_t<Fn&, const T&>>;
  const std::span<const T> in(std::ranges::data(xs), std::ranges::size(xs));
  if (opts.backend != backend_kind::automatic && opts.backend != backend_kind::cuda) {
    return polymap::explain(in, fn, opts);
  }
  detail::check_device(opts);
  if (!in.empty() && detail::is_device_pointer(in.data())) {
    return detail::gpu_plan(in.size(), detail::device_resident);
  }
  return detail::host_plan<T, R>(in, fn, opts).decision;
}

/// Calls `fn(i)` for every i in [0, n) on the GPU (backend automatic or cuda), or on the
/// CPU for backend serial or threads. On the GPU (options::device) `fn` must only touch
/// memory that GPU reads: its own device memory, or managed memory.
/// @throws option_error, backend_unavailable (no device; a function that is not
///   device-callable), cuda_error
template <std::integral Index, class Fn>
void for_each(Index n, Fn fn, const options& opts = {}) {
  if constexpr (std::is_signed_v<Index>) {
    if (n < 0) throw option_error("n", std::to_string(n), "a count of zero or more");
  }
  if (opts.backend != backend_kind::automatic && opts.backend != backend_kind::cuda) {
    polymap::for_each(n, fn, opts);
    return;
  }
  options o = opts;
  o.backend = backend_kind::cuda;  // its pointers are device pointers: the CPU cannot go on
  // A [=] __device__ lambda will do: nothing here runs it on the host.
  (void)detail::wants_gpu<Fn, true, true>(o);
  if constexpr (is_device_callable_v<Fn> || is_device_lambda_v<Fn>) {
    const auto count = static_cast<std::size_t>(n);
    if (count == 0) return;
    device_guard on(o.device);
    detail::clear_stale_error();
    detail::index_kernel<<<detail::grid_for(count), block_threads>>>(fn, count);
    POLYMAP_CUDA_CHECK(cudaGetLastError());
    // The legacy default stream: the kernel and what it waited for, not other threads' streams.
    POLYMAP_CUDA_CHECK(cudaStreamSynchronize(cudaStream_t{}));
    detail::note_gpu(opts, count, "polymap::cuda::for_each runs on the GPU");
  }
}

/// `map` of a host-resident range in the background; the GPU path reports progress per
/// chunk and stops between chunks on `cancel()`.
/// @return polymap::job<std::vector<R>>
/// @throws option_error at once (a range in device memory among them: the call copies its
///   items on the host first); the rest from `get()`
template <std::ranges::contiguous_range Range, class Fn>
  requires std::ranges::sized_range<Range>
[[nodiscard]] auto map_async(Range&& xs, Fn fn, options opts = {}) {
  using T = std::ranges::range_value_t<Range>;
  using R = std::remove_cvref_t<std::invoke_result_t<Fn&, const T&>>;
  polymap::detail::check_options(opts);
  detail::check_device(opts);
  const bool may_be_on_gpu =
      opts.backend == backend_kind::automatic || opts.backend == backend_kind::cuda;
  // Managed memory the host can read; device memory it cannot.
  if (may_be_on_gpu && std::ranges::size(xs) != 0 &&
      detail::where_is(std::ranges::data(xs)).type == cudaMemoryTypeDevice) {
    throw option_error("xs", "a range in device memory",
                       "a host range; map a device range with polymap::cuda::map, which reads "
                       "it in place");
  }
  std::vector<T> items(std::ranges::begin(xs), std::ranges::end(xs));
  auto state = std::make_shared<polymap::detail::run_state>(items.size());
  const auto start = std::chrono::steady_clock::now();
  std::future<std::vector<R>> result = std::async(
      std::launch::async,
      [state, items = std::move(items), fn = std::move(fn), opts = std::move(opts)]() mutable {
        // Throws for cuda with no device, or a function or items the GPU cannot take.
        const bool may_use_gpu = detail::host_wants_gpu<T, R, Fn>(opts);
        if constexpr (detail::gpu_mappable_v<T, R, Fn>) {
          if (may_use_gpu) {
            detail::host_choice c =
                detail::host_decision<T, R>(std::span<const T>(items), fn, opts);
            if (c.decision.chosen == backend_kind::cuda) {
              return detail::gpu_results<R>(items.size(), [&](R* into) {
                detail::host_map_on_gpu(items.data(), into, items.size(), fn, opts,
                                        std::move(c.decision), state.get());
              });
            }
            return polymap::detail::map_n(items.begin(), items.size(), fn, opts, state.get(),
                                          &c.decision);
          }
        }
        return polymap::detail::map_n(items.begin(), items.size(), fn, opts, state.get());
      });
  return job<std::vector<R>>(std::move(state), std::move(result), start);
}

}  // namespace polymap::cuda
