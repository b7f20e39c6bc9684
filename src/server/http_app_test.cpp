#include "server/http_app.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <atomic>
#include <boost/json.hpp>
#include <cstring>

#include "common/crypto.h"
#include "common/json.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "conversation/conversation_engine.h"
#include "store/memory/memory_store.h"

namespace parley::server {
namespace {

class HttpAppTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    for (const char* id : {"123", "456"}) {
      store::Account a;
      a.id = AccountId(id);
      ASSERT_TRUE(store_->accounts().createAccount(a));
    }
    admin_ = addUser("admin", {store::Role::kAdmin});
    agent_ = addUser("agent", {store::Role::kAgent});
    conversation::Options o;
    o.tick_interval_ms = 0;
    engine_ = conversation::makeConversationService(*store_, clock_, o);
    ASSERT_TRUE(engine_->recover());
    auth_ = std::make_unique<Auth>(store_->accounts(), clock_, hasher_, "k", AuthOptions{});
    oauth_ = std::make_unique<OAuth>(store_->oauth(), *auth_, clock_, OAuthOptions{});
    directory_ = std::make_unique<protocol::Directory>(store_->accounts(), inline_);
    app_ = std::make_unique<App>(AppDeps{
        RestDeps{*store_, *engine_, *directory_, *auth_, *oauth_, inline_, clock_,
                 crypto::PasswordCost::kMinimumForTest},
        protocol::SessionDeps{*engine_, hub_, *directory_, *auth_, inline_, clock_, metrics_, {}},
        metrics_, StaticFiles(""), MetricsAccess{"metrics-token", TenantLabels::kSummed}});
    app_->setPublicHost("127.0.0.1:8443");
  }

  store::User addUser(const std::string& login, std::vector<store::Role> roles) {
    store::User u;
    u.account = AccountId("123");
    u.login_name = login;
    u.pid = "pid-" + login;
    u.password_hash = *crypto::hashPassword("pw-" + login, crypto::PasswordCost::kMinimumForTest);
    u.roles = std::move(roles);
    return *store_->accounts().createUser(u);
  }

  HttpResponse call(const std::string& method, const std::string& target,
                    const std::string& body = "", const std::string& bearer = "") {
    HttpRequest r;
    r.method = method;
    r.target = target;
    std::string path = target.substr(0, target.find('?'));
    std::size_t i = 1;
    while (i <= path.size()) {
      auto j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      if (j > i) r.segments.push_back(path.substr(i, j - i));
      i = j + 1;
    }
    r.body = body;
    r.tls = true;
    if (!bearer.empty()) r.headers["authorization"] = "Bearer " + bearer;
    return parley::testing::await<HttpResponse>(
        [&](auto done) { app_->handle(std::move(r), std::move(done)); });
  }

  std::string loginBearer(const std::string& user) {
    auto r = call("POST", "/api/account/123/login?v=1.3",
                  R"({"username":")" + user + R"(","password":"pw-)" + user + R"("})");
    EXPECT_EQ(r.status, 200) << r.body;
    return json::getString(*json::parseObject(r.body), "bearer");
  }

  testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  store::User admin_;
  store::User agent_;
  std::unique_ptr<conversation::ConversationService> engine_;
  InlinePasswordHasher hasher_;
  std::unique_ptr<Auth> auth_;
  std::unique_ptr<OAuth> oauth_;
  InlineExecutor inline_;
  std::unique_ptr<protocol::Directory> directory_;
  protocol::Hub hub_;
  Metrics metrics_;
  std::unique_ptr<App> app_;
};

// /healthz answers what the health check says: 200 without one or while it finds nothing
// wrong, 503 with its reason while it does (a cluster node cut off from the bus).
TEST_F(HttpAppTest, HealthzAnswersTheHealthCheck) {
  auto plain = call("GET", "/healthz");
  EXPECT_EQ(plain.status, 200);
  EXPECT_EQ(json::parseObject(plain.body)->at("status").as_string(), "ok");
  std::atomic<bool> cut{false};
  app_->setHealthCheck([&]() -> std::optional<std::string> {
    if (!cut) return std::nullopt;
    return std::string("cut off from the cluster's bus");
  });
  EXPECT_EQ(call("GET", "/healthz").status, 200);
  cut = true;
  auto down = call("GET", "/healthz");
  EXPECT_EQ(down.status, 503);
  auto o = json::parseObject(down.body);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->at("status").as_string(), "unavailable");
  EXPECT_EQ(o->at("reason").as_string(), "cut off from the cluster's bus");
  cut = false;
  EXPECT_EQ(call("GET", "/healthz").status, 200);
}

TEST_F(HttpAppTest, CsdsAlwaysHasBaseUris) {
  auto ok = call("GET", "/api/account/123/service/baseURI.json?version=1.0");
  EXPECT_EQ(ok.status, 200);
  auto o = json::parseObject(ok.body);
  ASSERT_TRUE(o);
  bool vep = false;
  for (const auto& u : o->at("baseURIs").as_array())
    if (u.as_object().at("service").as_string() == "agentVep") {
      vep = true;
      EXPECT_EQ(u.as_object().at("baseURI").as_string(), "127.0.0.1:8443");
    }
  EXPECT_TRUE(vep);
  auto missing = call("GET", "/api/account/999/service/baseURI.json?version=1.0");
  EXPECT_EQ(missing.status, 404);
  EXPECT_TRUE(json::parseObject(missing.body)->at("baseURIs").as_array().empty());
}

