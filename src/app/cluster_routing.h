#pragma once

// Cluster-wide agent routing: a conversation waiting on one node is offered to an agent whose
// session is on another node (docs/cluster.md, "Agents and rings across nodes").
//
// - **Agents' state.** Every `announce_period` (and at once after a local agent's state
//   changed) each node broadcasts its share of every agent's routing state
//   (conversation::localAgents: availability set by a session here, skills, capacity, and the
//   node's own load of the agent) on `parley-agents` (core NATS: not stored, nothing to replay).
//   The other nodes' engines keep it (conversation::applyAnnouncement) for `agent_ttl`: a node
//   that stops announcing (dead, cut off) has its agents forgotten and the rings offered
//   through it ended within `agent_ttl`, and their conversations are offered again.
//   The announcement also carries the node's queue heads (conversation::localQueueHeads: per
//   account and skill, the due time of the earliest conversation waiting for an agent), which
//   the other engines use for one TTR order across owners (an agent is held back, a second at
//   most, from a later-due conversation while another node waits with an earlier one).
// - **Rings.** The node that holds a waiting conversation (its engine) may ring an agent whose
//   sessions are on other nodes: it sends the ring to every node that announces the agent in
//   a state that allows it (`parley-route.<hex of node>`, request/reply), each of which keeps
//   it (`ringsForAgent`) and hands it to its sessions (the server's hub) as a RingOffered,
//   exactly as a local ring reaches them; when the ring ends (or is withdrawn from a node while
//   it goes on at others) the owner tells the node, whose sessions get the RingEnded. An ended
//   ring is remembered for as long as it was offered for, so that a second accept or reject
//   of it (another socket of the agent, a retry) still gets the owner's answer.
// - **Accept and reject.** A session's acceptRing/rejectRing of such a ring goes to the node
//   that offered it (same subject), whose engine applies it as a local accept or reject (first
//   accept wins, from whichever node; the agent becomes ASSIGNED_AGENT); its answer (the
//   conversation, or the error) is the session's answer. From then on the agent's publishes go to
//   the owner through the forwarder and the conversation's events come through the relay, as for
//   any conversation another node holds.
//
// Trust: as for the forwarder, the bus is inside the cluster's trust boundary: the owner takes
// the accepting actor as the agent's node established it (the session's login).
//
// Threading: thread-safe. One thread of its own announces and sweeps; requests are served on
// a bus thread (never blocking: the engine's calls complete later). The engine, the bus and
// `sessions` must outlive it; stop() (or the destructor) ends all of it.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bus/bus.h"
#include "common/result.h"
#include "common/thread_annotations.h"
#include "conversation/conversation_engine.h"

namespace parley::app {

struct ClusterRoutingOptions {
  // This node's name (the engine's Options::node). REQUIRES: non-empty.
  std::string node;
  // How often this node announces its agents. Default: 1 s. REQUIRES: > 0.
  std::chrono::milliseconds announce_period{1000};
  // How long another node's announcement counts without a new one. Default: 3 s (three
  // periods). REQUIRES: > announce_period.
  std::chrono::milliseconds agent_ttl{3000};
  // How long an offer, an accept or a reject waits for the other node. Default: 2 s.
  std::chrono::milliseconds request_timeout{2000};
  // The most agents one announcement carries (about 150 bytes each; NATS's payload limit is
  // 1 MiB); beyond it the rest are left out, with a warning. Default: 4,096.
  std::size_t max_agents = 4096;
  // The most queue heads one announcement carries (conversation::localQueueHeads: one per
  // account and skill with a conversation waiting for an agent, about 80 bytes each); beyond
  // it the earliest-due ones are kept. Default: 1,024.
  std::size_t max_queues = 1024;
  // A ring kept for a session here ends by itself this long after its own expiry when the
  // owner never said it ended (the owner died or the message was lost). Default: 5 s.
  std::chrono::milliseconds ring_grace{5000};
};

// The bus subject of node `node`'s routing requests (offer, end, accept, reject).
std::string routeSubject(const std::string& node);
// The subject of the agents' announcements.
inline constexpr const char* kAgentsSubject = "parley-agents";

class ClusterRouting final : public conversation::ConversationListener {
 public:
  ClusterRouting(conversation::ConversationService& engine, bus::Bus& bus,
                 ClusterRoutingOptions options);
  ~ClusterRouting() override;
  ClusterRouting(const ClusterRouting&) = delete;
  ClusterRouting& operator=(const ClusterRouting&) = delete;

