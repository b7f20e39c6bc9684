#pragma once

// The write engine: one read-write connection, one writer at a time, group commit. Private to
// store/sqlite.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "common/result.h"
#include "common/thread_annotations.h"
#include "store/sqlite/checkpointer.h"
#include "store/sqlite/conn.h"
#include "store/sqlite/sqlite_store.h"

namespace parley::store::sqlite {

// What an asynchronous write does when it finds the writer idle (SqliteOptions::
// lead_idle_async_writes).
enum class IdleAsyncWrites {
  // Queued for the writer thread like every other asynchronous write.
  kToWriterThread,
  // Committed at once on the caller's thread (its callback runs before submitAsync returns).
  kLeadOnCaller,
};

// Owns the only read-write connection. Callers submit a write (a function run against the
// connection inside a transaction), either blocking until the transaction that holds it has
// committed (submit) or with a completion callback (submitAsync). All writes share one FIFO
// queue. Whoever leads takes every queued write (up to max_batch), runs each inside its own
// SAVEPOINT so a failing write is rolled back alone (a batch of one needs none: the transaction
// is its savepoint), and commits them all at once: many writes share one commit (and, with
// synchronous=FULL, one fsync). A blocking caller that finds nobody writing or waiting leads at
// once (no thread hand-off); otherwise it waits to be batched or to be handed the lead as the
// oldest waiting write. Asynchronous writes are led by the writer thread, which sleeps while
// the queue is empty, so callers never block on them and, under load, hundreds of
// conversations' appends share each commit. Completion callbacks run on the leader's thread,
// after the commit, in queue order, before the lead is handed on (so callbacks of a later batch
// never overtake those of an earlier one). Only one thread uses the connection at a time.
// Every public method is thread-safe unless it says REQUIRES: before the first write.
class Writer {
 public:
  using WriteFn = std::function<Status(Conn&)>;
  using DoneFn = std::function<void(Status)>;

  // `checkpointer` (may be null: SQLite's own auto-checkpoint then stays on) is told the WAL
  // size after every commit; past `wal_max_pages` frames the writer checkpoints itself.
  Writer(std::unique_ptr<Conn> conn, int max_batch, std::unique_ptr<Checkpointer> checkpointer,
         int wal_max_pages);
  // REQUIRES: no submit() in progress (every caller has returned). Queued asynchronous writes
  // are committed (and their callbacks run) first. The checkpointer stops next; the writer
  // connection closes last, which checkpoints the whole WAL.
  ~Writer();
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Runs `fn` on the writer connection; returns once its transaction committed (or failed).
  Status submit(WriteFn fn);

  // How a write is made atomic inside a batch of many.
  enum class Wrap {
    kSavepoint,  // the writer runs it inside its own SAVEPOINT (default)
    // The write is atomic by itself (one statement, or it opens its own savepoint when it needs
    // more): no savepoint around it, which saves two statements per write.
    kSelf,
  };

  // Queues `fn`; `done(result)` runs once its transaction committed (or failed), on a writer
  // thread. Never blocks.
  // With IdleAsyncWrites::kLeadOnCaller, a write submitted while nobody writes or waits is
  // committed at once on the caller's thread — `done` then runs before submitAsync returns —
  // instead of waking the writer thread and then the caller's again: two thread hand-offs
  // fewer for the write that starts a quiet period. Writes that arrive meanwhile queue up and
  // the writer thread commits them in groups, as always.
  void submitAsync(WriteFn fn, DoneFn done, Wrap wrap = Wrap::kSavepoint);

  // REQUIRES: called before the first write. Default: kToWriterThread.
  void setIdleAsyncWrites(IdleAsyncWrites mode) { idle_async_ = mode; }

  SqliteWriteStats stats() const;

  // `hook` runs on the leader's thread whenever a write fails or a transaction does not commit
  // (what the writes of the batch did may then be partly or wholly rolled back), so state kept
  // beside the connection can be dropped. REQUIRES: called before the first write.
  void setRollbackHook(std::function<void()> hook) { rollback_hook_ = std::move(hook); }

  // `flush` runs on the writer thread, without the writer's lock, when a deadline set by
  // flushAfter() passes (typically it queues a write with submitAsync). REQUIRES: called before
  // the first flushAfter().
  void setDeferredFlush(std::function<void()> flush) { deferred_flush_ = std::move(flush); }

  // Makes the writer thread call the deferred flush `delay` from now, unless a call is already
  // due earlier. Never blocks on a write. Pending deadlines are dropped when the writer stops
  // (the owner flushes what it deferred before destroying the writer).
  void flushAfter(std::chrono::milliseconds delay);

 private:
  // Runs on the leader's thread inside COMMIT: `frames` is the WAL size after it.
  static int walHook(void* self, sqlite3*, const char*, int frames);

  struct Op {
    WriteFn fn;
    DoneFn on_done;  // set: asynchronous (heap-allocated, deleted after on_done ran)
    Wrap wrap = Wrap::kSavepoint;
    Status result;
    // Guarded by the writer's mu_ (blocking ops only): another object's mutex, which the
    // analysis cannot name here, so the rule is this comment.
    bool done = false;
    std::condition_variable cv;  // blocking ops: signalled when done, or when this op may lead
  };

  // Runs batches while `until()` is false and writes are queued; mu_ is dropped while a batch
  // runs and held again on return. REQUIRES: nobody leads. Hands the lead on when it returns.
  template <class Until>
  void lead(Until until) PARLEY_REQUIRES(mu_);
  // The writer thread: leads whenever the oldest queued write is asynchronous and nobody leads.
  // Also calls the deferred flush when its deadline passes.
  void asyncLoop() PARLEY_EXCLUDES(mu_);
  void rolledBack();
  static Status runOne(Op& op, Conn& c);
  // Runs on the leader's thread without mu_ held; only the leader touches conn_.
  void runBatch(const std::vector<Op*>& batch);

  std::unique_ptr<Conn> conn_;
  const int max_batch_;
  std::unique_ptr<Checkpointer> checkpointer_;
  const int wal_max_pages_;
  int wal_frames_ = 0;   // touched only by the leader
  int hook_frames_ = 0;  // the WAL size after the last commit (leader only)
  std::atomic<std::int64_t> wal_restarts_{0};
  std::atomic<std::int64_t> wal_frames_written_{0};
  std::atomic<std::int64_t> wal_high_water_{0};
  std::atomic<std::int64_t> inline_checkpoints_{0};
  mutable Mutex mu_;
  SqliteWriteStats stats_ PARLEY_GUARDED_BY(mu_);
  std::deque<Op*> queue_ PARLEY_GUARDED_BY(mu_);
  bool leading_ PARLEY_GUARDED_BY(mu_) = false;  // a thread is running batches on conn_
  bool stop_ PARLEY_GUARDED_BY(mu_) = false;
  std::optional<std::chrono::steady_clock::time_point> flush_at_ PARLEY_GUARDED_BY(mu_);
  IdleAsyncWrites idle_async_ = IdleAsyncWrites::kToWriterThread;  // set before the first write
  // How long after the last batch an asynchronous write may still lead on its caller's thread.
  static constexpr std::chrono::microseconds kInlineQuiet{300};
  std::chrono::steady_clock::time_point last_batch_end_ PARLEY_GUARDED_BY(mu_){};
  std::function<void()> rollback_hook_;   // set before the first write; run by the leader
  std::function<void()> deferred_flush_;  // set before the first flushAfter()
  std::condition_variable async_cv_;      // wakes the writer thread
  std::thread thread_;                    // last: started after everything above
};

}  // namespace parley::store::sqlite
