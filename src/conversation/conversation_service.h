#pragma once

// The conversation engine's API: conversations, participants, messages, routing (queues per
// skill ordered by TTR, rings to agents), transfers, close, agent availability, and the events
// that the server turns into protocol notifications and the bot connector turns into bot turns.
//
// Threading: every method is thread-safe and never blocks the caller on I/O. Asynchronous
// operations take a completion that is called exactly once, on an engine thread; callers post
// it back to their own strand. Every change of one conversation is applied on that
// conversation's own serial queue (strand), in order and never concurrently, and is committed
// to the store before its completion is called and before any listener sees it.
//
// Identities (see reference/messaging-protocol.md §1.9): a consumer uses one id everywhere; an
// agent or bot has a numeric UserId, the old-style id "{account}.{userId}" and a PId (UUID).
// Participants are stored with the consumer id or the agent's UserId; messages are stored with
// originator_id = consumer id or "{account}.{userId}", originator_pid = consumer id or PId.

#include <boost/json/object.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::conversation {

// Completion of an asynchronous operation. Called exactly once, on an engine thread.
template <class T>
using Callback = std::function<void(Result<T>)>;

// ---------------------------------------------------------------------------------------------
// Who is acting

enum class ActorKind {
  kConsumer,  // the conversation's consumer
  kAgent,     // a human agent or a bot user (store::UserType decides nothing here)
  kSystem,    // the platform itself (REST admin calls, escalation): passes participant checks
};

struct Actor {
  ActorKind kind = ActorKind::kSystem;
  AccountId account;
  // kConsumer: the consumer id (JWT `sub`).
  ConsumerId consumer;
  // kAgent: the numeric user id and the PId (`userPid`). The old-style id is oldId().
  UserId user;
  std::string pid;

  static Actor ofConsumer(AccountId acc, ConsumerId c) {
    Actor a;
    a.kind = ActorKind::kConsumer;
    a.account = std::move(acc);
    a.consumer = std::move(c);
    return a;
  }
  static Actor ofAgent(AccountId acc, UserId u, std::string pid) {
    Actor a;
    a.kind = ActorKind::kAgent;
    a.account = std::move(acc);
    a.user = std::move(u);
    a.pid = std::move(pid);
    return a;
  }
  static Actor ofSystem(AccountId acc) {
    Actor a;
    a.kind = ActorKind::kSystem;
    a.account = std::move(acc);
    return a;
  }
  // "{account}.{userId}" for agents, the consumer id for consumers, "system" otherwise.
  std::string oldId() const {
    switch (kind) {
      case ActorKind::kConsumer:
        return consumer.str();
      case ActorKind::kAgent:
        return account.str() + "." + user.str();
      case ActorKind::kSystem:
        break;
    }
    return "system";
  }
};

// ---------------------------------------------------------------------------------------------
// Requests

// cm.ConsumerRequestConversation.
struct ConversationRequest {
  AccountId account;
  ConsumerId consumer;
  store::Channel channel = store::Channel::kMessaging;
  // Default: "-1" (unassigned: the account's default queue, see README). REQUIRES: an existing
  // skill of the account, or "-1".
  std::optional<SkillId> skill;
  // Default: NORMAL. URGENT/NORMAL/PRIORITIZED take their seconds from the account.
  std::optional<store::TtrType> ttr_type;
  // Only for CUSTOM (REQUIRES: >= 0 then; ignored for the named types).
  std::optional<std::int64_t> ttr_value_s;
  // conversationContext as JSON text. REQUIRES: a JSON object.
  std::string context_json = "{}";
};

// The store's enums of participants and messages (names and parsers in store.h).
using store::Audience;
using store::CloseReason;
using store::ParticipantRole;
using store::ParticipantState;

