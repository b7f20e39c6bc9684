#include "store/sqlite/rows.h"

#include <utility>

#include "common/json.h"
#include "common/log.h"

namespace parley::store::sqlite {
namespace {

template <class E>
E parsedOr(Result<E> r, E def) {
  return r ? *r : def;
}

}  // namespace

std::string rolesJson(const std::vector<Role>& roles) {
  boost::json::array a;
  for (Role r : roles) a.emplace_back(roleName(r));
  return json::dump(a);
}
std::vector<Role> parseRolesJson(const std::string& text) {
  std::vector<Role> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array())
    if (e.is_string())
      if (auto r = parseRole(std::string_view(e.as_string()))) out.push_back(*r);
  return out;
}
std::string stringsJson(const std::vector<std::string>& values) {
  boost::json::array a;
  for (const auto& v : values) a.emplace_back(v);
  return json::dump(a);
}
std::vector<std::string> parseStringsJson(const std::string& text) {
  std::vector<std::string> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array())
    if (e.is_string()) out.emplace_back(e.as_string());
  return out;
}
std::string skillsJson(const std::vector<SkillId>& skills) {
  boost::json::array a;
  for (const auto& s : skills) a.emplace_back(s.str());
  return json::dump(a);
}
std::vector<SkillId> parseSkillsJson(const std::string& text) {
  std::vector<SkillId> out;
  for (auto& s : parseStringsJson(text)) out.emplace_back(std::move(s));
  return out;
}
std::string envJson(const std::vector<EnvVar>& env) {
  boost::json::array a;
  for (const auto& e : env) a.push_back(boost::json::object{{"key", e.key}, {"value", e.value}});
  return json::dump(a);
}
std::vector<EnvVar> parseEnvJson(const std::string& text) {
  std::vector<EnvVar> out;
  auto v = json::parse(text);
  if (!v || !v->is_array()) return out;
  for (const auto& e : v->as_array())
    if (e.is_object())
      out.push_back(
          {json::getString(e.as_object(), "key"), json::getString(e.as_object(), "value")});
  return out;
}

// ---- Row readers ------------------------------------------------------------------------------

std::string textColumn(Query& q) { return q.text(0); }

Account accountRow(Query& q) {
  Account a;
  a.id = AccountId(q.text(0));
  a.name = q.text(1);
  a.ttr_urgent_s = q.i64(2);
  a.ttr_prioritized_s = q.i64(3);
  a.ttr_normal_s = q.i64(4);
  a.created_at = q.i64(5);
  // An unknown status is read as disabled: refusing is the safe reading.
  a.status = parsedOr(parseAccountStatus(q.text(6)), AccountStatus::kDisabled);
  return a;
}

User userRow(Query& q) {
  User u;
  u.account = AccountId(q.text(0));
  u.id = UserId(q.text(1));
  u.pid = q.text(2);
  u.login_name = q.text(3);
  u.password_hash = q.text(4);
  u.roles = parseRolesJson(q.text(5));
  u.type = parsedOr(parseUserType(q.text(6)), UserType::kHuman);
  u.skills = parseSkillsJson(q.text(7));
  u.max_open_conversations = static_cast<int>(q.i64(8));
  u.created_at = q.i64(9);
  u.status = parsedOr(parseUserStatus(q.text(10)), UserStatus::kDisabled);
  return u;
}

Session sessionRow(Query& q) {
  Session s;
  s.bearer_hash = q.text(0);
  s.csrf = q.text(1);
  s.account = AccountId(q.text(2));
  s.user = UserId(q.text(3));
  s.created_at = q.i64(4);
  s.expires_at = q.i64(5);
  return s;
}

ApiKey apiKeyRow(Query& q) {
  ApiKey k;
  k.key_hash = q.text(0);
  k.account = AccountId(q.text(1));
  k.user = UserId(q.text(2));
  k.name = q.text(3);
  k.created_at = q.i64(4);
  k.id = q.text(5);
  k.scopes = parseRolesJson(q.text(6));
  k.expires_at = q.i64(7);
  k.created_by = UserId(q.text(8));
  return k;
}

