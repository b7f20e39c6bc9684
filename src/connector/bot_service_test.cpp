// The turn pipeline with the memory store, the real conversation engine and a scripted runner.

#include "connector/bot_service.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "common/policy.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "connector/testing/fake_runner.h"
#include "conversation/conversation_engine.h"
#include "conversation/testing/ring_acceptor.h"
#include "store/engagement_attributes.h"
#include "store/memory/memory_store.h"
#include "store/testing/unavailable_store.h"

namespace parley::connector {
namespace {

namespace bj = boost::json;
namespace conv = parley::conversation;
using namespace std::chrono_literals;
using parley::testing::call;
using testing::errorResult;
using testing::FakeRunner;
using testing::okResult;

const AccountId kAcc("1000");

// A Store whose BotStore writes turn records LATER, on a thread of its own (like the SQLite
// store's group commit), and can fail them. Everything else is the memory store.
class DeferredTurnStore final : public store::Store, public store::BotStore {
 public:
  explicit DeferredTurnStore(const Clock& clock) : inner_(store::makeMemoryStore(clock)) {}
  ~DeferredTurnStore() override {
    for (auto& t : writers_) t.join();
  }
  std::atomic<int> delay_ms{150};
  std::atomic<bool> fail_writes{false};

  // store::Store
  store::AccountStore& accounts() override { return inner_->accounts(); }
  store::ConversationStore& conversations() override { return inner_->conversations(); }
  store::FunctionStore& functions() override { return inner_->functions(); }
  store::BotStore& bots() override { return *this; }
  store::OAuthStore& oauth() override { return inner_->oauth(); }
  store::ScheduleStore& schedules() override { return inner_->schedules(); }
  int schemaVersion() const override { return 0; }

  // store::BotStore
  Status createBot(const store::BotRecord& b) override { return b_().createBot(b); }
  Status updateBot(const store::BotRecord& b) override { return b_().updateBot(b); }
  Status deleteBot(const AccountId& a, const BotId& id) override { return b_().deleteBot(a, id); }
  Result<store::BotRecord> getBot(const AccountId& a, const BotId& id) override {
    return b_().getBot(a, id);
  }
  Result<std::vector<store::BotRecord>> listBots(const AccountId& a) override {
    return b_().listBots(a);
  }
  Result<std::vector<store::BotRecord>> listAllBots() override { return b_().listAllBots(); }
  Status appendTurn(const store::TurnRecord& t, int keep) override {
    return b_().appendTurn(t, keep);
  }
  void appendTurnAsync(store::TurnRecord t, int keep, std::function<void(Status)> done) override {
    std::lock_guard l(mu_);
    writers_.emplace_back([this, t = std::move(t), keep, done = std::move(done)] {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
      if (fail_writes) return done(internalError("disk full (test)"));
      done(b_().appendTurn(t, keep));
    });
  }
  Result<std::vector<store::TurnRecord>> listTurns(const AccountId& a, const BotId& id,
                                                   int limit) override {
    return b_().listTurns(a, id, limit);
  }
  Status putPendingTurn(const store::PendingTurn& p) override {
    ++pending_writes;
    return b_().putPendingTurn(p);
  }
  Status deletePendingTurn(const std::string& id) override {
    ++pending_writes;
    return b_().deletePendingTurn(id);
  }
  Result<std::vector<store::PendingTurn>> listPendingTurns() override {
    return b_().listPendingTurns();
  }
  std::atomic<int> pending_writes{0};
  Status putImageAllowlist(const AccountId& a, const std::vector<std::string>& e) override {
    return b_().putImageAllowlist(a, e);
  }
  Result<std::vector<std::string>> getImageAllowlist(const AccountId& a) override {
    return b_().getImageAllowlist(a);
  }
  Status deleteImageAllowlist(const AccountId& a) override { return b_().deleteImageAllowlist(a); }

 private:
  store::BotStore& b_() { return inner_->bots(); }
  std::unique_ptr<store::Store> inner_;
  std::mutex mu_;
  std::vector<std::thread> writers_;
};

class BotServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!store_) store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount(store::Account{kAcc, "acme", 300, 600, 3600, 0}));
    bots_skill_ = skill("bots");
    humans_skill_ = skill("humans");
    escalation_skill_ = skill("Escalations");
    store::FunctionRecord f;
    f.uuid = FunctionId("fn-bot");
    f.account = kAcc;
    f.name = "bot";
    f.code = "function lambda(input, callback) { callback(null, {messages:['hi']}); }";
    ASSERT_TRUE(store_->functions().createFunction(f));
    f.uuid = FunctionId("fn-other");
    f.name = "other";
    ASSERT_TRUE(store_->functions().createFunction(f));
    conv::Options o;
    o.tick_interval_ms = 0;
    o.threads = 3;
    engine_ = conv::makeConversationService(*store_, clock_, o);
    engine_raw_ = engine_.get();
    ASSERT_TRUE(engine_->recover());
    watcher_sub_ = engine_->subscribe(watcher_);
    auto v = richcontent::Validator::loadEmbedded();
    ASSERT_TRUE(v);
    ConnectorOptions co;
    co.ms_per_delay_second = 20;
    co.service_probe_interval_ms = 50;
    co.max_open_conversations = max_open_;
    co.store_retry_first_ms = 5;
    co.store_retry_max_ms = 20;
    co.store_retry_for_ms = store_retry_for_ms_;
    co.consumer_profiles = std::make_shared<TestProfiles>(*this);
    co.on_change = [this](const AccountId& acc, std::string_view kind, const std::string& id) {
      std::lock_guard l(profiles_mu_);
      changes_.push_back(acc.str() + " " + std::string(kind) + " " + id);
    };
    service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_, co);
    ASSERT_TRUE(service_->start());
  }
  void TearDown() override {
    runner_.releaseAll();
    service_.reset();
    watcher_sub_.reset();
    engine_.reset();
  }

  SkillId skill(const std::string& name) {
    auto s = store_->accounts().createSkill(store::Skill{kAcc, SkillId(), name, 0});
    EXPECT_TRUE(s);
    return s->id;
  }

  bj::object botBody(const std::string& extra = "") {
    std::string body = R"({"name":"Helper","vendor":"CUSTOM_INTEGRATION","functionUuid":"fn-bot",
      "conversationTypes":["MESSAGING","CHAT"],"skills":["bots"],"disclaimerAccepted":true,
      "escalation":{"skill":"Escalations","message":"Connecting you to an agent.",
                    "agentMessage":"Bot failed.","failureMessage":"Sorry, nobody is available.",
                    "retries":0,"turnTimeoutMs":5000})";
    body += extra + "}";
    return bj::parse(body).as_object();
  }
  // botBody() with the given top-level fields replaced, e.g. formBody(R"("name":"")").
  bj::object formBody(const std::string& fields) {
    bj::object b = botBody();
    const bj::value replaced = bj::parse("{" + fields + "}");
    for (const auto& kv : replaced.as_object()) b[kv.key()] = kv.value();
    return b;
  }

  // Creates and starts a bot; returns its id and user.
  std::pair<BotId, UserId> startBot(const std::string& extra = "") {
    auto b = service_->createBot(kAcc, botBody(extra));
    EXPECT_TRUE(b) << (b ? "" : b.error().message);
    BotId id(std::string(b->at("id").as_string()));
    auto s = service_->startBot(kAcc, id);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    return {id, UserId(std::string(b->at("userId").as_string()))};
  }

  conv::Actor consumer(const std::string& c) {
    return conv::Actor::ofConsumer(kAcc, ConsumerId(c));
  }

  store::Conversation open(const std::string& c, store::Channel ch = store::Channel::kMessaging,
                           SkillId skill = SkillId(), std::string context_json = "{}") {
    conv::ConversationRequest req;
    req.context_json = std::move(context_json);
    req.account = kAcc;
    req.consumer = ConsumerId(c);
    req.channel = ch;
    req.skill = skill.empty() ? bots_skill_ : skill;
    auto r = call<store::Conversation>([&](auto cb) { engine_->requestConversation(req, cb); });
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return *r;
  }

  void say(const store::Conversation& c, const std::string& text) {
    conv::PublishRequest req;
    req.actor = consumer(c.consumer.str());
    req.conversation = c.id;
    req.event_json = bj::serialize(
        bj::object{{"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", text}});
    auto r = call<conv::Published>([&](auto cb) { engine_->publish(req, cb); });
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
  }

  std::vector<store::Message> messages(const store::Conversation& c) {
    auto r = call<std::vector<store::Message>>(
        [&](auto cb) { engine_->listMessages(kAcc, c.id, 0, 1000, cb); });
    return r ? *r : std::vector<store::Message>{};
  }
  // Texts of non-consumer content messages, "[private] " prefixed for private ones.
  std::vector<std::string> botTexts(const store::Conversation& c) {
    std::vector<std::string> out;
    for (const auto& m : messages(c)) {
      if (m.originator_role == store::ParticipantRole::kConsumer) continue;
      bj::value ev = bj::parse(m.event_json);
      std::string prefix = m.audience == store::Audience::kAgentsAndManagers ? "[private] " : "";
      if (ev.at("type") == "ContentEvent")
        out.push_back(prefix + std::string(ev.at("message").as_string()));
      else if (ev.at("type") == "RichContentEvent")
        out.push_back(prefix + "[rich] " + bj::serialize(ev.at("content")));
    }
    return out;
  }
  // Waits until `pred` holds for the bot texts of `c`.
  bool waitTexts(const store::Conversation& c,
                 const std::function<bool(const std::vector<std::string>&)>& pred,
                 int timeout_ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred(botTexts(c))) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  bool waitCount(const store::Conversation& c, std::size_t n) {
    return waitTexts(c, [n](const auto& t) { return t.size() >= n; });
  }
  store::Conversation get(const store::Conversation& c) {
    auto r = call<store::Conversation>([&](auto cb) { engine_->getConversation(kAcc, c.id, cb); });
    return *r;
  }
  std::optional<std::string> assigned(const store::Conversation& c) {
    for (const auto& p : get(c).participants)
      if (p.role == store::ParticipantRole::kAssignedAgent &&
          p.state == store::ParticipantState::kActive)
        return p.id;
    return std::nullopt;
  }
  bool waitAssigned(const store::Conversation& c, const std::string& user) {
    for (int i = 0; i < 500; ++i) {
      if (assigned(c) == user) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  std::vector<store::TurnRecord> turns(const BotId& id) {
    auto t = store_->bots().listTurns(kAcc, id, 100);
    return t ? *t : std::vector<store::TurnRecord>{};
  }
  bool waitTurns(const BotId& id, std::size_t n) {
    for (int i = 0; i < 500; ++i) {
      if (turns(id).size() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  conv::Actor humanAgent(const std::string& login, SkillId skill) {
    store::User u;
    u.account = kAcc;
    u.login_name = login;
    u.pid = "pid-" + login;
    u.roles = {store::Role::kAgent};
    u.skills = {skill};
    auto r = store_->accounts().createUser(u);
    EXPECT_TRUE(r);
    auto a = conv::Actor::ofAgent(kAcc, r->id, r->pid);
    watcher_.acceptFor(a);
    auto s = call<store::AgentState>(
        [&](auto cb) { engine_->setAgentState(kAcc, a.user, store::Availability::kOnline, cb); });
    EXPECT_TRUE(s);
    return a;
  }
  static bj::object payloadOf(const functions::InvokeRequest& r) {
    return bj::parse(r.input_json).at("payload").as_object();
  }

  parley::testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<conv::ConversationService> engine_;
  conv::ConversationService* engine_raw_ = nullptr;
  conv::testing::RingAcceptor watcher_{engine_raw_};
  conv::Subscription watcher_sub_;
  FakeRunner runner_;
  std::unique_ptr<BotService> service_;
  SkillId bots_skill_, humans_skill_, escalation_skill_;
  // Counts reads and can throw, which the real ConsumerProfiles never does.
  struct TestProfiles final : conversation::ConsumerProfileReader {
    explicit TestProfiles(BotServiceTest& t) : t(t) {}
    std::optional<std::string> get(const AccountId& acc, const ConsumerId& c) const override {
      std::lock_guard l(t.profiles_mu_);
      ++t.profile_reads_;
      if (t.profile_throws_) throw std::runtime_error("profile source broke (test)");
      auto it = t.profiles_.find(acc.str() + "/" + c.str());
      return it == t.profiles_.end() ? std::nullopt : std::optional<std::string>(it->second);
    }
    BotServiceTest& t;
  };
  std::mutex profiles_mu_;
  std::map<std::string, std::string> profiles_;  // "acc/consumer" → SetUserProfile JSON
  int profile_reads_ = 0;
  bool profile_throws_ = false;  // guarded by profiles_mu_
  int max_open_ = 999;
  int store_retry_for_ms_ = 60'000;
  std::vector<std::string> changes_;  // on_change calls, "acc kind id"; guarded by profiles_mu_
};

api::Response rest(BotService& s, std::string method, std::vector<std::string> path,
                   std::string body = "", std::vector<std::string> roles = {"ADMIN"}) {
  api::Request req;
  req.method = std::move(method);
  req.path = std::move(path);
  req.body = std::move(body);
  req.caller.account = kAcc;
  req.caller.roles = std::move(roles);
  auto p = std::make_shared<std::promise<api::Response>>();
  auto fut = p->get_future();
  s.handle(std::move(req), [p](api::Response r) { p->set_value(std::move(r)); });
  return fut.get();
}

// ---- configuration ----------------------------------------------------------------------------

TEST_F(BotServiceTest, CreateValidatesAndCreatesABotUser) {
  auto b = service_->createBot(kAcc, botBody());
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->at("status").as_string(), "OFFLINE");
  auto user = store_->accounts().getUser(kAcc, UserId(std::string(b->at("userId").as_string())));
  ASSERT_TRUE(user);
  EXPECT_EQ(user->type, store::UserType::kBot);
  EXPECT_EQ(user->skills, std::vector<SkillId>{bots_skill_});

  auto body = botBody();
  body["skills"] = bj::array{"nope"};
  auto bad_skill = service_->createBot(kAcc, body);
  ASSERT_FALSE(bad_skill);
  EXPECT_NE(bad_skill.error().message.find("skill \"nope\" does not exist"), std::string::npos);
  body = botBody();
  body["vendor"] = "LEX";
  EXPECT_FALSE(service_->createBot(kAcc, body));
  body = botBody();
  body["functionUuid"] = "missing";
  EXPECT_FALSE(service_->createBot(kAcc, body));
  // The same BOT user cannot serve two bots.
  body = botBody();
  body["userId"] = b->at("userId");
  auto dup = service_->createBot(kAcc, body);
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kConflict);
}

// The function runner and the engine destroy their copies of the connector's callbacks after
// calling them, maybe after the connector has stopped and its threads are gone (a turn's
// conversation state holds a strand of them). By then the callbacks must hold nothing of the
// connector. (ASan: heap-use-after-free in the strand's destructor, seen once in an integration
// test, where the engine released a publish callback after the connector had stopped.)
TEST_F(BotServiceTest, CallbacksReleasedAfterTheServiceStoppedHoldNothingOfIt) {
  runner_.keepCallbacks(true);
  startBot();
  auto c = open("c-kept");
  say(c, "hello");
  ASSERT_TRUE(waitCount(c, 1));
  ASSERT_TRUE(service_->waitIdleForTest(5000));
  runner_.keepCallbacks(false);
  EXPECT_GE(runner_.keptCount(), 1u);
  service_.reset();  // stops, joins its pool, forgets the conversations
  runner_.dropKept();
}

TEST_F(BotServiceTest, NoStartWithoutTheDisclaimer) {
  auto body = botBody();
  body["disclaimerAccepted"] = false;
  auto b = service_->createBot(kAcc, body);
  ASSERT_TRUE(b);
  auto s = service_->startBot(kAcc, BotId(std::string(b->at("id").as_string())));
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("disclaimer"), std::string::npos);
}

// ---- turns ------------------------------------------------------------------------------------

TEST_F(BotServiceTest, MessagingFirstMessageIsTheFirstInput) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    auto p = bj::parse(r.input_json).at("payload");
    return okResult(bj::serialize(
        bj::object{{"messages", bj::array{"echo: " + std::string(p.at("message").as_string())}}}));
  });
  auto [bot, user] = startBot();
  auto c = open("consumer-1");
  say(c, "hello");
  ASSERT_TRUE(waitAssigned(c, user.str()));
  ASSERT_TRUE(
      waitTexts(c, [](const auto& t) { return t == std::vector<std::string>{"echo: hello"}; }));
  auto req = runner_.requests().at(0);
  EXPECT_EQ(req.function.str(), "fn-bot");
  auto input = bj::parse(req.input_json).as_object();
  EXPECT_TRUE(input.contains("timestamp"));
  EXPECT_EQ(input.at("headers"), bj::array{});
  auto p = input.at("payload").as_object();
  EXPECT_EQ(p.at("message").as_string(), "hello");
  EXPECT_EQ(p.at("convId").as_string(), c.id.str());
  EXPECT_FALSE(p.contains("event"));
  auto lp = p.at("context").at("lpEvent").as_object();
  EXPECT_EQ(lp.at("event").at("message").as_string(), "hello");
  EXPECT_EQ(lp.at("originatorMetadata").at("role").as_string(), "CONSUMER");
  EXPECT_EQ(lp.at("conversationContext").at("type").as_string(), "MESSAGING");
  EXPECT_EQ(p.at("context").at("lpSdes"), bj::object{});
  ASSERT_TRUE(waitTurns(bot, 1));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "OK");
  auto timings = bj::parse(t.timings_json).as_object();
  EXPECT_TRUE(timings.contains("invokeMs"));
  EXPECT_TRUE(timings.contains("totalMs"));
  EXPECT_NE(t.actions_json.find("\"TEXT\""), std::string::npos);
}

