// Cluster-wide agent routing over the bus: announcements of the agents' state, rings offered to
// another node's agents, and their accepts and rejects sent back to the node that rang.

#include "app/cluster_routing.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <string_view>
#include <type_traits>
#include <vector>

#include "app/bus_wire.h"
#include "app/conversation_relay.h"
#include "common/json.h"

namespace parley::app {

namespace bj = boost::json;
namespace conv = parley::conversation;
using SteadyClock = std::chrono::steady_clock;

namespace {

std::string okAnswer(bj::object result = {}) {
  return json::dump(bj::object{{"ok", true}, {"result", std::move(result)}});
}
std::string errorAnswer(const Error& e) {
  return json::dump(
      bj::object{{"ok", false}, {"code", errorCodeName(e.code)}, {"message", e.message}});
}
// The result object of an answer, or its error.
Result<bj::object> answerFrom(const Result<std::string>& r) {
  if (!r) return std::unexpected(r.error());
  auto o = json::parseObject(*r);
  if (!o) return std::unexpected(Error{ErrorCode::kInternal, "a malformed routing answer"});
  if (auto* ok = o->if_contains("ok"); ok && ok->is_bool() && ok->as_bool()) {
    if (auto* res = o->if_contains("result"); res && res->is_object()) return res->as_object();
    return bj::object{};
  }
  auto code = parseErrorCode(json::getString(*o, "code"));
  return std::unexpected(
      Error{code.value_or(ErrorCode::kInternal), json::getString(*o, "message")});
}

bj::object ringJson(const conv::Ring& r) {
  return bj::object{{"ringId", r.ring_id},
                    {"account", r.account.str()},
                    {"conversation", r.conversation.str()},
                    {"consumer", r.consumer.str()},
                    {"user", r.user.str()},
                    {"skill", r.skill.str()},
                    {"state", conv::ringStateName(r.state)},
                    {"offeredAt", r.offered_at},
                    {"expiresAt", r.expires_at}};
}

Result<conv::RingState> parseRingState(std::string_view s) {
  for (auto st : {conv::RingState::kWaiting, conv::RingState::kAccepted, conv::RingState::kRejected,
                  conv::RingState::kExpired, conv::RingState::kCancelled})
    if (s == conv::ringStateName(st)) return st;
  return invalid("a routing request names an unknown ring state: " + std::string(s));
}

Result<conv::RingEndReason> parseEndReason(std::string_view s) {
  for (auto r : {conv::RingEndReason::kAccepted, conv::RingEndReason::kRejected,
                 conv::RingEndReason::kExpired, conv::RingEndReason::kCancelled})
    if (s == conv::ringEndReasonName(r)) return r;
  return invalid("a routing request names an unknown ring end: " + std::string(s));
}

Result<conv::Ring> ringFrom(const bj::object& o) {
  conv::Ring r;
  r.ring_id = json::getString(o, "ringId");
  r.account = AccountId(json::getString(o, "account"));
  r.conversation = ConversationId(json::getString(o, "conversation"));
  r.consumer = ConsumerId(json::getString(o, "consumer"));
  r.user = UserId(json::getString(o, "user"));
  r.skill = SkillId(json::getString(o, "skill"));
  auto state = parseRingState(json::getString(o, "state"));
  if (!state) return std::unexpected(state.error());
  r.state = *state;
  r.offered_at = json::getInt(o, "offeredAt", 0);
  r.expires_at = json::getInt(o, "expiresAt", 0);
  if (r.ring_id.empty() || r.account.str().empty() || r.user.str().empty())
    return invalid("a routing request's ring has no id, account or agent");
  return r;
}

bj::object actorJson(const conv::Actor& a) {
  return bj::object{{"account", a.account.str()}, {"user", a.user.str()}, {"pid", a.pid}};
}

bj::object agentJson(const conv::AnnouncedAgent& a) {
  bj::array skills;
  for (const auto& s : a.skills) skills.emplace_back(s.str());
  return bj::object{{"account", a.account.str()},
                    {"user", a.user.str()},
                    {"availability", store::availabilityName(a.availability)},
                    {"type", store::userTypeName(a.type)},
                    {"skills", std::move(skills)},
                    {"maxOpen", a.max_open_conversations},
                    {"load", a.load}};
}

Result<conv::AnnouncedAgent> agentFrom(const bj::object& o) {
  conv::AnnouncedAgent a;
  a.account = AccountId(json::getString(o, "account"));
  a.user = UserId(json::getString(o, "user"));
  if (a.account.str().empty() || a.user.str().empty())
    return invalid("an announced agent has no account or user");
  auto av = store::parseAvailability(json::getString(o, "availability"));
  if (!av) return std::unexpected(av.error());
  a.availability = *av;
  auto type = store::parseUserType(json::getString(o, "type"));
  if (!type) return std::unexpected(type.error());
  a.type = *type;
  if (auto* s = o.if_contains("skills"); s && s->is_array())
    for (const auto& v : s->as_array())
      if (v.is_string()) a.skills.emplace_back(std::string(v.as_string()));
  a.max_open_conversations = static_cast<int>(json::getInt(o, "maxOpen", 0));
  a.load = static_cast<int>(json::getInt(o, "load", 0));
  return a;
}

bj::object queueJson(const conv::AnnouncedQueue& q) {
  return bj::object{{"account", q.account.str()}, {"skill", q.skill.str()}, {"due", q.due_at}};
}

Result<conv::AnnouncedQueue> queueFrom(const bj::object& o) {
  conv::AnnouncedQueue q;
  q.account = AccountId(json::getString(o, "account"));
  q.skill = SkillId(json::getString(o, "skill"));
  if (q.account.str().empty() || q.skill.str().empty())
    return invalid("an announced queue has no account or skill");
  auto* due = o.if_contains("due");
  if (!due || !due->is_int64()) return invalid("an announced queue has no due time");
  q.due_at = due->as_int64();
  return q;
}

// The entries of announcement `o`'s array `key` that `from` reads; one it cannot read (`what`,
// for the warning) is left out.
template <typename From>
auto announcedList(const bj::object& o, std::string_view key, From from, const std::string& node,
                   std::string_view what) {
  std::vector<typename std::invoke_result_t<From, const bj::object&>::value_type> out;
  auto* list = o.if_contains(key);
  if (!list || !list->is_array()) return out;
  for (const auto& v : list->as_array()) {
    if (!v.is_object()) continue;
    auto e = from(v.as_object());
    if (!e) {
      spdlog::warn("cluster routing: node {} announced {} this node cannot read: {}", node, what,
                   e.error().message);
      continue;
    }
    out.push_back(std::move(*e));
  }
  return out;
}

}  // namespace

std::string routeSubject(const std::string& node) { return nodeSubject("parley-route", node); }

// The engine's way to this node's peers (conversation::RemoteRings); outlives stop(), after
// which it refuses every offer.
class ClusterRouting::Port final : public conv::RemoteRings {
 public:
  Port(bus::Bus& bus, std::string node, std::chrono::milliseconds timeout)
      : bus_(bus), node_(std::move(node)), timeout_(timeout) {}

