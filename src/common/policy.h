#pragma once

// The authorization policy: LivePerson's roles, the actions a caller may attempt (every REST call
// and every messaging-protocol request that needs a role), and the one table that says which
// role may do each. REST routing (server/http_app.cpp), the REST handlers, the protocol session
// and the conversation engine all ask this component; none keeps its own list of roles.
// The table is also written down in docs/authorization.md; a test compares the two and another
// walks every row against the running server.
//
// Conditions that depend on a conversation's state (the caller is its assigned agent, a
// participant, rung for it) are checked by the conversation engine and the protocol session; the
// table only says which roles may attempt the action at all. Everything here is pure and
// thread-safe.

#include <array>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace parley::policy {

// LivePerson's roles. Stored and answered as the constants ("ADMIN", ...); LivePerson's own
// spellings ("Admin", "Agent Manager", ...) are accepted wherever a role is read.
enum class Role : std::uint8_t {
  kAdmin,
  kAgentManager,
  kAgent,
  kFaasAdmin,
  kFaasDeveloper,
  kFaasInvocation,
};
inline constexpr std::array<Role, 6> kAllRoles = {Role::kAdmin,         Role::kAgentManager,
                                                  Role::kAgent,         Role::kFaasAdmin,
                                                  Role::kFaasDeveloper, Role::kFaasInvocation};

// "ADMIN", "AGENT_MANAGER", "AGENT", "FAAS_ADMIN", "FAAS_DEVELOPER", "FAAS_INVOCATION".
const char* roleName(Role r);
// LivePerson's spelling: "Admin", "Agent Manager", "Agent", "FaaS Admin", "FaaS Developer",
// "FaaS Invocation".
const char* roleTitle(Role r);
// Either spelling, ignoring case and treating spaces, '-' and '_' alike. Invalid with the list
// of accepted names otherwise.
Result<Role> parseRole(std::string_view s);

// A human or a bot user (LivePerson's user type). Roles decide what either may do.
enum class UserType : std::uint8_t { kHuman, kBot };

// A set of roles. Converts from role names so that callers holding names (tests, fixtures) can
// assign them; names that are not roles are dropped.
class RoleSet {
 public:
  constexpr RoleSet() = default;
  constexpr RoleSet(std::initializer_list<Role> roles) {
    for (Role r : roles) add(r);
  }
  RoleSet(std::initializer_list<std::string_view> names);
  RoleSet(const std::vector<std::string>& names);  // NOLINT(google-explicit-constructor)
  RoleSet(std::span<const Role> roles);            // NOLINT(google-explicit-constructor)

  constexpr bool has(Role r) const { return (bits_ & bit(r)) != 0; }
  constexpr void add(Role r) { bits_ |= bit(r); }
  constexpr bool empty() const { return bits_ == 0; }
  // True when the two sets share a role.
  constexpr bool intersects(RoleSet o) const { return (bits_ & o.bits_) != 0; }
  // The roles in declaration order.
  std::vector<Role> list() const;
  std::vector<std::string> names() const;
  constexpr std::uint32_t bits() const { return bits_; }
  friend constexpr bool operator==(RoleSet a, RoleSet b) { return a.bits_ == b.bits_; }

 private:
  static constexpr std::uint32_t bit(Role r) { return 1u << static_cast<unsigned>(r); }
  std::uint32_t bits_ = 0;
};

// Who is asking: an authenticated brand user's roles and type.
struct Subject {
  RoleSet roles;
  UserType type = UserType::kHuman;
};

