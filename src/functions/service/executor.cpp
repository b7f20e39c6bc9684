#include "functions/service/executor.h"

#include <spdlog/spdlog.h>

#include <exception>

#include "common/thread_name.h"

namespace parley::functions::service {

Executor::Executor(std::size_t threads) {
  if (threads == 0) threads = 1;
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i)
    threads_.emplace_back([this] {
      nameThisThread("fn-service");
      loop();
    });
}

Executor::~Executor() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void Executor::post(std::function<void()> task) {
  {
    MutexLock lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Executor::waitIdle() {
  MutexLock lock(mu_);
  while (!queue_.empty() || running_ != 0) lock.wait(idle_cv_);
}

void Executor::loop() {
  while (true) {
    std::function<void()> task;
    {
      MutexLock lock(mu_);
      while (!stopping_ && queue_.empty()) lock.wait(cv_);
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    // A fence: a task must not throw, but an escaped exception must not kill the pool.
    try {
      task();
    } catch (const std::exception& e) {
      spdlog::error("functions service task threw: {}", e.what());
    } catch (...) {
      spdlog::error("functions service task threw a non-standard exception");
    }
    {
      MutexLock lock(mu_);
      --running_;
    }
    idle_cv_.notify_all();
  }
}

}  // namespace parley::functions::service
