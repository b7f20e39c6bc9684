#include "conversation/conversation_service.h"

#include <iterator>
#include <string>

namespace parley::conversation {

namespace {
// Indexed by ChatState; keep in declaration order.
constexpr const char* kChatStateNames[] = {"COMPOSING", "PAUSE", "ACTIVE",
                                           "INACTIVE",  "GONE",  "BACKGROUND"};
}  // namespace

const char* chatStateName(ChatState s) {
  auto i = static_cast<std::size_t>(s);
  return i < std::size(kChatStateNames) ? kChatStateNames[i] : "UNKNOWN";
}

Result<ChatState> parseChatState(std::string_view s) {
  for (std::size_t i = 0; i < std::size(kChatStateNames); ++i)
    if (s == kChatStateNames[i]) return static_cast<ChatState>(i);
  return invalid("chat state '" + std::string(s) +
                 "' is not one of COMPOSING, PAUSE, ACTIVE, INACTIVE, GONE, BACKGROUND");
}

const char* ringStateName(RingState s) {
  switch (s) {
    case RingState::kWaiting:
      return "WAITING";
    case RingState::kAccepted:
      return "ACCEPTED";
    case RingState::kRejected:
      return "REJECTED";
    case RingState::kExpired:
      return "EXPIRED";
    case RingState::kCancelled:
      return "CANCELLED";
  }
  return "CANCELLED";
}

const char* ringEndReasonName(RingEndReason r) {
  switch (r) {
    case RingEndReason::kAccepted:
      return "ACCEPTED";
    case RingEndReason::kRejected:
      return "REJECTED";
    case RingEndReason::kExpired:
      return "EXPIRED";
    case RingEndReason::kCancelled:
      return "CANCELLED";
  }
  return "CANCELLED";
}

const char* changeKindName(ChangeKind k) {
  switch (k) {
    case ChangeKind::kCreated:
      return "CREATED";
    case ChangeKind::kUpdated:
      return "UPDATED";
    case ChangeKind::kParticipants:
      return "PARTICIPANTS";
    case ChangeKind::kTtr:
      return "TTR";
    case ChangeKind::kSkill:
      return "SKILL";
    case ChangeKind::kClosed:
      return "CLOSED";
  }
  return "UPDATED";
}

Status checkIdempotencyKey(std::string_view key) {
  if (key.empty()) return invalid("idempotency key is empty; send 1 to 64 characters, or no key");
  if (key.size() > kMaxIdempotencyKeyBytes)
    return invalid("idempotency key is " + std::to_string(key.size()) +
                   " characters long; at most " + std::to_string(kMaxIdempotencyKeyBytes) +
                   " are allowed");
  for (char ch : key) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' || ch == ':';
    if (!ok)
      return invalid(
          "idempotency key has a character that is not allowed; use ASCII letters, digits, "
          "'-', '_', '.' and ':' only");
  }
  return {};
}

}  // namespace parley::conversation
