// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "journal/journal.hpp"

#include "host_name.hpp"
#include "journal/sqlite.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <utility>

namespace polymap {

namespace journal_detail {

/// A private copy of a journal and of its write-ahead log, in a folder of its own (0700)
/// under $TMPDIR, removed with this object: what a reader opens when SQLite cannot read
/// the journal in place without writing beside it.
class private_copy {
 public:
  /// @throws journal_error naming the file that could not be read or written
  private_copy(const std::string& journal_path, bool with_log) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/polymap-status-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
      throw journal_error("journal " + journal_path + ": cannot make a folder under " +
                          pattern.substr(0, pattern.rfind('/')) + " to read a copy of it (" +
                          std::strerror(errno) + ")");
    }
    dir_ = pattern;
    path_ = dir_ + "/journal.db";
    try {
      copy(journal_path, journal_path, path_);
      if (with_log) copy(journal_path, journal_path + "-wal", path_ + "-wal");
    } catch (...) {
      remove();
      throw;
    }
  }
  private_copy(const private_copy&) = delete;
  private_copy& operator=(const private_copy&) = delete;
  ~private_copy() { remove(); }

  [[nodiscard]] const std::string& path() const noexcept { return path_; }

 private:
  static void copy(const std::string& journal_path, const std::string& from,
                   const std::string& to) {
    const auto fail = [&](const std::string& what) {
      throw journal_error("journal " + journal_path + ": cannot " + what + " (" +
                          std::strerror(errno) + ")");
    };
    const int in = open(from.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) fail("read " + from);
    const int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
      close(in);
      fail("write its copy " + to);
    }
    char buffer[1 << 16];
    for (;;) {
      const ssize_t n = read(in, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        close(in);
        close(out);
        fail("read " + from);
      }
      if (n == 0) break;
      for (ssize_t done = 0; done < n;) {
        const ssize_t w = write(out, buffer + done, static_cast<std::size_t>(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
          if (w == 0) errno = ENOSPC;
          close(in);
          close(out);
          fail("write its copy " + to);
        }
        done += w;
      }
    }
    close(in);
    if (close(out) != 0) fail("write its copy " + to);
  }

  void remove() noexcept {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      unlink((path_ + suffix).c_str());
    }
    rmdir(dir_.c_str());
  }

  std::string dir_;
  std::string path_;
};

}  // namespace journal_detail

using journal_detail::database;
using journal_detail::sqlite_error;
using journal_detail::statement;

namespace {

// "pmap": marks a SQLite file as a polymap journal, so that another application's database
// is refused instead of being written to.
constexpr std::int64_t application_id = 0x706d6170;

double now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Seconds as a person writes them: "1", "0.2", "2.5" (std::to_string would say 1.000000).
std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", seconds);
  return text;
}

/// What a journal's files look like now (the file's identity, size and time of change, and
/// its log's): a reader that takes no lock compares this before and after reading, to know
/// that no runner wrote meanwhile.
std::string files_state(const std::string& path) {
  std::string state;
  for (const char* suffix : {"", "-wal"}) {
    struct stat st {};
    if (stat((path + suffix).c_str(), &st) != 0) {
      state += "-;";
      continue;
    }
    state += std::to_string(st.st_dev) + ':' + std::to_string(st.st_ino) + ':' +
             std::to_string(st.st_size) + ':' + std::to_string(st.st_mtim.tv_sec) + '.' +
             std::to_string(st.st_mtim.tv_nsec) + ';';
  }
  state += access((path + "-shm").c_str(), F_OK) == 0 ? "shm" : "-";
  return state;
}

bool pid_alive(std::int64_t pid) {
  // EPERM means a process exists that we may not signal: alive.
  return pid > 0 && (kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM);
}

/// What /proc says of process `pid` of this host: its state (field 3) and when it started,
/// in clock ticks since boot (field 22), which no change of the wall clock moves.
struct process_status {
  char state = '?';
  std::int64_t start_ticks = 0;
};

std::optional<process_status> process_status_of(std::int64_t pid) {
  std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(stat_file, stat);
  // The name (field 2) may hold spaces and parentheses: count from the last ')'.
  const std::size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 1));
  process_status status;
  std::string field;
  for (int n = 3; n <= 22; ++n) {
    if (!(fields >> field)) return std::nullopt;
    if (n == 3) status.state = field.front();
  }
  status.start_ticks = std::strtoll(field.c_str(), nullptr, 10);
  return status;
}

