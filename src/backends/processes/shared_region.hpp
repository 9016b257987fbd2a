// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>
#include <polymap/detail/remote.hpp>

namespace polymap::detail {

/// What a worker process tells its caller about how it was placed.
struct placement {
  std::atomic<int> bound{0};         ///< 1: bound as asked
  std::atomic<int> nice_applied{0};  ///< 1: the nice value asked for is in effect
  std::atomic<int> nice{0};          ///< the nice value read back
};

/// A file in memory with no name: a memfd, or where memfds are refused, an
/// unlinked file on /dev/shm. @return its descriptor (close-on-exec), or -1 with errno
[[nodiscard]] int anonymous_file() noexcept;

/// Whether worker processes may write results into this process's memory
/// (process_vm_writev), as ptrace's access rules decide: a seccomp filter may refuse
/// the call, a non-dumpable process refuses it, and Yama's ptrace_scope 1 or more
/// refuses a child's access to its parent. A worker refused anyway falls back to its
/// store (see remote_target).
[[nodiscard]] bool direct_writes_allowed() noexcept;

/// The head of the memory a call shares with its worker processes.
struct shared_control {
  alignas(64) std::atomic<std::size_t> next{0};  ///< first item nobody has claimed
  std::size_t end = 0;                           ///< one past the last item
  alignas(64) std::atomic<bool> stop{false};     ///< claim nothing more
};

/// What a call shares with its worker processes: memfds made before the first
/// fork and inherited through it. They have no name that another process could
/// guess or open, and each is gone once the last process that holds it closes it
/// or dies.
///
/// The head is mapped MAP_SHARED: control, one slot, placement and ring per
/// worker (see remote_target). Each worker slot has its own store, reached with
/// pread and pwrite only: a done flag per item, then the fixed-size results, at
/// the item's offset. A store holds only the items of its slot's workers (the
/// file is sparse); one per slot, because writes to one file take its inode's
/// lock, which would make every worker's flush wait for the others'.
/// Thread safety: the mapped fields are atomics or written before the fork; a
/// store is written by one process at a time (its slot's worker, or the caller
/// once that worker is gone), and read by the caller once the writer is gone.
class shared_region {
 public:
  /// @throws std::system_error when the memory cannot be had
  shared_region(std::size_t items, std::size_t workers, std::size_t fixed_size);
  ~shared_region();
  shared_region(const shared_region&) = delete;
  shared_region& operator=(const shared_region&) = delete;

  [[nodiscard]] shared_control& control() const noexcept { return *control_; }
  [[nodiscard]] remote_slot& slot(std::size_t worker) const noexcept { return slots_[worker]; }
  [[nodiscard]] placement& place(std::size_t worker) const noexcept { return places_[worker]; }
  /// Where the worker in slot `worker` leaves what it finished.
  [[nodiscard]] remote_target target(std::size_t worker) const noexcept;
  /// Has workers write fixed-size results straight into the caller's memory: item
  /// i's to `results + i * fixed_size` in process `caller` (see remote_target).
  void write_directly(int caller, std::byte* results) noexcept {
    caller_ = caller;
    direct_ = results;
  }
  [[nodiscard]] bool writes_directly() const noexcept { return direct_ != nullptr; }

  /// The messages that the worker of slot `worker`, now gone, kept but did not send: past
  /// the `received` bytes that its pipe brought (empty when none).
  [[nodiscard]] std::string_view kept_messages(std::size_t worker,
                                               std::uint64_t received) const noexcept;

  /// Moves what the ring of a worker that is gone still holds into its store (its
  /// results straight to where the call keeps them, with direct writes).
  /// @throws std::system_error when the store cannot be written
  void recover(std::size_t worker) const;
  /// Marks items [b, e) done in the store of slot `worker` (their results came
  /// as messages from it).
  /// @throws std::system_error when the store cannot be written
  void mark_done(std::size_t worker, std::size_t b, std::size_t e) const;
  /// Reads the done flags of items [b, e) in the store of slot `worker` to `out`.
  /// @throws std::system_error when the store cannot be read
  void read_flags(std::size_t worker, std::size_t b, std::size_t e, std::uint8_t* out) const;
  /// Calls `on_run(worker, b, e, in_store)` for each maximal run [b, e) of items
  /// in [begin, end) that are done in the store of slot `worker` with the same
  /// flag: store by store, in index order within each, reading only the parts of
  /// the flags that were written. `in_store`: their results are in the store, also
  /// for a call with direct writes (see remote_target).
  /// @throws std::system_error when a store cannot be read
  void for_each_done_run(
      std::size_t begin, std::size_t end,
      const std::function<void(std::size_t, std::size_t, std::size_t, bool)>& on_run) const;
  /// Reads the results of items [b, e) from the store of slot `worker` to `first`
  /// (item b's bytes).
  /// @throws std::system_error when the store cannot be read
  void read_results(std::size_t worker, std::size_t b, std::size_t e, std::byte* first) const;

 private:
  int fd_ = -1;              ///< the head
  std::vector<int> stores_;  ///< one per slot
  void* head_ = nullptr;
  std::size_t head_bytes_ = 0;
  std::size_t workers_ = 0;
  std::size_t fixed_size_ = 0;
  std::size_t flags_at_ = 0;
  std::size_t results_at_ = 0;
  std::size_t ring_capacity_ = 0;
  shared_control* control_ = nullptr;
  remote_slot* slots_ = nullptr;
  placement* places_ = nullptr;
  std::byte* rings_ = nullptr;
  std::byte* messages_ = nullptr;  ///< each slot's kept messages (see remote_target)
  std::size_t messages_capacity_ = 0;
  int caller_ = 0;
  std::byte* direct_ = nullptr;
};

}  // namespace polymap::detail
