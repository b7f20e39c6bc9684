#pragma once

// LimitPeers over the bus: the login and token-endpoint throttles and the functions' HTTP rate
// limit hold across the nodes of a cluster (common/limit_peers.h). Each event is a core NATS
// broadcast on `parley-limits.<name>` carrying `{"origin": node, "event": …}`; every node
// listens on `parley-limits.>` and hands the events of other nodes to the receiver attached
// under that name. Nothing is stored: a node cut from NATS, or started later, misses what was
// sent meanwhile and keeps its own counts (never looser than one node alone). A failed
// broadcast is counted, not retried.
//
// Threading: thread-safe. Receivers run on the bus's delivery thread, one event at a time,
// under this object's mutex (detach() waits for a call in progress). The bus must outlive it.

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "bus/bus.h"
#include "common/limit_peers.h"
#include "common/result.h"
#include "common/shared_mutex.h"

namespace parley::app {

class ClusterLimits final : public LimitPeers {
 public:
  // `node`: this node's name (REQUIRES: non-empty).
  ClusterLimits(bus::Bus& bus, std::string node);
  ~ClusterLimits() override;

  // Starts listening to the other nodes.
  Status start();
  // No receiver is called and nothing is sent once it returns (publish() then does nothing):
  // call it before the bus is destroyed, as the limits may outlive it.
  void stop();

  void publish(std::string_view name, std::string event) override;
  void attach(const std::string& name, Receiver receiver) override;
  void detach(const std::string& name) override;

  // Broadcasts that failed (the bus could not send them), events received and handed on.
  std::uint64_t failedSends() const;
  std::uint64_t received() const;
  // Prometheus text of the counters above.
  std::string prometheusText() const;

 private:
  void receive(const bus::BusMessage& m);

  bus::Bus& bus_;
  const std::string node_;
  mutable Mutex mu_;
  std::map<std::string, Receiver, std::less<>> receivers_ PARLEY_GUARDED_BY(mu_);
  std::unique_ptr<bus::Subscription> listening_;
  // Held shared while a broadcast is sent, exclusively by stop(); not mu_, which a delivery on
  // the sending thread (the in-process bus) takes.
  SharedMutex send_mu_;
  bool stopped_ PARLEY_GUARDED_BY(send_mu_) = false;
  std::uint64_t failed_sends_ PARLEY_GUARDED_BY(mu_) = 0;
  std::uint64_t received_ PARLEY_GUARDED_BY(mu_) = 0;
};

}  // namespace parley::app
