// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <polymap/shared_memory.hpp>

namespace polymap::test {

/// `n` atomic counters, all 0, in memory that worker processes share with the test: what
/// items count there is seen by the test on every backend, processes included.
template <class T = int>
class shared_counters {
 public:
  explicit shared_counters(std::size_t n) : n_(n), data_(alloc_.allocate(n)) {
    for (std::size_t i = 0; i < n; ++i) std::construct_at(data_ + i, T{0});
  }
  ~shared_counters() { alloc_.deallocate(data_, n_); }
  shared_counters(const shared_counters&) = delete;
  shared_counters& operator=(const shared_counters&) = delete;

  std::atomic<T>& operator[](std::size_t i) const noexcept { return data_[i]; }
  std::atomic<T>& operator*() const noexcept { return data_[0]; }
  std::atomic<T>* operator->() const noexcept { return data_; }

 private:
  std::size_t n_;
  shared_allocator<std::atomic<T>> alloc_;
  std::atomic<T>* data_;
};

}  // namespace polymap::test
