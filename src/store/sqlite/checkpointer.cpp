#include "store/sqlite/checkpointer.h"

#include <pthread.h>

#include <algorithm>
#include <utility>

namespace parley::store::sqlite {

Checkpointer::Checkpointer(std::unique_ptr<Conn> conn, int trigger_pages)
    : conn_(std::move(conn)), trigger_pages_(std::max(1, trigger_pages)) {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "store-ckpt");
    loop();
  });
}

Checkpointer::~Checkpointer() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void Checkpointer::walSize(int frames) {
  if (frames < trigger_pages_) return;
  {
    MutexLock lock(mu_);
    requested_ = true;
  }
  cv_.notify_one();
}

std::int64_t Checkpointer::checkpoints() const {
  MutexLock lock(mu_);
  return done_;
}

void Checkpointer::loop() {
  MutexLock lock(mu_);
  for (;;) {
    while (!stop_ && !requested_) lock.wait(cv_);
    if (stop_) return;
    requested_ = false;
    lock.unlock();
    int log = 0;
    int copied = 0;
    (void)sqlite3_wal_checkpoint_v2(conn_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log,
                                    &copied);
    lock.lock();
    ++done_;
  }
}

}  // namespace parley::store::sqlite
