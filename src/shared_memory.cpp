// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include <sys/mman.h>

#include <polymap/shared_memory.hpp>

namespace polymap::detail {

void* allocate_shared_pages(std::size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

void free_shared_pages(void* p, std::size_t bytes) noexcept {
  if (p != nullptr) munmap(p, bytes == 0 ? 1 : bytes);
}

}  // namespace polymap::detail
