#pragma once

// The database the store rooms share: the writer, the reader pool and the clock. Private to
// store/sqlite.

#include <exception>
#include <memory>
#include <string>
#include <utility>

#include "common/clock.h"
#include "common/result.h"
#include "store/sqlite/conn.h"
#include "store/sqlite/reader_pool.h"
#include "store/sqlite/sqlite_store.h"
#include "store/sqlite/writer.h"

namespace parley::store::sqlite {

// One SQLite file in WAL mode: the write engine (Writer) on the only read-write connection, a
// background checkpointer, and a pool of read-only connections. Owned by the SqliteStore; the
// store rooms (account, conversation, function, bot) hold a reference and run every statement
// through write()/writeAsync()/read(). Thread-safe: any thread may call any method except
// close(). Never call it on a network io thread (everything here blocks).
class Db {
 public:
  // Opens (creating when absent) the file at `path`, switches it to WAL, applies the pragmas of
  // `options` and migrates it (to `options.schema_version_for_test`, 0 = latest). Opens the
  // checkpoint connection and the readers. `clock` must outlive the Db. Unavailable when the
  // file cannot be opened, cannot use WAL or is newer than this binary; Invalid for an
  // in-memory path (the reader pool needs a file).
  static Result<std::unique_ptr<Db>> open(const std::string& path, const Clock& clock,
                                          const SqliteOptions& options);
  // Closes (see close()).
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // The clock timestamps of new rows come from.
  TimeMs now() const { return clock_.nowMs(); }
  // PRAGMA user_version after migrating.
  int schemaVersion() const { return version_; }

  // Runs `fn` as one write (see Writer::submit); returns once its transaction committed.
  Status write(Writer::WriteFn fn) { return writer_->submit(std::move(fn)); }
  // Queues `fn` (see Writer::submitAsync); `done` runs on a writer thread after the commit.
  void writeAsync(Writer::WriteFn fn, Writer::DoneFn done,
                  Writer::Wrap wrap = Writer::Wrap::kSavepoint) {
    writer_->submitAsync(std::move(fn), std::move(done), wrap);
  }
  // The writer, to register hooks before the first write.
  Writer& writer() { return *writer_; }
  SqliteWriteStats writeStats() const { return writer_->stats(); }

  // Runs `fn(Conn&)` on a leased read-only connection (blocks while all are leased) and
  // returns its result; an exception it throws becomes Internal.
  template <class F>
  auto read(F&& fn) -> decltype(fn(std::declval<Conn&>())) {
    auto lease = readers_->acquire();
    try {
      return fn(*lease);
    } catch (const std::exception& e) {
      return internalError(std::string("store read failed: ") + e.what());
    }
  }

  // Closes the readers, then the writer: what is queued is committed (its callbacks run) and
  // the writer's connection closes last, checkpointing the WAL into the database file.
  // REQUIRES: no call in progress and none after. Idempotent.
  void close();

 private:
  Db(const Clock& clock, int version, std::unique_ptr<Writer> writer,
     std::unique_ptr<ReaderPool> readers)
      : clock_(clock),
        version_(version),
        writer_(std::move(writer)),
        readers_(std::move(readers)) {}

  const Clock& clock_;
  const int version_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<ReaderPool> readers_;
};

}  // namespace parley::store::sqlite
