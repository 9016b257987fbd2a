// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Runs a user's own KOKKOS_FUNCTION (or KOKKOS_LAMBDA) on any Kokkos execution space,
/// device spaces included: include this from a translation unit compiled the way the user's
/// Kokkos requires (nvcc_wrapper for Kokkos with CUDA). `polymap::map(xs, fn,
/// {.backend = kokkos})` from plain C++ runs host code on the default *host* space; this
/// header is for the other spaces.
///
/// Kokkos is initialised here only when the program has not done it (and finalised at
/// exit only then), as by the kokkos backend. A program that initialises Kokkos itself must
/// do so before its first polymap Kokkos call: Kokkos 3.7 and later abort a second
/// `Kokkos::initialize`, and a `Kokkos::ScopeGuard` made after one.
///
/// Inside a worker process of the processes backend Kokkos is never touched: a space that
/// reads host memory becomes a plain loop on the worker's thread, any other space is
/// refused. Nested in an item of another map, a space that reads host memory becomes a
/// plain loop on that item's thread too (a host space does not nest: Kokkos 4's OpenMP
/// takes a lock that the running parallel_for holds), and a device space waits for its own
/// work only.

#include <polymap/detail/execute.hpp>
#include <polymap/error.hpp>
#include <polymap/options.hpp>

#include <Kokkos_Core.hpp>
#if defined(KOKKOS_ENABLE_CUDA)
#include <cuda_runtime_api.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace polymap::kokkos {

namespace detail {

/// Whether `Space` reads host memory (Serial, OpenMP, Threads; not a device space).
template <class Space>
inline constexpr bool reads_host_v =
    Kokkos::SpaceAccessibility<Space, Kokkos::HostSpace>::accessible;

/// Whether a call on `Space` runs as a plain loop on the calling thread: in a forked worker
/// process, which shares its parent's Kokkos (and GPU) state and must leave it alone, and,
/// for a space that reads host memory, nested in an item of another map.
/// @throws backend_unavailable in a worker process, for a space that cannot read host memory
template <class Space>
bool runs_inline() {
  const bool worker_process = polymap::detail::in_worker_process();
  if constexpr (!reads_host_v<Space>) {
    if (worker_process) {
      throw backend_unavailable(
          std::string("polymap: Kokkos space ") + Space::name() +
          " is not available inside a worker process of the processes backend: a forked "
          "child never touches Kokkos or the GPU");
    }
    return false;
  } else {
    return worker_process || polymap::detail::in_worker();
  }
}

/// A range over [0, n) with 64-bit indices: a device space's own index type (CudaSpace's
/// is 32 bits) would wrap past 2^32 items.
template <class Space>
Kokkos::RangePolicy<Space, Kokkos::IndexType<std::int64_t>> whole_range(std::size_t n) {
  return {0, static_cast<std::int64_t>(n)};
}

/// Why Kokkos cannot be initialised in this process, or empty when it can: a Kokkos built
/// with CUDA fails inside `Kokkos::initialize` (an exception or an abort, by version) when
/// the process sees no CUDA device.
inline std::string why_kokkos_cannot_start() {
#if defined(KOKKOS_ENABLE_CUDA)
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // not sticky: leave no error for the program's next check
    return std::string("this Kokkos is built with CUDA, and CUDA finds no device (") +
           cudaGetErrorName(e) + ")";
  }
  if (devices == 0) return "this Kokkos is built with CUDA, and CUDA finds no device";
#endif
  return {};
}

}  // namespace detail

/// Initialises Kokkos unless the program already has (then finalises it at exit); call it
/// before making Views for polymap::kokkos calls in a program that does not own Kokkos.
/// @throws backend_unavailable when the program has finalized Kokkos already (seen from
///   Kokkos 3.7 on; an older Kokkos cannot say whether a program that finalized it before
///   polymap's first call did, and is initialised again), or when Kokkos cannot start here
///   (built with CUDA, and no CUDA device)
inline void ensure_initialized() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (Kokkos::is_initialized()) return;
#if KOKKOS_VERSION >= 30700
    if (Kokkos::is_finalized()) return;
#endif
    if (const std::string why = detail::why_kokkos_cannot_start(); !why.empty()) {
      throw backend_unavailable("polymap: Kokkos cannot be initialised: " + why);
    }
    Kokkos::initialize();
    std::atexit([] {
      if (Kokkos::is_initialized()) Kokkos::finalize();
    });
  });
  if (!Kokkos::is_initialized()) {
    throw backend_unavailable("polymap: Kokkos has been finalized; it cannot start again");
  }
}

