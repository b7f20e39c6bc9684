#include "functions/engine/watchdog.h"

#include <algorithm>

#include "common/thread_name.h"

namespace parley::functions::engine {

Watchdog::Watchdog()
    : thread_([this] {
        nameThisThread("fn-watchdog");
        run();
      }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::uint64_t Watchdog::firedCount() const {
  std::lock_guard lock(mu_);
  return fired_count_;
}

std::uint64_t Watchdog::onEnterJs(Terminator& terminator, SteadyTime deadline) {
  std::lock_guard lock(mu_);
  std::uint64_t token = next_token_++;
  entries_.push_back(Entry{token, &terminator, deadline, false});
  if (deadline < wake_at_) {
    wake_at_ = deadline;
    cv_.notify_one();
  }
  return token;
}

bool Watchdog::exitJs(std::uint64_t token) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.token == token; });
  if (it == entries_.end()) return false;
  bool fired = it->fired;
  *it = entries_.back();
  entries_.pop_back();
  return fired;
}

void Watchdog::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    auto now = std::chrono::steady_clock::now();
    SteadyTime next = SteadyTime::max();
    for (auto& e : entries_) {
      if (e.fired) continue;
      if (e.deadline <= now) {
        // Under mu_: the scope cannot exit (and its isolate cannot go away) meanwhile.
        e.terminator->terminate();
        e.fired = true;
        ++fired_count_;
      } else {
        next = std::min(next, e.deadline);
      }
    }
    wake_at_ = next;
    if (next == SteadyTime::max()) {
      cv_.wait(lock);
    } else {
      cv_.wait_until(lock, next);
    }
  }
}

}  // namespace parley::functions::engine
