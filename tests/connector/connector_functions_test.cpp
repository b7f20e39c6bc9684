// The bot connector with REAL deployed JavaScript functions (V8 via FunctionRuntime), the real
// conversation engine and the memory store: the examples of the spec end to end, minus the
// network (the server's wiring of the connector is main's; see src/connector/README.md).

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>

#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "connector/bot_service.h"
#include "conversation/conversation_engine.h"
#include "conversation/testing/ring_acceptor.h"
#include "functions/runtime.h"
#include "functions/testing/fake_host.h"
#include "store/memory/memory_store.h"

namespace parley::connector {
namespace {

namespace bj = boost::json;
namespace conv = parley::conversation;
using namespace std::chrono_literals;
using parley::testing::call;

const AccountId kAcc("7000");

// The bot of the spec's examples: one function answering per keyword.
const char* kBotCode = R"JS(
function lambda(input, callback) {
  const p = input.payload;
  if (p.event && p.event.name === 'WELCOME') {
    return callback(null, {messages: ['Welcome! How can I help?']});
  }
  const m = p.message;
  if (m === 'kinds') {
    return callback(null, {
      messages: [
        'Here is a card:',
        {structuredContent: {type: 'vertical', elements: [
           {type: 'text', text: 'Product'},
           {type: 'button', title: 'Buy', click: {actions: [{type: 'publishText', text: 'buy'}]}}]},
         metadata: [{type: 'ExternalId', id: 'card-1'}]},
        {delay: 1, typing: true},
        {text: 'Customer asked for kinds', messageAudience: 'AGENTS_AND_MANAGERS'},
        {structuredContent: {message: 'Pick one', quickReplies: {type: 'quickReplies', itemsPerRow: 2,
          replies: [{type: 'button', title: 'Yes', click: {actions: [{type: 'publishText', text: 'yes'}]}}]}}}
      ],
      context: {intentId: 'show-kinds', intentName: 'Show kinds', confidenceScore: 0.93}
    });
  }
  if (m === 'transfer') {
    return callback(null, {messages: ['Transferring you'],
      context: {action: 'TRANSFER', actionParameters: {skill: 'human'}}});
  }
  if (m === 'transfer-missing') {
    return callback(null, {messages: ['Transferring you'],
      context: {action: 'TRANSFER', actionParameters: {skill: 'NoSuchSkill'}}});
  }
  if (m === 'close') {
    return callback(null, {messages: ['Bye'], context: {action: 'CLOSE_CONVERSATION'}});
  }
  if (m === 'ttr') {
    return callback(null, {context: {action: 'CHANGE_TTR', actionParameters: {ttrType: 'URGENT'}}});
  }
  if (m === 'bad-card') {
    return callback(null, {messages: ['Before the card',
      {structuredContent: {type: 'vertical', elements: [{type: 'button'}]}}]});
  }
  if (m === 'throw') {
    throw new Error('boom from the bot');
  }
  if (m === 'slow') {
    setTimeout(() => callback(null, {messages: ['too late']}), 400);
    return;
  }
  if (m === 'rich') {
    return callback(null, {messages: ['got ' + p.context.lpEvent.event.type + ' ' + m]});
  }
  callback(null, {messages: ['echo: ' + m]});
}
)JS";

class ConnectorFunctionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount(store::Account{kAcc, "acme", 300, 600, 3600, 0}));
    general_ = skill("general");
    human_ = skill("human");
    escalation_ = skill("escalation");
    auto rt = functions::FunctionRuntime::create({}, host_, clock_);
    ASSERT_TRUE(rt) << rt.error().message;
    runtime_ = std::move(*rt);
    store::FunctionRecord f;
    f.uuid = FunctionId("bot-fn");
    f.account = kAcc;
    f.name = "bot";
    f.event_id = "bot_connectors_custom_integration";
    f.code = kBotCode;
    ASSERT_TRUE(store_->functions().createFunction(f));
    ASSERT_TRUE(runtime_->deploy(kAcc, f.uuid, functions::DeployedCode{kBotCode, {}, 1}));
    conv::Options o;
    o.tick_interval_ms = 0;
    engine_ = conv::makeConversationService(*store_, clock_, o);
    engine_raw_ = engine_.get();
    ASSERT_TRUE(engine_->recover());
    desk_sub_ = engine_->subscribe(desk_);
    auto v = richcontent::Validator::loadEmbedded();
    ASSERT_TRUE(v) << v.error().message;
    ConnectorOptions co;
    co.ms_per_delay_second = 50;
    co.service_probe_interval_ms = 100;
    service_ = std::make_unique<BotService>(*store_, *engine_, *runtime_, *v, clock_, co);
    ASSERT_TRUE(service_->start());
    auto b = service_->createBot(kAcc, bj::parse(R"({"name":"Spec bot","functionUuid":"bot-fn",
      "conversationTypes":["MESSAGING","CHAT"],"skills":["general"],"disclaimerAccepted":true,
      "escalation":{"skill":"escalation","message":"An agent will take over.",
                    "agentMessage":"Escalated by the bot.","turnTimeoutMs":5000}})")
                                           .as_object());
    ASSERT_TRUE(b) << b.error().message;
    bot_ = BotId(std::string(b->at("id").as_string()));
    bot_user_ = std::string(b->at("userId").as_string());
    ASSERT_TRUE(service_->startBot(kAcc, bot_));
  }
  void TearDown() override {
    service_.reset();
    desk_sub_.reset();
    engine_.reset();
    runtime_.reset();
  }

  SkillId skill(const std::string& name) {
    auto s = store_->accounts().createSkill(store::Skill{kAcc, SkillId(), name, 0});
    EXPECT_TRUE(s);
    return s->id;
  }
  store::Conversation open(const std::string& consumer,
                           store::Channel ch = store::Channel::kMessaging) {
    conv::ConversationRequest req;
    req.account = kAcc;
    req.consumer = ConsumerId(consumer);
    req.channel = ch;
    req.skill = general_;
    return *call<store::Conversation>([&](auto cb) { engine_->requestConversation(req, cb); });
  }
  void publish(const store::Conversation& c, std::string event_json) {
    conv::PublishRequest req;
    req.actor = conv::Actor::ofConsumer(kAcc, c.consumer);
    req.conversation = c.id;
    req.event_json = std::move(event_json);
    ASSERT_TRUE(call<conv::Published>([&](auto cb) { engine_->publish(req, cb); }));
  }
  void say(const store::Conversation& c, const std::string& text) {
    publish(c, bj::serialize(bj::object{
                   {"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", text}}));
  }
  std::vector<store::Message> botMessages(const store::Conversation& c) {
    auto r = call<std::vector<store::Message>>(
        [&](auto cb) { engine_->listMessages(kAcc, c.id, 0, 1000, cb); });
    std::vector<store::Message> out;
    for (auto& m : *r)
      if (m.originator_role != store::ParticipantRole::kConsumer) out.push_back(m);
    return out;
  }
  static std::string text(const store::Message& m) {
    bj::value ev = bj::parse(m.event_json);
    if (ev.at("type") == "ContentEvent") return std::string(ev.at("message").as_string());
    return "[" + std::string(ev.at("type").as_string()) + "]";
  }
  bool waitBotMessages(const store::Conversation& c, std::size_t n, int ms = 8000) {
    for (int i = 0; i < ms / 10; ++i) {
      if (botMessages(c).size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  std::vector<store::TurnRecord> turns() { return *store_->bots().listTurns(kAcc, bot_, 100); }
  bool waitTurns(std::size_t n, int ms = 8000) {
    for (int i = 0; i < ms / 10; ++i) {
      if (turns().size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  store::Conversation get(const store::Conversation& c) {
    return *call<store::Conversation>([&](auto cb) { engine_->getConversation(kAcc, c.id, cb); });
  }

  parley::testing::FakeClock clock_;
  functions::testing::FakeHost host_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<functions::FunctionRuntime> runtime_;
  std::unique_ptr<conv::ConversationService> engine_;
  conv::ConversationService* engine_raw_ = nullptr;
  conv::testing::RingAcceptor desk_{engine_raw_};
  conv::Subscription desk_sub_;
  std::unique_ptr<BotService> service_;
  SkillId general_, human_, escalation_;
  BotId bot_;
  std::string bot_user_;
};

TEST_F(ConnectorFunctionsTest, MessagingEchoFromTheFirstMessage) {
  auto c = open("c-echo");
  say(c, "hello bot");
  ASSERT_TRUE(waitBotMessages(c, 1));
  EXPECT_EQ(text(botMessages(c)[0]), "echo: hello bot");
  ASSERT_TRUE(waitTurns(1));
  EXPECT_EQ(turns()[0].outcome, "OK");
  EXPECT_EQ(bj::parse(turns()[0].response_json), bj::parse(R"({"messages":["echo: hello bot"]})"));
}

TEST_F(ConnectorFunctionsTest, ChatStartsWithTheWelcomeEvent) {
  auto c = open("c-chat", store::Channel::kChat);
  ASSERT_TRUE(waitBotMessages(c, 1));
  EXPECT_EQ(text(botMessages(c)[0]), "Welcome! How can I help?");
  say(c, "hi");
  ASSERT_TRUE(waitBotMessages(c, 2));
  EXPECT_EQ(text(botMessages(c)[1]), "echo: hi");
}

TEST_F(ConnectorFunctionsTest, EveryMessageKindAndIntentsReachTheAgentSide) {
  auto c = open("c-kinds");
  say(c, "kinds");
  ASSERT_TRUE(waitBotMessages(c, 4));
  auto msgs = botMessages(c);
  ASSERT_EQ(msgs.size(), 4u);
  EXPECT_EQ(text(msgs[0]), "Here is a card:");
  EXPECT_EQ(text(msgs[1]), "[RichContentEvent]");
  EXPECT_NE(msgs[1].metadata_json.find("card-1"), std::string::npos);
  EXPECT_EQ(msgs[2].audience, store::Audience::kAgentsAndManagers);
  EXPECT_EQ(text(msgs[3]), "Pick one");
  EXPECT_NE(msgs[3].event_json.find("quickReplies"), std::string::npos);
  for (const auto& m : msgs) {
    EXPECT_NE(m.metadata_json.find("\"BotResponse\""), std::string::npos);
    EXPECT_NE(m.metadata_json.find("show-kinds"), std::string::npos);
  }
}

TEST_F(ConnectorFunctionsTest, ConsumerRichContentIsForwarded) {
  auto c = open("c-rich");
  say(c, "hi");
  ASSERT_TRUE(waitBotMessages(c, 1));
  publish(
      c,
      R"({"type":"RichContentEvent","content":{"type":"vertical","elements":[{"type":"map","la":32.1,"lo":34.8}]}})");
  ASSERT_TRUE(waitBotMessages(c, 2));
  EXPECT_EQ(text(botMessages(c)[1]),
            "echo: com.liveperson.bot-connectors.consumer.send-rich-content");
}

TEST_F(ConnectorFunctionsTest, Actions) {
  auto c1 = open("c-transfer");
  say(c1, "transfer");
  ASSERT_TRUE(waitTurns(1));
  EXPECT_EQ(get(c1).skill, human_);
  auto c2 = open("c-ttr");
  say(c2, "ttr");
  ASSERT_TRUE(waitTurns(2));
  EXPECT_EQ(get(c2).ttr_type, store::TtrType::kUrgent);
  say(c2, "close");
  ASSERT_TRUE(waitTurns(3));
  EXPECT_EQ(get(c2).state, store::ConversationState::kClose);
}

TEST_F(ConnectorFunctionsTest, ThrowingFunctionEscalates) {
  auto c = open("c-throw");
  say(c, "throw");
  ASSERT_TRUE(waitTurns(1));
  auto t = turns()[0];
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("boom from the bot"), std::string::npos) << t.error;
  auto msgs = botMessages(c);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(text(msgs[0]), "An agent will take over.");
  EXPECT_EQ(msgs[1].audience, store::Audience::kAgentsAndManagers);
  EXPECT_EQ(get(c).skill, escalation_);
}

TEST_F(ConnectorFunctionsTest, TransferToAMissingSkillEscalates) {
  auto c = open("c-missing");
  say(c, "transfer-missing");
  ASSERT_TRUE(waitTurns(1));
  EXPECT_EQ(turns()[0].outcome, "ESCALATED");
  EXPECT_NE(turns()[0].error.find("transfer-skill-not-existing"), std::string::npos);
  EXPECT_EQ(get(c).skill, escalation_);
}

TEST_F(ConnectorFunctionsTest, InvalidStructuredContentIsRefusedAndRecorded) {
  auto c = open("c-bad");
  say(c, "bad-card");
  ASSERT_TRUE(waitTurns(1));
  EXPECT_EQ(turns()[0].outcome, "PARTIAL");
  EXPECT_NE(turns()[0].actions_json.find("/messages/1/structuredContent"), std::string::npos);
  auto msgs = botMessages(c);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(text(msgs[0]), "Before the card");
}

TEST_F(ConnectorFunctionsTest, SlowFunctionRacingAnAgentIsDiscarded) {
  store::User u;
  u.account = kAcc;
  u.login_name = "alice";
  u.pid = "pid-alice";
  u.roles = {store::Role::kAgent};
  u.skills = {human_};
  auto agent_user = store_->accounts().createUser(u);
  ASSERT_TRUE(agent_user);
  auto agent = conv::Actor::ofAgent(kAcc, agent_user->id, agent_user->pid);
  desk_.acceptFor(agent);
  ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
    engine_->setAgentState(kAcc, agent.user, store::Availability::kOnline, cb);
  }));
  auto c = open("c-slow");
  say(c, "slow");
  std::this_thread::sleep_for(100ms);  // the function is running (400 ms timer in JS)
  ASSERT_TRUE(call<store::Conversation>([&](auto cb) {
    engine_->updateConversation(conv::Actor::ofSystem(kAcc), c.id, conv::transferToSkill(human_),
                                cb);
  }));
  ASSERT_TRUE(waitTurns(1));
  EXPECT_EQ(turns()[0].outcome, "DISCARDED");
  EXPECT_NE(turns()[0].response_json.find("too late"), std::string::npos);
  EXPECT_TRUE(botMessages(c).empty());
}

TEST_F(ConnectorFunctionsTest, UndeployedFunctionIsAServiceInterruptionUntilRedeployed) {
  auto c0 = open("c-si-0");
  say(c0, "hello");
  ASSERT_TRUE(waitTurns(1));
  // The function is undeployed from the runtime: the platform cannot run it.
  runtime_->undeploy(kAcc, FunctionId("bot-fn"));
  auto c1 = open("c-si-1");
  say(c1, "hello");
  ASSERT_TRUE(waitTurns(2));
  EXPECT_EQ(turns()[0].outcome, "ESCALATED");
  EXPECT_NE(turns()[0].error.find("com.liveperson.faas.es.notdeployed"), std::string::npos)
      << turns()[0].error;
  EXPECT_EQ(get(c1).skill, escalation_);
  EXPECT_EQ(service_->getBot(kAcc, bot_)->at("status").as_string(), "SERVICE_INTERRUPTION");
  // A function that throws is the function's failure, not the platform's: contrast below.
  ASSERT_TRUE(
      runtime_->deploy(kAcc, FunctionId("bot-fn"), functions::DeployedCode{kBotCode, {}, 2}));
  for (int i = 0; i < 300; ++i) {
    if (service_->getBot(kAcc, bot_)->at("status").as_string() == "ONLINE") break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(service_->getBot(kAcc, bot_)->at("status").as_string(), "ONLINE");
  EXPECT_EQ(store_->bots().getBot(kAcc, bot_)->status, store::BotStatus::kOnline);
  auto c2 = open("c-si-2");
  say(c2, "throw");
  ASSERT_TRUE(waitTurns(3));
  EXPECT_NE(turns()[0].error.find("aivendor.faas.invoke-lambda"), std::string::npos);
  EXPECT_EQ(service_->getBot(kAcc, bot_)->at("status").as_string(), "ONLINE");
  auto c3 = open("c-si-3");
  say(c3, "back?");
  ASSERT_TRUE(waitBotMessages(c3, 1));
  EXPECT_EQ(text(botMessages(c3)[0]), "echo: back?");
}

TEST_F(ConnectorFunctionsTest, PreAndPostHookFunctionsRunAroundTheBot) {
  const char* pre = R"JS(
function lambda(input, callback) {
  const req = input.payload;
  req.message = req.message.toUpperCase();
  callback(null, req);
}
)JS";
  const char* post = R"JS(
async function lambda(input, callback) {
  const res = input.payload;
  res.messages = res.messages.map(m => typeof m === 'string' ? m + ' [post]' : m);
  callback(null, res);
}
)JS";
  for (auto [uuid, name, event, code] :
       {std::tuple{"pre-fn", "pre", "bot_connectors_pre_hook", pre},
        std::tuple{"post-fn", "post", "bot_connectors_post_hook", post}}) {
    store::FunctionRecord f;
    f.uuid = FunctionId(uuid);
    f.account = kAcc;
    f.name = name;
    f.event_id = event;
    f.code = code;
    f.state = store::FunctionState::kProductive;
    ASSERT_TRUE(store_->functions().createFunction(f));
    ASSERT_TRUE(runtime_->deploy(kAcc, f.uuid, functions::DeployedCode{code, {}, 1}));
  }
  ASSERT_TRUE(service_->updateBot(
      kAcc, bot_, bj::parse(R"({"hooks":{"preHook":true,"postHook":true}})").as_object()));
  auto c = open("c-hooks");
  say(c, "hello hooks");
  ASSERT_TRUE(waitBotMessages(c, 1));
  EXPECT_EQ(text(botMessages(c)[0]), "echo: HELLO HOOKS [post]");
  ASSERT_TRUE(waitTurns(1));
  EXPECT_EQ(turns()[0].outcome, "OK");
  EXPECT_NE(turns()[0].actions_json.find("PRE_HOOK"), std::string::npos);
}

}  // namespace
}  // namespace parley::connector
