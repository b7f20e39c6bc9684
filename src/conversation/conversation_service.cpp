#include "conversation/conversation_service.h"

namespace parley::conversation {

const char* audienceName(Audience a) {
  return a == Audience::kAgentsAndManagers ? "AGENTS_AND_MANAGERS" : "ALL";
}

Result<Audience> parseAudience(std::string_view s) {
  if (s.empty() || s == "ALL") return Audience::kAll;
  if (s == "AGENTS_AND_MANAGERS") return Audience::kAgentsAndManagers;
  return invalid("audience '" + std::string(s) + "' is not ALL or AGENTS_AND_MANAGERS");
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
