// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "backends/processes/worker_process.hpp"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#if defined(__GLIBCXX__)
#include <ext/stdio_filebuf.h>
#include <ext/stdio_sync_filebuf.h>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <new>
#include <polymap/detail/execute.hpp>
#include <polymap/topology.hpp>
#include <string>

#include "chunk_sizer.hpp"
#include "topology/binding.hpp"

namespace polymap::detail {

namespace {

/// The process's virtual size now, in bytes: a memory limit counts from here,
/// since the worker starts with a copy of the caller's whole address space.
std::size_t virtual_size() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0;
  statm >> pages;
  return pages * static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
}

void place(const worker_setup& s) {
  const options& o = *s.job->opts;
  placement& p = s.shared->place(s.slot);
  if (o.bind != bind::none) {
    const topology& topo = topology::current();
    const std::vector<int> cpus = worker_cpus(topo, o.bind, s.slot, s.workers, o.cpus);
    p.bound.store(!cpus.empty() && bind_this_thread(cpus) ? 1 : 0, std::memory_order_relaxed);
  }
  if (o.nice) {
    // One thread: the thread's nice is the process's.
    (void)set_this_thread_nice(*o.nice);
    const std::optional<int> now = this_thread_nice();
    p.nice.store(now.value_or(0), std::memory_order_relaxed);
    p.nice_applied.store(now == o.nice ? 1 : 0, std::memory_order_relaxed);
  }
  rlimit core{};
  if (!o.core_dumps && getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_cur != 0) {
    core.rlim_cur = 0;
    (void)setrlimit(RLIMIT_CORE, &core);
  }
  if (s.memory_limit != 0) {
    // A cap past what the address space can hold (SIZE_MAX as "no cap") must not wrap.
    const rlim_t size = virtual_size();
    const rlim_t limit =
        s.memory_limit >= RLIM_INFINITY - size ? RLIM_INFINITY : size + s.memory_limit;
    const rlimit r{limit, limit};
    (void)setrlimit(RLIMIT_AS, &r);
  }
}

/// Has std::cout and std::clog write through stdio, which the worker flushes (before each
/// item, see remote_channel::write_printed, and after each chunk). They do already, unless
/// the program called std::ios::sync_with_stdio(false): then each has a buffer of its own,
/// which the fork copied with what the caller had not written yet. The caller writes that
/// itself; the worker's copy is left unused, or it would come out twice, and the items'
/// output would stay in a buffer that no one flushes at the worker's _exit.
void route_streams_through_stdio() noexcept {
#if defined(__GLIBCXX__)
  // Only the unsynchronised default, on the standard descriptor: a stream the program
  // pointed at a file of its own stays there.
  const auto route = []<class Char>(std::basic_ostream<Char>& stream, std::FILE* file) {
    auto* own = dynamic_cast<__gnu_cxx::stdio_filebuf<Char>*>(stream.rdbuf());
    if (own == nullptr || own->fd() != fileno(file)) return;
    // Never destroyed: a worker ends with _exit.
    stream.rdbuf(new __gnu_cxx::stdio_sync_filebuf<Char>(file));  // NOLINT
  };
  route(std::cout, stdout);
  route(std::clog, stderr);
  route(std::wcout, stdout);
  route(std::wclog, stderr);
#endif
}

/// Writes out what the items printed: the C++ streams (one the program pointed at a file of
/// its own too) and every stdio stream.
void write_printed() noexcept {
  try {
    std::cout.flush();
    std::clog.flush();
    std::wcout.flush();
    std::wclog.flush();
  } catch (...) {  // a stream with exceptions() set: what it could not write is lost
  }
  (void)std::fflush(nullptr);
}

}  // namespace

void encode_failure(std::string& out, const item_failure& f) {
  out.push_back(static_cast<char>(remote_tag::failure));
  const std::uint64_t head[4] = {f.index, static_cast<std::uint64_t>(f.kind), f.attempts,
                                 f.what.size()};
  out.append(reinterpret_cast<const char*>(head), sizeof head);
  out.append(f.what);
}

bool decode_failure(std::string_view& in, item_failure& f) {
  std::uint64_t head[4];
  if (in.size() < sizeof head) return false;
  std::memcpy(head, in.data(), sizeof head);
  if (in.size() < sizeof head + head[3]) return false;
  f.index = head[0];
  f.kind = static_cast<failure_kind>(head[1]);
  f.attempts = static_cast<unsigned>(head[2]);
  f.what.assign(in.data() + sizeof head, head[3]);
  in.remove_prefix(sizeof head + head[3]);
  return true;
}

