// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace polymap {

namespace detail {
/// Anonymous shared pages (MAP_SHARED): no name, gone with the last process
/// mapping them.
/// @throws std::bad_alloc when the mapping fails
[[nodiscard]] void* allocate_shared_pages(std::size_t bytes);
void free_shared_pages(void* p, std::size_t bytes) noexcept;
}  // namespace detail

/// An allocator whose memory the worker processes of the processes backend
/// share with the caller: what an item writes there through `for_each` is seen
/// by the caller, as with threads. Ordinary memory is copied into each worker
/// at fork, and writes to it stay in the worker. Each allocation takes whole
/// pages. Thread safety: stateless.
template <class T>
struct shared_allocator {
  using value_type = T;
  shared_allocator() noexcept = default;
  template <class U>
  shared_allocator(const shared_allocator<U>&) noexcept {}  // NOLINT: rebinding is implicit

  /// @throws std::bad_array_new_length when `n` objects do not fit in memory's size,
  ///   std::bad_alloc when the mapping fails
  [[nodiscard]] T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(detail::allocate_shared_pages(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { detail::free_shared_pages(p, n * sizeof(T)); }
  friend bool operator==(const shared_allocator&, const shared_allocator&) noexcept { return true; }
};

/// A vector in memory shared with worker processes (see shared_allocator).
template <class T>
using shared_vector = std::vector<T, shared_allocator<T>>;

}  // namespace polymap
