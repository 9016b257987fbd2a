// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <polymap/codec.hpp>
#include <polymap/detail/run_items.hpp>
#include <polymap/detail/run_state.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace polymap::detail {

/// What one worker process publishes to its caller, in memory they share.
/// Written by the worker alone; read by the caller while it runs (progress,
/// timeouts) and after it died (which item it was running).
struct alignas(64) remote_slot {
  static constexpr std::size_t none = ~std::size_t{0};
  std::atomic<std::size_t> chunk_begin{0};  ///< the chunk being run: [chunk_begin, chunk_end)
  std::atomic<std::size_t> chunk_end{0};
  std::atomic<std::size_t> current{none};   ///< the item being run, or none
  std::atomic<std::int64_t> started_ns{0};  ///< when it started (steady clock), timed runs only
  std::atomic<std::size_t> done{0};         ///< items finished and in the store (or sent)
  std::atomic<std::int64_t> busy_ns{0};     ///< time inside chunks
  std::atomic<std::size_t> busy_items{0};   ///< items of those chunks
  std::atomic<std::size_t> seg_begin{0};    ///< the first item of its ring's segment
  std::atomic<std::size_t> staged{0};       ///< items of that segment staged, not yet in the store
  std::atomic<int> store_error{0};          ///< errno of a write to the store that failed
  std::atomic<int> ready{0};                ///< 1 once the worker is set up to run items
  std::atomic<int> first_begun{0};          ///< 1 once it ran the range it was forked with
  std::atomic<int> stored{0};  ///< 1 once direct writes were refused: results went to the store
  /// 1 once an item ran out of memory under options::memory_limit: the worker ended there,
  /// with that item in `current`.
  std::atomic<int> out_of_memory{0};
  /// 1 once the worker found its descriptors to the caller (its pipe, its store) closed or
  /// replaced, by an item of its chunk: it ended there without writing through them.
  std::atomic<int> channel_lost{0};
  /// Bytes the worker wrote to its pipe, all told: where its kept messages begin.
  std::atomic<std::uint64_t> sent{0};
  /// Bytes of whole messages not yet sent that it keeps a copy of in shared memory (see
  /// remote_target::messages), so that a worker that dies loses none of them.
  std::atomic<std::size_t> kept{0};
};

/// A done flag in a store: the item finished, and its fixed-size result is where
/// the call's remote_target says (the caller's memory for direct writes, else the
/// store).
inline constexpr std::uint8_t done_flag = 1;
/// A done flag of a call with direct writes whose worker was refused them: the result
/// is in the store.
inline constexpr std::uint8_t done_in_store_flag = 2;

/// Where a worker process leaves what it finished. Its slot's store is a file in
/// memory (a memfd, sparse: it holds its slot's items only) holding a done flag per item at
/// `flags_at + i` and, for fixed-size results, result i at `results_at + i * fixed_size`; workers
/// and caller reach it with pwrite and pread, so neither maps its pages (each first touch of a page
/// costs a fault per process). Items finished since the worker last wrote to the
/// store wait in its ring, in shared memory: a segment of consecutive items laid
/// out as the store lays them out (flags, then results), so that it goes there in
/// two writes, and so that a worker that dies loses none of it.
///
/// With direct writes, the worker writes fixed-size results straight into the
/// caller's memory (process_vm_writev), where the call keeps them: one copy, and no
/// page of the store to allocate, fill and read back. Only the done flags then go to
/// the store. A worker refused such a write (a security module, a seccomp filter)
/// writes its results to the store from then on, with done_in_store_flag.
struct remote_target {
  int fd = -1;
  std::size_t flags_at = 0;
  std::size_t results_at = 0;
  std::size_t fixed_size = 0;  ///< 0: no results in the store (void, or sent as messages)
  std::byte* ring = nullptr;   ///< ring_capacity flags, then as many results
  std::size_t ring_capacity = 0;  ///< items
  std::size_t items = 0;          ///< one past the last item of the call
  int caller = 0;                 ///< the caller's pid, for direct writes
  /// Direct writes: item i's result goes to direct + i * fixed_size in the caller's
  /// memory; null: to the store.
  std::byte* direct = nullptr;
  /// A copy, in shared memory, of the messages the worker has not sent yet (its encoded
  /// results, as each item ends), which the caller reads when the worker dies before it
  /// sent them; null for fixed-size results, which the ring keeps.
  std::byte* messages = nullptr;
  std::size_t messages_capacity = 0;  ///< bytes; more than that are sent at once