  void close() {
    MutexLock lock(mu_);
    open_ = false;
  }

  void offer(const std::string& node, const conv::Ring& ring,
             std::function<void(Status)> done) override {
    if (!isOpen()) return done(std::unexpected(Error{ErrorCode::kUnavailable, "stopping"}));
    bj::object req{{"type", "offer"}, {"owner", node_}, {"ring", ringJson(ring)}};
    bus_.request(routeSubject(node), json::dump(req), timeout_,
                 [done = std::move(done)](Result<std::string> r) {
                   auto a = answerFrom(r);
                   if (!a) return done(std::unexpected(a.error()));
                   done({});
                 });
  }

  void ended(const std::string& node, const conv::Ring& ring, conv::RingEndReason reason) override {
    if (!isOpen()) return;
    bj::object req{{"type", "ended"},
                   {"owner", node_},
                   {"ring", ringJson(ring)},
                   {"reason", conv::ringEndReasonName(reason)}};
    bus_.request(routeSubject(node), json::dump(req), timeout_,
                 [node, id = ring.ring_id](Result<std::string> r) {
                   if (auto a = answerFrom(r); !a)
                     spdlog::warn("ring {}: telling node {} it ended failed: {}", id, node,
                                  a.error().message);
                 });
  }

 private:
  bool isOpen() {
    MutexLock lock(mu_);
    return open_;
  }
  bus::Bus& bus_;
  const std::string node_;
  const std::chrono::milliseconds timeout_;
  Mutex mu_;
  bool open_ PARLEY_GUARDED_BY(mu_) = true;
};

ClusterRouting::ClusterRouting(conv::ConversationService& engine, bus::Bus& bus,
                               ClusterRoutingOptions options)
    : engine_(engine),
      bus_(bus),
      options_(std::move(options)),
      port_(std::make_shared<Port>(bus, options_.node, options_.request_timeout)) {}

ClusterRouting::~ClusterRouting() { stop(); }

Status ClusterRouting::start(conv::ConversationListener& sessions) {
  if (options_.node.empty()) return invalid("cluster routing needs the node's name");
  if (options_.announce_period.count() <= 0 || options_.agent_ttl <= options_.announce_period)
    return invalid("cluster routing: agent_ttl must be longer than announce_period (> 0)");
  {
    MutexLock lock(mu_);
    sessions_ = &sessions;
  }
  auto served = bus_.serve(
      routeSubject(options_.node),
      [this](const bus::BusMessage& m, bus::Reply reply) { serveRequest(m, std::move(reply)); });
  if (!served) return std::unexpected(served.error());
  serving_ = std::move(*served);
  auto heard =
      bus_.listen(kAgentsSubject, [this](const bus::BusMessage& m) { receiveAnnouncement(m); });
  if (!heard) return std::unexpected(heard.error());
  listening_ = std::move(*heard);
  conv::attachRemoteRings(engine_, port_);
  thread_ = std::thread([this] { runLoop(); });
  return {};
}

void ClusterRouting::stop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  port_->close();
  // Waits for a request or an announcement being handled: none reaches `sessions` afterwards.
  serving_.reset();
  listening_.reset();
}

