// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/processes/shared_region.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <new>
#include <system_error>

namespace polymap::detail {

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

}  // namespace

shared_region::shared_region(std::size_t items, std::size_t workers, std::size_t fixed_size) {
  const std::size_t slots_at = round_up(sizeof(shared_control), 64);
  const std::size_t places_at = slots_at + workers * sizeof(remote_slot);
  const std::size_t done_at = round_up(places_at + workers * sizeof(placement), 64);
  const std::size_t fixed_at = round_up(done_at + items, 64);
  bytes_ = fixed_at + items * fixed_size;
  // Fresh anonymous pages read as zero, which is every field's initial value;
  // the constructors below make that official.
  base_ = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) {
    base_ = nullptr;
    throw std::system_error(errno, std::generic_category(),
                            "polymap: processes backend: mmap of " + std::to_string(bytes_) +
                                " bytes of shared memory");
  }
  auto* bytes = static_cast<std::byte*>(base_);
  control_ = new (bytes) shared_control;
  control_->end = items;
  slots_ = reinterpret_cast<remote_slot*>(bytes + slots_at);
  places_ = reinterpret_cast<placement*>(bytes + places_at);
  for (std::size_t w = 0; w < workers; ++w) {
    new (slots_ + w) remote_slot;
    new (places_ + w) placement;
  }
  done_ = reinterpret_cast<std::uint8_t*>(bytes + done_at);
  fixed_ = fixed_size != 0 ? bytes + fixed_at : nullptr;
}

shared_region::~shared_region() {
  if (base_ != nullptr) munmap(base_, bytes_);
}

}  // namespace polymap::detail
