// The conversation tester and replay over REST (`bots/{id}/tester…`, `bots/{id}/replay`), with
// the memory store, the real conversation engine and a scripted code runner.

#include <gtest/gtest.h>

#include <future>
#include <mutex>

#include "common/testing/fake_clock.h"
#include "connector/bot_service.h"
#include "connector/testing/fake_runner.h"
#include "conversation/conversation_engine.h"
#include "store/memory/memory_store.h"

namespace parley::connector {
namespace {

namespace bj = boost::json;
namespace conv = parley::conversation;

const AccountId kAcc("1000");

// The code runner the tester and replay get: the "code" is a script — "FAIL" fails the
// invocation; anything else is a response template whose "$MSG" becomes payload.message (or
// "WELCOME" for the welcome event). Every input it got is kept.
struct ScriptRunner {
  std::mutex mu;
  std::vector<bj::object> inputs;
  std::vector<std::string> codes;

  void run(std::string code, const functions::InvokeRequest& req,
           const std::function<void(functions::InvokeResult)>& done) {
    bj::object input = bj::parse(req.input_json).as_object();
    {
      std::lock_guard l(mu);
      inputs.push_back(input);
      codes.push_back(code);
    }
    functions::InvokeResult r;
    if (code == "FAIL") {
      r.error_code = "com.liveperson.faas.handler.custom-failure";
      r.error_message = "failed on purpose";
      return done(r);
    }
    const bj::object& payload = input.at("payload").as_object();
    std::string msg =
        payload.contains("event") ? "WELCOME" : std::string(payload.at("message").as_string());
    for (auto pos = code.find("$MSG"); pos != std::string::npos; pos = code.find("$MSG"))
      code.replace(pos, 4, msg);
    r.ok = true;
    r.result_json = code;
    r.duration_ms = 1;
    done(r);
  }
};

class TesterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount(store::Account{kAcc, "acme", 300, 600, 3600, 0}));
    ASSERT_TRUE(store_->accounts().createSkill(store::Skill{kAcc, SkillId(), "bots", 0}));
    ASSERT_TRUE(store_->accounts().createSkill(store::Skill{kAcc, SkillId(), "Escalations", 0}));
    store::FunctionRecord f;
    f.uuid = FunctionId("fn-bot");
    f.account = kAcc;
    f.name = "bot";
    f.version = 3;
    f.code = R"({"messages":["echo $MSG"]})";
    ASSERT_TRUE(store_->functions().createFunction(f));
    engine_ = conv::makeConversationService(*store_, clock_);
    ASSERT_TRUE(engine_->recover());
    auto v = richcontent::Validator::loadEmbedded();
    ASSERT_TRUE(v);
    ConnectorOptions co;
    co.invoke_code = [this](const AccountId&, std::string code, std::vector<store::EnvVar>,
                            functions::InvokeRequest req,
                            std::function<void(functions::InvokeResult)> done) {
      script_.run(std::move(code), req, done);
    };
    service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_, co);
    ASSERT_TRUE(service_->start());
    auto b = service_->createBot(kAcc, bj::parse(R"({"name":"Helper","vendor":"CUSTOM_INTEGRATION",
      "functionUuid":"fn-bot","conversationTypes":["MESSAGING","CHAT"],"skills":["bots"],
      "disclaimerAccepted":true,"escalation":{"skill":"Escalations","message":"Connecting you.",
      "agentMessage":"Bot failed.","retries":1,"turnTimeoutMs":5000}})")
                                           .as_object());
    ASSERT_TRUE(b) << b.error().message;
    bot_ = std::string(b->at("id").as_string());
  }
  void TearDown() override {
    service_.reset();
    engine_.reset();
  }

  struct Answer {
    int status = 0;
    bj::value body;
  };
  Answer rest(std::string method, std::vector<std::string> path, std::string body = "",
              std::vector<std::string> roles = {"ADMIN"}, std::string user = "u-admin") {
    api::Request req;
    req.method = std::move(method);
    req.path = std::move(path);
    req.body = std::move(body);
    req.caller.account = kAcc;
    req.caller.user = UserId(std::move(user));
    req.caller.roles = std::move(roles);
    auto p = std::make_shared<std::promise<api::Response>>();
    auto fut = p->get_future();
    service_->handle(std::move(req), [p](api::Response r) { p->set_value(std::move(r)); });
    api::Response r = fut.get();
    return Answer{r.status, bj::parse(r.body)};
  }
  std::string start(const std::string& body = "{}") {
    auto a = rest("POST", {"bots", bot_, "tester"}, body);
    EXPECT_EQ(a.status, 201) << bj::serialize(a.body);
    return a.status == 201 ? std::string(a.body.at("sessionId").as_string()) : "";
  }
  Answer say(const std::string& session, const std::string& text) {
    return rest("POST", {"bots", bot_, "tester", session, "messages"},
                bj::serialize(bj::object{{"text", text}}));
  }
  void setCode(const std::string& code) {
    auto f = store_->functions().getFunction(kAcc, FunctionId("fn-bot"));
    ASSERT_TRUE(f);
    f->code = code;
    f->version += 1;
    ASSERT_TRUE(store_->functions().updateFunction(*f));
  }
  void deploy(std::int64_t version, const std::string& code) {
    store::Deployment d;
    d.uuid = "dep-" + std::to_string(version);
    d.function = FunctionId("fn-bot");
    d.account = kAcc;
    d.function_version = version;
    d.code = code;
    d.state = store::DeploymentState::kProductive;
    ASSERT_TRUE(store_->functions().addDeployment(d));
    auto f = store_->functions().getFunction(kAcc, FunctionId("fn-bot"));
    f->state = store::FunctionState::kProductive;
    ASSERT_TRUE(store_->functions().updateFunction(*f));
  }

  parley::testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<conv::ConversationService> engine_;
  testing::FakeRunner runner_;
  ScriptRunner script_;
  std::unique_ptr<BotService> service_;
  std::string bot_;
};

