// Conversation events between nodes over the bus.

#include "app/conversation_relay.h"

#include <spdlog/spdlog.h>

#include "common/json.h"
#include "common/random.h"

namespace parley::app {

namespace bj = boost::json;
namespace conv = parley::conversation;

namespace {

constexpr const char* kPrefix = "parley-conv.";
// At most this many messages are read to fill one gap (a longer one: the first ones; the
// sessions then miss the rest, as a socket that reconnects reads them with fromSeq).
constexpr std::int64_t kMaxFill = 10'000;

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

std::string encodeRelayedMessage(const std::string& origin, const conv::MessageAdded& e,
                                 std::uint64_t number) {
  const auto& m = e.message;
  return json::dump(bj::object{
      {"type", "message"},
      {"origin", origin},
      {"number", number},
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

std::string encodeRelayedChange(const std::string& origin, const conv::ConversationChanged& e,
                                std::uint64_t number) {
  bj::array removed;
  for (const auto& p : e.removed) removed.push_back(participantJson(p));
  return json::dump(bj::object{{"type", "changed"},
                               {"origin", origin},
                               {"number", number},
                               {"kind", conv::changeKindName(e.kind)},
                               {"conversation", conversationJson(e.conversation)},
                               {"removed", std::move(removed)}});
}

std::string ConversationRelay::subjectOf(const store::Conversation& c) {
  return kPrefix + bus::subjectToken(c.account.str()) + "." + bus::subjectToken(c.consumer.str()) +
         "." + bus::subjectToken(c.id.str());
}

std::string ConversationRelay::filterOf(const AccountId& account,
                                        const std::optional<ConsumerId>& consumer) {
  std::string f = kPrefix + bus::subjectToken(account.str());
  return consumer ? f + "." + bus::subjectToken(consumer->str()) + ".*" : f + ".>";
}

ConversationRelay::ConversationRelay(bus::Bus& bus, conv::ConversationListener& sessions,
                                     store::ConversationStore& store, std::size_t max_conversations)
    : bus_(bus),
      sessions_(sessions),
      store_(store),
      max_conversations_(std::max<std::size_t>(1, max_conversations)),
      origin_(randomHex(8)),
      origin_field_("\"origin\":\"" + origin_ + "\"") {}

ConversationRelay::~ConversationRelay() { stop(); }

Status ConversationRelay::start() {
  if (!bus_.shared()) return {};
  MutexLock l(mu_);
  if (!filler_.joinable() && !stopping_) filler_ = std::thread([this] { fillLoop(); });
  return {};
}

void ConversationRelay::stop() {
  std::unordered_map<std::string, Watched> subs;
  {
    MutexLock l(watch_mu_);
    stopped_ = true;
    subs.swap(watched_);
  }
  subs.clear();  // waits for deliveries in progress
  {
    MutexLock l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (filler_.joinable() && filler_.get_id() != std::this_thread::get_id()) filler_.join();
}

void ConversationRelay::watch(const AccountId& account, const std::optional<ConsumerId>& consumer) {
  if (!bus_.shared()) return;
  const std::string filter = filterOf(account, consumer);
  MutexLock w(watch_mu_);
  if (stopped_) return;
  auto& watched = watched_[filter];
  if (watched.watchers++ > 0) return;
  std::uint64_t since = 0;
  {
    MutexLock l(mu_);
    since = ++generation_;
  }
  // On the bus's shared delivery threads (no thread per watched consumer): receive() never
  // blocks — it parses, takes mu_ (held by others only to hand events to the sessions) and hands
  // the event on; a gap is read from the store on the fill thread.
  auto sub = bus_.listen(
      filter, [this, since](const bus::BusMessage& m) { receive(m, since); },
      bus::Delivery::kShared);
  if (!sub) {
    // The session works on; it sees other nodes' changes of these conversations when it reads
    // them (a reconnect, a query).
    spdlog::warn("bus: cannot take the events of {}: {}", filter, sub.error().message);
    return;
  }
  watched.sub = std::move(*sub);
}

void ConversationRelay::unwatch(const AccountId& account,
                                const std::optional<ConsumerId>& consumer) {
  if (!bus_.shared()) return;
  std::unique_ptr<bus::Subscription> gone;
  {
    MutexLock w(watch_mu_);
    auto it = watched_.find(filterOf(account, consumer));
    if (it == watched_.end()) return;
    if (--it->second.watchers > 0) return;
    gone = std::move(it->second.sub);
    watched_.erase(it);
    // Destroyed under watch_mu_: a watch() of the same filter subscribes after this one ended.
    gone.reset();
  }
}

std::uint64_t ConversationRelay::delivered() const {
  MutexLock l(mu_);
  return delivered_;
}
std::uint64_t ConversationRelay::duplicates() const {
  MutexLock l(mu_);
  return duplicates_;
}
std::uint64_t ConversationRelay::filled() const {
  MutexLock l(mu_);
  return filled_;
}
std::size_t ConversationRelay::subscriptions() const {
  MutexLock w(watch_mu_);
  std::size_t n = 0;
  for (const auto& [filter, watched] : watched_)
    if (watched.sub) ++n;
  return n;
}

void ConversationRelay::waitFilled() {
  MutexLock l(mu_);
  while (!stopping_ && (!fills_.empty() || filling_)) l.wait(cv_);
}

void ConversationRelay::onConversationChanged(const conv::ConversationChanged& e) {
  if (!bus_.shared()) return;
  auto st = bus_.broadcast(subjectOf(e.conversation),
                           encodeRelayedChange(origin_, e, next_number_.fetch_add(1)));
  if (!st)
    spdlog::debug("bus: change of {} not relayed: {}", e.conversation.id.str(), st.error().message);
}

void ConversationRelay::onMessageAddedShared(const std::shared_ptr<const conv::MessageAdded>& e) {
  if (!bus_.shared()) return;
  auto st = bus_.broadcast(subjectOf(e->conversation),
                           encodeRelayedMessage(origin_, *e, next_number_.fetch_add(1)));
  if (!st)
    spdlog::debug("bus: message {} of {} not relayed: {}", e->message.sequence,
                  e->conversation.id.str(), st.error().message);
}

ConversationRelay::Seen* ConversationRelay::seenOf(const std::string& subject) {
  auto it = seen_.find(subject);
  if (it != seen_.end()) return &it->second;
  // Forget the oldest, but never one whose events wait for a fill.
  for (auto a = ages_.begin(); seen_.size() >= max_conversations_ && a != ages_.end();) {
    auto s = seen_.find(*a);
    if (s != seen_.end() && s->second.filling) {
      ++a;
      continue;
    }
    if (s != seen_.end()) seen_.erase(s);
    a = ages_.erase(a);
  }
  ages_.push_back(subject);
  Seen fresh;
  fresh.age = std::prev(ages_.end());
  return &seen_.emplace(subject, std::move(fresh)).first->second;
}

void ConversationRelay::deliver(const Event& e) {
  ++delivered_;
  if (auto* m = std::get_if<std::shared_ptr<const conv::MessageAdded>>(&e))
    sessions_.onMessageAddedShared(*m);
  else
    sessions_.onConversationChanged(std::get<conv::ConversationChanged>(e));
}

void ConversationRelay::accept(Received r) {
  Seen& s = *seenOf(r.subject);
  if (s.filling) {
    s.waiting.push_back(std::move(r));
    return;
  }
  const auto* message = std::get_if<std::shared_ptr<const conv::MessageAdded>>(&r.event);
  const std::int64_t sequence = message ? (*message)->message.sequence : -1;
  if (s.recorded < r.since) {
    // Nothing known from this subscription's time: this event starts the record (the sessions
    // read the store for what was before).
    s.origin = r.origin;
    s.number = r.number;
    s.message_sequence = sequence;
  } else {
    if ((r.origin == s.origin && r.number <= s.number) ||
        (sequence >= 0 && sequence <= s.message_sequence)) {
      ++duplicates_;
      return;
    }
    if (sequence > s.message_sequence + 1 && s.message_sequence >= 0) {
      // Messages were lost on the way: read them first; this event and the conversation's
      // later ones wait.
      fills_.push_back(Fill{r.subject, (*message)->conversation, s.message_sequence + 1, sequence});
      s.filling = true;
      s.waiting.push_back(std::move(r));
      cv_.notify_all();
      return;
    }
    s.origin = r.origin;
    s.number = r.number;
    if (sequence >= 0) s.message_sequence = sequence;
  }
  s.recorded = generation_;
  deliver(r.event);
}

void ConversationRelay::fillLoop() {
  MutexLock l(mu_);
  for (;;) {
    while (!stopping_ && fills_.empty()) l.wait(cv_);
    if (stopping_) return;
    Fill f = std::move(fills_.front());
    fills_.pop_front();
    filling_ = true;
    l.unlock();
    auto msgs = store_.listMessages(f.conversation.id, f.from,
                                    static_cast<int>(std::min(f.to - f.from, kMaxFill)));
    l.lock();
    filling_ = false;
    if (stopping_) return;
    auto it = seen_.find(f.subject);
    if (it == seen_.end()) continue;
    Seen& s = it->second;
    if (!msgs) {
      spdlog::warn("bus: messages {}..{} of {} not read to fill a gap: {}", f.from, f.to - 1,
                   f.conversation.id.str(), msgs.error().message);
    } else {
      for (auto& m : *msgs) {
        if (m.sequence <= s.message_sequence || m.sequence >= f.to) continue;
        auto event = json::parseObject(m.event_json);
        if (!event) continue;
        auto e = std::make_shared<conv::MessageAdded>();
        e->conversation = f.conversation;
        e->conversation.next_sequence = m.sequence + 1;
        e->event = std::make_shared<const bj::object>(std::move(*event));
        e->message = std::move(m);
        s.message_sequence = e->message.sequence;
        ++filled_;
        deliver(std::shared_ptr<const conv::MessageAdded>(std::move(e)));
      }
    }
    // What waited goes on in order; the gap is closed (filled, or given up on when unreadable).
    s.filling = false;
    if (s.message_sequence < f.to - 1) s.message_sequence = f.to - 1;
    auto waiting = std::move(s.waiting);
    s.waiting.clear();
    while (!waiting.empty()) {
      Received r = std::move(waiting.front());
      waiting.pop_front();
      accept(std::move(r));
      auto again = seen_.find(f.subject);
      if (again != seen_.end() && again->second.filling) {
        // Another gap: the rest waits behind its fill.
        for (auto& w : waiting) again->second.waiting.push_back(std::move(w));
        break;
      }
    }
    cv_.notify_all();
  }
}

void ConversationRelay::receive(const bus::BusMessage& m, std::uint64_t since) {
  // This node's own events (it watches a conversation it holds) come from its engine.
  if (std::string_view(m.data).substr(0, 96).find(origin_field_) != std::string_view::npos) return;
  auto o = json::parseObject(m.data);
  if (!o) {
    spdlog::warn("bus: unreadable conversation event on {} ignored", m.subject);
    return;
  }
  const std::string origin = json::getString(*o, "origin");
  if (origin == origin_) return;
  auto* cv = o->if_contains("conversation");
  if (!cv || !cv->is_object()) return;
  auto c = conversationFrom(cv->as_object());
  if (!c) {
    spdlog::warn("bus: conversation event on {} ignored: {}", m.subject, c.error().message);
    return;
  }
  Received r;
  r.subject = m.subject;
  r.origin = origin;
  r.number = static_cast<std::uint64_t>(std::max<std::int64_t>(0, getInt(*o, "number")));
  r.since = since;
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
    r.event = std::shared_ptr<const conv::MessageAdded>(std::move(e));
  } else if (type == "changed") {
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
    r.event = std::move(e);
  } else {
    return;
  }
  MutexLock l(mu_);
  if (stopping_) return;
  accept(std::move(r));
}

}  // namespace parley::app
