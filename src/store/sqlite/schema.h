#pragma once

// The SQLite schema as an ordered list of migrations. PRAGMA user_version holds the version of
// the last applied step; each step runs in its own transaction together with the version bump.

#include <span>

#include "common/result.h"
#include "store/sqlite/conn.h"

namespace parley::store::sqlite {

struct Migration {
  int version;      // user_version after this step; steps are numbered 1, 2, 3, ...
  const char* sql;  // DDL applied in one transaction
};

// All steps, oldest first.
std::span<const Migration> migrations();
// The version of the last step.
int latestSchemaVersion();

// Brings the database on `conn` (the writer connection) from its user_version up to `target`
// (0 = latest). Unavailable when the file is newer than this binary knows. Returns the version.
Result<int> migrate(Conn& conn, int target);

}  // namespace parley::store::sqlite
