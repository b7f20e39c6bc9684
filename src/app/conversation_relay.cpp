// Conversation events between nodes over the bus.

#include "app/conversation_relay.h"

#include <spdlog/spdlog.h>

#include "common/json.h"
#include "common/random.h"

namespace parley::app {

namespace bj = boost::json;
namespace conv = parley::conversation;

namespace {

constexpr const char* kPrefix = "parley.conv.";

std::string subjectOf(const AccountId& acc, const ConversationId& id) {
  return kPrefix + bus::subjectToken(acc.str()) + "." + bus::subjectToken(id.str());
}

bj::object participantJson(const store::Participant& p) {
  return bj::object{{"id", p.id},
                    {"role", store::participantRoleName(p.role)},
                    {"state", store::participantStateName(p.state)},
                    {"joinedAt", p.joined_at}};
}

}  // namespace

bj::object conversationJson(const store::Conversation& c) {
  bj::array participants;
  for (const auto& p : c.participants) participants.push_back(participantJson(p));
  return bj::object{{"id", c.id.str()},
                    {"account", c.account.str()},
                    {"consumer", c.consumer.str()},
                    {"channel", store::channelName(c.channel)},
                    {"state", store::stateName(c.state)},
                    {"skill", c.skill.str()},
                    {"ttrType", store::ttrTypeName(c.ttr_type)},
                    {"ttrValue", c.ttr_value_s},
                    {"ttrDueAt", c.ttr_due_at},
                    {"startTs", c.start_ts},
                    {"endTs", c.end_ts},
                    {"updatedAt", c.updated_at},
                    {"closeReason", store::closeReasonText(c.close_reason)},
                    {"nextSequence", c.next_sequence},
                    {"participants", std::move(participants)},
                    {"context", c.context_json},
                    {"turn", store::encodeTurnMark(c.turn_mark)}};
}

namespace {

std::int64_t getInt(const bj::object& o, std::string_view key) { return json::getInt(o, key, 0); }

// A relayed participant; Invalid naming an unknown role or state (absent state: ACTIVE).
Result<store::Participant> participantFrom(const bj::object& p) {
  auto role = store::parseParticipantRole(json::getString(p, "role"));
  if (!role) return std::unexpected(role.error());
  auto state = store::parseParticipantState(json::getString(p, "state", "ACTIVE"));
  if (!state) return std::unexpected(state.error());
  return store::Participant{json::getString(p, "id"), *role, *state, getInt(p, "joinedAt")};
}

}  // namespace

Result<store::Conversation> conversationFrom(const bj::object& o) {
  store::Conversation c;
  c.id = ConversationId(json::getString(o, "id"));
  c.account = AccountId(json::getString(o, "account"));
  c.consumer = ConsumerId(json::getString(o, "consumer"));
  auto ch = store::parseChannel(json::getString(o, "channel"));
  auto st = store::parseConversationState(json::getString(o, "state"));
  auto ttr = store::parseTtrType(json::getString(o, "ttrType"));
  if (!ch || !st || !ttr || c.id.str().empty() || c.account.str().empty())
    return invalid("a relayed conversation lacks its id, account, channel, state or TTR type");
  c.channel = *ch;
  c.state = *st;
  c.ttr_type = *ttr;
  c.skill = SkillId(json::getString(o, "skill"));
  c.ttr_value_s = getInt(o, "ttrValue");
  c.ttr_due_at = getInt(o, "ttrDueAt");
  c.start_ts = getInt(o, "startTs");
  c.end_ts = getInt(o, "endTs");
  c.updated_at = getInt(o, "updatedAt");
  auto reason = store::parseCloseReasonText(json::getString(o, "closeReason"));
  if (!reason) return std::unexpected(reason.error());
  c.close_reason = *reason;
  c.next_sequence = getInt(o, "nextSequence");
  c.context_json = json::getString(o, "context", "{}");
  c.turn_mark = store::decodeTurnMark(json::getString(o, "turn"));
  if (auto* ps = o.if_contains("participants"); ps && ps->is_array())
    for (const auto& v : ps->as_array()) {
      if (!v.is_object()) continue;
      auto p = participantFrom(v.as_object());
      if (!p) return std::unexpected(p.error());
      c.participants.push_back(std::move(*p));
    }
  return c;
}

namespace {

std::optional<conv::ChangeKind> parseChangeKind(std::string_view s) {
  for (auto k :
       {conv::ChangeKind::kCreated, conv::ChangeKind::kUpdated, conv::ChangeKind::kParticipants,
        conv::ChangeKind::kTtr, conv::ChangeKind::kSkill, conv::ChangeKind::kClosed})
    if (s == conv::changeKindName(k)) return k;
  return std::nullopt;
}

}  // namespace

std::string encodeRelayedMessage(const std::string& origin, const conv::MessageAdded& e) {
  const auto& m = e.message;
  return json::dump(bj::object{
      {"type", "message"},
      {"origin", origin},
      {"conversation", conversationJson(e.conversation)},
      {"message", bj::object{{"sequence", m.sequence},
                             {"serverTs", m.server_ts},
                             {"originatorId", m.originator_id},
                             {"originatorPid", m.originator_pid},
                             {"originatorRole", store::participantRoleName(m.originator_role)},
                             {"audience", store::audienceName(m.audience)},
                             {"event", m.event_json},
                             {"metadata", m.metadata_json},
                             {"turn", store::encodeTurnMark(m.turn)}}}});
}

std::string encodeRelayedChange(const std::string& origin, const conv::ConversationChanged& e) {
  bj::array removed;
  for (const auto& p : e.removed) removed.push_back(participantJson(p));
  return json::dump(bj::object{{"type", "changed"},
                               {"origin", origin},
                               {"kind", conv::changeKindName(e.kind)},
                               {"conversation", conversationJson(e.conversation)},
                               {"removed", std::move(removed)}});
}

ConversationRelay::ConversationRelay(bus::Bus& bus, conv::ConversationListener& sessions,
                                     std::size_t max_conversations)
    : bus_(bus),
      sessions_(sessions),
      max_conversations_(std::max<std::size_t>(1, max_conversations)),
      origin_(randomHex(8)) {}

ConversationRelay::~ConversationRelay() { stop(); }

Status ConversationRelay::start() {
  if (!bus_.shared()) return {};
  auto s =
      bus_.subscribe(std::string(kPrefix) + ">", [this](const bus::BusMessage& m) { receive(m); });
  if (!s) return std::unexpected(s.error());
  sub_ = std::move(*s);
  return {};
}

void ConversationRelay::stop() { sub_.reset(); }

std::uint64_t ConversationRelay::delivered() const {
  std::lock_guard l(mu_);
  return delivered_;
}
std::uint64_t ConversationRelay::duplicates() const {
  std::lock_guard l(mu_);
  return duplicates_;
}

void ConversationRelay::onConversationChanged(const conv::ConversationChanged& e) {
  if (!bus_.shared()) return;
  bus_.publish(subjectOf(e.conversation.account, e.conversation.id),
               encodeRelayedChange(origin_, e));
}

void ConversationRelay::onMessageAddedShared(const std::shared_ptr<const conv::MessageAdded>& e) {
  if (!bus_.shared()) return;
  bus_.publish(subjectOf(e->conversation.account, e->conversation.id),
               encodeRelayedMessage(origin_, *e));
}

bool ConversationRelay::fresh(const std::string& subject, std::uint64_t bus_sequence,
                              std::int64_t message_sequence) {
  auto it = seen_.find(subject);
  if (it == seen_.end()) {
    ages_.push_back(subject);
    it = seen_.emplace(subject, Seen{0, -1, std::prev(ages_.end())}).first;
    while (seen_.size() > max_conversations_) {
      seen_.erase(ages_.front());
      ages_.pop_front();
    }
    it = seen_.find(subject);
    if (it == seen_.end()) return true;  // max_conversations_ of 1 and an old entry: keep none
  }
  Seen& s = it->second;
  if (bus_sequence <= s.bus_sequence ||
      (message_sequence >= 0 && message_sequence <= s.message_sequence))
    return false;
  s.bus_sequence = bus_sequence;
  if (message_sequence >= 0) s.message_sequence = message_sequence;
  return true;
}

void ConversationRelay::receive(const bus::BusMessage& m) {
  auto o = json::parseObject(m.data);
  if (!o) {
    spdlog::warn("bus: unreadable conversation event on {} ignored", m.subject);
    return;
  }
  if (json::getString(*o, "origin") == origin_) return;
  auto* cv = o->if_contains("conversation");
  if (!cv || !cv->is_object()) return;
  auto c = conversationFrom(cv->as_object());
  if (!c) {
    spdlog::warn("bus: conversation event on {} ignored: {}", m.subject, c.error().message);
    return;
  }
  const std::string type = json::getString(*o, "type");
  if (type == "message") {
    auto* mv = o->if_contains("message");
    if (!mv || !mv->is_object()) return;
    const auto& mo = mv->as_object();
    auto e = std::make_shared<conv::MessageAdded>();
    e->message.conversation = c->id;
    e->message.sequence = getInt(mo, "sequence");
    e->message.server_ts = getInt(mo, "serverTs");
    e->message.originator_id = json::getString(mo, "originatorId");
    e->message.originator_pid = json::getString(mo, "originatorPid");
    auto role = store::parseParticipantRole(json::getString(mo, "originatorRole"));
    auto audience = store::parseAudience(json::getString(mo, "audience", "ALL"));
    if (!role || !audience) {
      spdlog::warn("bus: message {} of {} ignored: {}", e->message.sequence, c->id.str(),
                   (role ? audience.error() : role.error()).message);
      return;
    }
    e->message.originator_role = *role;
    e->message.audience = *audience;
    e->message.event_json = json::getString(mo, "event");
    e->message.metadata_json = json::getString(mo, "metadata", "[]");
    e->message.turn = store::decodeTurnMark(json::getString(mo, "turn"));
    auto event = json::parseObject(e->message.event_json);
    if (!event) {
      spdlog::warn("bus: message {} of {} has no readable event; ignored", e->message.sequence,
                   c->id.str());
      return;
    }
    e->event = std::make_shared<const bj::object>(std::move(*event));
    e->conversation = std::move(*c);
    {
      std::lock_guard l(mu_);
      if (!fresh(m.subject, m.sequence, e->message.sequence)) {
        ++duplicates_;
        return;
      }
      ++delivered_;
    }
    sessions_.onMessageAddedShared(e);
    return;
  }
  if (type == "changed") {
    auto kind = parseChangeKind(json::getString(*o, "kind"));
    if (!kind) return;
    conv::ConversationChanged e;
    e.kind = *kind;
    if (auto* rv = o->if_contains("removed"); rv && rv->is_array())
      for (const auto& v : rv->as_array())
        if (v.is_object()) {
          auto p = participantFrom(v.as_object());
          if (!p) {
            spdlog::warn("bus: change of {} ignored: {}", c->id.str(), p.error().message);
            return;
          }
          e.removed.push_back(std::move(*p));
        }
    e.conversation = std::move(*c);
    {
      std::lock_guard l(mu_);
      if (!fresh(m.subject, m.sequence, -1)) {
        ++duplicates_;
        return;
      }
      ++delivered_;
    }
    sessions_.onConversationChanged(e);
  }
}

}  // namespace parley::app
