#pragma once

// A functions worker: one thread that owns V8 isolates (IsolateSlot) and runs an event loop for
// many invocations at once (timers, host-call completions, new jobs from the fair queue).
// Private to src/functions (engine/ and bindings/); the only place V8 types live.

#include <libplatform/libplatform.h>
#include <v8.h>

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
#include "functions/engine/engine.h"
#include "functions/engine/limits.h"

namespace parley::functions::engine {

// Initialises V8 once per process (V8 itself allows one platform per process) and returns it.
v8::Platform& v8Platform();

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
  ~ContextEntry();
};

// One isolate of a worker, with its warm contexts and per-isolate compiled scripts.
struct IsolateSlot final : Terminator {
  Worker* worker = nullptr;
  v8::Isolate* isolate = nullptr;
  std::unique_ptr<CappedAllocator> allocator;
  std::optional<v8::Locker> locker;  // held by the worker thread for the slot's lifetime
  std::size_t heap_limit = 0;
  int near_limit_calls = 0;
  bool oom = false;
  bool retiring = false;  // terminated: takes no new work; disposed when idle
  std::size_t in_flight = 0;
  std::size_t live_entries = 0;
  std::unordered_map<const Deployment*, std::shared_ptr<ContextEntry>> contexts;
  v8::Global<v8::UnboundScript> bootstrap;
  v8::Global<v8::UnboundScript> getter;
  v8::Global<v8::ObjectTemplate> natives;
  std::unordered_map<std::string, v8::Global<v8::UnboundScript>> modules;

  // Terminator
  void terminate() override { isolate->TerminateExecution(); }
};

struct LogAcc {
  std::vector<LogEntry> entries;
  std::size_t chars = 0;
  bool overflow = false;
};

// A started invocation. Owned by Worker::in_flight_.
struct Invocation {
  std::uint64_t id = 0;
  Job job;
  IsolateSlot* slot = nullptr;
  std::shared_ptr<ContextEntry> ctx;
  LogAcc logs;
  bool has_outcome = false;
  bool outcome_from_callback = false;
  InvokeResult outcome;
  std::unordered_set<std::uint64_t> timers;
  std::unordered_map<std::uint64_t, v8::Global<v8::Promise::Resolver>> calls;
  std::multimap<SteadyTime, std::uint64_t>::iterator deadline_it;
};

// Owned by the Engine. start() launches the thread; the destructor stops and joins it, failing
// what is still in flight with es.unavailable. post()/wake() are thread-safe; everything else
// runs on the worker thread.
class Worker {
 public:
  Worker(Engine& engine, int index);
  ~Worker();
  void start();
  // Runs `task` on the worker thread (dropped after stop).
  void post(std::function<void()> task);
  // A job may be waiting in the engine's queue: the worker looks before it next sleeps. With
  // kNotifyIfSleeping a sleeping worker is woken. Returns whether it was sleeping.
  enum class WakeMode { kFlagOnly, kNotifyIfSleeping };
  bool wake(WakeMode mode);
  void stop();

  // ---- Worker thread only ----
  // Compiles and runs `d`'s top level in a context of an active isolate; keeps it warm when
  // `keep`. Errors: ScriptError (syntax, throw, no lambda), Timeout (top level too slow).
  Status prepare(const std::shared_ptr<const Deployment>& d, bool keep);
  // Drops warm contexts of `key` other than `current` (null after an undeploy).
  void sweep(const std::string& key, const Deployment* current);

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
  void loop();
  bool runPosted();
  bool runTimers(SteadyTime now);
  bool expireDeadlines(SteadyTime now);
  bool takeJobs();
  SteadyTime nextWake() const;
  void pumpPlatform();

  IsolateSlot* newSlot();
  void disposeSlot(IsolateSlot* slot);
  void maybeDispose(IsolateSlot* slot);
  void retire(IsolateSlot* slot);
  IsolateSlot* slotFor(const Deployment& d, std::shared_ptr<ContextEntry>* warm);
  Result<std::shared_ptr<ContextEntry>> makeContext(IsolateSlot* slot,
                                                    const std::shared_ptr<const Deployment>& d,
                                                    SteadyTime deadline);

  void startJob(Job job);
  template <class F>
  void runJs(std::uint64_t inv_id, F&& body);
  void afterTask(std::uint64_t inv_id);
  void onTerminated(IsolateSlot* slot, std::uint64_t inv_id);
  void complete(std::uint64_t inv_id);
  void finishJob(Job& job, InvokeResult result);
  void setOutcome(Invocation& inv, std::string_view code, std::string message);
  // The outcome of an invocation whose deadline passed before it called back.
  void setCallbackTimeout(Invocation& inv);
  void addLog(Invocation& inv, const char* level, std::string message, std::string extras);
  void completeCall(std::uint64_t inv_id, std::uint64_t call_id, std::string json);
  void fireTimer(std::uint64_t inv_id, std::uint64_t timer_id);

  Engine& engine_;
  const int index_;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> posted_;  // GUARDED_BY(mu_)
  bool wake_ = false;                         // GUARDED_BY(mu_)
  bool sleeping_ = false;                     // GUARDED_BY(mu_)
  bool stop_ = false;                         // GUARDED_BY(mu_)

  // Worker-thread state.
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
  std::uint64_t next_id_ = 1;
  std::uint64_t next_timer_id_ = 1;
  std::uint64_t next_call_id_ = 1;
};

namespace bindings {
// The natives object template (log, timer, clearTimer, done, call, loadModule) of a slot.
v8::Local<v8::ObjectTemplate> nativesTemplate(IsolateSlot& slot);
// JS sources (bindings/*.js).
extern const char* const kBootstrapJs;
extern const char* const kToolbeltJs;
}  // namespace bindings

}  // namespace parley::functions::engine
