#pragma once

// A Limits for tests: records every "enter JS" and can terminate JS at once instead of waiting
// for a wall-clock deadline. Thread-safe.

#include <atomic>
#include <chrono>
#include <mutex>
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

 protected:
  // Limits
  std::uint64_t onEnterJs(engine::Terminator& t, engine::SteadyTime deadline,
                          const engine::CpuBudget* /*cpu*/) override {
    ++entered_;
    if (std::chrono::steady_clock::now() >= deadline) ++entered_late_;
    {
      MutexLock lock(mu_);
      deadlines_.push_back(deadline);
    }
    if (terminate_on_enter_) {
      t.terminate();
      return 1;
    }
    return 0;
  }
  bool exitJs(std::uint64_t token) override { return token == 1; }

 private:
  std::atomic<bool> terminate_on_enter_{false};
  std::atomic<int> entered_{0};
  std::atomic<int> entered_late_{0};
  Mutex mu_;
  std::vector<engine::SteadyTime> deadlines_ PARLEY_GUARDED_BY(mu_);
};

}  // namespace parley::functions::testing
