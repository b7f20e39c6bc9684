#pragma once

// The production Limits: ONE long-lived thread that calls Terminator::terminate() when the
// deadline of a running JS scope passes or its CPU budget is used up, and
// Terminator::longTask() while a scope has run longer than `long_task`. Entering/leaving a
// scope takes a mutex and wakes the thread only when the new scope's first check is earlier
// than the one it sleeps towards.

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "common/thread_annotations.h"
#include "functions/engine/limits.h"

namespace parley::functions::engine {

// Owned by its user (the worker side); starts its thread in the constructor and joins it in the
// destructor. Thread-safe.
class Watchdog final : public Limits {
 public:
  // `long_task`: how long a scope runs before longTask() is called (0 = never).
  explicit Watchdog(std::chrono::milliseconds long_task = std::chrono::milliseconds(0));
  ~Watchdog() override;
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // How many times it terminated JS (for stats and tests).
  std::uint64_t firedCount() const;

 protected:
  // Limits
  std::uint64_t onEnterJs(Terminator& terminator, SteadyTime deadline,
                          const CpuBudget* cpu) override;
  bool exitJs(std::uint64_t token) override;

 private:
  struct Entry {
    std::uint64_t token;
    Terminator* terminator;
    SteadyTime deadline;
    bool has_cpu;
    clockid_t cpu_clock;
    std::chrono::nanoseconds cpu_limit_at;  // on cpu_clock
    SteadyTime cpu_check_at;
    SteadyTime long_at;
    bool fired;
  };
  void run() PARLEY_EXCLUDES(mu_);

  const std::chrono::milliseconds long_task_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> entries_ PARLEY_GUARDED_BY(mu_);  // at most one per worker thread
  std::uint64_t next_token_ PARLEY_GUARDED_BY(mu_) = 1;
  SteadyTime wake_at_ PARLEY_GUARDED_BY(mu_) = SteadyTime::max();
  std::uint64_t fired_count_ PARLEY_GUARDED_BY(mu_) = 0;
  bool stop_ PARLEY_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// The CPU time used so far on `clock`.
std::chrono::nanoseconds cpuNow(clockid_t clock);

}  // namespace parley::functions::engine
