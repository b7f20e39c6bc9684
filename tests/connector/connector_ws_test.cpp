// End to end over the network: the real server (HTTP + consumer WebSocket), the connector
// registered as its `bots` handler, the real engine and a REAL deployed JavaScript function.
// Main's composition is reproduced here (main.cpp is never linked by tests).

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <functional>
#include <thread>

#include "common/clock.h"
#include "common/testing/temp_dir.h"
#include "connector/bot_service.h"
#include "conversation/conversation_engine.h"
#include "functions/runtime.h"
#include "functions/testing/fake_host.h"
#include "server/server.h"
#include "store/memory/memory_store.h"
#include "ws_client.h"

namespace parley::connector {
namespace {

namespace bj = boost::json;
namespace conv = parley::conversation;
using testing::ConsumerSocket;
using testing::HostPort;
namespace websocket = boost::beast::websocket;

const AccountId kAcc("8000");

const char* kCode = R"JS(
function lambda(input, callback) {
  const m = input.payload.message;
  if (m === 'sdes') {
    return callback(null, {messages: [JSON.stringify(input.payload.context.lpSdes)]});
  }
  if (m === 'private') {
    return callback(null, {messages: [{text: 'agents only', messageAudience: 'AGENTS_AND_MANAGERS'}, 'public'],
                           context: {intentId: 'p', confidenceScore: 1}});
  }
  callback(null, {messages: ['echo: ' + m]});
}
)JS";

class ConnectorWsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount(store::Account{kAcc, "acme", 300, 600, 3600, 0}));
    auto skill = store_->accounts().createSkill(store::Skill{kAcc, SkillId(), "general", 0});
    skill_ = skill->id;
    auto rt = functions::FunctionRuntime::create({}, host_, clock_);
    ASSERT_TRUE(rt);
    runtime_ = std::move(*rt);
    store::FunctionRecord f;
    f.uuid = FunctionId("ws-fn");
    f.account = kAcc;
    f.name = "ws";
    f.code = kCode;
    ASSERT_TRUE(store_->functions().createFunction(f));
    ASSERT_TRUE(runtime_->deploy(kAcc, f.uuid, functions::DeployedCode{kCode, {}, 1}));
    engine_ = conv::makeConversationService(*store_, clock_);
    ASSERT_TRUE(engine_->recover());
    auto v = richcontent::Validator::loadEmbedded();
    ASSERT_TRUE(v);
    ConnectorOptions co;
    // As main wires it: the protocol hub writes consumer profiles where the connector reads them.
    co.consumer_profiles = profiles_;
    connector_ = std::make_shared<BotService>(*store_, *engine_, *runtime_, *v, clock_, co);
    ASSERT_TRUE(connector_->start());
    server::ServerOptions so;
    so.data_dir = dir_.string();
    so.http_listen = "127.0.0.1:0";
    so.https_listen = "";
    so.threads = 2;
    so.metrics_token = "metrics-token";
    so.consumer_profiles = profiles_;
    auto s = server::makeServer(*store_, *engine_, clock_, so);
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
    ASSERT_TRUE(server_->addHandler(connector_));
    server_->addMetricsSource([c = connector_.get()] { return c->prometheusText(); });
    auto ep = server_->start();
    ASSERT_TRUE(ep) << ep.error().message;
    hp_ = HostPort::fromUrl(ep->http_url);
    auto b = connector_->createBot(kAcc, bj::parse(R"({"name":"WS bot","functionUuid":"ws-fn",
      "skills":["general"],"disclaimerAccepted":true})")
                                             .as_object());
    ASSERT_TRUE(b) << b.error().message;
    bot_ = BotId(std::string(b->at("id").as_string()));
    ASSERT_TRUE(connector_->startBot(kAcc, bot_));
  }
  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
    if (connector_) connector_->stop();
    connector_.reset();
    engine_.reset();
    runtime_.reset();
  }

  // Signs up a consumer, opens its socket, requests a conversation and subscribes to it.
  // `before_request` runs on the open socket first (e.g. SetUserProfile).
  std::string openConversation(ConsumerSocket& ws, bj::object context = {},
                               const std::function<void()>& before_request = {}) {
    auto [status, body] = testing::httpRequest(hp_, testing::http::verb::post,
                                               "/api/account/" + kAcc.str() + "/signup", "");
    EXPECT_EQ(status, 200) << body;
    std::string jwt(bj::parse(body).at("jwt").as_string());
    ws.connect(hp_, kAcc.str(), jwt);
    if (before_request) before_request();
    bj::object req{
        {"channelType", "MESSAGING"}, {"brandId", kAcc.str()}, {"skillId", skill_.str()}};
    if (!context.empty()) req["conversationContext"] = std::move(context);
    auto id = ws.request("cm.ConsumerRequestConversation", std::move(req));
    auto resp = ws.response(id, 5000);
    EXPECT_TRUE(resp);
    if (!resp) return "";
    std::string conv_id(resp->at("body").at("conversationId").as_string());
    auto sub = ws.request("ms.SubscribeMessagingEvents", {{"dialogId", conv_id}, {"fromSeq", 0}});
    EXPECT_TRUE(ws.response(sub, 5000));
    return conv_id;
  }
  void say(ConsumerSocket& ws, const std::string& conv_id, const std::string& text) {
    auto id = ws.request(
        "ms.PublishEvent",
        {{"dialogId", conv_id},
         {"event", {{"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", text}}}});
    auto r = ws.response(id, 5000);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->at("code").to_number<int>(), 200) << bj::serialize(*r);
  }
  // Collects agent-side content events seen by the consumer until `n` arrived.
  std::vector<bj::object> agentEvents(ConsumerSocket& ws, std::size_t n) {
    std::vector<bj::object> out;
    auto take = [&](const bj::value& f) {
      if (!f.is_object() || f.as_object().if_contains("type") == nullptr ||
          f.at("type") != "ms.MessagingEventNotification")
        return;
      for (const auto& ch : f.at("body").at("changes").as_array()) {
        const auto& c = ch.as_object();
        if (c.at("originatorMetadata").at("role") == "CONSUMER") continue;
        if (c.at("event").at("type") != "ContentEvent" &&
            c.at("event").at("type") != "RichContentEvent")
          continue;
        out.push_back(c);
      }
    };
    for (auto& f : ws.pending) take(f);
    ws.pending.clear();
    for (int i = 0; i < 200 && out.size() < n; ++i) {
      auto f = ws.read(5000);
      if (!f) break;
      take(*f);
    }
    return out;
  }

  parley::testing::TempDir tmp_;
  const std::filesystem::path dir_{tmp_.path()};
  SystemClock clock_;
  functions::testing::FakeHost host_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<functions::FunctionRuntime> runtime_;
  std::unique_ptr<conv::ConversationService> engine_;
  std::shared_ptr<BotService> connector_;
  std::unique_ptr<server::Server> server_;
  HostPort hp_;
  SkillId skill_;
  BotId bot_;
  std::shared_ptr<conversation::ConsumerProfiles> profiles_ =
      std::make_shared<conversation::ConsumerProfiles>();
};

