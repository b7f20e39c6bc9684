#pragma once

// The SQLite Store (the default). One file in WAL mode; one writer thread that commits queued
// writes in groups; a small pool of read-only connections for reads. See store/README.md.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::store {

struct SqliteOptions {
  // PRAGMA synchronous in WAL mode.
  enum class Sync {
    // Commits reach the OS (write(2)) before a write returns, so they survive a crash or SIGKILL
    // of the process; a power loss or kernel crash may lose the last commits (never corrupts).
    kNormal,
    // Also fsyncs the WAL on every commit (group commit amortises it): survives power loss.
    kFull,
  };
  // Default: kNormal.
  Sync sync = Sync::kNormal;
  // Read-only connections in the reader pool. Default: 4. REQUIRES: >= 1.
  int readers = 4;
  // How long a statement waits for a lock held by another process. Default: 5000.
  int busy_timeout_ms = 5000;
  // Most writes committed in one transaction. Default: 1024. REQUIRES: >= 1.
  int max_batch = 1024;
  // WAL size in pages at which a background thread checkpoints it into the database file, so
  // no write pays for the copy and its fsyncs. 0: SQLite's own auto-checkpoint instead (at
  // 1000 pages, inside the commit that crosses it). Default: 4000.
  int checkpoint_pages = 4000;
  // With background checkpoints: WAL size in pages past which the writer also checkpoints
  // itself between two batches (only that lets the WAL restart while writes keep coming).
  // Default: 32000.
  int wal_max_pages = 32000;
  // How long asynchronous turn records (BotStore::appendTurnAsync) are buffered before they
  // are written together (only the records that survive the bot's pruning are written). A
  // crash loses at most this much of the turn history; conversations are never buffered. A
  // read or synchronous write of turns writes the buffer first. 0: written one by one, at once.
  // Default: 200.
  int turn_flush_ms = 200;
  // An asynchronous write submitted while the writer is idle (nothing queued, nobody writing,
  // no batch in the last 300 µs) is committed at once on the caller's thread, its callback
  // running before the call returns, instead of by the writer thread: at low load that saves
  // waking the writer and then the caller's threads (latency). Under load writes queue behind
  // the one being written and the writer thread group-commits them. false: every asynchronous
  // write goes to the writer thread. Default: true.
  bool lead_idle_async_writes = true;
  // With kNormal: the writer's connection goes through the batched-WAL VFS
  // (sqlite/batched_wal_vfs.h), which writes a commit's WAL frames with one pwrite instead of
  // two per page, with the same durability. false: SQLite's default VFS. Default: true.
  bool batch_wal_writes = true;
  // Migrate only up to this version (0 = latest). For migration tests only.
  int schema_version_for_test = 0;
};

// Opens (creating when absent) the database at `path` and migrates it to the latest schema.
// `clock` fills timestamps that callers leave 0 and decides when context properties expire; it
// must outlive the store. Unavailable when the file cannot be opened or is newer than this
// binary; Invalid for ":memory:" (the reader pool needs a file).
Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path, const Clock& clock);
Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path, const Clock& clock,
                                               const SqliteOptions& options);

// The schema version a freshly opened store has.
int sqliteLatestSchemaVersion();

// Counters of the writer thread since the store was opened (for metrics and tests).
struct SqliteWriteStats {
  std::int64_t transactions = 0;  // committed (or failed) batches
  std::int64_t writes = 0;        // writes run in them, successful or not
  std::int64_t largest_batch = 0;
  std::int64_t background_checkpoints = 0;  // PASSIVE checkpoints run by the checkpoint thread
  std::int64_t inline_checkpoints = 0;      // run by the writer past wal_max_pages
  std::int64_t wal_restarts = 0;            // times the WAL started again from its beginning
  std::int64_t wal_frames_written = 0;      // frames (pages) appended to the WAL
  std::int64_t wal_high_water_frames = 0;   // the longest the WAL has been, in frames
};
// Invalid when `store` was not made by openSqliteStore.
Result<SqliteWriteStats> sqliteWriteStats(Store& store);
// The same as Prometheus text (parley_store_* families); "" when `store` is not SQLite.
std::string sqlitePrometheusText(Store& store);

// Runs raw SQL `statements` as one queued write (one savepoint in a group-committed batch),
// stopping at the first failure. Only for tests of the writer itself.
Status sqliteExecForTest(Store& store, const std::vector<std::string>& statements);

}  // namespace parley::store