TEST_F(TesterTest, AMessagingSessionKeepsItsConversationBetweenTurns) {
  std::string id = start();
  auto session = rest("GET", {"bots", bot_, "tester", id});
  ASSERT_EQ(session.status, 200);
  EXPECT_EQ(session.body.at("channel"), "MESSAGING");
  EXPECT_EQ(session.body.at("state"), "OPEN");
  EXPECT_EQ(session.body.at("functionVersion").at("label"), "draft");
  EXPECT_EQ(session.body.at("turns").as_array().size(), 0u);

  auto one = say(id, "hello");
  ASSERT_EQ(one.status, 200) << bj::serialize(one.body);
  const bj::value& t1 = one.body.at("turn");
  EXPECT_EQ(t1.at("turn"), 1);
  EXPECT_EQ(t1.at("input").at("payload").at("message"), "hello");
  EXPECT_EQ(t1.at("response"), bj::parse(R"({"messages":["echo hello"]})"));
  EXPECT_EQ(t1.at("review").at("verdict"), "OK");
  EXPECT_EQ(t1.at("review").at("consumerSees").at(0).at("text"), "echo hello");
  auto two = say(id, "again");
  ASSERT_EQ(two.status, 200);
  const bj::value& t2 = two.body.at("turn");
  EXPECT_EQ(t2.at("turn"), 2);
  // The same conversation, its sequence moving on past the bot's answer.
  EXPECT_EQ(t2.at("input").at("payload").at("convId"), t1.at("input").at("payload").at("convId"));
  EXPECT_GT(t2.at("input").at("payload").at("context").at("lpEvent").at("sequence").as_int64(),
            t1.at("input").at("payload").at("context").at("lpEvent").at("sequence").as_int64());
  EXPECT_EQ(rest("GET", {"bots", bot_, "tester", id}).body.at("turnCount"), 2);
  // Nothing reached a real conversation or the turn records.
  auto convs = store_->conversations().listConversations(kAcc, {});
  ASSERT_TRUE(convs);
  EXPECT_TRUE(convs->empty());
  auto turns = store_->bots().listTurns(kAcc, BotId(bot_), 10);
  ASSERT_TRUE(turns);
  EXPECT_TRUE(turns->empty());
}

