// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/mpi/communicator.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <polymap/error.hpp>
#include <string>
#include <utility>
#include <vector>

#include "mpi_launcher.hpp"

namespace polymap::detail::mpi {

namespace {

/// Throws polymap::error for an MPI call that returned `code`.
void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  throw error(std::string("polymap: backend mpi: ") + call + " failed: " +
              (length > 0 ? std::string(text, static_cast<std::size_t>(length))
                          : "error " + std::to_string(code)));
}

MPI_Comm handle(int comm) { return MPI_Comm_f2c(comm); }

/// The most bytes in one MPI message of polymap's (MPI counts are int).
constexpr std::size_t piece_bytes = std::size_t{1} << 30;

/// `size` as an MPI count.
int count_of(std::size_t size) {
  if (size > static_cast<std::size_t>(INT_MAX)) {
    throw error("polymap: backend mpi: a message of " + std::to_string(size) +
                " bytes is larger than MPI can send at once");
  }
  return static_cast<int>(size);
}

const char* level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE: return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
    default: return "MPI_THREAD_MULTIPLE";
  }
}

/// The process that initialised MPI: a child forked from it (a worker process) that calls
/// exit() runs the same handlers, and must not finalise its parent's MPI.
pid_t initialised_by = 0;

/// Calls on the mpi backend running in this process (see communicator::call_running).
std::atomic<int> calls_running{0};

/// Finalises MPI at exit when polymap initialised it (and nobody finalised it since).
void finalize_at_exit() {
  if (getpid() != initialised_by) return;
  if (calls_running.load(std::memory_order_acquire) != 0) return;
  int finalized = 0;
  if (MPI_Finalized(&finalized) == MPI_SUCCESS && finalized == 0) MPI_Finalize();
}

bool initialized() noexcept {
  int init = 0;
  int finalized = 0;
  return MPI_Initialized(&init) == MPI_SUCCESS && init != 0 &&
         MPI_Finalized(&finalized) == MPI_SUCCESS && finalized == 0;
}

/// MPI's thread level, asked once MPI is initialised (it cannot change then); -1 before.
int thread_level() {
  static std::atomic<int> known{-1};
  int level = known.load(std::memory_order_relaxed);
  if (level < 0 && initialized()) {
    check(MPI_Query_thread(&level), "MPI_Query_thread");
    known.store(level, std::memory_order_relaxed);
  }
  return level;
}

/// Throws unless this thread may call MPI now: MPI is not finalised, and when it is
/// initialised, with a thread level that allows a call from this thread.
void check_callable() {
  int finalized = 0;
  check(MPI_Finalized(&finalized), "MPI_Finalized");
  if (finalized != 0) {
    throw backend_unavailable("polymap: backend mpi is not available: MPI was finalised");
  }
  const int level = thread_level();
  if (level < 0 || level >= MPI_THREAD_SERIALIZED) return;
  thread_local const bool is_main = [] {
    int main = 0;
    check(MPI_Is_thread_main(&main), "MPI_Is_thread_main");
    return main != 0;
  }();
  if (!is_main) {
    throw backend_unavailable(
        std::string("polymap: backend mpi is not available on this thread: MPI was "
                    "initialised with ") +
        level_name(level) +
        ", which allows MPI calls from the main thread alone (initialise it with "
        "MPI_THREAD_SERIALIZED, or make the call from the main thread; a map_async job runs "
        "on a thread of its own)");
  }
}

/// The duplicates whose communicators the program has freed (communicator*), and the
/// attribute that ties a duplicate to the program's communicator.
std::mutex retired_mutex;
std::vector<void*> retired;
/// Guards the attribute (its keyval, the lookups), the handles whose duplicate a call is
/// making, and the deletion of retired duplicates: a call claims a duplicate under it, so
/// none is deleted between its lookup and its claim.
std::mutex attribute_mutex;
int duplicate_keyval = MPI_KEYVAL_INVALID;
std::vector<int> making;  // Fortran handles
std::atomic<std::size_t> duplicates{0};
/// The size of MPI_COMM_WORLD, once polymap's duplicate of it is made (0 before).
std::atomic<int> world_ranks{0};

