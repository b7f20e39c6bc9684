#include "common/policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

namespace parley::policy {
namespace {

constexpr const char* kRoleNames[] = {"ADMIN",      "AGENT_MANAGER",  "AGENT",
                                      "FAAS_ADMIN", "FAAS_DEVELOPER", "FAAS_INVOCATION"};
constexpr const char* kRoleTitles[] = {"Admin",      "Agent Manager",  "Agent",
                                       "FaaS Admin", "FaaS Developer", "FaaS Invocation"};

constexpr Role A = Role::kAdmin;
constexpr Role M = Role::kAgentManager;
constexpr Role G = Role::kAgent;
constexpr Role FA = Role::kFaasAdmin;
constexpr Role FD = Role::kFaasDeveloper;
constexpr Role FI = Role::kFaasInvocation;

constexpr Surface R = Surface::kRest;
constexpr Surface P = Surface::kProtocol;
constexpr Surface GW = Surface::kGateway;

// The table. docs/authorization.md shows the same rows; policy_test.cpp compares them.
constexpr Rule kRules[] = {
    // ---- REST: the caller itself
    {Action::kMeGet, R, "me.get", "GET me", {A, M, G, FA, FD, FI}},
    {Action::kApiKeyCreate, R, "apikeys.create", "POST apikeys", {A, M, G, FA, FD, FI}},
    {Action::kApiKeysList, R, "apikeys.list", "GET apikeys", {A, M, G, FA, FD, FI}},
    {Action::kApiKeysRevoke, R, "apikeys.revoke", "DELETE apikeys/{id}", {A, M, G, FA, FD, FI}},
    // ---- REST: account configuration
    {Action::kSkillsList, R, "skills.list", "GET skills", {A, M, G, FA}},
    {Action::kSkillsCreate, R, "skills.create", "POST skills", {A}},
    {Action::kSkillsDelete, R, "skills.delete", "DELETE skills/{id}", {A}},
    {Action::kUsersList, R, "users.list", "GET users", {A, M}},
    {Action::kUsersGet, R, "users.get", "GET users/{id}", {A, M}},
    {Action::kUsersCreate, R, "users.create", "POST users", {A}},
    {Action::kUsersUpdate, R, "users.update", "PATCH users/{id}", {A}},
    {Action::kUsersDelete, R, "users.delete", "DELETE users/{id}", {A}},
    {Action::kAppsList, R, "apps.list", "GET apps", {A}},
    {Action::kAppsCreate, R, "apps.create", "POST apps", {A}},
    {Action::kAppsDelete, R, "apps.delete", "DELETE apps/{clientId}", {A}},
    // ---- REST: conversations (an Agent sees only the ones it may read, see the notes)
    {Action::kConversationsList, R, "conversations.list", "GET conversations", {A, M, G}},
    {Action::kConversationsGet, R, "conversations.get", "GET conversations/{id}", {A, M, G}},
    {Action::kConversationsMessages,
     R,
     "conversations.messages",
     "GET conversations/{id}/messages",
     {A, M, G}},
    // A GDPR erasure of a closed conversation's content (store::Store::eraseConversationContent).
    {Action::kConversationsErase,
     R,
     "conversations.erase",
     "DELETE conversations/{id}/content",
     {A}},
    // ---- REST: functions
    {Action::kFunctionsList, R, "functions.list", "GET functions", {A, M, FA, FD}},
    {Action::kFunctionsCreate, R, "functions.create", "POST functions", {A, FD}},
    {Action::kFunctionsTemplates,
     R,
     "functions.templates",
     "GET functions/templates",
     {A, M, FA, FD}},
    {Action::kFunctionsGet, R, "functions.get", "GET functions/{uuid}", {A, M, FA, FD}},
    {Action::kFunctionsUpdate, R, "functions.update", "PUT/PATCH functions/{uuid}", {A, FD}},
    {Action::kFunctionsDelete, R, "functions.delete", "DELETE functions/{uuid}", {A, FD}},
    {Action::kFunctionsDeploy, R, "functions.deploy", "POST functions/{uuid}/deploy", {A, FA}},
    {Action::kFunctionsUndeploy,
     R,
     "functions.undeploy",
     "POST functions/{uuid}/undeploy",
     {A, FA}},
    {Action::kFunctionsInvoke, R, "functions.invoke", "POST functions/{uuid}/invoke", {A, FD}},
    {Action::kFunctionsLogs, R, "functions.logs", "GET functions/{uuid}/logs", {A, M, FA, FD}},
    {Action::kFunctionsDeployments,
     R,
     "functions.deployments",
     "GET functions/{uuid}/deployments",
     {A, M, FA, FD}},
    {Action::kFunctionsRestore,
     R,
     "functions.restore",
     "POST functions/{uuid}/deployments/{id}/restore",
     {A, FD}},
    {Action::kSecretsList, R, "secrets.list", "GET secrets", {A, M, FA, FD}},
    {Action::kSecretsPut, R, "secrets.put", "PUT secrets/{key}", {A, FA}},
    {Action::kSecretsDelete, R, "secrets.delete", "DELETE secrets/{key}", {A, FA}},
    {Action::kSecretsReadValue, R, "secrets.value", "GET secrets/{key}", {}},
    {Action::kSecretsAudit, R, "secrets.audit", "GET secrets/audit", {A, FA}},
    {Action::kAllowlistGet, R, "allowlist.get", "GET allowlist", {A, M, FA, FD}},
    {Action::kAllowlistPut, R, "allowlist.put", "PUT allowlist", {A, FA}},
    {Action::kSchedulesList, R, "schedules.list", "GET schedules", {A, FA, FD}},
    {Action::kSchedulesCreate, R, "schedules.create", "POST schedules", {A, FA, FD}},
    {Action::kSchedulesGet, R, "schedules.get", "GET schedules/{uuid}", {A, FA, FD}},
    {Action::kSchedulesUpdate, R, "schedules.update", "PUT/PATCH schedules/{uuid}", {A, FA, FD}},
    {Action::kSchedulesDelete, R, "schedules.delete", "DELETE schedules/{uuid}", {A, FA, FD}},
    // ---- REST: bots
    {Action::kBotsList, R, "bots.list", "GET bots", {A, M, FA}},
    {Action::kBotsCreate, R, "bots.create", "POST bots", {A}},
    {Action::kImageAllowlistGet, R, "bots.images.get", "GET bots/image-allowlist", {A, M, FA, FD}},
    {Action::kImageAllowlistPut, R, "bots.images.put", "PUT bots/image-allowlist", {A}},
    {Action::kImageAllowlistDelete, R, "bots.images.delete", "DELETE bots/image-allowlist", {A}},
    {Action::kBotsGet, R, "bots.get", "GET bots/{id}", {A, M, FA}},
    {Action::kBotsUpdate, R, "bots.update", "PUT/PATCH bots/{id}", {A, M}},
    {Action::kBotsDelete, R, "bots.delete", "DELETE bots/{id}", {A, M}},
    {Action::kBotsStart, R, "bots.start", "POST bots/{id}/start", {A}},
    {Action::kBotsStop, R, "bots.stop", "POST bots/{id}/stop", {A, M}},
    {Action::kBotsTestConnection, R, "bots.test", "POST bots/{id}/test-connection", {A}},
    {Action::kBotsTestConnectionUnsaved, R, "bots.test.unsaved", "POST bots/test-connection", {A}},
    {Action::kBotsTurns, R, "bots.turns", "GET bots/{id}/turns", {A, M, FA}},
    {Action::kBotsTesterCreate, R, "bots.tester.create", "POST bots/{id}/tester", {A, FD}},
    {Action::kBotsTesterGet, R, "bots.tester.get", "GET bots/{id}/tester/{session}", {A, FD}},
    {Action::kBotsTesterMessage,
     R,
     "bots.tester.message",
     "POST bots/{id}/tester/{session}/messages",
     {A, FD}},
    {Action::kBotsTesterDelete,
     R,
     "bots.tester.delete",
     "DELETE bots/{id}/tester/{session}",
     {A, FD}},
    {Action::kBotsReplay, R, "bots.replay", "POST bots/{id}/replay", {A, FA}},
    {Action::kRichContentValidate,
     R,
     "richcontent.validate",
     "POST richcontent/validate",
     {A, M, G, FA, FD}},
    // ---- Functions gateway (LivePerson's faasGW)
    {Action::kGatewayInvoke, GW, "gateway.invoke", "POST lambdas/{uuid}/invoke", {A, FA, FD, FI}},
    {Action::kGatewayEventInvoke,
     GW,
     "gateway.events.invoke",
     "POST events/{eventId}/invoke",
     {A, FA, FD, FI}},
    {Action::kGatewayEventImplemented,
     GW,
     "gateway.events.implemented",
     "GET events/{eventId}/isImplemented",
     {A, FA, FD, FI}},
    // ---- Messaging protocol (agent socket)
    {Action::kAgentSocket, P, "socket.agent", "open /messaging/brand/{bearer}", {A, M, G}},
    {Action::kSubscribeOwnConversations,
     P,
     "conversations.subscribe.own",
     "SubscribeExConversations agentIds=[self]",
     {A, M, G}},
    {Action::kSubscribeAllConversations,
     P,
     "conversations.subscribe.all",
     "SubscribeExConversations (all, or other agents)",
     {A, M}},
    {Action::kReadVisibleConversation,
     P,
     "conversations.read.visible",
     "QueryMessages on a visible conversation",
     {A, M, G}},
    {Action::kReadAnyConversation,
     P,
     "conversations.read.any",
     "QueryMessages on a conversation not visible to you",
     {A, M}},
    {Action::kRoutingTasks,
     P,
     "routing.tasks",
     "SubscribeRoutingTasks, UpdateRingState",
     {A, M, G}},
    {Action::kSetOwnAgentState, P, "agentstate.own", "SetAgentState (self)", {A, M, G}},
    {Action::kSetOtherAgentState,
     P,
     "agentstate.other",
     "SetAgentState agentUserId=(other)",
     {A, M}},
    {Action::kSubscribeAgentState, P, "agentstate.subscribe", "SubscribeAgentsState", {A, M, G}},
    {Action::kReadConsumerProfile, P, "profile.read", "GetUserProfile", {A, M, G}},
    {Action::kJoinAsManager,
     P,
     "participants.join.manager",
     "ParticipantsChange ADD MANAGER",
     {A, M}},
    {Action::kJoinAsReader, P, "participants.join.reader", "ParticipantsChange ADD READER", {A, M}},
    {Action::kAddOtherParticipant,
     P,
     "participants.add.other",
     "ParticipantsChange ADD userId=(other)",
     {A, M}},
    {Action::kRemoveOtherParticipant,
     P,
     "participants.remove.other",
     "ParticipantsChange REMOVE (other)",
     {A, M}},
    {Action::kPublish, P, "messages.publish", "PublishEvent", {A, M, G}},
    {Action::kTransferToSkill,
     P,
     "conversations.transfer.skill",
     "REMOVE ASSIGNED_AGENT + Skill UPDATE",
     {A, M, G}},
    {Action::kTransferToAgent,
     P,
     "conversations.transfer.agent",
     "ParticipantsChange SUGGEST",
     {A, M, G}},
    {Action::kCloseConversation,
     P,
     "conversations.close",
     "ConversationStateField CLOSE",
     {A, M, G}},
    {Action::kSetTtr, P, "conversations.ttr", "TTRField", {A, M, G}},
};

std::string normalise(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' || c == '-' || c == '_') {
      out += '_';
    } else {
      out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

// Splits "PUT/PATCH functions/{uuid}" into methods and segments.
struct Pattern {
  std::vector<std::string_view> methods;
  std::vector<std::string_view> segments;
};

Pattern patternOf(std::string_view call) {
  Pattern p;
  auto sp = call.find(' ');
  std::string_view methods = call.substr(0, sp);
  std::string_view path = sp == std::string_view::npos ? "" : call.substr(sp + 1);
  while (!methods.empty()) {
    auto bar = methods.find('/');
    p.methods.push_back(methods.substr(0, bar));
    if (bar == std::string_view::npos) break;
    methods.remove_prefix(bar + 1);
  }
  while (!path.empty()) {
    auto slash = path.find('/');
    p.segments.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return p;
}

// Literal segments matched, or -1 when the path does not fit the pattern.
int score(const Pattern& p, std::span<const std::string> path) {
  if (p.segments.size() != path.size()) return -1;
  int literal = 0;
  for (std::size_t i = 0; i < path.size(); ++i) {
    std::string_view seg = p.segments[i];
    if (seg.starts_with('{')) {
      if (path[i].empty()) return -1;
    } else if (seg == path[i]) {
      ++literal;
    } else {
      return -1;
    }
  }
  return literal;
}

}  // namespace

const char* roleName(Role r) {
  auto i = static_cast<std::size_t>(r);
  return i < std::size(kRoleNames) ? kRoleNames[i] : "UNKNOWN";
}

const char* roleTitle(Role r) {
  auto i = static_cast<std::size_t>(r);
  return i < std::size(kRoleTitles) ? kRoleTitles[i] : "Unknown";
}

Result<Role> parseRole(std::string_view s) {
  std::string n = normalise(s);
  for (Role r : kAllRoles)
    if (n == roleName(r)) return r;
  std::string accepted;
  for (Role r : kAllRoles) {
    if (!accepted.empty()) accepted += ", ";
    accepted += fmt::format("{} ({})", roleName(r), roleTitle(r));
  }
  return invalid(fmt::format("unknown role '{}'; use one of {}", s, accepted));
}

RoleSet::RoleSet(std::initializer_list<std::string_view> names) {
  for (auto n : names)
    if (auto r = parseRole(n)) add(*r);
}

RoleSet::RoleSet(const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (auto r = parseRole(n)) add(*r);
}

RoleSet::RoleSet(std::span<const Role> roles) {
  for (Role r : roles) add(r);
}

std::vector<Role> RoleSet::list() const {
  std::vector<Role> out;
  for (Role r : kAllRoles)
    if (has(r)) out.push_back(r);
  return out;
}

std::vector<std::string> RoleSet::names() const {
  std::vector<std::string> out;
  for (Role r : list()) out.emplace_back(roleName(r));
  return out;
}

std::span<const Rule> rules() { return kRules; }

const Rule& rule(Action a) {
  for (const auto& r : kRules)
    if (r.action == a) return r;
  // Every enumerator has a row (policy_test checks it); reaching here is a bug.
  std::abort();
}

std::optional<Action> actionById(std::string_view id) {
  for (const auto& r : kRules)
    if (r.id == id) return r.action;
  return std::nullopt;
}

bool may(const Subject& who, Action a) { return who.roles.intersects(rule(a).allowed); }

std::string describeRoles(RoleSet roles) {
  auto list = roles.list();
  if (list.empty()) return "no role";
  std::string out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (i) out += i + 1 == list.size() ? " or " : ", ";
    out += roleName(list[i]);
  }
  return out;
}

Status authorize(const Subject& who, Action a) {
  if (may(who, a)) return {};
  const Rule& r = rule(a);
  if (r.allowed.empty()) return forbidden(fmt::format("{} is not allowed for any role", r.call));
  return forbidden(fmt::format("{} needs the {} role; ask an admin of the account to grant it",
                               r.call, describeRoles(r.allowed)));
}

constexpr OAuthScope kOAuthScopes[] = {{"faas.lambda.invoke", Role::kFaasInvocation}};

std::span<const OAuthScope> oauthScopes() { return kOAuthScopes; }

std::optional<Role> oauthScopeRole(std::string_view scope) {
  for (const auto& s : kOAuthScopes)
    if (s.name == scope) return s.role;
  return std::nullopt;
}

RouteMatch matchRoute(std::string_view method, std::span<const std::string> path, Surface surface) {
  RouteMatch m;
  int best = -1;
  std::vector<std::string_view> methods;
  for (const auto& r : kRules) {
    if (r.surface != surface || surface == Surface::kProtocol) continue;
    Pattern p = patternOf(r.call);
    int s = score(p, path);
    if (s < 0 || s < best) continue;
    if (s > best) {
      best = s;
      m.action.reset();
      methods.clear();
    }
    for (auto meth : p.methods) {
      methods.push_back(meth);
      if (meth == method) m.action = r.action;
    }
  }
  if (!m.action) {
    for (std::size_t i = 0; i < methods.size(); ++i) {
      if (i) m.methods += i + 1 == methods.size() ? " or " : ", ";
      m.methods += methods[i];
    }
  }
  return m;
}

}  // namespace parley::policy
