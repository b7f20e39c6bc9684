#pragma once

// Starting a worker, from the server's side: a worker process (the hidden subcommand of the
// executable, sandboxed in its start-up) or, in in-process mode, a thread of the server. Both
// serve the same socket protocol; the first frame each reads is kInit.

#include <sys/types.h>

#include <memory>
#include <thread>

#include "common/clock.h"
#include "common/result.h"
#include "functions/engine/limits.h"
#include "functions/runtime.h"

namespace parley::functions::engine {

struct WorkerShared;

// Starts `options.worker_executable kWorkerSubcommand ...` with `channel_fd` as its descriptor
// 3 and `shared_fd` (a memfd holding a WorkerShared) as 4, stdin/stdout on /dev/null, stderr
// inherited and an almost empty environment. Must be called on a thread that outlives the
// worker (its parent-death signal follows that thread). The caller closes both descriptors.
Result<pid_t> spawnWorkerProcess(const RuntimeOptions& options, int channel_fd, int shared_fd);

// A worker thread in this process serving `fd` (which it closes when done). `limits` null = its
// own Watchdog. `clock` and `shared` must outlive it.
class InProcessWorker {
 public:
  InProcessWorker(int fd, Limits* limits, const Clock& clock, WorkerShared& shared);
  ~InProcessWorker();
  InProcessWorker(const InProcessWorker&) = delete;
  InProcessWorker& operator=(const InProcessWorker&) = delete;
  // Waits until the worker has ended (after the server closed the socket).
  void join();

 private:
  std::thread thread_;
};

}  // namespace parley::functions::engine
