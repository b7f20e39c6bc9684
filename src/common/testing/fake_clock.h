#pragma once

#include <atomic>

#include "common/clock.h"

namespace parley::testing {

// A clock that moves only when told. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimeMs start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  void advanceMs(TimeMs delta) { now_ms_ += delta; }
  void setMs(TimeMs now) { now_ms_ = now; }

  // Clock
  TimeMs nowMs() const override { return now_ms_.load(); }
  std::chrono::steady_clock::time_point steadyNow() const override {
    return std::chrono::steady_clock::time_point(std::chrono::milliseconds(now_ms_.load()));
  }

 private:
  std::atomic<TimeMs> now_ms_;
};

}  // namespace parley::testing
