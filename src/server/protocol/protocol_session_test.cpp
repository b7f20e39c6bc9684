#include "server/protocol/protocol_session.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "common/crypto.h"
#include "common/json.h"
#include "common/testing/fake_clock.h"
#include "conversation/conversation_engine.h"
#include "store/memory/memory_store.h"

namespace parley::server::protocol {
namespace {

// A socket-free transport: frames are recorded, posted work queues up and runs when the test
// pumps it (the test thread plays the connection strand).
class FakeTransport final : public WsTransport {
 public:
  void send(std::string text) override {
    std::lock_guard lock(mu_);
    sent_.push_back(std::move(text));
  }
  void close(int code, std::string reason) override {
    std::lock_guard lock(mu_);
    close_code_ = code;
    close_reason_ = std::move(reason);
  }
  void post(std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    posted_.push_back(std::move(fn));
    cv_.notify_all();
  }
  void postAfter(std::chrono::milliseconds, std::function<void()> fn) override {
    std::lock_guard lock(mu_);
    timers_.push_back(std::move(fn));
  }
  std::size_t queuedBytes() const override { return queued_bytes.load(); }
  std::size_t maxQueuedBytes() const override { return 1000; }
  // What queuedBytes() reports (the peer's unread bytes), against a limit of 1000.
  std::atomic<std::size_t> queued_bytes{0};
  std::size_t timerCount() {
    std::lock_guard lock(mu_);
    return timers_.size();
  }

  // Runs posted work until `pred` holds over the sent frames (or 5 s pass).
  bool pumpUntil(const std::function<bool(const std::vector<bj::object>&)>& pred) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      if (pred(frames())) return true;
      std::deque<std::function<void()>> work;
      {
        std::unique_lock lock(mu_);
        cv_.wait_until(
            lock,
            std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(20)),
            [&] { return !posted_.empty(); });
        work.swap(posted_);
      }
      for (auto& w : work) w();
      if (std::chrono::steady_clock::now() > deadline) return pred(frames());
    }
  }
  std::vector<bj::object> frames() {
    std::lock_guard lock(mu_);
    return framesLocked();
  }
  int closeCode() {
    std::lock_guard lock(mu_);
    return close_code_;
  }
  void fireTimers() {
    std::vector<std::function<void()>> t;
    {
      std::lock_guard lock(mu_);
      t.swap(timers_);
    }
    for (auto& f : t) f();
  }

 private:
  std::vector<bj::object> framesLocked() const {
    std::vector<bj::object> out;
    for (const auto& s : sent_) out.push_back(*json::parseObject(s));
    return out;
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> sent_;
  std::deque<std::function<void()>> posted_;
  std::vector<std::function<void()>> timers_;
  int close_code_ = 0;
  std::string close_reason_;
};

const bj::object* findResp(const std::vector<bj::object>& frames, const std::string& id) {
  for (const auto& f : frames)
    if (json::getString(f, "kind") == "resp" && json::getString(f, "reqId") == id) return &f;
  return nullptr;
}

const bj::object* findNote(const std::vector<bj::object>& frames, const std::string& type,
                           const std::function<bool(const bj::object&)>& pred = {}) {
  for (const auto& f : frames)
    if (json::getString(f, "kind") == "notification" && json::getString(f, "type") == type &&
        (!pred || pred(f.at("body").as_object())))
      return &f;
  return nullptr;
}

// The change with `sequence` in the consumer's ms.MessagingEventNotifications, if any.
const bj::object* messagingChange(const std::vector<bj::object>& frames, std::int64_t sequence) {
  for (const auto& f : frames) {
    if (json::getString(f, "kind") != "notification" ||
        json::getString(f, "type") != "ms.MessagingEventNotification")
      continue;
    for (const auto& c : f.at("body").at("changes").as_array())
      if (c.as_object().at("sequence").as_int64() == sequence) return &c.as_object();
  }
  return nullptr;
}

class ProtocolSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    store::Account a;
    a.id = acc_;
    ASSERT_TRUE(store_->accounts().createAccount(a));
    store::Skill s;
    s.account = acc_;
    s.name = "general";
    skill_ = store_->accounts().createSkill(s)->id;
    store::User u;
    u.account = acc_;
    u.login_name = "bot";
    u.pid = "pid-bot";
    u.password_hash = *crypto::hashPassword("secret", crypto::PasswordCost::kMinimumForTest);
    u.roles = {store::Role::kAgent};
    u.type = store::UserType::kBot;
    u.skills = {skill_};
    u.max_open_conversations = 10;
    bot_ = *store_->accounts().createUser(u);
    conversation::Options o;
    o.tick_interval_ms = 0;
    engine_ = conversation::makeConversationService(*store_, clock_, o);
    ASSERT_TRUE(engine_->recover());
    auth_ = std::make_unique<Auth>(store_->accounts(), clock_, hasher_, "jwt-key", AuthOptions{});
    directory_ = std::make_unique<Directory>(store_->accounts(), inline_);
    ASSERT_TRUE(directory_->preloadAll());
    sub_ = engine_->subscribe(hub_);
  }
  void TearDown() override {
    sub_.reset();
    engine_.reset();
  }

  SessionDeps deps(SessionOptions o = {}) {
    return SessionDeps{*engine_, hub_, *directory_, *auth_, inline_, clock_, metrics_, o};
  }

  // A consumer session with an open conversation of `n` consumer messages; returns its id.
  std::string conversationWith(const std::shared_ptr<ProtocolSession>& consumer,
                               const std::shared_ptr<FakeTransport>& t, int n) {
    consumer->onFrame(
        R"({"kind":"req","id":"c1","type":"cm.ConsumerRequestConversation","body":{"skillId":")" +
        skill_.str() + R"("}})");
    EXPECT_TRUE(t->pumpUntil([](auto& f) { return findResp(f, "c1"); }));
    std::string conv = std::string(
        findResp(t->frames(), "c1")->at("body").as_object().at("conversationId").as_string());
    for (int i = 0; i < n; ++i) {
      std::string id = "p" + std::to_string(i);
      consumer->onFrame(
          R"({"kind":"req","id":")" + id + R"(","type":"ms.PublishEvent","body":{"dialogId":")" +
          conv + R"(","event":{"type":"ContentEvent","contentType":"text/plain","message":"m)" +
          std::to_string(i) + R"("}}})");
      EXPECT_TRUE(t->pumpUntil([&](auto& f) { return findResp(f, id); }));
    }
    return conv;
  }

  std::shared_ptr<ProtocolSession> open(const std::shared_ptr<ProtocolSession>& s) {
    s->onOpen();
    return s;
  }

  testing::FakeClock clock_;
  AccountId acc_{"123"};
  SkillId skill_;
  store::User bot_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<conversation::ConversationService> engine_;
  InlinePasswordHasher hasher_;
  std::unique_ptr<Auth> auth_;
  InlineExecutor inline_;
  std::unique_ptr<Directory> directory_;
  Hub hub_;
  Metrics metrics_;
  conversation::Subscription sub_;
};

TEST_F(ProtocolSessionTest, UnknownTypesAndGarbageGetA400Response) {
  auto t = std::make_shared<FakeTransport>();
  auto s = open(ProtocolSession::agent(deps(), t, Principal{bot_, "b", 0}));
  s->onFrame(R"({"kind":"req","id":"1","type":".ams.nope.Nothing","body":{}})");
  s->onFrame("{{{");
  s->onFrame(
      R"({"kind":"req","id":"2","type":".GetClock","body":{},"headers":null,"metadata":null})");
  ASSERT_TRUE(t->pumpUntil([](auto& f) { return f.size() >= 3; }));
  auto frames = t->frames();
  EXPECT_EQ(json::getInt(*findResp(frames, "1"), "code"), 400);
  EXPECT_NE(json::getString(*findResp(frames, "1"), "body").find(".ams.nope.Nothing"),
            std::string::npos);
  EXPECT_EQ(json::getInt(frames[1], "code"), 400);
  EXPECT_EQ(json::getInt(*findResp(frames, "2"), "code"), 200);
  s->onClose();
}

