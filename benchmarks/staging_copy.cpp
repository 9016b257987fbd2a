// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0

// The host's share of one staging step of a host-resident GPU map: 8 MiB of results out of
// one buffer and the next 8 MiB of items into another (pinned memory on a GPU machine; the
// copy's speed does not depend on it). A host-resident stream moves no faster than this.
// BM_StagingCopy/<peer>/16777216 (bytes copied per step): serial is one thread's memcpy, the
// peers spread the same two copies in 256 KiB pieces with oneTBB and OpenMP, polymap with
// detail::parallel_copy on its thread pool.

#include "common.hpp"

#include <polymap/detail/parallel_copy.hpp>

#include <benchmark/benchmark.h>
#include <omp.h>
#include <tbb/parallel_for.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr std::size_t half = std::size_t{8} << 20;
constexpr std::size_t piece = std::size_t{256} << 10;
constexpr std::size_t pieces = 2 * half / piece;

struct step_buffers {
  std::vector<char> items = std::vector<char>(half, 1), staged_items = std::vector<char>(half);
  std::vector<char> staged_results = std::vector<char>(half, 2), results = std::vector<char>(half);
  [[nodiscard]] std::array<polymap::detail::byte_copy, 2> copies() {
    return {polymap::detail::byte_copy{results.data(), staged_results.data(), half},
            polymap::detail::byte_copy{staged_items.data(), items.data(), half}};
  }
};

step_buffers& buffers() {
  static step_buffers b;
  return b;
}

/// Piece p of the step: the first half of the pieces is the results, the rest the items.
void copy_piece(const std::array<polymap::detail::byte_copy, 2>& step, std::size_t p) {
  const polymap::detail::byte_copy& c = step[p * piece / half];
  const std::size_t offset = p * piece % half;
  std::memcpy(static_cast<char*>(c.to) + offset, static_cast<const char*>(c.from) + offset, piece);
}

void copy_serial() {
  for (const polymap::detail::byte_copy& c : buffers().copies()) std::memcpy(c.to, c.from, c.bytes);
}

void copy_tbb() {
  const auto step = buffers().copies();
  tbb::parallel_for(std::size_t{0}, pieces, [&](std::size_t p) { copy_piece(step, p); });
}

void copy_openmp() {
  const auto step = buffers().copies();
  const auto m = static_cast<std::ptrdiff_t>(pieces);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t p = 0; p < m; ++p) copy_piece(step, static_cast<std::size_t>(p));
}

void copy_polymap() {
  const auto step = buffers().copies();
  polymap::detail::parallel_copy(step);
}

void run(benchmark::State& state, void (*call)()) {
  for (auto _ : state) call();
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                          static_cast<std::int64_t>(2 * half));
}

void register_all() {
  (void)buffers();  // pages touched before any timing
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  polymap_bench::register_peers<decltype(&run), void (*)()>(
      "BM_StagingCopy", &run,
      {
          {"serial", copy_serial},
          {"tbb", copy_tbb},
          {"openmp_static", copy_openmp},
          {"polymap_parallel_copy", copy_polymap},
      },
      {static_cast<std::int64_t>(2 * half)});
}

}  // namespace

POLYMAP_BENCHMARK_MAIN(register_all)