/// Unix time at which process `pid` of this host started (to within a second), as the
/// wall clock says now; nothing when /proc does not say.
std::optional<double> process_start(std::int64_t pid) {
  const std::optional<process_status> status = process_status_of(pid);
  if (!status) return std::nullopt;
  // The boot time as the wall clock put it when this process first asked.
  static const double boot = [] {
    std::ifstream proc_stat("/proc/stat");
    std::string key;
    double b = 0;
    while (proc_stat >> key) {
      if (key == "btime" && proc_stat >> b) break;
      proc_stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return b;
  }();
  const long ticks = sysconf(_SC_CLK_TCK);
  if (boot <= 0 || ticks <= 0) return std::nullopt;
  return boot + static_cast<double>(status->start_ticks) / static_cast<double>(ticks);
}

/// Whether a runner that has not finished still runs, seen from `host` at time `t`. On
/// another host its lease says so: it must not have run out (a live runner renews it every
/// 10 s). On the same host its pid says so, at once: the runner is dead when that pid is
/// gone, a zombie (the runner died and nobody reaped it) or now belongs to another process,
/// one that started at another tick since boot than the runner did (`start_ticks`, which a
/// step of the wall clock does not move); while the pid is its own, the runner lives even
/// past its lease (stopped by Ctrl-Z or a Slurm suspend, it renews nothing). Where /proc
/// cannot say, or for a runner of a journal written before polymap recorded ticks, the lease
/// must hold too, and such a runner's pid must have started before the runner registered.
bool runner_alive(const std::string& runner_host, std::int64_t pid, double started,
                  std::optional<std::int64_t> start_ticks, double heartbeat,
                  const std::string& host, double t) {
  const bool leased = heartbeat >= t - journal::lease_seconds;
  if (runner_host != host) return leased;
  if (!pid_alive(pid)) return false;
  const std::optional<process_status> status = process_status_of(pid);
  if (!status) return leased;  // no /proc: the pid's life and the lease are all there is
  if (status->state == 'Z' || status->state == 'X') return false;
  if (start_ticks) return status->start_ticks == *start_ticks;
  // btime has a resolution of a second: allow for it, and a little clock adjustment.
  constexpr double slack = 2;
  const std::optional<double> began = process_start(pid);
  return leased && (!began || *began <= started + slack);
}

/// `seconds` as SQLite's busy timeout: milliseconds in an int, the most it holds for a
/// longer wait (some 24.8 days; a wrapped, negative one would not wait at all).
int busy_milliseconds(double seconds) {
  const double ms = std::round(seconds * 1000);
  return ms >= static_cast<double>(std::numeric_limits<int>::max())
             ? std::numeric_limits<int>::max()
             : static_cast<int>(ms);
}

/// Whether `table` has `column` (journals of format 1 written before it was added have not,
/// until a runner opens them).
bool has_column(sqlite3* db, const char* table, const char* column) {
  statement found(db, std::string("SELECT count(*) FROM pragma_table_info('") + table +
                          "') WHERE name = '" + column + "'");
  found.step();
  return found.integer(0) != 0;
}

bool has_start_ticks(sqlite3* db) { return has_column(db, "runners", "start_ticks"); }

std::optional<std::int64_t> start_ticks_of(const statement& row, int column) {
  if (row.is_null(column)) return std::nullopt;
  return row.integer(column);
}

constexpr const char* schema = R"sql(
CREATE TABLE runners(
  id INTEGER PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL,
  heartbeat REAL NOT NULL, state INTEGER NOT NULL DEFAULT 0 /* 0 live, 1 finished, 2 dead */,
  start_ticks INTEGER /* its process's start in clock ticks since boot; added in format 1 */);
CREATE TABLE items(
  id INTEGER PRIMARY KEY, key BLOB NOT NULL UNIQUE, seq INTEGER NOT NULL, command TEXT NOT NULL,
  state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
  interruptions INTEGER NOT NULL DEFAULT 0, runner INTEGER, worker INTEGER, start REAL,
  end REAL, exit INTEGER, signal INTEGER, duration REAL, reason TEXT, stderr_tail BLOB,
  failures INTEGER NOT NULL DEFAULT 0 /* failed attempts, which --retries counts; format 1 */);
-- The claim walks this partial index in input order: O(log n) per claim however many are done.
CREATE INDEX items_claimable ON items(seq) WHERE state = 0 OR state = 4;
CREATE INDEX items_running ON items(runner) WHERE state = 1;
)sql";

}  // namespace

