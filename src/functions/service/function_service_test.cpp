#include "functions/service/function_service.h"

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <sstream>

#include "common/json.h"
#include "common/testing/api_request.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "functions/service/platform_host.h"
#include "functions/templates.h"
#include "store/memory/memory_store.h"

namespace parley::functions::service {
namespace {

namespace bj = boost::json;

constexpr char kEcho[] = "function lambda(input, callback) { callback(null, input.payload); }";

std::string codeReturning(const std::string& value) {
  return "function lambda(input, callback) { callback(null, " + value + "); }";
}

class FunctionServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount({AccountId("acc1"), "one"}));
    ASSERT_TRUE(store_->accounts().createAccount({AccountId("acc2"), "two"}));
    host_ = std::make_unique<PlatformHost>(store_->functions(), box_, clock_);
    startService();
  }
  void TearDown() override {
    service_.reset();
    runtime_.reset();
  }

  void startService() {
    RuntimeOptions o;
    o.threads = 1;
    o.default_deadline = std::chrono::milliseconds(2000);
    o.deploy_deadline = std::chrono::milliseconds(1000);
    o.outbound_allow = outbound_allow_;
    auto r = FunctionRuntime::create(o, *host_, clock_);
    ASSERT_TRUE(r) << r.error().message;
    runtime_ = std::move(*r);
    FunctionServiceOptions so;
    so.test_deadline = std::chrono::milliseconds(2000);
    so.review_result = review_;
    so.on_change = [this](const AccountId& acc, const FunctionId& id) {
      std::lock_guard lock(changes_mu_);
      changes_.push_back(acc.str() + "/" + id.str());
    };
    service_ = std::make_unique<FunctionService>(*store_, box_, *runtime_, clock_, so);
  }

  // Sends one request through api::Handler and waits for the response.
  api::Response call(const std::string& method, const std::string& target,
                     const std::string& body = "", std::vector<std::string> roles = {"ADMIN"},
                     const std::string& account = "acc1") {
    api::Request req;
    req.method = method;
    parley::testing::fillTarget(req, target);
    req.body = body;
    req.caller.account = AccountId(account);
    req.caller.user = UserId("1000");
    req.caller.login_name = "tester";
    req.caller.roles = std::move(roles);
    return parley::testing::await<api::Response>(
        [&](auto done) { service_->handle(std::move(req), std::move(done)); });
  }

  static bj::value body(const api::Response& r) {
    auto v = json::parse(r.body);
    EXPECT_TRUE(v) << r.body;
    return v ? *v : bj::value();
  }
  static bj::object obj(const api::Response& r) {
    auto v = body(r);
    EXPECT_TRUE(v.is_object()) << r.body;
    return v.is_object() ? v.as_object() : bj::object();
  }
  static std::string errorMessage(const api::Response& r) {
    auto o = obj(r);
    if (auto* e = o.if_contains("error"); e && e->is_object())
      return json::getString(e->as_object(), "message");
    return "";
  }

  // Creates a function and returns its uuid.
  std::string create(const std::string& name, const std::string& code = kEcho,
                     const std::string& account = "acc1", const std::string& event = "no_event") {
    bj::object b{{"name", name}, {"description", "d"}, {"event", event}};
    if (!code.empty()) b["code"] = code;
    auto r = call("POST", "functions", json::dump(b), {"ADMIN"}, account);
    EXPECT_EQ(r.status, 201) << r.body;
    return json::getString(obj(r), "uuid");
  }
  api::Response put(const std::string& uuid, const bj::object& b,
                    std::vector<std::string> roles = {"ADMIN"}) {
    return call("PUT", "functions/" + uuid, json::dump(b), std::move(roles));
  }
  api::Response deploy(const std::string& uuid, std::vector<std::string> roles = {"ADMIN"}) {
    return call("POST", "functions/" + uuid + "/deploy", "", std::move(roles));
  }

  // A production invocation through the service's recording Runner.
  InvokeResult invokeProduction(const std::string& uuid, const std::string& payload = "{}",
                                const std::string& account = "acc1") {
    InvokeRequest req;
    req.account = AccountId(account);
    req.function = FunctionId(uuid);
    req.input_json = R"({"timestamp":1,"headers":[],"payload":)" + payload + "}";
    req.deadline = std::chrono::milliseconds(2000);
    auto r = parley::testing::await<InvokeResult>(
        [&](auto done) { service_->runner().invoke(req, std::move(done)); });
    service_->waitIdleForTest();
    return r;
  }
  // A test invocation through POST /functions/{uuid}/invoke.
  bj::object testInvoke(const std::string& uuid, const std::string& payload = "{}",
                        std::vector<std::string> roles = {"ADMIN"}) {
    auto r = call("POST", "functions/" + uuid + "/invoke", R"({"payload":)" + payload + "}",
                  std::move(roles));
    EXPECT_EQ(r.status, 200) << r.body;
    return obj(r);
  }

  testing::FakeClock clock_;
  std::vector<std::string> outbound_allow_;  // RuntimeOptions::outbound_allow of startService
  crypto::SecretBox box_ = crypto::SecretBox::randomForTest();
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<PlatformHost> host_;
  std::unique_ptr<FunctionRuntime> runtime_;
  std::function<std::optional<bj::object>(const AccountId&, const std::string&, store::Channel,
                                          std::string_view)>
      review_;
  std::unique_ptr<FunctionService> service_;
  std::mutex changes_mu_;
  std::vector<std::string> changes_;  // on_change calls: "account/uuid"
};

// ---- CRUD ------------------------------------------------------------------------------------