TEST_F(TesterTest, AChatSessionStartsWithTheWelcomeTurn) {
  auto a = rest("POST", {"bots", bot_, "tester"}, R"({"channel":"chat"})");
  ASSERT_EQ(a.status, 201) << bj::serialize(a.body);
  EXPECT_EQ(a.body.at("channel"), "CHAT");
  const auto& turns = a.body.at("turns").as_array();
  ASSERT_EQ(turns.size(), 1u);
  EXPECT_EQ(turns[0].at("consumerMessage"), "WELCOME");
  EXPECT_EQ(turns[0].at("input").at("payload").at("event").at("name"), "WELCOME");
  EXPECT_EQ(turns[0].at("input").at("payload").at("context").at("lpEvent").at("@type"), "line");
  EXPECT_EQ(turns[0].at("review").at("consumerSees").at(0).at("text"), "echo WELCOME");
  auto next = say(std::string(a.body.at("sessionId").as_string()), "hi");
  ASSERT_EQ(next.status, 200);
  EXPECT_EQ(next.body.at("turn").at("turn"), 2);
}

TEST_F(TesterTest, RunsTheChosenFunctionVersion) {
  // Not deployed: "deployed" names the versions there are.
  auto none = rest("POST", {"bots", bot_, "tester"}, R"({"functionVersion":"deployed"})");
  EXPECT_EQ(none.status, 404);
  EXPECT_NE(bj::serialize(none.body).find("draft"), std::string::npos);
  deploy(2, R"({"messages":["v2 $MSG"]})");
  std::string deployed = start(R"({"functionVersion":"deployed"})");
  EXPECT_EQ(say(deployed, "x").body.at("turn").at("response").at("messages").at(0), "v2 x");
  std::string numbered = start(R"({"functionVersion":2})");
  EXPECT_EQ(say(numbered, "y").body.at("turn").at("response").at("messages").at(0), "v2 y");
  std::string draft = start(R"({"functionVersion":"draft"})");
  EXPECT_EQ(say(draft, "z").body.at("turn").at("response").at("messages").at(0), "echo z");
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, R"({"functionVersion":"v9"})").status, 404);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, R"({"functionVersion":[1]})").status, 400);
}

TEST_F(TesterTest, ReviewsEachTurnAndFollowsTheBotOutOfTheConversation) {
  setCode(R"({"messages":["bye",{"structuredContent":{"type":"vertical"}}],)"
          R"("context":{"action":"CLOSE_CONVERSATION"}})");
  std::string id = start();
  auto a = say(id, "done");
  ASSERT_EQ(a.status, 200);
  const bj::value& review = a.body.at("turn").at("review");
  EXPECT_EQ(review.at("verdict"), "PARTIAL");
  EXPECT_EQ(review.at("problems").at(0).at("path"), "/messages/1/structuredContent");
  EXPECT_EQ(review.at("action").at("action"), "CLOSE_CONVERSATION");
  EXPECT_EQ(a.body.at("session").at("state"), "CLOSED");
  auto after = say(id, "still there?");
  EXPECT_EQ(after.status, 409);
}

// A caller whose callback calls the tester again (answering one request by sending the next)
// must not deadlock: create and message call `done` outside the tester's lock. The callback's
// wait for its own call is bounded: a deadlock fails the test instead of hanging it.
TEST_F(TesterTest, ACallbackMayCallTheTesterAgain) {
  auto request = [](std::string method, std::vector<std::string> path, std::string body) {
    api::Request req;
    req.method = std::move(method);
    req.path = std::move(path);
    req.body = std::move(body);
    req.caller.account = kAcc;
    req.caller.user = UserId("u-admin");
    req.caller.roles = {"ADMIN"};
    return req;
  };
  // Sends `outer`; its callback sends next(answer) and waits for that answer. Returns both
  // statuses; -1 for an inner call that did not answer within 10 s.
  auto reenter = [this](api::Request outer,
                        std::function<api::Request(const api::Response&)> next) {
    auto p = std::make_shared<std::promise<std::pair<int, int>>>();
    auto fut = p->get_future();
    service_->handle(std::move(outer), [this, p, next](api::Response r) {
      auto inner = std::make_shared<std::promise<int>>();
      auto f = inner->get_future();
      service_->handle(next(r), [inner](api::Response ir) { inner->set_value(ir.status); });
      bool answered = f.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
      p->set_value({r.status, answered ? f.get() : -1});
    });
    return fut.get();
  };
  setCode(R"({"messages":["bye"],"context":{"action":"CLOSE_CONVERSATION"}})");
  std::string id;
  auto created = reenter(request("POST", {"bots", bot_, "tester"}, "{}"), [&](const auto& r) {
    id = std::string(bj::parse(r.body).at("sessionId").as_string());
    return request("GET", {"bots", bot_, "tester", id}, "");
  });
  EXPECT_EQ(created, (std::pair{201, 200}));
  // A refused message (the bot closed the conversation) is answered outside the lock too.
  ASSERT_EQ(say(id, "done").status, 200);
  auto refused = reenter(
      request("POST", {"bots", bot_, "tester", id, "messages"}, R"({"text":"still there?"})"),
      [&](const auto&) {
        return request("GET", {"bots", bot_, "tester", id}, "");
      });
  EXPECT_EQ(refused, (std::pair{409, 200}));
}

