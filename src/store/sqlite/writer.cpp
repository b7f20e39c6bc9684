#include "store/sqlite/writer.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "common/mutex_unlock.h"
#include "store/store_util.h"

namespace parley::store::sqlite {

Writer::Writer(std::unique_ptr<Conn> conn, int max_batch,
               std::unique_ptr<Checkpointer> checkpointer, int wal_max_pages)
    : conn_(std::move(conn)),
      max_batch_(std::max(1, max_batch)),
      checkpointer_(std::move(checkpointer)),
      wal_max_pages_(std::max(1, wal_max_pages)) {
  if (checkpointer_) sqlite3_wal_hook(conn_->raw(), &Writer::walHook, this);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "store-writer");
    asyncLoop();
  });
}

Writer::~Writer() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  async_cv_.notify_one();
  thread_.join();
  if (checkpointer_) sqlite3_wal_hook(conn_->raw(), nullptr, nullptr);
  checkpointer_.reset();
}

Status Writer::submit(WriteFn fn) {
  Op op;
  op.fn = std::move(fn);
  MutexLock lock(mu_);
  // Lead at once only when nobody is writing or waiting; otherwise wait to be batched (or to
  // be handed the lead as the oldest waiting write).
  const bool idle = !leading_ && queue_.empty();
  queue_.push_back(&op);
  if (!idle) {
    while (!op.done && (leading_ || queue_.front() != &op)) lock.wait(op.cv);
    if (op.done) return std::move(op.result);
  }
  lead([&] { return op.done; });
  return std::move(op.result);
}

void Writer::submitAsync(WriteFn fn, DoneFn done, Wrap wrap) {
  auto* op = new Op;
  op->fn = std::move(fn);
  op->on_done = std::move(done);
  op->wrap = wrap;
  bool wake = false;
  {
    MutexLock lock(mu_);
    // Idle, and quiet for a while: under load batches follow each other closely, and a
    // caller that committed alone each time the queue ran dry would undo the group commit.
    const bool idle = !leading_ && queue_.empty() && !stop_ &&
                      std::chrono::steady_clock::now() - last_batch_end_ >= kInlineQuiet;
    queue_.push_back(op);
    if (idle && idle_async_ == IdleAsyncWrites::kLeadOnCaller &&
        std::this_thread::get_id() != thread_.get_id()) {
      int batches = 0;
      lead([&batches] { return batches++ > 0; });  // one batch: this write
      return;
    }
    wake = !leading_ && queue_.size() == 1;
  }
  if (wake) async_cv_.notify_one();
}

SqliteWriteStats Writer::stats() const {
  SqliteWriteStats st;
  {
    MutexLock lock(mu_);
    st = stats_;
  }
  if (checkpointer_) st.background_checkpoints = checkpointer_->checkpoints();
  st.inline_checkpoints = inline_checkpoints_.load(std::memory_order_relaxed);
  st.wal_restarts = wal_restarts_.load(std::memory_order_relaxed);
  st.wal_frames_written = wal_frames_written_.load(std::memory_order_relaxed);
  st.wal_high_water_frames = wal_high_water_.load(std::memory_order_relaxed);
  return st;
}

void Writer::flushAfter(std::chrono::milliseconds delay) {
  const auto at = std::chrono::steady_clock::now() + delay;
  bool wake = false;
  {
    MutexLock lock(mu_);
    if (!flush_at_ || at < *flush_at_) {
      flush_at_ = at;
      wake = true;
    }
  }
  if (wake) async_cv_.notify_one();
}

int Writer::walHook(void* self, sqlite3*, const char*, int frames) {
  auto* w = static_cast<Writer*>(self);
  // The WAL restarted from its beginning when it is shorter than after the last commit.
  const int before = w->hook_frames_;
  w->hook_frames_ = frames;
  if (frames < before) {
    w->wal_restarts_.fetch_add(1, std::memory_order_relaxed);
    w->wal_frames_written_.fetch_add(frames, std::memory_order_relaxed);
  } else {
    w->wal_frames_written_.fetch_add(frames - before, std::memory_order_relaxed);
  }
  if (frames > w->wal_high_water_.load(std::memory_order_relaxed))
    w->wal_high_water_.store(frames, std::memory_order_relaxed);
  w->wal_frames_ = frames;
  // Past the hard limit the writer checkpoints itself; a background checkpoint running then
  // would make it fail (busy), so none is started.
  if (frames < w->wal_max_pages_) w->checkpointer_->walSize(frames);
  return SQLITE_OK;
}

