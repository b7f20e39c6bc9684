#pragma once

// Translation between LivePerson's messaging protocol (JSON envelopes over WebSocket, see
// reference/messaging-protocol.md) and the conversation engine's value types. Plain functions:
// no sockets, no threads, no store; unit-tested in codec_test.cpp.
//
// Identity rules (§1.9): an agent has a numeric UserId, the old-style id "{acc}.{userId}" and a
// PId. On the agent socket `participants{}`, dialog participantsDetails ids and originatorId of
// agent events use the old-style id; `participantsPId{}`, originatorPId and
// originatorMetadata.id use the PId. Consumers see PIds only. A consumer has one id everywhere.

#include <boost/json.hpp>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "conversation/conversation_service.h"
#include "store/store.h"

namespace parley::server::protocol {

namespace bj = boost::json;

// The request types we understand. Both the internal (`.ams.*`) and the public spellings map to
// the same value (see opOf).
enum class Op {
  kUnknown,
  kGetClock,
  kKeepAlive,
  kInitConnection,
  kSetAgentState,
  kSubscribeExConversations,
  kUnsubscribeExConversations,
  kSubscribeRoutingTasks,
  kUpdateRoutingTaskSubscription,
  kUpdateRingState,
  kSubscribeAgentsState,
  kUnsubscribeAgentsState,
  kGetUserProfile,
  kSetUserProfile,
  kQueryMessages,             // .ams.ms.QueryMessages (agent; response is the history array)
  kSubscribeMessagingEvents,  // ms.SubscribeMessagingEvents (consumer; history as notifications)
  kUnsubscribeMessagingEvents,
  kPublishEvent,
  kUpdateConversationField,
  kConsumerRequestConversation,
  kAgentRequestConversation,
  kGenerateUploadUrl,
  kGenerateDownloadUrl,
};

// Maps a request `type` (either spelling) to an Op; kUnknown for anything else.
Op opOf(std::string_view type);

// A parsed request envelope {kind:"req", id, type, body, metadata?, headers?}.
struct Envelope {
  bj::value id;  // echoed verbatim as reqId (string or number); null when absent
  std::string type;
  bj::value body;      // object, string (GetUserProfile), array or null
  bj::value metadata;  // array, a bare element, or null
  bj::value headers;   // array or null
};

// Parses one text frame. Invalid with a readable reason for non-JSON, non-objects, a `kind` other
// than "req", or a missing/non-string `type`. `id` is returned in the error path too when present
// (see ParseFailure) so the error response can be correlated.
struct ParseFailure {
  Error error;
  bj::value id;
};
std::expected<Envelope, ParseFailure> parseEnvelope(std::string_view text);

// {"kind":"resp","reqId":<id>,"code":<code>,"type":<type>,"body":<body>}
std::string makeResponse(const bj::value& req_id, int code, std::string_view type,
                         const bj::value& body);
// An error response: code from the Error (400, 401, 403, 404, 409, ...) and a string body that
// says what was wrong; type ".ReqBody$StringResp" (never "error").
std::string makeErrorResponse(const bj::value& req_id, const Error& error);
// The protocol code of an Error (its HTTP status).
int protocolCode(const Error& error);
// {"kind":"notification","type":<type>,"body":<body>}
std::string makeNotification(std::string_view type, const bj::value& body);

// Which socket a record is rendered for.
enum class View { kAgent, kConsumer };

// The PId of an agent (numeric UserId) of the conversation's account; nullopt when unknown.
using PidLookup = std::function<std::optional<std::string>(const std::string& user_id)>;

// The `result` of an ExConversationChangeNotification change (§1.8 A, §2.4): convId,
// conversationDetails with participants (agent view: map role → old-style ids; consumer view:
// also a map, ids = PIds), participantsPId (map role → PIds), dialogs[].participantsDetails
// (ACTIVE participants in the same per-role order as participantsPId, then SUGGESTED ones),
// ttr, state, stage, skillId, startTs, endTs, closeReason, brandId, context.
bj::object conversationResult(const store::Conversation& c, const PidLookup& pid, View view);

// One event record (§1.8 B / §2.4) for a persisted message.
bj::object messageRecord(const store::Message& m, View view);
// The same record appended to `out` as JSON text, built directly: the stored event and metadata
// (valid JSON objects/arrays: the engine parses them before it stores them) are copied in as
// they are instead of being parsed and serialised again. Equal, as JSON, to
// bj::serialize(messageRecord(m, view)).
void appendMessageRecord(std::string& out, const store::Message& m, View view);
// The consumer socket's notification for `msgs` (those with audience ALL), as
// makeNotification("ms.MessagingEventNotification", {subscriptionId, changes, dialogId}) would
// render it; "" when none of them is for consumers.
std::string messagingEventNotification(std::string_view subscription_id,
                                       std::span<const store::Message> msgs);
// The same for one message `m` (audience ALL) whose consumer record (appendMessageRecord,
// View::kConsumer) is `record`, built once for every session it goes to.
std::string messagingEventNotification(std::string_view subscription_id, const store::Message& m,
                                       std::string_view record);
// The agent socket's notification for one message:
// makeNotification(".ams.ms.OnlineEventDistribution", messageRecord(m, View::kAgent)).
std::string onlineEventDistribution(const store::Message& m);
// Appends `s` as a JSON string literal (quotes and escapes).
void appendJsonString(std::string& out, std::string_view s);
// One record for a chat state (no sequence).
bj::object chatStateRecord(const conversation::ChatStateChanged& c, View view);

// The `result` of a RoutingTaskNotification change (§1.8 D) for a ring offered to an agent.
bj::object ringResult(const conversation::Ring& r, std::string_view ring_state,
                      std::int64_t ring_expiration_s);

// The `result` of an AgentStateNotification change (§1.8 E).
bj::object agentStateResult(const store::AgentState& s);

// The body of `.ams.userprofile.GetUserProfile$Response` (an object, never null).
bj::object userProfileBody(const std::string& consumer_id);

// Resolves a user reference from a request ("{acc}.{uid}", a numeric uid or a PId) to a UserId
// of account `acc`; nullopt when it cannot be resolved. `pid_to_uid` resolves PIds.
using UidFromPid = std::function<std::optional<std::string>(const std::string& pid)>;
std::optional<UserId> resolveUserRef(const AccountId& acc, std::string_view ref,
                                     const UidFromPid& pid_to_uid);

// Parses `conversationField` (an array, or a bare element) into engine field changes.
// ParticipantsChange userIds are resolved with `pid_to_uid`. Unsupported fields (DialogChange,
// unknown names) are Invalid with a message naming them. CSATRate entries are accepted and
// returned in `csat` (the engine does not store them).
struct ParsedFields {
  std::vector<conversation::FieldChange> changes;
  int csat_entries = 0;
};
Result<ParsedFields> parseConversationFields(const AccountId& acc, const bj::value& fields,
                                             const UidFromPid& pid_to_uid);

// Validates and normalises a published event: an object with a string `type`; a
// RichContentEvent that carries `message` instead of `content` is rewritten to `content`
// (emitted as `content`). Returns the event as a value to publish
// (conversation::PublishRequest::event), in a memory block of its own.
Result<std::shared_ptr<const bj::object>> normalizedEvent(const bj::value& event);
// The same as JSON text.
Result<std::string> normalizeEvent(const bj::value& event);

// The envelope metadata as a JSON array text ("[]" for null; a bare object becomes [obj]).
Result<std::string> normalizeMetadata(const bj::value& metadata);
// Takes the publisher's idempotency key out of an envelope `metadata` (an array, or one object):
// the entry {"type":"IdempotencyKey","key":"<key>"}, which is removed (it is not stored with the
// message's metadata). "" when there is none. Invalid when there are several such entries, or
// the key is not a string or not a valid key (conversation::checkIdempotencyKey).
Result<std::string> takeIdempotencyKey(bj::value& metadata);

// Reads `.ams.headers.ConsumerAuthentication` jwt from InitConnection headers; "" when absent.
std::string initConnectionJwt(const bj::value& headers);

// The `convState` filter of a SubscribeExConversations body (default: OPEN only).
std::vector<store::ConversationState> convStates(const bj::object& body);

}  // namespace parley::server::protocol
