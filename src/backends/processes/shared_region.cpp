// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/processes/shared_region.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <new>
#include <system_error>

namespace polymap::detail {

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::size_t page_size() noexcept {
  static const auto size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

/// The whole pages of [p, p + bytes), widened to page boundaries.
void populate_for_writing(std::byte* p, std::size_t bytes) noexcept {
  // Kernels before 5.14 do not know the advice: then each page faults in on its
  // first write, as it would anyway.
  static std::atomic<bool> unsupported{false};
  if (bytes == 0 || unsupported.load(std::memory_order_relaxed)) return;
  const std::size_t page = page_size();
  const auto first = reinterpret_cast<std::uintptr_t>(p) / page * page;
  const auto last = round_up(reinterpret_cast<std::uintptr_t>(p) + bytes, page);
  if (last - first <= page) return;  // one fault costs no more than the call
  if (madvise(reinterpret_cast<void*>(first), last - first, MADV_POPULATE_WRITE) != 0 &&
      errno == EINVAL) {
    unsupported.store(true, std::memory_order_relaxed);
  }
}

}  // namespace

shared_region::shared_region(std::size_t items, std::size_t workers, std::size_t fixed_size)
    : fixed_size_(fixed_size) {
  const std::size_t slots_at = round_up(sizeof(shared_control), 64);
  const std::size_t places_at = slots_at + workers * sizeof(remote_slot);
  const std::size_t done_at = round_up(places_at + workers * sizeof(placement), 64);
  // Results start on a page of their own, so that pages populated for one
  // chunk's results hold nothing else.
  fixed_at_ = round_up(done_at + items, page_size());
  bytes_ = fixed_at_ + items * fixed_size;
  // A memfd lets the caller read results with pread(), without mapping each
  // page into its own page tables; without one, the caller reads the mapping.
  fd_ = memfd_create("polymap", MFD_CLOEXEC);
  if (fd_ >= 0 && ftruncate(fd_, static_cast<off_t>(bytes_)) != 0) {
    const int error = errno;
    close(fd_);
    throw std::system_error(error, std::generic_category(),
                            "polymap: processes backend: sizing " + std::to_string(bytes_) +
                                " bytes of shared memory");
  }
  // Fresh shared pages read as zero, which is every field's initial value; the
  // constructors below make that official.
  base_ = fd_ >= 0
              ? mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0)
              : mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (base_ == MAP_FAILED) {
    const int error = errno;
    base_ = nullptr;
    if (fd_ >= 0) close(fd_);
    throw std::system_error(error, std::generic_category(),
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
  fixed_ = fixed_size != 0 ? bytes + fixed_at_ : nullptr;
}

shared_region::~shared_region() {
  if (base_ != nullptr) munmap(base_, bytes_);
  if (fd_ >= 0) close(fd_);
}

void shared_region::prepare(std::size_t b, std::size_t e) const noexcept {
  if (b >= e) return;
  // One call maps a chunk's pages in; first writes would fault on each page.
  populate_for_writing(reinterpret_cast<std::byte*>(done_ + b), e - b);
  if (fixed_ != nullptr) populate_for_writing(fixed_ + b * fixed_size_, (e - b) * fixed_size_);
}

void shared_region::copy_results(std::size_t b, std::size_t e, std::byte* to) const noexcept {
  std::size_t off = b * fixed_size_;
  const std::size_t end = e * fixed_size_;
  while (fd_ >= 0 && off < end) {
    const ssize_t n = pread(fd_, to + off, end - off, static_cast<off_t>(fixed_at_ + off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // cannot happen on a memfd of this size; copy the rest below
    off += static_cast<std::size_t>(n);
  }
  if (off < end) std::memcpy(to + off, fixed_ + off, end - off);
}

}  // namespace polymap::detail