  // Serves the other nodes' routing requests, listens to their announcements, lets the engine
  // ring their agents and starts announcing. `sessions` (the server's hub) gets the rings other
  // nodes offer to agents connected here; it must outlive this object (or stop() first).
  Status start(conversation::ConversationListener& sessions);
  // Stops all of the above; rings offered from then on fail (and are offered to others).
  void stop();

  // For the protocol sessions (through the forwarder): a ring another node offered to an agent
  // here is accepted or rejected by that node; any other ring by this node's engine.
  void acceptRing(conversation::Actor agent, std::string ring_id,
                  conversation::Callback<store::Conversation> done);
  void rejectRing(conversation::Actor agent, std::string ring_id,
                  conversation::Callback<void> done);
  // The engine's WAITING rings of the agent and those other nodes offered to it here.
  std::vector<conversation::Ring> ringsForAgent(const AccountId& acc, const UserId& user) const;

  // Announcements and rings handled (tests, metrics).
  std::uint64_t announcementsReceived() const;

  // ConversationListener (subscribe it to the engine): a local agent's state changed, so the
  // other nodes hear it now rather than at the next period. An `announced` change (another
  // node's state, passed on to this node's sessions) changes nothing of this node's share and
  // is not announced.
  void onAgentStateChanged(const conversation::AgentStateChanged& e) override;

 private:
  class Port;
  struct Mirrored {
    conversation::Ring ring;
    std::string owner;
    // WAITING: when it ends here by itself. Ended (the owner said so): when it is forgotten;
    // until then an accept or reject of it still goes to the owner, whose answer (a retried
    // accept, a Conflict) is the one a node alone gives.
    std::chrono::steady_clock::time_point ends_by;
    bool ended = false;
  };
  void announce();
  void sweep();
  void runLoop() PARLEY_EXCLUDES(mu_);
  void receiveAnnouncement(const bus::BusMessage& m);
  void serveRequest(const bus::BusMessage& m, bus::Reply reply);
  void offered(const std::string& owner, conversation::Ring ring, bus::Reply reply);
  void ended(conversation::Ring ring, conversation::RingEndReason reason, bus::Reply reply);
  // Sends `type` for the mirrored ring to its owner; `done` gets the answer's result object.
  void toOwner(const std::string& owner, const char* type, const conversation::Actor& agent,
               const std::string& ring_id, std::function<void(Result<boost::json::object>)> done);

  conversation::ConversationService& engine_;
  bus::Bus& bus_;
  const ClusterRoutingOptions options_;
  std::shared_ptr<Port> port_;
  std::unique_ptr<bus::Subscription> serving_;
  std::unique_ptr<bus::Subscription> listening_;

  mutable Mutex mu_;
  std::condition_variable cv_;
  conversation::ConversationListener* sessions_ PARLEY_GUARDED_BY(mu_) = nullptr;
  std::unordered_map<std::string, Mirrored> mirrored_ PARLEY_GUARDED_BY(mu_);  // by ring id
  // When each other node was last heard from (announcement or offer).
  std::map<std::string, std::chrono::steady_clock::time_point> last_seen_ PARLEY_GUARDED_BY(mu_);
  std::uint64_t announcements_ PARLEY_GUARDED_BY(mu_) = 0;
  bool announce_now_ PARLEY_GUARDED_BY(mu_) = false;
  bool stopping_ PARLEY_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace parley::app
