#pragma once

// Turns a function's response (spec §2) into a plan: the outbound items in order, the single
// action, what was refused and why, or the fatal error that fails the turn. Pure: no I/O, no
// engine; the turn pipeline (bot_service.cpp) applies the plan.

#include <boost/json.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "connector/richcontent/validator.h"
#include "store/store.h"

namespace parley::connector {

// Connector error codes (prefix com.liveperson.bot-connectors-worker.error.), spec §3.4.
namespace codes {
inline constexpr const char* kInvokeLambda = "aivendor.faas.invoke-lambda";
inline constexpr const char* kFailedFaasRequest = "aivendor.faas.failed-faas-request";
inline constexpr const char* kFailedHook = "aivendor.faas.failed-hook";
inline constexpr const char* kMissingResponseBody = "aivendor.faas.missing-response-body";
inline constexpr const char* kFailedBotAction = "aivendor.faas.failed-bot-action";
inline constexpr const char* kMalformedAlternativeIntents =
    "aivendor.faas.parse-message.malformed-alternative-intents";
inline constexpr const char* kInvalidBody = "liveperson-functions-invalid-body";
inline constexpr const char* kInvalidActionBody = "liveperson-functions-invalid-action-body";
inline constexpr const char* kMissingActionAndMessages =
    "pipes.verify-ai-response.missing-action-and-messages";
inline constexpr const char* kNotSupportedAction =
    "pipes.verify-ai-response.no-messages-and-not-supported-action";
inline constexpr const char* kQuickRepliesNotSupported =
    "pipes.verify-ai-response.quick-replies-not-supported";
inline constexpr const char* kInvalidStructuredContent = "common-invalid-structured-content-body";
inline constexpr const char* kInvalidParsedResponse = "common-invalid-parsed-response";
inline constexpr const char* kMessagingSendMessage = "connector.messaging.send-message";
inline constexpr const char* kChatSendMessage = "connector.chat.send-message";
inline constexpr const char* kChangeTtr = "connector.messaging.change-ttr";
inline constexpr const char* kTransferToSkill = "connector.messaging.transfer-to-skill";
inline constexpr const char* kEndConversation = "connector.messaging.end-conversation";
inline constexpr const char* kConversationClosed = "connector.messaging.conversation-closed";
inline constexpr const char* kAgentNotAuthorized = "connector.messaging.agent-not-authorized";
inline constexpr const char* kTransferSkillNotExisting =
    "pipes.messaging-handle-bot-action.transfer-skill-not-existing";
inline constexpr const char* kMaxConvLimitReached =
    "pipes.conversation-limit-checker.max-conv-limit-reached";
inline constexpr const char* kInternal = "events-queue.not-catched-pipeline-error";
}  // namespace codes

enum class StepKind { kText, kRichContent, kPrivateText, kDelay };
const char* stepKindName(StepKind k);  // "TEXT", "RICH_CONTENT", "PRIVATE_TEXT", "DELAY"

// One outbound item, in order.
struct Step {
  StepKind kind = StepKind::kText;
  // The event to publish (ContentEvent / RichContentEvent), handed to the engine as it is (see
  // conversation::PublishRequest::event); null for delays.
  std::shared_ptr<const boost::json::object> event;
  // Envelope metadata (BotResponse intents, ExternalId, social metadata, ...).
  boost::json::array metadata;
  int delay_s = 0;
  bool typing = true;
  // Where it came from: "/messages/2" or "/context/structuredContent".
  std::string source;
};

enum class ActionKind { kTransfer, kClose, kChangeTtr, kInvocation };
const char* actionKindName(ActionKind k);  // TRANSFER, CLOSE_CONVERSATION, CHANGE_TTR, INVOCATION

struct Action {
  ActionKind kind = ActionKind::kTransfer;
  // TRANSFER
  std::string skill;                    // skill name (case-sensitive)
  std::optional<std::string> agent_id;  // "123" or "{acc}.123"
  // CLOSE_CONVERSATION
  bool without_pcs = false;
  // CHANGE_TTR
  store::TtrType ttr_type = store::TtrType::kNormal;
  std::optional<std::int64_t> ttr_value_s;
  // INVOCATION
  std::string lambda_uuid;
  boost::json::value payload;
  bool fail_on_error = false;

  boost::json::object toJson() const;
};

// A refused part of the response, or the fatal error of the turn.
struct Problem {
  std::string code;  // without the com.liveperson.bot-connectors-worker.error. prefix
  std::string path;  // JSON pointer into the response ("" = the whole response)
  std::string message;

  boost::json::object toJson() const;
};

struct ResponsePlan {
  // Set when the response as a whole is unusable: nothing is sent, the turn fails (retry, then
  // escalate).
  std::optional<Problem> fatal;
  std::vector<Step> steps;
  std::optional<Action> action;
  // Messages dropped or an action ignored; the rest is applied.
  std::vector<Problem> refused;
  // BotResponse metadata built from intentId/intentName/confidenceScore/alternativeIntents;
  // already attached to every step's metadata.
  std::optional<boost::json::object> bot_response;
};

struct PlanOptions {
  store::Channel channel = store::Channel::kMessaging;
  // The account's image allowlist (see ValidateOptions). Default: none.
  std::optional<std::vector<std::string>> image_allowlist;
  // Longest delay entry honoured; longer ones are capped. Default: 60 s.
  int max_delay_s = 60;
  // Used as BotResponse.externalConversationId when intents are present.
  std::string conversation_id;
};

// Plans the response given to callback(null, result), serialised as JSON ("" or "null" or
// "undefined" when the callback had no body).
ResponsePlan planResponse(std::string_view result_json, const richcontent::Validator& validator,
                          const PlanOptions& opts);

// {"type":"ContentEvent","contentType":"text/plain","message":text}, as a value to publish.
std::shared_ptr<const boost::json::object> textEvent(std::string_view text);

}  // namespace parley::connector