TEST_F(ProtocolSessionTest, RingAcceptHistoryPublishWithCorrectIdentities) {
  auto at = std::make_shared<FakeTransport>();
  auto agent = open(ProtocolSession::agent(deps(), at, Principal{bot_, "b", 0}));
  std::string old_id = "123." + bot_.id.str();
  agent->onFrame(
      R"({"kind":"req","id":"a1","type":".ams.routing.SetAgentState","body":{"availability":"ONLINE"}})");
  agent->onFrame(
      R"({"kind":"req","id":"a2","type":".ams.aam.SubscribeExConversations","body":{"agentIds":[")" +
      old_id + R"("],"convState":["OPEN"]}})");
  agent->onFrame(
      R"({"kind":"req","id":"a3","type":".ams.routing.SubscribeRoutingTasks","body":{}})");
  ASSERT_TRUE(at->pumpUntil([](auto& f) { return findResp(f, "a1") && findResp(f, "a3"); }));

  auto ct = std::make_shared<FakeTransport>();
  auto consumer = open(ProtocolSession::consumer(deps(), ct, acc_, ConsumerId("cons-1")));
  consumer->onFrame(
      R"({"kind":"req","id":"c1","type":"cm.ConsumerRequestConversation","body":{"skillId":")" +
      skill_.str() + R"("}})");
  ASSERT_TRUE(ct->pumpUntil([](auto& f) { return findResp(f, "c1"); }));
  std::string conv = std::string(
      findResp(ct->frames(), "c1")->at("body").as_object().at("conversationId").as_string());
  consumer->onFrame(
      R"({"kind":"req","id":"c2","type":"ms.SubscribeMessagingEvents","body":{"dialogId":")" +
      conv + R"(","fromSeq":0}})");
  consumer->onFrame(
      R"({"kind":"req","id":"c3","type":"ms.PublishEvent","body":{"dialogId":")" + conv +
      R"(","event":{"type":"ContentEvent","contentType":"text/plain","message":"hello"}}})");
  ASSERT_TRUE(ct->pumpUntil([](auto& f) { return findResp(f, "c3"); }));
  EXPECT_EQ(findResp(ct->frames(), "c3")->at("body").as_object().at("sequence").as_int64(), 0);

  // The agent is rung with a WAITING ring and accepts it.
  ASSERT_TRUE(
      at->pumpUntil([](auto& f) { return findNote(f, ".ams.routing.RoutingTaskNotification"); }));
  auto ring_note = *findNote(at->frames(), ".ams.routing.RoutingTaskNotification");
  const auto& ring = ring_note.at("body").at("changes").at(0).at("result").at("ringsDetails").at(0);
  EXPECT_EQ(ring.at("ringState").as_string(), "WAITING");
  std::string ring_id(ring.at("ringId").as_string());
  agent->onFrame(
      R"({"kind":"req","id":"a4","type":".ams.routing.UpdateRingState","body":{"ringId":")" +
      ring_id + R"(","ringState":"ACCEPTED"}})");
  ASSERT_TRUE(at->pumpUntil([&](auto& f) {
    return findResp(f, "a4") &&
           findNote(f, ".ams.aam.ExConversationChangeNotification", [&](const bj::object& b) {
             return b.at("changes").at(0).at("type").as_string() == "UPSERT";
           });
  }));
  EXPECT_EQ(json::getInt(*findResp(at->frames(), "a4"), "code"), 200);
  auto up = *findNote(at->frames(), ".ams.aam.ExConversationChangeNotification");
  const auto& details = up.at("body").at("changes").at(0).at("result").at("conversationDetails");
  EXPECT_EQ(details.at("participants").at("ASSIGNED_AGENT").at(0).as_string(), old_id);
  EXPECT_EQ(details.at("participantsPId").at("ASSIGNED_AGENT").at(0).as_string(), "pid-bot");
  EXPECT_TRUE(details.at("dialogs").at(0).at("participantsDetails").is_array());

  // History is inclusive of newerThanSequence 0 and comes back as an array.
  agent->onFrame(R"({"kind":"req","id":"a5","type":".ams.ms.QueryMessages","body":{"dialogId":")" +
                 conv + R"(","newerThanSequence":0}})");
  ASSERT_TRUE(at->pumpUntil([](auto& f) { return findResp(f, "a5"); }));
  auto hist = *findResp(at->frames(), "a5");
  EXPECT_EQ(hist.at("type").as_string(), ".ams.ms.QueryMessages$Response");
  ASSERT_EQ(hist.at("body").as_array().size(), 1u);
  EXPECT_EQ(hist.at("body").at(0).at("originatorId").as_string(), "cons-1");

  // GetUserProfile: a bare string body, an object response.
  agent->onFrame(
      R"({"kind":"req","id":"a6","type":".ams.userprofile.GetUserProfile","body":"cons-1"})");
  ASSERT_TRUE(at->pumpUntil([](auto& f) { return findResp(f, "a6"); }));
  EXPECT_TRUE(findResp(at->frames(), "a6")->at("body").is_object());

  // A consumer learns whether its agent (by the public id it sees) is a bot, and nothing of
  // anyone else: not another consumer's profile, not a user id.
  consumer->onFrame(
      R"({"kind":"req","id":"c6","type":".ams.userprofile.GetUserProfile","body":"pid-bot"})");
  consumer->onFrame(
      R"({"kind":"req","id":"c7","type":".ams.userprofile.GetUserProfile","body":"cons-2"})");
  consumer->onFrame(R"({"kind":"req","id":"c8","type":".ams.userprofile.GetUserProfile","body":")" +
                    old_id + R"("})");
  ASSERT_TRUE(ct->pumpUntil(
      [](auto& f) { return findResp(f, "c6") && findResp(f, "c7") && findResp(f, "c8"); }));
  auto agent_profile = findResp(ct->frames(), "c6")->at("body").as_object();
  EXPECT_EQ(agent_profile.at("userType").as_string(), "BOT");
  EXPECT_EQ(agent_profile.at("nickName").as_string(), "Bot");
  EXPECT_FALSE(agent_profile.contains("loginName"));
  EXPECT_EQ(json::getInt(*findResp(ct->frames(), "c7"), "code"), 403);
  EXPECT_EQ(json::getInt(*findResp(ct->frames(), "c8"), "code"), 403);

  // The agent answers: agents see the old-style originatorId, consumers the PId.
  agent->onFrame(
      R"({"kind":"req","id":"a7","type":".ams.ms.PublishEvent","body":{"dialogId":")" + conv +
      R"(","event":{"type":"ContentEvent","contentType":"text/plain","message":"echo"}},"metadata":[{"type":"ExternalId","id":"e1"}]})");
  ASSERT_TRUE(at->pumpUntil([](auto& f) {
    return findResp(f, "a7") && findNote(f, ".ams.ms.OnlineEventDistribution",
                                         [](auto& b) { return b.at("sequence").as_int64() == 1; });
  }));
  auto dist = *findNote(at->frames(), ".ams.ms.OnlineEventDistribution",
                        [](auto& b) { return b.at("sequence").as_int64() == 1; });
  EXPECT_EQ(dist.at("body").at("originatorId").as_string(), old_id);
  EXPECT_EQ(dist.at("body").at("originatorPId").as_string(), "pid-bot");
  // Live, or in the subscription's history when its read came after this publish (the test
  // pumps the consumer's strand only now, so its subscription may only just be answered): then
  // it is the second change of one notification.
  ASSERT_TRUE(ct->pumpUntil([](auto& f) { return messagingChange(f, 1) != nullptr; }));
  const auto consumer_frames = ct->frames();
  const auto& rec = *messagingChange(consumer_frames, 1);
  EXPECT_EQ(rec.at("originatorId").as_string(), "pid-bot");
  EXPECT_EQ(rec.at("originatorMetadata").at("role").as_string(), "ASSIGNED_AGENT");
  EXPECT_EQ(rec.at("metadata").at(0).at("id").as_string(), "e1");

  // A private note never reaches the consumer.
  agent->onFrame(
      R"({"kind":"req","id":"a8","type":".ams.ms.PublishEvent","body":{"dialogId":")" + conv +
      R"(","messageAudience":"AGENTS_AND_MANAGERS","event":{"type":"ContentEvent","contentType":"text/plain","message":"secret note"}}})");
  ASSERT_TRUE(at->pumpUntil([](auto& f) { return findResp(f, "a8"); }));
  EXPECT_EQ(json::getInt(*findResp(at->frames(), "a8"), "code"), 200);
  consumer->onFrame(R"({"kind":"req","id":"c4","type":"GetClock"})");
  ASSERT_TRUE(ct->pumpUntil([](auto& f) { return findResp(f, "c4"); }));
  for (const auto& f : ct->frames())
    EXPECT_EQ(bj::serialize(f).find("secret note"), std::string::npos);

  // Close: the consumer subscription sees CLOSE, the agent's OPEN subscription a DELETE.
  agent->onFrame(
      R"({"kind":"req","id":"a9","type":".ams.cm.UpdateConversationField","body":{"conversationId":")" +
      conv +
      R"(","conversationField":[{"field":"ConversationStateField","conversationState":"CLOSE"}]}})");
  ASSERT_TRUE(at->pumpUntil([](auto& f) {
    return findResp(f, "a9") &&
           findNote(f, ".ams.aam.ExConversationChangeNotification", [](const bj::object& b) {
             return b.at("changes").at(0).at("type").as_string() == "DELETE";
           });
  }));
  agent->onClose();
  consumer->onClose();
}