// One strand per conversation: the connector's work for a conversation runs on the engine's
// strand of it, so the consumer's message, the publish of the reply and its completion need no
// hand-off; a turn crosses threads only to the function and back (one task queued onto the
// strand per turn).
TEST_F(BotServiceTest, ATurnRunsOnTheConversationsEngineStrandWithOneHandOff) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    auto p = bj::parse(r.input_json).at("payload");
    return okResult(bj::serialize(
        bj::object{{"messages", bj::array{"echo: " + std::string(p.at("message").as_string())}}}));
  });
  auto [bot, user] = startBot();
  auto c = open("strand-consumer");
  say(c, "m0");
  ASSERT_TRUE(waitAssigned(c, user.str()));
  ASSERT_TRUE(waitCount(c, 1));
  ASSERT_TRUE(service_->waitIdleForTest(5000));
  EXPECT_TRUE(service_->onEngineStrandForTest(c.id));
  const std::uint64_t before = service_->strandHandOffsForTest();
  constexpr int kTurns = 5;
  for (int i = 1; i <= kTurns; ++i) {
    say(c, "m" + std::to_string(i));
    ASSERT_TRUE(waitCount(c, static_cast<std::size_t>(i) + 1));
    ASSERT_TRUE(service_->waitIdleForTest(5000));
  }
  EXPECT_EQ(service_->strandHandOffsForTest() - before, static_cast<std::uint64_t>(kTurns));
  EXPECT_EQ(botTexts(c).back(), "echo: m5");
  ASSERT_TRUE(waitTurns(bot, kTurns + 1));
  for (const auto& t : turns(bot)) EXPECT_EQ(t.outcome, "OK");
}

TEST_F(BotServiceTest, ChatStartsWithWelcome) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    auto p = bj::parse(r.input_json).at("payload").as_object();
    bool welcome = p.contains("event") && p.at("event").at("name") == "WELCOME";
    return okResult(welcome ? R"({"messages":["Welcome!"]})" : R"({"messages":["reply"]})");
  });
  auto [bot, user] = startBot();
  auto c = open("chat-consumer", store::Channel::kChat);
  ASSERT_TRUE(
      waitTexts(c, [](const auto& t) { return t == std::vector<std::string>{"Welcome!"}; }));
  auto p = payloadOf(runner_.requests().at(0));
  EXPECT_EQ(p.at("event").at("name").as_string(), "WELCOME");
  EXPECT_EQ(p.at("context").at("lpEvent").at("isWelcomeEvent"), true);
  EXPECT_EQ(p.at("context").at("lpEvent").at("@type").as_string(), "line");
  say(c, "hi");
  ASSERT_TRUE(waitCount(c, 2));
  EXPECT_EQ(payloadOf(runner_.requests().at(1)).at("message").as_string(), "hi");
}

TEST_F(BotServiceTest, RichContentFromTheConsumerHasTheSpecialMessage) {
  auto [bot, user] = startBot();
  auto c = open("rich-consumer");
  say(c, "start");
  ASSERT_TRUE(waitCount(c, 1));
  conv::PublishRequest req;
  req.actor = consumer("rich-consumer");
  req.conversation = c.id;
  req.event_json =
      R"({"type":"RichContentEvent","content":{"type":"vertical","elements":[{"type":"map","la":1.5,"lo":2.5,"alt":"here"}]}})";
  ASSERT_TRUE(call<conv::Published>([&](auto cb) { engine_->publish(req, cb); }));
  ASSERT_TRUE(waitCount(c, 2));
  auto p = payloadOf(runner_.requests().at(1));
  EXPECT_EQ(p.at("message").as_string(),
            "com.liveperson.bot-connectors.consumer.send-rich-content");
  EXPECT_EQ(p.at("context").at("lpEvent").at("event").at("type").as_string(), "RichContentEvent");
}

TEST_F(BotServiceTest, EveryMessageKindWithIntents) {
  runner_.setScript([](const functions::InvokeRequest&) {
    return okResult(R"({"messages":["text",
      {"structuredContent":{"type":"vertical","elements":[{"type":"text","text":"card"}]},
       "metadata":[{"type":"ExternalId","id":"card-1"}]},
      {"delay":1},
      {"text":"for agents","messageAudience":"AGENTS_AND_MANAGERS"},
      {"structuredContent":{"message":"pick","quickReplies":{"type":"quickReplies","itemsPerRow":2,
        "replies":[{"type":"button","title":"A","click":{"actions":[{"type":"publishText","text":"a"}]}}]}}}],
      "context":{"intentId":"greet","intentName":"Greeting","confidenceScore":0.8}})");
  });
  auto [bot, user] = startBot();
  auto c = open("kinds");
  say(c, "hi");
  ASSERT_TRUE(waitCount(c, 4));
  auto texts = botTexts(c);
  ASSERT_EQ(texts.size(), 4u);
  EXPECT_EQ(texts[0], "text");
  EXPECT_NE(texts[1].find("[rich]"), std::string::npos);
  EXPECT_EQ(texts[2], "[private] for agents");
  EXPECT_EQ(texts[3], "pick");
  auto states = watcher_.chatStates();
  ASSERT_GE(states.size(), 2u);
  EXPECT_EQ(states[0], "COMPOSING");
  EXPECT_EQ(states[1], "ACTIVE");
  for (const auto& m : messages(c)) {
    if (m.originator_role == store::ParticipantRole::kConsumer) continue;
    EXPECT_NE(m.metadata_json.find("\"BotResponse\""), std::string::npos) << m.metadata_json;
    EXPECT_NE(m.metadata_json.find("\"greet\""), std::string::npos);
  }
  bool external = false, quick = false;
  for (const auto& m : messages(c)) {
    external = external || m.metadata_json.find("card-1") != std::string::npos;
    quick = quick || m.event_json.find("quickReplies") != std::string::npos;
  }
  EXPECT_TRUE(external);
  EXPECT_TRUE(quick);
}

TEST_F(BotServiceTest, TransferToSkillAndAgent) {
  runner_.setScript([](const functions::InvokeRequest&) {
    return okResult(
        R"({"messages":["Transferring"],"context":{"action":"TRANSFER","actionParameters":{"skill":"humans"}}})");
  });
  auto [bot, user] = startBot();
  auto c = open("t1");
  say(c, "agent please");
  ASSERT_TRUE(waitTurns(bot, 1));
  auto after = get(c);
  EXPECT_EQ(after.skill, humans_skill_);
  EXPECT_FALSE(assigned(c));
  EXPECT_EQ(turns(bot).at(0).outcome, "OK");
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"Transferring"});
}

TEST_F(BotServiceTest, TransferToMissingSkillEscalates) {
  runner_.setScript([](const functions::InvokeRequest&) {
    return okResult(
        R"({"messages":["Moving you"],"context":{"action":"TRANSFER","actionParameters":{"skill":"HUMANS"}}})");
  });
  auto [bot, user] = startBot();
  auto c = open("t2");
  say(c, "x");
  ASSERT_TRUE(waitTurns(bot, 1));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("transfer-skill-not-existing"), std::string::npos);
  auto texts = botTexts(c);
  ASSERT_EQ(texts.size(), 3u);
  EXPECT_EQ(texts[0], "Moving you");
  EXPECT_EQ(texts[1], "Connecting you to an agent.");
  EXPECT_NE(texts[2].find("[private] Bot failed. Reason:"), std::string::npos);
  EXPECT_NE(texts[2].find("transfer-skill-not-existing"), std::string::npos);
  EXPECT_EQ(get(c).skill, escalation_skill_);
}

TEST_F(BotServiceTest, CloseAndChangeTtr) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    std::string msg(bj::parse(r.input_json).at("payload").at("message").as_string());
    if (msg == "urgent")
      return okResult(
          R"({"context":{"action":"CHANGE_TTR","actionParameters":{"ttrType":"CUSTOM","value":"120"}}})");
    return okResult(
        R"({"messages":["Bye"],"context":{"action":"CLOSE_CONVERSATION","actionParameters":{"withoutPcs":true}}})");
  });
  auto [bot, user] = startBot();
  auto c = open("close");
  say(c, "urgent");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(get(c).ttr_type, store::TtrType::kCustom);
  EXPECT_EQ(get(c).ttr_value_s, 120);
  say(c, "bye");
  ASSERT_TRUE(waitTurns(bot, 2));
  EXPECT_EQ(get(c).state, store::ConversationState::kClose);
  EXPECT_EQ(get(c).close_reason, store::CloseReason::kBot);
}

TEST_F(BotServiceTest, InvocationAction) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    if (r.function.str() == "fn-other")
      return errorResult("com.liveperson.faas.handler.custom-failure", "boom");
    std::string msg(bj::parse(r.input_json).at("payload").at("message").as_string());
    return okResult(fmt::format(
        R"({{"messages":["ok"],"context":{{"action":"INVOCATION","actionParameters":{{"lambdaUuid":"fn-other","payload":{{"x":1}},"failOnError":{}}}}}}})",
        msg == "strict" ? "true" : "false"));
  });
  auto [bot, user] = startBot();
  auto c = open("inv");
  say(c, "lenient");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(turns(bot).at(0).outcome, "PARTIAL");
  auto reqs = runner_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[1].function.str(), "fn-other");
  EXPECT_EQ(bj::parse(reqs[1].input_json).at("payload").at("x"), 1);
  say(c, "strict");
  ASSERT_TRUE(waitTurns(bot, 2));
  EXPECT_EQ(turns(bot).at(0).outcome, "ESCALATED");
  EXPECT_NE(turns(bot).at(0).error.find("failed-bot-action"), std::string::npos);
}

