// The authorization table, walked against the running server. The rows come from
// docs/authorization.md itself (the same file policy_test.cpp compares with the policy's table):
// every REST row is called over real HTTP with a user holding exactly one role (each of the six),
// with an admin of another account and with no token; every protocol row is requested over a
// real agent WebSocket by each role. The answer must be exactly what the table says: 2xx/200 where
// the role has ✓, 403 naming the roles to ask for where it has —, 403 for the other account's
// token, 401 without one.
//
// The server is composed as main.cpp composes it (the real server, engine, function platform with
// V8, bot connector and structured-content validator) on the memory store, so two accounts can
// be made directly.

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <set>
#include <thread>

#include "../connector/ws_client.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/policy.h"
#include "common/testing/call.h"
#include "common/testing/role_table.h"
#include "connector/bot_service.h"
#include "connector/richcontent/richcontent_handler.h"
#include "connector/testing/corpus.h"
#include "conversation/conversation_engine.h"
#include "functions/runtime.h"
#include "functions/schedule/schedule_service.h"
#include "functions/service/function_service.h"
#include "functions/service/gateway.h"
#include "functions/testing/fake_host.h"
#include "server/server.h"
#include "store/memory/memory_store.h"

namespace parley::authz_test {
namespace {

namespace bj = boost::json;
namespace conv = parley::conversation;
namespace ws = parley::connector::testing;
using policy::Role;

const AccountId kAcc("7100");
const AccountId kOther("7200");

const char* kCode = R"JS(
function lambda(input, callback) { callback(null, {messages: ['ok']}); }
)JS";

// A blocking agent socket (`/messaging/brand/{bearer}`).
class AgentSocket {
 public:
  AgentSocket() : ws_(ioc_) {}
  // The HTTP status of the upgrade: 101 when open.
  int connect(const ws::HostPort& hp, const std::string& account, const std::string& bearer) {
    ws::tcp::resolver resolver(ioc_);
    ws::net::connect(ws_.next_layer(), resolver.resolve(hp.host, hp.port));
    ws::websocket::response_type res;
    ws::beast::error_code ec;
    ws_.handshake(res, hp.host + ":" + hp.port,
                  "/ws_api/account/" + account + "/messaging/brand/" + bearer + "?v=2.1", ec);
    body_ = res.body();
    return static_cast<int>(res.result_int());
  }
  const std::string& refusal() const { return body_; }
  // Sends a request; returns the response envelope (null on timeout).
  bj::value request(const std::string& type, bj::value body) {
    std::string id = std::to_string(++next_id_);
    ws_.write(ws::net::buffer(bj::serialize(
        bj::object{{"kind", "req"}, {"id", id}, {"type", type}, {"body", std::move(body)}})));
    for (int i = 0; i < 200; ++i) {
      timeval tv{10, 0};
      setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ws::beast::flat_buffer buf;
      ws::beast::error_code ec;
      ws_.read(buf, ec);
      if (ec) return nullptr;
      auto v = bj::parse(ws::beast::buffers_to_string(buf.data()));
      if (v.is_object() && v.as_object().contains("reqId") &&
          bj::value_to<std::string>(v.at("reqId")) == id)
        return v;
    }
    return nullptr;
  }
  void close() {
    ws::beast::error_code ec;
    ws_.close(ws::websocket::close_code::normal, ec);
  }

 private:
  ws::net::io_context ioc_;
  ws::websocket::stream<ws::tcp::socket> ws_;
  std::string body_;
  int next_id_ = 0;
};

struct RoleUser {
  Role role;
  store::User user;
  std::string bearer;
  SkillId skill;  // its own skill (for its assigned conversations)
  // Conversations assigned to it (messaging roles): publish and transfer to skill, transfer to
  // agent, close, TTR.
  std::vector<ConversationId> assigned;
  std::string oldId() const { return kAcc.str() + "." + user.id.str(); }
};

// Everything the walk needs: the server and the fixtures. Built once for the suite.
struct World {
  SystemClock clock;
  functions::testing::FakeHost host;
  std::filesystem::path dir;
  std::unique_ptr<store::Store> store;
  std::unique_ptr<functions::FunctionRuntime> runtime;
  std::unique_ptr<conv::ConversationService> engine;
  std::shared_ptr<functions::service::FunctionService> functions;
  std::shared_ptr<functions::service::Gateway> gateway;
  std::shared_ptr<functions::schedule::ScheduleService> schedules;
  std::shared_ptr<connector::BotService> bots;
  std::unique_ptr<server::Server> server;
  ws::HostPort hp;

  std::vector<RoleUser> roles;
  std::string setup_bearer;  // an admin with every FaaS role, for fixtures
  std::string other_bearer;  // an ADMIN of the other account
  // The bearer of the role user the walk is calling as (a call may need a fixture of its own).
  std::string acting_bearer;
  store::User third;    // an AGENT holding conversation third_conv
  store::User spare;    // a target for add/remove other and agent state of others
  SkillId queue_skill;  // every role user has it; queue_conv waits in it
  ConversationId queue_conv;
  ConversationId third_conv;
  std::string function_uuid;
  std::string deployment_id;
  std::string bot_id;
  SkillId bot_skill;
  int serial = 0;

  std::string unique(const std::string& prefix) { return prefix + std::to_string(++serial); }