TEST_F(HttpAppTest, ConversationShowsTheNodeHoldingItsLease) {
  store::Conversation c;
  c.id = ConversationId("conv-owned");
  c.account = AccountId("123");
  c.consumer = ConsumerId("consumer-1");
  c.start_ts = 1;
  ASSERT_TRUE(store_->conversations().saveConversation(c));
  std::string admin = loginBearer("admin");
  auto owner = [&] {
    auto r = call("GET", "/api/v1/accounts/123/conversations/conv-owned", "", admin);
    EXPECT_EQ(r.status, 200) << r.body;
    auto o = json::parseObject(r.body);
    return o && o->contains("owner") ? boost::json::serialize(o->at("owner"))
                                     : std::string("missing");
  };
  EXPECT_EQ(owner(), "null");
  clock_.setMs(10'000);
  ASSERT_TRUE(store_->cluster()->acquireLease(c.id, "node-a", 3000));
  EXPECT_EQ(owner(), "\"node-a\"");
  clock_.setMs(13'000);  // expired: nobody owns it
  EXPECT_EQ(owner(), "null");
}

TEST_F(HttpAppTest, LoginShapesAndErrors) {
  auto r =
      call("POST", "/api/account/123/login?v=1.3", R"({"username":"agent","password":"pw-agent"})");
  ASSERT_EQ(r.status, 200);
  auto o = *json::parseObject(r.body);
  std::string bearer = json::getString(o, "bearer");
  EXPECT_EQ(bearer.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_FALSE(json::getString(o, "csrf").empty());
  const auto& cfg = o.at("config").as_object();
  EXPECT_EQ(json::getString(cfg, "userId"), agent_.id.str());
  EXPECT_EQ(json::getString(cfg, "userPid"), "pid-agent");
  bool cookie = false;
  for (auto& [k, v] : r.headers)
    if (k == "Set-Cookie" && v.rfind("session_id=" + bearer, 0) == 0) cookie = true;
  EXPECT_TRUE(cookie);
  auto bad =
      call("POST", "/api/account/123/login?v=1.3", R"({"username":"agent","password":"no"})");
  EXPECT_EQ(bad.status, 401);
  EXPECT_TRUE(json::parseObject(bad.body)->at("error").is_string());
  auto other =
      call("POST", "/api/account/456/login?v=1.3", R"({"username":"agent","password":"pw-agent"})");
  EXPECT_EQ(other.status, 401);
}

// DELETE conversations/{id}/content: ADMIN only; another account's conversation is 404, an
// open one 409 naming it; the answer counts what was erased; a second call erases nothing.
TEST_F(HttpAppTest, ConversationErasureIsAdminOnlyAndForClosedConversations) {
  addUser("manager", {store::Role::kAgentManager});
  auto save = [&](const char* acc, const char* id, store::ConversationState state) {
    store::Conversation c;
    c.id = ConversationId(id);
    c.account = AccountId(acc);
    c.consumer = ConsumerId(std::string("consumer-") + id);
    c.start_ts = 1;
    c.state = state;
    c.context_json = R"({"visitorId":"v","sessionId":"s"})";
    if (state == store::ConversationState::kClose) c.close_reason = store::CloseReason::kConsumer;
    store::Message m;
    m.conversation = c.id;
    m.server_ts = 5;
    m.originator_id = c.consumer.str();
    m.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"my iban"})";
    c.next_sequence = 1;
    c.updated_at = 5;
    ASSERT_TRUE(store_->conversations().appendMessage(c, m));
  };
  save("123", "closed-1", store::ConversationState::kClose);
  save("123", "open-1", store::ConversationState::kOpen);
  save("456", "elsewhere", store::ConversationState::kClose);
  std::string admin = loginBearer("admin");
  std::string manager = loginBearer("manager");
  std::string agent = loginBearer("agent");
  const std::string path = "/api/v1/accounts/123/conversations/closed-1/content";

  for (const auto& bearer : {agent, manager}) {
    auto r = call("DELETE", path, "", bearer);
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_NE(r.body.find("DELETE conversations/{id}/content needs the ADMIN role"),
              std::string::npos)
        << r.body;
  }
  EXPECT_EQ(
      store_->conversations().listMessages(ConversationId("closed-1"), 0, 10)->at(0).event_json,
      R"({"type":"ContentEvent","contentType":"text/plain","message":"my iban"})");

  auto other = call("DELETE", "/api/v1/accounts/123/conversations/elsewhere/content", "", admin);
  EXPECT_EQ(other.status, 404) << other.body;
  EXPECT_EQ(
      call("DELETE", "/api/v1/accounts/456/conversations/elsewhere/content", "", admin).status,
      403);
  auto open = call("DELETE", "/api/v1/accounts/123/conversations/open-1/content", "", admin);
  EXPECT_EQ(open.status, 409) << open.body;
  EXPECT_NE(open.body.find("conversation open-1 is open"), std::string::npos) << open.body;

  auto ok = call("DELETE", path, "", admin);
  ASSERT_EQ(ok.status, 200) << ok.body;
  auto o = json::parseObject(ok.body);
  ASSERT_TRUE(o);
  EXPECT_EQ(o->at("conversationId").as_string(), "closed-1");
  EXPECT_EQ(o->at("erased").at("messages").as_int64(), 1);
  EXPECT_EQ(o->at("erased").at("context").as_bool(), true);
  EXPECT_EQ(
      store_->conversations().listMessages(ConversationId("closed-1"), 0, 10)->at(0).event_json,
      store::kErasedEventJson);
  auto read = call("GET", "/api/v1/accounts/123/conversations/closed-1", "", admin);
  ASSERT_EQ(read.status, 200) << read.body;
  EXPECT_EQ(json::parseObject(read.body)->at("closeReason").as_string(), "CONSUMER");
  auto again = call("DELETE", path, "", admin);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(json::parseObject(again.body)->at("erased").at("messages").as_int64(), 0);
  // Any other method on the path is refused before any handler.
  EXPECT_EQ(call("GET", path, "", admin).status, 400);
}

TEST_F(HttpAppTest, RestChecksAccountRoleAndToken) {
  std::string admin = loginBearer("admin");
  std::string agent = loginBearer("agent");
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/skills", "", admin).status, 200);
  EXPECT_EQ(call("GET", "/api/v1/accounts/456/skills", "", admin).status, 403);
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/skills", "", "garbage").status, 401);
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/skills").status, 401);
  auto forbidden = call("POST", "/api/v1/accounts/123/skills", R"({"name":"x"})", agent);
  EXPECT_EQ(forbidden.status, 403);
  EXPECT_EQ(json::getString(json::parseObject(forbidden.body)->at("error").as_object(), "code"),
            "FORBIDDEN");
  auto created = call("POST", "/api/v1/accounts/123/skills", R"({"name":"sales"})", admin);
  EXPECT_EQ(created.status, 201);
  EXPECT_EQ(call("POST", "/api/v1/accounts/123/skills", R"({"name":"sales"})", admin).status, 409);
  EXPECT_EQ(call("POST", "/api/v1/accounts/123/skills", "{bad", admin).status, 400);
  auto user = call(
      "POST", "/api/v1/accounts/123/users",
      R"({"loginName":"new","password":"secret1","roles":["AGENT"],"type":"BOT","skills":["sales"]})",
      admin);
  ASSERT_EQ(user.status, 201) << user.body;
  // users.list is ADMIN or AGENT_MANAGER (docs/authorization.md).
  auto refused = call("GET", "/api/v1/accounts/123/users", "", agent);
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("ADMIN or AGENT_MANAGER"), std::string::npos) << refused.body;
  auto users = call("GET", "/api/v1/accounts/123/users", "", admin);
  EXPECT_EQ(users.status, 200);
  EXPECT_EQ(users.body.find("argon2"), std::string::npos) << "password hashes must never leave";
  auto unknown = call("GET", "/api/v1/accounts/123/bots", "", admin);
  EXPECT_EQ(unknown.status, 404);
  // Expiry.
  clock_.advanceMs(13LL * 3600 * 1000);
  auto expired = call("GET", "/api/v1/accounts/123/skills", "", admin);
  EXPECT_EQ(expired.status, 401);
}