/// MPI's callback when the program frees a communicator that has a duplicate of polymap's
/// (or MPI deletes the attribute otherwise): the duplicate goes at the next call. Never an
/// error: that would fail the program's MPI_Comm_free.
int retire(MPI_Comm /*comm*/, int /*keyval*/, void* value, void* /*extra*/) {
  try {
    const std::lock_guard lock(retired_mutex);
    retired.push_back(value);
  } catch (...) {
    // No memory to note it: the duplicate stays until MPI_Finalize.
  }
  return MPI_SUCCESS;
}

[[noreturn]] void refuse_second_call() {
  throw error(
      "polymap: backend mpi: another call on the same communicator is running in this "
      "process: calls on one communicator are collective, made one at a time and in the "
      "same order on every rank (give each thread a communicator of its own, under "
      "MPI_THREAD_MULTIPLE)");
}

}  // namespace

communicator::communicator(int of) {
  MPI_Comm comm = MPI_COMM_NULL;
  check(MPI_Comm_dup(handle(of), &comm), "MPI_Comm_dup");
  try {
    comm_ = MPI_Comm_c2f(comm);
    check(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm, &size_), "MPI_Comm_size");
  } catch (...) {
    MPI_Comm_free(&comm);
    throw;
  }
  duplicates.fetch_add(1, std::memory_order_relaxed);
}

void communicator::claim_busy() {
  if (!busy_.try_lock()) refuse_second_call();
}

communicator::~communicator() {
  MPI_Comm comm = handle(comm_);
  MPI_Comm_free(&comm);  // errors are returned: none to report from here
  duplicates.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t communicator::alive() noexcept { return duplicates.load(std::memory_order_relaxed); }

communicator& communicator::get() {
  check_callable();
  return world();
}

communicator::call_running::call_running() noexcept {
  calls_running.fetch_add(1, std::memory_order_acq_rel);
}

communicator::call_running::~call_running() {
  calls_running.fetch_sub(1, std::memory_order_acq_rel);
}

communicator& communicator::world() {
  // Made once, by the first call; a failure to make it is thrown again by the next.
  static std::mutex making;
  static communicator* made = nullptr;
  const std::lock_guard lock(making);
  if (made == nullptr) {
    int init = 0;
    check(MPI_Initialized(&init), "MPI_Initialized");
    if (init == 0) {
      // polymap calls MPI from the thread that makes a call (one call at a time), never
      // from its workers: a call from another thread than main needs SERIALIZED.
      int provided = 0;
      check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided),
            "MPI_Init_thread");
      initialised_by = getpid();
      std::atexit(finalize_at_exit);
    }
    made = new communicator(MPI_Comm_c2f(MPI_COMM_WORLD));  // lives until exit, as MPI does
    world_ranks.store(made->size(), std::memory_order_relaxed);
  }
  return *made;
}

void communicator::validate(const polymap::mpi::comm_handle& c) {
  if (!c.fortran.has_value()) return;
  check_callable();
  validate_callable(c);
}

void communicator::validate_callable(const polymap::mpi::comm_handle& c) {
  if (!c.fortran.has_value()) return;
  if (!initialized()) {
    throw option_error("comm",
                       "a communicator (Fortran handle " + std::to_string(*c.fortran) + ")",
                       "a communicator of an initialised MPI (the program has not called "
                       "MPI_Init, or has finalised it)");
  }
  const MPI_Comm user = handle(*c.fortran);
  if (user == MPI_COMM_NULL) {
    throw option_error("comm", "MPI_COMM_NULL",
                       "a communicator this rank is in (MPI_Comm_split gives MPI_COMM_NULL to "
                       "the ranks it leaves out: they make no call)");
  }
  int inter = 0;
  check(MPI_Comm_test_inter(user, &inter), "MPI_Comm_test_inter");
  if (inter != 0) {
    throw option_error("comm", "an intercommunicator",
                       "an intracommunicator: the ranks that share a call form one group");
  }
}

