#pragma once

// The production Limits: ONE long-lived thread that calls Terminator::terminate() when the
// deadline of a running JS scope passes. Entering/leaving a scope takes a mutex and wakes the
// thread only when the new deadline is earlier than the one it sleeps towards.

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "functions/engine/limits.h"

namespace parley::functions::engine {

// Owned by the Engine; starts its thread in the constructor and joins it in the destructor.
// Thread-safe.
class Watchdog final : public Limits {
 public:
  Watchdog();
  ~Watchdog() override;
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // How many times it terminated JS (for stats and tests).
  std::uint64_t firedCount() const;

 protected:
  // Limits
  std::uint64_t onEnterJs(Terminator& terminator, SteadyTime deadline) override;
  bool exitJs(std::uint64_t token) override;

 private:
  struct Entry {
    std::uint64_t token;
    Terminator* terminator;
    SteadyTime deadline;
    bool fired;
  };
  void run();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> entries_;              // GUARDED_BY(mu_); at most one per worker
  std::uint64_t next_token_ = 1;            // GUARDED_BY(mu_)
  SteadyTime wake_at_ = SteadyTime::max();  // GUARDED_BY(mu_)
  std::uint64_t fired_count_ = 0;           // GUARDED_BY(mu_)
  bool stop_ = false;                       // GUARDED_BY(mu_)
  std::thread thread_;
};

}  // namespace parley::functions::engine
