#pragma once

// Whether a node of a cluster may hold conversation leases (conversation::Options::
// may_hold_leases): not while it is cut off from the bus that other nodes still have. Such a
// node keeps PostgreSQL (its leases would stay valid) but no other node reaches it: publishes
// forwarded to it fail and other nodes' sockets stop seeing its conversations. So it gives its
// conversations up, the nodes that have the bus take them over, and it claims again once its
// bus is back. When no node has the bus (NATS itself is down), nobody gives anything up: each
// node goes on driving what it holds (docs/cluster.md, "A node cut off from NATS").
//
// The rule, checked every lease_ms / 3 (parley serve):
//   - The bus is "up" while it is connected, or was disconnected for less than `bound` (a short
//     reconnection changes nothing). Up: the node marks it in the store's lease table (a lease on
//     the reserved key `@bus-up`, `ttl` long, taken by whichever node with the bus renews it
//     first; the others find it held) and may hold leases.
//   - Cut off (down for `bound` or more): the node releases `@bus-up` if it held it, so that a
//     node with the bus takes it at its next round, and then may hold leases only while nobody
//     else holds `@bus-up` unexpired: no node has the bus (the whole cluster is cut off from
//     NATS), or none is known yet. A store it cannot read changes nothing (its renewals fail
//     anyway).
//
// Threading: check() does the store statements (the mark goes through the store's writer, which
// may wait behind a group commit, or for seconds while PostgreSQL restarts), so start() runs it
// every `period` on a thread of its own, and mayHoldLeases() — the engine's lease round — only
// reads its last answer and never waits for the store (a lease round behind the writer would let
// the node's own leases expire). Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/thread_annotations.h"
#include "store/store.h"

namespace parley::app {

class BusHealth {
 public:
  static constexpr const char* kKey = "@bus-up";

  // `connected` says whether the bus reaches the others now (bus::Bus::connected). REQUIRES:
  // bound_ms >= 0, ttl_ms > 0. `cluster` and `clock` must outlive it.
  BusHealth(store::ClusterStore& cluster, const Clock& clock, std::string node,
            std::function<bool()> connected, TimeMs bound_ms, TimeMs ttl_ms);
  // Stops the thread of start() (waits for a check in progress).
  ~BusHealth();
  BusHealth(const BusHealth&) = delete;
  BusHealth& operator=(const BusHealth&) = delete;

  // Runs check() every `period` on a thread of its own until destruction. Call once.
  void start(std::chrono::milliseconds period);
  // Applies the rule above now (store statements; blocking) and keeps the answer.
  void check();
  // The answer of the last check() (true before the first). Non-blocking.
  bool mayHoldLeases() const { return may_.load(); }

 private:
  bool decide();

  store::ClusterStore& cluster_;
  const Clock& clock_;
  const std::string node_;
  const std::function<bool()> connected_;
  const TimeMs bound_ms_;
  const TimeMs ttl_ms_;

  std::atomic<bool> may_{true};

  Mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::thread checker_;

  Mutex decide_mu_;
  std::optional<TimeMs> down_since_ PARLEY_GUARDED_BY(decide_mu_);  // first check that saw it down
  std::int64_t held_epoch_ PARLEY_GUARDED_BY(decide_mu_) = 0;       // `@bus-up` held at it (0: not)
  bool gave_up_ PARLEY_GUARDED_BY(decide_mu_) = false;              // the last answer was false
  bool alone_logged_ PARLEY_GUARDED_BY(decide_mu_) = false;         // cut off, nobody has the bus
};

}  // namespace parley::app
