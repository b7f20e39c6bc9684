#pragma once

// Background WAL checkpoints. Private to store/sqlite.

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <thread>

#include "common/thread_annotations.h"
#include "store/sqlite/conn.h"

namespace parley::store::sqlite {

// Copies the WAL into the database file off the write path. SQLite's own auto-checkpoint runs
// inside the COMMIT that crosses the threshold, so one write pays for copying every page and
// for two fsyncs (milliseconds on this kind of disk). Instead the writer connection reports its
// WAL size after each commit (sqlite3_wal_hook) and this thread runs PASSIVE checkpoints on its
// own connection while writes go on. A PASSIVE checkpoint cannot let the WAL restart while
// writes keep arriving, so the writer still checkpoints itself, between batches, when the WAL
// exceeds a hard limit (see Writer::runBatch). Owned by the Writer; walSize() and
// checkpoints() are thread-safe.
class Checkpointer {
 public:
  // `conn` is a read-write connection used only for checkpoints; `trigger_pages` the WAL size
  // (in frames) that wakes the thread.
  Checkpointer(std::unique_ptr<Conn> conn, int trigger_pages);
  // Stops and joins the thread (a checkpoint in progress finishes first).
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  // Called by the writer after a commit with the WAL size in frames.
  void walSize(int frames);

  // Checkpoints run so far.
  std::int64_t checkpoints() const;

 private:
  void loop() PARLEY_EXCLUDES(mu_);

  std::unique_ptr<Conn> conn_;
  const int trigger_pages_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool requested_ PARLEY_GUARDED_BY(mu_) = false;
  bool stop_ PARLEY_GUARDED_BY(mu_) = false;
  std::int64_t done_ PARLEY_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace parley::store::sqlite
