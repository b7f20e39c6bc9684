// Presence of the nodes sharing a store, with or without a bus.

#include "app/node_presence.h"

#include <spdlog/spdlog.h>

namespace parley::app {

std::string defaultNodeName(const std::string& host_name, const std::string& http_host,
                            const std::string& https_host) {
  const std::string& bound = !http_host.empty() ? http_host : https_host;
  const auto colon = bound.rfind(':');
  if (colon == std::string::npos) return host_name;
  return host_name + bound.substr(colon);
}

namespace {

// The lease under `key` when another node holds it unexpired.
std::optional<store::Lease> heldByOther(store::ClusterStore& cluster, const Clock& clock,
                                        const char* key, const std::string& node) {
  auto l = cluster.getLease(ConversationId(key));
  if (!l || l->node == node || l->expires_at <= clock.nowMs()) return std::nullopt;
  return *l;
}

}  // namespace

Result<std::unique_ptr<NodePresence>> NodePresence::start(store::ClusterStore& cluster,
                                                          const Clock& clock, std::string node,
                                                          bool with_bus,
                                                          std::chrono::milliseconds ttl) {
  if (auto solo = heldByOther(cluster, clock, kSoloKey, node))
    return makeError(ErrorCode::kConflict,
                     "node " + solo->node +
                         " uses this store without --bus; nodes sharing a PostgreSQL store all "
                         "need --bus nats://HOST:PORT (stop it, or start it with --bus)");
  if (!with_bus) {
    if (auto bus = heldByOther(cluster, clock, kBusKey, node))
      return makeError(ErrorCode::kConflict,
                       "nodes with a bus (" + bus->node +
                           ") use this store: --bus nats://HOST:PORT is required when more "
                           "than one node runs on a PostgreSQL store");
  }
  std::unique_ptr<NodePresence> p(new NodePresence(cluster, std::move(node), with_bus, ttl));
  if (!p->mark())
    return makeError(ErrorCode::kConflict,
                     "another node took this store without --bus meanwhile; --bus "
                     "nats://HOST:PORT is required when more than one node runs");
  p->renewer_ = std::thread([raw = p.get()] { raw->renewLoop(); });
  return p;
}

NodePresence::NodePresence(store::ClusterStore& cluster, std::string node, bool with_bus,
                           std::chrono::milliseconds ttl)
    : cluster_(cluster), node_(std::move(node)), with_bus_(with_bus), ttl_(ttl) {}

NodePresence::~NodePresence() {
  {
    MutexLock l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  if (!with_bus_ && solo_epoch_ != 0)
    (void)cluster_.releaseLease(ConversationId(kSoloKey), node_, solo_epoch_);
}

bool NodePresence::mark() {
  const auto key = ConversationId(with_bus_ ? kBusKey : kSoloKey);
  auto l = cluster_.acquireLease(key, node_, ttl_.count());
  if (l) {
    if (!with_bus_) solo_epoch_ = l->epoch;
    return true;
  }
  if (with_bus_ && l.error().code == ErrorCode::kConflict) return true;  // another bus node's
  if (l.error().code == ErrorCode::kConflict) {
    spdlog::error("cluster: another node holds this store without --bus: {}", l.error().message);
    return false;
  }
  spdlog::warn("cluster: renewing this node's presence failed: {}", l.error().message);
  return true;  // the store is unreachable: nothing to decide now
}

void NodePresence::renewLoop() {
  MutexLock l(mu_);
  auto next = std::chrono::steady_clock::now() + ttl_ / 3;
  while (!stopping_) {
    if (std::chrono::steady_clock::now() < next) {
      (void)l.waitUntil(cv_, next);
      continue;
    }
    l.unlock();
    (void)mark();
    l.lock();
    next = std::chrono::steady_clock::now() + ttl_ / 3;
  }
}

}  // namespace parley::app