std::uint64_t ClusterRouting::announcementsReceived() const {
  MutexLock lock(mu_);
  return announcements_;
}

void ClusterRouting::onAgentStateChanged(const conv::AgentStateChanged& e) {
  // Another node's state shown here: this node's share did not change.
  if (e.announced) return;
  {
    MutexLock lock(mu_);
    announce_now_ = true;
  }
  cv_.notify_all();
}

void ClusterRouting::runLoop() {
  MutexLock lock(mu_);
  auto next = SteadyClock::now();
  while (!stopping_) {
    while (!stopping_ && !announce_now_ && SteadyClock::now() < next)
      (void)lock.waitUntil(cv_, next);
    if (stopping_) break;
    announce_now_ = false;
    lock.unlock();
    announce();
    sweep();
    lock.lock();
    next = SteadyClock::now() + options_.announce_period;
  }
}

void ClusterRouting::announce() {
  auto agents = conv::localAgents(engine_);
  if (agents.size() > options_.max_agents) {
    spdlog::warn("cluster routing: {} agents to announce, more than {}; the rest are left out",
                 agents.size(), options_.max_agents);
    agents.resize(options_.max_agents);
  }
  bj::array list;
  for (const auto& a : agents) list.push_back(agentJson(a));
  bj::array queues;
  for (const auto& q : conv::localQueueHeads(engine_, options_.max_queues))
    queues.push_back(queueJson(q));
  auto st = bus_.broadcast(kAgentsSubject, json::dump(bj::object{{"node", options_.node},
                                                                 {"agents", std::move(list)},
                                                                 {"queues", std::move(queues)}}));
  if (!st) spdlog::warn("cluster routing: announcing the agents failed: {}", st.error().message);
}

void ClusterRouting::receiveAnnouncement(const bus::BusMessage& m) {
  auto o = json::parseObject(m.data);
  if (!o) return spdlog::warn("cluster routing: a malformed announcement: {}", o.error().message);
  const std::string node = json::getString(*o, "node");
  if (node.empty() || node == options_.node) return;
  auto agents = announcedList(*o, "agents", agentFrom, node, "an agent");
  auto queues = announcedList(*o, "queues", queueFrom, node, "a queue");
  {
    MutexLock lock(mu_);
    ++announcements_;
    last_seen_[node] = SteadyClock::now();
  }
  conv::applyAnnouncement(engine_, node, std::move(agents), options_.agent_ttl.count(),
                          std::move(queues));
}