TEST_F(ConnectorWsTest, ConsumerSocketGetsTheBotReply) {
  ConsumerSocket ws;
  std::string conv_id = openConversation(ws);
  ASSERT_FALSE(conv_id.empty());
  say(ws, conv_id, "hello over the wire");
  auto events = agentEvents(ws, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].at("event").at("message").as_string(), "echo: hello over the wire");
  EXPECT_EQ(events[0].at("originatorMetadata").at("role").as_string(), "ASSIGNED_AGENT");
  ws.close();
}

// Stopping the server sends every open socket the close frame 1001 "server shutting down" (the
// TLS variant, which used to crash, is in tests/js/restart_test.js).
TEST_F(ConnectorWsTest, StoppingTheServerClosesOpenSocketsAsGoingAway) {
  ConsumerSocket ws;
  std::string conv_id = openConversation(ws);
  ASSERT_FALSE(conv_id.empty());
  // The client reads while the server stops: the close handshake needs its reply.
  std::thread reader([&ws] {
    for (int i = 0; i < 50 && ws.read(5000); ++i) {
    }
  });
  server_->stop();
  reader.join();
  EXPECT_EQ(ws.closeReason().code, websocket::close_code::going_away);
  EXPECT_EQ(std::string(ws.closeReason().reason.data(), ws.closeReason().reason.size()),
            "server shutting down");
}