const char* state_name(item_state state) noexcept {
  switch (state) {
    case item_state::pending:
      return "pending";
    case item_state::running:
      return "running";
    case item_state::done:
      return "done";
    case item_state::failed:
      return "failed";
    case item_state::interrupted:
      return "interrupted";
  }
  return "?";
}

bool on_network_file_system(const std::string& path) noexcept {
  const std::size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  struct statfs fs {};
  if (statfs(dir.c_str(), &fs) != 0) return false;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0x6969UL:      // NFS
    case 0x517BUL:      // SMB
    case 0xFF534D42UL:  // CIFS
    case 0xFE534D42UL:  // SMB2
    case 0x00C36400UL:  // Ceph
    case 0x0BD00BD0UL:  // Lustre
    case 0x47504653UL:  // GPFS
    case 0x013111A8UL:  // IBRIX
    case 0x6B414653UL:  // AFS
      return true;
    default:
      return false;
  }
}

// Every public operation runs through here so that a SQLite failure becomes one message
// naming the file and what a user can do about it.
template <class Fn>
auto journal::guarded(const char* doing, Fn&& fn) {
  try {
    return fn();
  } catch (const sqlite_error& e) {
    const std::string where = "journal " + path_ + ": ";
    switch (e.code()) {
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        throw journal_error(where + "locked by another process for more than " +
                            seconds_text(lock_timeout_) + " s while " + doing +
                            " (raise --lock-timeout, or see which runner holds it)");
      case SQLITE_READONLY:
        throw journal_error(where + "read-only: cannot write while " + doing + " (" + e.what() +
                            ")");
      case SQLITE_FULL:
        throw journal_error(where + "the disk is full while " + doing +
                            "; what was recorded is kept: free space and run the same command "
                            "again to resume");
      case SQLITE_NOTADB:
      case SQLITE_CORRUPT:
        throw journal_error(where + "corrupt or not a polymap journal (" + e.what() +
                            "): move it away to start afresh");
      case SQLITE_CANTOPEN:
        throw journal_error(where + "cannot open it (" + e.what() + ")");
      case SQLITE_IOERR:
        throw journal_error(where + "I/O error while " + doing + " (" + e.what() +
                            "): is the disk full or the file too large?");
      default:
        throw journal_error(where + e.what() + " while " + doing);
    }
  }
}

std::int64_t journal::checked_format() {
  std::int64_t version = 0;
  {
    statement query(db_->handle(), "PRAGMA user_version");
    query.step();
    version = query.integer(0);
  }  // finalized here: an open statement would hold a read transaction
  if (version > format_version) {
    throw journal_error("journal " + path_ + ": written by a newer polymap (format " +
                        std::to_string(version) + "; this one reads up to " +
                        std::to_string(format_version) + ")");
  }
  return version;
}

