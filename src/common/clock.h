#pragma once

#include <chrono>
#include <cstdint>

namespace parley {

// Wall-clock time as milliseconds since the Unix epoch (what the protocol and the store use).
using TimeMs = std::int64_t;

// The source of time. SystemClock in production, FakeClock (common/testing) in tests.
// Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual TimeMs nowMs() const = 0;
  // A monotonic reading for measuring durations.
  virtual std::chrono::steady_clock::time_point steadyNow() const = 0;
};

class SystemClock final : public Clock {
 public:
  // Clock
  TimeMs nowMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  std::chrono::steady_clock::time_point steadyNow() const override {
    return std::chrono::steady_clock::now();
  }
};

}  // namespace parley
