// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

/// @file
/// The built-in kernels that `polymap bench` and the benchmarks run on every backend.
///
/// Each kernel is written once, as a function of one index (an element, a row, an option,
/// a block of samples), so that every backend runs the very same code: the CPU backends
/// call it from `polymap::for_each`, and a GPU build can call it from device code, which is
/// why each one is marked `POLYMAP_HD`, takes raw pointers and touches no global state.
///
/// Bitwise reproducibility: an index's result depends on nothing but its inputs, so any
/// backend, worker count or chunking gives the same bits as the serial loop on the same
/// compiled code. A device compiler that contracts `a * b + c` into a fused multiply-add
/// (nvcc does by default) changes the rounding of the floating-point kernels, and with it
/// Mandelbrot's escape counts near the set's boundary: compile device code with
/// `--fmad=false` where results must match the CPU bit for bit. The Monte-Carlo kernel uses
/// integer arithmetic only and matches everywhere.

#include <polymap/map.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace polymap::kernels {

/// One element of single-precision a*x plus y: `y[i] = a * x[i] + y[i]`.
/// @param i the element
/// @param a the scale
/// @param x the input vector
/// @param y the vector updated in place
POLYMAP_HD inline void saxpy(std::size_t i, float a, const float* x, float* y) noexcept {
  y[i] = a * x[i] + y[i];
}

/// One cell of a Jacobi sweep of the 5-point Laplace stencil over an `n` x `n` grid stored
/// row by row: an interior cell becomes the mean of its four neighbours, a boundary cell keeps
/// its value (a fixed, Dirichlet boundary).
/// @param row the cell's row, in [0, n)
/// @param col the cell's column, in [0, n)
/// @param n the grid's side
/// @param in the grid before the sweep (read only, so cells can be computed in any order)
/// @param out the grid after the sweep; must not overlap `in`
POLYMAP_HD inline void jacobi_cell(std::size_t row, std::size_t col, std::size_t n,
                                   const double* in, double* out) noexcept {
  const std::size_t i = row * n + col;
  if (row == 0 || col == 0 || row + 1 == n || col + 1 == n) {
    out[i] = in[i];
    return;
  }
  out[i] = 0.25 * (in[i - n] + in[i + n] + in[i - 1] + in[i + 1]);
}

/// One row of a Jacobi sweep (see `jacobi_cell`): rows are the natural CPU work item, long
/// enough to stream through the cache and to vectorise.
POLYMAP_HD inline void jacobi_row(std::size_t row, std::size_t n, const double* in,
                                  double* out) noexcept {
  for (std::size_t col = 0; col < n; ++col) jacobi_cell(row, col, n, in, out);
}

/// Iterations after which a point counts as inside the set.
inline constexpr std::uint16_t mandelbrot_max_iterations = 256;

/// Escape iteration count of c = cx + i*cy: the first k at which |z_k| > 2 under
/// z_0 = 0, z_{k+1} = z_k^2 + c, or `mandelbrot_max_iterations` when it never escapes.
POLYMAP_HD inline std::uint16_t mandelbrot_escape(double cx, double cy) noexcept {
  double x = 0;
  double y = 0;
  std::uint16_t k = 0;
  while (k < mandelbrot_max_iterations && x * x + y * y <= 4.0) {
    const double next_x = x * x - y * y + cx;
    y = 2.0 * x * y + cy;
    x = next_x;
    ++k;
  }
  return k;
}

/// One row of a `width` x `height` image of escape counts over [-2, 1] x [-1.5, 1.5]
/// (pixel centres; row 0 at the top). Rows cost very different amounts: the ones crossing
/// the set run every iteration, the ones near the edge stop at once, which is what makes
/// this kernel a test of load balancing.
/// @param out the image, `width * height` counts, row by row
POLYMAP_HD inline void mandelbrot_row(std::size_t row, std::size_t width, std::size_t height,
                                      std::uint16_t* out) noexcept {
  const double cy = 1.5 - 3.0 * (static_cast<double>(row) + 0.5) / static_cast<double>(height);
  for (std::size_t col = 0; col < width; ++col) {
    const double cx = -2.0 + 3.0 * (static_cast<double>(col) + 0.5) / static_cast<double>(width);
    out[row * width + col] = mandelbrot_escape(cx, cy);
  }
}

/// The SplitMix64 finaliser: a bijection of 64-bit words that mixes every input bit into
/// every output bit.
POLYMAP_HD inline std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

/// The `counter`-th output of a SplitMix64 stream seeded with `seed`, computed directly.
/// Being a function of (seed, counter) alone, it gives every backend the same numbers in
/// whatever order its workers draw them, with no generator state to share or split.
POLYMAP_HD inline std::uint64_t random_bits(std::uint64_t seed, std::uint64_t counter) noexcept {
  return splitmix64(seed + (counter + 1) * 0x9E3779B97F4A7C15ULL);
}