TEST_F(ConnectorWsTest, PrivateMessagesNeverReachTheConsumer) {
  ConsumerSocket ws;
  std::string conv_id = openConversation(ws);
  say(ws, conv_id, "private");
  auto events = agentEvents(ws, 1);
  ASSERT_GE(events.size(), 1u);
  for (const auto& e : events) {
    EXPECT_NE(e.at("event").at("message").as_string(), "agents only");
    EXPECT_EQ(e.at("messageAudience").as_string(), "ALL");
  }
  EXPECT_EQ(events[0].at("event").at("message").as_string(), "public");
  // The intents travel as BotResponse metadata on the bot's message.
  EXPECT_NE(bj::serialize(events[0].at("metadata")).find("BotResponse"), std::string::npos);
  ws.close();
}

TEST_F(ConnectorWsTest, EngagementAttributesFromTheProfileAndTheConversationContext) {
  ASSERT_TRUE(connector_->updateBot(kAcc, bot_, bj::object{{"engagementAttributes", true}}));
  ConsumerSocket ws;
  auto context = bj::parse(R"({"type":"SharkContext","visitorId":"v-9","sessionId":"s-9",
      "lang":"en-US","sdes":[{"type":"prodView","products":[{"product":{"name":"kettle"}}]}]})")
                     .as_object();
  std::string conv_id = openConversation(ws, context, [&] {
    auto id =
        ws.request("userprofile.SetUserProfile", bj::parse(R"({"authenticatedData":{"lp_sdes":[
          {"type":"ctmrinfo","info":{"customerId":"cust-1","ctype":"vip"}}]}})")
                                                     .as_object());
    auto r = ws.response(id, 5000);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->at("code").to_number<int>(), 200) << bj::serialize(*r);
  });
  ASSERT_FALSE(conv_id.empty());
  say(ws, conv_id, "sdes");
  auto events = agentEvents(ws, 1);
  ASSERT_EQ(events.size(), 1u);
  auto sdes = bj::parse(events[0].at("event").at("message").as_string());
  EXPECT_EQ(sdes.at("authenticatedSdes").at("customerInfo").at("customerInfo"),
            bj::parse(R"({"customerId":"cust-1","ctype":"vip"})"))
      << sdes;
  EXPECT_EQ(sdes.at("unauthenticatedSdes").at("viewedProduct").at("viewedProduct"),
            bj::parse(R"({"products":[{"product":{"name":"kettle"}}]})"))
      << sdes;
  ws.close();
}

TEST_F(ConnectorWsTest, BotsResourceAndMetricsAreServed) {
  auto [status, body] =
      testing::httpRequest(hp_, testing::http::verb::get, "/metrics", "", "metrics-token");
  EXPECT_EQ(status, 200);
  EXPECT_NE(body.find("parley_bot_conversations"), std::string::npos);
  // Tenant labels are summed away by default.
  EXPECT_NE(body.find("parley_bot_status{status=\"ONLINE\"}"), std::string::npos) << body;
  EXPECT_EQ(body.find("bot=\""), std::string::npos) << body;
  auto [anonymous, anonymous_body] =
      testing::httpRequest(hp_, testing::http::verb::get, "/metrics", "");
  EXPECT_EQ(anonymous, 401) << anonymous_body;
  // Unauthenticated REST is refused by the server before it reaches the handler.
  auto [s2, b2] = testing::httpRequest(hp_, testing::http::verb::get,
                                       "/api/v1/accounts/" + kAcc.str() + "/bots", "");
  EXPECT_EQ(s2, 401) << b2;
}

}  // namespace
}  // namespace parley::connector