TEST_F(HttpAppTest, RefreshAndLogout) {
  auto r =
      call("POST", "/api/account/123/login?v=1.3", R"({"username":"agent","password":"pw-agent"})");
  auto o = *json::parseObject(r.body);
  std::string bearer = json::getString(o, "bearer");
  std::string csrf = json::getString(o, "csrf");
  HttpRequest req;
  req.method = "POST";
  req.segments = {"api", "account", "123", "refresh"};
  req.headers["cookie"] = "other=1; session_id=" + bearer;
  req.body = R"({"csrf":")" + csrf + R"("})";
  EXPECT_EQ(parley::testing::await<HttpResponse>([&](auto done) {
              app_->handle(req, std::move(done));
            }).status,
            200);
  req.body = R"({"csrf":"wrong"})";
  EXPECT_EQ(parley::testing::await<HttpResponse>([&](auto done) {
              app_->handle(req, std::move(done));
            }).status,
            401);
  EXPECT_EQ(call("POST", "/api/account/123/logout?v=1.3", "", bearer).status, 200);
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", bearer).status, 401);
  EXPECT_EQ(call("POST", "/api/account/123/logout?v=1.3", "", bearer).status, 401);
}

TEST_F(HttpAppTest, UpgradeRejectsBadBearerWith401) {
  HttpRequest r;
  r.method = "GET";
  r.segments = {"ws_api", "account", "123", "messaging", "brand", "nope"};
  auto d = parley::testing::await<UpgradeDecision>(
      [&](auto done) { app_->upgrade(r, std::move(done)); });
  ASSERT_TRUE(d.reject);
  EXPECT_EQ(d.reject->status, 401);
  std::string bearer = loginBearer("agent");
  r.segments.back() = bearer;
  auto ok = parley::testing::await<UpgradeDecision>(
      [&](auto done) { app_->upgrade(r, std::move(done)); });
  EXPECT_FALSE(ok.reject);
  EXPECT_TRUE(ok.make);
}

TEST_F(HttpAppTest, RoutesOutsideTheTableAreRefusedBeforeAnyHandler) {
  std::string admin = loginBearer("admin");
  auto wrong_method = call("PUT", "/api/v1/accounts/123/skills", "{}", admin);
  EXPECT_EQ(wrong_method.status, 400);
  EXPECT_NE(wrong_method.body.find("use GET or POST"), std::string::npos) << wrong_method.body;
  auto no_route = call("GET", "/api/v1/accounts/123/skills/1/extra", "", admin);
  EXPECT_EQ(no_route.status, 404) << no_route.body;
  auto unknown = call("GET", "/api/v1/accounts/123/nothing", "", admin);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_NE(unknown.body.find("unknown resource"), std::string::npos) << unknown.body;
}

TEST_F(HttpAppTest, UpgradeRefusesUsersWithoutAMessagingRole) {
  addUser("dev", {store::Role::kFaasDeveloper});
  HttpRequest r;
  r.method = "GET";
  r.segments = {"ws_api", "account", "123", "messaging", "brand", loginBearer("dev")};
  auto d = parley::testing::await<UpgradeDecision>(
      [&](auto done) { app_->upgrade(r, std::move(done)); });
  ASSERT_TRUE(d.reject);
  EXPECT_EQ(d.reject->status, 403);
  EXPECT_NE(d.reject->body.find("ADMIN, AGENT_MANAGER or AGENT"), std::string::npos)
      << d.reject->body;
  EXPECT_FALSE(d.make);
}

TEST_F(HttpAppTest, MetricsNeedTheMetricsToken) {
  EXPECT_EQ(call("GET", "/metrics").status, 401);
  EXPECT_EQ(call("GET", "/metrics", "", "wrong-token!!").status, 401);
  EXPECT_EQ(call("GET", "/metrics", "", loginBearer("admin")).status, 401);
  auto ok = call("GET", "/metrics", "", "metrics-token");
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(ok.body.find("parley_http_requests_total"), std::string::npos);
}

TEST(MetricsText, TenantLabelsAreSummedAway) {
  std::string in =
      "# HELP parley_bot_turns_total Turns.\n"
      "# TYPE parley_bot_turns_total counter\n"
      "parley_bot_turns_total{bot=\"b1\",outcome=\"ok\"} 3\n"
      "parley_bot_turns_total{bot=\"b2\",outcome=\"ok\"} 4\n"
      "parley_bot_turns_total{bot=\"b2\",outcome=\"failed\"} 1\n"
      "parley_function_invocations_total{account=\"123\",function=\"f\"} 2\n"
      "parley_function_invocations_total{account=\"456\",function=\"g\"} 5\n"
      "parley_fn_seconds_bucket{account=\"1\",function=\"f\",le=\"0.5\"} 1.5\n"
      "parley_http_requests_total{route=\"a,b\\\"c\",status=\"200\"} 7\n"
      "parley_websockets_open 2\n";
  std::string out = sumTenantLabels(in);
  EXPECT_EQ(out,
            "# HELP parley_bot_turns_total Turns.\n"
            "# TYPE parley_bot_turns_total counter\n"
            "parley_bot_turns_total{outcome=\"ok\"} 7\n"
            "parley_bot_turns_total{outcome=\"failed\"} 1\n"
            "parley_function_invocations_total 7\n"
            "parley_fn_seconds_bucket{le=\"0.5\"} 1.5\n"
            "parley_http_requests_total{route=\"a,b\\\"c\",status=\"200\"} 7\n"
            "parley_websockets_open 2\n");
}

