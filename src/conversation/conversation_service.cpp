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

}  // namespace parley::conversation
