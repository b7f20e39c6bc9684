#pragma once

// Limits that hold across the nodes of a cluster. A node-local limit (the login throttle, a rate
// limiter) sends what it counted to the other nodes under its name and counts what they sent
// under that name as if it had happened here, so an attacker spreading attempts over the nodes
// behind a balancer gets no more than on one node. The transport (app/cluster_limits.h: core
// NATS broadcasts) delivers each event at most once, to the nodes connected at the time, within
// milliseconds; a node never gets its own events back. A lost event (a node cut from the bus, a
// node started later) is only a count missed: the limits stay each node's own, never looser than
// on one node alone.
//
// Threading: thread-safe. publish() never blocks and must not be called with a lock the
// receivers take; receivers are called on a transport thread, one event at a time per name.

#include <functional>
#include <string>
#include <string_view>

namespace parley {

class LimitPeers {
 public:
  using Receiver = std::function<void(std::string_view event)>;
  virtual ~LimitPeers() = default;
  // Sends `event` of the limit `name` to the other nodes.
  virtual void publish(std::string_view name, std::string event) = 0;
  // From now on `receiver` gets the other nodes' events of `name`: one receiver per name (a
  // second replaces the first). detach() waits for a call in progress; after it returns the
  // receiver is not called again.
  virtual void attach(const std::string& name, Receiver receiver) = 0;
  virtual void detach(const std::string& name) = 0;
};

}  // namespace parley
