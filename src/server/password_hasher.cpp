#include "server/password_hasher.h"

#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <future>

namespace parley::server {
namespace {

Error queueFull() {
  return Error{ErrorCode::kUnavailable,
               "too many logins are being checked right now; try again in a second"};
}

}  // namespace

Result<std::string> PasswordHasher::hashAndWait(std::string password, crypto::PasswordCost cost) {
  auto promise = std::make_shared<std::promise<Result<std::string>>>();
  auto future = promise->get_future();
  hash(std::move(password), cost,
       [promise](Result<std::string> r) { promise->set_value(std::move(r)); });
  return future.get();
}

PasswordPool::PasswordPool(PasswordPoolOptions options) : opts_(options) {
  const int n = std::max(1, opts_.threads);
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "auth-hash");
      if (opts_.nice > 0) {
        // Per-thread on Linux: PRIO_PROCESS with a thread id. Raising one's own nice value needs
        // no privilege; failing to is harmless (the queue still bounds the work).
        const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
        if (::setpriority(PRIO_PROCESS, tid, opts_.nice) != 0)
          spdlog::debug("password pool: could not lower the thread priority");
      }
      loop();
    });
  }
}

PasswordPool::~PasswordPool() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool PasswordPool::submit(std::function<void()> job) {
  {
    MutexLock lock(mu_);
    if (stopping_ || queue_.size() >= opts_.max_queued) {
      ++refused_;
      return false;
    }
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void PasswordPool::loop() {
  for (;;) {
    std::function<void()> job;
    {
      MutexLock lock(mu_);
      while (!stopping_ && queue_.empty()) lock.wait(cv_);
      if (queue_.empty()) return;  // stopping, nothing left
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("password pool: a job threw: {}", e.what());
    }
  }
}

void PasswordPool::verify(std::string hash, std::string password,
                          std::function<void(Result<bool>)> done) {
  auto shared_done = std::make_shared<std::function<void(Result<bool>)>>(std::move(done));
  bool queued = submit([hash = std::move(hash), password = std::move(password), shared_done] {
    (*shared_done)(crypto::verifyPassword(hash, password));
  });
  if (!queued) (*shared_done)(std::unexpected(queueFull()));
}

void PasswordPool::hash(std::string password, crypto::PasswordCost cost,
                        std::function<void(Result<std::string>)> done) {
  auto shared_done = std::make_shared<std::function<void(Result<std::string>)>>(std::move(done));
  bool queued = submit([password = std::move(password), cost, shared_done] {
    (*shared_done)(crypto::hashPassword(password, cost));
  });
  if (!queued) (*shared_done)(std::unexpected(queueFull()));
}

std::size_t PasswordPool::queued() const {
  MutexLock lock(mu_);
  return queue_.size();
}

std::int64_t PasswordPool::refused() const {
  MutexLock lock(mu_);
  return refused_;
}

}  // namespace parley::server
