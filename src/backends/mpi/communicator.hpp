// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <polymap/backends/mpi.hpp>
#include <string>
#include <vector>

namespace polymap::detail::mpi {

/// The ranks of a communicator as polymap talks to them: its own duplicate of it (no
/// message of polymap's can meet one of the program's), with errors returned rather than
/// fatal. Every call is checked: a failed one throws polymap::error naming the MPI function
/// and MPI's own text. One per communicator and process, made by the first call on the mpi
/// backend with it (collectively: every rank of it makes the call). For MPI_COMM_WORLD that
/// call initialises MPI if the program has not; polymap then finalises MPI at exit.
/// Thread safety: one call at a time uses a communicator (busy()).
class communicator {
 public:
  communicator(const communicator&) = delete;
  communicator& operator=(const communicator&) = delete;

  /// The duplicate of MPI_COMM_WORLD, made at the first call.
  /// @throws backend_unavailable when MPI was finalised, or is initialised with a thread
  ///   level that does not allow a call from this thread
  static communicator& get();
  /// Checks that the program's communicator `c` can share a call, with local MPI calls
  /// alone (no message).
  /// @throws option_error for MPI_COMM_NULL (a communicator this rank is not in), an
  ///   intercommunicator, or any while MPI is not initialised
  static void validate(const polymap::mpi::comm_handle& c);
  /// The duplicate of the program's communicator `c` (get()'s for MPI_COMM_WORLD), claimed
  /// for one call: its busy() is locked, for the caller to adopt. Made at the first call
  /// with `c`; freed at the next call in this process once the program has freed `c`.
  /// @throws polymap::error when another call of this process holds it (or is making it);
  ///   as validate() and get() otherwise
  static communicator& claim(const polymap::mpi::comm_handle& c);
  /// This process's rank in the program's communicator `c` (MPI_COMM_WORLD by default),
  /// with local MPI calls alone; before MPI is initialised, what the launcher says of
  /// MPI_COMM_WORLD (-1 when it does not say).
  /// @throws as validate(), and backend_unavailable when this thread may not call MPI
  [[nodiscard]] static int rank_in(const polymap::mpi::comm_handle& c);

  /// Held by the call that uses this communicator: a second call at once would mix their
  /// messages.
  [[nodiscard]] std::mutex& busy() noexcept { return busy_; }
  /// Lives as long as a call on the mpi backend runs in this process. An exit() meanwhile
  /// (an item's) does not finalise MPI, which polymap does at exit when it initialised it:
  /// MPI_Finalize would wait for the other ranks, which wait for this one's messages, and
  /// would call MPI from a thread that may not. Without it the job ends, as for a crash.
  class call_running {
   public:
    call_running() noexcept;
    ~call_running();
    call_running(const call_running&) = delete;
    call_running& operator=(const call_running&) = delete;
  };
  /// Whether MPI takes calls from several threads at once (MPI_THREAD_MULTIPLE); false
  /// before MPI is initialised. Read from MPI once.
  [[nodiscard]] static bool thread_multiple();
  /// How many duplicates are made and not yet freed (MPI_COMM_WORLD's among them).
  [[nodiscard]] static std::size_t alive() noexcept;

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int size() const noexcept { return size_; }

