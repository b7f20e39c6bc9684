#pragma once

// The fair scheduler: which queued invocation starts next and on which worker. Accounts are
// served round-robin (and the functions of one account round-robin), each account has a cap
// on invocations in flight and on workers it holds busy with long JS tasks, a worker busy with
// a long task gets nothing, and a quarantined function runs only on a quarantine worker.
// An invocation holds its worker from dispatch until its first JS task ends (its result, or the
// worker saying it now waits on timers or host calls): the busy-worker cap counts the workers an
// account holds, and another account's invocation goes to a worker nobody else holds when there
// is one. An account whose long tasks took much time lately is heavy: its invocations start on a
// worker reserved for them (the Engine demotes that worker's JS thread before the job starts).
// Each function has a home worker, the one that keeps its warm context: set where it is deployed
// or first dispatched (an account's functions share one home when they can, else the least
// loaded worker), it moves only when that worker is gone or has been busy with a long task for
// `rehome_after`. A job goes home unless fairness sends it elsewhere (its home is busy, reserved,
// at its in-flight cap, held by another account, or its account holds another worker); such a
// detour is marked (`Dispatch::home` false) so the worker does not keep a second context.
// Plain C++ with no clock and no threads (the caller passes the time): the Engine guards it with
// its mutex and acts on its answers (starts the dispatched jobs, spawns or stops workers).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "functions/engine/fair_queue.h"