TEST_F(TesterTest, AFailedFunctionShowsTheEscalation) {
  setCode("FAIL");
  std::string id = start();
  auto a = say(id, "hi");
  ASSERT_EQ(a.status, 200);
  const bj::value& t = a.body.at("turn");
  EXPECT_EQ(t.at("error").at("code"), "com.liveperson.faas.handler.custom-failure");
  EXPECT_EQ(t.at("escalation").at("transferToSkill"), "Escalations");
  EXPECT_EQ(t.at("escalation").at("consumerSees").at(0), "Connecting you.");
  EXPECT_EQ(t.at("escalation").at("retries"), 1);
  EXPECT_EQ(a.body.at("session").at("state"), "ESCALATED");
}

TEST_F(TesterTest, RefusesBadInputAndOtherUsersSessions) {
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, R"({"channel":"SMS"})").status, 400);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, R"({"chanel":"CHAT"})").status, 400);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, "not json").status, 400);
  EXPECT_EQ(rest("POST", {"bots", "no-such-bot", "tester"}, "{}").status, 404);
  std::string id = start();
  EXPECT_EQ(
      rest("POST", {"bots", bot_, "tester", id, "messages"}, R"({"text":"a","event":{}})").status,
      400);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester", id, "messages"}, R"({"text":5})").status, 400);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester", id, "messages"},
                 R"({"event":{"type":"AcceptStatusEvent"}})")
                .status,
            400);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester", id, "messages"},
                 bj::serialize(bj::object{{"text", std::string(10'001, 'x')}}))
                .status,
            413);
  // Another user, even an ADMIN, does not see it.
  EXPECT_EQ(rest("GET", {"bots", bot_, "tester", id}, "", {"ADMIN"}, "u-other").status, 404);
  // Roles: the tester is a test invoke (ADMIN, FAAS_DEVELOPER).
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, "{}", {"AGENT_MANAGER"}).status, 403);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, "{}", {"FAAS_ADMIN"}).status, 403);
  EXPECT_EQ(rest("POST", {"bots", bot_, "tester"}, "{}", {"FAAS_DEVELOPER"}, "u-dev").status, 201);
  EXPECT_EQ(rest("DELETE", {"bots", bot_, "tester", id}).status, 200);
  EXPECT_EQ(rest("GET", {"bots", bot_, "tester", id}).status, 404);
}

TEST_F(TesterTest, ReplayOfATesterTranscriptFindsTheChangedTurns) {
  std::string id = start();
  ASSERT_EQ(say(id, "one").status, 200);
  ASSERT_EQ(say(id, "two").status, 200);
  bj::value transcript = rest("GET", {"bots", bot_, "tester", id}).body;
  bj::object body{{"functionVersion", "draft"}, {"from", transcript}};
  auto same = rest("POST", {"bots", bot_, "replay"}, bj::serialize(body));
  ASSERT_EQ(same.status, 200) << bj::serialize(same.body);
  EXPECT_EQ(same.body.at("replayed"), 2);
  EXPECT_EQ(same.body.at("changed"), 0);
  EXPECT_EQ(same.body.at("complete"), true);

  setCode(
      R"({"messages":["echo $MSG","and more"],"context":{"intentId":"x","confidenceScore":1}})");
  auto changed = rest("POST", {"bots", bot_, "replay"}, bj::serialize(body));
  ASSERT_EQ(changed.status, 200);
  EXPECT_EQ(changed.body.at("changed"), 2);
  const bj::value& r0 = changed.body.at("results").at(0);
  EXPECT_EQ(r0.at("status"), "CHANGED");
  EXPECT_EQ(r0.at("consumerMessage"), "one");
  const auto& diffs = r0.at("differences").as_array();
  ASSERT_EQ(diffs.size(), 2u) << bj::serialize(diffs);
  EXPECT_EQ(diffs[0].at("field"), "texts");
  EXPECT_EQ(diffs[0].at("index"), 1);
  EXPECT_TRUE(diffs[0].at("before").is_null());
  EXPECT_EQ(diffs[0].at("after"), "and more");
  EXPECT_EQ(diffs[1].at("field"), "intents");
  // The recorded inputs were sent again as they were.
  std::lock_guard l(script_.mu);
  EXPECT_EQ(script_.inputs.back(), transcript.at("turns").at(1).at("input"));
}

