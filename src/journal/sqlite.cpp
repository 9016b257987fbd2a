// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#include "journal/sqlite.hpp"

#include <sqlite3.h>

#include <cstring>
#include <ctime>
#include <string>

namespace polymap::journal_detail {

namespace {

/// What the system said of a file SQLite could not open or read (EMFILE for a too-low
/// `ulimit -n`, EACCES...), for errors that come from it; "" otherwise.
std::string system_cause(sqlite3* db, int code) {
  const int primary = code & 0xff;
  if (db == nullptr || (primary != SQLITE_CANTOPEN && primary != SQLITE_IOERR)) return {};
  const int error = sqlite3_system_errno(db);
  return error != 0 ? std::string(" (") + std::strerror(error) + ")" : std::string();
}

sqlite3_vfs* base_vfs = nullptr;

int open_log_read_only(sqlite3_vfs* /*self*/, const char* name, sqlite3_file* file, int flags,
                       int* out_flags) {
  // A missing log then fails to open (SQLITE_CANTOPEN) instead of being created, and an
  // existing one is read as it is; the -shm file is left to `readonly_shm` in the URI.
  if ((flags & SQLITE_OPEN_WAL) != 0) {
    flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
  }
  // The default VFS's own object: its files then refer to it, as any of its files do.
  return base_vfs->xOpen(base_vfs, name, file, flags, out_flags);
}

}  // namespace

const char* reader_vfs() {
  static const char* const name = [] {
    base_vfs = sqlite3_vfs_find(nullptr);
    if (base_vfs == nullptr) throw sqlite_error(SQLITE_ERROR, "SQLite has no default VFS");
    // A copy of the default VFS (same file size and app data) with its own name and xOpen.
    static sqlite3_vfs vfs = *base_vfs;
    vfs.zName = "polymap-reader";
    vfs.pNext = nullptr;
    vfs.xOpen = open_log_read_only;
    check(nullptr, sqlite3_vfs_register(&vfs, 0), "registering the reader VFS");
    return vfs.zName;
  }();
  return name;
}

std::string file_uri(const std::string& path, std::string_view query) {
  // "file:///abs" for an absolute path: "file://abs" would name a host.
  std::string uri = path.rfind('/', 0) == 0 ? "file://" : "file:";
  constexpr const char* hex = "0123456789ABCDEF";
  for (const char c : path) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b >= 0x7f || c == '%' || c == '?' || c == '#') {
      uri += '%';
      uri += hex[b >> 4];
      uri += hex[b & 0xf];
    } else {
      uri += c;
    }
  }
  if (!query.empty()) {
    uri += '?';
    uri += query;
  }
  return uri;
}

void check(sqlite3* db, int code, std::string_view doing) {
  if (code == SQLITE_OK || code == SQLITE_ROW || code == SQLITE_DONE) return;
  std::string what(doing);
  what += ": ";
  what += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  what += system_cause(db, code);
  throw sqlite_error(code & 0xff, what);
}

statement::statement(sqlite3* db, std::string_view sql) : db_(db) {
  check(db_, sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr),
        "preparing a journal query");
}

statement::~statement() { sqlite3_finalize(stmt_); }

statement& statement::bind(int index, std::int64_t value) {
  check(db_, sqlite3_bind_int64(stmt_, index, value), "binding");
  return *this;
}

statement& statement::bind(int index, double value) {
  check(db_, sqlite3_bind_double(stmt_, index, value), "binding");
  return *this;
}

statement& statement::bind_text(int index, std::string_view value) {
  check(db_,
        sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                          SQLITE_TRANSIENT),
        "binding");
  return *this;
}

statement& statement::bind_blob(int index, std::string_view value) {
  check(db_,
        sqlite3_bind_blob(stmt_, index, value.data(), static_cast<int>(value.size()),
                          SQLITE_TRANSIENT),
        "binding");
  return *this;
}

statement& statement::bind_null(int index) {
  check(db_, sqlite3_bind_null(stmt_, index), "binding");
  return *this;
}

bool statement::step() {
  const int code = sqlite3_step(stmt_);
  if (code == SQLITE_ROW) return true;
  if (code == SQLITE_DONE) return false;
  sqlite3_reset(stmt_);
  check(db_, code, "journal query");
  return false;
}

void statement::reset() noexcept {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t statement::integer(int column) const noexcept {
  return sqlite3_column_int64(stmt_, column);
}

double statement::real(int column) const noexcept { return sqlite3_column_double(stmt_, column); }

bool statement::is_null(int column) const noexcept {
  return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
}

std::string statement::text(int column) const {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt_, column));
  const int size = sqlite3_column_bytes(stmt_, column);
  return data == nullptr ? std::string() : std::string(data, static_cast<std::size_t>(size));
}

database::database(const std::string& path, bool create, bool read_only)
    : database(path,
               read_only ? SQLITE_OPEN_READONLY
                         : SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0),
               nullptr) {}

database::database(const std::string& name, int flags, const char* vfs) {
  const int code = sqlite3_open_v2(name.c_str(), &db_, flags | SQLITE_OPEN_NOMUTEX, vfs);
  if (code != SQLITE_OK) {
    const std::string message =
        (db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(code)) + system_cause(db_, code);
    sqlite3_close(db_);
    db_ = nullptr;
    throw sqlite_error(code & 0xff, "opening: " + message);
  }
  sqlite3_extended_result_codes(db_, 0);
}

database::~database() { sqlite3_close(db_); }

void database::exec(std::string_view sql) {
  char* message = nullptr;
  const std::string text(sql);
  const int code = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &message);
  if (code != SQLITE_OK) {
    const std::string what =
        (message != nullptr ? message : sqlite3_errstr(code)) + system_cause(db_, code);
    sqlite3_free(message);
    throw sqlite_error(code & 0xff, what);
  }
}

void database::rollback() noexcept {
  if (sqlite3_get_autocommit(db_) == 0) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

namespace {

/// SQLite's busy handler for busy_timeout: waits 2 ms before each new try, until the tries
/// have waited the limit (at least: a sleep may last longer).
int try_again_soon(void* limit_ms, int tries) {
  constexpr int step_ms = 2;
  if (static_cast<long long>(tries) * step_ms >= *static_cast<const int*>(limit_ms)) return 0;
  const timespec step{.tv_sec = 0, .tv_nsec = step_ms * 1'000'000L};
  (void)nanosleep(&step, nullptr);
  return 1;
}

}  // namespace

void database::busy_timeout(int milliseconds) noexcept {
  busy_limit_ms_ = milliseconds;
  sqlite3_busy_handler(db_, try_again_soon, &busy_limit_ms_);
}

std::int64_t database::changes() const noexcept { return sqlite3_changes64(db_); }

}  // namespace polymap::journal_detail
