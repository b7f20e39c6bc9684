#pragma once

// The PostgreSQL schema as versioned steps, applied by migrate() under an advisory lock.

#include "common/result.h"
#include "store/postgres/conn.h"

namespace parley::store::pg {

int latestSchemaVersion();

// Brings the database to the latest version: takes the advisory lock kMigrationLock (so nodes
// starting at once migrate one after the other), creates schema_migrations when missing, applies
// each missing step in its own transaction together with its schema_migrations row, and releases
// the lock. Returns the version. Unavailable when the database is newer than this binary.
Result<int> migrate(Conn& conn);

// The advisory lock key of migrations (pg_advisory_lock): "parley" in ASCII.
inline constexpr long long kMigrationLock = 0x7061726c6579;

}  // namespace parley::store::pg
