#pragma once

// The rule that nodes sharing a PostgreSQL store all run with a bus (`--bus`): a node without
// one would neither hear nor tell the others. Each node marks its presence with a lease on a
// reserved key of the store's lease table (ClusterStore): a node without a bus holds `@solo`
// alone; nodes with one keep `@bus` taken (whoever renews it). A node refuses to start when the
// other kind is present:
//   - without a bus, when `@bus` or `@solo` is held (unexpired) by another node;
//   - with a bus, when `@solo` is held (unexpired) by another node.
// The leases are renewed every ttl/3 on a thread of their own and `@solo` is released on
// destruction, so a stopped node frees the store at once and a killed one after `ttl`.
// Two nodes of different kinds starting in the same instant may both pass the check (each
// looks before the other's lease is written); the next start of either is refused.
//
// Reserved keys begin with '@', which no conversation id does (they are UUIDs).

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "store/store.h"

namespace parley::app {

// The name of a node started without --node: "<host_name>:<port>", the port of its HTTP
// listener as bound (`http_host`, "HOST:PORT" or "[v6]:PORT"), else of its HTTPS one; just
// `host_name` when it has neither. Unique per cluster as long as no two nodes share a host and
// a port.
std::string defaultNodeName(const std::string& host_name, const std::string& http_host,
                            const std::string& https_host);

class NodePresence {
 public:
  static constexpr const char* kSoloKey = "@solo";
  static constexpr const char* kBusKey = "@bus";

  // Conflict (the message says which node and what to do) when the rule above refuses the start.
  static Result<std::unique_ptr<NodePresence>> start(
      store::ClusterStore& cluster, const Clock& clock, std::string node, bool with_bus,
      std::chrono::milliseconds ttl = std::chrono::seconds(10));
  ~NodePresence();
  NodePresence(const NodePresence&) = delete;
  NodePresence& operator=(const NodePresence&) = delete;

 private:
  NodePresence(store::ClusterStore& cluster, std::string node, bool with_bus,
               std::chrono::milliseconds ttl);
  // Takes or renews this node's lease; false (logged) when another node holds `@solo`.
  bool mark();
  void renewLoop() PARLEY_EXCLUDES(mu_);

  store::ClusterStore& cluster_;
  const std::string node_;
  const bool with_bus_;
  const std::chrono::milliseconds ttl_;
  std::int64_t solo_epoch_ = 0;  // the `@solo` lease held (renewal thread only after start)

  Mutex mu_;
  std::condition_variable cv_;
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::thread renewer_;
};

}  // namespace parley::app