// A path segment is percent-decoded bytes, and error messages echo it ("user %91 does not
// exist"): a segment that is not UTF-8 made the error body invalid JSON. It is refused first.
TEST_F(HttpAppTest, PathAndQueryMustBeUtf8) {
  std::string bearer = loginBearer("admin");
  auto ok = call("GET", "/api/v1/accounts/123/users/caf\xC3\xA9", "", bearer);
  EXPECT_EQ(ok.status, 404);
  EXPECT_TRUE(json::parseObject(ok.body)) << ok.body;
  for (std::string target :
       {"/api/v1/accounts/123/users/\x91", "/api/v1/accounts/123/bots/a\xC0\xAF"}) {
    auto r = call("GET", target, "", bearer);
    EXPECT_EQ(r.status, 400) << target;
    auto o = json::parseObject(r.body);
    ASSERT_TRUE(o) << r.body;
    EXPECT_NE(json::getString(o->at("error").as_object(), "message").find("UTF-8"),
              std::string::npos);
  }
  HttpRequest q;
  q.method = "GET";
  q.target = "/api/v1/accounts/123/conversations?state=%FF";
  q.segments = {"api", "v1", "accounts", "123", "conversations"};
  q.query["state"] = "\xFF";
  q.headers["authorization"] = "Bearer " + bearer;
  auto r = parley::testing::await<HttpResponse>(
      [&](auto done) { app_->handle(std::move(q), std::move(done)); });
  EXPECT_EQ(r.status, 400);
  EXPECT_TRUE(json::parseObject(r.body)) << r.body;
}

TEST_F(HttpAppTest, HelpersParseCookiesAndAuthorization) {
  EXPECT_EQ(cookieValue("a=1; session_id=abc; b=2", "session_id"), "abc");
  EXPECT_EQ(cookieValue("a=1", "session_id"), "");
  EXPECT_EQ(authToken("Bearer xyz", "bearer"), "xyz");
  EXPECT_EQ(authToken("jwt a.b.c", "jwt"), "a.b.c");
  EXPECT_EQ(authToken("Basic x", "Bearer"), "");
}

