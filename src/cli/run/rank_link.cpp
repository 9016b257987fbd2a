// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "cli/run/rank_link.hpp"

#include <polymap/config.hpp>

#include "mpi_launcher.hpp"

#include <unistd.h>

#include <string_view>

#if POLYMAP_HAS_MPI

#include "backends/mpi/communicator.hpp"
#include "cli/run/fd_io.hpp"
#include "cli/run/rank_protocol.hpp"
#include "cli/run/spawn.hpp"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <exception>

#endif

namespace polymap::cli::run {

#if POLYMAP_HAS_MPI

namespace {

/// Says finish to every other rank when it goes, and takes their last reports: the link is
/// over, on every path out of rank 0's run (an error too), and no rank waits for ever.
class finisher {
 public:
  explicit finisher(detail::mpi::communicator& comm) : comm_(comm) {}
  finisher(const finisher&) = delete;
  finisher& operator=(const finisher&) = delete;
  ~finisher() {
    try {
      const std::string finish = protocol::encode(protocol::order{});
      for (int r = 1; r < comm_.size(); ++r) {
        comm_.send(finish.data(), finish.size(), r, protocol::order_tag);
      }
      // Every rank's reports up to its last (the ends of jobs that a failed run left behind).
      for (int left = comm_.size() - 1; left > 0;) {
        std::string bytes;
        comm_.receive(bytes, -1, protocol::report_tag);
        if (!protocol::decode_event(bytes)) --left;
      }
    } catch (const std::exception& e) {
      comm_.abort(std::string("polymap run: cannot end the run on the other ranks: ") + e.what());
    }
  }

 private:
  detail::mpi::communicator& comm_;
};

class mpi_rank_link final : public rank_link {
 public:
  explicit mpi_rank_link(detail::mpi::communicator& comm)
      : comm_(comm), launcher_(getppid()), finisher_(comm) {
    first_slot_.push_back(0);  // rank 0's own slots are the runner's
    for (int r = 1; r < comm_.size(); ++r) {
      std::string bytes;
      protocol::hello h;
      try {
        comm_.receive(bytes, r, protocol::hello_tag);
        h = protocol::decode_hello(bytes);
      } catch (const std::exception& e) {
        // Not a job server of polymap's there: it would never take the finish.
        comm_.abort("polymap run: rank " + std::to_string(r) + " did not answer as polymap: " +
                    e.what());
      }
      first_slot_.push_back(slots_.size());
      hosts_.push_back(std::move(h.host));
      for (std::uint64_t s = 0; s < h.slots; ++s) {
        slots_.push_back({r, static_cast<std::uint32_t>(s)});
      }
    }
    first_slot_.push_back(slots_.size());
    pace_.active(protocol::clock_now());
  }

  [[nodiscard]] std::size_t slots() const override { return slots_.size(); }
  [[nodiscard]] const std::string& host(std::size_t slot) const override {
    return rank_host(slots_.at(slot).rank);
  }
  [[nodiscard]] const std::string& rank_host(int rank) const override {
    return hosts_.at(static_cast<std::size_t>(rank - 1));
  }
  [[nodiscard]] int rank(std::size_t slot) const override { return slots_.at(slot).rank; }
  [[nodiscard]] int ranks() const override { return comm_.size(); }

  void start(std::size_t slot, const std::vector<std::string>& argv) override {
    protocol::order o;
    o.kind = protocol::order_kind::start;
    o.slot = slots_.at(slot).local;
    o.argv = argv;
    send(slot, o);
  }

  void signal(std::size_t slot, int sig) override {
    protocol::order o;
    o.kind = protocol::order_kind::signal;
    o.slot = slots_.at(slot).local;
    o.signal = sig;
    send(slot, o);
  }

  [[nodiscard]] std::optional<rank_event> next() override {
    if (!comm_.waiting(protocol::report_tag)) return std::nullopt;
    pace_.active(protocol::clock_now());
    std::string bytes;
    const int from = comm_.receive(bytes, -1, protocol::report_tag);
    std::optional<rank_event> e = protocol::decode_event(bytes);
    const auto r = static_cast<std::size_t>(from);
    // A rank's last report comes only after finish; its slots are its own.
    if (!e || from <= 0 || e->slot >= first_slot_[r + 1] - first_slot_[r]) {
      detail::mpi::reader::truncated();
    }
    e->slot += first_slot_[r];
    e->rank = from;
    return e;
  }

  [[nodiscard]] double poll_interval() const override {
    return pace_.interval(protocol::clock_now());
  }
  [[nodiscard]] bool launcher_gone() const override { return getppid() != launcher_; }

 private:
  struct remote_slot {
    int rank = 0;
    std::uint32_t local = 0;  // that rank's own number for it
  };

  void send(std::size_t slot, const protocol::order& o) {
    pace_.active(protocol::clock_now());  // its answer may come soon
    const std::string bytes = protocol::encode(o);
    comm_.send(bytes.data(), bytes.size(), slots_.at(slot).rank, protocol::order_tag);
  }

  detail::mpi::communicator& comm_;
  pid_t launcher_;     // the parent that started this rank
  finisher finisher_;  // before the rest: a failure to make them still ends the other ranks
  std::vector<remote_slot> slots_;
  std::vector<std::size_t> first_slot_;  // by rank: its first slot in slots_, then the end
  std::vector<std::string> hosts_;       // by rank, from rank 1
  protocol::poll_pace pace_;
};

}  // namespace

#endif

std::vector<std::string> job_environment(int rank, int ranks) {
  std::vector<std::string> variables;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable = *entry;
    if (variable.starts_with("POLYMAP_RANK")) continue;
    if (!detail::names_a_place_in_an_mpi_job(variable.substr(0, variable.find('=')))) {
      variables.emplace_back(variable);
    }
  }
  variables.push_back("POLYMAP_RANK=" + std::to_string(rank));
  variables.push_back("POLYMAP_RANKS=" + std::to_string(ranks));
  return variables;
}

std::vector<char*> pointers_to(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  pointers.reserve(strings.size() + 1);
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

rank_role join_ranks() {
  rank_role role;
#if POLYMAP_HAS_MPI
  if (detail::mpi_launcher_ranks() <= 1) return role;
  role.inherited = open_descriptors();
  // The runner's signals (and the job server's) are taken through a signalfd, which sees
  // only signals that every thread blocks: blocked while MPI starts its threads, which
  // inherit the mask and keep it (else a SIGTERM would end polymap through one of them,
  // unrecorded). This thread gets its own mask back, so that a signal still ends polymap
  // until the runner blocks them (while it waits for the other ranks, or opens a FIFO).
  detail::mpi::communicator& comm = [] () -> detail::mpi::communicator& {
    const sigset_t handled = runner_signals();
    sigset_t before;
    pthread_sigmask(SIG_BLOCK, &handled, &before);
    struct restore_mask {
      const sigset_t* mask;
      ~restore_mask() { pthread_sigmask(SIG_SETMASK, mask, nullptr); }
    } restore{&before};
    return detail::mpi::communicator::get();
  }();
  close_on_exec_but(role.inherited);  // MPI's sockets: not for the jobs
  if (comm.size() <= 1) return role;
  if (comm.rank() != 0) {
    role.serve = true;
  } else {
    role.link = std::make_unique<mpi_rank_link>(comm);
    close_on_exec_but(role.inherited);  // the connections that the other ranks' hellos made
  }
#endif
  return role;
}

}  // namespace polymap::cli::run
