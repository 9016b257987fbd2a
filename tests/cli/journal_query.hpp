// SPDX-FileCopyrightText: polymap contributors
// SPDX-License-Identifier: Apache-2.0
// Reads a journal's database directly, for tests that check what it recorded.
#pragma once

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>
#include <utility>
#include <vector>

namespace polymap::test {

/// Rows of a query on a journal, each column as text.
inline std::vector<std::vector<std::string>> query(const std::string& path,
                                                   const std::string& sql) {
  sqlite3* db = nullptr;
  std::vector<std::vector<std::string>> rows;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    sqlite3_close(db);
    ADD_FAILURE() << "cannot open " << path;
    return rows;
  }
  sqlite3_busy_timeout(db, 10000);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sqlite3_errmsg(db) << " in " << sql;
  }
  while (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
      const auto* text = sqlite3_column_text(stmt, c);
      row.emplace_back(text == nullptr ? "" : reinterpret_cast<const char*>(text));
    }
    rows.push_back(std::move(row));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

/// The first column of the first row of a query on a journal ("" for none).
inline std::string scalar(const std::string& path, const std::string& sql) {
  const auto rows = query(path, sql);
  return rows.empty() || rows[0].empty() ? "" : rows[0][0];
}

/// The items of a journal in `state` (journal.hpp's item_state), "1,4" ("" for none).
inline std::string items_in_state(const std::string& journal, int state) {
  return scalar(journal, "SELECT group_concat(seq) FROM (SELECT seq FROM items WHERE state = " +
                             std::to_string(state) + " ORDER BY seq)");
}

}  // namespace polymap::test