std::string base64(const std::string& s) {
  std::string out(sodium_base64_ENCODED_LEN(s.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()),
                    s.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::string headerOf(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

TEST_F(HttpAppTest, BearersAreStoredHashed) {
  std::string bearer = loginBearer("agent");
  EXPECT_EQ(store_->accounts().getSession(bearer).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(store_->accounts().getSession(crypto::sha256Hex(bearer)));
}

TEST_F(HttpAppTest, PasswordChangeEndsSessionsAndKeysOfThatUserOnly) {
  std::string admin = loginBearer("admin");
  std::string agent = loginBearer("agent");
  auto key = call("POST", "/api/v1/accounts/123/apikeys", R"({"name":"ci"})", agent);
  ASSERT_EQ(key.status, 201) << key.body;
  std::string k = json::getString(*json::parseObject(key.body), "key");
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", k).status, 200);
  auto patch = call("PATCH", "/api/v1/accounts/123/users/" + agent_.id.str(),
                    R"({"password":"another-pw"})", admin);
  ASSERT_EQ(patch.status, 200) << patch.body;
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", agent).status, 401);
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", k).status, 401);
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", admin).status, 200);
}

TEST_F(HttpAppTest, DisabledUserCannotLogInOrUseItsTokens) {
  std::string admin = loginBearer("admin");
  std::string agent = loginBearer("agent");
  auto off = call("PATCH", "/api/v1/accounts/123/users/" + agent_.id.str(),
                  R"({"isEnabled":false})", admin);
  ASSERT_EQ(off.status, 200) << off.body;
  EXPECT_FALSE(json::parseObject(off.body)->at("isEnabled").as_bool());
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", agent).status, 401);
  auto again =
      call("POST", "/api/account/123/login?v=1.3", R"({"username":"agent","password":"pw-agent"})");
  EXPECT_EQ(again.status, 401);
  EXPECT_NE(again.body.find("disabled"), std::string::npos);
  auto self = call("PATCH", "/api/v1/accounts/123/users/" + admin_.id.str(),
                   R"({"isEnabled":false})", admin);
  EXPECT_EQ(self.status, 400);
  ASSERT_EQ(
      call("PATCH", "/api/v1/accounts/123/users/" + agent_.id.str(), R"({"isEnabled":true})", admin)
          .status,
      200);
  EXPECT_FALSE(loginBearer("agent").empty());
}

TEST_F(HttpAppTest, RevocationClosesTheUsersSockets) {
  std::vector<std::pair<AccountId, std::optional<UserId>>> told;
  auth_->setRevocationListener(
      [&](const AccountId& a, const std::optional<UserId>& u) { told.emplace_back(a, u); });
  std::string admin = loginBearer("admin");
  ASSERT_EQ(call("PATCH", "/api/v1/accounts/123/users/" + agent_.id.str(), R"({"roles":["AGENT"]})",
                 admin)
                .status,
            200);
  EXPECT_TRUE(told.empty()) << "the roles did not change: nothing to revoke";
  ASSERT_EQ(call("PATCH", "/api/v1/accounts/123/users/" + agent_.id.str(),
                 R"({"roles":["AGENT","AGENT_MANAGER"]})", admin)
                .status,
            200);
  ASSERT_EQ(told.size(), 1u);
  EXPECT_EQ(told[0].second, agent_.id);
  ASSERT_EQ(call("DELETE", "/api/v1/accounts/123/users/" + agent_.id.str(), "", admin).status, 200);
  ASSERT_EQ(told.size(), 2u);
  EXPECT_EQ(told[1].second, agent_.id);
}

TEST_F(HttpAppTest, ApiKeysForOthersNeedAdmin) {
  std::string admin = loginBearer("admin");
  std::string agent = loginBearer("agent");
  auto other = call("POST", "/api/v1/accounts/123/apikeys",
                    R"({"name":"x","userId":")" + admin_.id.str() + R"("})", agent);
  EXPECT_EQ(other.status, 403) << other.body;
  auto byAdmin =
      call("POST", "/api/v1/accounts/123/apikeys",
           R"({"name":"x","userId":")" + agent_.id.str() + R"(","scopes":["AGENT"]})", admin);
  ASSERT_EQ(byAdmin.status, 201) << byAdmin.body;
  auto o = *json::parseObject(byAdmin.body);
  EXPECT_EQ(json::getString(o, "userId"), agent_.id.str());
  EXPECT_EQ(json::getString(o, "createdBy"), admin_.id.str());
  auto del = call("DELETE", "/api/v1/accounts/123/apikeys/" + json::getString(o, "id"), "", agent);
  EXPECT_EQ(del.status, 200) << "a user may revoke its own key, whoever made it";
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", json::getString(o, "key")).status, 401);
}

TEST_F(HttpAppTest, LoginFloodGets429WithRetryAfterBeforeAnyPasswordCheck) {
  auto attempt = [&](const std::string& pw) {
    return call("POST", "/api/account/123/login?v=1.3",
                R"({"username":"agent","password":")" + pw + R"("})");
  };
  for (int i = 0; i < 5; ++i) EXPECT_EQ(attempt("wrong").status, 401) << i;
  auto throttled = attempt("wrong");
  EXPECT_EQ(throttled.status, 429);
  EXPECT_EQ(headerOf(throttled, "Retry-After"), "1");
  EXPECT_EQ(attempt("pw-agent").status, 429) << "a throttled attempt is not checked at all";
  clock_.advanceMs(1000);
  EXPECT_EQ(attempt("pw-agent").status, 200);
  // The success reset the user's counter.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(attempt("wrong").status, 401) << i;
  // Backoff 1, 2, 4, 8 s, then locked for 15 minutes at the 10th failure.
  for (int wait : {1, 2, 4, 8}) {
    auto r = attempt("wrong");
    EXPECT_EQ(r.status, 429);
    EXPECT_EQ(headerOf(r, "Retry-After"), std::to_string(wait));
    clock_.advanceMs(wait * 1000);
    EXPECT_EQ(attempt("wrong").status, 401);
  }
  auto r = attempt("wrong");
  EXPECT_EQ(r.status, 429);
  EXPECT_EQ(headerOf(r, "Retry-After"), "16");
  clock_.advanceMs(16'000);
  EXPECT_EQ(attempt("wrong").status, 401);
  auto locked = attempt("pw-agent");
  EXPECT_EQ(locked.status, 429);
  EXPECT_EQ(headerOf(locked, "Retry-After"), "900");
}

TEST_F(HttpAppTest, ControlCharactersInNamesAre400) {
  std::string admin = loginBearer("admin");
  auto skill = call("POST", "/api/v1/accounts/123/skills", R"({"name":"a\u0000b"})", admin);
  EXPECT_EQ(skill.status, 400) << skill.body;
  EXPECT_NE(skill.body.find("control character U+0000"), std::string::npos) << skill.body;
  auto user = call("POST", "/api/v1/accounts/123/users",
                   R"({"loginName":"x\ty","password":"secret1"})", admin);
  EXPECT_EQ(user.status, 400) << user.body;
  EXPECT_EQ(store_->accounts().listSkills(AccountId("123"))->size(), 0u);
}

TEST_F(HttpAppTest, DisabledAccountRefusesLoginsTokensAndSignups) {
  std::string agent = loginBearer("agent");
  ASSERT_TRUE(
      store_->accounts().setAccountStatus(AccountId("123"), store::AccountStatus::kDisabled));
  std::vector<AccountId> closed;
  auth_->setRevocationListener([&](const AccountId& a, const std::optional<UserId>& u) {
    if (!u) closed.push_back(a);
  });
  auth_->refreshAccountStatus();
  EXPECT_EQ(closed, std::vector<AccountId>{AccountId("123")});
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/me", "", agent).status, 401);
  auto login =
      call("POST", "/api/account/123/login?v=1.3", R"({"username":"agent","password":"pw-agent"})");
  EXPECT_EQ(login.status, 401);
  EXPECT_NE(login.body.find("disabled"), std::string::npos);
  EXPECT_EQ(call("POST", "/api/account/123/signup").status, 403);
}

// ------------------------------------------------------------------------- OAuth 2.0 (gateway)

// A gateway that answers 200 with what it was handed: the caller's account, roles and type.
class EchoGateway final : public api::Handler {
 public:
  std::vector<std::string> resources() const override { return {"lambdas", "events"}; }
  void handle(api::Request req, std::function<void(api::Response)> done) override {
    boost::json::array roles;
    for (const auto& r : req.caller.roles.names()) roles.emplace_back(r);
    done(api::Response{
        200, boost::json::serialize(boost::json::object{{"account", req.caller.account.str()},
                                                        {"roles", std::move(roles)},
                                                        {"login", req.caller.login_name}})});
  }
};

class OAuthAppTest : public HttpAppTest {
 protected:
  void SetUp() override {
    HttpAppTest::SetUp();
    app_->setGateway(std::make_shared<EchoGateway>());
    admin_bearer_ = loginBearer("admin");
  }

  // POST /api/account/123/oauth/token with the given body and headers.
  HttpResponse token(const std::string& body,
                     const std::string& content_type = "application/x-www-form-urlencoded",
                     const std::string& authorization = "",
                     std::map<std::string, std::string> query = {}, const std::string& acc = "123",
                     const std::string& method = "POST") {
    HttpRequest r;
    r.method = method;
    r.target = "/api/account/" + acc + "/oauth/token";
    r.segments = {"api", "account", acc, "oauth", "token"};
    r.query = std::move(query);
    r.body = body;
    r.tls = true;
    r.remote_address = "10.1.2.3";
    if (!content_type.empty()) r.headers["content-type"] = content_type;
    if (!authorization.empty()) r.headers["authorization"] = authorization;
    return parley::testing::await<HttpResponse>(
        [&](auto done) { app_->handle(std::move(r), std::move(done)); });
  }
  HttpResponse invoke(const std::string& bearer, const std::string& acc = "123") {
    return call("POST", "/api/account/" + acc + "/lambdas/f1/invoke?v=1&externalSystem=t",
                R"({"payload":{}})", bearer);
  }
  // A new app of account 123: {clientId, clientSecret}.
  std::pair<std::string, std::string> newApp(const std::string& name = "crm") {
    auto r = call("POST", "/api/v1/accounts/123/apps",
                  R"({"name":")" + name + R"(","scopes":["faas.lambda.invoke"]})", admin_bearer_);
    EXPECT_EQ(r.status, 201) << r.body;
    auto o = json::parseObject(r.body);
    return {json::getString(*o, "clientId"), json::getString(*o, "clientSecret")};
  }
  static std::string form(const std::string& id, const std::string& secret,
                          const std::string& extra = "") {
    return "grant_type=client_credentials&client_id=" + id + "&client_secret=" + secret + extra;
  }
  std::string accessToken(const std::pair<std::string, std::string>& app) {
    auto r = token(form(app.first, app.second));
    EXPECT_EQ(r.status, 200) << r.body;
    return json::getString(*json::parseObject(r.body), "access_token");
  }
  static std::string oauthErrorOf(const HttpResponse& r) {
    auto o = json::parseObject(r.body);
    return o ? json::getString(*o, "error") : "";
  }

  std::string admin_bearer_;
};

TEST_F(OAuthAppTest, AppsAreAdminOnlyAndTheSecretIsShownOnce) {
  auto [id, secret] = newApp();
  EXPECT_TRUE(secret.starts_with("ocs_")) << secret;
  EXPECT_EQ(secret.size(), 4u + 64u);
  auto list = call("GET", "/api/v1/accounts/123/apps", "", admin_bearer_);
  ASSERT_EQ(list.status, 200) << list.body;
  auto arr = json::parse(list.body);
  ASSERT_TRUE(arr && arr->is_array() && arr->as_array().size() == 1) << list.body;
  const auto& o = arr->as_array()[0].as_object();
  EXPECT_EQ(json::getString(o, "clientId"), id);
  EXPECT_EQ(json::getString(o, "name"), "crm");
  EXPECT_FALSE(o.contains("clientSecret"));
  EXPECT_EQ(list.body.find(secret), std::string::npos);
  EXPECT_EQ(list.body.find(crypto::sha256Hex(secret)), std::string::npos);
  // Stored as its hash only.
  auto stored = store_->oauth().getApp(AccountId("123"), id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->secret_hash, crypto::sha256Hex(secret));

  std::string agent = loginBearer("agent");
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/apps", "", agent).status, 403);
  auto refused = call("POST", "/api/v1/accounts/123/apps",
                      R"({"name":"x","scopes":["faas.lambda.invoke"]})", agent);
  EXPECT_EQ(refused.status, 403);
  EXPECT_NE(refused.body.find("ADMIN"), std::string::npos) << refused.body;
  EXPECT_EQ(call("DELETE", "/api/v1/accounts/123/apps/" + id, "", agent).status, 403);

  auto bad_scope = call("POST", "/api/v1/accounts/123/apps",
                        R"({"name":"x","scopes":["faas.admin"]})", admin_bearer_);
  EXPECT_EQ(bad_scope.status, 400);
  EXPECT_NE(bad_scope.body.find("faas.lambda.invoke"), std::string::npos) << bad_scope.body;
  EXPECT_EQ(call("POST", "/api/v1/accounts/123/apps", R"({"name":"x","scopes":[]})", admin_bearer_)
                .status,
            400);
  EXPECT_EQ(call("POST", "/api/v1/accounts/123/apps", R"({"scopes":["faas.lambda.invoke"]})",
                 admin_bearer_)
                .status,
            400);
  EXPECT_EQ(call("DELETE", "/api/v1/accounts/123/apps/nope", "", admin_bearer_).status, 404);
  EXPECT_EQ(call("DELETE", "/api/v1/accounts/123/apps/" + id, "", admin_bearer_).status, 200);
  EXPECT_EQ(call("GET", "/api/v1/accounts/123/apps", "", admin_bearer_).body, "[]");
}

TEST_F(OAuthAppTest, ClientCredentialsGiveAGatewayOnlyTokenThatExpires) {
  auto app = newApp();
  auto r = token(form(app.first, app.second, "&scope=faas.lambda.invoke"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(headerOf(r, "Cache-Control"), "no-store");
  auto o = json::parseObject(r.body);
  ASSERT_TRUE(o);
  EXPECT_EQ(json::getString(*o, "token_type"), "Bearer");
  EXPECT_EQ(json::getInt(*o, "expires_in"), 3600);
  EXPECT_EQ(json::getString(*o, "scope"), "faas.lambda.invoke");
  std::string t = json::getString(*o, "access_token");
  EXPECT_TRUE(t.starts_with("oat_")) << t;
  EXPECT_TRUE(store_->oauth().getAccessToken(crypto::sha256Hex(t)));

  auto ok = invoke(t);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.body,
            R"({"account":"123","roles":["FAAS_INVOCATION"],"login":"app:)" + app.first + R"("})");
  // Another account's path: 403.
  EXPECT_EQ(invoke(t, "456").status, 403);
  // Not a credential anywhere else.
  for (const char* path : {"me", "apikeys", "apps", "skills", "functions"})
    EXPECT_EQ(call("GET", std::string("/api/v1/accounts/123/") + path, "", t).status, 401) << path;
  EXPECT_EQ(call("POST", "/api/v1/accounts/123/apikeys", R"({"name":"k"})", t).status, 401);
  HttpRequest up;
  up.method = "GET";
  up.segments = {"ws_api", "account", "123", "messaging", "brand", t};
  auto d = parley::testing::await<UpgradeDecision>(
      [&](auto done) { app_->upgrade(up, std::move(done)); });
  ASSERT_TRUE(d.reject);
  EXPECT_EQ(d.reject->status, 401);

  // Expiry: 3600 s by default.
  clock_.advanceMs(3600 * 1000 - 1);
  EXPECT_EQ(invoke(t).status, 200);
  clock_.advanceMs(1);
  auto expired = invoke(t);
  EXPECT_EQ(expired.status, 401);
  EXPECT_NE(expired.body.find("expired"), std::string::npos) << expired.body;
}

TEST_F(OAuthAppTest, DeletingTheAppRevokesItsTokens) {
  auto a = newApp("a");
  auto b = newApp("b");
  std::string ta = accessToken(a);
  std::string tb = accessToken(b);
  EXPECT_EQ(invoke(ta).status, 200);
  ASSERT_EQ(call("DELETE", "/api/v1/accounts/123/apps/" + a.first, "", admin_bearer_).status, 200);
  auto revoked = invoke(ta);
  EXPECT_EQ(revoked.status, 401);
  EXPECT_NE(revoked.body.find("com.liveperson.faas.es.unauthorized"), std::string::npos);
  EXPECT_EQ(invoke(tb).status, 200) << "another app's token stays";
  // The deleted app's credentials get no new token.
  EXPECT_EQ(token(form(a.first, a.second)).status, 401);
}

TEST_F(OAuthAppTest, TokenEndpointAnswersRfc6749Errors) {
  auto app = newApp();
  auto expect = [&](const HttpResponse& r, int status, const std::string& error) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(oauthErrorOf(r), error) << r.body;
    auto o = json::parseObject(r.body);
    ASSERT_TRUE(o) << r.body;
    EXPECT_FALSE(json::getString(*o, "error_description").empty()) << r.body;
    EXPECT_EQ(headerOf(r, "Cache-Control"), "no-store");
  };
  expect(token(form(app.first, "ocs_wrong")), 401, "invalid_client");
  expect(token(form("unknown-client", app.second)), 401, "invalid_client");
  expect(token("grant_type=client_credentials&client_id=" + app.first), 401, "invalid_client");
  expect(token(form(app.first, app.second, "&scope=faas.admin")), 400, "invalid_scope");
  expect(token(form(app.first, app.second, "&scope=")), 400, "invalid_scope");
  expect(token("grant_type=password&client_id=" + app.first + "&client_secret=" + app.second), 400,
         "unsupported_grant_type");
  expect(token("client_id=" + app.first + "&client_secret=" + app.second), 400, "invalid_request");
  expect(token(form(app.first, app.second, "&grant_type=client_credentials")), 400,
         "invalid_request");
  expect(token(form(app.first, app.second), "text/plain"), 400, "invalid_request");
  expect(token("grant_type=client_credentials", "application/x-www-form-urlencoded", "", {}, "123",
               "GET"),
         405, "invalid_request");
  expect(token("grant_type=client_credentials&client_id=" + app.first,
               "application/x-www-form-urlencoded", "", {{"client_secret", app.second}}),
         400, "invalid_request");
  // The wrong secret with HTTP Basic: 401 with the challenge.
  std::string basic_wrong = app.first + ":nope";
  auto r = token("grant_type=client_credentials", "application/x-www-form-urlencoded",
                 "Basic " + base64(basic_wrong));
  expect(r, 401, "invalid_client");
  EXPECT_EQ(headerOf(r, "WWW-Authenticate"), R"(Basic realm="parley")");
  // Another account's path does not know the app.
  expect(token(form(app.first, app.second), "application/x-www-form-urlencoded", "", {}, "456"),
         401, "invalid_client");
}

TEST_F(OAuthAppTest, CredentialsInTheBodyOrWithBasicFormOrJson) {
  auto app = newApp();
  EXPECT_EQ(token(form(app.first, app.second)).status, 200);
  auto json_body = token(R"({"grant_type":"client_credentials","client_id":")" + app.first +
                             R"(","client_secret":")" + app.second + R"("})",
                         "application/json; charset=utf-8");
  EXPECT_EQ(json_body.status, 200) << json_body.body;
  auto basic =
      token("grant_type=client_credentials&scope=faas.lambda.invoke",
            "application/x-www-form-urlencoded", "Basic " + base64(app.first + ":" + app.second));
  EXPECT_EQ(basic.status, 200) << basic.body;
  // Both at once is refused.
  auto both = token(form(app.first, app.second), "application/x-www-form-urlencoded",
                    "Basic " + base64(app.first + ":" + app.second));
  EXPECT_EQ(both.status, 400) << both.body;
  EXPECT_EQ(oauthErrorOf(both), "invalid_request");
}

TEST_F(OAuthAppTest, FailedClientAuthenticationsAreThrottledLikeLogins) {
  auto app = newApp();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(token(form(app.first, "ocs_bad")).status, 401) << i;
  auto throttled = token(form(app.first, "ocs_bad"));
  EXPECT_EQ(throttled.status, 429) << throttled.body;
  EXPECT_EQ(oauthErrorOf(throttled), "slow_down");
  EXPECT_EQ(headerOf(throttled, "Retry-After"), "1");
  EXPECT_EQ(token(form(app.first, app.second)).status, 429) << "the right secret waits too";
  clock_.advanceMs(1000);
  EXPECT_EQ(token(form(app.first, app.second)).status, 200);
  // Logins are throttled apart: the app's failures do not touch the admin's login.
  EXPECT_FALSE(loginBearer("admin").empty());
}

TEST_F(OAuthAppTest, ParsesFormEncodingAndRefusesMalformedBasic) {
  auto p = parseTokenRequest("application/x-www-form-urlencoded",
                             "grant_type=client_credentials&client_id=a%2Bb&client_secret=x+y&"
                             "scope=faas.lambda.invoke%20other&unknown=1",
                             "", {});
  ASSERT_TRUE(p) << p.error().description;
  EXPECT_EQ(p->client_id, "a+b");
  EXPECT_EQ(p->client_secret, "x y");
  EXPECT_EQ(p->scope, "faas.lambda.invoke other");
  EXPECT_FALSE(p->basic);
  auto b = parseTokenRequest("", "", "basic " + base64("id%3A1:s%20s"), {});
  ASSERT_TRUE(b) << b.error().description;
  EXPECT_EQ(b->client_id, "id:1");
  EXPECT_EQ(b->client_secret, "s s");
  EXPECT_TRUE(b->basic);
  for (const std::string& bad : std::vector<std::string>{"!!!", base64("no-colon"), ""}) {
    auto r = parseTokenRequest("", "", "Basic " + bad, {});
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().error, "invalid_client");
    EXPECT_TRUE(r.error().basic_challenge);
  }
  auto big = parseTokenRequest("application/x-www-form-urlencoded",
                               std::string(kMaxTokenRequestBytes + 1, 'a'), "", {});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().status, 413);
  auto not_string = parseTokenRequest("application/json", R"({"client_id":5})", "", {});
  ASSERT_FALSE(not_string);
  EXPECT_EQ(not_string.error().error, "invalid_request");
}