  /// Bytes of a ring of `capacity` items, a multiple of 64 (rings do not share cache lines).
  [[nodiscard]] static constexpr std::size_t ring_bytes(std::size_t capacity,
                                                        std::size_t fixed_size) noexcept {
    return (results_offset(capacity) + capacity * fixed_size + 63) / 64 * 64;
  }
  [[nodiscard]] static constexpr std::size_t results_offset(std::size_t capacity) noexcept {
    return (capacity + 7) / 8 * 8;
  }
  [[nodiscard]] std::uint8_t* ring_flags() const noexcept {
    return reinterpret_cast<std::uint8_t*>(ring);
  }
  [[nodiscard]] std::byte* ring_results() const noexcept {
    return ring + results_offset(ring_capacity);
  }
};

/// Message tags on the pipe from a worker process to its caller.
enum class remote_tag : std::uint8_t {
  result = 'R',   ///< one item's encoded result
  failure = 'F',  ///< one failed item (an exception)
  cancel = 'C',   ///< an item cancelled the call
  stop = 'S',     ///< fail_fast: a failure stops the call
  idle = 'I',     ///< the worker is done and everything it finished is in the store
};

/// A worker process's side of the channel to its caller: marks items started
/// and done, stages fixed-size results (see remote_target) and encodes the
/// others into a buffer that the worker sends after each chunk.
class remote_channel {
 public:
  /// @param pipe the worker's end of its pipe to the caller, which send() writes
  /// @param buffer the messages not sent yet: results that put() encodes, and what the
  ///   worker adds (failures, a stop) before it calls send()
  /// @param memory_capped options::memory_limit applies: see out_of_memory()
  remote_channel(remote_slot* slot, const remote_target& target, int pipe, bool timed,
                 std::string* buffer, bool memory_capped = false);

  /// Writes the buffer's messages to the pipe, then empties it (at the end of a chunk, and
  /// whenever it outgrows the copy kept in shared memory). A worker whose caller is gone
  /// exits.
  void send() noexcept;

  /// Ends the worker process (its slot's `channel_lost` says why) unless its pipe and its
  /// store are still the files they were when the worker started: an item may have closed
  /// their descriptors, or put other files there, which the worker must not write to.
  /// Before every write through them; a check with no item run since the last one
  /// (flush() and then send() at a chunk's end) costs nothing.
  void check_descriptors() noexcept;

  /// Adds the items that failed since the last call (their exceptions, as `state` recorded
  /// them) to the messages, kept in shared memory at once like the results: a crash later in
  /// the chunk must not lose them, or they would run again. Before each item, and at the end
  /// of a chunk.
  void keep_failures(run_state& state);

  /// Writes out what the items printed to stdout and not written yet (stdio's buffer, which
  /// std::cout shares in a worker: see worker_main), so that a later item's crash does not
  /// lose it. Before each item: a check when nothing is pending.
  static void write_printed() noexcept;