TEST_F(BotServiceTest, FunctionErrorRetriesThenEscalates) {
  int calls = 0;
  std::mutex mu;
  runner_.setScript([&](const functions::InvokeRequest&) {
    std::lock_guard l(mu);
    ++calls;
    return errorResult("com.liveperson.faas.handler.runtime-exception",
                       "TypeError: x is undefined");
  });
  auto body_extra = R"(,"interruptionThreshold":2)";
  auto b = service_->createBot(kAcc, [&] {
    auto o = botBody(body_extra);
    o["escalation"].as_object()["retries"] = 1;
    return o;
  }());
  ASSERT_TRUE(b);
  BotId bot(std::string(b->at("id").as_string()));
  ASSERT_TRUE(service_->startBot(kAcc, bot));
  auto c = open("err");
  say(c, "x");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(runner_.requests().size(), 2u);  // one retry
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("invoke-lambda"), std::string::npos);
  EXPECT_NE(t.error.find("TypeError"), std::string::npos);
  auto texts = botTexts(c);
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0], "Connecting you to an agent.");
  EXPECT_EQ(get(c).skill, escalation_skill_);
  EXPECT_NE(service_->prometheusText().find("parley_bot_escalations_total"), std::string::npos);
}

TEST_F(BotServiceTest, RepeatedFailuresInterruptTheBotAndASuccessRestoresIt) {
  std::atomic<bool> failing{true};
  runner_.setScript([&](const functions::InvokeRequest&) {
    return failing ? errorResult("com.liveperson.faas.handler.executiontime-exceeded", "timeout")
                   : okResult(R"({"messages":["fine"]})");
  });
  auto [bot, user] = startBot(R"(,"interruptionThreshold":2)");
  for (int i = 0; i < 2; ++i) {
    auto c = open("fail-" + std::to_string(i));
    say(c, "x");
    ASSERT_TRUE(waitTurns(bot, i + 1));
  }
  EXPECT_EQ(service_->getBot(kAcc, bot)->at("status").as_string(), "VENDOR_INTERRUPTION");
  EXPECT_EQ(store_->bots().getBot(kAcc, bot)->status, store::BotStatus::kVendorInterruption);
  failing = false;
  auto c = open("ok-now");
  say(c, "x");
  ASSERT_TRUE(waitTurns(bot, 3));
  EXPECT_EQ(turns(bot).at(0).outcome, "OK");
  EXPECT_EQ(service_->getBot(kAcc, bot)->at("status").as_string(), "ONLINE");
}

// Requests of turns (not the SERVICE_INTERRUPTION probes) for conversation `conv`.
std::size_t turnRequests(FakeRunner& r, const store::Conversation& c) {
  std::size_t n = 0;
  for (const auto& q : r.requests())
    if (!q.request_id.starts_with("probe-") &&
        bj::parse(q.input_json).at("payload").at("convId").as_string() == c.id.str())
      ++n;
  return n;
}

TEST_F(BotServiceTest, ServiceInterruptionWhenThePlatformCannotRunTheFunctionAndBack) {
  std::atomic<bool> gone{false};
  runner_.setScript([&](const functions::InvokeRequest&) {
    return gone ? errorResult("com.liveperson.faas.es.notdeployed",
                              "function fn-bot is not deployed")
                : okResult(R"({"messages":["here"]})");
  });
  auto [bot, user] = startBot();
  auto c0 = open("si-existing");
  say(c0, "hi");
  ASSERT_TRUE(waitTurns(bot, 1));
  // The function is undeployed: the first failed invocation is enough (it is gone).
  gone = true;
  auto c1 = open("si-trigger");
  say(c1, "hi");
  ASSERT_TRUE(waitTurns(bot, 2));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("aivendor.faas.failed-faas-request"), std::string::npos) << t.error;
  EXPECT_NE(t.error.find("notdeployed"), std::string::npos);
  EXPECT_EQ(get(c1).skill, escalation_skill_);
  EXPECT_EQ(service_->getBot(kAcc, bot)->at("status").as_string(), "SERVICE_INTERRUPTION");
  EXPECT_EQ(store_->bots().getBot(kAcc, bot)->status, store::BotStatus::kServiceInterruption);
  // An existing conversation: escalated per the policy without calling the function.
  say(c0, "still there?");
  ASSERT_TRUE(waitTurns(bot, 3));
  t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("SERVICE_INTERRUPTION"), std::string::npos) << t.error;
  EXPECT_EQ(turnRequests(runner_, c0), 1u);
  EXPECT_EQ(botTexts(c0).at(1), "Connecting you to an agent.");
  EXPECT_EQ(get(c0).skill, escalation_skill_);
  // A new conversation is not taken while interrupted (an edit of the bot does not change that).
  ASSERT_TRUE(service_->updateBot(kAcc, bot, bj::object{{"name", "Renamed while interrupted"}}));
  auto availability = [&] {
    for (const auto& a : engine_->agents(kAcc))
      if (a.user == user) return a.availability;
    return store::Availability::kOffline;
  };
  // The user's availability changes on the engine's agents strand: wait for it (under ASan on a
  // loaded machine the first read could still see the state before the edit).
  for (int i = 0; i < 200 && availability() != store::Availability::kAway; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(availability(), store::Availability::kAway);
  auto c2 = open("si-new");
  say(c2, "anyone?");
  std::this_thread::sleep_for(200ms);  // several probes (every 50 ms) fail meanwhile
  EXPECT_FALSE(assigned(c2));
  EXPECT_GE(runner_.requests().size(), turnRequests(runner_, c0) + turnRequests(runner_, c1) + 1);
  EXPECT_EQ(service_->getBot(kAcc, bot)->at("status").as_string(), "SERVICE_INTERRUPTION");
  // Redeployed: the next probe sees it; the bot is ONLINE and takes the waiting conversation.
  gone = false;
  ASSERT_TRUE(waitAssigned(c2, user.str()));
  ASSERT_TRUE(waitTexts(c2, [](const auto& t) { return t == std::vector<std::string>{"here"}; }));
  EXPECT_EQ(service_->getBot(kAcc, bot)->at("status").as_string(), "ONLINE");
  EXPECT_EQ(store_->bots().getBot(kAcc, bot)->status, store::BotStatus::kOnline);
  EXPECT_EQ(availability(), store::Availability::kOnline);
}

TEST_F(BotServiceTest, TransientPlatformErrorsNeedTheThresholdAndFunctionErrorsAreNotPlatform) {
  // A function worker that died under the invocation (es.worker-crashed) is a platform failure
  // like es.unavailable.
  std::vector<std::string> script = {
      "com.liveperson.faas.es.unavailable", "com.liveperson.faas.handler.runtime-exception",
      "com.liveperson.faas.es.worker-crashed", "com.liveperson.faas.es.unavailable"};
  std::atomic<std::size_t> next{0};
  runner_.setScript([&](const functions::InvokeRequest& r) {
    if (r.request_id.starts_with("probe-"))
      return errorResult("com.liveperson.faas.es.unavailable", "still overloaded");
    return errorResult(script.at(next++), "failure");
  });
  auto [bot, user] = startBot(R"(,"interruptionThreshold":2)");
  std::vector<std::string> after;
  for (std::size_t i = 0; i < script.size(); ++i) {
    auto c = open("transient-" + std::to_string(i));
    say(c, "x");
    ASSERT_TRUE(waitTurns(bot, i + 1));
    after.push_back(std::string(service_->getBot(kAcc, bot)->at("status").as_string()));
  }
  // unavailable (1 of 2) → ONLINE; the function's own error resets the platform streak and is
  // 1 of 2 toward VENDOR_INTERRUPTION → ONLINE; unavailable (1 of 2) → ONLINE; (2 of 2) →
  // SERVICE_INTERRUPTION.
  EXPECT_EQ(after,
            (std::vector<std::string>{"ONLINE", "ONLINE", "ONLINE", "SERVICE_INTERRUPTION"}));
  EXPECT_NE(turns(bot).at(2).error.find("invoke-lambda"), std::string::npos);
  EXPECT_NE(turns(bot).at(0).error.find("failed-faas-request"), std::string::npos);
  EXPECT_NE(turns(bot).at(1).error.find("failed-faas-request"), std::string::npos);
}

TEST_F(BotServiceTest, InvalidResponsesGetTheirDocumentedOutcome) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    std::string msg(bj::parse(r.input_json).at("payload").at("message").as_string());
    if (msg == "empty") return okResult("{}");
    if (msg == "nobody") return okResult("null");
    if (msg == "badsc")
      return okResult(
          R"({"messages":["still sent",{"structuredContent":{"type":"vertical","elements":[{"type":"button"}]}}]})");
    return okResult(R"({"messages":["fine"]})");
  });
  auto [bot, user] = startBot();
  auto c = open("invalid");
  say(c, "badsc");
  ASSERT_TRUE(waitTurns(bot, 1));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "PARTIAL");
  EXPECT_NE(t.actions_json.find("common-invalid-structured-content-body"), std::string::npos);
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"still sent"});
  say(c, "empty");
  ASSERT_TRUE(waitTurns(bot, 2));
  EXPECT_EQ(turns(bot).at(0).outcome, "ESCALATED");
  EXPECT_NE(turns(bot).at(0).error.find("missing-action-and-messages"), std::string::npos);
  auto c2 = open("invalid-2");
  say(c2, "nobody");
  ASSERT_TRUE(waitTurns(bot, 3));
  EXPECT_NE(turns(bot).at(0).error.find("missing-response-body"), std::string::npos);
}

// ---- open-conversation limit, chat inactivity ---------------------------------------------------

class LimitBotServiceTest : public BotServiceTest {
 protected:
  void SetUp() override {
    max_open_ = 2;
    BotServiceTest::SetUp();
  }
};

TEST_F(LimitBotServiceTest, BeyondTheOpenConversationLimitANewConversationIsEscalatedAtOnce) {
  // A BOT user whose routing cap is above the connector's limit (2 in this fixture).
  store::User u;
  u.account = kAcc;
  u.login_name = "big-bot";
  u.pid = "pid-big-bot";
  u.type = store::UserType::kBot;
  u.roles = {store::Role::kAgent};
  u.max_open_conversations = 10;
  auto bu = store_->accounts().createUser(u);
  ASSERT_TRUE(bu);
  auto [bot, user] = startBot(R"(,"userId":")" + bu->id.str() + "\"");
  ASSERT_EQ(user, bu->id);
  auto c1 = open("limit-1");
  say(c1, "hi");
  auto c2 = open("limit-2");
  say(c2, "hi");
  ASSERT_TRUE(waitTurns(bot, 2));
  EXPECT_EQ(turns(bot).at(0).outcome, "OK");  // exactly at the limit: served
  auto c3 = open("limit-3");
  say(c3, "hi");
  ASSERT_TRUE(waitTurns(bot, 3));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.conversation, c3.id);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("pipes.conversation-limit-checker.max-conv-limit-reached"),
            std::string::npos)
      << t.error;
  EXPECT_EQ(turnRequests(runner_, c3), 0u);  // the function was not called
  EXPECT_EQ(get(c3).skill, escalation_skill_);
  EXPECT_EQ(botTexts(c3).at(0), "Connecting you to an agent.");
  EXPECT_NE(service_->prometheusText().find("parley_bot_conversation_limit_total"),
            std::string::npos);
  EXPECT_EQ(service_->getBot(kAcc, bot)->at("status").as_string(), "ONLINE");  // not a failure
  // A closed conversation frees a place.
  ASSERT_TRUE(call<store::Conversation>([&](auto cb) {
    engine_->updateConversation(consumer("limit-1"), c1.id, {conv::CloseField{}}, cb);
  }));
  auto c4 = open("limit-4");
  say(c4, "hi");
  ASSERT_TRUE(waitTurns(bot, 4));
  EXPECT_EQ(turns(bot).at(0).conversation, c4.id);
  EXPECT_EQ(turns(bot).at(0).outcome, "OK");
}

TEST_F(BotServiceTest, ChatInactivityWarnsThenCloses) {
  auto [bot, user] = startBot(
      R"(,"chatInactivity":{"warningAfterMs":300,"warningMessage":"Still there?","closeAfterMs":700,"closeMessage":"Closing now."})");
  auto c = open("idle-chat", store::Channel::kChat);
  ASSERT_TRUE(waitCount(c, 1));  // the WELCOME turn's reply
  auto replied = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(100ms);
  say(c, "hi");  // activity restarts the timers
  ASSERT_TRUE(waitCount(c, 2));
  auto second = std::chrono::steady_clock::now();
  ASSERT_TRUE(waitTexts(
      c, [](const auto& t) { return t.size() >= 3; }, 5000));
  auto warned = std::chrono::steady_clock::now();
  EXPECT_EQ(botTexts(c).at(2), "Still there?");
  EXPECT_GE(warned - second, 250ms);
  EXPECT_GE(warned - replied, 390ms);  // not counted from the first reply
  for (int i = 0; i < 500 && get(c).state != store::ConversationState::kClose; ++i)
    std::this_thread::sleep_for(10ms);
  auto closed = std::chrono::steady_clock::now();
  EXPECT_EQ(get(c).state, store::ConversationState::kClose);
  EXPECT_EQ(get(c).close_reason, store::CloseReason::kBot);
  EXPECT_GE(closed - second, 640ms);
  EXPECT_EQ(botTexts(c), (std::vector<std::string>{"ok", "ok", "Still there?", "Closing now."}));
  ASSERT_TRUE(waitTurns(bot, 3));
  EXPECT_EQ(turns(bot).at(0).outcome, "CLOSED_INACTIVE");
  EXPECT_NE(service_->prometheusText().find("parley_bot_inactivity_total{bot=\"" + bot.str() +
                                            "\",kind=\"close\"} 1"),
            std::string::npos);
}