void worker_main(worker_setup& s) noexcept {
  // Nothing may escape: an exception here would unwind into the caller's stack
  // frames, which in this process are only copies.
  try {
    // Die with the caller, even when it is killed with SIGKILL.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s.parent) _exit(121);
    setpgid(0, 0);  // the worker's own children share its fate (timeouts kill
                    // the group)
    mark_worker_process();
    route_streams_through_stdio();

    const map_job& job = *s.job;
    run_state& state = *job.state;
    state.forget_caller();

    // What the worker itself needs is allocated before place() caps its memory:
    // the cap is for the items.
    shared_control& control = s.shared->control();
    remote_slot& slot = s.shared->slot(s.slot);
    std::string out;
    out.reserve(4096);
    const bool memory_capped = s.memory_limit != 0;
    remote_channel channel(&slot, s.shared->target(s.slot), s.pipe,
                           job.opts->timeout.count() > 0, &out, memory_capped);
    worker_context w = make_worker(state, *job.opts, backend_kind::processes, s.slot);
    w.remote = &channel;
    w.caller_stop = &control.stop;
    // A chunk ends with writes to the store and a message: 1 ms chunks keep
    // that below 1% of the work. Cancels and timeouts do not wait for a chunk.
    chunk_sizer sizer(job, 1e-3);
    place(s);
    slot.ready.store(1, std::memory_order_release);

    // Runs one chunk; false once the call must stop.
    auto run = [&](std::size_t b, std::size_t e) {
      slot.current.store(remote_slot::none, std::memory_order_relaxed);
      slot.chunk_begin.store(b, std::memory_order_relaxed);
      slot.chunk_end.store(e, std::memory_order_release);
      const double busy_before = w.busy_seconds;
      sizer.run(job, b, e, w);
      write_printed();
      channel.flush();
      // Between chunks no item runs: the caller's timeout clock must not tick.
      slot.current.store(remote_slot::none, std::memory_order_relaxed);
      slot.busy_ns.fetch_add(static_cast<std::int64_t>((w.busy_seconds - busy_before) * 1e9),
                             std::memory_order_relaxed);
      slot.busy_items.fetch_add(e - b, std::memory_order_relaxed);
      w.first = {};
      w.ranges.clear();
      channel.keep_failures(state);
      const bool stopping = state.stopping();
      if (stopping) {
        out.push_back(static_cast<char>(state.cancelled() ? remote_tag::cancel : remote_tag::stop));
      }
      channel.send();
      return !stopping;
    };

    bool go = true;
    if (s.first) {
      // While it runs, the chunk bounds show it; afterwards this flag does: either
      // way the caller knows these items were not left untouched.
      go = run(s.first->begin, s.first->end);
      slot.first_begun.store(1, std::memory_order_release);
    }
    const std::size_t end = control.end;
    const std::size_t spread = 2 * std::max<std::size_t>(s.workers, 1);
    while (go && !control.stop.load(std::memory_order_relaxed)) {
      // Guided: never more than a share of what is left, so that the workers
      // end together.
      const std::size_t left = end - std::min(end, control.next.load(std::memory_order_relaxed));
      const std::size_t size = std::max<std::size_t>(1, std::min(sizer.size(), left / spread));
      const std::size_t b = control.next.fetch_add(size, std::memory_order_relaxed);
      if (b >= end) break;
      if (claim_hook != nullptr) claim_hook(b, std::min(end, b + size));
      go = run(b, std::min(end, b + size));
    }
    slot.chunk_begin.store(0, std::memory_order_relaxed);
    slot.chunk_end.store(0, std::memory_order_release);
    // Everything is in the store: the caller may read it while this process
    // winds down.
    out.push_back(static_cast<char>(remote_tag::idle));
    channel.send();
    write_printed();  // what the items printed; the caller flushed its stdio before the fork
  } catch (const std::bad_alloc&) {
    // The worker's own bookkeeping found no memory left under the cap (an item that threw
    // something else after it leaked): as for an item's bad_alloc, the item in `current`
    // is to blame, if it is not done.
    if (s.memory_limit != 0) {
      s.shared->slot(s.slot).out_of_memory.store(1, std::memory_order_release);
      _exit(out_of_memory_status);
    }
    _exit(122);
  } catch (...) {
    _exit(122);
  }
  _exit(0);
}

}  // namespace polymap::detail