int communicator::rank_in(const polymap::mpi::comm_handle& c) {
  check_callable();
  if (!c.fortran.has_value() && !initialized()) return mpi_launcher_rank();
  validate_callable(c);
  int rank = -1;
  check(MPI_Comm_rank(c.fortran.has_value() ? handle(*c.fortran) : MPI_COMM_WORLD, &rank),
        "MPI_Comm_rank");
  return rank;
}

communicator& communicator::claim(const polymap::mpi::comm_handle& c) {
  check_callable();  // once for the call: validate_callable() and world() leave it to here
  free_retired();
  validate_callable(c);
  int same = MPI_IDENT;
  if (c.fortran.has_value()) {
    check(MPI_Comm_compare(handle(*c.fortran), MPI_COMM_WORLD, &same), "MPI_Comm_compare");
  }
  if (same == MPI_IDENT) {
    communicator& whole = world();
    whole.claim_busy();
    return whole;
  }
  const int fortran = *c.fortran;
  const MPI_Comm user = handle(fortran);
  {
    const std::lock_guard lock(attribute_mutex);
    if (duplicate_keyval == MPI_KEYVAL_INVALID) {
      check(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, retire, &duplicate_keyval, nullptr),
                 "MPI_Comm_create_keyval");
    }
    void* value = nullptr;
    int found = 0;
    check(MPI_Comm_get_attr(user, duplicate_keyval, &value, &found), "MPI_Comm_get_attr");
    if (found != 0) {
      auto* known = static_cast<communicator*>(value);
      known->claim_busy();
      return *known;
    }
    // Another thread of this process is making it, for a call of its own.
    if (std::find(making.begin(), making.end(), fortran) != making.end()) refuse_second_call();
    making.push_back(fortran);
  }
  const auto made_here = [fortran] {  // under attribute_mutex
    making.erase(std::find(making.begin(), making.end(), fortran));
  };
  // Collective over the program's communicator: not under attribute_mutex, which a call on
  // another communicator, made in another order on another rank, may need meanwhile.
  communicator* made = nullptr;
  try {
    made = new communicator(fortran);
  } catch (...) {
    const std::lock_guard lock(attribute_mutex);
    made_here();
    throw;
  }
  const std::lock_guard lock(attribute_mutex);
  made_here();
  if (const int code = MPI_Comm_set_attr(user, duplicate_keyval, made); code != MPI_SUCCESS) {
    delete made;
    check(code, "MPI_Comm_set_attr");
  }
  made->busy_.lock();  // new: nobody else has it
  return *made;
}

void communicator::free_retired() {
  std::vector<void*> now;
  {
    const std::lock_guard lock(retired_mutex);
    now.swap(retired);
  }
  if (now.empty()) return;
  std::vector<void*> kept;
  {
    const std::lock_guard lock(attribute_mutex);
    for (void* value : now) {
      auto* c = static_cast<communicator*>(value);
      if (c->busy_.try_lock()) {  // no call of another thread's uses it
        c->busy_.unlock();
        delete c;
      } else {
        kept.push_back(value);
      }
    }
  }
  if (kept.empty()) return;
  const std::lock_guard lock(retired_mutex);
  retired.insert(retired.end(), kept.begin(), kept.end());
}

bool communicator::thread_multiple() { return thread_level() == MPI_THREAD_MULTIPLE; }

void communicator::send(const void* data, std::size_t size, int to, int tag) const {
  // Whole pieces, then the rest, which may be empty: a message shorter than a piece ends it.
  const auto* bytes = static_cast<const char*>(data);
  for (std::size_t at = 0;; at += piece_bytes) {
    const std::size_t n = std::min(piece_bytes, size - at);
    check(MPI_Send(bytes + at, static_cast<int>(n), MPI_BYTE, to, tag, handle(comm_)), "MPI_Send");
    if (n < piece_bytes) break;
  }
}