  std::pair<int, std::string> http(const std::string& method, const std::string& target,
                                   const std::string& body, const std::string& bearer) {
    auto verb = ws::http::string_to_verb(method);
    return ws::httpRequest(hp, verb, target, body, bearer);
  }
  std::pair<int, std::string> rest(const std::string& method, const std::string& path,
                                   const std::string& body, const std::string& bearer,
                                   const AccountId& acc = kAcc) {
    return http(method, "/api/v1/accounts/" + acc.str() + "/" + path, body, bearer);
  }
  // A fixture call as the setup admin; fails the test unless 2xx.
  bj::value setup(const std::string& method, const std::string& path, const std::string& body) {
    auto [status, text] = rest(method, path, body, setup_bearer);
    EXPECT_TRUE(status >= 200 && status < 300)
        << method << " " << path << ": " << status << " " << text;
    return text.empty() ? bj::value() : bj::parse(text);
  }

  store::User addUser(const AccountId& acc, const std::string& login, std::vector<Role> roles,
                      std::vector<SkillId> skills) {
    store::User u;
    u.account = acc;
    u.login_name = login;
    u.pid = "pid-" + login;
    u.password_hash = *crypto::hashPassword("pw-" + login, crypto::PasswordCost::kMinimumForTest);
    u.roles = std::move(roles);
    u.skills = std::move(skills);
    u.max_open_conversations = 20;
    auto r = store->accounts().createUser(u);
    EXPECT_TRUE(r) << r.error().message;
    return *r;
  }
  std::string login(const AccountId& acc, const std::string& login) {
    auto [status, body] =
        http("POST", "/api/account/" + acc.str() + "/login?v=1.3",
             bj::serialize(bj::object{{"username", login}, {"password", "pw-" + login}}), "");
    EXPECT_EQ(status, 200) << body;
    return std::string(bj::parse(body).at("bearer").as_string());
  }
  SkillId addSkill(const std::string& name) {
    auto s = store->accounts().createSkill(store::Skill{kAcc, SkillId(), name, 0});
    EXPECT_TRUE(s);
    return s->id;
  }