// ms.PublishEvent.
struct PublishRequest {
  Actor actor;
  ConversationId conversation;  // = dialogId of the MAIN dialog
  // The event object as published: {"type":"ContentEvent"|"RichContentEvent"|
  // "AcceptStatusEvent"|"ChatStateEvent", ...}. Other types are Invalid. The engine checks the
  // type; the content of ContentEvent and RichContentEvent goes through Options::content_check
  // (conversation_engine.h) when one is set.
  std::string event_json;
  // The same event as a value; when set, `event_json` is ignored. The engine neither parses nor
  // copies it: it stores its serialisation and hands this object to the listeners
  // (MessageAdded::event). Nested at most 32 deep, as parsed text may be (Invalid otherwise).
  std::shared_ptr<const boost::json::object> event;
  // Envelope metadata array (BotResponse, ExternalId, ActionReason, ...). REQUIRES: JSON array.
  std::string metadata_json = "[]";
  // AGENTS_AND_MANAGERS (private note) only from agents.
  Audience audience = Audience::kAll;
  // A bot turn's mark, stored with the message in the same commit (store::TurnMark). Default:
  // none. Ignored for ChatStateEvent (not stored).
  store::TurnMark turn;
  // The publisher's idempotency key; empty: none. REQUIRES: empty or a valid key
  // (checkIdempotencyKey; Invalid otherwise). A publish whose (conversation, publisher, key) is
  // already stored stores nothing, adds no turn, notifies nobody, and is answered what the
  // first one was (its sequence and server_ts). The store checks it in the insert's own
  // transaction, so it holds across nodes and failovers. Ignored for ChatStateEvent.
  std::string idempotency_key;
};

// Limits of an idempotency key: 1 to kMaxIdempotencyKeyBytes characters, each an ASCII letter,
// digit, '-', '_', '.' or ':' (a UUID fits). Kept with its message, so for as long as the
// conversation's messages are stored.
inline constexpr std::size_t kMaxIdempotencyKeyBytes = 64;
// Invalid (saying what is wrong) unless `key` is a valid idempotency key.
Status checkIdempotencyKey(std::string_view key);

struct Published {
  // The sequence given to a persisted event; nullopt for ChatStateEvent (not stored).
  std::optional<std::int64_t> sequence;
  TimeMs server_ts = 0;
};

// cm.UpdateConversationField entries. A batch (one request) is applied atomically: validated as
// a whole, saved once, announced with one ConversationChanged.
//
// ConversationStateField CLOSE. Default reason: CONSUMER for consumers, BOT for agents whose
// user type is BOT, AGENT for other agents, SYSTEM for the system.
struct CloseField {
  std::optional<CloseReason> reason;
};
// TTRField. Named types take the account's seconds; CUSTOM REQUIRES value_s >= 0. While the
// conversation waits in a queue its due time becomes queued_at + seconds (now + seconds when it
// is assigned; overdue is tracked only while it waits).
struct TtrField {
  store::TtrType type = store::TtrType::kNormal;
  std::optional<std::int64_t> value_s;
};
// Skill UPDATE. REQUIRES: an existing skill of the account or "-1". If the batch leaves no ACTIVE
// ASSIGNED_AGENT the conversation is re-queued in the new skill's queue (transfer to skill).
struct SkillField {
  SkillId skill;
};
// ParticipantsChange ADD role MANAGER|READER (other roles are Invalid). `user` defaults to the
// acting agent. The actor need not be a participant (joining). REQUIRES: actor is an agent or
// system.
struct AddParticipantField {
  ParticipantRole role = ParticipantRole::kManager;
  std::optional<UserId> user;
};
// ParticipantsChange REMOVE. role ASSIGNED_AGENT = "back to queue" (fails with Invalid when there
// is no assigned agent); MANAGER/READER = leave. `user` defaults to the holder of an
// ASSIGNED_AGENT role, or the acting agent for MANAGER/READER; when given it must match (for
// ASSIGNED_AGENT, the acting agent's own id is also accepted: node-agent-sdk adds it to every
// REMOVE entry, so a manager's REMOVE names the manager).
struct RemoveParticipantField {
  ParticipantRole role = ParticipantRole::kAssignedAgent;
  std::optional<UserId> user;
};
// ParticipantsChange SUGGEST role ASSIGNED_AGENT: transfer to a named agent. The agent is added
// with state SUGGESTED, the conversation is queued, and only that agent is rung (if ONLINE or
// OCCUPIED with capacity). Accepting makes it ACTIVE. If the agent rejects, lets the ring expire,
// or is not rung within Options::suggest_timeout_ms, the suggestion is removed and the
// conversation falls back to its skill queue. REQUIRES: the batch leaves no ACTIVE
// ASSIGNED_AGENT (send REMOVE ASSIGNED_AGENT in the same batch).
struct SuggestAgentField {
  UserId user;
};
using FieldChange = std::variant<CloseField, TtrField, SkillField, AddParticipantField,
                                 RemoveParticipantField, SuggestAgentField>;

// Common batches.
inline std::vector<FieldChange> transferToSkill(SkillId skill) {
  return {RemoveParticipantField{ParticipantRole::kAssignedAgent, std::nullopt},
          SkillField{std::move(skill)}};
}
inline std::vector<FieldChange> transferToAgent(UserId user, SkillId skill) {
  return {RemoveParticipantField{ParticipantRole::kAssignedAgent, std::nullopt},
          SuggestAgentField{std::move(user)}, SkillField{std::move(skill)}};
}

