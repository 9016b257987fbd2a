// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/processes/shared_region.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "backends/processes/store_io.hpp"

namespace polymap::detail {

namespace {

constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

/// Bytes of each worker's ring: enough to write to the store rarely, few enough
/// that touching them costs little.
constexpr std::size_t ring_bytes = std::size_t{64} << 10;
/// A worker's copy of the messages it has not sent yet: a chunk's encoded results (1 ms of
/// work) fit, and more is sent at once.
constexpr std::size_t messages_bytes = std::size_t{256} << 10;

std::system_error store_error(const char* what, std::size_t bytes) {
  return std::system_error(errno, std::generic_category(),
                           std::string("polymap: processes backend: ") + what + " " +
                               std::to_string(bytes) + " bytes of shared memory");
}

/// Whether process_vm_writev may write into this process's memory: Yama's ptrace_scope and
/// a seccomp filter can refuse it.
bool ptrace_allows_writes() noexcept {
  int scope = 0;
  if (std::FILE* f = std::fopen("/proc/sys/kernel/yama/ptrace_scope", "re")) {
    if (std::fscanf(f, "%d", &scope) != 1) scope = 1;
    std::fclose(f);
  }
  if (scope != 0) return false;
  std::uint64_t from = 1;
  std::uint64_t to = 0;
  iovec local{.iov_base = &from, .iov_len = sizeof from};
  iovec remote{.iov_base = &to, .iov_len = sizeof to};
  return process_vm_writev(getpid(), &local, 1, &remote, 1, 0) ==
             static_cast<ssize_t>(sizeof to) &&
         to == 1;
}

/// ptrace_allows_writes(), asked once: 0 not yet, 1 yes, 2 no. An atomic, not a
/// function-local static: the guard of one would be held while the question is asked, and a
/// child that another thread of the program forked meanwhile would find it held for ever.
/// Two threads may both ask; they get the same answer.
std::atomic<int> writes_allowed{0};

}  // namespace

bool direct_writes_allowed() noexcept {
  int known = writes_allowed.load(std::memory_order_relaxed);
  if (known == 0) {
    known = ptrace_allows_writes() ? 1 : 2;
    writes_allowed.store(known, std::memory_order_relaxed);
  }
  return known == 1 && prctl(PR_GET_DUMPABLE) == 1;
}

int anonymous_file() noexcept {
  const int fd = memfd_create("polymap", MFD_CLOEXEC);
  if (fd >= 0) return fd;
  return open("/dev/shm", O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
}

shared_region::shared_region(std::size_t items, std::size_t workers, std::size_t fixed_size)
    : workers_(workers), fixed_size_(fixed_size) {
  ring_capacity_ = std::clamp<std::size_t>(ring_bytes / (fixed_size + 1), 16, 8192);
  ring_capacity_ = std::min(ring_capacity_, std::max<std::size_t>(items, 1));
  const std::size_t ring = remote_target::ring_bytes(ring_capacity_, fixed_size);
  const std::size_t slots_at = round_up(sizeof(shared_control), 64);
  const std::size_t places_at = slots_at + workers * sizeof(remote_slot);
  const std::size_t rings_at = round_up(places_at + workers * sizeof(placement), 64);
  // Results sent as messages (fixed_size 0) are kept in shared memory as they are made
  // too, until they are sent: pages that only a worker with such results touches.
  messages_capacity_ = fixed_size == 0 ? messages_bytes : 0;
  const std::size_t messages_at = round_up(rings_at + workers * ring, 64);
  head_bytes_ = messages_at + workers * messages_capacity_;
  flags_at_ = 0;
  results_at_ = round_up(items, static_cast<std::size_t>(sysconf(_SC_PAGESIZE)));
  const std::size_t store_bytes = results_at_ + items * fixed_size;

  // Whatever fails closes what was made (the destructor does not run).
  auto fail = [this](const char* what, std::size_t bytes) {
    const auto error = store_error(what, bytes);
    for (const int fd : stores_) close(fd);
    if (fd_ >= 0) close(fd_);
    return error;
  };
  fd_ = anonymous_file();
  if (fd_ < 0) throw fail("cannot create", head_bytes_);
  if (ftruncate(fd_, static_cast<off_t>(head_bytes_)) != 0) throw fail("cannot size", head_bytes_);
  stores_.reserve(workers);
  for (std::size_t w = 0; w < workers; ++w) {
    const int fd = anonymous_file();
    if (fd < 0) throw fail("cannot create", store_bytes);
    stores_.push_back(fd);
    if (ftruncate(fd, static_cast<off_t>(store_bytes)) != 0) throw fail("cannot size", store_bytes);
  }
  // Fresh pages read as zero, which is every field's initial value; the
  // constructors below make that official.
  head_ = mmap(nullptr, head_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (head_ == MAP_FAILED) {
    head_ = nullptr;
    throw fail("cannot map", head_bytes_);
  }
  auto* bytes = static_cast<std::byte*>(head_);
  control_ = new (bytes) shared_control;
  control_->end = items;
  slots_ = reinterpret_cast<remote_slot*>(bytes + slots_at);
  places_ = reinterpret_cast<placement*>(bytes + places_at);
  for (std::size_t w = 0; w < workers; ++w) {
    new (slots_ + w) remote_slot;
    new (places_ + w) placement;
  }
  rings_ = bytes + rings_at;
  messages_ = bytes + messages_at;
}

shared_region::~shared_region() {
  if (head_ != nullptr) munmap(head_, head_bytes_);
  for (const int fd : stores_) close(fd);
  if (fd_ >= 0) close(fd_);
}

remote_target shared_region::target(std::size_t worker) const noexcept {
  return {.fd = stores_[worker],
          .flags_at = flags_at_,
          .results_at = results_at_,
          .fixed_size = fixed_size_,
          .ring = rings_ + worker * remote_target::ring_bytes(ring_capacity_, fixed_size_),
          .ring_capacity = ring_capacity_,
          .items = control_->end,
          .caller = caller_,
          .direct = direct_,
          .messages = messages_capacity_ != 0 ? messages_ + worker * messages_capacity_ : nullptr,
          .messages_capacity = messages_capacity_};
}

std::string_view shared_region::kept_messages(std::size_t worker,
                                              std::uint64_t received) const noexcept {
  const remote_slot& s = slots_[worker];
  const std::uint64_t sent = s.sent.load(std::memory_order_acquire);
  const std::size_t kept = std::min(s.kept.load(std::memory_order_acquire), messages_capacity_);
  // What the pipe brought already (all of it once the worker is gone) is not read twice.
  if (messages_capacity_ == 0 || received < sent || received - sent >= kept) return {};
  const auto from = static_cast<std::size_t>(received - sent);
  return {reinterpret_cast<const char*>(messages_ + worker * messages_capacity_) + from,
          kept - from};
}

void shared_region::recover(std::size_t worker) const {
  remote_slot& s = slots_[worker];
  const std::size_t staged = std::min(s.staged.load(std::memory_order_acquire), ring_capacity_);
  const std::size_t b = s.seg_begin.load(std::memory_order_relaxed);
  // Past the end: not written by a sound worker, ignored.
  if (staged != 0 && b < control_->end && staged <= control_->end - b) {
    const remote_target t = target(worker);
    std::uint8_t* flags = t.ring_flags();
    bool written = true;
    if (direct_ != nullptr && fixed_size_ != 0) {
      // This process keeps the results: they go there, and every done flag says so.
      std::memcpy(direct_ + b * fixed_size_, t.ring_results(), staged * fixed_size_);
      std::replace(flags, flags + staged, done_in_store_flag, done_flag);
    } else if (fixed_size_ != 0) {
      written =
          write_at(t.fd, t.ring_results(), staged * fixed_size_, results_at_ + b * fixed_size_);
    }
    written = written && write_at(t.fd, flags, staged, flags_at_ + b);
    if (!written) throw store_error("cannot write results to", staged * (fixed_size_ + 1));
    // Its items are done now: count them as the worker would have.
    s.done.fetch_add(static_cast<std::size_t>(staged - std::count(flags, flags + staged, 0)),
                     std::memory_order_relaxed);
  }
  s.staged.store(0, std::memory_order_relaxed);
}

void shared_region::mark_done(std::size_t worker, std::size_t b, std::size_t e) const {
  static constexpr auto ones = [] {
    std::array<std::uint8_t, 4096> a{};
    a.fill(done_flag);
    return a;
  }();
  for (std::size_t at = b; at < e; at += ones.size()) {
    const std::size_t n = std::min(ones.size(), e - at);
    if (!write_at(stores_[worker], ones.data(), n, flags_at_ + at)) {
      throw store_error("cannot write", n);
    }
  }
}

void shared_region::read_flags(std::size_t worker, std::size_t b, std::size_t e,
                               std::uint8_t* out) const {
  if (!read_at(stores_[worker], out, e - b, flags_at_ + b)) throw store_error("cannot read", e - b);
}

void shared_region::for_each_done_run(
    std::size_t begin, std::size_t end,
    const std::function<void(std::size_t, std::size_t, std::size_t, bool)>& on_run) const {
  constexpr std::size_t block = std::size_t{64} << 10;
  std::vector<std::uint8_t> flags(std::min(block, end - begin));
  for (std::size_t w = 0; w < workers_; ++w) {
    const int fd = stores_[w];
    for (std::size_t at = begin; at < end;) {
      // The next part of the flags that was written: a store holds only its
      // slot's items, and reads as zero (a hole) elsewhere.
      std::size_t data_end = end;
      const off_t data = lseek(fd, static_cast<off_t>(flags_at_ + at), SEEK_DATA);
      if (data >= 0) {
        at = std::max(at, static_cast<std::size_t>(data) - flags_at_);
        const off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole >= 0) data_end = std::min(end, static_cast<std::size_t>(hole) - flags_at_);
      } else if (errno == ENXIO) {
        break;  // nothing written from here on
      }         // else: no SEEK_DATA here; read it all
      std::size_t run_begin = data_end;  // the run being gathered, or data_end for none
      std::uint8_t run_flag = 0;         // its flag
      for (; at < data_end; at += std::min(block, data_end - at)) {
        const std::size_t n = std::min(data_end - at, block);
        read_flags(w, at, at + n, flags.data());
        const std::uint8_t* f = flags.data();
        for (std::size_t k = 0; k < n;) {
          if (run_begin == data_end) {  // look for the next done item
            k = static_cast<std::size_t>(
                std::find_if(f + k, f + n, [](std::uint8_t x) { return x != 0; }) - f);
            if (k < n) {
              run_begin = at + k;
              run_flag = f[k];
            }
          } else {  // look for the end of this run
            k = static_cast<std::size_t>(
                std::find_if(f + k, f + n, [run_flag](std::uint8_t x) { return x != run_flag; }) -
                f);
            if (k < n) {
              on_run(w, run_begin, at + k, run_flag == done_in_store_flag);
              run_begin = data_end;
            }
          }
        }
      }
      if (run_begin != data_end) on_run(w, run_begin, data_end, run_flag == done_in_store_flag);
      at = data_end;
    }
  }
}

void shared_region::read_results(std::size_t worker, std::size_t b, std::size_t e,
                                 std::byte* first) const {
  const std::size_t bytes = (e - b) * fixed_size_;
  if (!read_at(stores_[worker], first, bytes, results_at_ + b * fixed_size_)) {
    throw store_error("cannot read", bytes);
  }
}

}  // namespace polymap::detail
