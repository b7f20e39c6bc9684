#pragma once

// The pool that runs blocking work (store calls, file reads) off the io threads. Owned by the
// Server.

#include <memory>

#include "server/http_types.h"

namespace parley::server {

// A small thread pool for blocking work. run() is thread-safe; work runs on one of the pool's
// threads (named "net-blocking"), an exception it throws is logged and dropped.
class BlockingPool : public BlockingExecutor {
 public:
  // Runs the work already queued, then joins the threads. Idempotent.
  virtual void join() = 0;
};

// A pool of `threads` threads (at least 1).
std::unique_ptr<BlockingPool> makeBlockingPool(int threads);

}  // namespace parley::server