// ---------------------------------------------------------------------------------------------
// Routing values

enum class RingState { kWaiting, kAccepted, kRejected, kExpired, kCancelled };
const char* ringStateName(
    RingState s);  // "WAITING", "ACCEPTED", "REJECTED", "EXPIRED", "CANCELLED"

// An offer of a waiting conversation to one agent. ring_id = "<convId>_<userId>_<offeredAtMs>".
struct Ring {
  std::string ring_id;
  AccountId account;
  ConversationId conversation;
  ConsumerId consumer;
  UserId user;  // the agent (or bot) rung
  SkillId skill;
  RingState state = RingState::kWaiting;
  TimeMs offered_at = 0;
  TimeMs expires_at = 0;
};

// One waiting conversation in a queue snapshot.
struct QueueEntry {
  ConversationId conversation;
  ConsumerId consumer;
  SkillId skill;
  store::TtrType ttr_type = store::TtrType::kNormal;
  std::int64_t ttr_value_s = 0;
  TimeMs queued_at = 0;
  TimeMs due_at = 0;
  bool overdue = false;         // now > due_at
  std::vector<UserId> ringing;  // agents holding a WAITING ring
  std::optional<UserId> suggested;
};

struct QueueSnapshot {
  AccountId account;
  SkillId skill;
  std::vector<QueueEntry> entries;  // ordered by due_at, then enqueue order
};

// What routing knows about an agent (availability is in-memory state, persisted as AgentState).
struct AgentInfo {
  AccountId account;
  UserId user;
  // The state a session of this node set; in cluster mode, when none did (OFFLINE here), the
  // state another node announces (the first by name announcing ONLINE, else another state than
  // OFFLINE), the one routing rings the agent through. Skills and max_open_conversations: as
  // this node read them from the store, else as that node announced them.
  store::Availability availability = store::Availability::kOffline;
  store::UserType type = store::UserType::kHuman;
  std::vector<SkillId> skills;
  int max_open_conversations = 0;
  int open_assigned = 0;  // open conversations where the agent is ACTIVE ASSIGNED_AGENT (here)
  int waiting_rings = 0;  // (here)
  // Cluster mode: the node whose announced state `availability` is ("" when it is this node's
  // own, or nobody's), and the other nodes' share of the agent's load (their assigned
  // conversations and rings, as last announced: at most one announcement period old).
  std::string node;
  int load_elsewhere = 0;
};

// ---------------------------------------------------------------------------------------------
// Events

enum class ChangeKind { kCreated, kUpdated, kParticipants, kTtr, kSkill, kClosed };
const char* changeKindName(ChangeKind k);

struct ConversationChanged {
  // The most significant change of the batch: CLOSED > SKILL > PARTICIPANTS > TTR > UPDATED.
  ChangeKind kind = ChangeKind::kUpdated;
  store::Conversation conversation;  // full snapshot after the change
  // Participants removed by this change (e.g. the old ASSIGNED_AGENT after a transfer), so the
  // server can send DELETE to their agentIds-filtered subscriptions.
  std::vector<store::Participant> removed;
};

struct MessageAdded {
  store::Message message;            // as committed (sequence set)
  store::Conversation conversation;  // snapshot after the append
  // `message.event_json` as the engine parsed it when it checked the publish: a listener reads
  // the event from here instead of parsing the text again. Never null in events the engine
  // emits; immutable, shared by every listener.
  std::shared_ptr<const boost::json::object> event;
};

// The `chatState` of a ChatStateEvent (typing and presence).
enum class ChatState { kComposing, kPause, kActive, kInactive, kGone, kBackground };
// "COMPOSING", "PAUSE", "ACTIVE", "INACTIVE", "GONE", "BACKGROUND"
const char* chatStateName(ChatState s);
// Invalid naming any other text (case-sensitive).
Result<ChatState> parseChatState(std::string_view s);

// A ChatStateEvent: delivered, not stored, no sequence.
struct ChatStateChanged {
  std::string originator_id;   // consumer id or "{acc}.{userId}"
  std::string originator_pid;  // consumer id or PId
  ParticipantRole originator_role = ParticipantRole::kConsumer;
  ChatState chat_state = ChatState::kActive;  // the event's chatState
  std::string event_json;
  std::string metadata_json = "[]";
  TimeMs server_ts = 0;
  store::Conversation conversation;
};