TEST_F(BotServiceTest, ChatInactivityOnlyInChatAndNeverDuringATurn) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    auto p = bj::parse(r.input_json).at("payload").as_object();
    if (p.at("message") == "slow") std::this_thread::sleep_for(400ms);
    return okResult(R"({"messages":["ok"]})");
  });
  auto [bot, user] = startBot(R"(,"chatInactivity":{"warningAfterMs":0,"closeAfterMs":200})");
  auto m = open("idle-messaging");  // messaging: account-level auto-close, not the bot's
  say(m, "hi");
  auto c = open("idle-chat-2", store::Channel::kChat);
  ASSERT_TRUE(waitCount(c, 1));
  say(c, "slow");  // a 400 ms turn: the 200 ms close must not fire while it runs
  ASSERT_TRUE(waitCount(c, 2));
  for (int i = 0; i < 300 && get(c).state != store::ConversationState::kClose; ++i)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(get(c).state, store::ConversationState::kClose);
  EXPECT_EQ(botTexts(c), (std::vector<std::string>{
                             "ok", "ok", "This chat was closed because there was no reply."}));
  EXPECT_EQ(get(m).state, store::ConversationState::kOpen);
  EXPECT_EQ(botTexts(m), std::vector<std::string>{"ok"});
}

TEST_F(BotServiceTest, ChatInactivityLimitsAreValidatedAtTheEdges) {
  auto with = [&](const std::string& v) {
    auto body = botBody();
    body["chatInactivity"] = bj::parse(v);
    return service_->createBot(kAcc, body);
  };
  EXPECT_TRUE(with(R"({"warningAfterMs":0,"closeAfterMs":100})"));
  EXPECT_TRUE(with(R"({"warningAfterMs":100,"closeAfterMs":101})"));
  EXPECT_TRUE(with(R"({"warningAfterMs":0,"closeAfterMs":86400000})"));
  EXPECT_TRUE(with("false"));
  for (const char* bad :
       {R"({"warningAfterMs":0,"closeAfterMs":99})",
        R"({"warningAfterMs":0,"closeAfterMs":86400001})",
        R"({"warningAfterMs":100,"closeAfterMs":100})",
        R"({"warningAfterMs":99,"closeAfterMs":500})",
        R"({"warningAfterMs":-1,"closeAfterMs":500})", R"({"closeAfterMs":"10"})", "3"}) {
    auto r = with(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_NE(r.error().message.find("chatInactivity"), std::string::npos) << r.error().message;
  }
  // Defaults and the REST form.
  auto b = service_->createBot(kAcc, botBody());
  ASSERT_TRUE(b);
  EXPECT_EQ(b->at("chatInactivity").at("warningAfterMs").as_int64(), 300000);
  EXPECT_EQ(b->at("chatInactivity").at("closeAfterMs").as_int64(), 600000);
}

// ---- image allowlist, close, transfer records ---------------------------------------------------

std::string imageResponse(const std::string& url) {
  return bj::serialize(bj::object{
      {"messages",
       bj::array{"here is the picture",
                 bj::object{{"structuredContent",
                             bj::object{{"type", "vertical"},
                                        {"elements", bj::array{bj::object{{"type", "image"},
                                                                          {"url", url}}}}}}}}}});
}

TEST_F(BotServiceTest, StoredImageAllowlistIsEnforcedAndSurvivesARestart) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    return okResult(imageResponse(
        "https://" + std::string(bj::parse(r.input_json).at("payload").at("message").as_string()) +
        "/pic.png"));
  });
  auto [bot, user] = startBot();
  auto none = rest(*service_, "GET", {"bots", "image-allowlist"});
  ASSERT_EQ(none.status, 200);
  EXPECT_EQ(bj::parse(none.body), bj::parse(R"({"configured":false,"entries":[]})"));
  auto put = rest(*service_, "PUT", {"bots", "image-allowlist"},
                  R"({"entries":["img.example","https://cdn.example/pub/"]})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(bj::parse(put.body).at("configured"), true);
  auto c = open("allow");
  say(c, "img.example");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(turns(bot).at(0).outcome, "OK");
  say(c, "other.example");
  ASSERT_TRUE(waitTurns(bot, 2));
  EXPECT_EQ(turns(bot).at(0).outcome, "PARTIAL");
  EXPECT_NE(turns(bot).at(0).actions_json.find("image allowlist"), std::string::npos);
  ASSERT_TRUE(store_->bots().getImageAllowlist(kAcc));
  // A new connector (no callback) reads it from the store.
  service_.reset();
  auto v = richcontent::Validator::loadEmbedded();
  ConnectorOptions co;
  co.image_allowlist = [](const AccountId&) {
    return std::optional<std::vector<std::string>>({"callback.example"});
  };
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_, co);
  ASSERT_TRUE(service_->start());
  EXPECT_EQ(service_->imageAllowlist(kAcc),
            (std::vector<std::string>{"img.example", "https://cdn.example/pub/"}));
  say(c, "other.example");
  ASSERT_TRUE(waitTurns(bot, 3));
  EXPECT_EQ(turns(bot).at(0).outcome, "PARTIAL");
  // Deleted: the callback's list applies again.
  EXPECT_EQ(rest(*service_, "DELETE", {"bots", "image-allowlist"}).status, 200);
  EXPECT_EQ(rest(*service_, "DELETE", {"bots", "image-allowlist"}).status, 404);
  EXPECT_EQ(service_->imageAllowlist(kAcc), std::vector<std::string>{"callback.example"});
  say(c, "callback.example");
  ASSERT_TRUE(waitTurns(bot, 4));
  EXPECT_EQ(turns(bot).at(0).outcome, "OK");
  EXPECT_FALSE(store_->bots().getImageAllowlist(kAcc));
}

// Cluster mode: what another node changed in the store (a bot started, stopped, an image
// allowlist) applies here after applyRemoteChange; this node's own changes are announced
// through on_change.
TEST_F(BotServiceTest, AnotherNodesBotAndAllowlistChangesApplyHere) {
  auto apply = [&](std::string_view kind, const std::string& id) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    service_->applyRemoteChange(kAcc, kind, id, [p](Status s) { p->set_value(std::move(s)); });
    return f.get();
  };
  auto availability = [&](const std::string& user) {
    for (const auto& a : engine_->agents(kAcc))
      if (a.user.str() == user) return a.availability;
    return store::Availability::kOffline;
  };
  auto created = service_->createBot(kAcc, botBody());
  ASSERT_TRUE(created);
  const std::string id(created->at("id").as_string());
  const std::string user(created->at("userId").as_string());
  // Started on the other node: the stored status says so.
  auto rec = store_->bots().getBot(kAcc, BotId(id));
  ASSERT_TRUE(rec);
  rec->status = store::BotStatus::kOnline;
  ASSERT_TRUE(store_->bots().updateBot(*rec));
  EXPECT_EQ(availability(user), store::Availability::kOffline);
  ASSERT_TRUE(apply("bot", id));
  EXPECT_EQ(availability(user), store::Availability::kOnline);
  runner_.setScript(
      [](const functions::InvokeRequest&) { return okResult(R"({"messages":["from the bot"]})"); });
  auto c = open("c1");
  say(c, "hello");
  ASSERT_TRUE(waitAssigned(c, user));
  ASSERT_TRUE(waitCount(c, 1));
  // Stopped there: out of routing here too.
  rec->status = store::BotStatus::kOffline;
  ASSERT_TRUE(store_->bots().updateBot(*rec));
  ASSERT_TRUE(apply("bot", id));
  EXPECT_EQ(availability(user), store::Availability::kOffline);
  // Deleted there: nothing to do, no error.
  ASSERT_TRUE(store_->bots().deleteBot(kAcc, BotId(id)));
  ASSERT_TRUE(apply("bot", id));

  // The image allowlist, put and then deleted there.
  EXPECT_EQ(service_->imageAllowlist(kAcc), std::nullopt);
  ASSERT_TRUE(store_->bots().putImageAllowlist(kAcc, {"img.example"}));
  ASSERT_TRUE(apply("image-allowlist", ""));
  EXPECT_EQ(service_->imageAllowlist(kAcc), std::vector<std::string>{"img.example"});
  ASSERT_TRUE(store_->bots().deleteImageAllowlist(kAcc));
  ASSERT_TRUE(apply("image-allowlist", ""));
  EXPECT_EQ(service_->imageAllowlist(kAcc), std::nullopt);
  ASSERT_TRUE(apply("skills", ""));
  ASSERT_TRUE(apply("no-such-kind", ""));

  // This node's own changes are announced.
  {
    std::lock_guard l(profiles_mu_);
    EXPECT_TRUE(changes_.empty());
  }
  auto [bot, bot_user] = startBot();
  EXPECT_EQ(rest(*service_, "PUT", {"bots", bot.str()}, R"({"name":"Renamed"})").status, 200);
  EXPECT_EQ(rest(*service_, "POST", {"bots", bot.str(), "stop"}).status, 200);
  EXPECT_EQ(
      rest(*service_, "PUT", {"bots", "image-allowlist"}, R"({"entries":["a.example"]})").status,
      200);
  EXPECT_EQ(rest(*service_, "DELETE", {"bots", bot.str()}).status, 200);
  std::lock_guard l(profiles_mu_);
  const std::string b = "1000 bot " + bot.str();
  EXPECT_EQ(changes_, (std::vector<std::string>{b, b, b, "1000 image-allowlist ", b}));
}

TEST_F(BotServiceTest, ImageAllowlistInputIsValidatedAtTheEdges) {
  auto put = [&](const bj::value& entries, std::vector<std::string> roles = {"ADMIN"}) {
    return rest(*service_, "PUT", {"bots", "image-allowlist"},
                bj::serialize(bj::object{{"entries", entries}}), std::move(roles));
  };
  bj::array many;
  for (int i = 0; i < 200; ++i) many.push_back(bj::string("h" + std::to_string(i) + ".example"));
  EXPECT_EQ(put(many).status, 200);
  many.push_back(bj::string("one-more.example"));
  auto too_many = put(many);
  EXPECT_EQ(too_many.status, 400);
  EXPECT_NE(too_many.body.find("at most 200"), std::string::npos) << too_many.body;
  std::string long_url = "https://a.example/" + std::string(2048 - 18, 'x');
  EXPECT_EQ(put(bj::array{bj::string(long_url)}).status, 200);
  EXPECT_EQ(put(bj::array{bj::string(long_url + "x")}).status, 400);
  std::string label63 = std::string(63, 'a') + ".example";
  EXPECT_EQ(put(bj::array{bj::string(label63)}).status, 200);
  EXPECT_EQ(put(bj::array{bj::string("a" + label63)}).status, 400);
  EXPECT_EQ(put(bj::array{}).status, 200);  // configured, nothing allowed
  EXPECT_EQ(bj::parse(rest(*service_, "GET", {"bots", "image-allowlist"}).body),
            bj::parse(R"({"configured":true,"entries":[]})"));
  for (const char* bad :
       {R"(["*.example"])", R"(["http://img.example/"])", R"(["img.example:8443"])",
        R"(["img.example/path"])", R"(["a..example"])", R"(["img example"])", R"([""])", R"([1])",
        R"(["x.example","x.example"])", R"("x.example")", R"(["https://"])"}) {
    auto r = put(bj::parse(bad));
    EXPECT_EQ(r.status, 400) << bad << " " << r.body;
  }
  EXPECT_EQ(rest(*service_, "PUT", {"bots", "image-allowlist"}, "{}").status, 400);
  EXPECT_EQ(put(bj::array{"x.example"}, {"AGENT_MANAGER"}).status, 403);
  EXPECT_EQ(rest(*service_, "DELETE", {"bots", "image-allowlist"}, "", {"AGENT"}).status, 403);
}

TEST_F(BotServiceTest, CloseRecordsWithoutPcsAndTransferRecordsItsMetadata) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    std::string m(bj::parse(r.input_json).at("payload").at("message").as_string());
    if (m == "plain") return okResult(R"({"context":{"action":"CLOSE_CONVERSATION"}})");
    if (m == "nopcs")
      return okResult(
          R"({"context":{"action":"CLOSE_CONVERSATION","actionParameters":{"withoutPcs":true}}})");
    return okResult(R"({"messages":["to humans"],"context":{"action":"TRANSFER",
      "actionParameters":{"skill":"humans"},"intentId":"billing","confidenceScore":0.7}})");
  });
  auto [bot, user] = startBot();
  auto c1 = open("close-plain");
  say(c1, "plain");
  auto c2 = open("close-nopcs");
  say(c2, "nopcs");
  auto c3 = open("transfer-md");
  say(c3, "transfer");
  ASSERT_TRUE(waitTurns(bot, 3));
  // No post-conversation survey exists in Parley: both forms close the whole conversation.
  EXPECT_EQ(get(c1).state, store::ConversationState::kClose);
  EXPECT_EQ(get(c2).state, store::ConversationState::kClose);
  for (const auto& t : turns(bot)) {
    auto actions = bj::parse(t.actions_json).as_array();
    auto action = actions.back().as_object();
    if (t.conversation == c1.id) {
      EXPECT_EQ(action.at("withoutPcs"), false) << t.actions_json;
    }
    if (t.conversation == c2.id) {
      EXPECT_EQ(action.at("withoutPcs"), true) << t.actions_json;
    }
    if (t.conversation == c3.id) {
      EXPECT_EQ(action.at("status"), "DONE");
      auto md = bj::serialize(action.at("metadata"));
      EXPECT_NE(md.find("escalated_by_bot"), std::string::npos) << md;
      EXPECT_NE(md.find("\"BotResponse\""), std::string::npos) << md;
      EXPECT_NE(md.find("billing"), std::string::npos) << md;
    }
  }
  EXPECT_EQ(get(c3).skill, humans_skill_);
}