// Rings kept for sessions here whose owner went silent, or that outlived their expiry, end.
void ClusterRouting::sweep() {
  std::vector<conv::Ring> gone;
  conv::ConversationListener* sessions = nullptr;
  {
    MutexLock lock(mu_);
    sessions = sessions_;
    const auto now = SteadyClock::now();
    for (auto it = mirrored_.begin(); it != mirrored_.end();) {
      if (it->second.ended) {
        it = it->second.ends_by > now ? std::next(it) : mirrored_.erase(it);
        continue;
      }
      auto seen = last_seen_.find(it->second.owner);
      const bool silent = seen == last_seen_.end() || seen->second + options_.agent_ttl < now;
      if (!silent && it->second.ends_by > now) {
        ++it;
        continue;
      }
      conv::Ring r = std::move(it->second.ring);
      r.state = silent ? conv::RingState::kCancelled : conv::RingState::kExpired;
      spdlog::warn("ring {}: ended here ({}): node {} never said it ended", r.ring_id,
                   conv::ringStateName(r.state), it->second.owner);
      gone.push_back(std::move(r));
      it = mirrored_.erase(it);
    }
  }
  if (!sessions) return;
  for (auto& r : gone) {
    const auto reason = r.state == conv::RingState::kExpired ? conv::RingEndReason::kExpired
                                                             : conv::RingEndReason::kCancelled;
    sessions->onRingEnded(conv::RingEnded{std::move(r), reason});
  }
}

void ClusterRouting::serveRequest(const bus::BusMessage& m, bus::Reply reply) {
  auto o = json::parseObject(m.data);
  if (!o) return reply(errorAnswer(Error{ErrorCode::kInvalid, "a malformed routing request"}));
  const std::string type = json::getString(*o, "type");
  const bj::object* ring_o = nullptr;
  if (auto* r = o->if_contains("ring"); r && r->is_object()) ring_o = &r->as_object();
  if (type == "offer" || type == "ended") {
    if (!ring_o) return reply(errorAnswer(Error{ErrorCode::kInvalid, "a request without a ring"}));
    auto ring = ringFrom(*ring_o);
    if (!ring) return reply(errorAnswer(ring.error()));
    if (type == "offer") return offered(json::getString(*o, "owner"), std::move(*ring), reply);
    auto reason = parseEndReason(json::getString(*o, "reason"));
    if (!reason) return reply(errorAnswer(reason.error()));
    return ended(std::move(*ring), *reason, reply);
  }
  if (type == "accept" || type == "reject") {
    const bj::object* actor_o = nullptr;
    if (auto* a = o->if_contains("actor"); a && a->is_object()) actor_o = &a->as_object();
    if (!actor_o) return reply(errorAnswer(Error{ErrorCode::kInvalid, "a request without actor"}));
    auto agent = conv::Actor::ofAgent(AccountId(json::getString(*actor_o, "account")),
                                      UserId(json::getString(*actor_o, "user")),
                                      json::getString(*actor_o, "pid"));
    const std::string ring_id = json::getString(*o, "ringId");
    if (type == "accept") {
      return engine_.acceptRing(std::move(agent), ring_id, [reply](Result<store::Conversation> r) {
        if (!r) return reply(errorAnswer(r.error()));
        reply(okAnswer(bj::object{{"conversation", conversationJson(*r)}}));
      });
    }
    return engine_.rejectRing(std::move(agent), ring_id, [reply](Status r) {
      if (!r) return reply(errorAnswer(r.error()));
      reply(okAnswer());
    });
  }
  reply(errorAnswer(Error{ErrorCode::kInvalid, "an unknown routing request: " + type}));
}