// Everything that needs a role. One enumerator per row of the table (docs/authorization.md).
enum class Action : std::uint8_t {
  // REST v1, /api/v1/accounts/{acc}/…
  kMeGet,
  kApiKeyCreate,
  kApiKeysList,
  kApiKeysRevoke,
  kSkillsList,
  kSkillsCreate,
  kSkillsDelete,
  kUsersList,
  kUsersGet,
  kUsersCreate,
  kUsersUpdate,
  kUsersDelete,
  kAppsList,
  kAppsCreate,
  kAppsDelete,
  kConversationsList,
  kConversationsGet,
  kConversationsMessages,
  kConversationsErase,
  kFunctionsList,
  kFunctionsCreate,
  kFunctionsGet,
  kFunctionsUpdate,
  kFunctionsDelete,
  kFunctionsDeploy,
  kFunctionsUndeploy,
  kFunctionsInvoke,
  kFunctionsLogs,
  kFunctionsDeployments,
  kFunctionsRestore,
  kFunctionsTemplates,
  kSecretsList,
  kSecretsPut,
  kSecretsDelete,
  kSecretsReadValue,
  kSecretsAudit,
  kAllowlistGet,
  kAllowlistPut,
  kSchedulesList,
  kSchedulesCreate,
  kSchedulesGet,
  kSchedulesUpdate,
  kSchedulesDelete,
  kBotsList,
  kBotsCreate,
  kBotsGet,
  kBotsUpdate,
  kBotsDelete,
  kBotsStart,
  kBotsStop,
  kBotsTestConnection,
  kBotsTestConnectionUnsaved,
  kBotsTurns,
  kBotsTesterCreate,
  kBotsTesterGet,
  kBotsTesterMessage,
  kBotsTesterDelete,
  kBotsReplay,
  kImageAllowlistGet,
  kImageAllowlistPut,
  kImageAllowlistDelete,
  kRichContentValidate,
  // Functions gateway (LivePerson's faasGW), /api/account/{acc}/…
  kGatewayInvoke,
  kGatewayEventInvoke,
  kGatewayEventImplemented,
  // Messaging protocol, agent socket.
  kAgentSocket,
  kSubscribeOwnConversations,
  kSubscribeAllConversations,
  kReadVisibleConversation,
  kReadAnyConversation,
  kRoutingTasks,
  kSetOwnAgentState,
  kSetOtherAgentState,
  kSubscribeAgentState,
  kReadConsumerProfile,
  kJoinAsManager,
  kJoinAsReader,
  kAddOtherParticipant,
  kRemoveOtherParticipant,
  kPublish,
  kTransferToSkill,
  kTransferToAgent,
  kCloseConversation,
  kSetTtr,
};

// Where an action is requested: REST v1 (/api/v1/accounts/{acc}/…), the messaging protocol, or
// the functions gateway (/api/account/{acc}/lambdas|events/…).
enum class Surface : std::uint8_t { kRest, kProtocol, kGateway };

// One row of the table.
struct Rule {
  Action action;
  Surface surface;
  // Stable name, the first column of the documented table, e.g. "skills.create".
  std::string_view id;
  // The call: "POST skills", "DELETE functions/{uuid}", or the protocol request.
  std::string_view call;
  RoleSet allowed;
};

// Every row, in the documented order. Each Action appears exactly once.
std::span<const Rule> rules();
const Rule& rule(Action a);
std::optional<Action> actionById(std::string_view id);

// Whether `who` may attempt `a` (conversation-state conditions are checked by the caller).
bool may(const Subject& who, Action a);
// Ok, or Forbidden with a message that names the action and the roles to ask an admin for.
Status authorize(const Subject& who, Action a);
// The roles of a rule as "ADMIN or AGENT_MANAGER" (empty set: "no role").
std::string describeRoles(RoleSet roles);

// The route of a request on `surface` (kRest: path segments after /api/v1/accounts/{acc}/;
// kGateway: after /api/account/{acc}/).
struct RouteMatch {
  // Set when method and path name a route of the table.
  std::optional<Action> action;
  // When the path is known but the method is not: the methods it takes, e.g. "GET or POST".
  std::string methods;
};
RouteMatch matchRoute(std::string_view method, std::span<const std::string> path,
                      Surface surface = Surface::kRest);

// An OAuth 2.0 scope an app installation (REST `apps`) may hold, and the role that an access
// token with that scope acts with. Access tokens are accepted only by the functions gateway.
struct OAuthScope {
  std::string_view name;
  Role role;
};
// Every scope: "faas.lambda.invoke" (FAAS_INVOCATION).
std::span<const OAuthScope> oauthScopes();
// The role `scope` grants; nullopt when it is not a scope.
std::optional<Role> oauthScopeRole(std::string_view scope);

}  // namespace parley::policy