namespace parley::functions::engine {

struct SchedulerOptions {
  // Invocations queued (not started), over all accounts. Default: 10,000.
  std::size_t max_queued = 10'000;
  // Invocations queued for one function. Default: 1,000.
  std::size_t max_queued_per_function = 1'000;
  // Invocations started and not finished on one worker. Default: 1,000.
  std::size_t max_in_flight_per_worker = 1'000;
  // Invocations started and not finished of one account, over all workers. Default: 200.
  std::size_t max_in_flight_per_account = 200;
  // Workers one account may hold busy with long JS tasks; its further invocations wait until
  // one is free. Default: 1. REQUIRES: >= 1.
  std::size_t max_busy_workers_per_account = 1;
  // Shared workers (not quarantine ones), including the extra ones started while others are
  // busy. Default: 6. REQUIRES: >= 1.
  std::size_t max_workers = 6;
  // Quarantine workers. Default: 2.
  std::size_t max_quarantine_workers = 2;
  // Free (not busy, not reserved) shared workers the scheduler asks for while others are busy.
  // Default: 1.
  std::size_t min_free_workers = 1;
  // The long-task mark (RuntimeOptions::long_task): a long task had run this long when its
  // worker reported it, so it is added to the time measured from the report to its end.
  std::chrono::milliseconds long_task{20};
  // An account whose long tasks took at least this much wall time, decayed with
  // `heavy_half_life`, or that has a long task running now, is heavy. Default: 100 ms, 2 s.
  std::chrono::milliseconds heavy_after{100};
  std::chrono::milliseconds heavy_half_life{2'000};
  // A function whose home worker has been busy with one long task for this long gets a new
  // home: the worker its next invocation is dispatched to. Default: 1 s.
  std::chrono::milliseconds rehome_after{1'000};
};

class Scheduler {
 public:
  struct Item {
    std::uint64_t id = 0;
    std::string account;
    std::string function_key;  // "<account>/<function>": affinity and quarantine
  };
  using Time = std::chrono::steady_clock::time_point;
  struct Dispatch {
    Item item;
    int worker = -1;
    // The item's account is heavy: the worker is reserved for this job until it settles, and
    // its JS should run demoted from the start.
    bool demote = false;
    // The worker is the function's home (or its quarantine worker): it keeps the warm context.
    // false: a detour; the worker should not keep the context for long.
    bool home = true;
    // The function's home moved to `worker` with this dispatch: the worker that was its home
    // (still there, stuck in a long task) should treat its context as a guest. -1: no move.
    int moved_from = -1;
  };
  enum class Push { kQueued, kQueueFull, kFunctionQueueFull };
  enum class WorkerKind { kShared, kQuarantine };

  explicit Scheduler(SchedulerOptions options) : options_(options) {}

  // Queues `item` behind the others of its function.
  Push push(Item item);
  // Queues a job a busy worker handed back, ahead of its function's others. Never refused.
  void pushFront(Item item);
  // Empties the queue (shutdown): every queued item, in no particular order.
  std::vector<Item> takeAll();

  // A worker that is ready for jobs.
  void addWorker(int worker, WorkerKind kind);
  // A worker that died or is stopping: it gets no more jobs; its in-flight count is dropped
  // (the Engine fails those invocations).
  void removeWorker(int worker);
  // The worker runs one JS task of `account` for a long time / it ended (the time it took
  // counts toward the account being heavy).
  void setBusy(int worker, const std::string& account, Time now);
  void setFree(int worker, Time now);
  // Invocation `id` dispatched to `worker` ran its first JS task to the end (it finished, waits
  // on timers or host calls, or was handed back unstarted): it no longer holds the worker.
  void settled(int worker, std::uint64_t id);
  // An invocation started on `worker` ended (result received).
  void finished(int worker, const std::string& account);

  // `worker` holds `function_key`'s warm context (it was deployed there): it becomes the
  // function's home, and (when `account` is given) its account's home if the account has none.
  void noteAffinity(const std::string& function_key, int worker, const std::string& account = {});
  // The function's / the account's home worker; -1 when it has none.
  int homeOf(const std::string& function_key) const;
  int accountHomeOf(const std::string& account) const;
  // Functions whose home `worker` is.
  std::size_t homedOn(int worker) const;

  // Puts `function_key` on quarantine workers only / back on shared ones.
  void quarantine(const std::string& function_key);
  void release(const std::string& function_key);
  bool quarantined(const std::string& function_key) const {
    return quarantined_.contains(function_key);
  }
  std::size_t quarantinedCount() const { return quarantined_.size(); }

  // Assigns workers to every queued item that may start now (the caller starts them).
  std::vector<Dispatch> schedule(Time now);

  // Whether another shared worker would help: fewer than min_free_workers shared workers are
  // free and there is room (counting `starting` workers not yet added).
  bool wantsSharedWorker(std::size_t starting) const;
  // Whether one free shared worker could stop without wantsSharedWorker(starting) asking for
  // another: more than min_free_workers are free (counting `starting` ones).
  bool spareFreeWorker(std::size_t starting) const;
  // Whether there are more quarantined functions than quarantine workers and there is room.
  bool wantsQuarantineWorker(std::size_t starting) const;

  std::size_t queued() const { return queued_; }
  std::size_t inFlight(int worker) const;
  bool busy(int worker) const;
  std::size_t sharedWorkers() const;
  std::size_t busyWorkersOf(const std::string& account) const;
  std::size_t inFlightOf(const std::string& account) const;
  // Workers `account` holds: busy with its long task, or running or about to run the first JS
  // task of an invocation of its.
  std::size_t heldBy(const std::string& account) const;
  // Whether `account`'s invocations start demoted now (see SchedulerOptions::heavy_after).
  bool heavy(const std::string& account, Time now) const;
  // Whether `worker` is reserved for a heavy account's job that has not settled.
  bool reserved(int worker) const;

 private:
  struct WorkerState {
    WorkerKind kind = WorkerKind::kShared;
    std::size_t in_flight = 0;
    bool busy = false;
    std::string busy_account;
    Time busy_since;
    // Dispatched here and not settled: invocation id -> account, and how many per account.
    std::unordered_map<std::uint64_t, std::string> fresh;
    std::unordered_map<std::string, std::size_t> fresh_per_account;
    // A heavy account's job started here demoted (0: none); only that account's jobs come here
    // until it settles.
    std::uint64_t reserved = 0;
    std::string reserved_account;
    bool holds(const std::string& account) const;
    bool heldByOtherThan(const std::string& account) const;
  };
  // Long-task time of an account, decayed.
  struct Usage {
    double ms = 0;
    Time at;
  };
  struct AccountQueue {
    FairQueue<Item> q;  // by function key
  };
  bool eligible(int worker, const WorkerState& w) const;
  int pick(const Item& item, bool heavy);
  // Returns whether `worker` is the item's home (after a move of the home, if any); a home that
  // moved off a live worker is named in `moved_from`.
  bool assign(int worker, const Item& item, bool heavy, Time now, int* moved_from);
  double usageMs(const std::string& account, Time now) const;

  SchedulerOptions options_;
  std::unordered_map<int, WorkerState> workers_;
  std::unordered_map<std::string, AccountQueue> accounts_;
  std::deque<std::string> ring_;  // accounts with queued items, in serving order
  std::unordered_map<std::string, std::size_t> per_function_;  // queued per function key
  std::unordered_map<std::string, std::size_t> account_in_flight_;
  std::unordered_map<std::string, std::size_t> account_busy_;
  std::unordered_map<std::string, Usage> usage_;
  std::unordered_map<std::string, int> home_;          // function key -> worker
  std::unordered_map<std::string, int> account_home_;  // account -> worker
  std::unordered_set<std::string> quarantined_;
  std::unordered_map<std::string, int> quarantine_worker_;  // function key -> worker
  std::size_t queued_ = 0;
  std::size_t next_rr_ = 0;
};

}  // namespace parley::functions::engine