enum class RingEndReason {
  kAccepted,   // the rung agent accepted it
  kRejected,   // the rung agent rejected it
  kExpired,    // nobody answered before expires_at
  kCancelled,  // another agent accepted, the conversation closed or was transferred, or the
               // agent left ONLINE
};
const char* ringEndReasonName(RingEndReason r);

struct RingOffered {
  Ring ring;
};
struct RingEnded {
  Ring ring;  // ring.state is the final state
  RingEndReason reason = RingEndReason::kCancelled;
};

struct AgentStateChanged {
  store::AgentState state;
  // Cluster mode: the state another node announced for an agent no session of this node set a
  // state for (the agent's sessions here show it; this node's own share did not change, so
  // nothing is announced for it). False for a state a session of this node set.
  bool announced = false;
};

// A waiting conversation passed its TTR due time.
struct ConversationOverdue {
  AccountId account;
  ConversationId conversation;
  SkillId skill;
  TimeMs due_at = 0;
};

// Receives engine events. Callbacks run on engine threads and must not block (post the work to
// your own strand) and must not call Subscription::reset/destroy of their own subscription.
// Events of one conversation (changes, messages, chat states, rings, overdue) arrive in order,
// one at a time; events of different conversations may arrive concurrently. Agent state events
// of all agents are serialised. A listener sees all accounts; filter by account yourself.
// Cluster mode: this node took a conversation's lease and loaded it (`owned`: another node
// held it and died, or it was never leased), or lost it (another node took it) and stopped
// driving it. Emitted on the conversation's strand; never on a node alone.
struct OwnershipChanged {
  store::Conversation conversation;  // as loaded (taken), or as last held here (lost)
  bool owned = false;
};

class ConversationListener {
 public:
  virtual ~ConversationListener() = default;
  virtual void onConversationChanged(const ConversationChanged&) {}
  virtual void onMessageAdded(const MessageAdded&) {}
  // The same event as shared (and never changed): a listener that keeps it past the call, to
  // deliver it later, holds the pointer instead of copying the message and the conversation.
  // The engine calls this one; by default it calls onMessageAdded(*e).
  virtual void onMessageAddedShared(const std::shared_ptr<const MessageAdded>& e) {
    onMessageAdded(*e);
  }
  virtual void onChatState(const ChatStateChanged&) {}
  virtual void onRingOffered(const RingOffered&) {}
  virtual void onRingEnded(const RingEnded&) {}
  virtual void onAgentStateChanged(const AgentStateChanged&) {}
  virtual void onOverdue(const ConversationOverdue&) {}
  virtual void onOwnershipChanged(const OwnershipChanged&) {}
};

// RAII handle of a listener registration. Destroying (or reset()) unregisters and waits for
// callbacks in flight on that listener to return; afterwards no callback reaches it. Movable.
class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(std::function<void()> cancel) : cancel_(std::move(cancel)) {}
  Subscription(Subscription&& o) noexcept : cancel_(std::exchange(o.cancel_, nullptr)) {}
  Subscription& operator=(Subscription&& o) noexcept {
    if (this != &o) {
      reset();
      cancel_ = std::exchange(o.cancel_, nullptr);
    }
    return *this;
  }
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription() { reset(); }
  void reset() {
    if (cancel_) std::exchange(cancel_, nullptr)();
  }

 private:
  std::function<void()> cancel_;
};

// ---------------------------------------------------------------------------------------------
// The service

// The conversation engine. Owned by main (one per process); outlives the server and the
// connector that call it. All methods are thread-safe.
class ConversationService {
 public:
  virtual ~ConversationService() = default;

  // Rebuilds open conversations, queues (TTR due times), suggestions and agent assignments from
  // the store. Agent availability resets to OFFLINE (and is written so to the store): sessions
  // reconnect and set it again. Blocking; call once before serving.
  virtual Status recover() = 0;

  // Registers `listener`; it must outlive the returned Subscription.
  virtual Subscription subscribe(ConversationListener& listener) = 0;

  // Creates an open conversation for the consumer and queues it for routing.
  // Errors: Conflict "consumer already has an open conversation <id>"; NotFound (account);
  // Invalid (skill, TTR, context).
  virtual void requestConversation(ConversationRequest req, Callback<store::Conversation> done) = 0;

