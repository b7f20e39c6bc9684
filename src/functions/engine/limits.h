#pragma once

// Limits on running JavaScript, behind an interface so tests can fake them. The worker enters
// a Limits::Scope each time it runs JS for an invocation; while the scope lives, the Limits
// implementation may stop the JS through the Terminator (from any thread). Plain C++: no V8.

#include <time.h>

#include <chrono>
#include <cstdint>
#include <utility>

namespace parley::functions::engine {

using SteadyTime = std::chrono::steady_clock::time_point;

// Stops the JS running on one isolate (v8::Isolate::TerminateExecution). Thread-safe. Owned by
// the isolate's slot; valid while a Scope naming it lives.
class Terminator {
 public:
  virtual ~Terminator() = default;
  virtual void terminate() = 0;
  // The JS has been running for a long time (Watchdog::long_task) and still runs; called again
  // each further such period. Called on the limits' thread while the scope lives; must not
  // block long. Default: nothing.
  virtual void longTask() {}
};

// CPU time the JS may still use, measured on `clock` (the CPU clock of the thread that runs it,
// e.g. from pthread_getcpuclockid).
struct CpuBudget {
  clockid_t clock{};
  std::chrono::nanoseconds used{0};  // the clock's reading when the JS is entered
  std::chrono::nanoseconds remaining{0};
};

// Thread-safe. Outlives every Scope it hands out.
class Limits {
 public:
  // RAII "in JS" scope. Move-only. Destroy (or exit()) on the thread that entered, as soon as
  // control is back from JS.
  class Scope {
   public:
    Scope(Limits* limits, std::uint64_t token) : limits_(limits), token_(token) {}
    Scope(Scope&& o) noexcept : limits_(std::exchange(o.limits_, nullptr)), token_(o.token_) {}
    Scope& operator=(Scope&&) = delete;
    ~Scope() { exit(); }
    // Leaves the scope. True when the limits terminated the JS during it. After exit() returns,
    // the Limits never touch the Terminator for this scope again.
    bool exit() {
      if (!limits_) return fired_;
      fired_ = std::exchange(limits_, nullptr)->exitJs(token_);
      return fired_;
    }

   private:
    Limits* limits_;
    std::uint64_t token_;
    bool fired_ = false;
  };

  virtual ~Limits() = default;
  // Enters JS that must stop at `deadline` and, when `cpu` is given, once it has used
  // `cpu->remaining` of CPU time. `terminator` must stay valid until the scope exits.
  Scope enterJs(Terminator& terminator, SteadyTime deadline, const CpuBudget* cpu = nullptr) {
    return Scope(this, onEnterJs(terminator, deadline, cpu));
  }

 protected:
  virtual std::uint64_t onEnterJs(Terminator& terminator, SteadyTime deadline,
                                  const CpuBudget* cpu) = 0;
  // Returns true when the terminator was called for this token.
  virtual bool exitJs(std::uint64_t token) = 0;
};

}  // namespace parley::functions::engine
