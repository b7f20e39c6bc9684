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
  void run();

  const std::chrono::milliseconds long_task_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> entries_;              // GUARDED_BY(mu_); at most one per worker thread
  std::uint64_t next_token_ = 1;            // GUARDED_BY(mu_)
  SteadyTime wake_at_ = SteadyTime::max();  // GUARDED_BY(mu_)
  std::uint64_t fired_count_ = 0;           // GUARDED_BY(mu_)
  bool stop_ = false;                       // GUARDED_BY(mu_)
  std::thread thread_;
};

// The CPU time used so far on `clock`.
std::chrono::nanoseconds cpuNow(clockid_t clock);

}  // namespace parley::functions::engine