TEST_F(FunctionServiceTest, CreateUsesTheEventTemplateAndStartsAsDraft) {
  auto r =
      call("POST", "functions",
           R"({"name":"bot","description":"my bot","event":"bot_connectors_custom_integration"})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto f = obj(r);
  EXPECT_EQ(json::getString(f, "name"), "bot");
  EXPECT_EQ(json::getString(f, "state"), "Draft");
  EXPECT_EQ(json::getInt(f, "version"), 1);
  EXPECT_EQ(json::getString(f, "event"), "bot_connectors_custom_integration");
  EXPECT_EQ(json::getString(f, "code"), templateFor("bot_connectors_custom_integration").code);
  EXPECT_EQ(json::getString(f, "createdBy"), "tester");
  EXPECT_TRUE(f.at("lastDeployment").is_null());

  auto list = call("GET", "functions");
  ASSERT_EQ(list.status, 200);
  auto arr = body(list).as_array();
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(json::getString(arr[0].as_object(), "uuid"), json::getString(f, "uuid"));
  EXPECT_FALSE(arr[0].as_object().contains("code"));  // the list is a summary

  auto got = call("GET", "functions/" + json::getString(f, "uuid"));
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(json::getString(obj(got), "description"), "my bot");
  EXPECT_TRUE(obj(got).contains("metrics"));
}

TEST_F(FunctionServiceTest, NameRulesAndConflicts) {
  auto post = [&](const std::string& name, const std::string& acc = "acc1") {
    return call("POST", "functions", json::dump(bj::object{{"name", name}, {"event", "no_event"}}),
                {"ADMIN"}, acc);
  };
  EXPECT_EQ(post("").status, 400);
  EXPECT_EQ(post("has space").status, 400);
  EXPECT_EQ(post("dots.not.allowed").status, 400);
  EXPECT_EQ(post(std::string(101, 'a')).status, 400);
  EXPECT_EQ(post(std::string(100, 'a')).status, 201);
  EXPECT_EQ(post("Ok_name-1").status, 201);
  auto dup = post("Ok_name-1");
  EXPECT_EQ(dup.status, 409);
  EXPECT_NE(errorMessage(dup).find("already exists"), std::string::npos) << dup.body;
  EXPECT_EQ(post("Ok_name-1", "acc2").status, 201);  // names are unique per account only
}

TEST_F(FunctionServiceTest, CreateValidatesEventAndCode) {
  auto r = call("POST", "functions", R"({"name":"x","event":"no_such_event"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(errorMessage(r).find("unknown event"), std::string::npos);
  EXPECT_EQ(call("POST", "functions", R"({"name":"x"})").status, 400);
  std::string big = "//" + std::string(100'000 - 2, 'x');
  auto ok = call("POST", "functions",
                 json::dump(bj::object{{"name", "big"}, {"event", "no_event"}, {"code", big}}));
  EXPECT_EQ(ok.status, 201);
  auto too_big =
      call("POST", "functions",
           json::dump(bj::object{{"name", "big2"}, {"event", "no_event"}, {"code", big + "x"}}));
  EXPECT_EQ(too_big.status, 413);
  auto err = obj(too_big).at("error").as_object();
  EXPECT_EQ(json::getString(err, "code"), "TOO_LARGE");
  EXPECT_EQ(call("POST", "functions", "not json").status, 400);
}

TEST_F(FunctionServiceTest, DeleteRemovesTheFunctionAndItsDeployment) {
  auto id = create("gone");
  ASSERT_EQ(deploy(id).status, 200);
  ASSERT_TRUE(runtime_->isDeployed(AccountId("acc1"), FunctionId(id)));
  EXPECT_EQ(call("DELETE", "functions/" + id).status, 200);
  EXPECT_EQ(call("GET", "functions/" + id).status, 404);
  EXPECT_FALSE(runtime_->isDeployed(AccountId("acc1"), FunctionId(id)));
  EXPECT_EQ(call("DELETE", "functions/" + id).status, 404);
}

// ---- lifecycle -------------------------------------------------------------------------------

TEST_F(FunctionServiceTest, StateMachineDraftProductiveModified) {
  auto id = create("fsm");
  auto r = put(id, {{"code", codeReturning("1")}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::getString(obj(r), "state"), "Draft");  // saving a Draft keeps it Draft
  EXPECT_EQ(json::getInt(obj(r), "version"), 2);

  r = deploy(id);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::getString(obj(r), "state"), "Productive");
  auto last = obj(r).at("lastDeployment").as_object();
  EXPECT_EQ(json::getString(last, "deploymentState"), "Productive");
  EXPECT_EQ(json::getInt(last, "lambdaVersion"), 2);
  EXPECT_TRUE(invokeProduction(id).ok);

  r = put(id, {{"code", codeReturning("2")}});
  EXPECT_EQ(json::getString(obj(r), "state"), "Modified");
  EXPECT_EQ(json::getInt(obj(r), "version"), 3);
  // Still running the deployed code until the next deploy.
  EXPECT_EQ(invokeProduction(id).result_json, "1");

  r = put(id, {{"code", codeReturning("2")}});  // unchanged: no new version
  EXPECT_EQ(json::getInt(obj(r), "version"), 3);

  r = deploy(id);
  EXPECT_EQ(json::getString(obj(r), "state"), "Productive");
  EXPECT_EQ(invokeProduction(id).result_json, "2");

  r = call("POST", "functions/" + id + "/undeploy");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(json::getString(obj(r), "state"), "Draft");
  auto gone = invokeProduction(id);
  EXPECT_FALSE(gone.ok);
  EXPECT_EQ(gone.error_code, kErrNotDeployed);
}

TEST_F(FunctionServiceTest, DeployErrorIsShownWithLineNumber) {
  auto id = create("broken", "function lambda(input, callback) {\n  callback(null, 1);\n  }}\n");
  auto r = deploy(id);
  EXPECT_TRUE(r.status == 400 || r.status == 422) << r.status;
  std::string msg = errorMessage(r);
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("Fix the code"), std::string::npos) << msg;

  auto f = obj(call("GET", "functions/" + id));
  EXPECT_EQ(json::getString(f, "state"), "Build Error");
  auto last = f.at("lastDeployment").as_object();
  EXPECT_EQ(json::getString(last, "deploymentState"), "Build Error");
  auto err = last.at("deploymentError").as_object();
  EXPECT_NE(json::getString(err, "errorMsg").find("line 3"), std::string::npos);
  EXPECT_FALSE(runtime_->isDeployed(AccountId("acc1"), FunctionId(id)));

  // A code without a lambda is rejected too.
  put(id, {{"code", "var x = 1;"}});
  EXPECT_NE(deploy(id).status, 200);

  // Fixing it and deploying again works.
  put(id, {{"code", codeReturning("5")}});
  r = deploy(id);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(invokeProduction(id).result_json, "5");
}

TEST_F(FunctionServiceTest, FailedRedeployKeepsThePreviousDeploymentRunning) {
  auto id = create("keep", codeReturning("1"));
  ASSERT_EQ(deploy(id).status, 200);
  put(id, {{"code", "function lambda( {"}});
  EXPECT_NE(deploy(id).status, 200);
  EXPECT_EQ(invokeProduction(id).result_json, "1");
}

TEST_F(FunctionServiceTest, RedeployAndKeepLastFiveDeployments) {
  auto id = create("many", codeReturning("0"));
  for (int i = 1; i <= 7; ++i) {
    put(id, {{"code", codeReturning(std::to_string(i))}});
    clock_.advanceMs(10);
    ASSERT_EQ(deploy(id).status, 200);
  }
  EXPECT_EQ(invokeProduction(id).result_json, "7");
  auto r = call("GET", "functions/" + id + "/deployments");
  ASSERT_EQ(r.status, 200);
  auto ds = body(r).as_array();
  ASSERT_EQ(ds.size(), 5u);
  // Newest first: versions 8, 7, 6, 5, 4 (version 1 was the create).
  for (std::size_t i = 0; i < ds.size(); ++i) {
    EXPECT_EQ(json::getInt(ds[i].as_object(), "lambdaVersion"), 8 - static_cast<int>(i));
    EXPECT_EQ(json::getString(ds[i].as_object(), "code"), codeReturning(std::to_string(7 - i)));
  }
}

TEST_F(FunctionServiceTest, RestoreChangesCodeWithoutRedeploying) {
  auto id = create("restore", codeReturning("\"A\""));
  ASSERT_EQ(deploy(id).status, 200);
  clock_.advanceMs(10);
  put(id, {{"code", codeReturning("\"B\"")}});
  ASSERT_EQ(deploy(id).status, 200);
  auto ds = body(call("GET", "functions/" + id + "/deployments")).as_array();
  ASSERT_EQ(ds.size(), 2u);
  std::string first = json::getString(ds[1].as_object(), "uuid");

  auto r = call("POST", "functions/" + id + "/deployments/" + first + "/restore");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::getString(obj(r), "code"), codeReturning("\"A\""));
  EXPECT_EQ(json::getString(obj(r), "state"), "Modified");
  EXPECT_EQ(invokeProduction(id).result_json, "\"B\"");  // not redeployed
  ASSERT_EQ(deploy(id).status, 200);
  EXPECT_EQ(invokeProduction(id).result_json, "\"A\"");

  EXPECT_EQ(call("POST", "functions/" + id + "/deployments/nope/restore").status, 404);
  // Restoring is an edit: FaaS developers may, others may not.
  EXPECT_EQ(
      call("POST", "functions/" + id + "/deployments/" + first + "/restore", "", {"FAAS_DEVELOPER"})
          .status,
      200);
  EXPECT_EQ(
      call("POST", "functions/" + id + "/deployments/" + first + "/restore", "", {"FAAS_ADMIN"})
          .status,
      403);
}

// ---- invocations -----------------------------------------------------------------------------

TEST_F(FunctionServiceTest, TestInvokeRunsSavedCodeAndReturnsLogs) {
  auto id = create("inv",
                   "function lambda(input, callback) {\n"
                   "  console.debug('dbg', {a: 1});\n"
                   "  console.info('hello ' + input.payload.name);\n"
                   "  callback(null, {greeting: 'hi ' + input.payload.name, h: input.headers});\n"
                   "}\n");
  // Not deployed: test invoke still runs the saved code.
  auto r = call("POST", "functions/" + id + "/invoke",
                R"({"headers":[{"key":"X-A","value":"1"}],"payload":{"name":"Ann"}})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto o = obj(r);
  EXPECT_FALSE(o.contains("error"));
  auto result = o.at("result").as_object();
  EXPECT_EQ(json::getString(result, "greeting"), "hi Ann");
  EXPECT_EQ(json::dump(result.at("h")), R"([{"key":"X-A","value":"1"}])");
  auto logs = o.at("logs").as_array();
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_EQ(json::getString(logs[0].as_object(), "level"), "Debug");  // shown in tests
  EXPECT_EQ(json::getString(logs[1].as_object(), "message"), "hello Ann");
  EXPECT_TRUE(o.contains("durationMs"));

  // Test invocation logs are never stored.
  service_->waitIdleForTest();
  EXPECT_EQ(body(call("GET", "functions/" + id + "/logs")).as_array().size(), 0u);

  // Edits are tested before deploying.
  put(id, {{"code", codeReturning("42")}});
  EXPECT_EQ(json::dump(testInvoke(id).at("result")), "42");
}

// The composition root's review of a result (the connector's) is asked with the function's
// event and the channel of the request, and its answer is returned as `connector`.
TEST_F(FunctionServiceTest, TestInvokeCarriesTheReviewOfTheResultForTheChannelAskedFor) {
  auto id = create("rev", codeReturning(R"({messages: ['hi']})"));
  // Without a reviewer there is no review.
  EXPECT_FALSE(testInvoke(id).contains("connector"));

  std::vector<std::string> seen;
  review_ = [&seen](const AccountId& acc, const std::string& event, store::Channel ch,
                    std::string_view result) -> std::optional<bj::object> {
    seen.push_back(acc.str() + "|" + event + "|" + (ch == store::Channel::kChat ? "CHAT" : "MSG") +
                   "|" + std::string(result));
    return bj::object{{"verdict", "OK"}};
  };
  service_.reset();
  runtime_.reset();
  startService();
  auto r = call("POST", "functions/" + id + "/invoke", R"({"payload":{},"channel":"chat"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::dump(obj(r).at("connector")), R"({"verdict":"OK"})");
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], R"(acc1|no_event|CHAT|{"messages":["hi"]})");
  // MESSAGING is the default; anything else is refused before the function runs.
  EXPECT_EQ(call("POST", "functions/" + id + "/invoke", R"({"payload":{}})").status, 200);
  EXPECT_EQ(seen.back().substr(0, 17), "acc1|no_event|MSG");
  r = call("POST", "functions/" + id + "/invoke", R"({"payload":{},"channel":"SMS"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("'channel' must be"), std::string::npos) << r.body;
  EXPECT_EQ(seen.size(), 2u);
  // A failed invocation has no result to review.
  put(id, {{"code", "function lambda(input, callback) { callback(new Error('x')); }"}});
  EXPECT_FALSE(testInvoke(id).contains("connector"));
  EXPECT_EQ(seen.size(), 2u);
}

TEST_F(FunctionServiceTest, TestInvokeReportsFunctionErrors) {
  auto id = create("err", "function lambda(input, callback) { callback(new Error('boom')); }");
  auto o = testInvoke(id);
  ASSERT_TRUE(o.contains("error")) << json::dump(o);
  auto e = o.at("error").as_object();
  EXPECT_EQ(json::getString(e, "code"), "com.liveperson.faas.handler.custom-failure");
  EXPECT_NE(json::getString(e, "message").find("boom"), std::string::npos);
  EXPECT_TRUE(o.at("result").is_null());

  put(id, {{"code", "function lambda(input, callback) { undefinedThing(); }"}});
  EXPECT_EQ(json::getString(testInvoke(id).at("error").as_object(), "code"),
            "com.liveperson.faas.handler.runtime-exception");
}

TEST_F(FunctionServiceTest, TestInvokePayloadLimit) {
  auto id = create("limit");
  // {"s":"..."} is 8 characters plus the string.
  std::string at_limit = json::dump(bj::object{{"s", std::string(10'000 - 8, 'x')}});
  ASSERT_EQ(at_limit.size(), 10'000u);
  EXPECT_EQ(call("POST", "functions/" + id + "/invoke", R"({"payload":)" + at_limit + "}").status,
            200);
  std::string over = json::dump(bj::object{{"s", std::string(10'000 - 7, 'x')}});
  auto r = call("POST", "functions/" + id + "/invoke", R"({"payload":)" + over + "}");
  EXPECT_EQ(r.status, 413);
}

TEST_F(FunctionServiceTest, ProductionInvocationsStoreLogsAndMetrics) {
  auto id = create("prod",
                   "function lambda(input, callback) {\n"
                   "  console.debug('never stored');\n"
                   "  console.info('info ' + input.payload.n);\n"
                   "  console.warn('warn', {k: 1});\n"
                   "  if (input.payload.fail) return callback(new Error('failed on purpose'));\n"
                   "  callback(null, input.payload.n);\n"
                   "}\n");
  ASSERT_EQ(deploy(id).status, 200);
  EXPECT_TRUE(invokeProduction(id, R"({"n":1})").ok);
  clock_.advanceMs(1000);
  TimeMs second = clock_.nowMs();
  EXPECT_TRUE(invokeProduction(id, R"({"n":2})").ok);
  clock_.advanceMs(1000);
  auto failed = invokeProduction(id, R"({"n":3,"fail":true})");
  EXPECT_FALSE(failed.ok);

  auto logs = body(call("GET", "functions/" + id + "/logs")).as_array();
  // 2 per successful call, 2 + the failure entry for the failed one; no Debug.
  ASSERT_EQ(logs.size(), 7u);
  for (const auto& l : logs) EXPECT_NE(json::getString(l.as_object(), "level"), "Debug");
  EXPECT_EQ(json::getString(logs[0].as_object(), "level"), "Error");  // newest first
  EXPECT_NE(json::getString(logs[0].as_object(), "message").find("custom-failure"),
            std::string::npos);
  EXPECT_FALSE(json::getString(logs[0].as_object(), "requestId").empty());

  auto errors = body(call("GET", "functions/" + id + "/logs?level=Error")).as_array();
  EXPECT_EQ(errors.size(), 1u);
  auto warns = body(call("GET", "functions/" + id + "/logs?level=warn,error")).as_array();
  EXPECT_EQ(warns.size(), 4u);
  auto since =
      body(call("GET", "functions/" + id + "/logs?since=" + std::to_string(second))).as_array();
  EXPECT_EQ(since.size(), 5u);
  EXPECT_EQ(call("GET", "functions/" + id + "/logs?level=Loud").status, 400);
  EXPECT_EQ(body(call("GET", "functions/" + id + "/logs?limit=2")).as_array().size(), 2u);

  auto m = obj(call("GET", "functions/" + id)).at("metrics").as_object();
  EXPECT_EQ(json::getInt(m, "invocations"), 3);
  EXPECT_EQ(json::getInt(m, "errors"), 1);
  EXPECT_EQ(
      json::getInt(m.at("errorsByCode").as_object(), "com.liveperson.faas.handler.custom-failure"),
      1);
  EXPECT_TRUE(m.at("durationMs").as_object().contains("p99"));

  std::string prom = service_->prometheusText();
  EXPECT_NE(
      prom.find("parley_function_invocations_total{account=\"acc1\",function=\"" + id + "\"} 3"),
      std::string::npos)
      << prom;
  EXPECT_NE(prom.find("parley_function_duration_seconds_count"), std::string::npos);
  EXPECT_NE(prom.find("parley_functions_deployed 1"), std::string::npos);
}

// ---- environment variables -------------------------------------------------------------------

TEST_F(FunctionServiceTest, EnvVarRules) {
  auto id = create("env");
  auto setEnv = [&](const std::string& key, const std::string& value) {
    bj::array env{bj::object{{"key", key}, {"value", value}}};
    return put(id, {{"environmentVariables", env}});
  };
  auto reserved = setEnv("BRAND_ID", "x");
  EXPECT_EQ(reserved.status, 400);
  EXPECT_NE(errorMessage(reserved).find("Variable name is reserved and thereby blocked for use"),
            std::string::npos);
  EXPECT_EQ(setEnv("NODE_ENV", "x").status, 400);
  EXPECT_EQ(setEnv("LAMBDA_UUID", "x").status, 400);
  EXPECT_EQ(setEnv("1ABC", "x").status, 400);
  EXPECT_EQ(setEnv("lower", "x").status, 400);
  EXPECT_EQ(setEnv("A-B", "x").status, 400);
  EXPECT_EQ(setEnv("", "x").status, 400);
  EXPECT_EQ(setEnv(std::string(200, 'A'), "x").status, 200);
  EXPECT_EQ(setEnv(std::string(201, 'A'), "x").status, 400);
  EXPECT_EQ(setEnv("_OK_1", std::string(200, 'v')).status, 200);
  EXPECT_EQ(setEnv("_OK_1", std::string(201, 'v')).status, 400);
  bj::array dup{bj::object{{"key", "A"}, {"value", "1"}}, bj::object{{"key", "A"}, {"value", "2"}}};
  EXPECT_EQ(put(id, {{"environmentVariables", dup}}).status, 400);
}

TEST_F(FunctionServiceTest, EnvVarChangesApplyOnRedeploy) {
  auto id = create("envdeploy", codeReturning("process.env.GREETING"));
  put(id, {{"environmentVariables", bj::array{bj::object{{"key", "GREETING"}, {"value", "one"}}}}});
  ASSERT_EQ(deploy(id).status, 200);
  EXPECT_EQ(invokeProduction(id).result_json, "\"one\"");
  auto r = put(
      id, {{"environmentVariables", bj::array{bj::object{{"key", "GREETING"}, {"value", "two"}}}}});
  EXPECT_EQ(json::getString(obj(r), "state"), "Modified");
  EXPECT_EQ(invokeProduction(id).result_json, "\"one\"");
  // A test invocation already sees the saved value.
  EXPECT_EQ(json::dump(testInvoke(id).at("result")), "\"two\"");
  ASSERT_EQ(deploy(id).status, 200);
  EXPECT_EQ(invokeProduction(id).result_json, "\"two\"");
}

// ---- secrets ---------------------------------------------------------------------------------

TEST_F(FunctionServiceTest, SecretsAreEncryptedAtRestAndUsableFromFunctions) {
  const std::string plaintext = "s3cr3t-value-that-must-not-leak";
  auto r =
      call("PUT", "secrets/api_key", json::dump(bj::object{{"value", plaintext}}), {"FAAS_ADMIN"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find(plaintext), std::string::npos);

  auto list = call("GET", "secrets", "", {"FAAS_DEVELOPER"});
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(json::dump(obj(list).at("keys")), R"(["api_key"])");
  EXPECT_EQ(list.body.find(plaintext), std::string::npos);
  EXPECT_EQ(call("GET", "secrets/api_key").status, 403);  // values are never returned

  auto stored = store_->functions().getSecret(AccountId("acc1"), "api_key");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->ciphertext.find(plaintext), std::string::npos);
  EXPECT_EQ(stored->ciphertext.find("s3cr3t"), std::string::npos);
  EXPECT_GE(stored->ciphertext.size(), plaintext.size() + crypto::SecretBox::kMacBytes);

  auto id = create("reader",
                   "const { Toolbelt } = require('lp-faas-toolbelt');\n"
                   "async function lambda(input, callback) {\n"
                   "  try {\n"
                   "    const s = await Toolbelt.SecretClient().readSecret(input.payload.key);\n"
                   "    callback(null, s.value);\n"
                   "  } catch (e) { callback(null, 'error: ' + e.code); }\n"
                   "}\n");
  EXPECT_EQ(json::dump(testInvoke(id, R"({"key":"api_key"})").at("result")),
            "\"" + plaintext + "\"");
  // Another account cannot read it.
  auto other = create("reader2", "", "acc2");
  (void)other;

  EXPECT_EQ(call("DELETE", "secrets/api_key", "", {"FAAS_ADMIN"}).status, 200);
  auto after = json::dump(testInvoke(id, R"({"key":"api_key"})").at("result"));
  EXPECT_NE(after.find("error"), std::string::npos) << after;
  EXPECT_EQ(call("DELETE", "secrets/api_key", "", {"FAAS_ADMIN"}).status, 404);
}

TEST_F(FunctionServiceTest, SecretsAreIsolatedPerAccount) {
  ASSERT_EQ(call("PUT", "secrets/k", R"({"value":"for-acc1"})").status, 200);
  auto id = create("reader",
                   "const { Toolbelt } = require('lp-faas-toolbelt');\n"
                   "function lambda(input, callback) {\n"
                   "  Toolbelt.SecretClient().readSecret('k').then(s => callback(null, s.value),\n"
                   "    e => callback(null, 'missing'));\n"
                   "}\n",
                   "acc2");
  auto r = call("POST", "functions/" + id + "/invoke", R"({"payload":{}})", {"ADMIN"}, "acc2");
  EXPECT_EQ(json::dump(obj(r).at("result")), "\"missing\"");
  EXPECT_EQ(json::dump(obj(call("GET", "secrets", "", {"ADMIN"}, "acc2")).at("keys")), "[]");
}

TEST_F(FunctionServiceTest, SecretRules) {
  EXPECT_EQ(call("PUT", "secrets/" + std::string(100, 'k'), R"({"value":"v"})").status, 200);
  EXPECT_EQ(call("PUT", "secrets/" + std::string(101, 'k'), R"({"value":"v"})").status, 400);
  EXPECT_EQ(call("PUT", "secrets/bad.key", R"({"value":"v"})").status, 400);
  EXPECT_EQ(
      call("PUT", "secrets/k", json::dump(bj::object{{"value", std::string(10'000, 'v')}})).status,
      200);
  EXPECT_EQ(
      call("PUT", "secrets/k", json::dump(bj::object{{"value", std::string(10'001, 'v')}})).status,
      413);
  EXPECT_EQ(call("PUT", "secrets/k", R"({})").status, 400);
  auto dev = call("PUT", "secrets/k", R"({"value":"v"})", {"FAAS_DEVELOPER"});
  EXPECT_EQ(dev.status, 403);
  EXPECT_NE(errorMessage(dev).find("FAAS_ADMIN"), std::string::npos);
  EXPECT_EQ(call("DELETE", "secrets/k", "", {"FAAS_DEVELOPER"}).status, 403);
}

// A function that reads secret "k", then tries to replace it with payload.value.
constexpr char kSecretWriter[] =
    "const { Toolbelt } = require('lp-faas-toolbelt');\n"
    "async function lambda(input, callback) {\n"
    "  const secrets = Toolbelt.SecretClient();\n"
    "  const before = (await secrets.readSecret('k')).value;\n"
    "  try {\n"
    "    await secrets.updateSecret({key: 'k', value: input.payload.value});\n"
    "    callback(null, {before, write: 'ok'});\n"
    "  } catch (e) { callback(null, {before, write: e.code, message: e.message}); }\n"
    "}\n";

TEST_F(FunctionServiceTest, DeveloperTestInvokeCannotWriteSecretsAndIsRecorded) {
  ASSERT_EQ(call("PUT", "secrets/k", R"({"value":"admin-value"})", {"FAAS_ADMIN"}).status, 200);
  auto id = create("writer", kSecretWriter);
  auto r = testInvoke(id, R"({"value":"attacker-value"})", {"FAAS_DEVELOPER"});
  EXPECT_EQ(json::getString(r.at("result").as_object(), "before"), "admin-value");
  EXPECT_EQ(json::getString(r.at("result").as_object(), "write"),
            "com.liveperson.faas.secret.auth-failed")
      << json::dump(r);
  EXPECT_NE(json::getString(r.at("result").as_object(), "message").find("FAAS_ADMIN"),
            std::string::npos);
  // The value is unchanged: a FAAS_ADMIN's test invoke (test invokes need FAAS_DEVELOPER too)
  // reads it back, and may change it.
  auto again = testInvoke(id, R"({"value":"rotated"})", {"FAAS_DEVELOPER", "FAAS_ADMIN"});
  EXPECT_EQ(json::getString(again.at("result").as_object(), "before"), "admin-value");
  EXPECT_EQ(json::getString(again.at("result").as_object(), "write"), "ok");
  auto stored = store_->functions().getSecret(AccountId("acc1"), "k");
  ASSERT_TRUE(stored);
  EXPECT_EQ(*box_.open(stored->ciphertext), "rotated");

  // Both invocations are in the audit, newest first, with the invoker and the outcome.
  auto audit = call("GET", "secrets/audit", "", {"FAAS_ADMIN"});
  ASSERT_EQ(audit.status, 200) << audit.body;
  const bj::array entries = obj(audit).at("entries").as_array();
  ASSERT_EQ(entries.size(), 4u) << audit.body;
  auto entry = [&](std::size_t i) { return entries[i].as_object(); };
  EXPECT_EQ(json::getString(entry(0), "operation"), "write");
  EXPECT_EQ(json::getString(entry(0), "outcome"), "allowed");
  EXPECT_EQ(json::getString(entry(1), "operation"), "read");
  EXPECT_EQ(json::getString(entry(2), "operation"), "write");
  EXPECT_EQ(json::getString(entry(2), "outcome"), "refused");
  EXPECT_NE(json::getString(entry(2), "detail").find("FAAS_ADMIN"), std::string::npos);
  EXPECT_EQ(json::getString(entry(3), "operation"), "read");
  EXPECT_EQ(json::getString(entry(3), "outcome"), "allowed");
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(json::getString(entry(i), "key"), "k");
    EXPECT_EQ(json::getString(entry(i), "functionUuid"), id);
    EXPECT_EQ(json::getString(entry(i), "functionName"), "writer");
    EXPECT_FALSE(json::getString(entry(i), "requestId").empty());
    const bj::object inv = entry(i).at("invoker").as_object();
    EXPECT_EQ(json::getString(inv, "type"), "user");
    EXPECT_EQ(json::getString(inv, "userId"), "1000");
    EXPECT_EQ(json::getString(inv, "loginName"), "tester");
  }
  EXPECT_EQ(
      obj(call("GET", "secrets/audit?limit=1", "", {"ADMIN"})).at("entries").as_array().size(), 1u);
  EXPECT_EQ(call("GET", "secrets/audit?limit=0", "", {"ADMIN"}).status, 400);
  // Developers and managers do not see the audit; other accounts see their own (none).
  EXPECT_EQ(call("GET", "secrets/audit", "", {"FAAS_DEVELOPER"}).status, 403);
  EXPECT_EQ(call("GET", "secrets/audit", "", {"AGENT_MANAGER"}).status, 403);
  EXPECT_EQ(
      obj(call("GET", "secrets/audit", "", {"ADMIN"}, "acc2")).at("entries").as_array().size(), 0u);
}

TEST_F(FunctionServiceTest, ProductionInvocationsMayWriteSecretsAndAreRecorded) {
  ASSERT_EQ(call("PUT", "secrets/k", R"({"value":"v1"})", {"FAAS_ADMIN"}).status, 200);
  auto id = create("writer", kSecretWriter);
  ASSERT_EQ(deploy(id).status, 200);
  auto r = invokeProduction(id, R"({"value":"v2"})");
  ASSERT_TRUE(r.ok) << r.error_message;
  EXPECT_EQ(r.result_json, R"({"before":"v1","write":"ok"})");
  auto audit = obj(call("GET", "secrets/audit", "", {"ADMIN"})).at("entries").as_array();
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(json::getString(audit[0].as_object(), "operation"), "write");
  EXPECT_EQ(json::getString(audit[0].as_object(), "outcome"), "allowed");
  EXPECT_EQ(json::dump(audit[0].as_object().at("invoker")), R"({"type":"platform"})");
}

// ---- allowlist -------------------------------------------------------------------------------

TEST_F(FunctionServiceTest, AllowlistRules) {
  auto putList = [&](const bj::array& domains, std::vector<std::string> roles = {"FAAS_ADMIN"}) {
    return call("PUT", "allowlist", json::dump(bj::object{{"domains", domains}}), std::move(roles));
  };
  auto r = putList({"api.example.com", "*.Example.org", "93.184.216.34"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::dump(obj(r).at("domains")),
            R"(["api.example.com","*.example.org","93.184.216.34"])");
  EXPECT_EQ(json::dump(obj(call("GET", "allowlist", "", {"FAAS_DEVELOPER"})).at("domains")),
            R"(["api.example.com","*.example.org","93.184.216.34"])");

  // Entries that lead into the server's own networks are refused at entry with the reason.
  for (const char* d : {"127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0",
                        "169.254.169.254", "10.0.0.1", "100.64.0.1", "localhost",
                        "metadata.google.internal", "metadata", "instance-data", "[::1]"}) {
    auto refused = putList({"ok.example.com", d});
    EXPECT_EQ(refused.status, 400) << d;
    EXPECT_NE(errorMessage(refused).find("cannot be allowlisted"), std::string::npos)
        << d << ": " << errorMessage(refused);
  }
  EXPECT_NE(errorMessage(putList({"2130706433"})).find("127.0.0.1"), std::string::npos);
  EXPECT_NE(errorMessage(putList({"169.254.169.254"})).find("metadata"), std::string::npos);

  EXPECT_EQ(putList({"*.*.example.com"}).status, 400);
  EXPECT_EQ(putList({"a.*.example.com"}).status, 400);
  EXPECT_EQ(putList({"*.com"}).status, 400);
  EXPECT_EQ(putList({"-bad.example.com"}).status, 400);
  EXPECT_EQ(putList({"bad_.example.com"}).status, 400);
  EXPECT_EQ(putList({"https://example.com"}).status, 400);
  EXPECT_EQ(putList({std::string(64, 'a') + ".com"}).status, 400);
  auto dup = putList({"a.example.com", "A.example.com"});
  EXPECT_EQ(dup.status, 400);
  EXPECT_NE(errorMessage(dup).find("twice"), std::string::npos);
  bj::array hundred, hundred_one;
  for (int i = 0; i < 101; ++i) {
    std::string d = "h" + std::to_string(i) + ".example.com";
    if (i < 100) hundred.push_back(bj::string(d));
    hundred_one.push_back(bj::string(d));
  }
  EXPECT_EQ(putList(hundred).status, 200);
  EXPECT_EQ(putList(hundred_one).status, 400);
  EXPECT_EQ(putList({"x.example.com"}, {"FAAS_DEVELOPER"}).status, 403);
  // Failed PUTs left the last good list in place.
  EXPECT_EQ(obj(call("GET", "allowlist")).at("domains").as_array().size(), 100u);
}

TEST_F(FunctionServiceTest, AllowlistAcceptsRangesTheOperatorOpened) {
  service_.reset();
  runtime_.reset();
  outbound_allow_ = {"loopback", "10.1.0.0/16"};
  startService();
  auto put = [&](const bj::array& domains) {
    return call("PUT", "allowlist", json::dump(bj::object{{"domains", domains}}), {"FAAS_ADMIN"});
  };
  EXPECT_EQ(put({"localhost", "127.0.0.1", "10.1.2.3"}).status, 200);
  EXPECT_EQ(put({"10.2.0.1"}).status, 400);
  EXPECT_EQ(put({"169.254.169.254"}).status, 400);
  EXPECT_EQ(put({"2130706433"}).status, 400);  // other spellings never
}

// ---- permissions and isolation ---------------------------------------------------------------

TEST_F(FunctionServiceTest, PermissionsPerRole) {
  auto id = create("perm");
  const std::string create_body = R"({"name":"p2","event":"no_event"})";
  // AGENT: nothing.
  auto agent = call("GET", "functions", "", {"AGENT"});
  EXPECT_EQ(agent.status, 403);
  EXPECT_NE(errorMessage(agent).find("FAAS_DEVELOPER"), std::string::npos);
  EXPECT_EQ(call("GET", "functions/templates", "", {"AGENT"}).status, 403);
  EXPECT_EQ(call("POST", "functions", create_body, {}).status, 403);
  // AGENT_MANAGER: read-only.
  EXPECT_EQ(call("GET", "functions/" + id, "", {"AGENT_MANAGER"}).status, 200);
  EXPECT_EQ(call("POST", "functions", create_body, {"AGENT_MANAGER"}).status, 403);
  // FAAS_DEVELOPER: create, edit, invoke, read; no deploy.
  EXPECT_EQ(call("POST", "functions", create_body, {"FAAS_DEVELOPER"}).status, 201);
  EXPECT_EQ(put(id, {{"description", "new"}}, {"FAAS_DEVELOPER"}).status, 200);
  EXPECT_EQ(call("POST", "functions/" + id + "/invoke", "{}", {"FAAS_DEVELOPER"}).status, 200);
  EXPECT_EQ(call("GET", "functions/" + id + "/logs", "", {"FAAS_DEVELOPER"}).status, 200);
  auto dev_deploy = deploy(id, {"FAAS_DEVELOPER"});
  EXPECT_EQ(dev_deploy.status, 403);
  EXPECT_NE(errorMessage(dev_deploy).find("FAAS_ADMIN"), std::string::npos);
  // FAAS_ADMIN: deploy/undeploy, read; no create/edit/invoke.
  EXPECT_EQ(deploy(id, {"FAAS_ADMIN"}).status, 200);
  EXPECT_EQ(call("POST", "functions/" + id + "/undeploy", "", {"FAAS_ADMIN"}).status, 200);
  EXPECT_EQ(call("GET", "functions", "", {"FAAS_ADMIN"}).status, 200);
  EXPECT_EQ(call("POST", "functions", R"({"name":"p3","event":"no_event"})", {"FAAS_ADMIN"}).status,
            403);
  EXPECT_EQ(put(id, {{"description", "x"}}, {"FAAS_ADMIN"}).status, 403);
  EXPECT_EQ(call("POST", "functions/" + id + "/invoke", "{}", {"FAAS_ADMIN"}).status, 403);
  EXPECT_EQ(call("DELETE", "functions/" + id, "", {"FAAS_ADMIN"}).status, 403);
  // Both FaaS roles together can do the whole cycle; ADMIN can do everything.
  EXPECT_EQ(deploy(id, {"FAAS_DEVELOPER", "FAAS_ADMIN"}).status, 200);
  EXPECT_EQ(call("DELETE", "functions/" + id, "", {"ADMIN"}).status, 200);
}

TEST_F(FunctionServiceTest, AccountIsolation) {
  auto id = create("mine");
  ASSERT_EQ(deploy(id).status, 200);
  auto other = [&](const std::string& method, const std::string& path, const std::string& b = "") {
    return call(method, path, b, {"ADMIN"}, "acc2").status;
  };
  EXPECT_EQ(other("GET", "functions/" + id), 404);
  EXPECT_EQ(other("PUT", "functions/" + id, R"({"code":"x"})"), 404);
  EXPECT_EQ(other("POST", "functions/" + id + "/invoke", "{}"), 404);
  EXPECT_EQ(other("POST", "functions/" + id + "/deploy"), 404);
  EXPECT_EQ(other("POST", "functions/" + id + "/undeploy"), 404);
  EXPECT_EQ(other("GET", "functions/" + id + "/logs"), 404);
  EXPECT_EQ(other("GET", "functions/" + id + "/deployments"), 404);
  EXPECT_EQ(other("DELETE", "functions/" + id), 404);
  EXPECT_EQ(body(call("GET", "functions", "", {"ADMIN"}, "acc2")).as_array().size(), 0u);
  // The connector of account B cannot run A's function either.
  auto r = invokeProduction(id, "{}", "acc2");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error_code, kErrNotDeployed);
  // A's function is untouched.
  EXPECT_TRUE(invokeProduction(id).ok);
  EXPECT_EQ(json::getString(obj(call("GET", "functions/" + id)), "state"), "Productive");
}

TEST_F(FunctionServiceTest, UnknownRoutes) {
  EXPECT_EQ(call("GET", "functions/x/y/z").status, 404);
  EXPECT_EQ(call("GET", "functions/00000000-0000-4000-8000-000000000000").status, 404);
  auto bad = call("GET", "nothing");
  EXPECT_EQ(bad.status, 404);
  auto e = obj(bad).at("error").as_object();
  EXPECT_EQ(json::getString(e, "code"), "NOT_FOUND");
  EXPECT_FALSE(json::getString(e, "message").empty());
  EXPECT_EQ(call("DELETE", "functions").status, 400);
}

// ---- templates -------------------------------------------------------------------------------

TEST_F(FunctionServiceTest, TemplatesEndpoint) {
  auto all = call("GET", "functions/templates");
  ASSERT_EQ(all.status, 200);
  auto arr = body(all).as_array();
  EXPECT_EQ(arr.size(), 5u);
  auto one = call("GET", "functions/templates?event=bot_connectors_custom_integration");
  ASSERT_EQ(one.status, 200);
  auto t = obj(one);
  EXPECT_EQ(json::getString(t, "event"), "bot_connectors_custom_integration");
  EXPECT_FALSE(json::getString(t, "name").empty());
  EXPECT_NE(json::getString(t, "code").find("function lambda"), std::string::npos);
  auto payload = t.at("samplePayload").as_object().at("payload").as_object();
  EXPECT_EQ(json::getString(payload, "message"), "hi");
  EXPECT_TRUE(payload.at("context").as_object().contains("lpEvent"));
  EXPECT_EQ(call("GET", "functions/templates?event=nope").status, 404);
  // An event without a dedicated template gets the generic one.
  auto generic = call("GET", "functions/templates?event=conversational_command");
  ASSERT_EQ(generic.status, 200);
  EXPECT_EQ(json::getString(obj(generic), "name"), "Greeting");
}

// Every template deploys unchanged and answers its own sample payload.
TEST_F(FunctionServiceTest, EveryTemplateDeploysAndHandlesItsSample) {
  for (const auto& t : allTemplates()) {
    SCOPED_TRACE(t.event);
    auto id = create("t_" + t.event, "", "acc1", t.event);
    ASSERT_EQ(deploy(id).status, 200);
    auto sample = json::parseObject(t.sample_payload);
    ASSERT_TRUE(sample);
    auto r = invokeProduction(id, json::dump(sample->at("payload")));
    EXPECT_TRUE(r.ok) << r.error_code << ": " << r.error_message;
    EXPECT_FALSE(r.result_json.empty());
  }
}

TEST_F(FunctionServiceTest, CustomIntegrationTemplateIsAWorkingBot) {
  auto id = create("bot", "", "acc1", "bot_connectors_custom_integration");
  ASSERT_EQ(deploy(id).status, 200);
  auto ask = [&](const std::string& message) {
    auto sample = json::parseObject(templateFor(kCustomIntegrationEvent).sample_payload);
    auto payload = sample->at("payload").as_object();
    payload["message"] = message;
    auto r = invokeProduction(id, json::dump(payload));
    EXPECT_TRUE(r.ok) << r.error_message;
    auto v = json::parseObject(r.result_json);
    return v ? *v : bj::object();
  };
  auto hi = ask("hi");
  EXPECT_EQ(json::dump(hi.at("messages")), R"(["You said: hi"])");
  auto transfer = ask("transfer");
  auto ctx = transfer.at("context").as_object();
  EXPECT_EQ(json::getString(ctx, "action"), "TRANSFER");
  EXPECT_FALSE(json::getString(ctx.at("actionParameters").as_object(), "skill").empty());
  EXPECT_EQ(transfer.at("messages").as_array().size(), 1u);
  auto close = ask("Close");
  EXPECT_EQ(json::getString(close.at("context").as_object(), "action"), "CLOSE_CONVERSATION");
  auto options = ask("options");
  auto sc = options.at("messages").as_array()[0].as_object().at("structuredContent").as_object();
  EXPECT_EQ(json::getString(sc.at("quickReplies").as_object(), "type"), "quickReplies");
  EXPECT_FALSE(json::getString(sc, "message").empty());
  auto card = ask("card");
  auto csc = card.at("messages").as_array()[0].as_object().at("structuredContent").as_object();
  EXPECT_EQ(json::getString(csc, "type"), "vertical");
  auto ttr = ask("urgent");
  EXPECT_EQ(json::getString(ttr.at("context").as_object(), "action"), "CHANGE_TTR");
  auto rich = ask("com.liveperson.bot-connectors.consumer.send-rich-content");
  EXPECT_NE(json::dump(rich).find("rich content"), std::string::npos);
}

// ---- restart ---------------------------------------------------------------------------------

TEST_F(FunctionServiceTest, RestoreDeploymentsAfterRestart) {
  auto productive = create("productive", codeReturning("\"p\""));
  auto modified = create("modified", codeReturning("\"m1\""));
  auto draft = create("draft", codeReturning("\"d\""));
  auto undeployed = create("undeployed", codeReturning("\"u\""));
  auto broken_live = create("brokenlive", codeReturning("\"b\""));
  ASSERT_EQ(deploy(productive).status, 200);
  ASSERT_EQ(deploy(modified).status, 200);
  put(modified, {{"code", codeReturning("\"m2\"")}});
  ASSERT_EQ(deploy(undeployed).status, 200);
  ASSERT_EQ(call("POST", "functions/" + undeployed + "/undeploy").status, 200);
  ASSERT_EQ(deploy(broken_live).status, 200);
  put(broken_live, {{"code", "function lambda( {"}});
  ASSERT_NE(deploy(broken_live).status, 200);

  // "Restart": a new runtime and service over the same store.
  service_.reset();
  runtime_.reset();
  startService();
  EXPECT_FALSE(runtime_->isDeployed(AccountId("acc1"), FunctionId(productive)));
  auto n = service_->restoreDeployments();
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, 3);
  EXPECT_EQ(invokeProduction(productive).result_json, "\"p\"");
  EXPECT_EQ(invokeProduction(modified).result_json, "\"m1\"");  // the deployed code, not the edit
  EXPECT_EQ(invokeProduction(broken_live).result_json, "\"b\"");
  EXPECT_EQ(invokeProduction(draft).error_code, kErrNotDeployed);
  EXPECT_EQ(invokeProduction(undeployed).error_code, kErrNotDeployed);
}

// Another node of a cluster: its own runtime and service over the same store. What node A
// changes (on_change tells) node B applies with refreshFunction.
TEST_F(FunctionServiceTest, RefreshFunctionRunsWhatAnotherNodeDeployed) {
  RuntimeOptions o;
  o.threads = 1;
  auto other_runtime = FunctionRuntime::create(o, *host_, clock_);
  ASSERT_TRUE(other_runtime) << other_runtime.error().message;
  FunctionService other(*store_, box_, **other_runtime, clock_);
  auto refresh = [&](const std::string& uuid) {
    return parley::testing::await<Status>(
        [&](auto done) { other.refreshFunction(AccountId("acc1"), FunctionId(uuid), done); });
  };
  auto invokeOther = [&](const std::string& uuid) {
    InvokeRequest req;
    req.account = AccountId("acc1");
    req.function = FunctionId(uuid);
    req.input_json = R"({"timestamp":1,"headers":[],"payload":{}})";
    req.deadline = std::chrono::milliseconds(2000);
    return parley::testing::await<InvokeResult>(
        [&](auto done) { other.runner().invoke(req, std::move(done)); });
  };
  auto changes = [&] {
    std::lock_guard lock(changes_mu_);
    return changes_;
  };
  const auto f = create("shared", codeReturning("\"v1\""));
  const std::string key = "acc1/" + f;
  EXPECT_TRUE(changes().empty());  // a draft runs nowhere: nothing to tell
  ASSERT_EQ(deploy(f).status, 200);
  EXPECT_EQ(changes(), std::vector<std::string>{key});
  EXPECT_EQ(invokeOther(f).error_code, kErrNotDeployed);  // B does not know yet
  ASSERT_TRUE(refresh(f));
  EXPECT_EQ(invokeOther(f).result_json, "\"v1\"");

  // A new version, deployed on A; a later edit that is not deployed does not change what runs.
  put(f, {{"code", codeReturning("\"v2\"")}});
  ASSERT_EQ(deploy(f).status, 200);
  put(f, {{"code", codeReturning("\"v3\"")}});
  ASSERT_TRUE(refresh(f));
  EXPECT_EQ(invokeOther(f).result_json, "\"v2\"");
  // A deploy that fails keeps v2 running everywhere and tells nobody.
  put(f, {{"code", "function lambda( {"}});
  ASSERT_NE(deploy(f).status, 200);
  EXPECT_EQ(changes().size(), 2u);
  ASSERT_TRUE(refresh(f));
  EXPECT_EQ(invokeOther(f).result_json, "\"v2\"");

  ASSERT_EQ(call("POST", "functions/" + f + "/undeploy").status, 200);
  EXPECT_EQ(changes().size(), 3u);
  ASSERT_TRUE(refresh(f));
  EXPECT_EQ(invokeOther(f).error_code, kErrNotDeployed);

  put(f, {{"code", codeReturning("\"v4\"")}});
  ASSERT_EQ(deploy(f).status, 200);
  ASSERT_TRUE(refresh(f));
  EXPECT_EQ(invokeOther(f).result_json, "\"v4\"");
  ASSERT_EQ(call("DELETE", "functions/" + f).status, 200);
  EXPECT_EQ(changes().size(), 5u);
  ASSERT_TRUE(refresh(f));
  EXPECT_EQ(invokeOther(f).error_code, kErrNotDeployed);
}

}  // namespace
}  // namespace parley::functions::service
