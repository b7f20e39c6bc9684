#include "server/protocol/protocol_session.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/json.h"
#include "common/policy.h"
#include "common/random.h"
#include "server/conversation_access.h"

namespace parley::server::protocol {
namespace {

constexpr int kCloseUnauthorized = 4401;
constexpr std::size_t kChangesPerNotification = 100;
// A history notification carries records of about this many bytes at most (one record more
// than that when a single one is larger), so that one frame does not fill the write queue.
constexpr std::size_t kHistoryFrameBytes = 1 << 20;

const char* kStringResp = ".ReqBody$StringResp";

std::string bodyString(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end()) return {};
  if (it->value().is_string()) return std::string(it->value().as_string());
  if (it->value().is_int64()) return std::to_string(it->value().as_int64());
  if (it->value().is_uint64()) return std::to_string(it->value().as_uint64());
  return {};
}

const bj::object& emptyObject() {
  static const bj::object o;
  return o;
}

const bj::object& bodyObject(const Envelope& e) {
  return e.body.is_object() ? e.body.as_object() : emptyObject();
}

std::optional<std::int64_t> bodyInt(const bj::object& o, std::string_view key) {
  auto it = o.find(key);
  if (it == o.end()) return std::nullopt;
  const auto& v = it->value();
  if (v.is_int64()) return v.as_int64();
  if (v.is_uint64()) return static_cast<std::int64_t>(v.as_uint64());
  if (v.is_double()) return json::truncatedInt64(v.as_double());  // nullopt beyond int64
  if (v.is_string()) {
    try {
      return std::stoll(std::string(v.as_string()));
    } catch (...) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction and lifecycle

std::shared_ptr<ProtocolSession> ProtocolSession::agent(SessionDeps deps,
                                                        std::shared_ptr<WsTransport> transport,
                                                        Principal principal) {
  auto s = std::make_shared<ProtocolSession>(deps, std::move(transport), principal.user.account);
  s->kind_ = Kind::kAgent;
  s->bearer_ = principal.bearer;
  s->principal_ = std::move(principal);
  return s;
}

std::shared_ptr<ProtocolSession> ProtocolSession::consumer(SessionDeps deps,
                                                           std::shared_ptr<WsTransport> transport,
                                                           AccountId account,
                                                           std::optional<ConsumerId> consumer) {
  auto s = std::make_shared<ProtocolSession>(deps, std::move(transport), std::move(account));
  s->kind_ = Kind::kConsumer;
  s->consumer_ = consumer;
  s->consumer_fixed_ = consumer;
  return s;
}

ProtocolSession::ProtocolSession(SessionDeps deps, std::shared_ptr<WsTransport> transport,
                                 AccountId account)
    : deps_(deps), transport_(std::move(transport)), account_(std::move(account)) {}

std::optional<ConsumerId> ProtocolSession::hubConsumer() const {
  if (kind_ == Kind::kConsumer) return consumer_fixed_;
  return std::nullopt;
}

std::optional<UserId> ProtocolSession::hubUser() const {
  if (kind_ == Kind::kAgent) return principal_->user.id;
  return std::nullopt;
}

void ProtocolSession::onOpen() {
  if (kind_ == Kind::kAgent || consumer_) {
    registered_ = true;
    deps_.hub.add(shared_from_this());
  }
  if (kind_ == Kind::kAgent && !bearer_.empty()) scheduleRevalidate();
  if (kind_ == Kind::kConsumer && !consumer_) {
    postAfter(deps_.options.init_timeout, [self = shared_from_this()] {
      if (!self->consumer_ && !self->closed_)
        self->closeWith(kCloseUnauthorized,
                        "authentication required: send InitConnection with a "
                        "ConsumerAuthentication jwt, or connect with Authorization: jwt <token>");
    });
  }
}

void ProtocolSession::onClose() {
  if (closed_) return;
  closed_ = true;
  if (registered_) deps_.hub.remove(this);
  pending_.clear();
  // An agent whose last socket went away is no longer reachable: stop routing to it.
  if (kind_ == Kind::kAgent && deps_.hub.sessionsOfUser(account_, principal_->user.id) == 0) {
    deps_.service.setAgentState(account_, principal_->user.id, store::Availability::kOffline,
                                [](Result<store::AgentState>) {});
  }
}

void ProtocolSession::revoke() {
  post([self = shared_from_this()] {
    self->closeWith(kCloseUnauthorized, "the login session was revoked; log in again");
  });
}

void ProtocolSession::send(std::string text) {
  if (auto t = transport_.lock()) t->send(std::move(text));
}

void ProtocolSession::post(std::function<void()> fn) {
  if (auto t = transport_.lock()) t->post(std::move(fn));
}

void ProtocolSession::postAfter(std::chrono::milliseconds delay, std::function<void()> fn) {
  if (auto t = transport_.lock()) t->postAfter(delay, std::move(fn));
}

void ProtocolSession::closeTransport(int code, std::string reason) {
  if (auto t = transport_.lock()) t->close(code, std::move(reason));
}

void ProtocolSession::closeWith(int code, std::string reason) {
  if (closed_) return;
  closeTransport(code, std::move(reason));
}

void ProtocolSession::scheduleRevalidate() {
  postAfter(deps_.options.revalidate_interval, [self = shared_from_this()] {
    if (self->closed_) return;
    self->deps_.blocking.run([self] {
      bool valid = self->deps_.auth.tokenValid(self->bearer_);
      self->post([self, valid] {
        if (self->closed_) return;
        if (!valid) {
          self->closeWith(kCloseUnauthorized,
                          "the login session expired or was revoked; log in again");
        } else {
          self->scheduleRevalidate();
        }
      });
    });
  });
}

template <class T>
conversation::Callback<T> ProtocolSession::onStrand(std::function<void(Result<T>)> fn) {
  ++in_flight_;  // until the completion has run (its answer is queued): see requestsInFlight
  return [self = shared_from_this(), fn = std::move(fn)](Result<T> r) mutable {
    self->post([self, fn = std::move(fn), r = std::move(r)]() mutable {
      if (!self->closed_) fn(std::move(r));
      --self->in_flight_;
    });
  };
}

void ProtocolSession::onDrain() { draining_ = true; }

void ProtocolSession::reply(const bj::value& id, int code, std::string_view type,
                            const bj::value& body) {
  send(makeResponse(id, code, type, body));
}

void ProtocolSession::replyError(const bj::value& id, const Error& e) {
  deps_.metrics.countProtocolError();
  send(makeErrorResponse(id, e));
}

bool ProtocolSession::allowed(const bj::value& id, policy::Action action) {
  auto st = policy::authorize(principal_->caller().subject(), action);
  if (st) return true;
  replyError(id, st.error());
  return false;
}

conversation::Actor ProtocolSession::actor() const {
  if (kind_ == Kind::kAgent)
    return conversation::Actor::ofAgent(account_, principal_->user.id, principal_->user.pid);
  return conversation::Actor::ofConsumer(account_, *consumer_);
}

PidLookup ProtocolSession::pidLookup() const {
  return [dir = &deps_.directory, acc = account_](const std::string& uid) {
    return dir->pidOf(acc, uid);
  };
}

UidFromPid ProtocolSession::uidFromPid() const {
  return [dir = &deps_.directory, acc = account_](const std::string& pid) {
    return dir->uidOfPid(acc, pid);
  };
}

// ---------------------------------------------------------------------------------------------
// Requests

void ProtocolSession::onFrame(std::string text) {
  if (closed_) return;
  auto env = parseEnvelope(text);
  if (!env) {
    replyError(env.error().id, env.error().error);
    return;
  }
  if (draining_) {
    Op op = opOf(env->type);
    if (op != Op::kGetClock && op != Op::kKeepAlive)
      return replyError(env->id, Error{ErrorCode::kUnavailable,
                                       "the server is shutting down: this request was not "
                                       "carried out; reconnect and send it again"});
  }
  try {
    handle(std::move(*env));
  } catch (const std::exception& ex) {
    spdlog::error("protocol request failed with an exception: {}", ex.what());
    replyError(nullptr, Error{ErrorCode::kInternal, "internal error while handling the request"});
  }
}

void ProtocolSession::handle(Envelope e) {
  Op op = opOf(e.type);
  if (op == Op::kUnknown) {
    replyError(e.id, Error{ErrorCode::kInvalid,
                           fmt::format("unknown request type \"{}\"; see the protocol reference "
                                       "for the supported types",
                                       e.type)});
    return;
  }
  if (op == Op::kGetClock || op == Op::kKeepAlive) return getClock(e);
  if (op == Op::kInitConnection) return initConnection(e);
  if (kind_ == Kind::kConsumer && !consumer_) {
    replyError(e.id, Error{ErrorCode::kUnauthorized,
                           "authenticate first: send InitConnection with a "
                           "ConsumerAuthentication jwt (from /signup)"});
    return;
  }
  const bool agent = kind_ == Kind::kAgent;
  auto agentOnly = [&] {
    replyError(e.id, Error{ErrorCode::kInvalid,
                           fmt::format("\"{}\" is an agent request; it is not available on the "
                                       "consumer socket",
                                       e.type)});
  };
  switch (op) {
    case Op::kSetAgentState:
      return agent ? setAgentState(e) : agentOnly();
    case Op::kSubscribeExConversations:
      return subscribeEx(e);
    case Op::kUnsubscribeExConversations:
      return unsubscribeEx(e);
    case Op::kSubscribeRoutingTasks:
      return agent ? subscribeRouting(e) : agentOnly();
    case Op::kUpdateRoutingTaskSubscription:
      if (!agent) return agentOnly();
      return reply(e.id, 200, kStringResp, bj::value("Routing task subscription updated"));
    case Op::kUpdateRingState:
      return agent ? updateRingState(e) : agentOnly();
    case Op::kSubscribeAgentsState:
      return agent ? subscribeAgentsState(e) : agentOnly();
    case Op::kUnsubscribeAgentsState:
      if (!agent) return agentOnly();
      agents_state_sub_.reset();
      return reply(e.id, 200, kStringResp, bj::value("OK"));
    case Op::kGetUserProfile:
      return getUserProfile(e);
    case Op::kSetUserProfile:
      return setUserProfile(e);
    case Op::kQueryMessages:
      return queryMessages(e);
    case Op::kSubscribeMessagingEvents:
      return subscribeMessaging(e);
    case Op::kUnsubscribeMessagingEvents:
      return unsubscribeMessaging(e);
    case Op::kPublishEvent:
      return publishEvent(e);
    case Op::kUpdateConversationField:
      return updateField(e);
    case Op::kConsumerRequestConversation:
      if (agent) {
        return replyError(e.id, Error{ErrorCode::kInvalid,
                                      "cm.ConsumerRequestConversation is a consumer request; use "
                                      "the consumer socket"});
      }
      return requestConversation(e);
    case Op::kAgentRequestConversation:
      return replyError(e.id, Error{ErrorCode::kInvalid,
                                    "AgentRequestConversation (agent-initiated conversations) is "
                                    "not supported by this server"});
    case Op::kGenerateUploadUrl:
    case Op::kGenerateDownloadUrl:
      return replyError(e.id, Error{ErrorCode::kInvalid,
                                    "file sharing (upload/download URLs) is not supported by this "
                                    "server"});
    default:
      break;
  }
  replyError(e.id, Error{ErrorCode::kInvalid, fmt::format("\"{}\" is not supported", e.type)});
}

void ProtocolSession::getClock(const Envelope& e) {
  reply(e.id, 200, ".GetClock$Response", bj::object{{"currentTime", deps_.clock.nowMs()}});
}

void ProtocolSession::initConnection(const Envelope& e) {
  if (kind_ == Kind::kAgent || consumer_) {
    reply(e.id, 200, kStringResp, bj::value("OK Connection initialized"));
    return;
  }
  std::string jwt = initConnectionJwt(e.headers);
  if (jwt.empty() && e.body.is_object()) jwt = json::getString(e.body.as_object(), "jwt");
  if (jwt.empty()) {
    replyError(e.id, Error{ErrorCode::kUnauthorized,
                           "InitConnection needs a header {type:\".ams.headers."
                           "ConsumerAuthentication\", jwt:\"<jwt from /signup>\"}"});
    return;
  }
  auto c = deps_.auth.verifyConsumer(account_, jwt);
  if (!c) {
    replyError(e.id, Error{ErrorCode::kUnauthorized, c.error().message});
    closeWith(kCloseUnauthorized, "invalid consumer jwt");
    return;
  }
  consumer_ = *c;
  consumer_fixed_ = *c;
  registered_ = true;
  deps_.hub.add(shared_from_this());
  reply(e.id, 200, kStringResp, bj::value("OK Connection initialized"));
}

void ProtocolSession::setAgentState(const Envelope& e) {
  const auto& b = bodyObject(e);
  std::string av = json::getString(b, "availability");
  auto a = store::parseAvailability(av);
  if (!a) return replyError(e.id, a.error());  // names the text and the availabilities
  UserId target = principal_->user.id;
  std::string ref = json::getString(b, "agentUserId");
  if (!ref.empty()) {
    auto uid = resolveUserRef(account_, ref, uidFromPid());
    if (!uid)
      return replyError(e.id, Error{ErrorCode::kNotFound,
                                    fmt::format("agentUserId '{}' is not a user of account {}", ref,
                                                account_.str())});
    if (*uid != target) {
      if (!allowed(e.id, policy::Action::kSetOtherAgentState)) return;
      target = *uid;
    }
  }
  if (target == principal_->user.id && !allowed(e.id, policy::Action::kSetOwnAgentState)) return;
  deps_.service.setAgentState(
      account_, target, *a,
      onStrand<store::AgentState>([self = shared_from_this(), id = e.id](auto r) {
        if (!r) return self->replyError(id, r.error());
        self->reply(id, 200, kStringResp, bj::value("Agent state updated successfully"));
      }));
}

bool ProtocolSession::isParticipant(const store::Conversation& c) const {
  if (kind_ == Kind::kConsumer) return consumer_ && c.consumer == *consumer_;
  for (const auto& p : c.participants)
    if (p.role != store::ParticipantRole::kConsumer &&
        p.state == store::ParticipantState::kActive && p.id == principal_->user.id.str())
      return true;
  return false;
}

bool ProtocolSession::matches(const ExSub& s, const store::Conversation& c) const {
  if (c.account != account_) return false;
  if (std::find(s.states.begin(), s.states.end(), c.state) == s.states.end()) return false;
  if (kind_ == Kind::kConsumer) return consumer_ && c.consumer == *consumer_;
  if (!s.agent_uids.empty()) {
    bool any = false;
    for (const auto& p : c.participants)
      if (p.role != store::ParticipantRole::kConsumer &&
          p.state == store::ParticipantState::kActive && s.agent_uids.contains(p.id))
        any = true;
    if (!any) return false;
  }
  return true;
}

std::vector<std::string> ProtocolSession::agentUids(const store::Conversation& c) const {
  std::vector<std::string> out;
  for (const auto& p : c.participants)
    if (p.role != store::ParticipantRole::kConsumer) out.push_back(p.id);
  return out;
}

void ProtocolSession::subscribeEx(const Envelope& e) {
  const auto& b = bodyObject(e);
  ExSub s;
  s.id = randomUuid();
  s.states = convStates(b);
  s.min_updated = bodyInt(b, "minLastUpdatedTime").value_or(0);
  if (kind_ == Kind::kAgent) {
    auto it = b.find("agentIds");
    if (it != b.end() && !it->value().is_null()) {
      bj::array ids;
      if (it->value().is_array()) {
        ids = it->value().as_array();
      } else {
        ids.push_back(it->value());
      }
      for (const auto& v : ids) {
        if (!v.is_string()) continue;
        auto uid = resolveUserRef(account_, std::string(v.as_string()), uidFromPid());
        if (uid) {
          s.agent_uids.insert(uid->str());
        } else {
          // An id we cannot resolve matches nothing (rather than everything).
          s.agent_uids.insert("\x01unresolved:" + std::string(v.as_string()));
        }
      }
    }
    // Only the caller's own conversations, or (AGENT_MANAGER, ADMIN) any agent's or all.
    const bool own =
        !s.agent_uids.empty() && std::ranges::all_of(s.agent_uids, [&](const std::string& uid) {
          return uid == principal_->user.id.str();
        });
    if (!allowed(e.id, own ? policy::Action::kSubscribeOwnConversations
                           : policy::Action::kSubscribeAllConversations))
      return;
  }
  std::string sub_id = s.id;
  auto states = s.states;
  ex_subs_.emplace(sub_id, std::move(s));
  // Before the list below is read: a change committed after it reaches this session.
  updateConversationInterest();
  const char* type = kind_ == Kind::kAgent ? ".ams.aam.SubscribeExConversations$Response"
                                           : "cqm.SubscribeExConversationsResponse";
  reply(e.id, 200, type, bj::object{{"subscriptionId", sub_id}});
  store::ConversationQuery q;
  if (states.size() == 1) q.state = states.front();
  if (kind_ == Kind::kConsumer) q.consumer = *consumer_;
  q.limit = 1000;
  deps_.service.listConversations(
      account_, q,
      onStrand<std::vector<store::Conversation>>([self = shared_from_this(), sub_id](auto r) {
        if (!r) {
          spdlog::warn("subscribe: cannot list conversations: {}", r.error().message);
          return;
        }
        auto it = self->ex_subs_.find(sub_id);
        if (it == self->ex_subs_.end()) return;
        std::vector<store::Conversation> convs;
        for (auto& c : *r) {
          const auto& sub = it->second;
          if (sub.seen.contains(c.id.str()) || sub.shown.contains(c.id.str())) continue;
          if (c.updated_at < sub.min_updated) continue;
          if (!self->matches(sub, c)) continue;
          it->second.shown.insert(c.id.str());
          convs.push_back(std::move(c));
        }
        if (!convs.empty()) self->sendExChanges(sub_id, convs);
      }));
}

void ProtocolSession::unsubscribeEx(const Envelope& e) {
  std::string id = json::getString(bodyObject(e), "subscriptionId");
  if (ex_subs_.erase(id) == 0)
    return replyError(e.id, Error{ErrorCode::kNotFound,
                                  fmt::format("no subscription '{}' on this connection", id)});
  updateConversationInterest();
  reply(e.id, 200, kStringResp, bj::value("OK"));
}

void ProtocolSession::updateConversationInterest() {
  if (kind_ != Kind::kAgent || !registered_ || closed_) return;
  bool all = false;
  std::vector<std::string> uids;
  for (const auto& [id, sub] : ex_subs_) {
    if (sub.agent_uids.empty()) {
      all = true;
      break;
    }
    uids.insert(uids.end(), sub.agent_uids.begin(), sub.agent_uids.end());
  }
  deps_.hub.setConversationInterest(shared_from_this(),
                                    all ? Hub::Interest::kAll : Hub::Interest::kOfAgents, uids);
}

void ProtocolSession::sendExChanges(const std::string& sub_id,
                                    const std::vector<store::Conversation>& convs) {
  std::vector<std::string> uids;
  for (const auto& c : convs)
    for (auto& u : agentUids(c)) uids.push_back(std::move(u));
  emitOrdered(std::move(uids), [self = shared_from_this(), sub_id, convs] {
    const char* type = self->kind_ == Kind::kAgent ? ".ams.aam.ExConversationChangeNotification"
                                                   : "cqm.ExConversationChangeNotification";
    View view = self->kind_ == Kind::kAgent ? View::kAgent : View::kConsumer;
    for (std::size_t i = 0; i < convs.size(); i += kChangesPerNotification) {
      bj::array changes;
      for (std::size_t j = i; j < std::min(convs.size(), i + kChangesPerNotification); ++j) {
        changes.emplace_back(bj::object{
            {"type", "UPSERT"}, {"result", conversationResult(convs[j], self->pidLookup(), view)}});
      }
      self->send(makeNotification(
          type, bj::object{{"subscriptionId", sub_id}, {"changes", std::move(changes)}}));
    }
  });
}

void ProtocolSession::sendExChange(const ExSub& s, const store::Conversation& c,
                                   const char* change_type) {
  emitOrdered(agentUids(c), [self = shared_from_this(), sub_id = s.id, c, change_type] {
    const char* type = self->kind_ == Kind::kAgent ? ".ams.aam.ExConversationChangeNotification"
                                                   : "cqm.ExConversationChangeNotification";
    View view = self->kind_ == Kind::kAgent ? View::kAgent : View::kConsumer;
    bj::array changes{bj::object{{"type", change_type},
                                 {"result", conversationResult(c, self->pidLookup(), view)}}};
    self->send(makeNotification(
        type, bj::object{{"subscriptionId", sub_id}, {"changes", std::move(changes)}}));
  });
}

void ProtocolSession::subscribeRouting(const Envelope& e) {
  if (!allowed(e.id, policy::Action::kRoutingTasks)) return;
  if (!routing_sub_) routing_sub_ = randomUuid();
  reply(e.id, 200, ".ams.routing.SubscribeRoutingTasks$Response",
        bj::object{{"subscriptionId", *routing_sub_}});
  // Replay the rings already waiting for this agent.
  for (const auto& ring : deps_.service.ringsForAgent(account_, principal_->user.id)) {
    if (ring.state != conversation::RingState::kWaiting) continue;
    onRingOffered(conversation::RingOffered{ring});
  }
}

void ProtocolSession::updateRingState(const Envelope& e) {
  const auto& b = bodyObject(e);
  std::string ring_id = json::getString(b, "ringId");
  std::string state = json::getString(b, "ringState");
  if (ring_id.empty()) return replyError(e.id, Error{ErrorCode::kInvalid, "ringId is required"});
  if (!allowed(e.id, policy::Action::kRoutingTasks)) return;
  if (state == "ACCEPTED") {
    deps_.service.acceptRing(
        actor(), ring_id,
        onStrand<store::Conversation>([self = shared_from_this(), id = e.id](auto r) {
          if (!r) return self->replyError(id, r.error());
          self->reply(id, 200, kStringResp, bj::value("Ring state updated successfully"));
        }));
  } else if (state == "REJECTED") {
    deps_.service.rejectRing(
        actor(), ring_id, onStrand<void>([self = shared_from_this(), id = e.id](auto r) {
          if (!r) return self->replyError(id, r.error());
          self->reply(id, 200, kStringResp, bj::value("Ring state updated successfully"));
        }));
  } else {
    replyError(e.id, Error{ErrorCode::kInvalid, "ringState must be ACCEPTED or REJECTED"});
  }
}

void ProtocolSession::subscribeAgentsState(const Envelope& e) {
  if (!allowed(e.id, policy::Action::kSubscribeAgentState)) return;
  if (!agents_state_sub_) agents_state_sub_ = randomUuid();
  reply(e.id, 200, ".ams.routing.SubscribeAgentsState$Response",
        bj::object{{"subscriptionId", *agents_state_sub_}});
  for (const auto& a : deps_.service.agents(account_)) {
    if (a.user != principal_->user.id) continue;
    store::AgentState st{account_, a.user, a.availability, deps_.clock.nowMs()};
    onAgentState(conversation::AgentStateChanged{st});
  }
}

void ProtocolSession::getUserProfile(const Envelope& e) {
  std::string consumer;
  if (e.body.is_string()) consumer = std::string(e.body.as_string());
  if (e.body.is_object()) {
    consumer = json::getString(e.body.as_object(), "consumerId");
    if (consumer.empty()) consumer = json::getString(e.body.as_object(), "userId");
  }
  if (consumer.empty() && consumer_) consumer = consumer_->str();
  if (consumer.empty())
    return replyError(
        e.id, Error{ErrorCode::kInvalid, "GetUserProfile needs the consumer id as the body"});
  if (kind_ == Kind::kConsumer && consumer != consumer_->str()) {
    // A brand user by the public id consumers see in their conversations: whether a bot or a
    // person answers, nothing else (no login name, no roles, no skills).
    auto uid = deps_.directory.uidOfPid(account_, consumer);
    if (!uid)
      return replyError(e.id, Error{ErrorCode::kForbidden,
                                    "a consumer may read only its own profile and, by the public "
                                    "id its conversations show, whether an agent is a bot"});
    auto type = deps_.directory.typeOf(account_, *uid);
    bool bot = type && *type == store::UserType::kBot;
    return reply(e.id, 200, ".ams.userprofile.GetUserProfile$Response",
                 bj::object{{"userId", consumer},
                            {"firstName", ""},
                            {"lastName", ""},
                            {"nickName", bot ? "Bot" : "Agent"},
                            {"userType", bot ? "BOT" : "HUMAN"},
                            {"privateData", bj::object{}}});
  }
  if (kind_ == Kind::kAgent && !allowed(e.id, policy::Action::kReadConsumerProfile)) return;
  bj::object body = userProfileBody(consumer);
  if (auto p = deps_.hub.profiles().get(account_, ConsumerId(consumer))) {
    if (auto v = json::parseObject(*p)) {
      for (auto& [k, val] : *v) body[k] = val;
    }
  }
  reply(e.id, 200, ".ams.userprofile.GetUserProfile$Response", body);
}

void ProtocolSession::setUserProfile(const Envelope& e) {
  if (kind_ != Kind::kConsumer)
    return replyError(e.id, Error{ErrorCode::kInvalid, "SetUserProfile is a consumer request"});
  if (!e.body.is_object())
    return replyError(e.id, Error{ErrorCode::kInvalid, "SetUserProfile needs an object body"});
  bj::object profile;
  const auto& b = e.body.as_object();
  if (auto it = b.find("authenticatedData"); it != b.end() && it->value().is_object()) {
    profile["authenticatedData"] = it->value();
    const auto& ad = it->value().as_object();
    if (auto s = ad.find("lp_sdes"); s != ad.end() && s->value().is_array()) {
      for (const auto& sde : s->value().as_array()) {
        if (!sde.is_object()) continue;
        const auto& so = sde.as_object();
        if (auto per = so.find("personal"); per != so.end() && per->value().is_object()) {
          profile["firstName"] = json::getString(per->value().as_object(), "firstname");
          profile["lastName"] = json::getString(per->value().as_object(), "lastname");
        }
      }
    }
  }
  for (const char* k : {"firstName", "lastName", "privateData"})
    if (auto it = b.find(k); it != b.end()) profile[k] = it->value();
  if (auto st = deps_.hub.setProfile(account_, *consumer_, bj::serialize(profile)); !st)
    return replyError(e.id, st.error());
  reply(e.id, 200, kStringResp, bj::value("OK User Profile set successfully"));
}

void ProtocolSession::queryMessages(const Envelope& e) {
  const auto& b = bodyObject(e);
  std::string dialog = json::getString(b, "dialogId");
  if (dialog.empty()) dialog = json::getString(b, "conversationId");
  if (dialog.empty()) return replyError(e.id, Error{ErrorCode::kInvalid, "dialogId is required"});
  std::int64_t from = bodyInt(b, "newerThanSequence").value_or(bodyInt(b, "fromSeq").value_or(0));
  if (from < 0) from = 0;
  int limit = static_cast<int>(std::clamp<std::int64_t>(
      bodyInt(b, "maxQuantity").value_or(deps_.options.max_history), 1, deps_.options.max_history));
  if (kind_ == Kind::kConsumer) return subscribeMessaging(e);
  ConversationId conv(dialog);
  // Who may read it (docs/authorization.md): the conversation first, then its history.
  deps_.service.getConversation(
      account_, conv,
      onStrand<store::Conversation>(
          [self = shared_from_this(), id = e.id, conv, from, limit](auto c) {
            if (!c) return self->replyError(id, c.error());
            if (auto st = self->authorizeRead(*c); !st) return self->replyError(id, st.error());
            self->queryPage(id, conv, from, limit, std::make_shared<bj::array>(), 0);
          }));
}

Status ProtocolSession::authorizeRead(const store::Conversation& c) const {
  return server::authorizeRead(principal_->caller().subject(), principal_->user, c, deps_.service);
}

// One page of a QueryMessages answer: read `history_page` records; the answer ends at the limit,
// at the end of the conversation, or once its records reach half the write queue's byte limit.
void ProtocolSession::queryPage(bj::value id, ConversationId conv, std::int64_t from, int remaining,
                                std::shared_ptr<bj::array> out, std::size_t bytes) {
  int page = std::min(remaining, std::max(1, deps_.options.history_page));
  deps_.service.listMessages(
      account_, conv, from, page,
      onStrand<std::vector<store::Message>>(
          [self = shared_from_this(), id, conv, remaining, out, bytes, page](auto r) mutable {
            if (!r) return self->replyError(id, r.error());
            auto t = self->transport_.lock();
            const std::size_t budget = (t ? t->maxQueuedBytes() : std::size_t(8) << 20) / 2;
            for (const auto& m : *r) {
              bytes += m.event_json.size() + m.metadata_json.size() + 256;
              if (bytes > budget && !out->empty()) {
                return self->reply(id, 200, ".ams.ms.QueryMessages$Response", *out);
              }
              out->emplace_back(messageRecord(m, View::kAgent));
            }
            remaining -= static_cast<int>(r->size());
            if (static_cast<int>(r->size()) < page || remaining <= 0 || bytes > budget)
              return self->reply(id, 200, ".ams.ms.QueryMessages$Response", *out);
            self->queryPage(id, conv, r->back().sequence + 1, remaining, out, bytes);
          }));
}

void ProtocolSession::subscribeMessaging(const Envelope& e) {
  const auto& b = bodyObject(e);
  std::string dialog = json::getString(b, "dialogId");
  if (dialog.empty()) dialog = json::getString(b, "conversationId");
  if (dialog.empty()) return replyError(e.id, Error{ErrorCode::kInvalid, "dialogId is required"});
  std::int64_t from = bodyInt(b, "fromSeq").value_or(bodyInt(b, "newerThanSequence").value_or(0));
  if (from < 0) from = 0;
  ConversationId conv(dialog);
  deps_.service.getConversation(
      account_, conv,
      onStrand<store::Conversation>([self = shared_from_this(), id = e.id, dialog, from](auto r) {
        if (!r) return self->replyError(id, r.error());
        if (self->kind_ == Kind::kConsumer && r->consumer != *self->consumer_)
          return self->replyError(id, Error{ErrorCode::kNotFound,
                                            fmt::format("conversation {} does not exist", dialog)});
        if (self->kind_ == Kind::kAgent)
          if (auto st = self->authorizeRead(*r); !st) return self->replyError(id, st.error());
        DialogSub sub;
        sub.id = randomUuid();
        std::string sub_id = sub.id;
        self->dialog_subs_[dialog] = std::move(sub);
        self->reply(id, 200, "GenericSubscribeResponse", bj::object{{"subscriptionId", sub_id}});
        self->streamHistory(dialog, sub_id, from, self->deps_.options.max_history,
                            std::chrono::steady_clock::now());
      }));
}

bool ProtocolSession::writeQueueBusy() const {
  auto t = transport_.lock();
  return t && t->queuedBytes() >= t->maxQueuedBytes() / 2;
}

void ProtocolSession::streamHistory(std::string dialog, std::string sub_id, std::int64_t from,
                                    int remaining,
                                    std::chrono::steady_clock::time_point waiting_since) {
  auto it = dialog_subs_.find(dialog);
  if (closed_ || it == dialog_subs_.end() || it->second.id != sub_id) return;
  if (writeQueueBusy()) {
    // The peer has not taken what is queued yet: wait (the history is not read into memory
    // meanwhile). One that takes nothing for the stall timeout is closed as a slow consumer.
    if (std::chrono::steady_clock::now() - waiting_since > deps_.options.history_stall_timeout) {
      deps_.metrics.countSlowConsumerClose();
      spdlog::warn("consumer socket closed: its history was not read for {} ms (close 1008)",
                   deps_.options.history_stall_timeout.count());
      return closeWith(1008, "slow consumer: the history is not being read");
    }
    postAfter(std::chrono::milliseconds(50), [self = shared_from_this(), dialog = std::move(dialog),
                                              sub_id = std::move(sub_id), from, remaining,
                                              waiting_since]() mutable {
      self->streamHistory(std::move(dialog), std::move(sub_id), from, remaining, waiting_since);
    });
    return;
  }
  int page = std::min(remaining, std::max(1, deps_.options.history_page));
  deps_.service.listMessages(
      account_, ConversationId(dialog), from, page,
      onStrand<std::vector<store::Message>>([self = shared_from_this(), dialog, sub_id, remaining,
                                             page](auto m) {
        auto it = self->dialog_subs_.find(dialog);
        if (it == self->dialog_subs_.end() || it->second.id != sub_id) return;
        auto& s = it->second;
        if (!m) {
          spdlog::warn("subscribe messaging: cannot read history: {}", m.error().message);
          return self->finishHistory(dialog);
        }
        // Frames of at most kHistoryFrameBytes; once the write queue is half full the rest
        // of the page is dropped and read again when the peer has taken some.
        std::span<const store::Message> all(*m);
        std::size_t begin = 0;
        while (begin < all.size()) {
          std::size_t end = begin;
          std::size_t bytes = 0;
          do {
            bytes += all[end].event_json.size() + all[end].metadata_json.size();
            ++end;
          } while (end < all.size() && bytes < kHistoryFrameBytes);
          s.max_sent = all[end - 1].sequence;
          self->sendDialogRecords(sub_id, all.subspan(begin, end - begin));
          begin = end;
          if (self->closed_) return;
          if (begin < all.size() && self->writeQueueBusy()) break;
        }
        int left = remaining - static_cast<int>(begin);
        if ((begin == all.size() && static_cast<int>(all.size()) < page) || left <= 0)
          return self->finishHistory(dialog);
        self->streamHistory(dialog, sub_id, s.max_sent + 1, left, std::chrono::steady_clock::now());
      }));
}

void ProtocolSession::finishHistory(const std::string& dialog) {
  auto it = dialog_subs_.find(dialog);
  if (it == dialog_subs_.end()) return;
  auto& s = it->second;
  std::vector<store::Message> out;
  for (auto& b : s.buffered) {
    if (b.sequence <= s.max_sent) continue;
    out.push_back(std::move(b));
  }
  s.buffered.clear();
  s.buffered_bytes = 0;
  s.loading = false;
  if (!out.empty()) s.max_sent = out.back().sequence;
  sendDialogRecords(s.id, out);
}

void ProtocolSession::unsubscribeMessaging(const Envelope& e) {
  std::string dialog = json::getString(bodyObject(e), "dialogId");
  dialog_subs_.erase(dialog);
  reply(e.id, 200, kStringResp, bj::value("OK"));
}

void ProtocolSession::sendDialogRecords(const std::string& sub_id,
                                        std::span<const store::Message> msgs) {
  if (kind_ == Kind::kAgent) {
    for (const auto& m : msgs) send(onlineEventDistribution(m));
    return;
  }
  // At most kChangesPerNotification consumer-visible records per notification.
  std::size_t begin = 0;
  while (begin < msgs.size()) {
    std::size_t end = begin;
    std::size_t visible = 0;
    while (end < msgs.size() && visible < kChangesPerNotification) {
      if (msgs[end].audience == store::Audience::kAll) ++visible;
      ++end;
    }
    std::string text = messagingEventNotification(sub_id, msgs.subspan(begin, end - begin));
    if (!text.empty()) send(std::move(text));
    begin = end;
  }
}

void ProtocolSession::publishEvent(const Envelope& e) {
  const auto& b = bodyObject(e);
  std::string dialog = json::getString(b, "dialogId");
  if (dialog.empty()) dialog = json::getString(b, "conversationId");
  if (dialog.empty()) return replyError(e.id, Error{ErrorCode::kInvalid, "dialogId is required"});
  auto ev_it = b.find("event");
  if (ev_it == b.end()) return replyError(e.id, Error{ErrorCode::kInvalid, "event is required"});
  auto event = normalizedEvent(ev_it->value());
  if (!event) return replyError(e.id, event.error());
  bj::value md = e.metadata;
  if (md.is_null()) {
    if (auto it = b.find("metadata"); it != b.end()) md = it->value();
  }
  auto key = takeIdempotencyKey(md);
  if (!key) return replyError(e.id, key.error());
  auto metadata = normalizeMetadata(md);
  if (!metadata) return replyError(e.id, metadata.error());
  conversation::PublishRequest req;
  req.actor = actor();
  req.conversation = ConversationId(dialog);
  req.event = std::move(*event);
  req.metadata_json = std::move(*metadata);
  req.idempotency_key = std::move(*key);
  std::string audience = json::getString(b, "messageAudience");
  auto aud = audience.empty() ? Result<store::Audience>(store::Audience::kAll)
                              : store::parseAudience(audience);
  if (!aud) return replyError(e.id, aud.error());
  req.audience = *aud;
  if (req.audience != conversation::Audience::kAll && kind_ == Kind::kConsumer)
    return replyError(
        e.id, Error{ErrorCode::kForbidden, "consumers may publish only to messageAudience ALL"});
  deps_.service.publish(std::move(req), onStrand<conversation::Published>(
                                            [self = shared_from_this(), id = e.id](auto r) {
                                              if (!r) return self->replyError(id, r.error());
                                              bj::object body;
                                              if (r->sequence) body["sequence"] = *r->sequence;
                                              self->reply(id, 200, "ms.PublishEventResponse", body);
                                            }));
}

void ProtocolSession::updateField(const Envelope& e) {
  const auto& b = bodyObject(e);
  std::string conv = json::getString(b, "conversationId");
  if (conv.empty()) conv = json::getString(b, "dialogId");
  if (conv.empty())
    return replyError(e.id, Error{ErrorCode::kInvalid, "conversationId is required"});
  auto it = b.find("conversationField");
  if (it == b.end())
    return replyError(e.id, Error{ErrorCode::kInvalid, "conversationField is required"});
  auto parsed = parseConversationFields(account_, it->value(), uidFromPid());
  if (!parsed) return replyError(e.id, parsed.error());
  if (parsed->changes.empty()) {
    // Only CSAT entries: acknowledged, not stored (see README).
    return reply(e.id, 200, kStringResp, bj::value("OK"));
  }
  bool adds = false;
  for (const auto& c : parsed->changes)
    if (std::holds_alternative<conversation::AddParticipantField>(c)) adds = true;
  deps_.service.updateConversation(
      actor(), ConversationId(conv), std::move(parsed->changes),
      onStrand<store::Conversation>([self = shared_from_this(), id = e.id, adds](auto r) {
        if (!r) return self->replyError(id, r.error());
        self->reply(id, 200, kStringResp, bj::value(adds ? "OK Agent added successfully" : "OK"));
      }));
}

void ProtocolSession::requestConversation(const Envelope& e) {
  const auto& b = bodyObject(e);
  conversation::ConversationRequest req;
  req.account = account_;
  req.consumer = *consumer_;
  std::string ch = json::getString(b, "channelType");
  if (!ch.empty()) {
    auto c = store::parseChannel(ch);
    if (!c)
      return replyError(e.id, Error{ErrorCode::kInvalid, "channelType must be MESSAGING or CHAT"});
    req.channel = *c;
  }
  std::string skill = bodyString(b, "skillId");
  if (!skill.empty()) req.skill = SkillId(skill);
  std::string ttr = json::getString(b, "ttrDefName");
  if (!ttr.empty()) {
    auto t = store::parseTtrType(ttr);
    if (!t)
      return replyError(e.id, Error{ErrorCode::kInvalid,
                                    "ttrDefName must be URGENT, NORMAL, PRIORITIZED or CUSTOM"});
    req.ttr_type = *t;
  }
  if (auto it = b.find("conversationContext"); it != b.end() && it->value().is_object()) {
    req.context_json = bj::serialize(it->value());
    // Kept with the conversation for its whole life (unauthenticated SDEs, visitor ids).
    if (req.context_json.size() > deps_.options.max_conversation_context_bytes)
      return replyError(
          e.id, Error{ErrorCode::kTooLarge,
                      fmt::format("conversationContext is {} bytes; at most {} bytes are accepted "
                                  "(send fewer or shorter engagement attributes)",
                                  req.context_json.size(),
                                  deps_.options.max_conversation_context_bytes)});
  }
  deps_.service.requestConversation(
      std::move(req), onStrand<store::Conversation>([self = shared_from_this(), id = e.id](auto r) {
        if (!r) return self->replyError(id, r.error());
        self->reply(id, 200, "cm.RequestConversationResponse",
                    bj::object{{"conversationId", r->id.str()}});
      }));
}

// ---------------------------------------------------------------------------------------------
// Events

void ProtocolSession::deliver(std::shared_ptr<const Event> event) {
  post([self = shared_from_this(), event = std::move(event)] {
    if (self->closed_) return;
    try {
      self->onEvent(*event);
    } catch (const std::exception& ex) {
      spdlog::error("protocol event failed with an exception: {}", ex.what());
    }
  });
}

void ProtocolSession::deliverMessage(std::shared_ptr<const Event> event,
                                     std::shared_ptr<const MessageFrames> frames) {
  (void)event;  // frames->added() is the same message
  post([self = shared_from_this(), frames = std::move(frames)]() mutable {
    if (self->closed_) return;
    try {
      self->onMessage(std::move(frames));
    } catch (const std::exception& ex) {
      spdlog::error("protocol event failed with an exception: {}", ex.what());
    }
  });
}

void ProtocolSession::onEvent(const Event& ev) {
  std::visit(
      [this](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, conversation::ConversationChanged>) onConversation(e);
        if constexpr (std::is_same_v<T, std::shared_ptr<const conversation::MessageAdded>>)
          onMessage(std::make_shared<const MessageFrames>(e));
        if constexpr (std::is_same_v<T, conversation::ChatStateChanged>) onChatState(e);
        if constexpr (std::is_same_v<T, conversation::RingOffered>) onRingOffered(e);
        if constexpr (std::is_same_v<T, conversation::RingEnded>) onRingEnded(e);
        if constexpr (std::is_same_v<T, conversation::AgentStateChanged>) onAgentState(e);
      },
      ev);
}

void ProtocolSession::onConversation(const conversation::ConversationChanged& e) {
  const auto& c = e.conversation;
  for (auto& [id, s] : ex_subs_) {
    s.seen.insert(c.id.str());
    if (matches(s, c)) {
      s.shown.insert(c.id.str());
      sendExChange(s, c, "UPSERT");
    } else if (s.shown.erase(c.id.str()) > 0) {
      sendExChange(s, c, "DELETE");
    }
  }
}

void ProtocolSession::onMessage(std::shared_ptr<const MessageFrames> frames) {
  const auto& m = frames->added().message;
  if (kind_ == Kind::kAgent) {
    if (!isParticipant(frames->added().conversation)) return;
    emitOrdered({}, [self = shared_from_this(), frames = std::move(frames)] {
      self->send(frames->agentFrame());
    });
    return;
  }
  if (m.audience != store::Audience::kAll) return;
  auto it = dialog_subs_.find(m.conversation.str());
  if (it == dialog_subs_.end()) return;
  auto& s = it->second;
  if (s.loading) {
    // Held while the history is sent, within the write queue's byte limit.
    s.buffered_bytes += m.event_json.size() + m.metadata_json.size() + 256;
    auto t = transport_.lock();
    if (t && s.buffered_bytes > t->maxQueuedBytes()) {
      deps_.metrics.countSlowConsumerClose();
      return closeWith(1008, "slow consumer: live events pile up behind an unread history");
    }
    s.buffered.push_back(m);
    return;
  }
  if (m.sequence <= s.max_sent) return;
  s.max_sent = m.sequence;
  emitOrdered({}, [self = shared_from_this(), sub_id = s.id, frames = std::move(frames)] {
    const store::Message& msg = frames->added().message;
    self->send(messagingEventNotification(sub_id, msg, frames->consumerRecord()));
  });
}

void ProtocolSession::onChatState(const conversation::ChatStateChanged& e) {
  if (kind_ == Kind::kAgent) {
    if (!isParticipant(e.conversation)) return;
    send(makeNotification(".ams.ms.OnlineEventDistribution", chatStateRecord(e, View::kAgent)));
    return;
  }
  auto it = dialog_subs_.find(e.conversation.id.str());
  if (it == dialog_subs_.end()) return;
  // Consumers do not need to see their own typing state echoed back.
  if (consumer_ && e.originator_id == consumer_->str()) return;
  bj::object body{{"subscriptionId", it->second.id},
                  {"dialogId", e.conversation.id.str()},
                  {"changes", bj::array{chatStateRecord(e, View::kConsumer)}}};
  send(makeNotification("ms.MessagingEventNotification", body));
}

void ProtocolSession::onRingOffered(const conversation::RingOffered& e) {
  if (kind_ != Kind::kAgent || !routing_sub_) return;
  if (e.ring.user != principal_->user.id) return;
  if (!rings_sent_.insert(e.ring.ring_id).second) return;
  bj::object body{
      {"subscriptionId", *routing_sub_},
      {"changes", bj::array{bj::object{{"type", "UPSERT"},
                                       {"result", ringResult(e.ring, "WAITING",
                                                             deps_.options.ring_expiration_s)}}}}};
  send(makeNotification(".ams.routing.RoutingTaskNotification", body));
}

void ProtocolSession::onRingEnded(const conversation::RingEnded& e) {
  if (kind_ != Kind::kAgent || !routing_sub_) return;
  if (e.ring.user != principal_->user.id) return;
  rings_sent_.erase(e.ring.ring_id);
  const char* state = conversation::ringStateName(e.ring.state);
  bj::object body{
      {"subscriptionId", *routing_sub_},
      {"changes",
       bj::array{bj::object{
           {"type", e.reason == conversation::RingEndReason::kAccepted ? "UPSERT" : "DELETE"},
           {"result", ringResult(e.ring, state, deps_.options.ring_expiration_s)}}}}};
  send(makeNotification(".ams.routing.RoutingTaskNotification", body));
}

void ProtocolSession::onAgentState(const conversation::AgentStateChanged& e) {
  if (kind_ != Kind::kAgent || !agents_state_sub_) return;
  if (e.state.user != principal_->user.id) return;
  bj::object body{{"subscriptionId", *agents_state_sub_},
                  {"changes", bj::array{bj::object{{"type", "UPSERT"},
                                                   {"result", agentStateResult(e.state)}}}}};
  send(makeNotification(".ams.routing.AgentStateNotification", body));
}

// ---------------------------------------------------------------------------------------------
// Ordered emission with PId resolution

void ProtocolSession::emitOrdered(std::vector<std::string> uids, std::function<void()> emit) {
  pending_.push_back(Pending{std::move(uids), std::move(emit)});
  pump();
}

void ProtocolSession::pump() {
  while (!pending_.empty() && !closed_) {
    auto& front = pending_.front();
    bool ready = true;
    if (!reloaded_once_) {
      for (const auto& u : front.uids)
        if (!deps_.directory.pidOf(account_, u)) ready = false;
    }
    if (!ready) {
      if (reloading_) return;
      reloading_ = true;
      deps_.directory.reload(account_, [self = shared_from_this()] {
        self->post([self] {
          self->reloading_ = false;
          self->reloaded_once_ = true;
          self->pump();
          self->reloaded_once_ = false;
        });
      });
      return;
    }
    auto emit = std::move(front.emit);
    pending_.pop_front();
    emit();
  }
}

}  // namespace parley::server::protocol
