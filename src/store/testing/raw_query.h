#pragma once

// Runs one SQL statement on a database file through its own raw SQLite connection (SQLite's
// default VFS), bypassing the store: for tests that look at the file as another process would.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>

namespace parley::testing {

// Returns the first column of the first row as text ("" when none).
inline std::string rawQuery(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  std::string out;
  if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

}  // namespace parley::testing
