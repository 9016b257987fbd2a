// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <polymap/detail/parallel_copy.hpp>
#include <polymap/map.hpp>

#include <algorithm>
#include <cstring>
#include <vector>

namespace polymap::detail {
namespace {

/// Bytes of one piece: small enough that 16 threads share an 8 MiB chunk evenly, large
/// enough that a piece costs far more than handing it to a thread.
constexpr std::size_t piece_bytes = std::size_t{256} << 10;

void copy_all(std::span<const byte_copy> copies) noexcept {
  for (const byte_copy& c : copies) {
    if (c.bytes != 0) std::memcpy(c.to, c.from, c.bytes);
  }
}

}  // namespace

void parallel_copy(std::span<const byte_copy> copies) noexcept {
  std::size_t total = 0;
  for (const byte_copy& c : copies) total += c.bytes;
  if (total < parallel_copy_threshold) {
    copy_all(copies);
    return;
  }
  try {
    // first_piece[k]: the number of pieces of the copies before copy k.
    std::vector<std::size_t> first_piece(copies.size() + 1, 0);
    for (std::size_t k = 0; k < copies.size(); ++k) {
      first_piece[k + 1] = first_piece[k] + (copies[k].bytes + piece_bytes - 1) / piece_bytes;
    }
    polymap::for_each(
        first_piece.back(),
        [&](std::size_t p) {
          const auto k = static_cast<std::size_t>(
              std::upper_bound(first_piece.begin(), first_piece.end(), p) - first_piece.begin() - 1);
          const byte_copy& c = copies[k];
          const std::size_t offset = (p - first_piece[k]) * piece_bytes;
          std::memcpy(static_cast<char*>(c.to) + offset, static_cast<const char*>(c.from) + offset,
                      std::min(piece_bytes, c.bytes - offset));
        },
        {.backend = backend::threads});
  } catch (...) {
    // Nothing is lost by copying again: the sources are unchanged and apart from the targets.
    copy_all(copies);
  }
}

}  // namespace polymap::detail