// ----------------------------------------------------- the gateway's verified-token cache

TEST_F(OAuthAppTest, GatewayKeepsAVerifiedTokenForTheTtlWithoutReadingTheStore) {
  std::string agent = loginBearer("agent");
  ASSERT_EQ(invoke(agent).status, 200);
  // Deleted behind Auth's back (as another process would): the cache still answers until its
  // TTL (2 s) is over, then the store is read again.
  ASSERT_TRUE(store_->accounts().deleteSession(crypto::sha256Hex(agent)));
  EXPECT_EQ(invoke(agent).status, 200);
  clock_.advanceMs(1999);
  EXPECT_EQ(invoke(agent).status, 200);
  clock_.advanceMs(1);
  EXPECT_EQ(invoke(agent).status, 401);
}

TEST_F(OAuthAppTest, LogoutStopsTheBearerAtTheGatewayAtOnce) {
  std::vector<AccountId> told;
  auth_->setCredentialsListener([&](const AccountId& a) { told.push_back(a); });
  std::string agent = loginBearer("agent");
  ASSERT_EQ(invoke(agent).status, 200);
  ASSERT_EQ(call("POST", "/api/account/123/logout", "", agent).status, 200);
  auto after = invoke(agent);
  EXPECT_EQ(after.status, 401) << after.body;
  EXPECT_NE(after.body.find("com.liveperson.faas.es.unauthorized"), std::string::npos);
  EXPECT_EQ(told, std::vector<AccountId>{AccountId("123")}) << "the other nodes are told";
  EXPECT_EQ(invoke(admin_bearer_).status, 200);
}

