#include "store/store.h"

#include <boost/json.hpp>
#include <charconv>
#include <string>

namespace parley::store {
namespace {

template <class E, std::size_t N>
Result<E> parseName(std::string_view s, const char* const (&names)[N], const char* what) {
  for (std::size_t i = 0; i < N; ++i) {
    if (s == names[i]) return static_cast<E>(i);
  }
  std::string allowed;
  for (std::size_t i = 0; i < N; ++i) {
    if (i) allowed += ", ";
    allowed += names[i];
  }
  return invalid(std::string(what) + " '" + std::string(s) + "' is not one of " + allowed);
}

// Indexed by the enumerator's value; keep in declaration order.
constexpr const char* kAvailabilityNames[] = {"ONLINE", "OCCUPIED", "AWAY", "BACK_SOON", "OFFLINE"};
constexpr const char* kChannelNames[] = {"MESSAGING", "CHAT"};
constexpr const char* kTtrTypeNames[] = {"URGENT", "NORMAL", "PRIORITIZED", "CUSTOM"};
constexpr const char* kStateNames[] = {"OPEN", "CLOSE"};
constexpr const char* kUserTypeNames[] = {"HUMAN", "BOT"};
constexpr const char* kUserStatusNames[] = {"ENABLED", "DISABLED"};
constexpr const char* kAccountStatusNames[] = {"ACTIVE", "DISABLED"};
constexpr const char* kBotStatusNames[] = {"ONLINE", "OFFLINE", "VENDOR_INTERRUPTION",
                                           "SERVICE_INTERRUPTION"};
constexpr const char* kScheduleStateNames[] = {"ACTIVE", "PAUSED"};
constexpr const char* kAuditInvokerNames[] = {"platform", "user"};
constexpr const char* kAuditOpNames[] = {"read", "write"};
constexpr const char* kAuditOutcomeNames[] = {"allowed", "refused"};
constexpr const char* kFunctionStateNames[] = {"Draft", "Productive", "Modified", "Build Error",
                                               "Deploy Error"};
constexpr const char* kDeploymentStateNames[] = {"Productive", "Build Error", "Deploy Error",
                                                 "Undeployed"};
constexpr const char* kParticipantRoleNames[] = {"CONSUMER", "ASSIGNED_AGENT", "MANAGER", "READER",
                                                 "CONTROLLER"};
constexpr const char* kParticipantStateNames[] = {"ACTIVE", "SUGGESTED"};
constexpr const char* kAudienceNames[] = {"ALL", "AGENTS_AND_MANAGERS"};
constexpr const char* kCloseReasonNames[] = {"CONSUMER", "AGENT", "BOT", "SYSTEM"};

template <std::size_t N, class E>
const char* nameOf(const char* const (&names)[N], E e) {
  auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : "UNKNOWN";
}

}  // namespace

const char* availabilityName(Availability a) { return nameOf(kAvailabilityNames, a); }
Result<Availability> parseAvailability(std::string_view s) {
  return parseName<Availability>(s, kAvailabilityNames, "availability");
}

const char* channelName(Channel c) { return nameOf(kChannelNames, c); }
Result<Channel> parseChannel(std::string_view s) {
  return parseName<Channel>(s, kChannelNames, "channel");
}

const char* ttrTypeName(TtrType t) { return nameOf(kTtrTypeNames, t); }
Result<TtrType> parseTtrType(std::string_view s) {
  return parseName<TtrType>(s, kTtrTypeNames, "TTR type");
}

const char* stateName(ConversationState s) { return nameOf(kStateNames, s); }
Result<ConversationState> parseConversationState(std::string_view s) {
  return parseName<ConversationState>(s, kStateNames, "conversation state");
}

const char* userTypeName(UserType t) { return nameOf(kUserTypeNames, t); }
Result<UserType> parseUserType(std::string_view s) {
  return parseName<UserType>(s, kUserTypeNames, "user type");
}

const char* userStatusName(UserStatus s) { return nameOf(kUserStatusNames, s); }
Result<UserStatus> parseUserStatus(std::string_view s) {
  return parseName<UserStatus>(s, kUserStatusNames, "user status");
}

const char* accountStatusName(AccountStatus s) { return nameOf(kAccountStatusNames, s); }
Result<AccountStatus> parseAccountStatus(std::string_view s) {
  return parseName<AccountStatus>(s, kAccountStatusNames, "account status");
}

const char* botStatusName(BotStatus s) { return nameOf(kBotStatusNames, s); }
Result<BotStatus> parseBotStatus(std::string_view s) {
  return parseName<BotStatus>(s, kBotStatusNames, "bot status");
}

const char* auditInvokerName(AuditInvoker i) { return nameOf(kAuditInvokerNames, i); }
Result<AuditInvoker> parseAuditInvoker(std::string_view s) {
  return parseName<AuditInvoker>(s, kAuditInvokerNames, "secret audit invoker");
}

const char* auditOpName(AuditOp o) { return nameOf(kAuditOpNames, o); }
Result<AuditOp> parseAuditOp(std::string_view s) {
  return parseName<AuditOp>(s, kAuditOpNames, "secret audit operation");
}

const char* auditOutcomeName(AuditOutcome o) { return nameOf(kAuditOutcomeNames, o); }
Result<AuditOutcome> parseAuditOutcome(std::string_view s) {
  return parseName<AuditOutcome>(s, kAuditOutcomeNames, "secret audit outcome");
}

const char* functionStateName(FunctionState s) { return nameOf(kFunctionStateNames, s); }
Result<FunctionState> parseFunctionState(std::string_view s) {
  return parseName<FunctionState>(s, kFunctionStateNames, "function state");
}

const char* deploymentStateName(DeploymentState s) { return nameOf(kDeploymentStateNames, s); }
Result<DeploymentState> parseDeploymentState(std::string_view s) {
  return parseName<DeploymentState>(s, kDeploymentStateNames, "deployment state");
}

const char* scheduleStateName(ScheduleState s) { return nameOf(kScheduleStateNames, s); }
Result<ScheduleState> parseScheduleState(std::string_view s) {
  return parseName<ScheduleState>(s, kScheduleStateNames, "schedule state");
}

const char* participantRoleName(ParticipantRole r) { return nameOf(kParticipantRoleNames, r); }
Result<ParticipantRole> parseParticipantRole(std::string_view s) {
  return parseName<ParticipantRole>(s, kParticipantRoleNames, "participant role");
}

const char* participantStateName(ParticipantState s) { return nameOf(kParticipantStateNames, s); }
Result<ParticipantState> parseParticipantState(std::string_view s) {
  return parseName<ParticipantState>(s, kParticipantStateNames, "participant state");
}

const char* audienceName(Audience a) { return nameOf(kAudienceNames, a); }
Result<Audience> parseAudience(std::string_view s) {
  return parseName<Audience>(s, kAudienceNames, "audience");
}

const char* closeReasonName(CloseReason r) { return nameOf(kCloseReasonNames, r); }
Result<CloseReason> parseCloseReason(std::string_view s) {
  return parseName<CloseReason>(s, kCloseReasonNames, "close reason");
}

const char* closeReasonText(const std::optional<CloseReason>& r) {
  return r ? closeReasonName(*r) : "";
}
Result<std::optional<CloseReason>> parseCloseReasonText(std::string_view s) {
  if (s.empty()) return std::optional<CloseReason>();
  auto r = parseCloseReason(s);
  if (!r) return std::unexpected(r.error());
  return std::optional<CloseReason>(*r);
}

std::string encodeTurnMark(const TurnMark& m) {
  if (m.empty()) return {};
  return std::to_string(m.assigned_at) + ' ' + std::to_string(m.through) + ' ' +
         std::to_string(m.effect) + ' ' + (m.done ? '1' : '0') + ' ' + m.turn_id;
}

TurnMark decodeTurnMark(std::string_view text) {
  TurnMark m;
  if (text.empty()) return m;
  std::int64_t fields[4] = {0, 0, 0, 0};
  std::size_t pos = 0;
  for (auto& f : fields) {
    auto space = text.find(' ', pos);
    if (space == std::string_view::npos) return TurnMark{};
    auto [p, ec] = std::from_chars(text.data() + pos, text.data() + space, f);
    if (ec != std::errc() || p != text.data() + space) return TurnMark{};
    pos = space + 1;
  }
  m.assigned_at = fields[0];
  m.through = fields[1];
  m.effect = static_cast<int>(fields[2]);
  m.done = fields[3] != 0;
  m.turn_id = std::string(text.substr(pos));
  return m;
}

Result<std::vector<Lease>> ClusterStore::renewLeases(const std::string& node,
                                                     const std::vector<Lease>& held,
                                                     TimeMs ttl_ms) {
  if (node.empty()) return invalid("a lease needs a node name");
  if (ttl_ms <= 0) return invalid("a lease needs a positive duration");
  std::vector<Lease> renewed;
  renewed.reserve(held.size());
  for (const auto& l : held) {
    auto r = renewLease(l.conversation, node, l.epoch, ttl_ms);
    if (r) {
      renewed.push_back(std::move(*r));
    } else if (r.error().code != ErrorCode::kConflict && r.error().code != ErrorCode::kInvalid) {
      return std::unexpected(r.error());
    }
  }
  return renewed;
}

Status ClusterStore::releaseLeases(const std::string& node, const std::vector<Lease>& held) {
  if (node.empty()) return invalid("a lease needs a node name");
  for (const auto& l : held)
    if (auto st = releaseLease(l.conversation, node, l.epoch); !st) return st;
  return {};
}

std::string erasedEventJson(std::string_view event_json) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(event_json, ec);
  if (!ec && v.is_object())
    if (auto* t = v.as_object().if_contains("type");
        t && t->is_string() && t->as_string() == "AcceptStatusEvent")
      return std::string(event_json);
  return kErasedEventJson;
}

Result<ErasureResult> Store::eraseConversationContent(const AccountId& acc,
                                                      const ConversationId& id) {
  return makeError(ErrorCode::kUnavailable,
                   "this store cannot erase conversation " + id.str() + " of account " + acc.str());
}

}  // namespace parley::store
