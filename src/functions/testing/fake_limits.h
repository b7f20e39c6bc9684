#pragma once

// A Limits for tests: records every "enter JS" and can terminate JS (or report it as a long task)
// when the test says so instead of at a wall-clock deadline. Thread-safe.

#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/thread_annotations.h"
#include "functions/engine/limits.h"

namespace parley::functions::testing {

class FakeLimits final : public engine::Limits {
 public:
  // When set, every scope terminates its JS as soon as it is entered.
  void setTerminateOnEnter(bool on) { terminate_on_enter_ = on; }
  int enteredForTest() const { return entered_; }
  // Entries made when their deadline had already passed.
  int enteredLateForTest() const { return entered_late_; }
  std::vector<engine::SteadyTime> deadlinesForTest() {
    MutexLock lock(mu_);
    return deadlines_;
  }
  // Scopes entered and not exited (JS running now).
  int liveForTest() const {
    MutexLock lock(mu_);
    return static_cast<int>(live_.size());
  }
  // Calls Terminator::longTask() / terminate() for every live scope, as the Watchdog does past
  // `long_task` / at a deadline; returns how many.
  int longTaskNow() {
    MutexLock lock(mu_);
    for (auto& [token, t] : live_) t->longTask();
    return static_cast<int>(live_.size());
  }
  int terminateNow() {
    MutexLock lock(mu_);
    for (auto& [token, t] : live_) {
      t->terminate();
      fired_.insert(token);
    }
    int n = static_cast<int>(live_.size());
    live_.clear();
    return n;
  }

 protected:
  // Limits
  std::uint64_t onEnterJs(engine::Terminator& t, engine::SteadyTime deadline,
                          const engine::CpuBudget* /*cpu*/) override {
    ++entered_;
    if (std::chrono::steady_clock::now() >= deadline) ++entered_late_;
    MutexLock lock(mu_);
    deadlines_.push_back(deadline);
    std::uint64_t token = next_token_++;
    if (terminate_on_enter_) {
      t.terminate();
      fired_.insert(token);
    } else {
      live_[token] = &t;
    }
    return token;
  }
  bool exitJs(std::uint64_t token) override {
    MutexLock lock(mu_);
    live_.erase(token);
    return fired_.erase(token) > 0;
  }

 private:
  std::atomic<bool> terminate_on_enter_{false};
  std::atomic<int> entered_{0};
  std::atomic<int> entered_late_{0};
  mutable Mutex mu_;
  std::vector<engine::SteadyTime> deadlines_ PARLEY_GUARDED_BY(mu_);
  std::uint64_t next_token_ PARLEY_GUARDED_BY(mu_) = 1;
  std::unordered_map<std::uint64_t, engine::Terminator*> live_ PARLEY_GUARDED_BY(mu_);
  std::unordered_set<std::uint64_t> fired_ PARLEY_GUARDED_BY(mu_);
};

}  // namespace parley::functions::testing