// A reader must work on any journal its user may read (in a folder they may not write, on
// a read-only file system) and leave nothing beside it: a -wal or -shm file it created would
// be its user's, and could keep the journal's owner from writing it, or another user from
// reading it. SQLite reads a WAL database read-only only when the -wal and -shm files exist
// or can be created (https://www.sqlite.org/wal.html, "Read-Only Databases"), so:
// - no -wal file: everything is in the file itself (the last runner to close checkpointed
//   it). It is read as `immutable`, which opens nothing else and takes no lock; the files
//   are compared before and after, and read again if a runner wrote meanwhile.
// - a -wal and a readable -shm (a runner is live, or was killed): read in place under
//   SQLite's locks, through reader_vfs() (which never creates a log) and with
//   `readonly_shm` (which never creates a -shm; SQLite builds the WAL index in private
//   memory when it cannot use the file's).
// - a -wal without a readable -shm (left by a runner whose -shm was removed), or when the
//   above failed: the file and its log are copied into a private folder, which SQLite
//   recovers and reads, checked against the originals as for `immutable`.
void journal::open_reader(bool copy) {
  db_.reset();
  copy_.reset();
  opened_state_ = files_state(file_);
  const std::string log = file_ + "-wal";
  const std::string shm = file_ + "-shm";
  const bool has_log = access(log.c_str(), F_OK) == 0;
  constexpr int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI;
  if (!has_log && !copy) {
    read_mode_ = read_mode::immutable;
    db_ = std::make_unique<database>(journal_detail::file_uri(file_, "immutable=1"), flags,
                                     journal_detail::reader_vfs());
  } else if (!copy && access(shm.c_str(), R_OK) == 0) {
    read_mode_ = read_mode::shared;
    // `readonly_shm` even where the -shm could be written: a reader must never create one
    // (a runner that is closing removes it before its log), which would then belong to the
    // reader's user and could lock the runners of another out.
    db_ = std::make_unique<database>(journal_detail::file_uri(file_, "mode=ro&readonly_shm=1"),
                                     flags, journal_detail::reader_vfs());
    db_->busy_timeout(busy_milliseconds(lock_timeout_));
  } else {
    read_mode_ = read_mode::copy;
    copy_ = std::make_unique<journal_detail::private_copy>(file_, has_log);
    db_ = std::make_unique<database>(copy_->path(), false, false);
  }
  const std::int64_t found = checked_format();
  if (found == 0) {
    throw journal_error("journal " + path_ + ": not a polymap journal (no format version)");
  }
  check_schema();
}

template <class Fn>
auto journal::read_snapshot(const char* doing, Fn&& fn) {
  return guarded(doing, [&] {
    constexpr int attempts = 5;
    bool copy = false;
    for (int attempt = 1;; ++attempt) {
      const std::string before = files_state(file_);
      try {
        // In place, SQLite's locks make every transaction a current snapshot; an immutable
        // read or a copy is current only while the files are as they were.
        if (!db_ || attempt > 1 || (read_mode_ != read_mode::shared && before != opened_state_)) {
          open_reader(copy);
        }
        auto result = fn();
        const bool current = read_mode_ == read_mode::shared || files_state(file_) == before;
        if (read_mode_ == read_mode::copy) {
          // Not kept between reads (watch sleeps between them): an interrupted watch would
          // leave the journal's commands and output in the temporary folder.
          db_.reset();
          copy_.reset();
        }
        if (current) return result;
        if (attempt == attempts) {
          throw journal_error("journal " + path_ + ": it changed while it was read, " +
                              std::to_string(attempts) + " times in a row; try again");
        }
      } catch (const sqlite_error& e) {
        if (attempt == attempts) throw;
        if (files_state(file_) == before) {
          // Nothing moved: SQLite cannot read it in place (it would have to write): a copy.
          const bool cannot = e.code() == SQLITE_CANTOPEN || e.code() == SQLITE_READONLY;
          if (read_mode_ != read_mode::shared || copy || !cannot) throw;
          copy = true;
        }
      } catch (const journal_error&) {
        // A file that went away while it was copied: a runner ended meanwhile.
        if (attempt == attempts || files_state(file_) == before) throw;
      }
      db_.reset();
      copy_.reset();
      poll(nullptr, 0, 10 * attempt);  // let the runner finish what it is writing
    }
  });
}