TEST_F(TesterTest, ReplayRunsTheTurnRecordsInOrderAndSkipsThoseWithoutACall) {
  auto record = [&](const std::string& turn, TimeMs ts, const std::string& message,
                    const std::string& response, int attempts) {
    store::TurnRecord t;
    t.account = kAcc;
    t.bot = BotId(bot_);
    t.conversation = ConversationId("c1");
    t.turn_id = turn;
    t.ts = ts;
    t.outcome = "OK";
    t.input_json = bj::serialize(bj::object{
        {"timestamp", ts}, {"headers", bj::array{}}, {"payload", {{"message", message}}}});
    t.response_json = response;
    t.timings_json = bj::serialize(bj::object{{"attempts", attempts}});
    ASSERT_TRUE(store_->bots().appendTurn(t, 200));
  };
  record("t1", 1, "first", R"({"messages":["echo first"]})", 1);
  record("t2", 2, "second", "", 0);
  record("t3", 3, "third", R"({"messages":["old third"]})", 1);
  auto r = rest("POST", {"bots", bot_, "replay"}, R"({"functionVersion":"draft"})", {"FAAS_ADMIN"});
  ASSERT_EQ(r.status, 200) << bj::serialize(r.body);
  EXPECT_EQ(r.body.at("source"), "turns");
  const auto& results = r.body.at("results").as_array();
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].at("turnId"), "t1");
  EXPECT_EQ(results[0].at("status"), "SAME");
  EXPECT_EQ(results[1].at("status"), "SKIPPED");
  EXPECT_EQ(results[2].at("status"), "CHANGED");
  EXPECT_EQ(results[2].at("differences").at(0).at("after"), "echo third");
  EXPECT_EQ(r.body.at("changed"), 1);
  EXPECT_EQ(r.body.at("skipped"), 1);
  // limit keeps the newest turns; conversationId filters.
  auto last = rest("POST", {"bots", bot_, "replay"}, R"({"functionVersion":"draft","limit":1})");
  EXPECT_EQ(last.body.at("results").at(0).at("turnId"), "t3");
  auto other = rest("POST", {"bots", bot_, "replay"},
                    R"({"functionVersion":"draft","conversationId":"c2"})");
  EXPECT_EQ(other.body.at("turns"), 0);
}

TEST_F(TesterTest, ReplayRefusesBadInputAndRoles) {
  EXPECT_EQ(rest("POST", {"bots", bot_, "replay"}, "{}").status, 400);
  EXPECT_EQ(
      rest("POST", {"bots", bot_, "replay"}, R"({"functionVersion":"draft","from":5})").status,
      400);
  EXPECT_EQ(rest("POST", {"bots", bot_, "replay"},
                 R"({"functionVersion":"draft","from":[{"response":{}}]})")
                .status,
            400);
  EXPECT_EQ(
      rest("POST", {"bots", bot_, "replay"}, R"({"functionVersion":"draft","limit":0})").status,
      400);
  EXPECT_EQ(rest("POST", {"bots", bot_, "replay"}, R"({"functionVersion":"7"})").status, 404);
  bj::array many;
  for (int i = 0; i < 201; ++i) many.push_back(bj::object{{"input", {{"payload", {}}}}});
  EXPECT_EQ(rest("POST", {"bots", bot_, "replay"},
                 bj::serialize(bj::object{{"functionVersion", "draft"}, {"from", many}}))
                .status,
            413);
  EXPECT_EQ(
      rest("POST", {"bots", bot_, "replay"}, R"({"functionVersion":"draft"})", {"FAAS_DEVELOPER"})
          .status,
      403);
  EXPECT_EQ(
      rest("POST", {"bots", bot_, "replay"}, R"({"functionVersion":"draft"})", {"AGENT_MANAGER"})
          .status,
      403);
}

}  // namespace
}  // namespace parley::connector