TEST_F(OAuthAppTest, RevokedUserDeletedKeyAndDisabledAccountStopAtTheGatewayAtOnce) {
  std::string agent = loginBearer("agent");
  auto key = call("POST", "/api/v1/accounts/123/apikeys", R"({"name":"ci"})", agent);
  ASSERT_EQ(key.status, 201) << key.body;
  auto ko = *json::parseObject(key.body);
  std::string k = json::getString(ko, "key");
  ASSERT_EQ(invoke(k).status, 200);
  ASSERT_EQ(
      call("DELETE", "/api/v1/accounts/123/apikeys/" + json::getString(ko, "id"), "", agent).status,
      200);
  EXPECT_EQ(invoke(k).status, 401) << "a deleted API key";

  ASSERT_EQ(invoke(agent).status, 200);
  ASSERT_EQ(call("PATCH", "/api/v1/accounts/123/users/" + agent_.id.str(),
                 R"({"password":"another-pw"})", admin_bearer_)
                .status,
            200);
  EXPECT_EQ(invoke(agent).status, 401) << "a password change";

  // The password changed: log in with the new one.
  auto relog = call("POST", "/api/account/123/login?v=1.3",
                    R"({"username":"agent","password":"another-pw"})");
  ASSERT_EQ(relog.status, 200) << relog.body;
  std::string fresh = json::getString(*json::parseObject(relog.body), "bearer");
  ASSERT_EQ(invoke(fresh).status, 200);
  ASSERT_EQ(call("PATCH", "/api/v1/accounts/123/users/" + agent_.id.str(), R"({"isEnabled":false})",
                 admin_bearer_)
                .status,
            200);
  EXPECT_EQ(invoke(fresh).status, 401) << "a disabled user";

  ASSERT_EQ(invoke(admin_bearer_).status, 200);
  ASSERT_TRUE(
      store_->accounts().setAccountStatus(AccountId("123"), store::AccountStatus::kDisabled));
  auth_->refreshAccountStatus();
  EXPECT_EQ(invoke(admin_bearer_).status, 401) << "a disabled account";
}

