#include "store/sqlite/reader_pool.h"

#include <utility>

namespace parley::store::sqlite {

ReaderPool::Lease ReaderPool::acquire() {
  MutexLock lock(mu_);
  while (free_.empty()) lock.wait(cv_);
  auto c = std::move(free_.back());
  free_.pop_back();
  return Lease(*this, std::move(c));
}

void ReaderPool::release(std::unique_ptr<Conn> c) {
  {
    MutexLock lock(mu_);
    free_.push_back(std::move(c));
  }
  cv_.notify_one();
}

}  // namespace parley::store::sqlite