  void start(std::size_t i) noexcept {
    write_printed();
    items_since_check_ = true;
    slot_->current.store(i, std::memory_order_relaxed);
    if (timed_) {
      slot_->started_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                              std::memory_order_relaxed);
    }
  }

  /// Item `i` succeeded with result `r`.
  template <class R>
  void put(std::size_t i, const R& r) {
    if constexpr (crosses_as_bytes<R>) {
      if (target_.fixed_size != 0) {
        stage<sizeof(R)>(i, &r);
        return;
      }
      append(i, &r, sizeof(R));
    } else if constexpr (has_codec<R>) {
      scratch_.clear();
      codec<R>::encode(r, scratch_);
      append(i, scratch_.data(), scratch_.size());
    } else {
      // Unreachable: a call whose results cannot cross is refused before any item runs.
      std::terminate();
    }
    // A result sent as a message is complete only once the caller has it: the
    // caller sets its flag on receipt (or when it reads the kept copy).
    keep();
    finished();
  }

  /// Item `i` succeeded without a result.
  void put_void(std::size_t i) noexcept { stage<0>(i, nullptr); }

  /// The running item let a std::bad_alloc escape. Under a memory cap this ends the worker
  /// process at once, as a crash would (what the item leaked may fill its heap, so that
  /// every later item, and the worker's own bookkeeping, would fail too); its slot says
  /// why, so that the caller reports the item as a memory failure and runs the rest in a
  /// fresh worker. Without a cap it returns: the exception is the item's failure.
  void out_of_memory() noexcept;

  /// Writes what is staged to the store; at the end of each chunk. A worker
  /// that cannot write there exits (the caller recovers its ring).
  void flush() noexcept;

 private:
  /// Stages item i's result of `Size` bytes (its size in the store) in the ring.
  /// The ring's flags read 1 unless an item failed, so a staged item writes only
  /// its result; it counts as done once its segment is in the store.
  template <std::size_t Size>
  void stage(std::size_t i, const void* result) noexcept {
    std::size_t k = i - seg_begin_;
    // Items come in increasing order; anything else starts a segment.
    if (seg_len_ == 0 || k >= target_.ring_capacity || k < seg_len_) [[unlikely]] {
      k = begin_segment(i);
    }
    if (k > seg_len_) [[unlikely]] skip(k);
    if constexpr (Size != 0) std::memcpy(results_ + k * Size, result, Size);
    seg_len_ = k + 1;
    // Staged: a worker that dies now loses nothing.
    slot_->staged.store(seg_len_, std::memory_order_release);
    // Between items nothing runs: the caller's timeout clock must not tick.
    if (timed_) slot_->current.store(remote_slot::none, std::memory_order_relaxed);
  }
  /// Writes the staged results into the caller's memory; false when refused.
  bool write_direct() noexcept;
  /// Copies the messages added to the buffer since the last keep() to the shared copy
  /// (target_.messages), or sends the buffer when the copy cannot hold it.
  void keep() noexcept;
  /// Writes what is staged and starts a segment at item i. @return 0, i's place in it
  std::size_t begin_segment(std::size_t i) noexcept;
  /// Items [seg_begin_ + seg_len_, seg_begin_ + k) failed: their flags become 0.
  void skip(std::size_t k) noexcept;
  void finished() noexcept {
    if (timed_) slot_->current.store(remote_slot::none, std::memory_order_relaxed);
    slot_->done.store(slot_->done.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void append(std::size_t i, const void* data, std::size_t size) {
    const auto tag = static_cast<char>(remote_tag::result);
    const std::uint64_t header[2] = {i, size};
    buffer_->push_back(tag);
    buffer_->append(reinterpret_cast<const char*>(header), sizeof header);
    buffer_->append(static_cast<const char*>(data), size);
  }

  /// What a descriptor refers to: the file it must still be.
  struct file_identity {
    std::uint64_t device = 0;
    std::uint64_t inode = 0;
  };
  [[nodiscard]] static file_identity identity_of(int fd) noexcept;

  remote_slot* slot_;
  remote_target target_;
  int pipe_;
  file_identity pipe_file_;
  file_identity store_file_;
  std::uint8_t* flags_;  ///< the ring's flags and results (see remote_target)
  std::byte* results_;
  bool timed_;
  std::string* buffer_;
  std::string scratch_;
  // The segment in the ring: items [seg_begin_, seg_begin_ + seg_len_), of which
  // seg_failed_ failed.
  std::size_t seg_begin_ = 0;
  std::size_t seg_len_ = 0;
  std::size_t seg_failed_ = 0;
  bool flags_dirty_ = true;  ///< some ring flag is not 1 (a failure, or a new ring)
  bool stored_ = false;      ///< direct writes were refused: results go to the store
  bool memory_capped_;
  std::size_t failures_kept_ = 0;  ///< run_state::failed() when keep_failures() last looked
  bool items_since_check_ = true;  ///< an item ran since check_descriptors() last looked
};

/// How the results of a call cross from a worker process to the caller. One per
/// context type; `transfer_for<Ctx, R>()` builds it.
struct result_transfer {
  /// Results are trivially copyable and land in shared memory at i *
  /// fixed_size; 0 when they come as messages, or there are none.
  std::size_t fixed_size = 0;
  /// Stores the results of items [b, e), whose bytes start at `first` (item
  /// b's), where the call keeps them.
  void (*deliver_fixed)(const void* ctx, std::size_t b, std::size_t e,
                        const std::byte* first) = nullptr;
  /// Where the call keeps fixed-size results when it keeps them as they are, one
  /// after another (item i at the result + i * fixed_size), so that they can be
  /// copied there in bulk; null otherwise.
  std::byte* (*fixed_target)(const void* ctx) = nullptr;
  /// Whether that memory is the call's own, out of every item's reach: worker
  /// processes then need no copy of it.
  bool target_private = false;
  /// Stores the result of item i from the bytes of its message.
  void (*deliver)(const void* ctx, std::size_t i, std::string_view bytes) = nullptr;
  /// Tells the call that item i failed for good (streams, whose consumer waits
  /// for it).
  void (*deliver_failed)(const void* ctx, std::size_t i) = nullptr;
  /// Appends the bytes of item i's result, as the call keeps it, to `out` (what `deliver`
  /// takes back); null when the call cannot read its results back (a stream hands each on).
  void (*encode)(const void* ctx, std::size_t i, std::string& out) = nullptr;
  /// Why results cannot cross (no codec), or null when they can.
  const char* unsupported = nullptr;
};

/// Appends the bytes of result `r` to `out`: its object representation, or its codec's.
template <class R>
void encode_result(const R& r, std::string& out) {
  if constexpr (crosses_as_bytes<R>) {
    out.append(reinterpret_cast<const char*>(&r), sizeof(R));
  } else {
    codec<R>::encode(r, out);
  }
}

/// Decodes one result of type `R`, encoded by remote_channel::put.
template <class R>
[[nodiscard]] R decode_result(std::string_view bytes) {
  if constexpr (crosses_as_bytes<R>) {
    // The memcpy into aligned storage creates the R (implicit object creation); the R is
    // then moved out, not copied: a trivially copyable R may be move-only (copy constructor
    // deleted), and its move is the same copy of bytes.
    alignas(R) std::byte raw[sizeof(R)];
    std::memcpy(raw, bytes.data(), sizeof(R));
    return std::move(*std::launder(reinterpret_cast<R*>(raw)));
  } else {
    return codec<R>::decode(bytes);
  }
}

/// What results of type `R` would need to come back from a worker process
/// (`transferable_results`); null when they can (or there are none).
template <class R>
[[nodiscard]] constexpr const char* results_refused() noexcept {
  if constexpr (std::is_void_v<R>) {
    return nullptr;
  } else if constexpr (transferable_v<R>) {
    return nullptr;
  } else {
    return transferable_results;
  }
}

/// The transfer of a context `Ctx` whose item results are `R` and which stores
/// them with `Ctx::store(ctx, i, R&&)`. `Fixed` false sends even trivially
/// copyable results as messages (streams, which hand each result on as it
/// arrives).
template <class Ctx, class R, bool Fixed = true>
[[nodiscard]] constexpr result_transfer transfer_for() noexcept {
  result_transfer t;
  if constexpr (std::is_void_v<R>) {
    return t;
  } else if constexpr (codec_specialised<R> && !has_codec<R>) {
    // A trivially copyable R would otherwise cross as its bytes, the codec silently left out.
    static_assert(!codec_specialised<R>,
                  "polymap::codec<R> is specialised for this result type, but not as polymap "
                  "needs it: static void encode(const R&, std::string& out) and static R "
                  "decode(std::string_view bytes)");
    return t;
  } else if constexpr (!transferable_v<R>) {
    t.unsupported = results_refused<R>();
    return t;
  } else {
    if constexpr (Fixed && crosses_as_bytes<R>) {
      t.fixed_size = sizeof(R);
      t.deliver_fixed = [](const void* p, std::size_t b, std::size_t e, const std::byte* first) {
        const auto& c = *static_cast<const Ctx*>(p);
        for (std::size_t i = b; i < e; ++i) {
          Ctx::store(c, i,
                     decode_result<R>({reinterpret_cast<const char*>(first) + (i - b) * sizeof(R),
                                       sizeof(R)}));
        }
      };
      if constexpr (requires(const Ctx& c) {
                      { Ctx::target(c) } -> std::same_as<std::byte*>;
                    }) {
        t.fixed_target = [](const void* p) { return Ctx::target(*static_cast<const Ctx*>(p)); };
        t.target_private = Ctx::private_target;
      }
    }
    t.deliver = [](const void* p, std::size_t i, std::string_view bytes) {
      Ctx::store(*static_cast<const Ctx*>(p), i, decode_result<R>(bytes));
    };
    if constexpr (requires(const Ctx& c) {
                    { Ctx::load(c, std::size_t{}) } -> std::same_as<const R&>;
                  }) {
      t.encode = [](const void* p, std::size_t i, std::string& out) {
        encode_result<R>(Ctx::load(*static_cast<const Ctx*>(p), i), out);
      };
    }
    return t;
  }
}

/// Runs items [b, e) in a worker process: `compute(i)` gives item i's result,
/// which goes to the caller through `w.remote`; failures are recorded as
/// run_items does.
template <class Compute>
void run_remote(std::size_t b, std::size_t e, worker_context& w, Compute&& compute) {
  remote_channel& ch = *w.remote;
  run_items<true>(b, e, w, [&ch, &compute, &w](std::size_t i) {
    ch.keep_failures(*w.state);
    ch.start(i);
    try {
      if constexpr (std::is_void_v<std::invoke_result_t<Compute&, std::size_t>>) {
        compute(i);
        ch.put_void(i);
      } else {
        ch.put(i, compute(i));
      }
    } catch (const std::bad_array_new_length&) {
      throw;  // a size that no memory could hold: the item's own error
    } catch (const std::bad_alloc&) {
      ch.out_of_memory();  // under a memory cap, does not return
      throw;
    }
  });
}

}  // namespace polymap::detail
