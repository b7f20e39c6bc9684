// A node cut off from the bus gives its conversations up to the nodes that have it.

#include "app/bus_health.h"

#include <spdlog/spdlog.h>

#include "common/check.h"
#include "common/thread_name.h"

namespace parley::app {

BusHealth::BusHealth(store::ClusterStore& cluster, const Clock& clock, std::string node,
                     std::function<bool()> connected, TimeMs bound_ms, TimeMs ttl_ms)
    : cluster_(cluster),
      clock_(clock),
      node_(std::move(node)),
      connected_(std::move(connected)),
      bound_ms_(bound_ms),
      ttl_ms_(ttl_ms) {
  PARLEY_CHECK(bound_ms_ >= 0, "bound_ms must be >= 0");
  PARLEY_CHECK(ttl_ms_ > 0, "ttl_ms must be > 0");
}

BusHealth::~BusHealth() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (checker_.joinable()) checker_.join();
}

void BusHealth::start(std::chrono::milliseconds period) {
  checker_ = std::thread([this, period] {
    nameThisThread("bus-health");
    MutexLock lock(mu_);
    while (!stopping_) {
      lock.unlock();
      check();
      lock.lock();
      const auto until = std::chrono::steady_clock::now() + period;
      while (!stopping_ && lock.waitUntil(stop_cv_, until) != std::cv_status::timeout) {
      }
    }
  });
}

void BusHealth::check() { may_.store(decide()); }

bool BusHealth::decide() {
  MutexLock lock(decide_mu_);
  const ConversationId key(kKey);
  const TimeMs now = clock_.nowMs();
  if (connected_()) {
    down_since_.reset();
  } else if (!down_since_) {
    down_since_ = now;
  }
  const bool cut = down_since_ && now - *down_since_ >= bound_ms_;
  if (!cut) {
    auto l = cluster_.acquireLease(key, node_, ttl_ms_);
    held_epoch_ = l ? l->epoch : 0;  // Conflict: another node with the bus holds the mark
    if (gave_up_) spdlog::info("node {}: the bus is back; claiming conversations again", node_);
    gave_up_ = false;
    alone_logged_ = false;
    return true;
  }
  if (held_epoch_ != 0) {
    // Left for a node that has the bus, which takes it at its next round.
    if (auto s = cluster_.releaseLease(key, node_, held_epoch_); !s)
      spdlog::warn("node {}: releasing {} failed: {}", node_, kKey, s.error().message);
    held_epoch_ = 0;
  }
  auto l = cluster_.getLease(key);
  const bool other_has_bus = l && l->node != node_ && l->expires_at > now;
  if (other_has_bus && !gave_up_)
    spdlog::warn("node {}: cut off from the bus for {} ms while node {} has it", node_,
                 now - *down_since_, l->node);
  if (!other_has_bus && !alone_logged_)
    spdlog::warn(
        "node {}: cut off from the bus and no other node is known to have it: keeping "
        "its conversations",
        node_);
  alone_logged_ = !other_has_bus;
  gave_up_ = other_has_bus;
  return !other_has_bus;
}

}  // namespace parley::app