TEST_F(ProtocolSessionTest, ConsumerWithoutJwtMustInitConnection) {
  auto t = std::make_shared<FakeTransport>();
  auto s = open(ProtocolSession::consumer(deps(), t, acc_, std::nullopt));
  s->onFrame(R"({"kind":"req","id":"1","type":"cm.ConsumerRequestConversation","body":{}})");
  ASSERT_TRUE(t->pumpUntil([](auto& f) { return findResp(f, "1"); }));
  EXPECT_EQ(json::getInt(*findResp(t->frames(), "1"), "code"), 401);
  auto jwt = auth_->signupConsumer(acc_);
  ASSERT_TRUE(jwt);
  s->onFrame(
      R"({"kind":"req","id":"2","type":"InitConnection","headers":[{"type":".ams.headers.ConsumerAuthentication","jwt":")" +
      *jwt + R"("}]})");
  ASSERT_TRUE(t->pumpUntil([](auto& f) { return findResp(f, "2"); }));
  EXPECT_EQ(json::getInt(*findResp(t->frames(), "2"), "code"), 200);
  t->fireTimers();  // the init timeout passes: authenticated sockets stay open
  EXPECT_EQ(t->closeCode(), 0);

  auto t2 = std::make_shared<FakeTransport>();
  auto s2 = open(ProtocolSession::consumer(deps(), t2, acc_, std::nullopt));
  t2->fireTimers();
  EXPECT_EQ(t2->closeCode(), 4401);
  s->onClose();
  s2->onClose();
}

