#pragma once

// The worker side of the function runtime: one thread that owns V8 isolates (IsolateSlot, one
// or more per account: no isolate holds two accounts' code) and runs an event loop for many
// invocations at once (timers, Toolbelt replies, new jobs). It talks to the server only through
// its socket (protocol.h): it receives deployments and jobs, and sends results and host calls.
// It runs in a worker process (worker_main.h) or, in-process mode, on a thread of the server.
// Private to src/functions (engine/ and bindings/); the only place V8 types live.

#include <libplatform/libplatform.h>
#include <v8.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/check.h"
#include "common/clock.h"
#include "common/thread_annotations.h"
#include "functions/engine/fair_queue.h"
#include "functions/engine/limits.h"
#include "functions/engine/protocol.h"

namespace parley::functions::engine {

// Initialises V8 once per process (V8 itself allows one platform per process) and returns it.
// Its entropy comes from getrandom(2), so it needs no file.
v8::Platform& v8Platform();

// In a worker process: on a fatal V8 out-of-memory error, write a kFatal frame to `fd` and exit
// with kExitOutOfMemory (instead of V8's abort), so the server can say what happened. Isolates
// created afterwards get the handler. Not for in-process mode (the server would exit).
void reportFatalErrorsTo(int fd);

class Worker;
struct IsolateSlot;

// ArrayBuffer backing stores count against a cap, so off-heap memory is limited too.
class CappedAllocator final : public v8::ArrayBuffer::Allocator {
 public:
  explicit CappedAllocator(std::size_t cap);
  void* Allocate(std::size_t length) override;
  void* AllocateUninitialized(std::size_t length) override;
  void Free(void* data, std::size_t length) override;

 private:
  bool reserve(std::size_t n);
  std::unique_ptr<v8::ArrayBuffer::Allocator> base_;
  std::atomic<std::size_t> used_{0};
  const std::size_t cap_;
};

// A warm context of one deployment in one isolate. Lives on its worker thread only.
struct ContextEntry {
  IsolateSlot* slot = nullptr;
  std::shared_ptr<const Deployment> deployment;
  v8::Global<v8::Context> context;
  v8::Global<v8::Function> run;
  v8::Global<v8::Function> fire_timer;
  v8::Global<v8::Function> drop_timers;
  std::size_t in_flight = 0;
  // A context of a function whose home is another worker (Task::home false): dropped when no
  // invocation has started in it for WorkerConfig::guest_context_idle.
  bool guest = false;
  SteadyTime last_start;
  ~ContextEntry();
};

// One isolate of a worker, with its warm contexts and per-isolate compiled scripts. Holds the
// contexts of one account only.
struct IsolateSlot final : Terminator {
  Worker* worker = nullptr;
  AccountId account;
  v8::Isolate* isolate = nullptr;
  std::unique_ptr<CappedAllocator> allocator;
  std::optional<v8::Locker> locker;  // held by the worker thread for the slot's lifetime
  std::size_t heap_limit = 0;
  int near_limit_calls = 0;
  bool oom = false;
  bool retiring = false;  // terminated: takes no new work; disposed when idle
  std::size_t in_flight = 0;
  std::size_t live_entries = 0;
  std::uint64_t last_used = 0;  // worker's use counter, for disposing idle isolates
  std::unordered_map<const Deployment*, std::shared_ptr<ContextEntry>> contexts;
  v8::Global<v8::UnboundScript> bootstrap;
  v8::Global<v8::UnboundScript> getter;
  v8::Global<v8::ObjectTemplate> natives;
  std::unordered_map<std::string, v8::Global<v8::UnboundScript>> modules;

  // Terminator
  void terminate() override;
  void longTask() override;
};

struct LogAcc {
  std::vector<LogEntry> entries;
  std::size_t chars = 0;
  bool overflow = false;
};

// A started invocation. Owned by Worker::in_flight_.
struct Invocation {
  std::uint64_t id = 0;
  Task job;
  IsolateSlot* slot = nullptr;
  std::shared_ptr<ContextEntry> ctx;
  LogAcc logs;
  bool has_outcome = false;
  bool outcome_from_callback = false;
  InvokeResult outcome;
  std::unordered_set<std::uint64_t> timers;
  std::unordered_map<std::uint64_t, v8::Global<v8::Promise::Resolver>> calls;
  std::multimap<SteadyTime, std::uint64_t>::iterator deadline_it;
  std::chrono::nanoseconds cpu{0};  // thread CPU time used by its JS so far
};

// Runs on one thread (run()); the only other thread that touches it is the Limits' thread
// calling longTask(). `limits`, `clock` and `shared` must outlive it. `fd` is its end of the
// socket (blocking); it is not closed by the Worker.
class Worker {
 public:
  Worker(int fd, WorkerConfig config, Limits& limits, const Clock& clock, WorkerShared& shared);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Sends kReady, then serves the socket until the server closes it (or a frame is malformed).
  // Fails what is still in flight with es.unavailable and disposes the isolates on the way out.
  void run();

  // Limits' thread, while a JS task of this worker has run for long: tells the server the
  // worker is busy and hands back the jobs it received but has not started.
  void onLongTask();
  // V8 was asked to stop the running JS (WorkerShared::terminating). Any thread.
  void noteTerminating() { shared_.terminating.store(1, std::memory_order_relaxed); }