/// A double in [0, 1) from the top 53 bits of `bits`.
POLYMAP_HD inline double unit_interval(std::uint64_t bits) noexcept {
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

/// A European option on a non-dividend-paying stock.
struct bs_option {
  double spot = 0;        ///< price of the stock now
  double strike = 0;      ///< price at which the option may be exercised
  double years = 0;       ///< time to expiry, in years (> 0)
  double rate = 0;        ///< risk-free interest rate, continuously compounded
  double volatility = 0;  ///< of the stock's returns, per sqrt(year) (> 0)
};

/// The prices of a call and a put with the same terms.
struct bs_price {
  double call = 0;
  double put = 0;
};

/// The standard normal cumulative distribution function, through erfc, which stays accurate
/// in the tails where 1 - erf(x) would cancel.
POLYMAP_HD inline double normal_cdf(double x) noexcept {
  constexpr double inv_sqrt2 = 0.70710678118654752440;
  return 0.5 * std::erfc(-x * inv_sqrt2);
}

/// Black-Scholes prices of the call and the put on `o`.
POLYMAP_HD inline bs_price black_scholes(const bs_option& o) noexcept {
  const double vol_sqrt_t = o.volatility * std::sqrt(o.years);
  const double d1 =
      (std::log(o.spot / o.strike) + (o.rate + 0.5 * o.volatility * o.volatility) * o.years) /
      vol_sqrt_t;
  const double d2 = d1 - vol_sqrt_t;
  const double discounted_strike = o.strike * std::exp(-o.rate * o.years);
  return bs_price{.call = o.spot * normal_cdf(d1) - discounted_strike * normal_cdf(d2),
                  .put = discounted_strike * normal_cdf(-d2) - o.spot * normal_cdf(-d1)};
}

/// Option `i` of a reproducible portfolio drawn from `seed`: spot and strike in [10, 100),
/// expiry in [0.25, 2) years, rate in [1 %, 5 %), volatility in [10 %, 50 %).
POLYMAP_HD inline bs_option bs_sample_option(std::uint64_t seed, std::size_t i) noexcept {
  const std::uint64_t first = 5 * static_cast<std::uint64_t>(i);
  return bs_option{.spot = 10.0 + 90.0 * unit_interval(random_bits(seed, first)),
                   .strike = 10.0 + 90.0 * unit_interval(random_bits(seed, first + 1)),
                   .years = 0.25 + 1.75 * unit_interval(random_bits(seed, first + 2)),
                   .rate = 0.01 + 0.04 * unit_interval(random_bits(seed, first + 3)),
                   .volatility = 0.1 + 0.4 * unit_interval(random_bits(seed, first + 4))};
}

/// Points of block `block` (samples [block * samples_per_block, (block + 1) *
/// samples_per_block) of the stream `seed`) that fall inside the quarter unit circle.
///
/// Each sample splits one random word into two 31-bit coordinates x and y and tests
/// x^2 + y^2 < 2^62 in integers (at most 2^63, no overflow): exact, so every backend and
/// every device counts the same hits.
POLYMAP_HD inline std::uint64_t pi_block_hits(std::uint64_t seed, std::size_t block,
                                              std::size_t samples_per_block) noexcept {
  constexpr std::uint64_t low31 = (std::uint64_t{1} << 31) - 1;
  constexpr std::uint64_t radius_squared = std::uint64_t{1} << 62;
  const std::uint64_t first = static_cast<std::uint64_t>(block) * samples_per_block;
  std::uint64_t hits = 0;
  for (std::uint64_t j = 0; j < samples_per_block; ++j) {
    const std::uint64_t bits = random_bits(seed, first + j);
    const std::uint64_t x = bits >> 33;
    const std::uint64_t y = bits & low31;
    hits += x * x + y * y < radius_squared ? 1 : 0;
  }
  return hits;
}

/// The estimate of pi from `hits` of `samples` points: 4 * hits / samples.
POLYMAP_HD inline double pi_estimate(std::uint64_t hits, std::uint64_t samples) noexcept {
  return samples == 0 ? 0.0 : 4.0 * static_cast<double>(hits) / static_cast<double>(samples);
}

/// A point mass of an n-body system.
struct body {
  double x = 0, y = 0, z = 0;     ///< position
  double vx = 0, vy = 0, vz = 0;  ///< velocity
  double mass = 0;
};

/// Body `i` after one step of `dt` of the gravitational n-body system `in` of `n` bodies
/// (G = 1), written to `out[i]`: the acceleration from every other body, softened by
/// `softening`^2 so that close encounters stay finite, then a semi-implicit Euler step
/// (velocity first, then position with the new velocity). Reads `in` only, so bodies can be
/// computed in any order; `out` must not overlap `in`. O(n) per body, O(n^2) per step: the
/// compute-bound kernel of the set.
POLYMAP_HD inline void nbody_step(std::size_t i, std::size_t n, const body* in, body* out,
                                  double dt, double softening) noexcept {
  const body& b = in[i];
  double ax = 0;
  double ay = 0;
  double az = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const double dx = in[j].x - b.x;
    const double dy = in[j].y - b.y;
    const double dz = in[j].z - b.z;
    const double r2 = dx * dx + dy * dy + dz * dz + softening * softening;
    const double inv_r = 1.0 / std::sqrt(r2);
    const double s = in[j].mass * inv_r * inv_r * inv_r;  // j == i adds 0: dx = dy = dz = 0
    ax += s * dx;
    ay += s * dy;
    az += s * dz;
  }
  body next = b;
  next.vx += dt * ax;
  next.vy += dt * ay;
  next.vz += dt * az;
  next.x += dt * next.vx;
  next.y += dt * next.vy;
  next.z += dt * next.vz;
  out[i] = next;
}

/// Body `i` of a reproducible system drawn from `seed`: positions in the unit cube, small
/// velocities, masses in [0.5, 1.5) / n.
POLYMAP_HD inline body nbody_sample(std::uint64_t seed, std::size_t i, std::size_t n) noexcept {
  const std::uint64_t first = 7 * static_cast<std::uint64_t>(i);
  auto u = [&](std::uint64_t k) { return unit_interval(random_bits(seed, first + k)); };
  return body{.x = u(0), .y = u(1), .z = u(2),
              .vx = 0.01 * (u(3) - 0.5), .vy = 0.01 * (u(4) - 0.5), .vz = 0.01 * (u(5) - 0.5),
              .mass = (0.5 + u(6)) / static_cast<double>(n == 0 ? 1 : n)};
}

}  // namespace polymap::kernels