OAuthApp oauthAppRow(Query& q) {
  OAuthApp a;
  a.account = AccountId(q.text(0));
  a.client_id = q.text(1);
  a.name = q.text(2);
  a.secret_hash = q.text(3);
  a.scopes = parseStringsJson(q.text(4));
  a.created_at = q.i64(5);
  a.created_by = UserId(q.text(6));
  return a;
}

AccessToken accessTokenRow(Query& q) {
  AccessToken t;
  t.token_hash = q.text(0);
  t.account = AccountId(q.text(1));
  t.client_id = q.text(2);
  t.scopes = parseStringsJson(q.text(3));
  t.created_at = q.i64(4);
  t.expires_at = q.i64(5);
  return t;
}

Skill skillRow(Query& q) {
  Skill s;
  s.account = AccountId(q.text(0));
  s.id = SkillId(q.text(1));
  s.name = q.text(2);
  s.created_at = q.i64(3);
  return s;
}

AgentState agentStateRow(Query& q) {
  AgentState s;
  s.account = AccountId(q.text(0));
  s.user = UserId(q.text(1));
  s.availability = parsedOr(parseAvailability(q.text(2)), Availability::kOffline);
  s.updated_at = q.i64(3);
  return s;
}

Conversation conversationRow(Query& q) {
  Conversation c;
  c.id = ConversationId(q.text(0));
  c.account = AccountId(q.text(1));
  c.consumer = ConsumerId(q.text(2));
  c.channel = parsedOr(parseChannel(q.text(3)), Channel::kMessaging);
  c.state = parsedOr(parseConversationState(q.text(4)), ConversationState::kOpen);
  c.skill = SkillId(q.text(5));
  c.ttr_type = parsedOr(parseTtrType(q.text(6)), TtrType::kNormal);
  c.ttr_value_s = q.i64(7);
  c.ttr_due_at = q.i64(8);
  c.start_ts = q.i64(9);
  c.end_ts = q.i64(10);
  c.updated_at = q.i64(11);
  c.close_reason =
      parsedOr(parseCloseReasonText(q.text(12)), std::optional<CloseReason>(CloseReason::kSystem));
  c.next_sequence = q.i64(13);
  c.context_json = q.text(14);
  c.turn_mark = decodeTurnMark(q.text(15));
  return c;
}

Participant participantRow(Query& q) {
  Participant p;
  p.id = q.text(0);
  p.role = parsedOr(parseParticipantRole(q.text(1)), ParticipantRole::kReader);
  p.state = parsedOr(parseParticipantState(q.text(2)), ParticipantState::kSuggested);
  p.joined_at = q.i64(3);
  return p;
}

Message messageRow(Query& q) {
  Message m;
  m.conversation = ConversationId(q.text(0));
  m.sequence = q.i64(1);
  m.server_ts = q.i64(2);
  m.originator_id = q.text(3);
  m.originator_pid = q.text(4);
  m.originator_role = parsedOr(parseParticipantRole(q.text(5)), ParticipantRole::kController);
  m.audience = parsedOr(parseAudience(q.text(6)), Audience::kAgentsAndManagers);
  m.event_json = q.text(7);
  m.metadata_json = q.text(8);
  m.turn = decodeTurnMark(q.text(9));
  return m;
}

FunctionRecord functionRow(Query& q) {
  FunctionRecord f;
  f.uuid = FunctionId(q.text(0));
  f.account = AccountId(q.text(1));
  f.name = q.text(2);
  f.description = q.text(3);
  f.event_id = q.text(4);
  f.code = q.text(5);
  f.env = parseEnvJson(q.text(6));
  f.state = parseFunctionState(q.text(7)).value_or(FunctionState::kDraft);
  f.version = q.i64(8);
  f.created_by = q.text(9);
  f.updated_by = q.text(10);
  f.created_at = q.i64(11);
  f.updated_at = q.i64(12);
  return f;
}