// Sequence numbers and quantities beyond int64 (1e300) were cast to int64: undefined (UBSan's
// float-cast-overflow aborts the sanitizer builds here). They now count as absent.
TEST_F(ProtocolSessionTest, NumbersBeyondInt64InBodiesAreIgnored) {
  auto ct = std::make_shared<FakeTransport>();
  auto consumer = open(ProtocolSession::consumer(deps(), ct, acc_, ConsumerId("cons-1")));
  consumer->onFrame(
      R"({"kind":"req","id":"c1","type":"cm.ConsumerRequestConversation","body":{"skillId":")" +
      skill_.str() + R"("}})");
  ASSERT_TRUE(ct->pumpUntil([](auto& f) { return findResp(f, "c1"); }));
  std::string conv = std::string(
      findResp(ct->frames(), "c1")->at("body").as_object().at("conversationId").as_string());
  consumer->onFrame(
      R"({"kind":"req","id":"c2","type":"ms.PublishEvent","body":{"dialogId":")" + conv +
      R"(","event":{"type":"ContentEvent","contentType":"text/plain","message":"hello"}}})");
  ASSERT_TRUE(ct->pumpUntil([](auto& f) { return findResp(f, "c2"); }));
  consumer->onFrame(
      R"({"kind":"req","id":"c3","type":"ms.SubscribeMessagingEvents","body":{"dialogId":")" +
      conv + R"(","fromSeq":1e300}})");
  ASSERT_TRUE(ct->pumpUntil([](auto& f) { return findResp(f, "c3"); }));
  EXPECT_EQ(json::getInt(*findResp(ct->frames(), "c3"), "code"), 200);

  // A manager: the conversation waits in the queue, visible to no agent.
  store::User manager = bot_;
  manager.id = UserId();
  manager.login_name = "manager";
  manager.pid = "pid-manager";
  manager.roles = {store::Role::kAgentManager};
  manager.type = store::UserType::kHuman;
  manager = *store_->accounts().createUser(manager);
  auto at = std::make_shared<FakeTransport>();
  auto agent = open(ProtocolSession::agent(deps(), at, Principal{manager, "m", 0}));
  agent->onFrame(R"({"kind":"req","id":"a1","type":".ams.ms.QueryMessages","body":{"dialogId":")" +
                 conv + R"(","newerThanSequence":-1e300,"maxQuantity":1e300}})");
  agent->onFrame(
      R"({"kind":"req","id":"a2","type":".ams.aam.SubscribeExConversations","body":{"minLastUpdatedTime":1e300}})");
  ASSERT_TRUE(at->pumpUntil([](auto& f) { return findResp(f, "a1") && findResp(f, "a2"); }));
  auto hist = *findResp(at->frames(), "a1");
  EXPECT_EQ(json::getInt(hist, "code"), 200);
  ASSERT_TRUE(hist.at("body").is_array());
  EXPECT_EQ(hist.at("body").as_array().size(), 1u);
  EXPECT_EQ(json::getInt(*findResp(at->frames(), "a2"), "code"), 200);
  agent->onClose();
  consumer->onClose();
}

