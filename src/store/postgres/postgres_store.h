#pragma once

// The PostgreSQL store (cluster mode): every store interface on a PostgreSQL database through
// libpq. See README.md in this folder.

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::store {

struct PostgresOptions {
  int readers = 4;       // connections for reads (the writer has its own)
  int max_batch = 1000;  // writes committed together at most (group commit)
};

// Write counters (group commit): transactions run, writes in them, the largest batch.
struct PostgresWriteStats {
  std::int64_t transactions = 0;
  std::int64_t writes = 0;
  std::int64_t largest_batch = 0;
  // Transactions whose COMMIT lost its answer (the connection dropped), by the outcome the
  // server gave when asked afterwards (unknown: not learnt within 30 s).
  std::int64_t lost_commits_committed = 0;
  std::int64_t lost_commits_aborted = 0;
  std::int64_t lost_commits_unknown = 0;
};

// Connects to `uri` (postgres://USER[:PW]@HOST:PORT/DB or postgresql://..., libpq parameters
// such as sslmode accepted), migrates the schema to the latest version under an advisory lock
// (several nodes may start at once) and opens the connections. Invalid for a bad URI,
// Unavailable when the server cannot be reached or its schema is newer than this binary.
// `clock` must outlive the store.
Result<std::unique_ptr<Store>> openPostgresStore(const std::string& uri, const Clock& clock,
                                                 const PostgresOptions& options = {});

// True when `spec` names a PostgreSQL store (starts with postgres:// or postgresql://).
bool isPostgresUri(const std::string& spec);
// Invalid with the reason when `uri` is not a URI libpq accepts.
Status checkPostgresUri(const std::string& uri);

// The latest schema version this binary knows (the last row of schema_migrations).
int postgresLatestSchemaVersion();

// The statement of ClusterStore::claimLeases ($1 node, $2 new expiry, $3 now, $4 limit), for
// tests that check its plan.
const char* postgresLeaseClaimSql();

// Group-commit counters; Invalid for a store that is not a PostgreSQL store.
Result<PostgresWriteStats> postgresWriteStats(Store& store);
// Those counters in Prometheus text ("" for a store that is not a PostgreSQL store).
std::string postgresPrometheusText(Store& store);

}  // namespace parley::store
