#pragma once

// Runs function schedules (store::ScheduleStore) when their cron expressions come due: on the
// deployed version, through the service's recording Runner (the warm path the bot connector and
// the functions gateway take), so each run's logs are stored and its metrics recorded like any
// production invocation; the scheduler adds one entry of its own per run to the function's logs.
//
// Due runs and the missed-runs rule. A schedule's `next_run_at` is its next cron time. When a
// pass finds it at or before now, every cron time in [next_run_at, now] is a missed time (one,
// normally; many after downtime, or when a run held the schedule past its next time). If the
// latest missed time is at most `catch_up_window` old, the schedule runs ONCE now for all of
// them; older missed times are skipped, and the skip is logged (Warn) in the function's logs.
// Either way the schedule then resumes at its next cron time after now. The same rule runs at
// start-up, so a server that was down runs each schedule at most once for what it missed.
//
// At most one run of a schedule at a time: a run is started only after the store accepted a
// claim on it (claimScheduleRun: a compare-and-set on next_run_at, refused while an unexpired
// claim exists), so two passes, threads or cluster nodes never run one time twice and never
// overlap; the claim holds for deadline + claim_margin, after which a dead node's run may be
// taken over. A node also never starts a schedule it is still running.
//
// Ownership: main owns it; `store`, `runner` and `clock` must outlive it (destroy it before the
// FunctionService). Threading: thread-safe. start() runs passes on the scheduler's own thread
// every poll_interval; runDue() runs one pass on the caller's thread (tests, with a fake clock).
// Run ends (store writes) run on the scheduler's executor, never on a functions thread. The
// destructor stops the thread and waits for runs in flight (at most their deadline).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>

#include "common/clock.h"
#include "common/thread_annotations.h"
#include "functions/runner.h"
#include "functions/service/executor.h"
#include "store/store.h"

namespace parley::functions::schedule {

struct SchedulerOptions {
  // How often the thread looks for due schedules. Default: 1 s (a run starts at most ~1 s after
  // its minute). REQUIRES: > 0 for start().
  std::chrono::milliseconds poll_interval{1000};
  // Missed times at most this old are run (once, together) at the next pass; older ones are
  // skipped. Default: 1 h.
  std::chrono::milliseconds catch_up_window{3'600'000};
  // Wall-clock budget of one run. Default: the platform limit, 30 s.
  std::chrono::milliseconds deadline{30'000};
  // A claim holds for deadline + claim_margin. Default: 30 s.
  std::chrono::milliseconds claim_margin{30'000};
  // Due schedules taken per pass. Default: 100.
  int batch = 100;
};

class FunctionScheduler final {
 public:
  FunctionScheduler(store::Store& store, Runner& runner, const Clock& clock,
                    SchedulerOptions options = {});
  ~FunctionScheduler();
  FunctionScheduler(const FunctionScheduler&) = delete;
  FunctionScheduler& operator=(const FunctionScheduler&) = delete;

  // Starts the thread that runs a pass every poll_interval (the first at once). Call once.
  void start();

  // One pass at clock.nowMs(): applies the missed-runs rule to every due schedule and starts the
  // runs it calls for. Returns how many runs it started. Blocking (store calls).
  int runDue() PARLEY_EXCLUDES(mu_);

  // Blocks until no run started by this scheduler is in flight and their ends are stored.
  void waitIdleForTest() PARLEY_EXCLUDES(mu_);

  // Prometheus text: parley_schedule_runs_total{outcome="ok"|"error"},
  // parley_schedule_missed_total{handling="run"|"skipped"}.
  std::string prometheusText() const PARLEY_EXCLUDES(mu_);

 private:
  using Key = std::pair<std::string, std::string>;  // account, schedule id

  void loop() PARLEY_EXCLUDES(mu_);
  // Applies the rule to one due schedule; true when a run was started.
  bool handle(const store::Schedule& s, TimeMs now) PARLEY_EXCLUDES(mu_);
  void finish(const store::Schedule& s, const std::string& run_id, TimeMs due_at,
              const InvokeResult& result) PARLEY_EXCLUDES(mu_);
  void log(const store::Schedule& s, const std::string& request_id, const std::string& level,
           std::string message);

  store::Store& store_;
  Runner& runner_;
  const Clock& clock_;
  const SchedulerOptions options_;

  mutable Mutex mu_;
  std::condition_variable cv_;  // with mu_: stopping_ set, or in_flight_ shrank
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::set<Key> in_flight_ PARLEY_GUARDED_BY(mu_);
  std::int64_t runs_ok_ PARLEY_GUARDED_BY(mu_) = 0;
  std::int64_t runs_failed_ PARLEY_GUARDED_BY(mu_) = 0;
  std::int64_t missed_run_ PARLEY_GUARDED_BY(mu_) = 0;
  std::int64_t missed_skipped_ PARLEY_GUARDED_BY(mu_) = 0;

  std::thread thread_;
  // Run ends are stored here, off the functions threads. Last member: drained first.
  std::unique_ptr<service::Executor> executor_;
};

}  // namespace parley::functions::schedule