journal::journal(std::string path, const journal_options& options)
    : path_(std::move(path)), lock_timeout_(options.lock_timeout) {
  if (on_network_file_system(path_)) {
    throw journal_error("journal " + path_ +
                        ": on a network file system, where SQLite's locking does not work; "
                        "put it on a local disk (e.g. under /tmp or node-local scratch)");
  }
  if (access(path_.c_str(), F_OK) != 0) {
    if (!options.create || options.read_only) {
      throw journal_error("journal " + path_ + ": no such file");
    }
    // Created here rather than by SQLite so that it is 0600 whatever the umask; the -wal
    // and -shm files take the database file's mode.
    const int fd = open(path_.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 && errno != EEXIST) {
      throw journal_error("journal " + path_ + ": cannot create it (" +
                          std::generic_category().message(errno) + ")");
    }
    if (fd >= 0) close(fd);
  } else if (!options.read_only && access(path_.c_str(), W_OK) != 0) {
    throw journal_error("journal " + path_ + ": read-only (no write permission)");
  }
  // SQLite follows a symbolic link to the file, and keeps the -wal and -shm beside it.
  char* resolved = realpath(path_.c_str(), nullptr);
  file_ = resolved != nullptr ? resolved : path_;
  std::free(resolved);
  // A FIFO would hang the open, and SQLite would put a rollback journal beside a device.
  struct stat st {};
  if (stat(file_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    const char* what = S_ISDIR(st.st_mode)    ? "it is a directory"
                       : S_ISFIFO(st.st_mode) ? "it is a FIFO"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "it is a device"
                                                                     : "it is not a regular file";
    throw journal_error("journal " + path_ + ": " + what + ", not a journal file");
  }
  if (options.read_only) {
    if (access(path_.c_str(), R_OK) != 0) {
      throw journal_error("journal " + path_ + ": cannot read it (" + std::strerror(errno) + ")");
    }
    read_only_ = true;
    read_snapshot("opening", [] { return 0; });
    return;
  }
  guarded("opening", [&] {
    // Runners that start together race to turn a new file to WAL mode. SQLite answers one
    // of two connections that would otherwise deadlock with SQLITE_BUSY at once, without
    // its busy handler: so the opening as a whole is tried again, up to the lock timeout.
    const auto give_up = std::chrono::steady_clock::now() +
                         std::chrono::duration<double>(lock_timeout_);
    for (int attempt = 1;; ++attempt) {
      try {
        db_ = std::make_unique<database>(file_, false, options.read_only);
        db_->busy_timeout(busy_milliseconds(lock_timeout_));
        const std::int64_t found = checked_format();
        // NORMAL in WAL mode: durable across crashes of the process (kill -9), not across
        // power loss, where the last few ends may roll back and those items run again.
        db_->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL");
        if (found == 0) {
          create_schema();
        } else {
          check_schema();
          if (!options.read_only) add_columns();
        }
        return;
      } catch (const sqlite_error& e) {
        if (e.code() != SQLITE_BUSY || std::chrono::steady_clock::now() >= give_up) throw;
        db_.reset();
        poll(nullptr, 0, std::min(5 * attempt, 100));  // the other runner's turn
      }
    }
  });
}

journal::~journal() = default;

void journal::create_schema() {
  db_->transaction("BEGIN IMMEDIATE", [&] {
    statement version(db_->handle(), "PRAGMA user_version");
    version.step();
    const bool empty = version.integer(0) == 0;  // another runner may have created it meanwhile
    version.reset();
    if (empty) {
      statement tables(db_->handle(), "SELECT count(*) FROM sqlite_schema");
      tables.step();
      const std::int64_t count = tables.integer(0);
      tables.reset();
      if (count != 0) {
        throw journal_error("journal " + path_ +
                            ": a SQLite database of another application, not a polymap journal");
      }
      db_->exec(schema);
      db_->exec("PRAGMA application_id=" + std::to_string(application_id) +
                "; PRAGMA user_version=" + std::to_string(format_version));
    }
  });
}

void journal::check_schema() {
  statement id(db_->handle(), "PRAGMA application_id");
  id.step();
  if (id.integer(0) != application_id) {
    throw journal_error("journal " + path_ +
                        ": a SQLite database of another application, not a polymap journal");
  }
}

void journal::add_columns() {
  const auto missing = [&] {
    return !has_start_ticks(db_->handle()) || !has_column(db_->handle(), "items", "failures");
  };
  if (missing()) {
    db_->transaction("BEGIN IMMEDIATE", [&] {
      // Another runner may have added them meanwhile.
      if (!has_start_ticks(db_->handle())) {
        db_->exec("ALTER TABLE runners ADD COLUMN start_ticks INTEGER");
      }
      if (!has_column(db_->handle(), "items", "failures")) {
        db_->exec("ALTER TABLE items ADD COLUMN failures INTEGER NOT NULL DEFAULT 0");
      }
    });
  }
  start_ticks_ = true;
}

std::string journal::start_ticks_column() {
  // A column once there stays: only its absence is looked at again.
  if (!start_ticks_) start_ticks_ = has_start_ticks(db_->handle());
  return start_ticks_ ? "start_ticks" : "NULL";
}

void journal::register_runner() {
  guarded("registering this runner", [&] {
    const double t = now();
    statement insert(db_->handle(),
                     "INSERT INTO runners(host, pid, started, heartbeat, start_ticks) "
                     "VALUES(?1, ?2, ?3, ?3, ?4)");
    insert.bind_text(1, detail::host_name())
        .bind(2, static_cast<std::int64_t>(getpid()))
        .bind(3, t);
    if (const std::optional<process_status> self = process_status_of(getpid())) {
      insert.bind(4, self->start_ticks);
    } else {
      insert.bind_null(4);
    }
    insert.step();
    runner_ = sqlite3_last_insert_rowid(db_->handle());
  });
}

void journal::add_items(const std::vector<journal_item>& items) {
  guarded("adding the items", [&] {
    // The batch lives in a temporary table of this connection: claims join against it, so
    // that runners of other commands sharing the file never take each other's items.
    db_->exec("CREATE TEMP TABLE IF NOT EXISTS batch(key BLOB PRIMARY KEY) WITHOUT ROWID");
    statement insert(db_->handle(),
                     "INSERT OR IGNORE INTO items(key, seq, command) VALUES(?1, ?2, ?3)");
    statement mine(db_->handle(), "INSERT OR IGNORE INTO temp.batch(key) VALUES(?1)");
    // In parts, with a pause between them: a batch of millions takes seconds to add, which
    // in one transaction would hold the lock from every other runner of the file (one
    // that starts at the same moment, one that records its ends) for longer than its
    // --lock-timeout.
    constexpr std::size_t part = 10'000;
    constexpr timespec pause{.tv_sec = 0, .tv_nsec = 5'000'000L};
    for (std::size_t from = 0; from < items.size(); from += part) {
      if (from != 0) (void)nanosleep(&pause, nullptr);
      const std::size_t to = std::min(items.size(), from + part);
      db_->transaction("BEGIN IMMEDIATE", [&] {
        for (std::size_t i = from; i < to; ++i) {
          const journal_item& item = items[i];
          insert.bind_blob(1, item.key).bind(2, item.seq).bind_text(3, item.command);
          insert.step();
          insert.reset();
          mine.bind_blob(1, item.key);
          mine.step();
          mine.reset();
        }
      });
    }
  });
}

std::int64_t journal::retry_failed() {
  return guarded("resetting failed items", [&] {
    statement update(db_->handle(),
                     "UPDATE items SET state = 0, failures = 0 WHERE state = 3 AND key IN "
                     "temp.batch");
    update.step();
    return db_->changes();
  });
}

std::int64_t journal::reclaim_dead() {
  return guarded("reclaiming the items of dead runners", [&] {
    return db_->transaction("BEGIN IMMEDIATE", [&] {
      const std::string host = detail::host_name();
      const double t = now();
      std::vector<std::int64_t> dead;
      statement live(db_->handle(), "SELECT id, host, pid, started, heartbeat, " +
                                        start_ticks_column() +
                                        " FROM runners WHERE state = 0");
      while (live.step()) {
        const bool gone = !runner_alive(live.text(1), live.integer(2), live.real(3),
                                        start_ticks_of(live, 5), live.real(4), host, t);
        if (gone && live.integer(0) != runner_) dead.push_back(live.integer(0));
      }
      std::int64_t reclaimed = 0;
      statement mark(db_->handle(), "UPDATE runners SET state = 2 WHERE id = ?1");
      statement items(db_->handle(),
                      "UPDATE items SET state = 4, interruptions = interruptions + 1, "
                      "reason = 'runner died' WHERE state = 1 AND runner = ?1");
      for (std::int64_t id : dead) {
        mark.bind(1, id);
        mark.step();
        mark.reset();
        items.bind(1, id);
        items.step();
        reclaimed += db_->changes();
        items.reset();
      }
      // A runner that stopped on a journal error may still have marked itself finished:
      // whatever it held is interrupted too, or no one would ever run it.
      statement orphans(db_->handle(),
                        "UPDATE items SET state = 4, interruptions = interruptions + 1, "
                        "reason = 'runner stopped' WHERE state = 1 AND runner IN "
                        "(SELECT id FROM runners WHERE state != 0)");
      orphans.step();
      reclaimed += db_->changes();
      return reclaimed;
    });
  });
}

std::vector<claimed_item> journal::commit(const std::vector<item_end>& ends, std::size_t claim) {
  if (ends.empty() && claim == 0) return {};
  return guarded("recording item ends", [&] {
    if (!take_) {
      begin_ = std::make_unique<statement>(db_->handle(), "BEGIN IMMEDIATE");
      commit_ = std::make_unique<statement>(db_->handle(), "COMMIT");
      end_ = std::make_unique<statement>(
          db_->handle(),
          "UPDATE items SET state = ?1, attempts = attempts + ?2, worker = ?3, start = ?4, "
          "end = ?5, exit = ?6, signal = ?7, duration = ?5 - ?4, reason = ?8, stderr_tail = ?9, "
          "interruptions = interruptions + ?10, failures = failures + ?13, "
          "runner = CASE WHEN ?1 = 0 THEN NULL ELSE runner END "
          "WHERE id = ?11 AND state = 1 AND runner = ?12");
      // INDEXED BY: left to itself the planner walks the whole batch and sorts it, which
      // makes every claim O(n); the partial index yields claimable items in order.
      take_ = std::make_unique<statement>(
          db_->handle(),
          "UPDATE items SET state = 1, runner = ?1 WHERE id IN (SELECT id FROM items "
          "INDEXED BY items_claimable WHERE (state = 0 OR state = 4) "
          "AND key IN temp.batch ORDER BY seq LIMIT ?2) RETURNING id, key, failures");
    }
    begin_->step();
    begin_->reset();
    try {
      statement& end = *end_;
      for (const item_end& e : ends) {
        end.bind(1, static_cast<std::int64_t>(e.state))
            .bind(2, static_cast<std::int64_t>(e.attempts))
            .bind(3, static_cast<std::int64_t>(e.worker))
            .bind(4, e.start)
            .bind(5, e.end)
            .bind(6, static_cast<std::int64_t>(e.exit_code))
            .bind(7, static_cast<std::int64_t>(e.signal));
        if (e.reason.empty()) {
          end.bind_null(8);
        } else {
          end.bind_text(8, e.reason);
        }
        if (e.stderr_tail.empty()) {
          end.bind_null(9);
        } else {
          end.bind_blob(9, e.stderr_tail);
        }
        end.bind(10, static_cast<std::int64_t>(e.state == item_state::interrupted ? 1 : 0))
            .bind(11, e.id)
            .bind(12, runner_)
            .bind(13, static_cast<std::int64_t>(e.failures));
        end.step();
        end.reset();
      }
      std::vector<claimed_item> claimed;
      if (claim > 0) {
        take_->bind(1, runner_).bind(2, static_cast<std::int64_t>(claim));
        while (take_->step()) {
          claimed.push_back(
              {take_->integer(0), take_->text(1), static_cast<int>(take_->integer(2))});
        }
        take_->reset();
      }
      commit_->step();
      commit_->reset();
      return claimed;
    } catch (...) {
      end_->reset();
      take_->reset();
      commit_->reset();
      db_->rollback();
      throw;
    }
  });
}

void journal::renew_lease() {
  guarded("renewing the lease", [&] {
    // A runner that renews is alive: one that others took for dead after its lease lapsed
    // (stopped for a while, or blocked on a lock) is live again, so that the items it claims
    // from now on are not taken from it. What was reclaimed stays reclaimed: its ends of
    // those items no longer match and are not recorded.
    statement renew(db_->handle(),
                    "UPDATE runners SET heartbeat = ?1, state = CASE WHEN state = 2 THEN 0 ELSE "
                    "state END WHERE id = ?2");
    renew.bind(1, now()).bind(2, runner_);
    renew.step();
  });
}

void journal::finish_runner() noexcept {
  if (runner_ == 0) return;
  try {
    guarded("finishing", [&] {
      statement finish(db_->handle(), "UPDATE runners SET state = 1, heartbeat = ?1 WHERE id = ?2");
      finish.bind(1, now()).bind(2, runner_);
      finish.step();
    });
  } catch (...) {
    // On the way out with a journal that cannot be written: the runner's pid is gone once
    // it exits, so the next runner reclaims whatever it still held.
  }
}

std::int64_t journal::count_in_batch(const char* states) {
  return guarded("counting items", [&] {
    statement count(db_->handle(), std::string("SELECT count(*) FROM items WHERE state IN ") +
                                       states + " AND key IN temp.batch");
    count.step();
    return count.integer(0);
  });
}

std::int64_t journal::unfinished() { return count_in_batch("(0, 1, 4)"); }

std::int64_t journal::failed() { return count_in_batch("(3)"); }

std::int64_t journal::not_done_elsewhere() {
  return guarded("counting items", [&] {
    statement count(db_->handle(), "SELECT count(*) FROM items WHERE state IN (0, 3, 4) AND "
                                   "key NOT IN temp.batch");
    count.step();
    return count.integer(0);
  });
}

std::unordered_map<std::string, item_state> journal::states() {
  const auto read = [&] {
    return db_->transaction("BEGIN", [&] {
      std::unordered_map<std::string, item_state> all;
      statement rows(db_->handle(), "SELECT key, state FROM items");
      while (rows.step()) all.emplace(rows.text(0), static_cast<item_state>(rows.integer(1)));
      return all;
    });
  };
  if (read_only_) return read_snapshot("reading", read);
  return guarded("reading", read);
}

journal_summary journal::summary(std::size_t top) {
  if (read_only_) return read_snapshot("reading", [&] { return read_summary(top); });
  return guarded("reading", [&] { return read_summary(top); });
}

journal_summary journal::read_summary(std::size_t top) {
  // One transaction: a consistent snapshot for all the queries.
  return db_->transaction("BEGIN", [&] {
    journal_summary s;
    statement counts(db_->handle(), "SELECT state, count(*) FROM items GROUP BY state");
    while (counts.step()) {
      const std::int64_t state = counts.integer(0);
      if (state >= 0 && state < static_cast<std::int64_t>(s.counts.size())) {
        s.counts[static_cast<std::size_t>(state)] = counts.integer(1);
      }
    }
    const auto rows = [&](const char* sql, std::vector<journal_row>& out) {
      statement q(db_->handle(), sql);
      q.bind(1, static_cast<std::int64_t>(top));
      while (q.step()) {
        journal_row r;
        r.id = q.integer(0);
        r.seq = q.integer(1);
        r.command = q.text(2);
        r.state = static_cast<item_state>(q.integer(3));
        r.attempts = static_cast<int>(q.integer(4));
        r.exit_code = static_cast<int>(q.integer(5));
        r.signal = static_cast<int>(q.integer(6));
        r.duration = q.real(7);
        r.reason = q.text(8);
        r.stderr_tail = q.text(9);
        out.push_back(std::move(r));
      }
    };
    rows("SELECT id, seq, command, state, attempts, exit, signal, duration, reason, stderr_tail "
         "FROM items WHERE state = 3 ORDER BY seq LIMIT ?1",
         s.failures);
    rows("SELECT id, seq, command, state, attempts, exit, signal, duration, reason, stderr_tail "
         "FROM items WHERE state = 2 ORDER BY duration DESC LIMIT ?1",
         s.slowest);
    const std::string host = detail::host_name();
    const double t = now();
    std::int64_t live_running = 0;
    statement runners(db_->handle(),
                      "SELECT r.id, r.host, r.pid, r.started, r.heartbeat, r.state, "
                      "(SELECT count(*) FROM items i WHERE i.state = 1 AND i.runner = r.id), " +
                          start_ticks_column() + " FROM runners r ORDER BY r.id");
    while (runners.step()) {
      journal_runner r;
      r.id = runners.integer(0);
      r.host = runners.text(1);
      r.pid = runners.integer(2);
      r.started = runners.real(3);
      r.heartbeat = runners.real(4);
      r.running = runners.integer(6);
      r.alive = runners.integer(5) == 0 && runner_alive(r.host, r.pid, r.started,
                                                        start_ticks_of(runners, 7), r.heartbeat,
                                                        host, t);
      if (r.alive) live_running += r.running;
      if (r.alive || r.running > 0) s.runners.push_back(std::move(r));
    }
    // Running items whose runner is not live (or that no runner holds): nothing runs them.
    s.runner_gone = s.count(item_state::running) - live_running;
    return s;
  });
}

}  // namespace polymap
