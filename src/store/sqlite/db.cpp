#include "store/sqlite/db.h"

#include <algorithm>
#include <vector>

#include "store/sqlite/batched_wal_vfs.h"
#include "store/sqlite/query.h"
#include "store/sqlite/schema.h"

namespace parley::store::sqlite {

Result<std::unique_ptr<Db>> Db::open(const std::string& path, const Clock& clock,
                                     const SqliteOptions& options) {
  if (path.empty() || path == ":memory:" || path.starts_with("file::memory:"))
    return invalid("the SQLite store needs a file path, not '" + path + "'");
  // The batched-WAL VFS flushes a commit's frames when SQLite syncs the WAL after the commit,
  // which it does only under synchronous=FULL; the VFS then syncs only where NORMAL would (see
  // batched_wal_vfs.h), so the durability is still kNormal's.
  const char* writer_vfs = options.sync == SqliteOptions::Sync::kNormal && options.batch_wal_writes
                               ? batchedWalVfsName()
                               : nullptr;
  auto writer = Conn::open(path, Conn::Mode::kReadWrite, options.busy_timeout_ms, writer_vfs);
  if (!writer) return std::unexpected(writer.error());
  Conn& w = **writer;
  // WAL: readers never block the writer nor each other. synchronous=NORMAL in WAL mode syncs
  // only at checkpoints: a commit is in the OS once COMMIT returns (safe against process
  // crashes); FULL also fsyncs the WAL per commit (safe against power loss).
  {
    auto mode = w.query("PRAGMA journal_mode=WAL");
    if (!mode) return std::unexpected(mode.error());
    auto row = mode->next();
    if (!row) return std::unexpected(row.error());
    if (!*row || mode->text(0) != "wal")
      return makeError(ErrorCode::kUnavailable,
                       "cannot switch " + path + " to WAL mode; put it on a local file system");
  }
  const char* sync = options.sync == SqliteOptions::Sync::kFull ? "FULL" : "NORMAL";
  PARLEY_STORE_TRY(w.exec(std::string("PRAGMA synchronous=") + (writer_vfs ? "FULL" : sync)));
  // After a checkpoint the WAL is truncated back to at most 64 MiB.
  PARLEY_STORE_TRY(
      w.exec("PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; "
             "PRAGMA journal_size_limit=67108864"));
  auto version = migrate(w, options.schema_version_for_test);
  if (!version) return std::unexpected(version.error());
  // The writer revisits the pages of every open conversation; keep them in its cache (32 MiB,
  // allocated as used) rather than re-reading them from the OS.
  PARLEY_STORE_TRY(w.exec("PRAGMA cache_size=-32768"));

  std::unique_ptr<Checkpointer> checkpointer;
  if (options.checkpoint_pages > 0) {
    auto cc = Conn::open(path, Conn::Mode::kReadWrite, options.busy_timeout_ms);
    if (!cc) return std::unexpected(cc.error());
    // A checkpoint syncs as its connection's synchronous setting says.
    PARLEY_STORE_TRY((*cc)->exec(std::string("PRAGMA synchronous=") + sync));
    checkpointer = std::make_unique<Checkpointer>(std::move(*cc), options.checkpoint_pages);
  }

  std::vector<std::unique_ptr<Conn>> readers;
  for (int i = 0; i < std::max(1, options.readers); ++i) {
    auto r = Conn::open(path, Conn::Mode::kReadOnly, options.busy_timeout_ms);
    if (!r) return std::unexpected(r.error());
    readers.push_back(std::move(*r));
  }
  auto w_ptr = std::make_unique<Writer>(std::move(*writer), options.max_batch,
                                        std::move(checkpointer), options.wal_max_pages);
  w_ptr->setIdleAsyncWrites(options.lead_idle_async_writes ? IdleAsyncWrites::kLeadOnCaller
                                                           : IdleAsyncWrites::kToWriterThread);
  return std::unique_ptr<Db>(
      new Db(clock, *version, std::move(w_ptr), std::make_unique<ReaderPool>(std::move(readers))));
}

Db::~Db() { close(); }

void Db::close() {
  readers_.reset();
  writer_.reset();
}

}  // namespace parley::store::sqlite
