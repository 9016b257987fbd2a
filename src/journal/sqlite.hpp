// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

struct sqlite3;
struct sqlite3_stmt;

namespace polymap::journal_detail {

/// A failed SQLite call, with SQLite's primary result code so that callers can turn the
/// common ones (busy, read-only, full, not a database) into messages that name the cause.
class sqlite_error : public std::runtime_error {
 public:
  sqlite_error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  /// The primary result code (SQLITE_BUSY, SQLITE_FULL...).
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

/// One prepared statement: bind by 1-based index, step, read columns.
/// Thread safety: none; used by the thread that owns its connection.
class statement {
 public:
  statement(sqlite3* db, std::string_view sql);
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement();

  /// Binds parameter `index` (1-based). @throws sqlite_error
  statement& bind(int index, std::int64_t value);
  statement& bind(int index, double value);
  statement& bind_text(int index, std::string_view value);
  statement& bind_blob(int index, std::string_view value);
  statement& bind_null(int index);

  /// Runs to the next row. @return true when a row is there @throws sqlite_error
  bool step();
  /// Resets for another run with new bindings. noexcept: the error, if any, was thrown by step.
  void reset() noexcept;

  [[nodiscard]] std::int64_t integer(int column) const noexcept;
  [[nodiscard]] double real(int column) const noexcept;
  [[nodiscard]] bool is_null(int column) const noexcept;
  [[nodiscard]] std::string text(int column) const;

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

/// An open SQLite connection.
/// Thread safety: none; one connection per thread.
class database {
 public:
  /// Opens (creating when `create`) the file at `path` read-write, or only for reading
  /// when `read_only`. @throws sqlite_error
  database(const std::string& path, bool create, bool read_only = false);
  /// Opens `name` (a path, or a `file:` URI with SQLITE_OPEN_URI) with SQLite's open
  /// `flags`, through the VFS named `vfs` (nullptr: the default one). @throws sqlite_error
  database(const std::string& name, int flags, const char* vfs);
  database(const database&) = delete;
  database& operator=(const database&) = delete;
  ~database();

  /// Runs SQL without results. @throws sqlite_error
  void exec(std::string_view sql);
  /// Rolls back the open transaction, if any: SQLite has already rolled back after some
  /// errors (SQLITE_FULL, SQLITE_IOERR), and a second rollback must not hide the first error.
  void rollback() noexcept;
  /// Runs `body` in a transaction opened with `begin` ("BEGIN", "BEGIN IMMEDIATE"):
  /// committed when `body` returns, rolled back when it or the commit throws.
  /// @return what `body` returns @throws sqlite_error, or what `body` throws
  template <class Body>
  decltype(auto) transaction(std::string_view begin, Body&& body) {
    exec(begin);
    try {
      if constexpr (std::is_void_v<std::invoke_result_t<Body&>>) {
        body();
        exec("COMMIT");
      } else {
        auto result = body();
        exec("COMMIT");
        return result;
      }
    } catch (...) {
      rollback();
      throw;
    }
  }
  /// How long a write waits for another connection's lock before SQLITE_BUSY. It tries
  /// again every 2 ms meanwhile: SQLite's own handler waits up to 100 ms between tries, and
  /// so misses the short gaps between the transactions of a runner that adds a large batch
  /// in parts (journal::add_items).
  void busy_timeout(int milliseconds) noexcept;
  /// Rows changed by the last statement.
  [[nodiscard]] std::int64_t changes() const noexcept;
  [[nodiscard]] sqlite3* handle() const noexcept { return db_; }

 private:
  sqlite3* db_ = nullptr;
  int busy_limit_ms_ = 0;  // busy_timeout's, which the busy handler reads
};

/// The name of a VFS for readers that must leave nothing behind: the default VFS, except
/// that it opens a write-ahead log read-only and never creates one (SQLite creates a
/// missing `-wal`, even for a read-only connection, when the directory lets it). Registered
/// on first use. @throws sqlite_error when SQLite has no default VFS
[[nodiscard]] const char* reader_vfs();

/// `path` as a `file:` URI with the query `query` ("mode=ro&readonly_shm=1"): the bytes
/// that a URI reserves ('?', '#', '%', controls, non-ASCII) percent-encoded.
[[nodiscard]] std::string file_uri(const std::string& path, std::string_view query);

/// Throws sqlite_error for `code` unless it is SQLITE_OK, SQLITE_ROW or SQLITE_DONE.
/// @throws sqlite_error
void check(sqlite3* db, int code, std::string_view doing);

}  // namespace polymap::journal_detail