TEST_F(ProtocolSessionTest, RevokedSessionsCloseWith4401) {
  auto t = std::make_shared<FakeTransport>();
  auto s = open(ProtocolSession::agent(deps(), t, Principal{bot_, "bearer-1", 0}));
  hub_.revokeBearer("bearer-1");
  t->pumpUntil([&](auto&) { return t->closeCode() != 0; });
  EXPECT_EQ(t->closeCode(), 4401);
  s->onClose();
}

}  // namespace
}  // namespace parley::server::protocol

namespace parley::server::protocol {
namespace {

// The drain: requests that arrive afterwards are refused with 503 (the client knows to send
// them again), and the session reports the requests it has taken and not answered yet.
TEST_F(ProtocolSessionTest, DrainingRefusesNewRequestsAndCountsThoseInFlight) {
  auto t = std::make_shared<FakeTransport>();
  auto s = open(ProtocolSession::consumer(deps(), t, acc_, ConsumerId("drained")));
  std::string conv = conversationWith(s, t, 0);
  s->onFrame(R"({"kind":"req","id":"before","type":"ms.PublishEvent","body":{"dialogId":")" + conv +
             R"(","event":{"type":"ContentEvent","contentType":"text/plain","message":"x"}}})");
  EXPECT_EQ(s->requestsInFlight(), 1);
  s->onDrain();
  s->onFrame(R"({"kind":"req","id":"after","type":"ms.PublishEvent","body":{"dialogId":")" + conv +
             R"(","event":{"type":"ContentEvent","contentType":"text/plain","message":"y"}}})");
  s->onFrame(R"({"kind":"req","id":"clock","type":"GetClock","body":{}})");
  ASSERT_TRUE(t->pumpUntil([](auto& f) { return findResp(f, "before") && findResp(f, "after"); }));
  EXPECT_EQ(s->requestsInFlight(), 0);
  auto frames = t->frames();
  EXPECT_EQ(json::getInt(*findResp(frames, "before"), "code"), 200);
  EXPECT_EQ(json::getInt(*findResp(frames, "after"), "code"), 503);
  EXPECT_NE(json::getString(*findResp(frames, "after"), "body").find("send it again"),
            std::string::npos);
  EXPECT_EQ(json::getInt(*findResp(frames, "clock"), "code"), 200);
  // Only the acknowledged message was stored.
  std::promise<std::size_t> n;
  engine_->listMessages(acc_, ConversationId(conv), 0, 100,
                        [&](Result<std::vector<store::Message>> r) { n.set_value(r->size()); });
  EXPECT_EQ(n.get_future().get(), 1u);
  s->onClose();
}