void communicator::send_later(const void* data, std::size_t size, int to, int tag) {
  wait_sent();
  // The pieces of send(), each a request of its own: bytes that need pieces do not hold
  // this rank in a send either (two ranks sending such to each other would wait for ever).
  const auto* bytes = static_cast<const char*>(data);
  for (std::size_t at = 0;; at += piece_bytes) {
    const std::size_t n = std::min(piece_bytes, size - at);
    sending_.reserve(sending_.size() + 1);  // no request may be lost to a failed push_back
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Isend(bytes + at, count_of(n), MPI_BYTE, to, tag, handle(comm_), &request),
          "MPI_Isend");
    sending_.push_back(MPI_Request_c2f(request));
    if (n < piece_bytes) break;
  }
}

void communicator::wait_sent() {
  std::vector<int> requests;
  requests.swap(sending_);
  for (const int r : requests) {
    MPI_Request request = MPI_Request_f2c(r);
    check(MPI_Wait(&request, MPI_STATUS_IGNORE), "MPI_Wait");
  }
}

bool communicator::sent() {
  std::size_t kept = 0;
  for (const int r : sending_) {
    MPI_Request request = MPI_Request_f2c(r);
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done == 0) sending_[kept++] = r;  // MPI_Test freed the requests that are done
  }
  sending_.resize(kept);
  return sending_.empty();
}

int communicator::receive(std::string& into, int from, int tag) const {
  into.clear();
  int source = from < 0 ? MPI_ANY_SOURCE : from;
  for (;;) {  // the pieces of one send(), from the source of the first
    MPI_Status status;
    check(MPI_Probe(source, tag, handle(comm_), &status), "MPI_Probe");
    int count = 0;
    check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
    source = status.MPI_SOURCE;
    const std::size_t at = into.size();
    into.resize(at + static_cast<std::size_t>(count));
    check(
        MPI_Recv(into.data() + at, count, MPI_BYTE, source, tag, handle(comm_), MPI_STATUS_IGNORE),
        "MPI_Recv");
    if (static_cast<std::size_t>(count) < piece_bytes) return source;
  }
}

void communicator::receive(void* data, std::size_t size, int from, int tag) const {
  auto* bytes = static_cast<char*>(data);
  for (std::size_t at = 0;;) {  // the pieces of one send()
    MPI_Status status;
    check(MPI_Probe(from, tag, handle(comm_), &status), "MPI_Probe");
    int count = 0;
    check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
    const auto n = static_cast<std::size_t>(count);
    if (n > size - at || (n < piece_bytes && at + n != size)) {
      throw error("polymap: backend mpi: rank " + std::to_string(from) + " sent " +
                  std::to_string(at + n) + " bytes or more where " + std::to_string(size) +
                  " were due (another program's message on polymap's communicator?)");
    }
    check(MPI_Recv(bytes + at, count, MPI_BYTE, from, tag, handle(comm_), MPI_STATUS_IGNORE),
          "MPI_Recv");
    at += n;
    if (n < piece_bytes) return;
  }
}

void communicator::wait_received(int from) {
  const auto earlier = std::find_if(receiving_.begin(), receiving_.end(),
                                    [from](const receiving& r) { return r.from == from; });
  if (earlier == receiving_.end()) return;
  const receiving r = *earlier;
  receiving_.erase(earlier);
  wait(r);
}

void communicator::receive_later(std::string& into, int from, int tag) {
  wait_received(from);
  MPI_Message message = MPI_MESSAGE_NULL;
  MPI_Status status;
  check(MPI_Mprobe(from, tag, handle(comm_), &message, &status), "MPI_Mprobe");
  int count = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
  into.resize(static_cast<std::size_t>(count));
  if (static_cast<std::size_t>(count) >= piece_bytes) {
    // The first piece of several: this one now, the rest as receive() takes them.
    check(MPI_Mrecv(into.data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE), "MPI_Mrecv");
    std::string rest;
    receive(rest, from, tag);
    into += rest;
    return;
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Imrecv(into.data(), count, MPI_BYTE, &message, &request), "MPI_Imrecv");
  receiving_.push_back({MPI_Request_c2f(request), static_cast<std::size_t>(count), from});
}