// ---- hooks
// ----------------------------------------------------------------------------------------

class HooksBotServiceTest : public BotServiceTest {
 protected:
  void hookFunction(const std::string& uuid, const std::string& name, const std::string& event,
                    store::FunctionState state = store::FunctionState::kProductive) {
    store::FunctionRecord f;
    f.uuid = FunctionId(uuid);
    f.account = kAcc;
    f.name = name;
    f.event_id = event;
    f.state = state;
    f.code = "function lambda(input, callback) { callback(null, input.payload); }";
    ASSERT_TRUE(store_->functions().createFunction(f));
  }
  // The scripted functions: two pre hooks (upper-case, then a context marker), the bot (echo
  // with the marker), a post hook (appends " (post)"), an error hook (records what it got).
  void script(bool pre_fails = false, bool post_fails = false, bool error_hook_fails = false) {
    runner_.setScript([=, this](const functions::InvokeRequest& r) {
      auto in = bj::parse(r.input_json).as_object();
      bj::value payload = in.at("payload");
      const std::string fn = r.function.str();
      if (fn == "pre-1") {
        if (pre_fails) return errorResult("com.liveperson.faas.handler.custom-failure", "no");
        std::string m(payload.at("message").as_string());
        for (auto& ch : m) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        payload.as_object()["message"] = m;
        return okResult(bj::serialize(payload));
      }
      if (fn == "pre-2") {
        payload.as_object()["context"].as_object()["marker"] = "pre-2";
        return okResult(bj::serialize(payload));
      }
      if (fn == "post-1") {
        if (post_fails) return errorResult("com.liveperson.faas.handler.runtime-exception", "bad");
        auto& msgs = payload.as_object()["messages"].as_array();
        msgs[0] = bj::string(std::string(msgs[0].as_string()) + " (post)");
        return okResult(bj::serialize(payload));
      }
      if (fn == "err-1") {
        std::lock_guard l(hook_mu_);
        error_hook_inputs_.push_back(payload.as_object());
        if (error_hook_fails) return errorResult("com.liveperson.faas.handler.custom-failure", "x");
        return okResult("{}");
      }
      if (fn == "fn-bot") {
        std::string m(payload.at("message").as_string());
        if (m == "FAIL" || m == "fail")
          return errorResult("com.liveperson.faas.handler.custom-failure", "boom");
        auto ctx = payload.at("context").as_object();
        std::string marker =
            ctx.contains("marker") ? std::string(ctx.at("marker").as_string()) : "";
        return okResult(bj::serialize(bj::object{
            {"messages", bj::array{"echo: " + m + (marker.empty() ? "" : " " + marker)}}}));
      }
      return errorResult("com.liveperson.faas.es.missinglambda", "unknown " + fn);
    });
  }
  std::vector<std::string> calledFunctions() {
    std::vector<std::string> out;
    for (const auto& r : runner_.requests()) out.push_back(r.function.str());
    return out;
  }
  std::mutex hook_mu_;
  std::vector<bj::object> error_hook_inputs_;
};

TEST_F(HooksBotServiceTest, PreAndPostHooksRewriteTheRequestAndTheResponse) {
  // Name order decides the chain: "a-pre" (pre-1) runs before "b-pre" (pre-2).
  hookFunction("pre-2", "b-pre", "bot_connectors_pre_hook");
  hookFunction("pre-1", "a-pre", "bot_connectors_pre_hook");
  hookFunction("post-1", "post", "bot_connectors_post_hook");
  hookFunction("post-draft", "post-draft", "bot_connectors_post_hook",
               store::FunctionState::kDraft);  // not deployed
  script();
  auto [bot, user] = startBot(R"(,"hooks":{"preHook":true,"postHook":true})");
  auto c = open("hooked");
  say(c, "hello");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"echo: HELLO pre-2 (post)"});
  EXPECT_EQ(calledFunctions(), (std::vector<std::string>{"pre-1", "pre-2", "fn-bot", "post-1"}));
  // pre-1 got the original request {message, convId, context:{lpEvent, lpSdes}}.
  auto pre_in = payloadOf(runner_.requests().at(0));
  EXPECT_EQ(pre_in.at("message").as_string(), "hello");
  EXPECT_EQ(pre_in.at("convId").as_string(), c.id.str());
  EXPECT_TRUE(pre_in.at("context").as_object().contains("lpEvent"));
  // post-1 got the function's response.
  EXPECT_EQ(payloadOf(runner_.requests().at(3)),
            bj::parse(R"({"messages":["echo: HELLO pre-2"]})"));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "OK");
  EXPECT_EQ(bj::parse(t.input_json).at("payload").at("message").as_string(), "HELLO");
  EXPECT_EQ(bj::parse(t.response_json),
            bj::parse(R"j({"messages":["echo: HELLO pre-2 (post)"]})j"));
  EXPECT_NE(t.actions_json.find("POST_HOOK_RESPONSE"), std::string::npos);
  EXPECT_TRUE(bj::parse(t.timings_json).as_object().contains("hookMs"));
}

TEST_F(HooksBotServiceTest, HooksRunOnlyWhenTheBotEnablesThem) {
  hookFunction("pre-1", "a-pre", "bot_connectors_pre_hook");
  hookFunction("post-1", "post", "bot_connectors_post_hook");
  script();
  auto [bot, user] = startBot();
  auto c = open("unhooked");
  say(c, "hello");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"echo: hello"});
  EXPECT_EQ(calledFunctions(), std::vector<std::string>{"fn-bot"});
  auto bad = botBody();
  bad["hooks"] = bj::parse(R"({"preHook":"yes"})");
  EXPECT_FALSE(service_->createBot(kAcc, bad));
  bad["hooks"] = bj::parse(R"({"prehook":true})");
  auto r = service_->createBot(kAcc, bad);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("hooks.prehook"), std::string::npos);
}

TEST_F(HooksBotServiceTest, AFailingPreHookEscalatesWithoutCallingTheBotAndTellsTheErrorHook) {
  hookFunction("pre-1", "a-pre", "bot_connectors_pre_hook");
  hookFunction("err-1", "err", "bot_connectors_error_hook");
  script(/*pre_fails=*/true);
  auto [bot, user] = startBot(R"(,"hooks":{"preHook":true,"errorHook":true})");
  auto c = open("pre-fails");
  say(c, "hello");
  ASSERT_TRUE(waitTurns(bot, 1));
  ASSERT_TRUE(service_->waitIdleForTest());
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("aivendor.faas.failed-hook"), std::string::npos) << t.error;
  EXPECT_EQ(calledFunctions(), (std::vector<std::string>{"pre-1", "err-1"}));
  EXPECT_EQ(get(c).skill, escalation_skill_);
  std::lock_guard l(hook_mu_);
  ASSERT_EQ(error_hook_inputs_.size(), 1u);
  const auto& e = error_hook_inputs_[0];
  EXPECT_EQ(e.at("error").at("name").as_string(),
            "com.liveperson.bot-connectors-worker.error.aivendor.faas.failed-hook");
  EXPECT_FALSE(e.at("error").at("errorId").as_string().empty());
  EXPECT_EQ(e.at("vendor").as_string(), "CUSTOM_INTEGRATION");
  EXPECT_EQ(e.at("faasPayload").at("message").as_string(), "hello");
  EXPECT_TRUE(e.at("faas").is_null());
  EXPECT_NE(t.actions_json.find("ERROR_HOOK"), std::string::npos);
}

TEST_F(HooksBotServiceTest, AFailingPostHookEscalatesAndAFailingErrorHookIsOnlyCounted) {
  hookFunction("post-1", "post", "bot_connectors_post_hook");
  hookFunction("err-1", "err", "bot_connectors_error_hook");
  script(false, /*post_fails=*/true, /*error_hook_fails=*/true);
  auto [bot, user] = startBot(R"(,"hooks":{"postHook":true,"errorHook":true})");
  auto c = open("post-fails");
  say(c, "hello");
  ASSERT_TRUE(waitTurns(bot, 1));
  ASSERT_TRUE(service_->waitIdleForTest());
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("failed-hook"), std::string::npos);
  EXPECT_EQ(botTexts(c).at(0), "Connecting you to an agent.");  // the bot's reply never went out
  {
    std::lock_guard l(hook_mu_);
    ASSERT_EQ(error_hook_inputs_.size(), 1u);
    // The error hook sees the request and the function's response.
    EXPECT_EQ(error_hook_inputs_[0].at("faas"), bj::parse(R"({"messages":["echo: hello"]})"));
  }
  auto metrics = service_->prometheusText();
  EXPECT_NE(metrics.find("hook=\"POST_HOOK\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("hook=\"ERROR_HOOK\"} 1"), std::string::npos) << metrics;
  // A function error (not a hook): the error hook is told with the function's code.
  auto c2 = open("post-fails-2");
  say(c2, "fail");
  ASSERT_TRUE(waitTurns(bot, 2));
  ASSERT_TRUE(service_->waitIdleForTest());
  std::lock_guard l(hook_mu_);
  ASSERT_EQ(error_hook_inputs_.size(), 2u);
  EXPECT_EQ(error_hook_inputs_[1].at("error").at("name").as_string(),
            "com.liveperson.bot-connectors-worker.error.aivendor.faas.invoke-lambda");
}

// A pre hook's output nested to the JSON parser's depth limit made the connector's own re-parse
// of the turn input throw on the conversation's strand: the turn never ended and the bot never
// answered that conversation again. The turn must end, visibly, and the conversation go on.
TEST_F(HooksBotServiceTest, APreHookOutputAtTheParserDepthLimitDoesNotSilenceTheBot) {
  hookFunction("pre-1", "a-pre", "bot_connectors_pre_hook");
  hookFunction("pre-2", "b-pre", "bot_connectors_pre_hook");
  runner_.setScript([](const functions::InvokeRequest& r) {
    bj::parse_options deep;
    deep.max_depth = 256;
    auto in = bj::parse(r.input_json, {}, deep).as_object();
    bj::value payload = in.at("payload");
    const std::string fn = r.function.str();
    if (fn == "pre-1") {
      // The payload object itself is one level: 31 arrays inside make it 32 deep, which the
      // parser's default limit (32) still accepts; the turn input around it is 33.
      bj::value deepest = bj::array{};
      for (int i = 0; i < 30; ++i) deepest = bj::array{deepest};
      payload.as_object()["deep"] = deepest;
      return okResult(bj::serialize(payload));
    }
    if (fn == "pre-2") return okResult(bj::serialize(payload));
    return okResult(R"({"messages":["answered"]})");
  });
  auto [bot, user] = startBot(R"(,"hooks":{"preHook":true})");
  auto c = open("deep-pre-hook");
  say(c, "hello");
  ASSERT_TRUE(waitTurns(bot, 1)) << "the turn never ended";
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_FALSE(botTexts(c).empty());
}

// ---- engagement attributes ----------------------------------------------------------------------

TEST_F(BotServiceTest, EngagementAttributesSetLaterReachTheNextTurn) {
  auto [bot, user] = startBot(R"(,"engagementAttributes":true)");
  auto c = open("ea-consumer", store::Channel::kMessaging, SkillId(),
                R"({"type":"SharkContext","visitorId":"v-1","sessionId":"s-1",
                    "sdes":[{"type":"service","service":{"topic":"billing","status":1}}]})");
  say(c, "one");  // no profile yet: no authenticated SDEs
  ASSERT_TRUE(waitTurns(bot, 1));
  // The consumer sets its profile (SetUserProfile) between two turns: the next turn sees it.
  {
    std::lock_guard l(profiles_mu_);
    profiles_[kAcc.str() + "/ea-consumer"] =
        R"({"authenticatedData":{"lp_sdes":[{"type":"ctmrinfo","info":{"customerId":"c-7"}}]}})";
  }
  say(c, "two");
  ASSERT_TRUE(waitTurns(bot, 2));
  say(c, "three");  // nothing changed since: the same lpSdes, not rebuilt
  ASSERT_TRUE(waitTurns(bot, 3));
  auto reqs = runner_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  auto first = payloadOf(reqs[0]).at("context").at("lpSdes");
  EXPECT_EQ(first.at("authenticatedSdes"), bj::object{});
  auto expected = bj::parse(R"({
    "unauthenticatedSdes":{"serviceActivity":{"serverTimeStamp":"0",
        "serviceActivity":{"topic":"billing","status":1}}},
    "authenticatedSdes":{"customerInfo":{"type":"ctmrinfo","acr":"loa1","iss":"parley",
        "customerInfo":{"customerId":"c-7"},"auth":{}}}})");
  auto second = payloadOf(reqs[1]).at("context").at("lpSdes");
  expected.at("unauthenticatedSdes").at("serviceActivity").as_object()["serverTimeStamp"] =
      second.at("unauthenticatedSdes").at("serviceActivity").at("serverTimeStamp");
  EXPECT_EQ(second, expected);
  EXPECT_EQ(payloadOf(reqs[2]).at("context").at("lpSdes"), second);
  EXPECT_EQ(first.at("unauthenticatedSdes"), second.at("unauthenticatedSdes"));
  // The profile is read at every turn (an in-memory lookup).
  {
    std::lock_guard l(profiles_mu_);
    EXPECT_EQ(profile_reads_, 3);
  }
  // A profile dropped again (the consumer's last socket closed): its SDEs go too.
  {
    std::lock_guard l(profiles_mu_);
    profiles_.erase(kAcc.str() + "/ea-consumer");
  }
  say(c, "four");
  ASSERT_TRUE(waitTurns(bot, 4));
  EXPECT_EQ(payloadOf(runner_.requests().at(3)).at("context").at("lpSdes").at("authenticatedSdes"),
            bj::object{});
  EXPECT_EQ(turns(bot).at(1).outcome, "OK");
  EXPECT_EQ(turns(bot).at(1).actions_json.find("SDES"), std::string::npos);
}

