#include "common/policy.h"

#include <gtest/gtest.h>

#include <set>

#include "common/api.h"
#include "common/testing/role_table.h"

namespace parley::policy {
namespace {

TEST(PolicyTest, ParsesBothSpellingsOfEveryRole) {
  for (Role r : kAllRoles) {
    auto constant = parseRole(roleName(r));
    ASSERT_TRUE(constant) << roleName(r);
    EXPECT_EQ(*constant, r);
    auto title = parseRole(roleTitle(r));
    ASSERT_TRUE(title) << roleTitle(r);
    EXPECT_EQ(*title, r);
  }
  EXPECT_EQ(*parseRole("agent manager"), Role::kAgentManager);
  EXPECT_EQ(*parseRole("Agent-Manager"), Role::kAgentManager);
  EXPECT_EQ(*parseRole("FaaS Invocation"), Role::kFaasInvocation);
  auto bad = parseRole("Supervisor");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
  EXPECT_NE(bad.error().message.find("Agent Manager"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(parseRole(""));
  EXPECT_FALSE(parseRole("ADMINISTRATOR"));
}

TEST(PolicyTest, RoleSetFromNamesDropsUnknownNames) {
  RoleSet s{"ADMIN", "Agent", "nonsense"};
  EXPECT_TRUE(s.has(Role::kAdmin));
  EXPECT_TRUE(s.has(Role::kAgent));
  EXPECT_FALSE(s.has(Role::kAgentManager));
  EXPECT_EQ(s.names(), (std::vector<std::string>{"ADMIN", "AGENT"}));
  api::Caller c;
  c.roles = std::vector<std::string>{"FaaS Developer"};
  EXPECT_TRUE(c.hasRole("FAAS_DEVELOPER"));
  EXPECT_TRUE(c.hasRole(Role::kFaasDeveloper));
  EXPECT_FALSE(c.hasRole("ADMIN"));
}

TEST(PolicyTest, EveryActionHasExactlyOneRuleWithAUniqueId) {
  std::set<int> actions;
  std::set<std::string_view> ids;
  for (const auto& r : rules()) {
    EXPECT_TRUE(actions.insert(static_cast<int>(r.action)).second) << r.id;
    EXPECT_TRUE(ids.insert(r.id).second) << r.id;
    EXPECT_EQ(actionById(r.id), r.action);
  }
  EXPECT_EQ(actions.size(), static_cast<std::size_t>(Action::kSetTtr) + 1);
}

TEST(PolicyTest, AuthorizeNamesTheRolesToAskFor) {
  Subject agent{RoleSet{Role::kAgent}, UserType::kHuman};
  Subject manager{RoleSet{Role::kAgentManager}, UserType::kHuman};
  EXPECT_FALSE(may(agent, Action::kJoinAsManager));
  EXPECT_TRUE(may(manager, Action::kJoinAsManager));
  auto st = authorize(agent, Action::kJoinAsManager);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kForbidden);
  EXPECT_NE(st.error().message.find("ADMIN or AGENT_MANAGER"), std::string::npos)
      << st.error().message;
  EXPECT_TRUE(authorize(manager, Action::kJoinAsManager));
  // No roles: nothing but nothing.
  Subject nobody;
  for (const auto& r : rules()) EXPECT_FALSE(may(nobody, r.action)) << r.id;
  // A rule with no role refuses everybody, admins too.
  Subject all{RoleSet{Role::kAdmin, Role::kAgentManager, Role::kAgent, Role::kFaasAdmin,
                      Role::kFaasDeveloper, Role::kFaasInvocation},
              UserType::kHuman};
  EXPECT_FALSE(may(all, Action::kSecretsReadValue));
}

TEST(PolicyTest, MatchesRoutesPreferringLiteralSegments) {
  using P = std::vector<std::string>;
  EXPECT_EQ(matchRoute("GET", P{"functions", "templates"}).action, Action::kFunctionsTemplates);
  EXPECT_EQ(matchRoute("GET", P{"functions", "abc"}).action, Action::kFunctionsGet);
  EXPECT_EQ(matchRoute("PATCH", P{"functions", "abc"}).action, Action::kFunctionsUpdate);
  EXPECT_EQ(matchRoute("PUT", P{"functions", "abc"}).action, Action::kFunctionsUpdate);
  EXPECT_EQ(matchRoute("GET", P{"bots", "image-allowlist"}).action, Action::kImageAllowlistGet);
  EXPECT_EQ(matchRoute("GET", P{"bots", "b1"}).action, Action::kBotsGet);
  EXPECT_EQ(matchRoute("POST", P{"bots", "test-connection"}).action,
            Action::kBotsTestConnectionUnsaved);
  EXPECT_EQ(matchRoute("POST", P{"bots", "b1", "test-connection"}).action,
            Action::kBotsTestConnection);
  auto unsaved_get = matchRoute("GET", P{"bots", "test-connection"});
  EXPECT_FALSE(unsaved_get.action);
  EXPECT_EQ(unsaved_get.methods, "POST");
  EXPECT_EQ(matchRoute("POST", P{"functions", "u", "deployments", "d", "restore"}).action,
            Action::kFunctionsRestore);
  auto wrong_method = matchRoute("DELETE", P{"functions", "templates"});
  EXPECT_FALSE(wrong_method.action);
  EXPECT_EQ(wrong_method.methods, "GET");
  auto skills = matchRoute("PUT", P{"skills"});
  EXPECT_FALSE(skills.action);
  EXPECT_EQ(skills.methods, "GET or POST");
  auto unknown = matchRoute("GET", P{"nothing"});
  EXPECT_FALSE(unknown.action);
  EXPECT_TRUE(unknown.methods.empty());
  EXPECT_FALSE(matchRoute("GET", P{"skills", ""}).action);
  // Protocol rows are not routes.
  EXPECT_FALSE(matchRoute("open", P{"/messaging/brand/{bearer}"}).action);
}

// The documented table (docs/authorization.md) and this component's table are the same.
TEST(PolicyTest, OAuthScopesGrantOnlyTheInvocationRole) {
  EXPECT_EQ(oauthScopeRole("faas.lambda.invoke"), Role::kFaasInvocation);
  EXPECT_EQ(oauthScopeRole("FAAS.LAMBDA.INVOKE"), std::nullopt);
  EXPECT_EQ(oauthScopeRole("faas.admin"), std::nullopt);
  EXPECT_EQ(oauthScopeRole(""), std::nullopt);
  for (const auto& s : oauthScopes()) {
    // No scope reaches a REST v1 row beyond what FAAS_INVOCATION has: `me` and its own keys.
    Subject who{RoleSet{s.role}, UserType::kHuman};
    EXPECT_FALSE(may(who, Action::kAppsCreate)) << s.name;
    EXPECT_FALSE(may(who, Action::kFunctionsInvoke)) << s.name;
    EXPECT_TRUE(may(who, Action::kGatewayInvoke)) << s.name;
  }
  std::vector<std::string> path = {"apps", "c1"};
  EXPECT_EQ(matchRoute("DELETE", path).action, Action::kAppsDelete);
}

TEST(PolicyTest, DocumentedTableIsThePolicyTable) {
  auto doc = testing::readRoleTables(PARLEY_SOURCE_DIR "/docs/authorization.md");
  ASSERT_TRUE(doc) << doc.error().message;
  std::set<std::string> documented;
  for (const auto& d : *doc) {
    EXPECT_TRUE(documented.insert(d.id).second) << "documented twice: " << d.id;
    auto a = actionById(d.id);
    if (!a) {
      ADD_FAILURE() << "docs/authorization.md:" << d.line << ": rule " << d.id
                    << " is not in the policy";
      continue;
    }
    const Rule& r = rule(*a);
    EXPECT_EQ(d.call, r.call) << d.id;
    EXPECT_EQ(d.allowed, r.allowed) << d.id << ": documented " << describeRoles(d.allowed)
                                    << ", policy " << describeRoles(r.allowed);
  }
  for (const auto& r : rules())
    EXPECT_TRUE(documented.contains(std::string(r.id)))
        << "rule " << r.id << " is missing from docs/authorization.md";
}

}  // namespace
}  // namespace parley::policy