  // Publishes an event as `req.actor`. ContentEvent, RichContentEvent and AcceptStatusEvent get
  // the next sequence and are committed before `done` and before MessageAdded; ChatStateEvent is
  // only delivered (ChatStateChanged). The publisher must be a participant: the consumer of the
  // conversation, or an agent that is ACTIVE ASSIGNED_AGENT or MANAGER.
  // Errors: NotFound (conversation, or another account's); Forbidden (not a participant);
  // Conflict "conversation <id> is closed"; Invalid (event, metadata, audience, or the error of
  // the engine's content check).
  virtual void publish(PublishRequest req, Callback<Published> done) = 0;

  // Applies a batch of field changes atomically (see FieldChange). Permissions: consumers may
  // only CLOSE and set TTR on their own conversation; agents must be ACTIVE ASSIGNED_AGENT or
  // MANAGER, except for ADD MANAGER/READER and leaving their own MANAGER/READER entry, and must
  // hold the role the policy names for each change (docs/authorization.md: joining as
  // MANAGER/READER, adding or removing somebody else, close, TTR, transfers), read from the
  // store at the change; the system may do anything.
  // Returns the conversation after the change.
  virtual void updateConversation(Actor actor, ConversationId id, std::vector<FieldChange> changes,
                                  Callback<store::Conversation> done) = 0;

  // Stores `mark` as the conversation's turn mark (store::Conversation::turn_mark): a bot turn
  // that ended without a message to carry its mark is marked done with it. No event is emitted.
  // REQUIRES: `actor` is the conversation's ACTIVE ASSIGNED_AGENT. Errors: NotFound; Forbidden
  // (not the assigned agent); Conflict (closed).
  virtual void markTurn(Actor actor, ConversationId id, store::TurnMark mark,
                        Callback<void> done) = 0;

  // Sets an agent's (or bot's) availability, stores it, re-reads the user's skills and capacity
  // from the store, and routes. Leaving ONLINE cancels the agent's WAITING rings. Setting a
  // state also clears the agent's earlier rejections (see README).
  virtual void setAgentState(AccountId acc, UserId user, store::Availability availability,
                             Callback<store::AgentState> done) = 0;
  // Re-reads the user's skills, type and max_open_conversations (after a REST update) and
  // routes. NotFound if the user does not exist.
  virtual void refreshAgent(AccountId acc, UserId user, Callback<void> done) = 0;

  // Accepts a WAITING ring: the agent becomes ACTIVE ASSIGNED_AGENT (or its SUGGESTED entry
  // becomes ACTIVE). First accept wins; the others get Conflict. The winner accepting the same
  // ring again (a retry whose answer was lost) gets the conversation, unchanged, while it is
  // still its ACTIVE ASSIGNED_AGENT (else Conflict). Forbidden if the ring is another agent's.
  // Returns the conversation after assignment.
  virtual void acceptRing(Actor agent, std::string ring_id, Callback<store::Conversation> done) = 0;
  // Rejects a WAITING ring; the conversation is offered to the next agent.
  virtual void rejectRing(Actor agent, std::string ring_id, Callback<void> done) = 0;

  // Reads (from the store; account-isolated).
  virtual void getConversation(AccountId acc, ConversationId id,
                               Callback<store::Conversation> done) = 0;
  // Events with sequence >= from_seq, in order, at most `limit`.
  virtual void listMessages(AccountId acc, ConversationId id, std::int64_t from_seq, int limit,
                            Callback<std::vector<store::Message>> done) = 0;
  virtual void listConversations(AccountId acc, store::ConversationQuery q,
                                 Callback<std::vector<store::Conversation>> done) = 0;

  // In-memory routing reads: synchronous, non-blocking (a short lock), safe on io threads.
  // Queues of the account (one per skill that has waiting conversations); only `skill`'s when
  // given.
  virtual std::vector<QueueSnapshot> queues(const AccountId& acc,
                                            const std::optional<SkillId>& skill) const = 0;
  // WAITING rings of an agent offered to its sessions on this node (e.g. to replay them when
  // it subscribes to routing tasks); in cluster mode, not those offered to its sessions on
  // other nodes only.
  virtual std::vector<Ring> ringsForAgent(const AccountId& acc, const UserId& user) const = 0;
  // Agents that routing knows about (set a state since start, or hold assignments).
  virtual std::vector<AgentInfo> agents(const AccountId& acc) const = 0;

  // Runs due timers now (ring expiry, overdue, suggestion timeout) against the Clock. The
  // engine calls it every Options::tick_interval_ms; tests with a FakeClock call it directly.
  virtual void tick() = 0;
};

}  // namespace parley::conversation