// SDEs a function reports with SDEUtil.addSDEs (stored per conversation) join the unauthenticated
// SDEs of the next turn's lpSdes, merged after the conversationContext's.
TEST_F(BotServiceTest, EngagementAttributesReportedByAFunctionReachTheNextTurn) {
  auto [bot, user] = startBot(R"(,"engagementAttributes":true)");
  auto c = open("ea-reported", store::Channel::kMessaging, SkillId(),
                R"({"visitorId":"v-1","sessionId":"s-1",
                    "sdes":[{"type":"service","service":{"topic":"billing","status":1}}]})");
  say(c, "one");
  ASSERT_TRUE(waitTurns(bot, 1));
  auto sdes = bj::parse(R"([{"type":"service","service":{"status":2,"topic":null}},
                            {"type":"lead","lead":{"topic":"upgrade","value":20}}])");
  const TimeMs reported_at = clock_.nowMs();
  const std::string ts = std::to_string(reported_at);
  ASSERT_TRUE(
      store::appendReportedSdes(store_->functions(), kAcc, c.id, sdes.as_array(), reported_at));
  say(c, "two");
  ASSERT_TRUE(waitTurns(bot, 2));
  auto reqs = runner_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  auto first = payloadOf(reqs[0]).at("context").at("lpSdes").at("unauthenticatedSdes");
  EXPECT_FALSE(first.as_object().contains("lead")) << first;
  auto second = payloadOf(reqs[1]).at("context").at("lpSdes").at("unauthenticatedSdes");
  EXPECT_EQ(second.at("serviceActivity").at("serviceActivity"),
            bj::parse(R"({"topic":"billing","status":2})"))
      << second;
  EXPECT_EQ(second.at("serviceActivity").at("serverTimeStamp"), bj::value(ts)) << second;
  EXPECT_EQ(second.at("lead"),
            (bj::object{{"serverTimeStamp", ts},
                        {"lead", bj::parse(R"({"topic":"upgrade","value":20})")}}))
      << second;
  EXPECT_EQ(turns(bot).at(1).outcome, "OK");
}

TEST_F(BotServiceTest, EngagementAttributesWithoutVisitIdsRecordTheSdesError) {
  auto [bot, user] = startBot(R"(,"engagementAttributes":true)");
  auto c = open("ea-anon");  // no profile, no visitor/session id in the context
  say(c, "hi");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(payloadOf(runner_.requests().at(0)).at("context").at("lpSdes"),
            bj::parse(R"({"unauthenticatedSdes":{},"authenticatedSdes":{}})"));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "OK");  // recorded, not escalated
  EXPECT_NE(t.actions_json.find("com.liveperson.bot-connectors-worker.error.sdes-service.missing-"
                                "session-or-visitor-id"),
            std::string::npos)
      << t.actions_json;
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"ok"});
}

TEST_F(BotServiceTest, EngagementAttributesOffMeansEmptyLpSdesAndNoProfileRead) {
  {
    std::lock_guard l(profiles_mu_);
    profiles_[kAcc.str() + "/ea-off"] = R"({"authenticatedData":{"lp_sdes":[{"type":"personal",
        "personal":{"firstname":"X"}}]}})";
  }
  auto [bot, user] = startBot();
  auto c =
      open("ea-off", store::Channel::kMessaging, SkillId(),
           R"({"visitorId":"v","sessionId":"s","sdes":[{"type":"lead","lead":{"topic":"x"}}]})");
  say(c, "hi");
  ASSERT_TRUE(waitTurns(bot, 1));
  EXPECT_EQ(payloadOf(runner_.requests().at(0)).at("context").at("lpSdes"), bj::object{});
  std::lock_guard l(profiles_mu_);
  EXPECT_EQ(profile_reads_, 0);
}

// An exception thrown inside a turn (here: the consumer-profile source) is caught by the
// strand's fence. The fence must end the turn visibly (recorded, escalated per the policy)
// instead of leaving the conversation's turn marked running, which silenced the bot for good.
TEST_F(BotServiceTest, AnExceptionInsideATurnFailsItVisiblyAndFreesTheConversation) {
  {
    std::lock_guard l(profiles_mu_);
    profile_throws_ = true;
  }
  auto [bot, user] = startBot(R"(,"engagementAttributes":true)");
  auto c = open("throwing-profile");
  say(c, "hello");
  ASSERT_TRUE(waitTurns(bot, 1)) << "the turn never ended";
  ASSERT_TRUE(service_->waitIdleForTest());
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "ESCALATED");
  EXPECT_NE(t.error.find("profile source broke"), std::string::npos) << t.error;
  EXPECT_EQ(botTexts(c).at(0), "Connecting you to an agent.");
  EXPECT_EQ(get(c).skill, escalation_skill_);
  EXPECT_NE(service_->prometheusText().find("parley_bot_turn_exceptions_total{bot=\"" + bot.str() +
                                            "\"} 1"),
            std::string::npos)
      << service_->prometheusText();
}

// A second conversation of the same bot is not affected, and once the source works again the
// bot answers a conversation whose turn failed that way.
TEST_F(BotServiceTest, AfterATurnExceptionTheBotStillAnswersItsOtherConversations) {
  auto [bot, user] = startBot(R"(,"engagementAttributes":true)");
  auto ok = open("still-fine");
  say(ok, "one");
  ASSERT_TRUE(waitTurns(bot, 1));
  {
    std::lock_guard l(profiles_mu_);
    profile_throws_ = true;
  }
  auto broken = open("breaks");
  say(broken, "hi");
  ASSERT_TRUE(waitTurns(bot, 2)) << "the failed turn was not recorded";
  {
    std::lock_guard l(profiles_mu_);
    profile_throws_ = false;  // the profile is read at every turn
  }
  say(ok, "two");
  ASSERT_TRUE(waitTurns(bot, 3));
  EXPECT_EQ(botTexts(ok), (std::vector<std::string>{"ok", "ok"}));
}

// ---- stopping a bot -----------------------------------------------------------------------------

// POST bots/{id}/stop hands the bot's open conversations to its escalation skill: the stopped
// bot answers nothing more, and neither a restart nor starting the bot again gives them back.
TEST_F(BotServiceTest, StoppingABotHandsItsOpenConversationsToTheEscalationSkill) {
  auto [bot, user] = startBot();
  auto c = open("stop-me");
  say(c, "before");
  ASSERT_TRUE(waitCount(c, 1));
  ASSERT_TRUE(service_->waitIdleForTest());
  auto stopped = service_->stopBot(kAcc, bot);
  ASSERT_TRUE(stopped) << stopped.error().message;
  EXPECT_EQ(stopped->at("status").as_string(), "OFFLINE");
  EXPECT_EQ(assigned(c), std::nullopt);
  EXPECT_EQ(get(c).skill, escalation_skill_);
  say(c, "after stop");
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"ok"});
  EXPECT_EQ(runner_.requests().size(), 1u);
  // A restart of the connector does not resume the stopped bot or its old conversation.
  service_.reset();
  auto v = richcontent::Validator::loadEmbedded();
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_);
  ASSERT_TRUE(service_->start());
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(runner_.requests().size(), 1u);
  // Started again, the bot takes new conversations but not the handed-over one.
  ASSERT_TRUE(service_->startBot(kAcc, bot));
  auto fresh = open("after-restart");
  say(fresh, "new");
  ASSERT_TRUE(waitCount(fresh, 1));
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(assigned(c), std::nullopt);
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"ok"});
}

// Without an escalation skill the conversations go back to their queue (the bot, OFFLINE, is
// not offered them).
TEST_F(BotServiceTest, StoppingABotWithoutEscalationSkillRequeuesItsConversations) {
  auto body = botBody();
  body["escalation"].as_object().erase("skill");
  auto b = service_->createBot(kAcc, body);
  ASSERT_TRUE(b) << b.error().message;
  BotId bot(std::string(b->at("id").as_string()));
  ASSERT_TRUE(service_->startBot(kAcc, bot));
  auto c = open("requeue-me");
  say(c, "before");
  ASSERT_TRUE(waitCount(c, 1));
  ASSERT_TRUE(service_->waitIdleForTest());
  ASSERT_TRUE(service_->stopBot(kAcc, bot));
  EXPECT_EQ(assigned(c), std::nullopt);
  EXPECT_EQ(get(c).skill, bots_skill_);
  say(c, "after stop");
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"ok"});
}

// ---- ordering and ownership ---------------------------------------------------------------------

TEST_F(BotServiceTest, SlowResponseAfterAnAgentJoinedIsDiscarded) {
  runner_.hold(true);
  runner_.setScript(
      [](const functions::InvokeRequest&) { return okResult(R"({"messages":["too late"]})"); });
  auto [bot, user] = startBot();
  auto c = open("race");
  say(c, "hello?");
  ASSERT_TRUE(runner_.waitRequests(1));
  // A human agent takes over while the function is still running.
  auto agent = humanAgent("alice", humans_skill_);
  auto moved = call<store::Conversation>([&](auto cb) {
    engine_->updateConversation(conv::Actor::ofSystem(kAcc), c.id,
                                conv::transferToSkill(humans_skill_), cb);
  });
  ASSERT_TRUE(moved);
  ASSERT_TRUE(waitAssigned(c, agent.user.str()));
  runner_.releaseAll();
  ASSERT_TRUE(waitTurns(bot, 1));
  auto t = turns(bot).at(0);
  EXPECT_EQ(t.outcome, "DISCARDED");
  EXPECT_NE(t.response_json.find("too late"), std::string::npos);
  EXPECT_TRUE(botTexts(c).empty());
  EXPECT_NE(service_->prometheusText().find("parley_bot_discarded_total"), std::string::npos);
}

TEST_F(BotServiceTest, MessagesDuringATurnAreQueuedInOrder) {
  runner_.hold(true);
  runner_.setScript([](const functions::InvokeRequest& r) {
    return okResult(bj::serialize(
        bj::object{{"messages", bj::array{bj::parse(r.input_json).at("payload").at("message")}}}));
  });
  auto [bot, user] = startBot();
  auto c = open("queue");
  say(c, "one");
  ASSERT_TRUE(runner_.waitRequests(1));
  say(c, "two");
  say(c, "three");
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runner_.requests().size(), 1u);  // one turn at a time
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(runner_.waitRequests(i + 1));
    while (!runner_.releaseOne()) std::this_thread::sleep_for(1ms);
    ASSERT_TRUE(waitCount(c, i + 1));
  }
  EXPECT_EQ(botTexts(c), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(runner_.maxConcurrentForTest(), 1);
}

TEST_F(BotServiceTest, CombinedMessages) {
  runner_.hold(true);
  runner_.setScript([](const functions::InvokeRequest& r) {
    return okResult(bj::serialize(
        bj::object{{"messages", bj::array{bj::parse(r.input_json).at("payload").at("message")}}}));
  });
  auto [bot, user] = startBot(R"(,"combineMessages":{"maxMessages":5})");
  auto c = open("combine");
  say(c, "one");
  ASSERT_TRUE(runner_.waitRequests(1));
  say(c, "two");
  say(c, "three");
  std::this_thread::sleep_for(50ms);
  runner_.releaseOne();
  ASSERT_TRUE(runner_.waitRequests(2));
  runner_.releaseOne();
  ASSERT_TRUE(waitCount(c, 2));
  EXPECT_EQ(botTexts(c), (std::vector<std::string>{"one", "two\nthree"}));
}

// ---- REST, test connection, restart
// ---------------------------------------------------------------

TEST_F(BotServiceTest, RestLifecycle) {
  auto created = rest(*service_, "POST", {"bots"}, bj::serialize(botBody()));
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id(bj::parse(created.body).at("id").as_string());
  EXPECT_EQ(rest(*service_, "POST", {"bots"}, bj::serialize(botBody()), {"AGENT"}).status, 403);
  EXPECT_EQ(rest(*service_, "GET", {"bots"}).status, 200);
  auto started = rest(*service_, "POST", {"bots", id, "start"});
  ASSERT_EQ(started.status, 200) << started.body;
  EXPECT_EQ(bj::parse(started.body).at("status").as_string(), "ONLINE");
  auto put = rest(*service_, "PUT", {"bots", id}, R"({"name":"Renamed"})");
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(bj::parse(put.body).at("name").as_string(), "Renamed");
  auto c = open("rest-consumer");
  say(c, "hi");
  ASSERT_TRUE(waitTurns(BotId(id), 1));
  auto turns_resp = rest(*service_, "GET", {"bots", id, "turns"});
  ASSERT_EQ(turns_resp.status, 200);
  auto arr = bj::parse(turns_resp.body).as_array();
  ASSERT_EQ(arr.size(), 1u);
  EXPECT_EQ(arr[0].at("outcome").as_string(), "OK");
  EXPECT_TRUE(arr[0].at("input").is_object());
  auto stopped = rest(*service_, "POST", {"bots", id, "stop"}, "", {"AGENT_MANAGER"});
  ASSERT_EQ(stopped.status, 200);
  EXPECT_EQ(bj::parse(stopped.body).at("status").as_string(), "OFFLINE");
  EXPECT_EQ(rest(*service_, "GET", {"bots", "nope"}).status, 404);
  EXPECT_EQ(rest(*service_, "DELETE", {"bots", id}).status, 200);
  EXPECT_EQ(rest(*service_, "GET", {"bots", id}).status, 404);
}