  ConversationId openConversation(const std::string& consumer, const SkillId& skill) {
    conv::ConversationRequest req;
    req.account = kAcc;
    req.consumer = ConsumerId(consumer);
    req.skill = skill;
    auto c = parley::testing::call<store::Conversation>(
        [&](auto cb) { engine->requestConversation(std::move(req), cb); });
    EXPECT_TRUE(c) << c.error().message;
    return c->id;
  }
  void setState(const store::User& u, store::Availability a) {
    auto r = parley::testing::call<store::AgentState>(
        [&](auto cb) { engine->setAgentState(kAcc, u.id, a, cb); });
    EXPECT_TRUE(r) << r.error().message;
  }
  // Opens `n` conversations in `skill` and has `u` accept each (it is the only agent online in
  // that skill).
  std::vector<ConversationId> assignTo(const store::User& u, const SkillId& skill, int n) {
    std::vector<ConversationId> out;
    for (int i = 0; i < n; ++i) out.push_back(openConversation(unique("consumer-"), skill));
    setState(u, store::Availability::kOnline);
    std::set<std::string> done;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (done.size() < out.size() && std::chrono::steady_clock::now() < deadline) {
      for (const auto& ring : engine->ringsForAgent(kAcc, u.id)) {
        if (done.contains(ring.conversation.str())) continue;
        auto c = parley::testing::call<store::Conversation>([&](auto cb) {
          engine->acceptRing(conv::Actor::ofAgent(kAcc, u.id, u.pid), ring.ring_id, cb);
        });
        EXPECT_TRUE(c) << c.error().message;
        done.insert(ring.conversation.str());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(done.size(), out.size()) << "conversations assigned to " << u.login_name;
    setState(u, store::Availability::kAway);
    return out;
  }

  void build() {
    dir = std::filesystem::temp_directory_path() /
          ("parley_authz_table_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    store = store::makeMemoryStore(clock);
    for (const auto& acc : {kAcc, kOther})
      ASSERT_TRUE(store->accounts().createAccount(store::Account{acc, "acme", 300, 600, 3600, 0}));
    auto rt = functions::FunctionRuntime::create({}, host, clock);
    ASSERT_TRUE(rt) << rt.error().message;
    runtime = std::move(*rt);
    engine = conv::makeConversationService(*store, clock);
    ASSERT_TRUE(engine->recover());
    functions = std::make_shared<functions::service::FunctionService>(
        *store, crypto::SecretBox::randomForTest(), *runtime, clock);
    auto validator = connector::richcontent::Validator::load(connector::testing::schemaDir());
    ASSERT_TRUE(validator) << validator.error().message;
    connector::ConnectorOptions co;
    co.invoke_code = [rt = runtime.get()](const AccountId& a, std::string code,
                                          std::vector<store::EnvVar> env,
                                          functions::InvokeRequest req,
                                          std::function<void(functions::InvokeResult)> done) {
      rt->invokeCode(a, std::move(code), std::move(env), std::move(req), std::move(done));
    };
    bots = std::make_shared<connector::BotService>(*store, *engine, functions->runner(), *validator,
                                                   clock, co);
    ASSERT_TRUE(bots->start());
    server::ServerOptions so;
    so.data_dir = dir.string();
    so.http_listen = "127.0.0.1:0";
    so.https_listen = "";
    so.threads = 2;
    so.password_cost = crypto::PasswordCost::kMinimumForTest;
    so.metrics_token = "authz-metrics";
    auto s = server::makeServer(*store, *engine, clock, so);
    ASSERT_TRUE(s) << s.error().message;
    server = std::move(*s);
    ASSERT_TRUE(server->addHandler(functions));
    gateway = std::make_shared<functions::service::Gateway>(functions->runner(), *runtime,
                                                            store->functions(), clock);
    server->setGateway(gateway);
    // Limits above what the walk creates (a schedule per call of several rows).
    functions::schedule::ScheduleServiceOptions schedule_options;
    schedule_options.max_scheduled_functions_per_account = 1000;
    schedule_options.max_schedules_per_function = 1000;
    schedules =
        std::make_shared<functions::schedule::ScheduleService>(*store, clock, schedule_options);
    ASSERT_TRUE(server->addHandler(schedules));
    ASSERT_TRUE(server->addHandler(bots));
    ASSERT_TRUE(server->addHandler(
        std::make_shared<connector::richcontent::RichContentHandler>(*validator)));
    auto ep = server->start();
    ASSERT_TRUE(ep) << ep.error().message;
    hp = ws::HostPort::fromUrl(ep->http_url);

    queue_skill = addSkill("queue");
    bot_skill = addSkill("bots");
    addUser(kAcc, "setup", {Role::kAdmin, Role::kFaasAdmin, Role::kFaasDeveloper}, {});
    setup_bearer = login(kAcc, "setup");
    addUser(kOther, "other-admin", {Role::kAdmin}, {});
    other_bearer = login(kOther, "other-admin");
    SkillId third_skill = addSkill("third");
    third = addUser(kAcc, "third", {Role::kAgent}, {third_skill});
    spare = addUser(kAcc, "spare", {Role::kAgent}, {});
    for (Role r : policy::kAllRoles) {
      RoleUser ru;
      ru.role = r;
      ru.skill = addSkill(std::string("skill-") + policy::roleName(r));
      ru.user =
          addUser(kAcc, std::string("role-") + policy::roleName(r), {r}, {ru.skill, queue_skill});
      ru.bearer = login(kAcc, ru.user.login_name);
      roles.push_back(std::move(ru));
    }
    // Conversations assigned to each user that may take conversations, to the third agent, and
    // one waiting in the queue every role user serves.
    for (auto& ru : roles)
      if (policy::rule(policy::Action::kAgentSocket).allowed.has(ru.role))
        ru.assigned = assignTo(ru.user, ru.skill, 4);
    third_conv = assignTo(third, third_skill, 1).front();
    queue_conv = openConversation("queue-consumer", queue_skill);

    // A deployed function (one deployment to restore) and a started bot.
    auto f = setup(
        "POST", "functions",
        bj::serialize(bj::object{
            {"name", "fixture"}, {"event", "bot_connectors_custom_integration"}, {"code", kCode}}));
    function_uuid = std::string(f.at("uuid").as_string());
    setup("POST", "functions/" + function_uuid + "/deploy", "{}");
    auto deployments = setup("GET", "functions/" + function_uuid + "/deployments", "");
    ASSERT_TRUE(deployments.is_array() && !deployments.as_array().empty()) << deployments;
    deployment_id = std::string(deployments.as_array().front().at("uuid").as_string());
    bot_id = createBot();
    setup("POST", "bots/" + bot_id + "/start", "{}");
  }

  std::string createBot() {
    auto b = setup("POST", "bots",
                   bj::serialize(bj::object{{"name", unique("bot-")},
                                            {"vendor", "CUSTOM_INTEGRATION"},
                                            {"functionUuid", function_uuid},
                                            {"conversationTypes", bj::array{"MESSAGING"}},
                                            {"skills", bj::array{bot_skill.str()}},
                                            {"disclaimerAccepted", true}}));
    return std::string(b.at("id").as_string());
  }
  // A schedule of the fixture function.
  std::string createSchedule() {
    auto sc = setup("POST", "schedules",
                    R"({"lambdaUUID":")" + function_uuid + R"(","cronExpression":"0 0 * * *"})");
    return std::string(sc.at("uuid").as_string());
  }
  std::string createFunction() {
    auto f = setup("POST", "functions",
                   bj::serialize(bj::object{{"name", unique("fn-")},
                                            {"event", "bot_connectors_custom_integration"},
                                            {"code", kCode}}));
    return std::string(f.at("uuid").as_string());
  }

  void teardown() {
    if (server) server->stop();
    server.reset();
    if (bots) bots->stop();
    bots.reset();
    gateway.reset();
    schedules.reset();
    functions.reset();
    engine.reset();
    runtime.reset();
    std::filesystem::remove_all(dir);
  }
};

World* world = nullptr;

struct RestCall {
  std::string method;
  std::string path;
  std::string body;
};

// How to make each documented REST call; `fresh` calls set up their own target first (they
// consume it).
std::map<std::string, std::function<RestCall(World&)>> restCalls() {
  std::map<std::string, std::function<RestCall(World&)>> m;
  auto fixed = [&m](std::string id, std::string method, std::string path, std::string body = "") {
    m[id] = [=](World&) { return RestCall{method, path, body}; };
  };
  fixed("me.get", "GET", "me");
  fixed("apikeys.create", "POST", "apikeys", R"({"name":"table"})");
  fixed("apikeys.list", "GET", "apikeys");
  // A key of the caller's own, made with the caller's credential.
  m["apikeys.revoke"] = [](World& w) {
    auto [status, text] = w.rest("POST", "apikeys", R"({"name":"to revoke"})", w.acting_bearer);
    EXPECT_EQ(status, 201) << text;
    std::string id = status == 201 ? std::string(bj::parse(text).at("id").as_string()) : "none";
    return RestCall{"DELETE", "apikeys/" + id, ""};
  };
  fixed("apps.list", "GET", "apps");
  m["apps.create"] = [](World& w) {
    return RestCall{"POST", "apps",
                    bj::serialize(bj::object{{"name", w.unique("app-")},
                                             {"scopes", bj::array{"faas.lambda.invoke"}}})};
  };
  // An app of its own for each call (deleting consumes it).
  m["apps.delete"] = [](World& w) {
    auto a = w.setup("POST", "apps",
                     bj::serialize(bj::object{{"name", w.unique("gone-app-")},
                                              {"scopes", bj::array{"faas.lambda.invoke"}}}));
    std::string id = a.is_object() ? std::string(a.at("clientId").as_string()) : "none";
    return RestCall{"DELETE", "apps/" + id, ""};
  };
  fixed("skills.list", "GET", "skills");
  m["skills.create"] = [](World& w) {
    return RestCall{"POST", "skills", bj::serialize(bj::object{{"name", w.unique("s-")}})};
  };
  m["skills.delete"] = [](World& w) {
    return RestCall{"DELETE", "skills/" + w.addSkill(w.unique("del-")).str(), ""};
  };
  fixed("users.list", "GET", "users");
  m["users.get"] = [](World& w) { return RestCall{"GET", "users/" + w.spare.id.str(), ""}; };
  m["users.create"] = [](World& w) {
    return RestCall{"POST", "users",
                    bj::serialize(bj::object{{"loginName", w.unique("u-")},
                                             {"password", "secret-1"},
                                             {"roles", bj::array{"Agent"}}})};
  };
  m["users.update"] = [](World& w) {
    return RestCall{"PATCH", "users/" + w.spare.id.str(), R"({"maxOpenConversations":7})"};
  };
  m["users.delete"] = [](World& w) {
    auto u = w.addUser(kAcc, w.unique("gone-"), {Role::kAgent}, {});
    return RestCall{"DELETE", "users/" + u.id.str(), ""};
  };
  fixed("conversations.list", "GET", "conversations");
  m["conversations.get"] = [](World& w) {
    return RestCall{"GET", "conversations/" + w.queue_conv.str(), ""};
  };
  m["conversations.messages"] = [](World& w) {
    return RestCall{"GET", "conversations/" + w.queue_conv.str() + "/messages", ""};
  };
  // A closed conversation of its own for each call (an erasure is for good).
  m["conversations.erase"] = [](World& w) {
    ConversationId id = w.openConversation(w.unique("erased-consumer-"), w.queue_skill);
    auto closed = parley::testing::call<store::Conversation>([&](auto cb) {
      w.engine->updateConversation(conv::Actor::ofSystem(kAcc), id, {conv::CloseField{}}, cb);
    });
    EXPECT_TRUE(closed) << closed.error().message;
    return RestCall{"DELETE", "conversations/" + id.str() + "/content", ""};
  };
  fixed("functions.list", "GET", "functions");
  m["functions.create"] = [](World& w) {
    return RestCall{"POST", "functions",
                    bj::serialize(bj::object{{"name", w.unique("f-")},
                                             {"event", "bot_connectors_custom_integration"}})};
  };
  fixed("functions.templates", "GET", "functions/templates");
  m["functions.get"] = [](World& w) { return RestCall{"GET", "functions/" + w.function_uuid, ""}; };
  m["functions.update"] = [](World& w) {
    return RestCall{"PUT", "functions/" + w.function_uuid, R"({"description":"table"})"};
  };
  m["functions.delete"] = [](World& w) {
    return RestCall{"DELETE", "functions/" + w.createFunction(), ""};
  };
  m["functions.deploy"] = [](World& w) {
    return RestCall{"POST", "functions/" + w.function_uuid + "/deploy", "{}"};
  };
  m["functions.undeploy"] = [](World& w) {
    std::string uuid = w.createFunction();
    w.setup("POST", "functions/" + uuid + "/deploy", "{}");
    return RestCall{"POST", "functions/" + uuid + "/undeploy", "{}"};
  };
  m["functions.invoke"] = [](World& w) {
    return RestCall{"POST", "functions/" + w.function_uuid + "/invoke", R"({"payload":{}})"};
  };
  m["functions.logs"] = [](World& w) {
    return RestCall{"GET", "functions/" + w.function_uuid + "/logs", ""};
  };
  m["functions.deployments"] = [](World& w) {
    return RestCall{"GET", "functions/" + w.function_uuid + "/deployments", ""};
  };
  m["functions.restore"] = [](World& w) {
    return RestCall{"POST",
                    "functions/" + w.function_uuid + "/deployments/" + w.deployment_id + "/restore",
                    "{}"};
  };
  fixed("secrets.list", "GET", "secrets");
  fixed("secrets.put", "PUT", "secrets/table-key", R"({"value":"v"})");
  m["secrets.delete"] = [](World& w) {
    std::string key = w.unique("k-");
    w.setup("PUT", "secrets/" + key, R"({"value":"v"})");
    return RestCall{"DELETE", "secrets/" + key, ""};
  };
  fixed("secrets.audit", "GET", "secrets/audit");
  m["secrets.value"] = [](World& w) {
    w.setup("PUT", "secrets/readable", R"({"value":"v"})");
    return RestCall{"GET", "secrets/readable", ""};
  };
  fixed("schedules.list", "GET", "schedules");
  m["schedules.create"] = [](World& w) {
    return RestCall{"POST", "schedules",
                    R"({"lambdaUUID":")" + w.function_uuid + R"(","cronExpression":"0 0 * * *"})"};
  };
  m["schedules.get"] = [](World& w) {
    return RestCall{"GET", "schedules/" + w.createSchedule(), ""};
  };
  m["schedules.update"] = [](World& w) {
    return RestCall{"PUT", "schedules/" + w.createSchedule(), R"({"isActive":false})"};
  };
  m["schedules.delete"] = [](World& w) {
    return RestCall{"DELETE", "schedules/" + w.createSchedule(), ""};
  };
  fixed("allowlist.get", "GET", "allowlist");
  fixed("allowlist.put", "PUT", "allowlist", R"({"domains":["example.com"]})");
  fixed("bots.list", "GET", "bots");
  m["bots.create"] = [](World& w) {
    return RestCall{"POST", "bots",
                    bj::serialize(bj::object{{"name", w.unique("b-")},
                                             {"vendor", "CUSTOM_INTEGRATION"},
                                             {"functionUuid", w.function_uuid},
                                             {"conversationTypes", bj::array{"MESSAGING"}},
                                             {"skills", bj::array{w.bot_skill.str()}},
                                             {"disclaimerAccepted", true}})};
  };
  fixed("bots.images.get", "GET", "bots/image-allowlist");
  fixed("bots.images.put", "PUT", "bots/image-allowlist", R"({"entries":["img.example.com"]})");
  fixed("bots.images.delete", "DELETE", "bots/image-allowlist");
  m["bots.get"] = [](World& w) { return RestCall{"GET", "bots/" + w.bot_id, ""}; };
  m["bots.update"] = [](World& w) {
    return RestCall{"PUT", "bots/" + w.bot_id, R"({"disclaimerAccepted":true})"};
  };
  m["bots.delete"] = [](World& w) { return RestCall{"DELETE", "bots/" + w.createBot(), ""}; };
  m["bots.start"] = [](World& w) {
    return RestCall{"POST", "bots/" + w.createBot() + "/start", "{}"};
  };
  m["bots.stop"] = [](World& w) {
    std::string id = w.createBot();
    w.setup("POST", "bots/" + id + "/start", "{}");
    return RestCall{"POST", "bots/" + id + "/stop", "{}"};
  };
  m["bots.test"] = [](World& w) {
    return RestCall{"POST", "bots/" + w.bot_id + "/test-connection", "{}"};
  };
  m["bots.test.unsaved"] = [](World& w) {
    return RestCall{"POST", "bots/test-connection",
                    bj::serialize(bj::object{{"name", "unsaved"},
                                             {"vendor", "CUSTOM_INTEGRATION"},
                                             {"functionUuid", w.function_uuid},
                                             {"conversationTypes", bj::array{"MESSAGING"}},
                                             {"skills", bj::array{w.bot_skill.str()}}})};
  };
  m["bots.turns"] = [](World& w) { return RestCall{"GET", "bots/" + w.bot_id + "/turns", ""}; };
  m["bots.tester.create"] = [](World& w) {
    return RestCall{"POST", "bots/" + w.bot_id + "/tester", R"({"functionVersion":"draft"})"};
  };
  // A session belongs to the user who started it: made with the caller's credential (a role
  // that may not start one gets the 403 of the row itself).
  auto session = [](World& w) {
    auto [status, text] = w.rest("POST", "bots/" + w.bot_id + "/tester", "{}", w.acting_bearer);
    return status == 201 ? std::string(bj::parse(text).at("sessionId").as_string())
                         : std::string("none");
  };
  m["bots.tester.get"] = [session](World& w) {
    return RestCall{"GET", "bots/" + w.bot_id + "/tester/" + session(w), ""};
  };
  m["bots.tester.message"] = [session](World& w) {
    return RestCall{"POST", "bots/" + w.bot_id + "/tester/" + session(w) + "/messages",
                    R"({"text":"hi"})"};
  };
  m["bots.tester.delete"] = [session](World& w) {
    return RestCall{"DELETE", "bots/" + w.bot_id + "/tester/" + session(w), ""};
  };
  m["bots.replay"] = [](World& w) {
    return RestCall{"POST", "bots/" + w.bot_id + "/replay", R"({"functionVersion":"draft"})"};
  };
  fixed("richcontent.validate", "POST", "richcontent/validate",
        R"({"structuredContent":{"type":"vertical","elements":[{"type":"text","text":"hi"}]}})");
  return m;
}

class AuthzTableTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    world = new World();
    world->build();
  }
  static void TearDownTestSuite() {
    world->teardown();
    delete world;
    world = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(world && world->server) << "the server did not start";
    auto doc = policy::testing::readRoleTables(PARLEY_SOURCE_DIR "/docs/authorization.md");
    ASSERT_TRUE(doc) << doc.error().message;
    rows_ = std::move(*doc);
    ASSERT_FALSE(rows_.empty());
  }
  // The documented rows of one surface, with the policy's action.
  std::vector<std::pair<policy::testing::DocumentedRule, policy::Action>> rowsOf(
      policy::Surface surface) {
    std::vector<std::pair<policy::testing::DocumentedRule, policy::Action>> out;
    for (const auto& d : rows_) {
      auto a = policy::actionById(d.id);
      EXPECT_TRUE(a) << "documented rule " << d.id << " is not in the policy";
      if (a && policy::rule(*a).surface == surface) out.emplace_back(d, *a);
    }
    return out;
  }

  std::vector<policy::testing::DocumentedRule> rows_;
};

bool refusalNamesRoles(const std::string& body, policy::RoleSet allowed) {
  if (allowed.empty())
    return body.find("not allowed for any role") != std::string::npos ||
           body.find("never returned") != std::string::npos;
  return body.find(policy::describeRoles(allowed)) != std::string::npos;
}

TEST_F(AuthzTableTest, EveryRestRowWithEveryRole) {
  World& w = *world;
  auto calls = restCalls();
  auto rows = rowsOf(policy::Surface::kRest);
  EXPECT_EQ(rows.size(), calls.size()) << "every documented REST row needs a call here";
  for (const auto& [row, action] : rows) {
    auto make = calls.find(row.id);
    if (make == calls.end()) {
      ADD_FAILURE() << "no call for documented row " << row.id;
      continue;
    }
    for (const auto& ru : w.roles) {
      w.acting_bearer = ru.bearer;
      RestCall c = make->second(w);
      // The call is the documented one.
      auto m = policy::matchRoute(c.method, [&] {
        std::vector<std::string> segs;
        std::string p = c.path;
        for (std::size_t i = 0; i <= p.size();) {
          auto s = p.find('/', i);
          if (s == std::string::npos) s = p.size();
          segs.push_back(p.substr(i, s - i));
          i = s + 1;
        }
        return segs;
      }());
      EXPECT_EQ(m.action, action) << row.id << ": " << c.method << " " << c.path;
      auto [status, body] = w.rest(c.method, c.path, c.body, ru.bearer);
      const bool allowed = row.allowed.has(ru.role);
      std::string what = row.id + " (" + c.method + " " + c.path + ") as " +
                         policy::roleName(ru.role) + ": " + std::to_string(status) + " " + body;
      if (allowed) {
        EXPECT_TRUE(status >= 200 && status < 300) << what;
      } else {
        EXPECT_EQ(status, 403) << what;
        EXPECT_TRUE(refusalNamesRoles(body, row.allowed)) << what;
      }
    }
    w.acting_bearer = w.setup_bearer;
    RestCall c = make->second(w);
    auto [other_status, other_body] = w.rest(c.method, c.path, c.body, w.other_bearer);
    EXPECT_EQ(other_status, 403) << row.id << " with another account's token: " << other_body;
    auto [none_status, none_body] = w.rest(c.method, c.path, c.body, "");
    EXPECT_EQ(none_status, 401) << row.id << " without a token: " << none_body;
  }
}

// How to make each documented gateway call (paths after /api/account/{acc}/, without the query).
std::map<std::string, RestCall> gatewayCalls(World& w) {
  const std::string input = R"({"timestamp":1,"headers":[],"payload":{}})";
  return {
      {"gateway.invoke", {"POST", "lambdas/" + w.function_uuid + "/invoke", input}},
      {"gateway.events.invoke", {"POST", "events/bot_connectors_custom_integration/invoke", input}},
      {"gateway.events.implemented",
       {"GET", "events/bot_connectors_custom_integration/isImplemented", ""}},
  };
}

// The functions gateway's rows (/api/account/{acc}/…): each role as the table says, with
// LivePerson's error body; another account's token 403, no token 401.
TEST_F(AuthzTableTest, EveryGatewayRowWithEveryRole) {
  World& w = *world;
  const std::string q = "?v=1&externalSystem=authz";
  std::map<std::string, RestCall> calls = gatewayCalls(w);
  auto rows = rowsOf(policy::Surface::kGateway);
  EXPECT_EQ(rows.size(), calls.size()) << "every documented gateway row needs a call here";
  auto gw = [&](const RestCall& c, const std::string& bearer, const AccountId& acc = kAcc) {
    return w.http(c.method, "/api/account/" + acc.str() + "/" + c.path + q, c.body, bearer);
  };
  for (const auto& [row, action] : rows) {
    auto it = calls.find(row.id);
    if (it == calls.end()) {
      ADD_FAILURE() << "no call for documented row " << row.id;
      continue;
    }
    const RestCall& c = it->second;
    std::vector<std::string> segs;
    for (std::size_t i = 0; i <= c.path.size();) {
      auto sl = c.path.find('/', i);
      if (sl == std::string::npos) sl = c.path.size();
      segs.push_back(c.path.substr(i, sl - i));
      i = sl + 1;
    }
    EXPECT_EQ(policy::matchRoute(c.method, segs, policy::Surface::kGateway).action, action)
        << row.id;
    // Not a REST v1 route.
    EXPECT_FALSE(policy::matchRoute(c.method, segs).action) << row.id;
    for (const auto& ru : w.roles) {
      auto [status, body] = gw(c, ru.bearer);
      std::string what =
          row.id + " as " + policy::roleName(ru.role) + ": " + std::to_string(status) + " " + body;
      if (row.allowed.has(ru.role)) {
        EXPECT_EQ(status, 200) << what;
      } else {
        EXPECT_EQ(status, 403) << what;
        EXPECT_TRUE(refusalNamesRoles(body, row.allowed)) << what;
        EXPECT_NE(body.find("com.liveperson.faas.es.forbidden"), std::string::npos) << what;
      }
    }
    auto [other_status, other_body] = gw(c, w.other_bearer);
    EXPECT_EQ(other_status, 403) << row.id << " with another account's token: " << other_body;
    auto [none_status, none_body] = gw(c, "");
    EXPECT_EQ(none_status, 401) << row.id << " without a token: " << none_body;
    EXPECT_NE(none_body.find("com.liveperson.faas.es.unauthorized"), std::string::npos);
  }
}

// An OAuth 2.0 access token (client credentials of an app, scope faas.lambda.invoke) acts as
// FAAS_INVOCATION on the gateway rows and is no credential on any REST row or the agent socket.
TEST_F(AuthzTableTest, OAuthAccessTokenIsACredentialOnlyForTheGatewayRows) {
  World& w = *world;
  auto app = w.setup("POST", "apps", R"({"name":"authz-walk","scopes":["faas.lambda.invoke"]})");
  ASSERT_TRUE(app.is_object()) << app;
  auto [token_status, token_body] =
      w.http("POST", "/api/account/" + kAcc.str() + "/oauth/token",
             bj::serialize(bj::object{{"grant_type", "client_credentials"},
                                      {"client_id", app.at("clientId")},
                                      {"client_secret", app.at("clientSecret")}}),
             "");
  ASSERT_EQ(token_status, 200) << token_body;
  const std::string token(bj::parse(token_body).at("access_token").as_string());

  auto calls = restCalls();
  for (const auto& [row, action] : rowsOf(policy::Surface::kRest)) {
    auto make = calls.find(row.id);
    ASSERT_NE(make, calls.end()) << row.id;
    w.acting_bearer = w.setup_bearer;
    RestCall c = make->second(w);
    auto [status, body] = w.rest(c.method, c.path, c.body, token);
    EXPECT_EQ(status, 401) << row.id << " with an access token: " << body;
  }
  auto gw = gatewayCalls(w);
  for (const auto& [row, action] : rowsOf(policy::Surface::kGateway)) {
    const RestCall& c = gw.at(row.id);
    auto [status, body] =
        w.http(c.method, "/api/account/" + kAcc.str() + "/" + c.path + "?v=1&externalSystem=authz",
               c.body, token);
    EXPECT_EQ(status, row.allowed.has(Role::kFaasInvocation) ? 200 : 403)
        << row.id << " with an access token: " << body;
    auto [other_status, other_body] = w.http(
        c.method, "/api/account/" + kOther.str() + "/" + c.path + "?v=1&externalSystem=authz",
        c.body, token);
    EXPECT_EQ(other_status, 403) << row.id << " in another account: " << other_body;
  }
  AgentSocket socket;
  EXPECT_EQ(socket.connect(w.hp, kAcc.str(), token), 401) << socket.refusal();
}

// An AGENT reads only the conversations visible to it; the list is filtered, not refused.
TEST_F(AuthzTableTest, AgentsReadOnlyVisibleConversationsOverRest) {
  World& w = *world;
  for (const auto& ru : w.roles) {
    const bool any = policy::rule(policy::Action::kReadAnyConversation).allowed.has(ru.role);
    const bool visible =
        policy::rule(policy::Action::kReadVisibleConversation).allowed.has(ru.role);
    auto [status, body] = w.rest("GET", "conversations/" + w.third_conv.str(), "", ru.bearer);
    EXPECT_EQ(status, any ? 200 : 403) << policy::roleName(ru.role) << ": " << body;
    auto [ms, mbody] =
        w.rest("GET", "conversations/" + w.third_conv.str() + "/messages", "", ru.bearer);
    EXPECT_EQ(ms, any ? 200 : 403) << policy::roleName(ru.role) << ": " << mbody;
    auto [ls, lbody] = w.rest("GET", "conversations?limit=1000", "", ru.bearer);
    if (!visible && !any) {
      EXPECT_EQ(ls, 403) << lbody;
      continue;
    }
    ASSERT_EQ(ls, 200) << lbody;
    std::set<std::string> ids;
    bj::value list = bj::parse(lbody);
    for (const auto& c : list.as_array()) ids.insert(std::string(c.at("id").as_string()));
    EXPECT_EQ(ids.contains(w.third_conv.str()), any) << policy::roleName(ru.role);
    EXPECT_TRUE(ids.contains(w.queue_conv.str())) << policy::roleName(ru.role);
    for (const auto& mine : ru.assigned) EXPECT_TRUE(ids.contains(mine.str()));
  }
}

// One protocol request per documented protocol row, as `ru` on its open socket.
bj::value protocolRequest(World& w, AgentSocket& s, const RoleUser& ru, const std::string& id) {
  auto field = [&](const ConversationId& c, bj::array fields) {
    return s.request(".ams.cm.UpdateConversationField",
                     bj::object{{"conversationId", c.str()}, {"conversationField", fields}});
  };
  const std::string spare_old = kAcc.str() + "." + w.spare.id.str();
  const ConversationId none("none");
  const auto& mine =
      ru.assigned.size() == 4 ? ru.assigned : std::vector<ConversationId>{none, none, none, none};
  if (id == "conversations.subscribe.own")
    return s.request(".ams.aam.SubscribeExConversations",
                     bj::object{{"convState", bj::array{"OPEN"}},
                                {"agentIds", bj::array{bj::string(ru.oldId())}}});
  if (id == "conversations.subscribe.all")
    return s.request(".ams.aam.SubscribeExConversations",
                     bj::object{{"convState", bj::array{"OPEN"}}});
  if (id == "conversations.read.visible")
    return s.request(".ams.ms.QueryMessages",
                     bj::object{{"dialogId", w.queue_conv.str()}, {"newerThanSequence", 0}});
  if (id == "conversations.read.any")
    return s.request(".ams.ms.QueryMessages",
                     bj::object{{"dialogId", w.third_conv.str()}, {"newerThanSequence", 0}});
  if (id == "routing.tasks") return s.request(".ams.routing.SubscribeRoutingTasks", bj::object{});
  if (id == "agentstate.own")
    return s.request(".ams.routing.SetAgentState", bj::object{{"availability", "AWAY"}});
  if (id == "agentstate.other")
    return s.request(".ams.routing.SetAgentState",
                     bj::object{{"availability", "AWAY"}, {"agentUserId", spare_old}});
  if (id == "agentstate.subscribe")
    return s.request(".ams.routing.SubscribeAgentsState", bj::object{});
  if (id == "profile.read")
    return s.request(".ams.userprofile.GetUserProfile", bj::string("queue-consumer"));
  if (id == "participants.join.manager")
    return field(w.third_conv,
                 bj::array{bj::object{
                     {"field", "ParticipantsChange"}, {"type", "ADD"}, {"role", "MANAGER"}}});
  if (id == "participants.join.reader")
    return field(w.third_conv,
                 bj::array{bj::object{
                     {"field", "ParticipantsChange"}, {"type", "ADD"}, {"role", "READER"}}});
  if (id == "participants.add.other")
    return field(w.third_conv, bj::array{bj::object{{"field", "ParticipantsChange"},
                                                    {"type", "ADD"},
                                                    {"role", "READER"},
                                                    {"userId", spare_old}}});
  if (id == "participants.remove.other")
    return field(w.third_conv, bj::array{bj::object{{"field", "ParticipantsChange"},
                                                    {"type", "REMOVE"},
                                                    {"role", "READER"},
                                                    {"userId", spare_old}}});
  if (id == "messages.publish")
    return s.request(".ams.ms.PublishEvent",
                     bj::object{{"dialogId", mine[0].str()},
                                {"event", bj::object{{"type", "ContentEvent"},
                                                     {"contentType", "text/plain"},
                                                     {"message", "hello"}}}});
  if (id == "conversations.ttr")
    return field(mine[3], bj::array{bj::object{{"field", "TTRField"}, {"ttrType", "URGENT"}}});
  if (id == "conversations.transfer.skill")
    return field(
        mine[0],
        bj::array{bj::object{{"field", "ParticipantsChange"},
                             {"type", "REMOVE"},
                             {"role", "ASSIGNED_AGENT"},
                             {"userId", ru.oldId()}},
                  bj::object{{"field", "Skill"}, {"type", "UPDATE"}, {"skill", ru.skill.str()}}});
  if (id == "conversations.transfer.agent")
    return field(
        mine[1],
        bj::array{bj::object{{"field", "ParticipantsChange"},
                             {"type", "REMOVE"},
                             {"role", "ASSIGNED_AGENT"},
                             {"userId", ru.oldId()}},
                  bj::object{{"field", "ParticipantsChange"},
                             {"type", "SUGGEST"},
                             {"role", "ASSIGNED_AGENT"},
                             {"userId", spare_old}},
                  bj::object{{"field", "Skill"}, {"type", "UPDATE"}, {"skill", ru.skill.str()}}});
  if (id == "conversations.close")
    return field(mine[2], bj::array{bj::object{{"field", "ConversationStateField"},
                                               {"conversationState", "CLOSE"}}});
  ADD_FAILURE() << "no protocol request for documented row " << id;
  return nullptr;
}

TEST_F(AuthzTableTest, EveryProtocolRowWithEveryRole) {
  World& w = *world;
  auto rows = rowsOf(policy::Surface::kProtocol);
  ASSERT_FALSE(rows.empty());
  // The socket row first: the others need the socket.
  std::stable_partition(rows.begin(), rows.end(),
                        [](const auto& r) { return r.second == policy::Action::kAgentSocket; });
  ASSERT_EQ(rows.front().second, policy::Action::kAgentSocket);
  for (const auto& ru : w.roles) {
    AgentSocket s;
    int status = s.connect(w.hp, kAcc.str(), ru.bearer);
    const bool open = status == 101;
    EXPECT_EQ(open, rows.front().first.allowed.has(ru.role))
        << "socket.agent as " << policy::roleName(ru.role) << ": " << status << " " << s.refusal();
    if (!open) {
      EXPECT_EQ(status, 403) << s.refusal();
      EXPECT_TRUE(refusalNamesRoles(s.refusal(), rows.front().first.allowed)) << s.refusal();
      // Everything else goes over the socket: the table must not allow any of it.
      for (const auto& [row, action] : rows)
        EXPECT_FALSE(row.allowed.has(ru.role))
            << row.id << " is allowed for " << policy::roleName(ru.role)
            << " but the agent socket is not";
      continue;
    }
    for (std::size_t i = 1; i < rows.size(); ++i) {
      const auto& row = rows[i].first;
      bj::value resp = protocolRequest(w, s, ru, row.id);
      ASSERT_TRUE(resp.is_object())
          << row.id << " as " << policy::roleName(ru.role) << ": no response";
      std::int64_t code = resp.at("code").to_number<std::int64_t>();
      std::string what = row.id + " as " + policy::roleName(ru.role) + ": " + bj::serialize(resp);
      if (row.allowed.has(ru.role)) {
        EXPECT_EQ(code, 200) << what;
      } else {
        EXPECT_EQ(code, 403) << what;
        EXPECT_TRUE(refusalNamesRoles(bj::serialize(resp), row.allowed)) << what;
      }
    }
    s.close();
  }
  // Another account's bearer and a made-up one do not open the socket.
  AgentSocket other;
  EXPECT_NE(other.connect(w.hp, kAcc.str(), w.other_bearer), 101);
  AgentSocket none;
  EXPECT_EQ(none.connect(w.hp, kAcc.str(), "0123456789abcdef"), 401) << none.refusal();
}

}  // namespace
}  // namespace parley::authz_test