namespace detail {

/// The start of a polymap::kokkos `call` of `n` items on `Space`: its options checked, a
/// stop already requested thrown as a cancel, Kokkos initialised (unless the call runs
/// inline) and the report filled (one kernel, as Kokkos runs it).
template <class Space>
void start_kernel(const options& opts, std::string_view call, std::size_t n) {
  polymap::detail::check_kernel_options(opts, call);
  if (n != 0 && opts.stop.stop_requested()) throw cancelled_error(0, n);  // as polymap::map
  if (!runs_inline<Space>()) ensure_initialized();
  if (opts.report != nullptr) {
    *opts.report = {};
    opts.report->backend = backend_kind::kokkos;
    opts.report->workers = runs_inline<Space>() ? 1 : static_cast<std::size_t>(
                                                          Space().concurrency());
    opts.report->note = std::string(call) + ": one kernel on the Kokkos execution space " +
                        Space::name() +
                        (runs_inline<Space>() ? ", inline on the item's thread" : "");
    opts.report->decision.items = n;
    opts.report->decision.chosen = backend_kind::kokkos;
    opts.report->decision.requested = true;
    opts.report->decision.reason = std::string(call) + " runs on Kokkos";
  }
}

}  // namespace detail

/// Applies `fn` to every item of the host-resident contiguous range `xs` on `Space` and
/// returns the results in input order. The items go to the space through a View and its
/// host mirror (no copy when the space reads host memory).
/// @tparam Space a Kokkos execution space; the default one unless named
/// @param fn a KOKKOS_FUNCTION-callable function object of one item, which must not throw
///   (it may run on a device)
/// @param opts `stop` (looked at before the kernel starts) and `report`; any other option
///   that asks for what one kernel cannot do is refused (see check_kernel_options)
/// @throws option_error, cancelled_error for a stop before the start; backend_unavailable
///   when Kokkos was finalized, or inside a worker process of the processes backend for a
///   space that cannot read host memory
/// (The return type is spelled out: nvcc refuses an extended __host__ __device__ lambda,
/// which KOKKOS_LAMBDA is with Kokkos on CUDA, in a function with a deduced return type.)
template <class Space = Kokkos::DefaultExecutionSpace, std::ranges::contiguous_range Range,
          class Fn, class T = std::ranges::range_value_t<Range>,
          class R = std::remove_cvref_t<std::invoke_result_t<Fn&, const T&>>>
  requires std::ranges::sized_range<Range>
[[nodiscard]] std::vector<R> map(const Range& xs, Fn fn, const options& opts = {}) {
  static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_copyable_v<R>,
                "polymap::kokkos::map: items and results must be trivially copyable");
  const std::size_t n = std::ranges::size(xs);
  detail::start_kernel<Space>(opts, "polymap::kokkos::map", n);
  std::vector<R> out(n);
  if (detail::runs_inline<Space>()) {
    const T* in = std::ranges::data(xs);
    for (std::size_t i = 0; i < n; ++i) out[i] = fn(in[i]);
    return out;
  }
  if (n == 0) return out;
  using memory = typename Space::memory_space;
  using unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;
  Kokkos::View<const T*, Kokkos::HostSpace, unmanaged> host_in(std::ranges::data(xs), n);
  Kokkos::View<R*, Kokkos::HostSpace, unmanaged> host_out(out.data(), n);
  if constexpr (detail::reads_host_v<Space>) {
    // The caller's memory itself: nothing to copy.
    Kokkos::parallel_for(
        "polymap::kokkos::map", detail::whole_range<Space>(n),
        KOKKOS_LAMBDA(const std::int64_t i) { host_out(i) = fn(host_in(i)); });
    Space().fence();
  } else {
    // Device Views made without initialisation (no zero-fill kernel) and filled by copies
    // on this space: create_mirror_view_and_copy, or a deep_copy without a space, would
    // fence every space of the program.
    Kokkos::View<T*, memory> dev_in(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, "polymap::kokkos::map in"), n);
    Kokkos::View<R*, memory> dev_out(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, "polymap::kokkos::map out"), n);
    Kokkos::deep_copy(Space(), dev_in, host_in);
    Kokkos::parallel_for(
        "polymap::kokkos::map", detail::whole_range<Space>(n),
        KOKKOS_LAMBDA(const std::int64_t i) { dev_out(i) = fn(dev_in(i)); });
    Kokkos::deep_copy(Space(), host_out, dev_out);
    Space().fence();
  }
  return out;
}

/// Calls `fn(i)` for every i in [0, n) on `Space`; `fn` must only touch memory `Space`
/// reads.
/// `opts` as for map().
/// @throws option_error for a negative n or an option that does not apply, cancelled_error
///   for a stop before the start, backend_unavailable when Kokkos was finalized or (for a
///   space that cannot read host memory) inside a worker process
template <class Space = Kokkos::DefaultExecutionSpace, std::integral Index, class Fn>
void for_each(Index n, Fn fn, const options& opts = {}) {
  if (std::cmp_less(n, 0)) throw option_error("n", std::to_string(n), "a count of zero or more");
  detail::start_kernel<Space>(opts, "polymap::kokkos::for_each", static_cast<std::size_t>(n));
  if (detail::runs_inline<Space>()) {
    for (std::size_t i = 0; i < static_cast<std::size_t>(n); ++i) fn(i);
    return;
  }
  Kokkos::parallel_for("polymap::kokkos::for_each",
                       detail::whole_range<Space>(static_cast<std::size_t>(n)),
                       KOKKOS_LAMBDA(const std::int64_t i) { fn(static_cast<std::size_t>(i)); });
  Space().fence();
}

}  // namespace polymap::kokkos