TEST_F(BotServiceTest, TestConnectionListsEveryProblem) {
  auto b = service_->createBot(kAcc, botBody());
  BotId id(std::string(b->at("id").as_string()));
  runner_.setScript(
      [](const functions::InvokeRequest&) { return okResult(R"({"messages":["hi"]})"); });
  auto ok = service_->testConnection(kAcc, id);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->at("ok").as_bool());
  EXPECT_TRUE(ok->at("latencyMs").is_number());
  runner_.setScript([](const functions::InvokeRequest&) {
    return okResult(
        R"({"messages":[{"structuredContent":{"type":"button"}},{"delay":-1}],"context":{"action":"NOPE"}})");
  });
  auto bad = service_->testConnection(kAcc, id);
  ASSERT_TRUE(bad);
  EXPECT_FALSE(bad->at("ok").as_bool());
  EXPECT_GE(bad->at("errors").as_array().size(), 2u) << bj::serialize(*bad);
  runner_.setScript([](const functions::InvokeRequest&) {
    return errorResult("com.liveperson.faas.es.notdeployed", "not deployed");
  });
  auto down = service_->testConnection(kAcc, id);
  EXPECT_FALSE(down->at("ok").as_bool());
  EXPECT_NE(bj::serialize(down->at("errors")).find("notdeployed"), std::string::npos);
}

TEST_F(BotServiceTest, TestConnectionOfAnUnsavedBotRunsTheSameCheckAndStoresNothing) {
  std::mutex mu;
  std::vector<functions::InvokeRequest> seen;
  runner_.setScript([&](const functions::InvokeRequest& r) {
    std::lock_guard lock(mu);
    seen.push_back(r);
    // A quick-reply message: valid on MESSAGING, refused on CHAT.
    return okResult(
        R"({"messages":[{"structuredContent":{"message":"pick","quickReplies":{
        "type":"quickReplies","itemsPerRow":1,"replies":[{"type":"button","title":"A",
        "click":{"actions":[{"type":"publishText","text":"A"}]}}]}}}]})");
  });
  auto users_before = store_->accounts().listUsers(kAcc);
  ASSERT_TRUE(users_before);
  // The form's values are used, not a stored bot's: function, turn timeout, conversation type.
  auto ok = service_->testConnectionUnsaved(
      kAcc, formBody(R"("functionUuid":"fn-other","conversationTypes":["MESSAGING"],
                          "escalation":{"turnTimeoutMs":1234})"));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_TRUE(ok->at("ok").as_bool()) << bj::serialize(*ok);
  EXPECT_TRUE(ok->at("latencyMs").is_number());
  EXPECT_TRUE(ok->at("response").is_object());
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].function.str(), "fn-other");
    EXPECT_EQ(seen[0].deadline, std::chrono::milliseconds(1234));
  }
  auto chat = service_->testConnectionUnsaved(kAcc, formBody(R"("conversationTypes":["CHAT"])"));
  ASSERT_TRUE(chat) << chat.error().message;
  EXPECT_FALSE(chat->at("ok").as_bool()) << bj::serialize(*chat);
  EXPECT_FALSE(chat->at("errors").as_array().empty());
  // The saved-bot path gives the same answer for the same config.
  auto saved = service_->createBot(kAcc, formBody(R"("conversationTypes":["CHAT"])"));
  ASSERT_TRUE(saved);
  auto saved_chat = service_->testConnection(kAcc, BotId(std::string(saved->at("id").as_string())));
  ASSERT_TRUE(saved_chat);
  EXPECT_EQ(bj::serialize(saved_chat->at("errors")), bj::serialize(chat->at("errors")));
  // Nothing stored by the unsaved calls: one bot (the saved one), one new user (its bot user).
  auto bots = service_->listBots(kAcc);
  ASSERT_TRUE(bots);
  EXPECT_EQ(bots->size(), 1u);
  auto users_after = store_->accounts().listUsers(kAcc);
  ASSERT_TRUE(users_after);
  EXPECT_EQ(users_after->size(), users_before->size() + 1);
}

TEST_F(BotServiceTest, TestConnectionOfAnUnsavedBotIsValidatedLikeCreate) {
  std::atomic<int> invoked = 0;
  runner_.setScript([&](const functions::InvokeRequest&) {
    ++invoked;
    return okResult(R"({"messages":["hi"]})");
  });
  // Each invalid body gets create's error, names the field, and invokes nothing.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("name":"")", "'name'"},
      {R"("functionUuid":"fn-missing")", "functionUuid"},
      {R"("conversationTypes":["SMS"])", "'conversationTypes'"},
      {R"("skills":["nope"])", "skill \"nope\""},
      {R"("escalation":{"skill":"Nowhere","turnTimeoutMs":5000})", "escalation skill"},
      {R"("escalation":{"retries":9})", "'escalation.retries'"},
      {R"("userId":"no-such-user")", "userId"},
  };
  for (const auto& [extra, field] : cases) {
    auto created = service_->createBot(kAcc, formBody(extra));
    ASSERT_FALSE(created) << extra;
    auto r = service_->testConnectionUnsaved(kAcc, formBody(extra));
    ASSERT_FALSE(r) << extra;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid) << extra;
    EXPECT_EQ(r.error().message, created.error().message) << extra;
    EXPECT_NE(r.error().message.find(field), std::string::npos) << r.error().message;
    // Over REST: 400 with the message.
    auto resp =
        rest(*service_, "POST", {"bots", "test-connection"}, bj::serialize(formBody(extra)));
    EXPECT_EQ(resp.status, 400) << extra;
    EXPECT_EQ(bj::parse(resp.body).at("error").at("message").as_string(), created.error().message)
        << resp.body;
  }
  EXPECT_EQ(invoked, 0);
  auto bad_json = rest(*service_, "POST", {"bots", "test-connection"}, "{not json");
  EXPECT_EQ(bad_json.status, 400) << bad_json.body;
  auto get = rest(*service_, "GET", {"bots", "test-connection"});
  EXPECT_EQ(get.status, 400) << get.body;
  EXPECT_EQ(invoked, 0);
}

TEST_F(BotServiceTest, TestConnectionOfAnUnsavedBotHasTheSavedBotsRoles) {
  runner_.setScript(
      [](const functions::InvokeRequest&) { return okResult(R"({"messages":["hi"]})"); });
  const std::string body = bj::serialize(botBody());
  auto admin = rest(*service_, "POST", {"bots", "test-connection"}, body, {"ADMIN"});
  ASSERT_EQ(admin.status, 200) << admin.body;
  EXPECT_TRUE(bj::parse(admin.body).at("ok").as_bool()) << admin.body;
  for (const auto& role :
       {"AGENT_MANAGER", "AGENT", "FAAS_ADMIN", "FAAS_DEVELOPER", "FAAS_INVOCATION"}) {
    auto r = rest(*service_, "POST", {"bots", "test-connection"}, body, {role});
    EXPECT_EQ(r.status, 403) << role << " " << r.body;
  }
  // The same roles as the saved-bot call, by the policy's table.
  EXPECT_TRUE(policy::rule(policy::Action::kBotsTestConnectionUnsaved).allowed ==
              policy::rule(policy::Action::kBotsTestConnection).allowed);
}

TEST_F(BotServiceTest, RestartClearsOldPendingTurnRowsAndAnswersTheirMessages) {
  runner_.setScript([](const functions::InvokeRequest& r) {
    return okResult(bj::serialize(bj::object{
        {"messages",
         bj::array{
             "re: " +
             std::string(bj::parse(r.input_json).at("payload").at("message").as_string())}}}));
  });
  auto [bot, user] = startBot();
  auto c = open("crashed");
  say(c, "one");
  ASSERT_TRUE(waitCount(c, 1));
  // A crash mid-turn: the connector is gone before it answered "two"; an older version left a
  // pending-turn row behind.
  service_.reset();
  say(c, "two");
  ASSERT_TRUE(store_->bots().putPendingTurn(
      store::PendingTurn{kAcc, bot, c.id, "turn-crashed", R"({"epoch":1})", clock_.nowMs()}));
  auto v = richcontent::Validator::loadEmbedded();
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_);
  ASSERT_TRUE(service_->start());
  ASSERT_TRUE(waitCount(c, 2));
  EXPECT_EQ(botTexts(c), (std::vector<std::string>{"re: one", "re: two"}));
  EXPECT_TRUE(store_->bots().listPendingTurns()->empty());
}

TEST_F(BotServiceTest, TurnsWriteNoPendingRowsAndReadNoSkillsFromTheStore) {
  runner_.hold(true);
  runner_.setScript([](const functions::InvokeRequest& r) {
    std::string m(bj::parse(r.input_json).at("payload").at("message").as_string());
    if (m == "go")
      return okResult(
          R"({"messages":["moving"],"context":{"action":"TRANSFER","actionParameters":{"skill":"humans"}}})");
    return okResult(R"({"messages":["ok"]})");
  });
  auto [bot, user] = startBot();
  auto reads_after_start = service_->skillListReadsForTest();
  std::vector<store::Conversation> convs;
  for (int i = 0; i < 3; ++i) {
    convs.push_back(open("nopending-" + std::to_string(i),
                         i == 2 ? store::Channel::kChat : store::Channel::kMessaging));
    if (i < 2) say(convs.back(), "hi");
  }
  ASSERT_TRUE(runner_.waitRequests(3));
  // Three turns are running: no pending-turn row exists for any of them.
  EXPECT_TRUE(store_->bots().listPendingTurns()->empty());
  runner_.hold(false);
  runner_.releaseAll();
  ASSERT_TRUE(waitTurns(bot, 3));
  say(convs[0], "go");  // TRANSFER resolves "humans" from the cached list
  ASSERT_TRUE(waitTurns(bot, 4));
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(get(convs[0]).skill, humans_skill_);
  // createBot/startBot loaded the list; no turn (chat skillName, TRANSFER) read it again.
  EXPECT_EQ(service_->skillListReadsForTest(), reads_after_start);
  // A skill created after the cache was filled is found on a miss (one reload).
  skill("late");
  runner_.setScript([](const functions::InvokeRequest&) {
    return okResult(R"({"context":{"action":"TRANSFER","actionParameters":{"skill":"late"}}})");
  });
  std::this_thread::sleep_for(1100ms);  // a miss reloads at most once per second
  say(convs[1], "x");
  ASSERT_TRUE(waitTurns(bot, 5));
  EXPECT_EQ(turns(bot).at(0).outcome, "OK") << turns(bot).at(0).error;
  EXPECT_EQ(service_->skillListReadsForTest(), reads_after_start + 1);
}

// ---- durable turns ------------------------------------------------------------------------------

// Two messages per answer: "re: <message> (1)" and "re: <message> (2)".
functions::InvokeResult twoPartAnswer(const functions::InvokeRequest& r) {
  std::string m(bj::parse(r.input_json).at("payload").at("message").as_string());
  return okResult(
      bj::serialize(bj::object{{"messages", bj::array{"re: " + m + " (1)", "re: " + m + " (2)"}}}));
}

// Each message a turn publishes carries its mark; the last one marks the turn done, covering
// the consumer message it answered.
TEST_F(BotServiceTest, TurnMessagesCarryTheirMarkAndTheLastMarksTheTurnDone) {
  runner_.setScript(twoPartAnswer);
  auto [bot, user] = startBot();
  auto c = open("marks");
  say(c, "one");
  ASSERT_TRUE(waitCount(c, 2));
  ASSERT_TRUE(service_->waitIdleForTest());
  auto msgs = messages(c);
  ASSERT_EQ(msgs.size(), 3u);
  TimeMs joined = 0;
  for (const auto& p : get(c).participants)
    if (p.id == user.str()) joined = p.joined_at;
  EXPECT_TRUE(msgs[0].turn.empty());
  EXPECT_FALSE(msgs[1].turn.empty());
  EXPECT_EQ(msgs[1].turn.turn_id, msgs[2].turn.turn_id);
  EXPECT_EQ(msgs[1].turn.turn_id, turns(bot).at(0).turn_id);
  EXPECT_EQ(msgs[1].turn.through, msgs[0].sequence);
  EXPECT_EQ(msgs[1].turn.assigned_at, joined);
  EXPECT_EQ(msgs[1].turn.effect, 0);
  EXPECT_FALSE(msgs[1].turn.done);
  EXPECT_EQ(msgs[2].turn.effect, 1);
  EXPECT_TRUE(msgs[2].turn.done);
  EXPECT_TRUE(get(c).turn_mark.empty());  // no extra write: the message carried the mark
}

// A turn whose effects are no message of its own (a TTR change) is marked done on the
// conversation.
TEST_F(BotServiceTest, ATurnWithoutAMessageIsMarkedDoneOnTheConversation) {
  runner_.setScript([](const functions::InvokeRequest&) {
    return okResult(
        R"({"context":{"action":"CHANGE_TTR","actionParameters":{"ttrType":"URGENT"}}})");
  });
  auto [bot, user] = startBot();
  auto c = open("ttr-mark");
  say(c, "hurry");
  ASSERT_TRUE(waitTurns(bot, 1));
  ASSERT_TRUE(service_->waitIdleForTest());
  auto mark = get(c).turn_mark;
  EXPECT_EQ(mark.turn_id, turns(bot).at(0).turn_id);
  EXPECT_TRUE(mark.done);
  EXPECT_EQ(mark.through, messages(c).at(0).sequence);
  // After a restart nothing is answered again.
  service_.reset();
  auto v = richcontent::Validator::loadEmbedded();
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_);
  ASSERT_TRUE(service_->start());
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(runner_.requests().size(), 1u);
}

