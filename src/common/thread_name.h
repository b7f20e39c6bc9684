#pragma once

// Thread names, so `top -H`, `perf` and gdb show which pool a thread belongs to.

#include <pthread.h>

#include <cstddef>
#include <latch>
#include <memory>
#include <string>

namespace parley {

// Names the calling thread (Linux keeps the first 15 characters).
inline void nameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

// Names every thread of a pool that runs posted work (an asio::thread_pool, say): posts
// `threads` tasks that each name their thread and wait until all of them run, so each lands on
// a thread of its own. `post(task)` must queue `task` on the pool. Blocks until named.
// REQUIRES: the pool has exactly `threads` threads and nothing else blocks them meanwhile.
template <class Post>
void nameThreads(Post&& post, std::size_t threads, const std::string& name) {
  // Shared: a task may still be inside arrive_and_wait() when the caller's wait() returns.
  auto all = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(threads));
  for (std::size_t i = 0; i < threads; ++i)
    post([all, name] {
      nameThisThread(name);
      all->arrive_and_wait();
    });
  all->wait();
}

}  // namespace parley
