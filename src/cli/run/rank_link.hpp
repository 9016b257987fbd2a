// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace polymap::cli::run {

struct run_options;

/// What a rank other than 0 tells rank 0's runner, as rank_link::next() hands it over.
struct rank_event {
  enum class kind {
    ended,    ///< a job ended (or could not start): slot, wait_status, spawn_error, out, err
    stopped,  ///< the rank received a stopping signal (`signal`): the run stops, as on its own
  };
  kind what = kind::ended;
  int rank = 0;          ///< the rank it came from
  std::size_t slot = 0;  ///< the runner's slot (0-based) of the job
  int wait_status = 0;   ///< as waitpid() gave it
  int spawn_error = 0;   ///< errno of an exec that failed (the job never ran); 0 when it ran
  bool signalled = false;  ///< that rank signalled it before it ended (an order of rank 0's,
                           ///< or a stopping signal there), or did not start it (it had
                           ///< stopped); else it ended on its own, whatever rank 0 sent since
  int signal = 0;        ///< kind::stopped: the signal
  std::string out;       ///< the job's stdout and stderr
  std::string err;
};

/// Rank 0's end of `polymap run` over the ranks of an MPI job. The other ranks serve jobs
/// (serve_jobs()): each offers its own job slots, which follow rank 0's own in the runner's
/// slot numbers, rank after rank. Rank 0 reads the input, expands each command, keeps the
/// journal, the timeouts, retries, --halt and every output; a rank runs what it is sent, with
/// its own --bind and --nice on its own machine, and sends back each job's exit status and
/// output. Made by join_ranks(); its destructor tells every rank that the run is over.
/// Every MPI call is made by the thread that made the link.
class rank_link {
 public:
  virtual ~rank_link() = default;
  /// The job slots of the other ranks, together.
  [[nodiscard]] virtual std::size_t slots() const = 0;
  /// The name of the machine of the rank that serves `slot` (one of slots()).
  [[nodiscard]] virtual const std::string& host(std::size_t slot) const = 0;
  /// The name of the machine of `rank` (not 0).
  [[nodiscard]] virtual const std::string& rank_host(int rank) const = 0;
  /// The rank that serves `slot`.
  [[nodiscard]] virtual int rank(std::size_t slot) const = 0;
  /// The ranks of the job, rank 0 included.
  [[nodiscard]] virtual int ranks() const = 0;
  /// Starts `argv` in `slot`, which holds no job: its end comes through next().
  virtual void start(std::size_t slot, const std::vector<std::string>& argv) = 0;
  /// Sends `sig` to the process group of the job in `slot`, if it still runs; a SIGTERM
  /// is followed there by a SIGKILL of the group a second later, as the runner does.
  virtual void signal(std::size_t slot, int sig) = 0;
  /// What came from the other ranks, one at a time; nothing when nothing waits.
  [[nodiscard]] virtual std::optional<rank_event> next() = 0;
  /// How long (seconds) the runner may wait before it looks at next() again: 1 ms after a
  /// message came or went, longer (up to 50 ms) the longer none did.
  [[nodiscard]] virtual double poll_interval() const = 0;
  /// Whether the process that started this rank (mpirun, its daemon, srun's step) has gone:
  /// mpirun exits at a second Ctrl-C without passing a signal on, and leaves the ranks be.
  [[nodiscard]] virtual bool launcher_gone() const = 0;
};

/// `polymap run`'s part in an MPI job: nothing outside one (or in a job of one rank, or in a
/// polymap built without MPI); on rank 0, the link to the others; on any other rank, the
/// order to serve jobs (serve_jobs()). Every rank of the job calls it, after its options are
/// checked and before rank 0 reads the input; it initialises MPI if nothing has.
struct rank_role {
  std::unique_ptr<rank_link> link;  ///< rank 0
  bool serve = false;               ///< another rank
  /// The descriptors polymap was given (open before MPI was initialised): a job inherits
  /// these, and none of MPI's.
  std::vector<int> inherited;
};
/// @throws polymap::error when MPI cannot be initialised, or a rank does not answer as one
///   of polymap's
[[nodiscard]] rank_role join_ranks();

/// The environment of a job that `rank` of `ranks` runs: polymap's own, without the
/// variables with which the launcher told polymap its place in the MPI job (a job that is an
/// MPI program, or runs mpirun, starts a job of its own), and with POLYMAP_RANK and
/// POLYMAP_RANKS, which say where it runs.
[[nodiscard]] std::vector<std::string> job_environment(int rank, int ranks);

/// `strings` as a null-terminated array of pointers into them, for exec.
[[nodiscard]] std::vector<char*> pointers_to(std::vector<std::string>& strings);

/// A rank other than 0: runs the jobs rank 0 sends, `options.jobs` at a time, until rank 0
/// says that the run is over. A stopping signal (SIGINT, SIGTERM, SIGHUP) stops the jobs
/// here and is passed on to rank 0, whose run stops as if it had received it; so does the
/// end of the launcher that started this rank (as a SIGHUP).
/// @return the exit status of this rank's polymap: 0, or 1 after an error said on stderr
int serve_jobs(const run_options& options, const std::vector<int>& inherited);

}  // namespace polymap::cli::run
