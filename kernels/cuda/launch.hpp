// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The built-in kernels (kernels/cpu/kernels.hpp, the same POLYMAP_HD code) precompiled for
/// the GPU, callable from plain C++. Each entry point takes host or device pointers: device
/// (or managed) memory is used in place; host memory is copied to the GPU and the outputs
/// back, which is what the timing of `polymap bench` includes. A kernel runs on the GPU
/// whose memory holds its device pointers, else on `device`.
/// Every function throws backend_unavailable when polymap was built without CUDA or there is
/// no device, option_error for pointers into two GPUs' memory, and cuda_error when a CUDA
/// call fails.

#include "cpu/kernels.hpp"

#include <cstddef>
#include <cstdint>

namespace polymap::kernels::gpu {

/// `y[i] = a * x[i] + y[i]` for i in [0, n).
void saxpy(std::size_t n, float a, const float* x, float* y, int device = 0);
/// One Jacobi sweep of an `n` x `n` grid (jacobi_cell on every cell).
void jacobi(std::size_t n, const double* in, double* out, int device = 0);
/// A `width` x `height` image of escape counts (mandelbrot_row's pixels).
void mandelbrot(std::size_t width, std::size_t height, std::uint16_t* out, int device = 0);
/// Prices of the `n` options bs_sample_option(seed, i).
void black_scholes(std::uint64_t seed, std::size_t n, bs_price* out, int device = 0);
/// Hits of `blocks` blocks of `samples_per_block` samples (the sum of pi_block_hits).
[[nodiscard]] std::uint64_t pi_hits(std::uint64_t seed, std::size_t blocks,
                                    std::size_t samples_per_block, int device = 0);
/// `hits[b] = pi_block_hits(seed, b, samples_per_block)` for every block b.
void pi_blocks(std::uint64_t seed, std::size_t blocks, std::size_t samples_per_block,
               std::uint64_t* hits, int device = 0);
/// One n-body step of `n` bodies from `in` to `out`.
void nbody(std::size_t n, const body* in, body* out, double dt, double softening,
           int device = 0);

}  // namespace polymap::kernels::gpu