void communicator::receive_later(void* data, std::size_t size, int from, int tag) {
  // One receive open per sender: the one before from `from` is done or nearly (its sender
  // waits for it before it sends again), and waiting here moves it along.
  wait_received(from);
  if (size >= piece_bytes) {  // sent in pieces: received as they come
    receive(data, size, from, tag);
    return;
  }
  MPI_Request request = MPI_REQUEST_NULL;
  check(MPI_Irecv(data, count_of(size), MPI_BYTE, from, tag, handle(comm_), &request),
        "MPI_Irecv");
  // Should this throw (no memory), the call ends the MPI job: no request goes unwaited.
  receiving_.push_back({MPI_Request_c2f(request), size, from});
}

void communicator::wait(const receiving& r) const {
  MPI_Request request = MPI_Request_f2c(r.request);
  MPI_Status status;
  check(MPI_Wait(&request, &status), "MPI_Wait");
  int count = 0;
  check(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
  if (static_cast<std::size_t>(count) != r.size) {
    throw error("polymap: backend mpi: rank " + std::to_string(r.from) + " sent " +
                std::to_string(count) + " bytes where " + std::to_string(r.size) +
                " were due (another program's message on polymap's communicator?)");
  }
}

void communicator::wait_received() {
  const std::vector<receiving> pending = std::exchange(receiving_, {});
  for (const receiving& r : pending) wait(r);
}

void communicator::abort(const std::string& why) const noexcept {
  std::fprintf(stderr,
               "polymap: backend mpi: rank %d: %s: the ranks cannot end the call together; "
               "ending the MPI job\n",
               rank_, why.c_str());
  std::fflush(stderr);
  MPI_Abort(handle(comm_), 1);
  std::abort();  // MPI_Abort does not return; should it, nothing else can be done
}

bool communicator::waiting(int tag) const {
  int flag = 0;
  for (int look = 0; look < 2 && flag == 0; ++look) {
    check(MPI_Iprobe(MPI_ANY_SOURCE, tag, handle(comm_), &flag, MPI_STATUS_IGNORE), "MPI_Iprobe");
  }
  return flag != 0;
}

void communicator::broadcast(void* data, std::size_t size) const {
  auto* bytes = static_cast<char*>(data);
  for (std::size_t at = 0; at < size; at += piece_bytes) {
    const std::size_t n = std::min(piece_bytes, size - at);
    check(MPI_Bcast(bytes + at, static_cast<int>(n), MPI_BYTE, 0, handle(comm_)), "MPI_Bcast");
  }
}

void communicator::broadcast(std::string& bytes) const {
  std::uint64_t size = bytes.size();
  broadcast(&size, sizeof size);
  bytes.resize(size);
  broadcast(bytes.data(), bytes.size());
}

bool reachable(std::string& why_not) noexcept {
  int finalized = 0;
  if (MPI_Finalized(&finalized) == MPI_SUCCESS && finalized != 0) {
    why_not = "MPI was finalised";
    return false;
  }
  if (initialized() || started_by_mpi_launcher()) return true;
  why_not =
      "not started by an MPI launcher (mpirun, mpiexec, srun), and MPI is not "
      "initialised by the program";
  return false;
}

int known_ranks(const polymap::mpi::comm_handle& c) noexcept {
  // Asked from any thread, at any time (a plan, a status): MPI itself only where it takes
  // calls from every thread at once. Elsewhere the world's size is what polymap's duplicate
  // of it learnt, or the launcher's.
  try {
    if (thread_level() == MPI_THREAD_MULTIPLE) {
      const MPI_Comm comm = c.fortran.has_value() ? handle(*c.fortran) : MPI_COMM_WORLD;
      int size = 0;
      if (comm != MPI_COMM_NULL && MPI_Comm_size(comm, &size) == MPI_SUCCESS) return size;
    }
  } catch (...) {
    // MPI_Query_thread failed: as if MPI could not be asked.
  }
  if (c.fortran.has_value()) return 0;
  const int world = world_ranks.load(std::memory_order_relaxed);
  return world > 0 ? world : mpi_launcher_ranks();
}

}  // namespace polymap::detail::mpi
