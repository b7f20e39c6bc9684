#include "functions/engine/watchdog.h"

#include <algorithm>

#include "common/thread_name.h"

namespace parley::functions::engine {

std::chrono::nanoseconds cpuNow(clockid_t clock) {
  timespec ts{};
  if (clock_gettime(clock, &ts) != 0) return std::chrono::nanoseconds(0);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

Watchdog::Watchdog(std::chrono::milliseconds long_task)
    : long_task_(long_task), thread_([this] {
        nameThisThread("fn-watchdog");
        run();
      }) {}

Watchdog::~Watchdog() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::uint64_t Watchdog::firedCount() const {
  MutexLock lock(mu_);
  return fired_count_;
}

std::uint64_t Watchdog::onEnterJs(Terminator& terminator, SteadyTime deadline,
                                  const CpuBudget* cpu) {
  auto now = std::chrono::steady_clock::now();
  Entry e{};
  e.terminator = &terminator;
  e.deadline = deadline;
  e.has_cpu = cpu != nullptr;
  e.cpu_check_at = SteadyTime::max();
  if (cpu) {
    e.cpu_clock = cpu->clock;
    e.cpu_limit_at = cpu->used + cpu->remaining;
    // CPU time never runs faster than wall time on one thread: nothing to check before then.
    e.cpu_check_at = now + std::chrono::duration_cast<SteadyTime::duration>(cpu->remaining);
  }
  e.long_at = long_task_.count() > 0 ? now + long_task_ : SteadyTime::max();
  e.fired = false;
  SteadyTime first = std::min({e.deadline, e.cpu_check_at, e.long_at});
  MutexLock lock(mu_);
  e.token = next_token_++;
  entries_.push_back(e);
  if (first < wake_at_) {
    wake_at_ = first;
    cv_.notify_one();
  }
  return e.token;
}

bool Watchdog::exitJs(std::uint64_t token) {
  MutexLock lock(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.token == token; });
  if (it == entries_.end()) return false;
  bool fired = it->fired;
  *it = entries_.back();
  entries_.pop_back();
  return fired;
}

void Watchdog::run() {
  MutexLock lock(mu_);
  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    SteadyTime next = SteadyTime::max();
    for (auto& e : entries_) {
      if (e.fired) continue;
      bool stop_it = e.deadline <= now;
      if (!stop_it && e.has_cpu && e.cpu_check_at <= now) {
        auto left = e.cpu_limit_at - cpuNow(e.cpu_clock);
        if (left.count() <= 0) {
          stop_it = true;
        } else {
          e.cpu_check_at = now + std::chrono::duration_cast<SteadyTime::duration>(left);
        }
      }
      if (stop_it) {
        // Under mu_: the scope cannot exit (and its isolate cannot go away) meanwhile.
        e.terminator->terminate();
        e.fired = true;
        ++fired_count_;
        continue;
      }
      if (e.long_at <= now) {
        e.terminator->longTask();
        e.long_at = now + long_task_;
      }
      next = std::min({next, e.deadline, e.cpu_check_at, e.long_at});
    }
    wake_at_ = next;
    if (next == SteadyTime::max()) {
      lock.wait(cv_);
    } else {
      lock.waitUntil(cv_, next);
    }
  }
}

}  // namespace parley::functions::engine