void ClusterRouting::offered(const std::string& owner, conv::Ring ring, bus::Reply reply) {
  // Only an agent whose session here set a state can be given the ring.
  bool here = false;
  for (const auto& a : conv::localAgents(engine_))
    if (a.account == ring.account && a.user == ring.user &&
        a.availability != store::Availability::kOffline)
      here = true;
  if (!here)
    return reply(
        errorAnswer(Error{ErrorCode::kNotFound, "agent " + ring.user.str() +
                                                    " has no session on node " + options_.node}));
  conv::ConversationListener* sessions = nullptr;
  {
    MutexLock lock(mu_);
    sessions = sessions_;
    const auto now = SteadyClock::now();
    last_seen_.try_emplace(owner, now);
    const auto lasts =
        std::chrono::milliseconds(std::max<std::int64_t>(0, ring.expires_at - ring.offered_at));
    mirrored_[ring.ring_id] = Mirrored{ring, owner, now + lasts + options_.ring_grace};
  }
  if (sessions) sessions->onRingOffered(conv::RingOffered{std::move(ring)});
  reply(okAnswer());
}

void ClusterRouting::ended(conv::Ring ring, conv::RingEndReason reason, bus::Reply reply) {
  conv::ConversationListener* sessions = nullptr;
  bool known = false;
  {
    MutexLock lock(mu_);
    sessions = sessions_;
    if (auto it = mirrored_.find(ring.ring_id); it != mirrored_.end() && !it->second.ended) {
      known = true;
      // Kept (ended) for as long as it was offered for, as the owner keeps its ended rings.
      const auto lasts =
          std::chrono::milliseconds(std::max<std::int64_t>(0, ring.expires_at - ring.offered_at));
      it->second.ring = ring;
      it->second.ended = true;
      it->second.ends_by = SteadyClock::now() + lasts;
    }
  }
  if (known && sessions) sessions->onRingEnded(conv::RingEnded{std::move(ring), reason});
  reply(okAnswer());
}

void ClusterRouting::toOwner(const std::string& owner, const char* type, const conv::Actor& agent,
                             const std::string& ring_id,
                             std::function<void(Result<bj::object>)> done) {
  bj::object req{{"type", type}, {"actor", actorJson(agent)}, {"ringId", ring_id}};
  bus_.request(routeSubject(owner), json::dump(req), options_.request_timeout,
               [done = std::move(done)](Result<std::string> r) { done(answerFrom(r)); });
}

void ClusterRouting::acceptRing(conv::Actor agent, std::string ring_id,
                                conv::Callback<store::Conversation> done) {
  std::string owner;
  {
    MutexLock lock(mu_);
    if (auto it = mirrored_.find(ring_id); it != mirrored_.end()) owner = it->second.owner;
  }
  if (owner.empty())
    return engine_.acceptRing(std::move(agent), std::move(ring_id), std::move(done));
  toOwner(owner, "accept", agent, ring_id, [done = std::move(done)](Result<bj::object> r) {
    if (!r) return done(std::unexpected(r.error()));
    auto* c = r->if_contains("conversation");
    if (!c || !c->is_object())
      return done(
          std::unexpected(Error{ErrorCode::kInternal, "an accept answered no conversation"}));
    done(conversationFrom(c->as_object()));
  });
}

void ClusterRouting::rejectRing(conv::Actor agent, std::string ring_id, conv::Callback<void> done) {
  std::string owner;
  {
    MutexLock lock(mu_);
    if (auto it = mirrored_.find(ring_id); it != mirrored_.end()) owner = it->second.owner;
  }
  if (owner.empty())
    return engine_.rejectRing(std::move(agent), std::move(ring_id), std::move(done));
  toOwner(owner, "reject", agent, ring_id, [done = std::move(done)](Result<bj::object> r) {
    if (!r) return done(std::unexpected(r.error()));
    done({});
  });
}

std::vector<conv::Ring> ClusterRouting::ringsForAgent(const AccountId& acc,
                                                      const UserId& user) const {
  auto out = engine_.ringsForAgent(acc, user);
  MutexLock lock(mu_);
  for (const auto& [_, m] : mirrored_)
    if (!m.ended && m.ring.account == acc && m.ring.user == user) out.push_back(m.ring);
  std::ranges::sort(out, {}, &conv::Ring::offered_at);
  return out;
}

}  // namespace parley::app
