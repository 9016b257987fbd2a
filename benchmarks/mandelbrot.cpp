// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// Mandelbrot rows: a 2048 x 2048 image of [-2, 1] x [-1.5, 1.5], at most 256 iterations
// per pixel. One item is one row (count the escape iterations of its pixels and write them
// into its output row); rows near the set cost far more than rows at the edges, so the
// work per item is uneven. BM_Mandelbrot/<peer>/2048, items = rows.

#include "common.hpp"

#include <polymap/map.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr std::size_t width = 2048;
constexpr std::size_t height = 2048;
constexpr int max_iterations = 256;

using pixel = std::uint16_t;  // 0..256 escape iterations

void render_row(std::size_t row, pixel* out) noexcept {
  const double ci = -1.5 + 3.0 * static_cast<double>(row) / static_cast<double>(height);
  for (std::size_t col = 0; col < width; ++col) {
    const double cr = -2.0 + 3.0 * static_cast<double>(col) / static_cast<double>(width);
    double zr = 0;
    double zi = 0;
    int k = 0;
    while (k < max_iterations && zr * zr + zi * zi <= 4.0) {
      const double t = zr * zr - zi * zi + cr;
      zi = 2.0 * zr * zi + ci;
      zr = t;
      ++k;
    }
    out[col] = static_cast<pixel>(k);
  }
}

void mandelbrot_serial(pixel* img) {
  for (std::size_t r = 0; r < height; ++r) render_row(r, img + r * width);
}

void mandelbrot_openmp_static(pixel* img) {
  const auto rows = static_cast<std::ptrdiff_t>(height);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t r = 0; r < rows; ++r) {
    render_row(static_cast<std::size_t>(r), img + static_cast<std::size_t>(r) * width);
  }
}

void mandelbrot_openmp_dynamic(pixel* img) {
  const auto rows = static_cast<std::ptrdiff_t>(height);
#pragma omp parallel for schedule(dynamic)
  for (std::ptrdiff_t r = 0; r < rows; ++r) {
    render_row(static_cast<std::size_t>(r), img + static_cast<std::size_t>(r) * width);
  }
}

void mandelbrot_tbb(pixel* img) {
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, height),
                    [img](const tbb::blocked_range<std::size_t>& r) {
                      for (std::size_t row = r.begin(); row < r.end(); ++row) {
                        render_row(row, img + row * width);
                      }
                    });
}

void mandelbrot_polymap_threads(pixel* img) {
  polymap::for_each(
      height, [img](std::size_t row) { render_row(row, img + row * width); },
      polymap::options{.backend = polymap::backend::threads});
}

void mandelbrot_polymap_auto(pixel* img) {
  polymap::for_each(height, [img](std::size_t row) { render_row(row, img + row * width); });
}

using kernel = void (*)(pixel*);

// The serial image, computed once per process, against which every peer is checked.
const std::vector<pixel>& reference() {
  static const std::vector<pixel> image = [] {
    std::vector<pixel> v(width * height);
    mandelbrot_serial(v.data());
    return v;
  }();
  return image;
}

void run(benchmark::State& state, kernel k) {
  static std::vector<pixel> img(width * height);  // shared by every peer and repetition
  std::fill(img.begin(), img.end(), pixel{0});
  k(img.data());  // untimed: checks the image, warms the peer's threads
  if (img != reference()) {
    state.SkipWithError("image differs from the serial one");
    return;
  }
  for (auto _ : state) {
    k(img.data());
    benchmark::ClobberMemory();
  }
  const auto calls = static_cast<std::int64_t>(state.iterations());
  state.SetItemsProcessed(calls * static_cast<std::int64_t>(height));
  state.SetBytesProcessed(calls * static_cast<std::int64_t>(width * height * sizeof(pixel)));
}

void register_all() {
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  polymap_bench::register_peers<decltype(&run), kernel>(
      "BM_Mandelbrot", &run,
      {
          {"serial", mandelbrot_serial},
          {"openmp_static", mandelbrot_openmp_static},
          {"openmp_dynamic", mandelbrot_openmp_dynamic},
          {"tbb", mandelbrot_tbb},
          {"polymap_threads", mandelbrot_polymap_threads},
          {"polymap_auto", mandelbrot_polymap_auto},
      },
      {static_cast<std::int64_t>(height)});
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