template <class Until>
void Writer::lead(Until until) {
  leading_ = true;
  std::vector<Op*> batch;
  while (!until() && !queue_.empty()) {
    while (!queue_.empty() && batch.size() < static_cast<std::size_t>(max_batch_)) {
      batch.push_back(queue_.front());
      queue_.pop_front();
    }
    ++stats_.transactions;
    stats_.writes += static_cast<std::int64_t>(batch.size());
    stats_.largest_batch = std::max(stats_.largest_batch, static_cast<std::int64_t>(batch.size()));
    {
      MutexUnlock unlocked(mu_);
      runBatch(batch);
      // Callbacks of asynchronous writes, in queue order, still as the leader.
      for (Op*& o : batch) {
        if (!o->on_done) continue;
        internal::completeAsyncWrite(o->on_done, std::move(o->result));
        delete o;
        o = nullptr;
      }
    }
    last_batch_end_ = std::chrono::steady_clock::now();
    for (Op* o : batch) {
      if (o == nullptr) continue;
      o->done = true;
      o->cv.notify_one();
    }
    batch.clear();
  }
  leading_ = false;
  // Hand the lead to the oldest waiting write: a blocking caller, or the writer thread.
  if (!queue_.empty()) {
    if (queue_.front()->on_done)
      async_cv_.notify_one();
    else
      queue_.front()->cv.notify_one();
  }
}

void Writer::asyncLoop() {
  MutexLock lock(mu_);
  for (;;) {
    // The deadline this wait was started with: a new (earlier, or first) one set meanwhile
    // must end the wait so that it is waited for.
    const auto waited_for = flush_at_;
    auto ready = [&]() PARLEY_REQUIRES(mu_) {
      return (!leading_ && !queue_.empty() && queue_.front()->on_done) ||
             (stop_ && !leading_ && queue_.empty()) || (!stop_ && flush_at_ != waited_for) ||
             (!stop_ && flush_at_ && std::chrono::steady_clock::now() >= *flush_at_);
    };
    if (flush_at_ && !stop_) {
      const auto until = *flush_at_;  // flush_at_ may change while waiting (`ready` sees it)
      while (!ready())
        if (lock.waitUntil(async_cv_, until) == std::cv_status::timeout) break;
    } else {
      while (!ready()) lock.wait(async_cv_);
    }
    if (!stop_ && flush_at_ && std::chrono::steady_clock::now() >= *flush_at_) {
      flush_at_.reset();
      lock.unlock();
      if (deferred_flush_) deferred_flush_();
      lock.lock();
      continue;
    }
    if (leading_ || queue_.empty() || !queue_.front()->on_done) {
      if (stop_ && !leading_ && queue_.empty()) return;  // stopping, nothing left
      continue;  // woken for a deadline that moved, or a blocking caller leads
    }
    lead([] { return false; });
  }
}

void Writer::rolledBack() {
  if (rollback_hook_) rollback_hook_();
}

Status Writer::runOne(Op& op, Conn& c) {
  try {
    return op.fn(c);
  } catch (const std::exception& e) {
    return internalError(std::string("store write failed: ") + e.what());
  }
}

void Writer::runBatch(const std::vector<Op*>& batch) {
  Conn& c = *conn_;
  if (auto st = c.run("BEGIN IMMEDIATE"); !st) {
    for (Op* op : batch) op->result = st;
    return;
  }
  if (batch.size() == 1) {
    // The transaction is the savepoint: on failure roll it all back.
    Op& op = *batch.front();
    op.result = runOne(op, c);
    if (!op.result) {
      (void)c.exec("ROLLBACK");
      rolledBack();
      return;
    }
  } else {
    for (std::size_t i = 0; i < batch.size(); ++i) {
      Op* op = batch[i];
      if (sqlite3_get_autocommit(c.raw()) != 0) {
        // An earlier write's error (I/O, disk full) made SQLite roll the transaction back:
        // running the rest would commit them one by one outside it. Fail them all instead.
        Status lost = internalError("store write failed: the transaction was rolled back");
        for (std::size_t j = 0; j < batch.size(); ++j)
          if (j >= i || batch[j]->result) batch[j]->result = lost;
        rolledBack();
        return;
      }
      if (op->wrap == Wrap::kSelf) {
        op->result = runOne(*op, c);
        if (!op->result) rolledBack();
        continue;
      }
      if (auto st = c.run("SAVEPOINT w"); !st) {
        op->result = st;
        continue;
      }
      Status st = runOne(*op, c);
      if (st) {
        st = c.run("RELEASE w");
      } else {
        (void)c.run("ROLLBACK TO w");
        (void)c.run("RELEASE w");
        rolledBack();
      }
      op->result = std::move(st);
    }
  }
  Status commit = c.run("COMMIT");
  if (!commit) {
    (void)c.exec("ROLLBACK");
    rolledBack();
    for (Op* op : batch)
      if (op->result) op->result = commit;
  }
  // The background checkpoints copy most of the WAL, but only a checkpoint that completes
  // while no write is running lets the next write restart the WAL from its beginning.
  if (checkpointer_ && wal_frames_ >= wal_max_pages_) {
    int log = 0;
    int copied = 0;
    if (sqlite3_wal_checkpoint_v2(c.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied) ==
        SQLITE_OK) {
      inline_checkpoints_.fetch_add(1, std::memory_order_relaxed);
      wal_frames_ = 0;
    }
  }
}

}  // namespace parley::store::sqlite