// The crash of the reliability report: consumer messages "two" and "three" stored, then the
// bot's first reply to "two" (of two), then the crash. The old rule (answer what follows the
// last bot message) answered neither; now the interrupted turn runs again with "two" only and
// publishes just its second message, and "three" gets its own turn.
TEST_F(BotServiceTest, ARestartRunsTheInterruptedTurnOnceAndAnswersWhatFollows) {
  runner_.setScript(twoPartAnswer);
  auto [bot, user] = startBot();
  auto c = open("interrupted");
  say(c, "one");
  ASSERT_TRUE(waitCount(c, 2));
  ASSERT_TRUE(service_->waitIdleForTest());
  service_.reset();  // the crash
  say(c, "two");
  say(c, "three");
  auto u = store_->accounts().getUser(kAcc, user);
  ASSERT_TRUE(u);
  TimeMs joined = 0;
  for (const auto& p : get(c).participants)
    if (p.id == user.str()) joined = p.joined_at;
  auto msgs = messages(c);
  std::int64_t two = msgs.at(msgs.size() - 2).sequence;
  conv::PublishRequest part;
  part.actor = conv::Actor::ofAgent(kAcc, user, u->pid);
  part.conversation = c.id;
  part.event_json =
      R"j({"type":"ContentEvent","contentType":"text/plain","message":"re: two (1)"})j";
  part.turn = store::TurnMark{"turn-two", joined, two, 0, false};
  ASSERT_TRUE(call<conv::Published>([&](auto cb) { engine_->publish(part, cb); }));

  auto v = richcontent::Validator::loadEmbedded();
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_);
  ASSERT_TRUE(service_->start());
  ASSERT_TRUE(waitCount(c, 6));
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(botTexts(c),
            (std::vector<std::string>{"re: one (1)", "re: one (2)", "re: two (1)", "re: two (2)",
                                      "re: three (1)", "re: three (2)"}));
  auto reqs = runner_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(payloadOf(reqs[1]).at("message").as_string(), "two");
  EXPECT_EQ(payloadOf(reqs[2]).at("message").as_string(), "three");
  auto t = turns(bot);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.at(1).turn_id, "turn-two");  // newest first: three, two, one
  EXPECT_NE(t.at(1).actions_json.find("ALREADY_SENT"), std::string::npos);
  // A second restart answers nothing again.
  service_.reset();
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_);
  ASSERT_TRUE(service_->start());
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(runner_.requests().size(), 3u);
}

// Consumer messages stored while the connector was down after the bot had answered earlier
// ones in the same assignment are each answered once, even when a bot message follows them.
TEST_F(BotServiceTest, MessagesBeforeTheBotsLastReplyAreAnsweredAfterARestart) {
  runner_.hold(true);
  runner_.setScript([](const functions::InvokeRequest& r) {
    std::string m(bj::parse(r.input_json).at("payload").at("message").as_string());
    return okResult(bj::serialize(bj::object{{"messages", bj::array{"re: " + m}}}));
  });
  auto [bot, user] = startBot();
  auto c = open("gap");
  say(c, "a");
  ASSERT_TRUE(runner_.waitRequests(1));
  say(c, "b");  // queued while "a" runs
  say(c, "c");
  runner_.releaseOne();  // "re: a" lands after "b" and "c"
  ASSERT_TRUE(waitCount(c, 1));
  ASSERT_TRUE(runner_.waitRequests(2));
  // The connector stops while "b" is running and "c" is queued: "b"'s answer, arriving after
  // that, is not published (the turn stays pending), as after a crash.
  std::thread stopper([this] { service_->stop(); });
  std::this_thread::sleep_for(100ms);
  runner_.hold(false);
  runner_.releaseAll();
  stopper.join();
  service_.reset();
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"re: a"});
  auto v = richcontent::Validator::loadEmbedded();
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_);
  ASSERT_TRUE(service_->start());
  ASSERT_TRUE(waitCount(c, 3));
  ASSERT_TRUE(service_->waitIdleForTest());
  auto texts = botTexts(c);
  std::sort(texts.begin(), texts.end());
  EXPECT_EQ(texts, (std::vector<std::string>{"re: a", "re: b", "re: c"}));
}

class DeferredStoreBotServiceTest : public BotServiceTest {
 protected:
  void SetUp() override {
    auto s = std::make_unique<DeferredTurnStore>(clock_);
    deferred_ = s.get();
    store_ = std::move(s);
    BotServiceTest::SetUp();
  }
  DeferredTurnStore* deferred_ = nullptr;
};

TEST_F(DeferredStoreBotServiceTest, WaitIdleWaitsForAsynchronousTurnRecords) {
  auto [bot, user] = startBot();
  auto c = open("async-record");
  say(c, "hi");
  ASSERT_TRUE(waitCount(c, 1));
  // The reply is out; its record is still being written (150 ms later).
  ASSERT_TRUE(service_->waitIdleForTest());
  auto t = turns(bot);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].outcome, "OK");
  EXPECT_EQ(deferred_->pending_writes.load(), 0);
  // Through REST as well.
  auto listed = rest(*service_, "GET", {"bots", bot.str(), "turns"});
  EXPECT_EQ(bj::parse(listed.body).as_array().size(), 1u);
}

TEST_F(DeferredStoreBotServiceTest, AFailedTurnRecordIsLoggedAndCounted) {
  deferred_->fail_writes = true;
  deferred_->delay_ms = 10;
  auto [bot, user] = startBot();
  auto c = open("record-fails");
  say(c, "one");
  ASSERT_TRUE(waitCount(c, 1));
  say(c, "two");  // the pipeline goes on although the record of turn one failed
  ASSERT_TRUE(waitCount(c, 2));
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_TRUE(turns(bot).empty());
  EXPECT_NE(service_->prometheusText().find("parley_bot_turn_record_failures_total 2"),
            std::string::npos)
      << service_->prometheusText();
}

// ---- store outages (README "Store outages") ----------------------------------------------------

// The memory store behind store::testing::UnavailableStore: the bot's messages (and, when the
// test says so, every conversation save and read) are refused as unavailable, as while
// PostgreSQL restarts. Consumers' messages are still stored, so messages can arrive meanwhile.
class StoreOutageBotServiceTest : public BotServiceTest {
 protected:
  void SetUp() override {
    auto s = std::make_unique<store::testing::UnavailableStore>(store::makeMemoryStore(clock_));
    s->fail_appends_if = [](const store::Message& m) {
      return m.originator_role != store::ParticipantRole::kConsumer;
    };
    outage_ = s.get();
    store_ = std::move(s);
    BotServiceTest::SetUp();
    runner_.setScript([](const functions::InvokeRequest& r) {
      std::string m(bj::parse(r.input_json).at("payload").at("message").as_string());
      return okResult(bj::serialize(bj::object{{"messages", bj::array{"re: " + m}}}));
    });
  }
  // Opens a conversation and waits until the bot holds it (its assignment is a store write)
  // and has read it (the catch-up when the bot takes a conversation is a store read).
  store::Conversation openAssigned(const std::string& consumer, const UserId& bot_user) {
    auto c = open(consumer);
    EXPECT_TRUE(waitAssigned(c, bot_user.str()));
    for (int i = 0; i < 500 && !service_->onEngineStrandForTest(c.id); ++i)
      std::this_thread::sleep_for(10ms);  // the connector tracks it: its catch-up has begun
    EXPECT_TRUE(service_->waitIdleForTest());
    return c;
  }
  bool waitRefused(int n) {
    for (int i = 0; i < 500; ++i) {
      if (outage_->refused.load() >= n) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  bool waitOutcome(const BotId& bot, const std::string& outcome) {
    for (int i = 0; i < 500; ++i) {
      for (const auto& t : turns(bot))
        if (t.outcome == outcome) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  store::testing::UnavailableStore* outage_ = nullptr;
};

// Issue 19: the reply to a message acknowledged before the outage is retried until the store
// takes it, once; a message that arrives meanwhile waits behind it and is answered after it.
TEST_F(StoreOutageBotServiceTest, AReplyRefusedWhileTheStoreIsDownIsSentOnceWhenItIsBack) {
  runner_.hold(true);
  auto [bot, user] = startBot();
  auto c = openAssigned("outage", user);
  say(c, "one");
  ASSERT_TRUE(runner_.waitRequests(1));
  outage_->writes_down = true;
  runner_.hold(false);
  runner_.releaseAll();
  ASSERT_TRUE(waitRefused(3));  // "re: one" refused, and refused again
  say(c, "two");                // stored: consumers' messages still are
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(botTexts(c).empty());
  EXPECT_EQ(runner_.requests().size(), 1u);  // the turn for "two" waits behind "one"'s
  outage_->writes_down = false;
  ASSERT_TRUE(waitCount(c, 2));
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(botTexts(c), (std::vector<std::string>{"re: one", "re: two"}));
  auto msgs = messages(c);
  ASSERT_EQ(msgs.size(), 4u);  // one, two, re: one, re: two
  EXPECT_TRUE(msgs[2].turn.done);
  EXPECT_EQ(msgs[2].turn.through, msgs[0].sequence);
  EXPECT_EQ(msgs[3].turn.through, msgs[1].sequence);
  auto t = turns(bot);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].outcome, "OK");
  EXPECT_EQ(t[1].outcome, "OK");
  EXPECT_NE(t[1].actions_json.find(R"("kind":"STORE_RETRY")"), std::string::npos);
  EXPECT_NE(t[1].actions_json.find(R"("status":"STORED")"), std::string::npos);
  EXPECT_NE(service_->prometheusText().find("parley_bot_store_retries_total{bot=\"" + bot.str()),
            std::string::npos);
}

// The write committed although the store answered Unavailable: the retry finds the reply in the
// store (same turn id and effect number) and does not send it again.
TEST_F(StoreOutageBotServiceTest, AReplyStoredAlthoughTheStoreAnsweredAnErrorIsNotSentTwice) {
  auto [bot, user] = startBot();
  auto c = openAssigned("ambiguous", user);
  outage_->committed_then_failed = true;
  outage_->fail_next_appends = 1;
  say(c, "one");
  ASSERT_TRUE(waitTurns(bot, 1));
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(outage_->refused.load(), 1);
  EXPECT_EQ(botTexts(c), std::vector<std::string>{"re: one"});
  auto t = turns(bot);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].outcome, "OK");
  EXPECT_NE(t[0].actions_json.find(R"("status":"FOUND_STORED")"), std::string::npos)
      << t[0].actions_json;
}

class ShortStoreRetryBotServiceTest : public StoreOutageBotServiceTest {
 protected:
  void SetUp() override {
    store_retry_for_ms_ = 100;
    StoreOutageBotServiceTest::SetUp();
  }
};

// Past the retry limit the turn is left owed: nothing later is answered before it (no later
// done mark covers it), the catch-up reads the store again until it can, and then the owed
// message and the next one are answered, in order, once each. While the store cannot be read,
// the engine refuses the consumer's next message too (a write of the conversation failed, and
// whether it was stored cannot be learnt yet): the consumer sends it again once the store is
// back.
TEST_F(ShortStoreRetryBotServiceTest, ATurnLeftOwedIsAnsweredFirstWhenTheStoreIsBack) {
  auto [bot, user] = startBot();
  auto c = openAssigned("owed", user);
  outage_->writes_down = true;
  outage_->reads_down = true;
  say(c, "one");
  ASSERT_TRUE(waitOutcome(bot, "STORE_UNAVAILABLE"));
  {
    conv::PublishRequest req;
    req.actor = consumer(c.consumer.str());
    req.conversation = c.id;
    req.event_json = bj::serialize(
        bj::object{{"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", "two"}});
    auto r = call<conv::Published>([&](auto cb) { engine_->publish(req, cb); });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
    EXPECT_NE(r.error().message.find("retry"), std::string::npos) << r.error().message;
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(runner_.requests().size(), 1u);  // nothing is answered while the store is down
  EXPECT_TRUE(botTexts(c).empty());
  outage_->writes_down = false;
  outage_->reads_down = false;
  say(c, "two");  // sent again
  ASSERT_TRUE(waitCount(c, 2));
  ASSERT_TRUE(service_->waitIdleForTest());
  EXPECT_EQ(botTexts(c), (std::vector<std::string>{"re: one", "re: two"}));
  auto reqs = runner_.requests();
  ASSERT_EQ(reqs.size(), 3u);  // "one" (left owed), "one" again, "two"
  EXPECT_EQ(payloadOf(reqs[1]).at("message").as_string(), "one");
  EXPECT_EQ(payloadOf(reqs[2]).at("message").as_string(), "two");
  auto t = turns(bot);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[2].outcome, "STORE_UNAVAILABLE");  // newest first
  EXPECT_NE(t[2].error.find("still owed"), std::string::npos) << t[2].error;
  EXPECT_EQ(t[1].outcome, "OK");
  EXPECT_EQ(t[0].outcome, "OK");
}

TEST_F(BotServiceTest, RestartResumesRunningBotsAndUnansweredMessages) {
  runner_.setScript(
      [](const functions::InvokeRequest&) { return okResult(R"({"messages":["answer"]})"); });
  auto [bot, user] = startBot();
  auto c = open("restart");
  say(c, "first");
  ASSERT_TRUE(waitCount(c, 1));
  // The connector goes away; a consumer message arrives meanwhile; a new connector starts.
  service_.reset();
  say(c, "while down");
  auto v = richcontent::Validator::loadEmbedded();
  service_ = std::make_unique<BotService>(*store_, *engine_, runner_, *v, clock_);
  ASSERT_TRUE(service_->start());
  ASSERT_TRUE(waitCount(c, 2));
  EXPECT_EQ(payloadOf(runner_.requests().back()).at("message").as_string(), "while down");
  EXPECT_EQ(service_->getBot(kAcc, bot)->at("status").as_string(), "ONLINE");
}

}  // namespace
}  // namespace parley::connector