TEST_F(OAuthAppTest, AnAccessTokenEvictedByNewerOnesStopsAtOnce) {
  oauth_ = std::make_unique<OAuth>(
      store_->oauth(), *auth_, clock_,
      OAuthOptions{3600LL * 1000, /*max_tokens_per_app=*/2, 100, LoginThrottleOptions{}});
  app_ = std::make_unique<App>(AppDeps{
      RestDeps{*store_, *engine_, *directory_, *auth_, *oauth_, inline_, clock_,
               crypto::PasswordCost::kMinimumForTest},
      protocol::SessionDeps{*engine_, hub_, *directory_, *auth_, inline_, clock_, metrics_, {}},
      metrics_, StaticFiles(""), MetricsAccess{"metrics-token", TenantLabels::kSummed}});
  app_->setGateway(std::make_shared<EchoGateway>());
  auto app = newApp();
  std::string first = accessToken(app);
  ASSERT_EQ(invoke(first).status, 200);
  std::string second = accessToken(app);
  EXPECT_EQ(invoke(first).status, 200) << "two tokens per app are kept";
  std::string third = accessToken(app);
  EXPECT_EQ(invoke(first).status, 401) << "the oldest was evicted by the third";
  EXPECT_EQ(invoke(second).status, 200);
  EXPECT_EQ(invoke(third).status, 200);
}

TEST_F(HttpAppTest, VerifiedTokenCacheKeepsNothingVerifiedAcrossAChange) {
  std::string agent = loginBearer("agent");
  auto p = auth_->authenticate(agent);
  ASSERT_TRUE(p);
  // A logout between the verification and remembering it: what was verified is not kept.
  auto generation = auth_->credentialsGeneration();
  auth_->dropCachedCredentials(AccountId("456"));
  auth_->rememberPrincipal(agent, *p, generation);
  EXPECT_FALSE(auth_->cachedPrincipal(agent));
  auth_->rememberPrincipal(agent, *p, auth_->credentialsGeneration());
  auto hit = auth_->cachedPrincipal(agent);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->user.id, agent_.id);
  // Another node's change: dropped, nobody told.
  std::vector<AccountId> told;
  auth_->setCredentialsListener([&](const AccountId& a) { told.push_back(a); });
  auth_->dropCachedCredentials(AccountId("123"));
  EXPECT_FALSE(auth_->cachedPrincipal(agent));
  EXPECT_TRUE(told.empty());
}

TEST_F(HttpAppTest, VerifiedTokenCacheIsBounded) {
  AuthOptions o;
  o.verified_token_capacity = 2;
  Auth small(store_->accounts(), clock_, hasher_, "k", o);
  small.refreshAccountStatus();
  std::vector<std::string> tokens = {loginBearer("agent"), loginBearer("agent"),
                                     loginBearer("admin")};
  for (const auto& t : tokens) {
    auto p = small.authenticate(t);
    ASSERT_TRUE(p);
    small.rememberPrincipal(t, *p, small.credentialsGeneration());
  }
  int kept = 0;
  for (const auto& t : tokens) kept += small.cachedPrincipal(t) ? 1 : 0;
  EXPECT_EQ(kept, 2);
  EXPECT_TRUE(small.cachedPrincipal(tokens[2])) << "the newest is kept";
}

}  // namespace
}  // namespace parley::server