  // ---- Worker thread only ----
  // Natives (bindings/natives.cpp), called from JS on the worker thread.
  void nativeLog(int level, std::string message, std::string extras_json);
  Result<std::uint64_t> nativeTimer(double ms, bool repeat);
  void nativeClearTimer(std::uint64_t id);
  void nativeDone(std::uint64_t id, int kind, int source, std::string message, std::string json);
  v8::MaybeLocal<v8::Promise> nativeCall(IsolateSlot& slot, v8::Local<v8::Context> ctx,
                                         std::string op, std::string args_json);
  v8::MaybeLocal<v8::Value> loadModule(IsolateSlot& slot, v8::Local<v8::Context> ctx,
                                       const std::string& name);

 private:
  // Socket.
  void send(std::string frame);
  // Reads what is available without blocking; frames go to `out`. False on EOF/error.
  bool readAvailable(std::vector<wire::Frame>& out) PARLEY_REQUIRES(in_mu_);
  bool waitReadable(SteadyTime until);
  bool handleFrame(wire::Frame& f);

  bool runTimers(SteadyTime now);
  bool expireDeadlines(SteadyTime now);
  bool takeJobs();
  SteadyTime nextWake() const;
  void pumpPlatform();

  // Compiles and runs `d`'s top level in a context of an active isolate; keeps it warm when
  // `keep`. Errors: ScriptError (syntax, throw, no lambda), Timeout (top level too slow).
  Status prepare(const std::shared_ptr<const Deployment>& d, bool keep);
  // Drops warm contexts of `key` other than the deployment `current` (0 after an undeploy).
  void sweep(const std::string& key, std::uint64_t current);
  bool isCurrent(const Deployment& d) const;
  // Writes the number of warm contexts into the shared page (WorkerShared::contexts).
  void publishContexts();
  // Drops the guest contexts idle for guest_context_idle, and an isolate left with no context.
  void expireGuests(SteadyTime now);

  IsolateSlot* newSlot(const AccountId& account);
  void disposeSlot(IsolateSlot* slot);
  void maybeDispose(IsolateSlot* slot);
  void retire(IsolateSlot* slot);
  IsolateSlot* slotFor(const Deployment& d, std::shared_ptr<ContextEntry>* warm);
  Result<std::shared_ptr<ContextEntry>> makeContext(IsolateSlot* slot,
                                                    const std::shared_ptr<const Deployment>& d,
                                                    SteadyTime deadline);

  void startJob(Task job);
  template <class F>
  void runJs(std::uint64_t inv_id, F&& body);
  void afterTask(std::uint64_t inv_id);
  void onTerminated(IsolateSlot* slot, std::uint64_t inv_id, bool cpu_exhausted);
  void complete(std::uint64_t inv_id);
  void finishJob(Task& job, InvokeResult result);
  void setOutcome(Invocation& inv, std::string_view code, std::string message);
  // The outcome of an invocation whose deadline passed before it called back.
  void setCallbackTimeout(Invocation& inv);
  void addLog(Invocation& inv, const char* level, std::string message, std::string extras);
  void completeCall(std::uint64_t inv_id, std::uint64_t call_id, std::string json);
  void fireTimer(std::uint64_t inv_id, std::uint64_t timer_id);
  // After a JS task: tells the server the worker is free again if it reported itself busy.
  void endLongTask();
  void countRestart();
  std::string probe(const std::string& what);

  const int fd_;
  const WorkerConfig config_;
  Limits& limits_;
  const Clock& clock_;
  WorkerShared& shared_;
  clockid_t cpu_clock_{};

  Mutex out_mu_;  // serialises writes to fd_ (send(); no data of its own)

  // Read side of the socket, shared with onLongTask().
  Mutex in_mu_;
  wire::FrameSplitter splitter_ PARLEY_GUARDED_BY(in_mu_);
  // Read by onLongTask, not yet handled.
  std::deque<wire::Frame> stash_ PARLEY_GUARDED_BY(in_mu_);
  // Received, not started; served round-robin by function, so one function's backlog on this
  // worker does not hold up the others.
  FairQueue<Task> tasks_ PARLEY_GUARDED_BY(in_mu_);
  bool eof_ PARLEY_GUARDED_BY(in_mu_) = false;
  std::string long_account_;  // set before entering JS; read by onLongTask
  std::atomic<bool> busy_sent_{false};

  // Worker-thread state.
  std::unordered_map<std::uint64_t, std::shared_ptr<const Deployment>> deployments_;
  std::unordered_map<std::string, std::uint64_t> current_deployment_;  // key -> id
  std::vector<std::unique_ptr<IsolateSlot>> slots_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Invocation>> in_flight_;
  std::multimap<SteadyTime, std::uint64_t> deadlines_;
  struct TimerRec {
    std::uint64_t inv;
    double interval_ms;  // 0 = one-shot
  };
  std::map<std::pair<SteadyTime, std::uint64_t>, TimerRec> timers_;
  std::unordered_map<std::uint64_t, SteadyTime> timer_due_;
  std::vector<std::uint64_t> to_finish_;
  Invocation* current_ = nullptr;
  std::uint64_t next_timer_id_ = 1;
  std::uint64_t next_call_id_ = 1;
  std::uint64_t use_counter_ = 0;
  // When the next guest context may be due to be dropped (max: no guest context).
  SteadyTime next_guest_check_ = SteadyTime::max();
};

namespace bindings {
// The natives object template (log, timer, clearTimer, done, call, loadModule) of a slot.
v8::Local<v8::ObjectTemplate> nativesTemplate(IsolateSlot& slot);
// JS sources (bindings/*.js).
extern const char* const kBootstrapJs;
extern const char* const kToolbeltJs;
}  // namespace bindings

}  // namespace parley::functions::engine
