#pragma once

// The factory of the conversation engine (the only implementation of ConversationService).

#include <boost/json/object.hpp>
#include <functional>
#include <memory>

#include "common/clock.h"
#include "conversation/conversation_service.h"
#include "store/store.h"

namespace parley::conversation {

// The event of a publish that is about to be stored, as a content check sees it.
struct ContentToCheck {
  const AccountId& account;
  // The conversation's channel (quick replies are for messaging only).
  store::Channel channel;
  ActorKind publisher;
  // The event object as published: {"type":"ContentEvent"|"RichContentEvent", ...}.
  const boost::json::object& event;
};

// Checks the content of an event before it is stored; an error refuses the publish with it.
using ContentCheck = std::function<Status(const ContentToCheck&)>;

struct Options {
  // Engine threads (store calls and listener callbacks run on them). Default: 2. REQUIRES: >= 1.
  int threads = 2;
  // How long a ring waits for accept or reject. Default: 60 s. REQUIRES: > 0.
  TimeMs ring_expiry_ms = 60'000;
  // How many agents hold a WAITING ring for one conversation at the same time (the first to
  // accept wins). Default: 1. REQUIRES: >= 1.
  int ring_fanout = 1;
  // How long a transfer to a named agent (SUGGEST) waits for that agent before falling back to
  // the skill queue. Default: 120 s. REQUIRES: > 0.
  TimeMs suggest_timeout_ms = 120'000;
  // Period of the internal timer that calls tick(). 0 disables it (tests call tick()).
  // Default: 1000 ms (real time; deadlines are compared with the Clock).
  TimeMs tick_interval_ms = 1000;
  // Cluster mode: one TTR order across owners. How long this engine holds back ringing an agent
  // for a conversation while another live node announces (applyAnnouncement's `queues`) an
  // earlier-due waiting conversation the same agent could take; counted from the first time it
  // held that conversation back, so nothing waits longer for it. Default: 1000 ms (one
  // announcement period). 0: never held back. REQUIRES: >= 0.
  TimeMs ttr_defer_ms = 1000;
  // Checks every ContentEvent and RichContentEvent, from any publisher, after the publisher's
  // rights and before anything is stored; an error refuses the publish with that error (no
  // sequence is used, nothing is stored or announced). The engine itself knows no content rules:
  // `parley serve` plugs in the structured-content validator here. Runs on the conversation's
  // strand: must be thread-safe, must not block, and should be fast for plain text. Default:
  // empty, nothing is checked.
  ContentCheck content_check = {};
  // Cluster mode: this node's name in the store's conversation leases (ClusterStore). Empty
  // (the default): a node alone, owner of every open conversation, no lease traffic. Set (and
  // the store has a ClusterStore): the engine holds only the conversations it has a lease on —
  // it takes the lease of every conversation it creates, claims at recover() and then every
  // lease_ms / 3 the leases of open conversations nobody holds (never leased, or expired: a
  // node that died), renews all of its leases in one store call every lease_ms / 3, and drops a
  // conversation whose lease it lost. Every write of a held conversation carries the lease's
  // fence, so the store refuses it once another node took the lease.
  std::string node = {};
  // How long a lease lasts without renewal. Default: 3000 ms. REQUIRES: > 0 when `node` is set.
  TimeMs lease_ms = 3000;
  // Cluster mode: asked at every lease round (every lease_ms / 3, on the lease thread) whether
  // this node may hold conversation leases now. False: the node gives its leases up (each
  // conversation is dropped and its lease released, so another node claims it at its next
  // round), claims none and refuses to create conversations (Unavailable) until it answers true
  // again; then it claims as usual. `parley serve` answers false while the node is cut off from
  // the bus that the other nodes still have (src/app/bus_health.h). Called in the lease round:
  // it must not wait for the store (a late round lets this node's leases expire), so parley
  // serve answers from a check made on a thread of its own. Default: empty, always true.
  std::function<bool()> may_hold_leases = {};
};

// Creates the engine. `store` and `clock` must outlive it. Call recover() before serving.
// Destroying the engine stops its timer and runs the work already queued, then joins its
// threads; completions queued by then are still called.
// Cluster mode (Options::node): renews this node's leases, drops the conversations whose lease
// was lost, claims the leases nobody holds and loads those conversations. The engine runs it
// every lease_ms / 3 on a thread of its own when tick_interval_ms > 0; tests with
// tick_interval_ms = 0 call it. Does nothing on a node alone or an engine not made by
// makeConversationService. Blocking (store calls): not on a network thread.
void maintainLeases(ConversationService& engine);

// Whether the engine holds (drives) the open conversation `id` now: cluster mode, this node has
// its lease and loaded it; a node alone, it is open. A call for a conversation the engine does
// not hold fails with Unavailable (src/app/conversation_forwarder.h forwards it to the owner).
// False for an engine not made by makeConversationService. Non-blocking (a short lock).
bool holdsConversation(const ConversationService& engine, const ConversationId& id);

// ---------------------------------------------------------------------------------------------
// Cluster-wide routing (src/app/cluster_routing.h carries it over the bus; docs/cluster.md).
//
// Each node announces its share of every agent's routing state; an engine keeps the other
// nodes' announcements next to its own agents and may ring an agent whose sessions are on
// other nodes: one ring (one id, one expiry) is handed to the agent's sessions here when its
// state here allows the ring, and offered through `RemoteRings` to every other node that
// announces the agent in such a state (ONLINE; OCCUPIED too for a transfer to the agent by
// name), which hands it to the agent's sessions there. The agent's accept or reject, from any
// of them, comes back to this engine's acceptRing / rejectRing (the ring id is this engine's),
// which applies it as for a local one; the ring's end is then told to all of its places.

// One agent as a node announces it.
struct AnnouncedAgent {
  AccountId account;
  UserId user;
  // The availability a session on the announcing node set; OFFLINE when no session there set
  // one (the entry then only carries the node's load).
  store::Availability availability = store::Availability::kOffline;
  store::UserType type = store::UserType::kHuman;
  std::vector<SkillId> skills;
  int max_open_conversations = 0;
  // The announcing node's own share of the agent's load: the open conversations its engine
  // assigned to the agent and the WAITING rings its engine offered to the agent.
  int load = 0;
};

// The head of one of a node's queues as it announces it: the TTR due time (engine Clock, epoch
// ms) of the earliest conversation of (`account`, `skill`) that waits for an agent — no agent
// is being rung for it, it is not a transfer to a named agent, no accept is being committed.
// The default queue's skill is "-1".
struct AnnouncedQueue {
  AccountId account;
  SkillId skill;
  TimeMs due_at = 0;
};

// How an engine offers rings to agents whose sessions are on other nodes. Implementations
// must not block and may call `done` on any thread, also inline.
class RemoteRings {
 public:
  virtual ~RemoteRings() = default;
  // Offers `ring` to its agent on `node`. `done` gets ok once `node` handed it to the agent's
  // sessions, or the error: `node` is dropped from the ring's places (the ring goes on at the
  // others; it ends, CANCELLED, and the conversation is offered again when it was the last)
  // and the agent is not rung through `node` until that node announces it again.
  virtual void offer(const std::string& node, const Ring& ring,
                     std::function<void(Status)> done) = 0;
  // Tells `node` that a ring offered there ended (`ring.state` is the final state), or was
  // withdrawn from there (CANCELLED) while it may go on at its other places.
  virtual void ended(const std::string& node, const Ring& ring, RingEndReason reason) = 0;
};

// Sets how `engine` reaches other nodes' agents (nullptr: it rings none). Call before
// applyAnnouncement. Nothing for an engine not made by makeConversationService.
void attachRemoteRings(ConversationService& engine, std::shared_ptr<RemoteRings> rings);

// This node's share of every agent's routing state, to announce: each agent a session here
// set a state for (BOT users excepted: bots run on every node and serve only the conversations
// of their node), and each agent with load here. Non-blocking (a short lock).
std::vector<AnnouncedAgent> localAgents(const ConversationService& engine);

// This node's queue heads, to announce (see AnnouncedQueue): one per account and skill with a
// conversation waiting for an agent, at most `max`, the earliest-due ones when there are more.
// Non-blocking (a short lock; one pass over the queues' heads).
std::vector<AnnouncedQueue> localQueueHeads(const ConversationService& engine, std::size_t max);

// What `node` announces now replaces what it announced before, until `ttl_ms` (engine Clock)
// from now: then, unless it announced again, its agents are forgotten at the next tick() and
// the WAITING rings offered through it stop being offered there; each ends (CANCELLED; its
// conversation is offered again) when that node was its last place. An agent is rung at every
// place whose state allows the ring (above); whether it is eligible is decided by the agent's
// state here when a session here set one, else by the first node by name that announces it
// ONLINE (else OCCUPIED, for a transfer to it by name). An agent's load counts every node's
// share. A node that announces an agent in a state that no longer allows a ring has it
// withdrawn (told CANCELLED), and one that newly allows it is offered the agent's WAITING
// rings.
// `queues`, the node's queue heads (localQueueHeads), replace what it announced before, for
// as long: while a head of `node` is due earlier than a conversation of this engine, an agent
// serving that head's skill (any agent for the default queue) is not rung for the conversation,
// for at most Options::ttr_defer_ms from the first time the conversation was held back
// (docs/cluster.md, "Agents and rings across nodes").
// Non-blocking (a short lock); routes.
void applyAnnouncement(ConversationService& engine, const std::string& node,
                       std::vector<AnnouncedAgent> agents, TimeMs ttl_ms,
                       std::vector<AnnouncedQueue> queues = {});

std::unique_ptr<ConversationService> makeConversationService(store::Store& store,
                                                             const Clock& clock,
                                                             Options options = {});

}  // namespace parley::conversation