  /// Sends `size` bytes to `to` (blocking until MPI has taken them), in pieces when they
  /// are more than one MPI message holds: receive() into a string joins them.
  void send(const void* data, std::size_t size, int to, int tag) const;
  /// Starts sending `size` bytes to `to`, which must stay as they are until the next
  /// send_later() or wait_sent(): after waiting for the one before (one at a time). Bytes
  /// that need pieces start as send() sends them, each piece without waiting.
  void send_later(const void* data, std::size_t size, int to, int tag);
  /// Waits until what send_later() started is sent.
  void wait_sent();
  /// Whether what send_later() started is sent (or nothing was), without waiting.
  [[nodiscard]] bool sent();
  /// Receives what send() sent, of any size, from `from` (any source when negative) into
  /// `into`. @return the rank it came from
  int receive(std::string& into, int from, int tag) const;
  /// Receives what send() sent, exactly `size` bytes, from `from` into `data`.
  void receive(void* data, std::size_t size, int from, int tag) const;
  /// Starts receiving what send_later() sends, exactly `size` bytes, from `from` into
  /// `data`, which must stay until wait_received(). The receiver goes on meanwhile: a large
  /// message may need its sender to call MPI again before it moves (MPI's rendezvous,
  /// without a progress thread), which a sender busy with its next chunk does only after
  /// it. Waits first for the one before from `from` (its sender waits for it before it
  /// sends again). Bytes sent in pieces are received at once, as receive() does.
  void receive_later(void* data, std::size_t size, int from, int tag);
  /// The same for what send_later() sends of a size the receiver does not know: into
  /// `into`, which must stay (and keep its size) until it has arrived. Waits for the
  /// message's envelope (MPI_Mprobe), not for its bytes.
  void receive_later(std::string& into, int from, int tag);
  /// Waits until everything receive_later() started has arrived.
  /// @throws polymap::error when a message was not of the size expected
  void wait_received();
  /// Waits until what receive_later() started from `from` has arrived.
  void wait_received(int from);
  /// Whether a message with `tag` waits, from any source.
  [[nodiscard]] bool waiting(int tag) const;
  /// Ends every rank of the job (MPI_Abort), after saying why on stderr: for a call that
  /// the ranks can no longer end together (a rank failed in the middle of its messages).
  [[noreturn]] void abort(const std::string& why) const noexcept;
  /// Broadcasts `size` bytes from rank 0 (in pieces: MPI counts are int).
  void broadcast(void* data, std::size_t size) const;
  /// Broadcasts a byte string from rank 0: its length, then its bytes.
  void broadcast(std::string& bytes) const;

 private:
  /// A duplicate of the communicator whose Fortran handle is `of`.
  explicit communicator(int of);
  /// Frees the duplicate (the program freed the communicator it duplicates).
  ~communicator();
  /// Frees the duplicates of the communicators the program has freed since, but those
  /// still in use. MPI_Comm_free is not called from MPI's attribute callback that tells of
  /// them: MPI implementations hold locks of their own there.
  static void free_retired();
  /// get() and validate() without check_callable(), for claim(), which checks it once.
  static communicator& world();
  static void validate_callable(const polymap::mpi::comm_handle& c);
  /// Locks busy(), or throws polymap::error saying that another call holds it.
  void claim_busy();

  std::mutex busy_;
  int comm_ = 0;      // an MPI_Comm handle, stored as MPI_Comm_c2f's integer
  std::vector<int> sending_;  // send_later's MPI_Requests (MPI_Request_c2f), one a piece
  struct receiving {
    int request = 0;  // MPI_Request_c2f
    std::size_t size = 0;
    int from = 0;
  };
  std::vector<receiving> receiving_;  // one at most per sender
  /// Waits for `r`. @throws polymap::error when its message was not of the size expected
  void wait(const receiving& r) const;
  int rank_ = 0;
  int size_ = 1;
};

/// Whether this process can take part in an MPI job: MPI is initialised (and not
/// finalised), or an MPI launcher (mpirun, mpiexec, srun) started it; `why_not` says why
/// not. Initialises nothing.
[[nodiscard]] bool reachable(std::string& why_not) noexcept;

/// The ranks that share a call with communicator `c` (MPI_COMM_WORLD by default), from any
/// thread: its size, asked of MPI under MPI_THREAD_MULTIPLE; below that (a thread may not
/// call MPI beside another's call), the world's size once polymap's first call learnt it,
/// else what the launcher's environment says; 0 when none of these tells.
[[nodiscard]] int known_ranks(const polymap::mpi::comm_handle& c = {}) noexcept;

}  // namespace polymap::detail::mpi