std::size_t historyRecords(const std::vector<bj::object>& frames) {
  std::size_t n = 0;
  for (const auto& f : frames)
    if (json::getString(f, "type") == "ms.MessagingEventNotification")
      n += f.at("body").at("changes").as_array().size();
  return n;
}

// The history goes out a page at a time, only while the write queue is under half its limit;
// a peer that takes nothing for the stall timeout is closed with 1008.
TEST_F(ProtocolSessionTest, HistoryIsSentInPagesWhileTheWriteQueueHasRoom) {
  SessionOptions o;
  o.history_page = 10;
  o.history_stall_timeout = std::chrono::milliseconds(60'000);
  auto t = std::make_shared<FakeTransport>();
  auto s = open(ProtocolSession::consumer(deps(o), t, acc_, ConsumerId("history")));
  std::string conv = conversationWith(s, t, 35);
  t->queued_bytes = 600;  // more than half of 1000: the history waits
  s->onFrame(
      R"({"kind":"req","id":"sub","type":"ms.SubscribeMessagingEvents","body":{"dialogId":")" +
      conv + R"(","fromSeq":0}})");
  ASSERT_TRUE(t->pumpUntil([](auto& f) { return findResp(f, "sub"); }));
  EXPECT_EQ(historyRecords(t->frames()), 0u);
  EXPECT_EQ(t->timerCount(), 1u);
  t->queued_bytes = 0;
  for (int i = 0; i < 20 && historyRecords(t->frames()) < 35; ++i) {
    t->fireTimers();
    t->pumpUntil([](auto&) { return false; });
  }
  EXPECT_EQ(historyRecords(t->frames()), 35u);
  EXPECT_EQ(t->closeCode(), 0);
  s->onClose();
}

TEST_F(ProtocolSessionTest, AHistoryNobodyReadsClosesTheConnectionWith1008) {
  SessionOptions o;
  o.history_page = 10;
  o.history_stall_timeout = std::chrono::milliseconds(0);
  auto t = std::make_shared<FakeTransport>();
  auto s = open(ProtocolSession::consumer(deps(o), t, acc_, ConsumerId("stalled")));
  std::string conv = conversationWith(s, t, 5);
  t->queued_bytes = 999;
  s->onFrame(
      R"({"kind":"req","id":"sub","type":"ms.SubscribeMessagingEvents","body":{"dialogId":")" +
      conv + R"(","fromSeq":0}})");
  ASSERT_TRUE(t->pumpUntil([](auto& f) { return findResp(f, "sub"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  t->fireTimers();
  EXPECT_EQ(t->closeCode(), 1008);
  EXPECT_EQ(historyRecords(t->frames()), 0u);
  s->onClose();
}

}  // namespace
}  // namespace parley::server::protocol
