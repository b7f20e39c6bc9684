#pragma once

// A small fixed thread pool for the service's blocking work (store calls, deploys), so that
// api::Handler::handle never blocks the server's io thread. Owned by FunctionService.
// Thread-safe. Tasks run in FIFO order on any of the threads; the destructor runs the queued
// tasks and joins.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"

namespace parley::functions::service {

class Executor final {
 public:
  // REQUIRES: threads >= 1.
  explicit Executor(std::size_t threads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues `task`. Tasks must not throw.
  void post(std::function<void()> task);
  // Blocks until the queue is empty and no task is running (tests and shutdown).
  void waitIdle();

 private:
  void loop() PARLEY_EXCLUDES(mu_);

  Mutex mu_;
  std::condition_variable cv_;       // with mu_: work arrived or stopping
  std::condition_variable idle_cv_;  // with mu_: a task finished
  std::deque<std::function<void()>> queue_ PARLEY_GUARDED_BY(mu_);
  std::size_t running_ PARLEY_GUARDED_BY(mu_) = 0;
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace parley::functions::service
