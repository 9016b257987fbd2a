// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// Whether a function may run on a GPU. The automatic choice sends a call to a GPU only
/// when it can prove this at compile time; everything else stays on the CPU.

#include <type_traits>

namespace polymap {

/// True for a functor that declares itself device-callable, i.e. whose call operator is
/// `POLYMAP_HD` (`__host__ __device__` under nvcc):
/// @code
/// struct scale {
///   using polymap_device_callable = void;
///   float a;
///   POLYMAP_HD float operator()(float x) const { return a * x; }
/// };
/// @endcode
/// Specialise `is_device_callable` for a type that cannot carry the member.
template <class Fn, class = void>
struct is_device_callable : std::false_type {};

template <class Fn>
struct is_device_callable<Fn, std::void_t<typename Fn::polymap_device_callable>>
    : std::true_type {};

/// True when `Fn` is proven to run on a GPU: a functor marked as above, or (in a
/// translation unit compiled by nvcc with --extended-lambda) an extended
/// `[] __host__ __device__` lambda, which nvcc's own trait recognises. A plain lambda, a
/// function pointer or `std::function` is never device-callable.
template <class Fn>
inline constexpr bool is_device_callable_v =
#if defined(__CUDACC__) && defined(__CUDACC_EXTENDED_LAMBDA__)
    __nv_is_extended_host_device_lambda_closure_type(std::remove_cvref_t<Fn>) ||
#endif
    is_device_callable<std::remove_cvref_t<Fn>>::value;

/// True for an extended `[] __device__` lambda (nvcc --extended-lambda), which runs on a
/// GPU alone: what `polymap::cuda::for_each`, which never runs its function on the host,
/// takes beside the device-callable functions above.
template <class Fn>
inline constexpr bool is_device_lambda_v =
#if defined(__CUDACC__) && defined(__CUDACC_EXTENDED_LAMBDA__)
    __nv_is_extended_device_lambda_closure_type(std::remove_cvref_t<Fn>);
#else
    false;
#endif

}  // namespace polymap
