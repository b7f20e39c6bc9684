#pragma once

// The connector's work in flight and its shutdown state, shared by its parts (bot_service.cpp
// owns the one instance). Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

namespace parley::connector {

class WorkTracker {
 public:
  // Work in flight: turns' steps, timers, engine and runner calls awaiting their completion,
  // turn records not yet committed. Every add() is matched by one done().
  void add() { ++busy_; }
  void done() {
    if (--busy_ == 0) notify();
  }
  // Blocks until no work is in flight; false after `timeout`.
  bool waitIdle(std::chrono::milliseconds timeout) {
    std::unique_lock l(mu_);
    return cv_.wait_for(l, timeout, [&] { return busy_.load() == 0; });
  }

  // Turns running (set between a turn's start and its end).
  void turnStarted() { ++running_turns_; }
  void turnEnded() {
    if (--running_turns_ == 0) notify();
  }
  // Blocks until no turn is running or `deadline` has passed; returns how many still run.
  int waitTurnsDone(std::chrono::milliseconds deadline) {
    std::unique_lock l(mu_);
    cv_.wait_for(l, deadline, [&] { return running_turns_.load() == 0; });
    return running_turns_.load();
  }

  // stop() has begun: no new work starts. Returns whether it had begun already.
  bool setStopped() { return stopped_.exchange(true); }
  bool stopped() const { return stopped_.load(); }
  // drain(): no new turn starts.
  void setDraining() { draining_ = true; }
  bool draining() const { return draining_.load(); }
  // After the drain's deadline, and in stop(): a running turn stops at its next step without
  // publishing more; it stays pending (its done mark was not stored) and runs again at the next
  // start.
  void setInterrupting() { interrupting_ = true; }
  bool interrupting() const { return interrupting_.load(); }

  // Tasks queued onto a conversation's strand from outside it (a function's result, an engine
  // completion that came from a pool thread, a REST call); work already on the strand runs
  // inline and is not counted. Tests pin the hand-offs of a turn with it.
  void countHandOff() { ++strand_hand_offs_; }
  std::uint64_t handOffs() const { return strand_hand_offs_.load(); }

  // Handlers that run on the engine's strands, which outlive the connector (inactivity timers,
  // also the cancelled ones stop() leaves queued), hold this token while they run and do
  // nothing once releaseLife() has dropped it.
  std::weak_ptr<int> life() const { return life_; }
  // Drops the token and waits until no handler holds it any more. Call once, from stop().
  void releaseLife() {
    std::weak_ptr<int> life = life_;
    life_.reset();
    while (!life.expired()) std::this_thread::yield();
  }

 private:
  void notify() {
    std::lock_guard l(mu_);
    cv_.notify_all();
  }

  std::atomic<int> busy_{0};
  std::atomic<int> running_turns_{0};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> interrupting_{false};
  std::atomic<std::uint64_t> strand_hand_offs_{0};
  // Guards no member (the counters are atomics): it pairs with cv_, so a notify cannot fall
  // between a waiter's check and its wait.
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<int> life_ = std::make_shared<int>(0);
};

}  // namespace parley::connector