Deployment deploymentRow(Query& q) {
  Deployment d;
  d.uuid = q.text(0);
  d.function = FunctionId(q.text(1));
  d.account = AccountId(q.text(2));
  d.function_version = q.i64(3);
  d.code = q.text(4);
  d.env = parseEnvJson(q.text(5));
  d.state = parseDeploymentState(q.text(6)).value_or(DeploymentState::kDeployError);
  d.error_json = q.text(7);
  d.created_by = q.text(8);
  d.created_at = q.i64(9);
  d.deployed_at = q.i64(10);
  return d;
}

InvocationLog logRow(Query& q) {
  InvocationLog l;
  l.function = FunctionId(q.text(0));
  l.account = AccountId(q.text(1));
  l.request_id = q.text(2);
  l.ts = q.i64(3);
  l.level = q.text(4);
  l.message = q.text(5);
  l.extras_json = q.text(6);
  return l;
}

Secret secretRow(Query& q) {
  Secret s;
  s.account = AccountId(q.text(0));
  s.key = q.text(1);
  s.ciphertext = q.text(2);
  s.updated_at = q.i64(3);
  return s;
}

SecretAuditEntry secretAuditRow(Query& q) {
  SecretAuditEntry e;
  e.account = AccountId(q.text(0));
  e.ts = q.i64(1);
  e.function = FunctionId(q.text(2));
  e.request_id = q.text(3);
  e.invoker = parseAuditInvoker(q.text(4)).value_or(AuditInvoker::kPlatform);
  e.user = UserId(q.text(5));
  e.login_name = q.text(6);
  e.key = q.text(7);
  e.op = parseAuditOp(q.text(8)).value_or(AuditOp::kRead);
  e.outcome = parseAuditOutcome(q.text(9)).value_or(AuditOutcome::kRefused);
  e.detail = q.text(10);
  return e;
}

ContextProperty contextRow(Query& q) {
  ContextProperty p;
  p.account = AccountId(q.text(0));
  p.ns = q.text(1);
  p.session_id = q.text(2);
  p.name = q.text(3);
  p.value_json = q.text(4);
  p.expires_at = q.i64(5);
  return p;
}

BotRecord botRow(Query& q) {
  BotRecord b;
  b.account = AccountId(q.text(0));
  b.id = BotId(q.text(1));
  b.name = q.text(2);
  b.user = UserId(q.text(3));
  b.config_json = q.text(4);
  // An unknown status is refused (logged) and read as OFFLINE: the bot does not run.
  auto status = parseBotStatus(q.text(5));
  if (!status)
    spdlog::error("store: bot {}: {}; it is read as OFFLINE", b.id.str(), status.error().message);
  b.status = status.value_or(BotStatus::kOffline);
  b.created_at = q.i64(6);
  b.updated_at = q.i64(7);
  return b;
}

TurnRecord turnRow(Query& q) {
  TurnRecord t;
  t.account = AccountId(q.text(0));
  t.bot = BotId(q.text(1));
  t.conversation = ConversationId(q.text(2));
  t.turn_id = q.text(3);
  t.ts = q.i64(4);
  t.outcome = q.text(5);
  t.input_json = q.text(6);
  t.response_json = q.text(7);
  t.actions_json = q.text(8);
  t.timings_json = q.text(9);
  t.error = q.text(10);
  return t;
}

PendingTurn pendingRow(Query& q) {
  PendingTurn p;
  p.account = AccountId(q.text(0));
  p.bot = BotId(q.text(1));
  p.conversation = ConversationId(q.text(2));
  p.turn_id = q.text(3);
  p.state_json = q.text(4);
  p.created_at = q.i64(5);
  return p;
}

}  // namespace parley::store::sqlite
