#include "conversation/conversation_engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/json.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "conversation/conversation_service.h"
#include "conversation/engine_pool.h"
#include "store/memory/memory_store.h"

namespace parley::conversation {
namespace {

using store::Availability;
using store::Conversation;
using store::TtrType;
using namespace std::chrono_literals;

using parley::testing::call;

// Records every event, in arrival order, and lets a test wait for one.
class Recorder final : public ConversationListener {
 public:
  struct Entry {
    std::string type;  // CHANGED:<kind>, MESSAGE, CHAT, RING_OFFERED, RING_ENDED:<reason>, ...
    std::string conversation;
  };

  void onConversationChanged(const ConversationChanged& e) override {
    std::lock_guard lock(mu_);
    log_.push_back({std::string("CHANGED:") + changeKindName(e.kind), e.conversation.id.str()});
    changes_.push_back(e);
    cv_.notify_all();
  }
  void onMessageAdded(const MessageAdded& e) override {
    std::lock_guard lock(mu_);
    log_.push_back({"MESSAGE", e.message.conversation.str()});
    messages_.push_back(e);
    cv_.notify_all();
  }
  void onChatState(const ChatStateChanged& e) override {
    std::lock_guard lock(mu_);
    log_.push_back({"CHAT", e.conversation.id.str()});
    chat_states_.push_back(e);
    cv_.notify_all();
  }
  void onRingOffered(const RingOffered& e) override {
    std::lock_guard lock(mu_);
    log_.push_back({"RING_OFFERED", e.ring.conversation.str()});
    offered_.push_back(e.ring);
    cv_.notify_all();
  }
  void onRingEnded(const RingEnded& e) override {
    std::lock_guard lock(mu_);
    log_.push_back(
        {std::string("RING_ENDED:") + ringEndReasonName(e.reason), e.ring.conversation.str()});
    ended_.push_back(e);
    cv_.notify_all();
  }
  void onAgentStateChanged(const AgentStateChanged& e) override {
    std::lock_guard lock(mu_);
    log_.push_back({"AGENT_STATE", e.state.user.str()});
    agent_states_.push_back(e);
    cv_.notify_all();
  }
  void onOverdue(const ConversationOverdue& e) override {
    std::lock_guard lock(mu_);
    log_.push_back({"OVERDUE", e.conversation.str()});
    overdue_.push_back(e);
    cv_.notify_all();
  }

  // Waits until `pred()` holds (evaluated under the lock); false after 5 s.
  template <class P>
  bool waitFor(P pred) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return pred(); });
  }
  // The `nth` (from 0) ring offered to `user` for `conv` (waits for it).
  std::optional<Ring> waitRing(const std::string& conv, const std::string& user, int nth = 0) {
    std::optional<Ring> out;
    waitFor([&] {
      int seen = 0;
      for (const auto& r : offered_)
        if (r.conversation.str() == conv && r.user.str() == user && seen++ == nth) {
          out = r;
          return true;
        }
      return false;
    });
    return out;
  }
  // REQUIRES: mu_ held (inside waitFor) or no concurrent events.
  int ringsOfferedLocked(const std::string& conv, const std::string& user) {
    return static_cast<int>(std::ranges::count_if(offered_, [&](const Ring& r) {
      return r.conversation.str() == conv && r.user.str() == user;
    }));
  }
  int ringsOffered(const std::string& conv, const std::string& user) {
    std::lock_guard lock(mu_);
    return ringsOfferedLocked(conv, user);
  }
  std::vector<Entry> log() {
    std::lock_guard lock(mu_);
    return log_;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> log_;
  std::vector<ConversationChanged> changes_;
  std::vector<MessageAdded> messages_;
  std::vector<ChatStateChanged> chat_states_;
  std::vector<Ring> offered_;
  std::vector<RingEnded> ended_;
  std::vector<ConversationOverdue> overdue_;
  std::vector<AgentStateChanged> agent_states_;
};

const AccountId kAcc("1000");
const AccountId kOtherAcc("2000");

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount(store::Account{kAcc, "acme", 300, 600, 3600, 0}));
    ASSERT_TRUE(
        store_->accounts().createAccount(store::Account{kOtherAcc, "other", 300, 600, 3600, 0}));
    sales_ = createSkill("sales");
    support_ = createSkill("support");
    start();
  }
  void TearDown() override { stop(); }

  void start(Options o = {}) {
    o.tick_interval_ms = 0;
    if (o.threads == 2) o.threads = 4;
    engine_ = makeConversationService(*store_, clock_, o);
    sub_ = engine_->subscribe(rec_);
  }
  void stop() {
    sub_.reset();
    engine_.reset();
  }
  void restart(Options o = {}) {
    stop();
    start(o);
  }

  SkillId createSkill(const std::string& name) {
    auto s = store_->accounts().createSkill(store::Skill{kAcc, SkillId(), name, 0});
    EXPECT_TRUE(s);
    return s->id;
  }
  // Creates an agent (or bot) and returns its actor.
  // An AGENT_MANAGER (no skills).
  Actor createManager(const std::string& login) {
    return createAgent(login, {}, 10, store::UserType::kHuman, {store::Role::kAgentManager});
  }
  Actor createAgent(const std::string& login, std::vector<SkillId> skills, int max_open = 10,
                    store::UserType type = store::UserType::kHuman,
                    std::vector<store::Role> roles = {store::Role::kAgent}) {
    store::User u;
    u.account = kAcc;
    u.login_name = login;
    u.pid = "pid-" + login;
    u.roles = std::move(roles);
    u.type = type;
    u.skills = std::move(skills);
    u.max_open_conversations = max_open;
    auto r = store_->accounts().createUser(u);
    EXPECT_TRUE(r) << (r ? "" : r.error().message);
    return Actor::ofAgent(kAcc, r->id, r->pid);
  }
  Result<Conversation> request(const std::string& consumer, std::optional<SkillId> skill = {},
                               std::optional<TtrType> ttr = {},
                               std::optional<std::int64_t> ttr_s = {}) {
    ConversationRequest req;
    req.account = kAcc;
    req.consumer = ConsumerId(consumer);
    req.skill = std::move(skill);
    req.ttr_type = ttr;
    req.ttr_value_s = ttr_s;
    return call<Conversation>([&](auto cb) { engine_->requestConversation(req, cb); });
  }
  Result<Published> publish(const Actor& a, const ConversationId& id, const std::string& text,
                            Audience audience = Audience::kAll) {
    return publishOn(*engine_, a, id, text, audience);
  }
  // A text message published through `engine` (another node's engine in the lease tests).
  static Result<Published> publishOn(ConversationService& engine, const Actor& a,
                                     const ConversationId& id, const std::string& text,
                                     Audience audience = Audience::kAll) {
    PublishRequest req;
    req.actor = a;
    req.conversation = id;
    req.event_json =
        R"({"type":"ContentEvent","contentType":"text/plain","message":")" + text + R"("})";
    req.audience = audience;
    return call<Published>([&](auto cb) { engine.publish(req, cb); });
  }
  Result<Conversation> update(const Actor& a, const ConversationId& id,
                              std::vector<FieldChange> changes) {
    return call<Conversation>(
        [&](auto cb) { engine_->updateConversation(a, id, std::move(changes), cb); });
  }
  Result<store::AgentState> setState(const Actor& a, Availability av) {
    return call<store::AgentState>(
        [&](auto cb) { engine_->setAgentState(a.account, a.user, av, cb); });
  }
  Result<Conversation> accept(const Actor& a, const std::string& ring_id) {
    return call<Conversation>([&](auto cb) { engine_->acceptRing(a, ring_id, cb); });
  }
  Result<void> reject(const Actor& a, const std::string& ring_id) {
    return call<void>([&](auto cb) { engine_->rejectRing(a, ring_id, cb); });
  }
  Result<std::vector<store::Message>> messages(const ConversationId& id, std::int64_t from = 0) {
    return call<std::vector<store::Message>>(
        [&](auto cb) { engine_->listMessages(kAcc, id, from, 100000, cb); });
  }
  Result<Conversation> get(const ConversationId& id) {
    return call<Conversation>([&](auto cb) { engine_->getConversation(kAcc, id, cb); });
  }
  // The texts of the conversation's messages as the store holds them, in sequence order.
  std::vector<std::string> storedTexts(const ConversationId& id) {
    auto stored = store_->conversations().listMessages(id, 0, 100);
    EXPECT_TRUE(stored);
    std::vector<std::string> texts;
    if (!stored) return texts;
    for (const auto& m : *stored) {
      auto ev = json::parseObject(m.event_json);
      EXPECT_TRUE(ev);
      texts.push_back(ev ? std::string(ev->at("message").as_string()) : std::string());
    }
    return texts;
  }
  // Brings `agent` ONLINE, waits for its ring on `conv` and accepts it.
  Conversation assign(const Actor& agent, const Conversation& conv) {
    EXPECT_TRUE(setState(agent, Availability::kOnline));
    auto ring = rec_.waitRing(conv.id.str(), agent.user.str());
    EXPECT_TRUE(ring.has_value());
    if (!ring) return conv;
    auto c = accept(agent, ring->ring_id);
    EXPECT_TRUE(c) << (c ? "" : c.error().message);
    return c ? *c : conv;
  }
  std::optional<std::string> assignedAgent(const Conversation& c) {
    for (const auto& p : c.participants)
      if (p.role == store::ParticipantRole::kAssignedAgent &&
          p.state == store::ParticipantState::kActive)
        return p.id;
    return std::nullopt;
  }
  std::vector<ConversationId> queueOrder(const SkillId& skill) {
    std::vector<ConversationId> out;
    for (const auto& q : engine_->queues(kAcc, skill))
      for (const auto& e : q.entries) out.push_back(e.conversation);
    return out;
  }

  testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<ConversationService> engine_;
  Recorder rec_;
  Subscription sub_;
  SkillId sales_;
  SkillId support_;
};

// ---------------------------------------------------------------------------------------------
// Requesting conversations

TEST_F(EngineTest, RequestCreatesOpenConversationWithDefaults) {
  auto c = request("consumer-1");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->state, store::ConversationState::kOpen);
  EXPECT_EQ(c->skill.str(), "-1");
  EXPECT_EQ(c->ttr_type, TtrType::kNormal);
  EXPECT_EQ(c->ttr_value_s, 3600);
  EXPECT_EQ(c->ttr_due_at, clock_.nowMs() + 3600 * 1000);
  EXPECT_EQ(c->next_sequence, 0);
  ASSERT_EQ(c->participants.size(), 1u);
  EXPECT_EQ(c->participants[0].role, store::ParticipantRole::kConsumer);
  EXPECT_EQ(c->participants[0].id, "consumer-1");
  auto stored = get(c->id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->consumer.str(), "consumer-1");
  ASSERT_TRUE(rec_.waitFor([&] { return !rec_.changes_.empty(); }));
  EXPECT_EQ(rec_.changes_[0].kind, ChangeKind::kCreated);
}

TEST_F(EngineTest, OneOpenConversationPerConsumer) {
  auto c = request("consumer-1");
  ASSERT_TRUE(c);
  auto again = request("consumer-1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kConflict);
  EXPECT_EQ(again.error().message, "consumer already has an open conversation " + c->id.str());
  EXPECT_TRUE(request("consumer-2"));

  ASSERT_TRUE(update(Actor::ofConsumer(kAcc, ConsumerId("consumer-1")), c->id, {CloseField{}}));
  auto next = request("consumer-1");
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_NE(next->id, c->id);
}

TEST_F(EngineTest, ConcurrentRequestsOfOneConsumerCreateExactlyOne) {
  std::atomic<int> ok = 0;
  std::atomic<int> conflicts = 0;
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&] {
      auto r = request("racer");
      if (r)
        ok++;
      else if (r.error().code == ErrorCode::kConflict)
        conflicts++;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(conflicts, 7);
  store::ConversationQuery q;
  q.consumer = ConsumerId("racer");
  auto list =
      call<std::vector<Conversation>>([&](auto cb) { engine_->listConversations(kAcc, q, cb); });
  ASSERT_TRUE(list);
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(EngineTest, RequestValidatesSkillTtrAndAccount) {
  auto bad_skill = request("c1", SkillId("999"));
  ASSERT_FALSE(bad_skill);
  EXPECT_EQ(bad_skill.error().code, ErrorCode::kInvalid);

  auto no_value = request("c1", std::nullopt, TtrType::kCustom);
  ASSERT_FALSE(no_value);
  EXPECT_EQ(no_value.error().code, ErrorCode::kInvalid);

  auto negative = request("c1", std::nullopt, TtrType::kCustom, -5);
  ASSERT_FALSE(negative);
  EXPECT_EQ(negative.error().code, ErrorCode::kInvalid);

  ConversationRequest req;
  req.account = AccountId("424242");
  req.consumer = ConsumerId("c1");
  auto no_account = call<Conversation>([&](auto cb) { engine_->requestConversation(req, cb); });
  ASSERT_FALSE(no_account);
  EXPECT_EQ(no_account.error().code, ErrorCode::kNotFound);

  auto urgent = request("c1", sales_, TtrType::kUrgent, 999);  // value ignored for named types
  ASSERT_TRUE(urgent) << urgent.error().message;
  EXPECT_EQ(urgent->skill, sales_);
  EXPECT_EQ(urgent->ttr_value_s, 300);
  EXPECT_EQ(urgent->ttr_due_at, clock_.nowMs() + 300'000);
}

// ---------------------------------------------------------------------------------------------
// Publishing

TEST_F(EngineTest, PublishAssignsSequencesAndChatStateGetsNone) {
  auto c = request("c1");
  ASSERT_TRUE(c);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c1"));
  auto p0 = publish(consumer, c->id, "hello");
  ASSERT_TRUE(p0) << p0.error().message;
  EXPECT_EQ(p0->sequence, 0);

  PublishRequest typing;
  typing.actor = consumer;
  typing.conversation = c->id;
  typing.event_json = R"({"type":"ChatStateEvent","chatState":"COMPOSING"})";
  auto pt = call<Published>([&](auto cb) { engine_->publish(typing, cb); });
  ASSERT_TRUE(pt);
  EXPECT_FALSE(pt->sequence.has_value());

  PublishRequest receipt;
  receipt.actor = consumer;
  receipt.conversation = c->id;
  receipt.event_json = R"({"type":"AcceptStatusEvent","status":"READ","sequenceList":[0]})";
  receipt.metadata_json = R"([{"type":"ExternalId","id":"x1"}])";
  auto p1 = call<Published>([&](auto cb) { engine_->publish(receipt, cb); });
  ASSERT_TRUE(p1);
  EXPECT_EQ(p1->sequence, 1);

  auto all = messages(c->id);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].originator_id, "c1");
  EXPECT_EQ((*all)[0].originator_role, store::ParticipantRole::kConsumer);
  EXPECT_EQ((*all)[0].audience, store::Audience::kAll);
  EXPECT_EQ((*all)[1].metadata_json, R"([{"type":"ExternalId","id":"x1"}])");
  auto from1 = messages(c->id, 1);
  ASSERT_TRUE(from1);
  ASSERT_EQ(from1->size(), 1u);
  EXPECT_EQ((*from1)[0].sequence, 1);

  auto stored = get(c->id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->next_sequence, 2);

  ASSERT_TRUE(
      rec_.waitFor([&] { return rec_.messages_.size() == 2 && !rec_.chat_states_.empty(); }));
  EXPECT_EQ(rec_.messages_[0].message.sequence, 0);
  EXPECT_EQ(rec_.messages_[1].message.sequence, 1);
  EXPECT_EQ(rec_.messages_[1].conversation.next_sequence, 2);
  EXPECT_EQ(rec_.chat_states_[0].originator_role, store::ParticipantRole::kConsumer);
  EXPECT_EQ(rec_.chat_states_[0].chat_state, ChatState::kComposing);

  PublishRequest bad;
  bad.actor = consumer;
  bad.conversation = c->id;
  bad.event_json = R"({"type":"Nonsense"})";
  auto pb = call<Published>([&](auto cb) { engine_->publish(bad, cb); });
  ASSERT_FALSE(pb);
  EXPECT_EQ(pb.error().code, ErrorCode::kInvalid);
  bad.event_json = "not json";
  pb = call<Published>([&](auto cb) { engine_->publish(bad, cb); });
  ASSERT_FALSE(pb);
  EXPECT_EQ(pb.error().code, ErrorCode::kInvalid);
  // A chat state the protocol does not name is refused, naming it; nothing is announced.
  const std::size_t chat_states = rec_.chat_states_.size();
  bad.event_json = R"({"type":"ChatStateEvent","chatState":"composing"})";
  pb = call<Published>([&](auto cb) { engine_->publish(bad, cb); });
  ASSERT_FALSE(pb);
  EXPECT_EQ(pb.error().code, ErrorCode::kInvalid);
  EXPECT_NE(pb.error().message.find("'composing'"), std::string::npos) << pb.error().message;
  bad.event_json = R"({"type":"ChatStateEvent"})";
  pb = call<Published>([&](auto cb) { engine_->publish(bad, cb); });
  ASSERT_FALSE(pb);
  EXPECT_EQ(pb.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(rec_.chat_states_.size(), chat_states);
}

// An event handed over as a value (PublishRequest::event) is not parsed: it is stored as its
// serialisation and reaches the listeners as that same object. It is held to the nesting limit
// of an event sent as text: a depth the parser accepts is accepted, one more is refused.
TEST_F(EngineTest, AnEventPublishedAsAValueIsStoredAndSharedAsItIs) {
  namespace bj = boost::json;
  auto c = request("c1");
  ASSERT_TRUE(c);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c1"));
  auto ev = std::make_shared<const bj::object>(
      bj::object{{"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", "typed"}});
  PublishRequest req;
  req.actor = consumer;
  req.conversation = c->id;
  req.event = ev;
  req.event_json = "not read";
  auto p = call<Published>([&](auto cb) { engine_->publish(req, cb); });
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->sequence, 0);
  auto all = messages(c->id);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].event_json,
            R"({"type":"ContentEvent","contentType":"text/plain","message":"typed"})");
  ASSERT_TRUE(rec_.waitFor([&] { return rec_.messages_.size() == 1; }));
  EXPECT_EQ(rec_.messages_[0].event.get(), ev.get());
  EXPECT_EQ(rec_.messages_[0].message.event_json, (*all)[0].event_json);

  PublishRequest typing;
  typing.actor = consumer;
  typing.conversation = c->id;
  typing.event = std::make_shared<const bj::object>(
      bj::object{{"type", "ChatStateEvent"}, {"chatState", "COMPOSING"}});
  ASSERT_TRUE(call<Published>([&](auto cb) { engine_->publish(typing, cb); }));
  ASSERT_TRUE(rec_.waitFor([&] { return rec_.chat_states_.size() == 1; }));
  EXPECT_EQ(rec_.chat_states_[0].event_json,
            R"({"type":"ChatStateEvent","chatState":"COMPOSING"})");

  // {"type":"ContentEvent","message":"x","extra":[[...]]}, `depth` deep in all.
  auto nested = [](int depth) {
    bj::value v = bj::array{};
    for (int i = 2; i < depth; ++i) v = bj::array{std::move(v)};
    return bj::object{{"type", "ContentEvent"}, {"message", "x"}, {"extra", std::move(v)}};
  };
  std::int64_t next = 1;
  for (int depth : {32, 33}) {
    SCOPED_TRACE(depth);
    PublishRequest as_text;
    as_text.actor = consumer;
    as_text.conversation = c->id;
    as_text.event_json = bj::serialize(nested(depth));
    auto t = call<Published>([&](auto cb) { engine_->publish(as_text, cb); });
    PublishRequest as_value = as_text;
    as_value.event = std::make_shared<const bj::object>(nested(depth));
    auto v = call<Published>([&](auto cb) { engine_->publish(as_value, cb); });
    EXPECT_EQ(v.has_value(), t.has_value());
    EXPECT_EQ(t.has_value(), depth == 32);
    if (v) {
      next += 2;
    } else {
      EXPECT_EQ(v.error().code, ErrorCode::kInvalid);
    }
  }
  auto after = messages(c->id);
  ASSERT_TRUE(after);
  EXPECT_EQ(static_cast<std::int64_t>(after->size()), next);
}

// Every chat state round-trips through its wire name; other text is refused, naming it.
TEST(ChatStateNames, RoundTripAndUnknownRefused) {
  const std::pair<ChatState, const char*> all[] = {
      {ChatState::kComposing, "COMPOSING"}, {ChatState::kPause, "PAUSE"},
      {ChatState::kActive, "ACTIVE"},       {ChatState::kInactive, "INACTIVE"},
      {ChatState::kGone, "GONE"},           {ChatState::kBackground, "BACKGROUND"}};
  for (auto [state, name] : all) {
    EXPECT_STREQ(chatStateName(state), name);
    auto back = parseChatState(name);
    ASSERT_TRUE(back) << name;
    EXPECT_EQ(*back, state);
  }
  for (const char* bad : {"TYPING", "active", ""}) {
    auto r = parseChatState(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    EXPECT_NE(r.error().message.find(std::string("'") + bad + "'"), std::string::npos)
        << r.error().message;
  }
}

// conversationStrand: the conversation's events and the completions of its publishes and
// changes run on the strand it returns, so a component working on that strand (the bot
// connector) handles them there without a hand-off.
class OnStrandProbe final : public ConversationListener {
 public:
  void onConversationChanged(const ConversationChanged& e) override { note(e.conversation.id); }
  void onMessageAdded(const MessageAdded& e) override { note(e.message.conversation); }
  void note(const ConversationId& id) {
    std::lock_guard lock(mu);
    if (!strand || id != watched) return;
    ++events;
    if (strand->running_in_this_thread()) ++on_strand;
  }
  std::mutex mu;
  ConversationId watched;
  std::optional<ConversationStrand> strand;
  int events = 0;
  int on_strand = 0;
};

TEST_F(EngineTest, EventsAndCompletionsOfAConversationRunOnItsStrand) {
  EXPECT_FALSE(conversationStrand(*engine_, ConversationId("no-such-conversation")));
  auto c = request("c-strand", sales_);
  ASSERT_TRUE(c);
  auto strand = conversationStrand(*engine_, c->id);
  ASSERT_TRUE(strand);
  auto other = request("c-other", sales_);
  ASSERT_TRUE(other);
  EXPECT_FALSE(*conversationStrand(*engine_, other->id) == *strand);

  OnStrandProbe probe;
  {
    std::lock_guard lock(probe.mu);
    probe.watched = c->id;
    probe.strand = strand;
  }
  auto probe_sub = engine_->subscribe(probe);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c-strand"));
  auto completionOnStrand = [&](auto start) {
    std::promise<bool> p;
    start([&](auto) { p.set_value(strand->running_in_this_thread()); });
    return p.get_future().get();
  };
  PublishRequest req;
  req.actor = consumer;
  req.conversation = c->id;
  req.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"hi"})";
  EXPECT_TRUE(completionOnStrand([&](auto cb) { engine_->publish(req, cb); }));
  EXPECT_TRUE(completionOnStrand([&](auto cb) {
    engine_->updateConversation(consumer, c->id, {TtrField{TtrType::kUrgent, std::nullopt}}, cb);
  }));
  Actor agent = createAgent("strand-agent", {sales_});
  assign(agent, *c);
  EXPECT_TRUE(completionOnStrand([&](auto cb) {
    engine_->markTurn(agent, c->id, store::TurnMark{"t1", 1, 0, 0, true}, cb);
  }));
  // A completion is not on the strand once the conversation is closed (no engine strand runs
  // it), and conversationStrand no longer knows the conversation.
  ASSERT_TRUE(update(consumer, c->id, {CloseField{}}));
  EXPECT_FALSE(conversationStrand(*engine_, c->id));
  EXPECT_FALSE(completionOnStrand([&](auto cb) { engine_->publish(req, cb); }));
  probe_sub.reset();
  std::lock_guard lock(probe.mu);
  EXPECT_GE(probe.events, 4);  // the message, the TTR change, the assignment, the close
  EXPECT_EQ(probe.on_strand, probe.events);
}

TEST_F(EngineTest, ContentCheckRefusesBeforeAnythingIsStored) {
  // The check sees ContentEvent and RichContentEvent of every publisher with the conversation's
  // channel; it refuses rich content whose first element is not text.
  std::vector<std::string> seen;
  std::mutex mu;
  Options o;
  o.content_check = [&](const ContentToCheck& in) -> Status {
    std::lock_guard lock(mu);
    seen.push_back(std::string(in.event.at("type").as_string()) + "/" +
                   (in.publisher == ActorKind::kConsumer ? "consumer" : "agent") + "/" +
                   (in.channel == store::Channel::kMessaging ? "MESSAGING" : "CHAT") + "/" +
                   in.account.str());
    if (in.event.at("type").as_string() != "RichContentEvent") return {};
    const auto& content = in.event.at("content");
    if (content.is_object() && content.as_object().contains("elements") &&
        content.at("elements").at(0).at("type") == "text")
      return {};
    return std::unexpected(Error{ErrorCode::kInvalid, "refused by the content check"});
  };
  restart(o);
  Actor agent = createAgent("a1", {});
  auto c = request("c1");
  ASSERT_TRUE(c);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c1"));
  auto pub = [&](const Actor& a, const std::string& ev) {
    PublishRequest req;
    req.actor = a;
    req.conversation = c->id;
    req.event_json = ev;
    return call<Published>([&](auto cb) { engine_->publish(req, cb); });
  };
  const std::string bad =
      R"({"type":"RichContentEvent","content":{"type":"vertical","elements":[{"type":"image","url":"x"}]}})";
  const std::string good =
      R"({"type":"RichContentEvent","content":{"type":"vertical","elements":[{"type":"text","text":"hi"}]}})";

  auto r = pub(consumer, bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(r.error().message, "refused by the content check");
  EXPECT_TRUE(messages(c->id)->empty());
  EXPECT_EQ(get(c->id)->next_sequence, 0) << "a refused publish uses no sequence";

  auto ok = pub(consumer, good);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->sequence, 0);
  ASSERT_TRUE(publish(consumer, c->id, "text"));
  // Chat states and read receipts are not content.
  ASSERT_TRUE(pub(consumer, R"({"type":"ChatStateEvent","chatState":"COMPOSING"})"));
  ASSERT_TRUE(pub(consumer, R"({"type":"AcceptStatusEvent","status":"READ","sequenceList":[0]})"));

  // Agents go through the same check, after their rights: a stranger is Forbidden, unchecked.
  Actor stranger = createAgent("a2", {});
  std::size_t checked = seen.size();
  r = pub(stranger, bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  EXPECT_EQ(seen.size(), checked);
  assign(agent, *c);
  r = pub(agent, bad);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
  ASSERT_TRUE(pub(agent, good));

  auto all = messages(c->id);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 4u);  // good, text, the receipt, the agent's good
  for (const auto& m : *all) EXPECT_EQ(m.event_json.find(R"("url":"x")"), std::string::npos);
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{
                      "RichContentEvent/consumer/MESSAGING/1000",
                      "RichContentEvent/consumer/MESSAGING/1000",
                      "ContentEvent/consumer/MESSAGING/1000",
                      "RichContentEvent/agent/MESSAGING/1000",
                      "RichContentEvent/agent/MESSAGING/1000",
                  }));
}

TEST_F(EngineTest, ConcurrentPublishersGetContiguousSequencesInPublisherOrder) {
  Actor agent = createAgent("a1", {});
  auto c = request("c1");
  ASSERT_TRUE(c);
  assign(agent, *c);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c1"));

  constexpr int kThreads = 8;
  constexpr int kPerThread = 150;
  std::atomic<int> failures = 0;
  std::vector<std::thread> threads;
  std::atomic<int> remaining = kThreads * kPerThread;
  std::promise<void> all_done;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Actor& who = t % 2 == 0 ? consumer : agent;
      for (int n = 0; n < kPerThread; ++n) {
        PublishRequest req;
        req.actor = who;
        req.conversation = c->id;
        req.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"t)" +
                         std::to_string(t) + "-" + std::to_string(n) + R"("})";
        // Fire without waiting: order must follow the call order of this thread.
        engine_->publish(req, [&](Result<Published> r) {
          if (!r) failures++;
          if (--remaining == 0) all_done.set_value();
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(all_done.get_future().wait_for(20s), std::future_status::ready);
  EXPECT_EQ(failures, 0);

  auto all = messages(c->id);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), static_cast<size_t>(kThreads * kPerThread));
  std::map<int, int> last_n;
  for (size_t i = 0; i < all->size(); ++i) {
    const auto& m = (*all)[i];
    EXPECT_EQ(m.sequence, static_cast<std::int64_t>(i));
    auto ev = json::parseObject(m.event_json);
    ASSERT_TRUE(ev);
    std::string text = json::getString(*ev, "message");
    int t = std::stoi(text.substr(1, text.find('-') - 1));
    int n = std::stoi(text.substr(text.find('-') + 1));
    auto it = last_n.find(t);
    if (it != last_n.end())
      EXPECT_EQ(n, it->second + 1) << "publisher " << t << " reordered";
    else
      EXPECT_EQ(n, 0);
    last_n[t] = n;
    EXPECT_EQ(m.originator_role, t % 2 == 0 ? store::ParticipantRole::kConsumer
                                            : store::ParticipantRole::kAssignedAgent);
  }
  // Listeners saw the messages in sequence order.
  ASSERT_TRUE(rec_.waitFor(
      [&] { return rec_.messages_.size() == static_cast<size_t>(kThreads * kPerThread); }));
  for (size_t i = 0; i < rec_.messages_.size(); ++i)
    EXPECT_EQ(rec_.messages_[i].message.sequence, static_cast<std::int64_t>(i));
}

TEST_F(EngineTest, PublishChecksParticipantsAndState) {
  Actor agent = createAgent("a1", {});
  Actor stranger = createManager("a2");
  auto c = request("c1");
  ASSERT_TRUE(c);
  auto other = request("c2");
  ASSERT_TRUE(other);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c1"));

  // An agent that is not a participant cannot publish, even before assignment.
  auto r = publish(agent, c->id, "hi");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);

  assign(agent, *c);
  auto ok = publish(agent, c->id, "hello from agent");
  ASSERT_TRUE(ok) << ok.error().message;
  auto msgs = messages(c->id);
  ASSERT_TRUE(msgs);
  EXPECT_EQ(msgs->back().originator_id, "1000." + agent.user.str());
  EXPECT_EQ(msgs->back().originator_pid, agent.pid);
  EXPECT_EQ(msgs->back().originator_role, store::ParticipantRole::kAssignedAgent);

  r = publish(stranger, c->id, "hi");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);

  // A consumer cannot publish to another consumer's conversation.
  r = publish(consumer, other->id, "hi");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);

  // Another account does not see the conversation.
  r = publish(Actor::ofConsumer(kOtherAcc, ConsumerId("c1")), c->id, "hi");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);

  // Consumers cannot send private notes; agents can.
  r = publish(consumer, c->id, "psst", Audience::kAgentsAndManagers);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  ASSERT_TRUE(publish(agent, c->id, "note", Audience::kAgentsAndManagers));
  msgs = messages(c->id);
  EXPECT_EQ(msgs->back().audience, store::Audience::kAgentsAndManagers);

  // A READER cannot publish; a MANAGER can.
  ASSERT_TRUE(update(stranger, c->id,
                     {AddParticipantField{store::ParticipantRole::kReader, std::nullopt}}));
  r = publish(stranger, c->id, "reader");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  auto joined = update(stranger, c->id,
                       {AddParticipantField{store::ParticipantRole::kManager, std::nullopt}});
  ASSERT_TRUE(joined) << joined.error().message;
  auto mr = publish(stranger, c->id, "manager");
  ASSERT_TRUE(mr) << mr.error().message;
  EXPECT_EQ(messages(c->id)->back().originator_role, store::ParticipantRole::kManager);

  // A closed conversation rejects everything.
  ASSERT_TRUE(update(agent, c->id, {CloseField{}}));
  r = publish(consumer, c->id, "late");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  r = publish(agent, c->id, "late");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
  auto u = update(agent, c->id, {TtrField{TtrType::kUrgent, std::nullopt}});
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, ErrorCode::kConflict);
}

// A bot turn's mark is stored with the message it came with; markTurn stores one on the
// conversation, only for its assigned agent and only while it is open.
TEST_F(EngineTest, TurnMarksAreStoredWithTheMessageAndOnTheConversation) {
  Actor agent = createAgent("marker", {});
  Actor other = createAgent("other", {});
  auto c = request("c-mark");
  ASSERT_TRUE(c);
  assign(agent, *c);
  PublishRequest req;
  req.actor = agent;
  req.conversation = c->id;
  req.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"x"})";
  req.turn = store::TurnMark{"t-1", 5, 0, 0, true};
  ASSERT_TRUE(call<Published>([&](auto cb) { engine_->publish(req, cb); }));
  EXPECT_EQ(messages(c->id)->back().turn, req.turn);

  auto mark = [&](const Actor& a, store::TurnMark m) {
    return call<void>([&](auto cb) { engine_->markTurn(a, c->id, m, cb); });
  };
  store::TurnMark done{"t-2", 5, 0, 0, true};
  auto r = mark(other, done);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  ASSERT_TRUE(mark(agent, done));
  EXPECT_EQ(get(c->id)->turn_mark, done);
  // The next publish keeps it.
  ASSERT_TRUE(publish(agent, c->id, "after"));
  EXPECT_EQ(get(c->id)->turn_mark, done);
  ASSERT_TRUE(update(agent, c->id, {CloseField{}}));
  r = mark(agent, done);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kConflict);
}

TEST_F(EngineTest, UpdatePermissions) {
  Actor agent = createAgent("a1", {});
  Actor stranger = createAgent("a2", {});
  auto c = request("c1");
  ASSERT_TRUE(c);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c1"));
  // Consumers may not transfer.
  auto r = update(consumer, c->id, {SkillField{sales_}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  // Another consumer may not close it.
  r = update(Actor::ofConsumer(kAcc, ConsumerId("c9")), c->id, {CloseField{}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  assign(agent, *c);
  // A non-participant agent may not close or transfer it.
  r = update(stranger, c->id, {CloseField{}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  r = update(stranger, c->id, transferToSkill(sales_));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
  // A consumer may change its TTR.
  auto t = update(consumer, c->id, {TtrField{TtrType::kUrgent, std::nullopt}});
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->ttr_type, TtrType::kUrgent);
  EXPECT_EQ(t->ttr_value_s, 300);
}

// ---------------------------------------------------------------------------------------------
// Routing

TEST_F(EngineTest, QueueIsOrderedByTtrDueTime) {
  auto normal = request("c-normal", sales_);
  clock_.advanceMs(10);
  auto urgent = request("c-urgent", sales_, TtrType::kUrgent);
  clock_.advanceMs(10);
  auto custom = request("c-custom", sales_, TtrType::kCustom, 10);
  clock_.advanceMs(10);
  auto prioritized = request("c-prio", sales_, TtrType::kPrioritized);
  ASSERT_TRUE(normal && urgent && custom && prioritized);
  auto order = queueOrder(sales_);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0], custom->id);
  EXPECT_EQ(order[1], urgent->id);
  EXPECT_EQ(order[2], prioritized->id);
  EXPECT_EQ(order[3], normal->id);
  auto qs = engine_->queues(kAcc, sales_);
  ASSERT_EQ(qs.size(), 1u);
  EXPECT_EQ(qs[0].entries[0].due_at, custom->ttr_due_at);
  EXPECT_FALSE(qs[0].entries[0].overdue);
  EXPECT_TRUE(engine_->queues(kAcc, support_).empty());
}

TEST_F(EngineTest, OffersHeadOfQueueToOnlineAgentsWithSkillAndCapacity) {
  Actor a1 = createAgent("a1", {sales_}, /*max_open=*/1);
  Actor no_skill = createAgent("a2", {support_});
  auto slow = request("c-slow", sales_);
  auto fast = request("c-fast", sales_, TtrType::kCustom, 30);
  ASSERT_TRUE(slow && fast);

  // Not ONLINE: no ring.
  ASSERT_TRUE(setState(a1, Availability::kAway));
  ASSERT_TRUE(setState(no_skill, Availability::kOnline));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a1.user).empty());
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, no_skill.user).empty());

  // ONLINE: the head of the queue (earliest due) is offered, one ring per capacity slot.
  ASSERT_TRUE(setState(a1, Availability::kOnline));
  auto rings = engine_->ringsForAgent(kAcc, a1.user);
  ASSERT_EQ(rings.size(), 1u);
  EXPECT_EQ(rings[0].conversation, fast->id);
  EXPECT_EQ(rings[0].ring_id,
            fast->id.str() + "_" + a1.user.str() + "_" + std::to_string(clock_.nowMs()));
  EXPECT_EQ(rings[0].expires_at, clock_.nowMs() + Options{}.ring_expiry_ms);
  auto ring = rec_.waitRing(fast->id.str(), a1.user.str());
  ASSERT_TRUE(ring);
  EXPECT_EQ(ring->state, RingState::kWaiting);
  EXPECT_EQ(ring->skill, sales_);

  auto acc = accept(a1, ring->ring_id);
  ASSERT_TRUE(acc) << acc.error().message;
  EXPECT_EQ(assignedAgent(*acc), a1.user.str());
  // At capacity: the other conversation waits.
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a1.user).empty());
  EXPECT_EQ(queueOrder(sales_), std::vector<ConversationId>{slow->id});
  auto infos = engine_->agents(kAcc);
  auto me = std::ranges::find_if(infos, [&](const AgentInfo& i) { return i.user == a1.user; });
  ASSERT_NE(me, infos.end());
  EXPECT_EQ(me->open_assigned, 1);

  // Another agent with the skill gets it.
  Actor a3 = createAgent("a3", {sales_});
  ASSERT_TRUE(setState(a3, Availability::kOnline));
  ASSERT_TRUE(rec_.waitRing(slow->id.str(), a3.user.str()));

  // Closing frees capacity.
  ASSERT_TRUE(update(a1, fast->id, {CloseField{}}));
  infos = engine_->agents(kAcc);
  me = std::ranges::find_if(infos, [&](const AgentInfo& i) { return i.user == a1.user; });
  EXPECT_EQ(me->open_assigned, 0);

  // Ring events come after the conversation was created, in order.
  auto log = rec_.log();
  auto created = std::ranges::find_if(log, [&](const Recorder::Entry& e) {
    return e.conversation == fast->id.str() && e.type == "CHANGED:CREATED";
  });
  auto offered = std::ranges::find_if(log, [&](const Recorder::Entry& e) {
    return e.conversation == fast->id.str() && e.type == "RING_OFFERED";
  });
  EXPECT_LT(created - log.begin(), offered - log.begin());
}

TEST_F(EngineTest, DefaultQueueGoesToAnyOnlineAgentAndBotsAreRungToo) {
  Actor bot = createAgent("bot", {sales_}, 100, store::UserType::kBot);
  auto c = request("c1");  // skill -1
  ASSERT_TRUE(c);
  ASSERT_TRUE(setState(bot, Availability::kOnline));
  auto ring = rec_.waitRing(c->id.str(), bot.user.str());
  ASSERT_TRUE(ring);
  auto acc = accept(bot, ring->ring_id);
  ASSERT_TRUE(acc);
  ASSERT_TRUE(publish(bot, c->id, "I am a bot"));
  auto closed = update(bot, c->id, {CloseField{}});
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->close_reason, store::CloseReason::kBot);
}

TEST_F(EngineTest, RingAcceptFirstWins) {
  restart(Options{.ring_fanout = 2});
  Actor a1 = createAgent("a1", {sales_});
  Actor a2 = createAgent("a2", {sales_});
  ASSERT_TRUE(setState(a1, Availability::kOnline));
  ASSERT_TRUE(setState(a2, Availability::kOnline));
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  auto r1 = rec_.waitRing(c->id.str(), a1.user.str());
  auto r2 = rec_.waitRing(c->id.str(), a2.user.str());
  ASSERT_TRUE(r1 && r2);

  // Another agent cannot accept my ring.
  auto stolen = accept(a2, r1->ring_id);
  ASSERT_FALSE(stolen);
  EXPECT_EQ(stolen.error().code, ErrorCode::kForbidden);

  std::promise<Result<Conversation>> p1, p2;
  std::thread t1([&] { p1.set_value(accept(a1, r1->ring_id)); });
  std::thread t2([&] { p2.set_value(accept(a2, r2->ring_id)); });
  t1.join();
  t2.join();
  auto res1 = p1.get_future().get();
  auto res2 = p2.get_future().get();
  ASSERT_NE(res1.has_value(), res2.has_value()) << "exactly one accept must win";
  const auto& winner = res1 ? a1 : a2;
  const auto& loser_res = res1 ? res2 : res1;
  EXPECT_EQ(loser_res.error().code, ErrorCode::kConflict);
  auto stored = get(c->id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(assignedAgent(*stored), winner.user.str());
  int assigned = 0;
  for (const auto& p : stored->participants)
    assigned += p.role == store::ParticipantRole::kAssignedAgent;
  EXPECT_EQ(assigned, 1);

  // The winner accepting its ring again (a retry whose first answer was lost) succeeds and
  // changes nothing; the loser's ring was cancelled: accepting it is a Conflict.
  auto again = accept(winner, (res1 ? r1 : r2)->ring_id);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(assignedAgent(*again), winner.user.str());
  EXPECT_EQ(again->participants.size(), stored->participants.size());
  EXPECT_EQ(again->updated_at, stored->updated_at);
  const auto& loser = res1 ? a2 : a1;
  auto late = accept(loser, (res1 ? r2 : r1)->ring_id);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::count_if(
               rec_.ended_, [&](const RingEnded& e) { return e.ring.conversation == c->id; }) == 2;
  }));
  EXPECT_TRUE(queueOrder(sales_).empty());
}

TEST_F(EngineTest, RejectedAndExpiredRingsGoToTheNextAgent) {
  Actor a1 = createAgent("a1", {sales_});
  Actor a2 = createAgent("a2", {sales_});
  Actor a3 = createAgent("a3", {sales_});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  ASSERT_TRUE(setState(a1, Availability::kOnline));
  auto r1 = rec_.waitRing(c->id.str(), a1.user.str());
  ASSERT_TRUE(r1);
  ASSERT_TRUE(setState(a2, Availability::kOnline));
  ASSERT_TRUE(setState(a3, Availability::kOnline));
  EXPECT_EQ(
      engine_->ringsForAgent(kAcc, a2.user).size() + engine_->ringsForAgent(kAcc, a3.user).size(),
      0u)
      << "one ring at a time with ring_fanout 1";

  ASSERT_TRUE(reject(a1, r1->ring_id));
  auto rej = reject(a1, r1->ring_id);
  ASSERT_FALSE(rej);
  EXPECT_EQ(rej.error().code, ErrorCode::kConflict);
  // The next agent is rung; a1 is not rung again.
  auto next_rings = engine_->ringsForAgent(kAcc, a2.user);
  auto next_rings3 = engine_->ringsForAgent(kAcc, a3.user);
  ASSERT_EQ(next_rings.size() + next_rings3.size(), 1u);
  const Actor& second = next_rings.empty() ? a3 : a2;
  const Actor& third = next_rings.empty() ? a2 : a3;
  auto r2 = rec_.waitRing(c->id.str(), second.user.str());
  ASSERT_TRUE(r2);

  // Nobody answers: the ring expires and the third agent is rung.
  clock_.advanceMs(Options{}.ring_expiry_ms);
  engine_->tick();
  auto r3 = rec_.waitRing(c->id.str(), third.user.str());
  ASSERT_TRUE(r3);
  auto late = accept(second, r2->ring_id);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);
  ASSERT_TRUE(rec_.waitFor([&] {
    bool rejected = false, expired = false;
    for (const auto& e : rec_.ended_) {
      rejected |= e.reason == RingEndReason::kRejected && e.ring.user == a1.user;
      expired |= e.reason == RingEndReason::kExpired && e.ring.user == second.user;
    }
    return rejected && expired;
  }));
  EXPECT_EQ(rec_.ringsOffered(c->id.str(), a1.user.str()), 1);
  ASSERT_TRUE(accept(third, r3->ring_id));

  // Going OFFLINE cancels waiting rings.
  auto c2 = request("c2", sales_);
  ASSERT_TRUE(c2);
  std::vector<Ring> waiting;
  for (const auto* a : {&a1, &a2, &a3})
    for (auto& r : engine_->ringsForAgent(kAcc, a->user)) waiting.push_back(r);
  ASSERT_EQ(waiting.size(), 1u);
  Actor holder = waiting[0].user == a1.user ? a1 : waiting[0].user == a2.user ? a2 : a3;
  ASSERT_TRUE(setState(holder, Availability::kOffline));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, holder.user).empty());
  auto cancelled = accept(holder, waiting[0].ring_id);
  ASSERT_FALSE(cancelled);
  EXPECT_EQ(cancelled.error().code, ErrorCode::kConflict);
}

TEST_F(EngineTest, LaterConversationsAreOfferedWhileTheHeadIsStillRinging) {
  Actor a1 = createAgent("a1", {sales_});
  Actor a2 = createAgent("a2", {sales_});
  auto first = request("c1", sales_, TtrType::kUrgent);
  auto second = request("c2", sales_);
  ASSERT_TRUE(first && second);
  ASSERT_TRUE(setState(a1, Availability::kOnline));
  ASSERT_EQ(engine_->ringsForAgent(kAcc, a1.user).size(), 2u) << "a1 has room for both";
  // a2 arrives later: both conversations already ring a1 (fanout 1), nothing for a2.
  ASSERT_TRUE(setState(a2, Availability::kOnline));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a2.user).empty());

  // With a1 at capacity 1, the second conversation goes to a2 while the first still rings.
  Actor b1 = createAgent("b1", {support_}, 1);
  Actor b2 = createAgent("b2", {support_}, 1);
  auto s1 = request("c3", support_, TtrType::kUrgent);
  auto s2 = request("c4", support_);
  ASSERT_TRUE(s1 && s2);
  ASSERT_TRUE(setState(b1, Availability::kOnline));
  auto b1_rings = engine_->ringsForAgent(kAcc, b1.user);
  ASSERT_EQ(b1_rings.size(), 1u);
  EXPECT_EQ(b1_rings[0].conversation, s1->id);
  ASSERT_TRUE(setState(b2, Availability::kOnline));
  auto b2_rings = engine_->ringsForAgent(kAcc, b2.user);
  ASSERT_EQ(b2_rings.size(), 1u);
  EXPECT_EQ(b2_rings[0].conversation, s2->id);
}

TEST_F(EngineTest, QueuesOfDifferentSkillsAreServedByEarliestDue) {
  Actor a = createAgent("a1", {sales_, support_}, 1);
  auto unassigned = request("c-default");  // skill -1, NORMAL
  auto sales_normal = request("c-sales", sales_);
  auto support_urgent = request("c-support", support_, TtrType::kUrgent);
  ASSERT_TRUE(unassigned && sales_normal && support_urgent);
  ASSERT_TRUE(setState(a, Availability::kOnline));
  auto rings = engine_->ringsForAgent(kAcc, a.user);
  ASSERT_EQ(rings.size(), 1u);
  EXPECT_EQ(rings[0].conversation, support_urgent->id);
  ASSERT_TRUE(accept(a, rings[0].ring_id));
  ASSERT_TRUE(update(a, support_urgent->id, {CloseField{}}));
  rings = engine_->ringsForAgent(kAcc, a.user);
  ASSERT_EQ(rings.size(), 1u);
  EXPECT_EQ(rings[0].conversation, unassigned->id) << "created first, same TTR";
}

TEST_F(EngineTest, AcceptAfterTransferIsAConflict) {
  Actor a1 = createAgent("a1", {sales_});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  ASSERT_TRUE(setState(a1, Availability::kOnline));
  auto ring = rec_.waitRing(c->id.str(), a1.user.str());
  ASSERT_TRUE(ring);
  auto moved = update(Actor::ofSystem(kAcc), c->id, {SkillField{support_}});
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(queueOrder(support_), std::vector<ConversationId>{c->id});
  auto late = accept(a1, ring->ring_id);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(rec_.ended_, [&](const RingEnded& e) {
      return e.ring.ring_id == ring->ring_id && e.reason == RingEndReason::kCancelled &&
             e.ring.state == RingState::kCancelled;
    });
  }));
  // Events of the conversation arrived in order: created, ring offered, skill, ring ended.
  std::vector<std::string> types;
  for (const auto& e : rec_.log())
    if (e.conversation == c->id.str()) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{"CHANGED:CREATED", "RING_OFFERED", "CHANGED:SKILL",
                                             "RING_ENDED:CANCELLED"}));
}

TEST_F(EngineTest, RefreshAgentPicksUpNewSkills) {
  Actor a = createAgent("a1", {sales_});
  auto c = request("c1", support_);
  ASSERT_TRUE(c);
  ASSERT_TRUE(setState(a, Availability::kOnline));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a.user).empty());
  auto u = store_->accounts().getUser(kAcc, a.user);
  ASSERT_TRUE(u);
  u->skills.push_back(support_);
  ASSERT_TRUE(store_->accounts().updateUser(*u));
  ASSERT_TRUE(call<void>([&](auto cb) { engine_->refreshAgent(kAcc, a.user, cb); }));
  auto rings = engine_->ringsForAgent(kAcc, a.user);
  ASSERT_EQ(rings.size(), 1u);
  EXPECT_EQ(rings[0].conversation, c->id);
  // Leaving ONLINE cancels it.
  ASSERT_TRUE(setState(a, Availability::kAway));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a.user).empty());
}

TEST_F(EngineTest, ManagerJoinsAndLeaves) {
  Actor agent = createAgent("a1", {});
  Actor manager = createManager("m1");
  auto c = request("c1");
  ASSERT_TRUE(c);
  auto joined =
      update(manager, c->id, {AddParticipantField{store::ParticipantRole::kManager, std::nullopt}});
  ASSERT_TRUE(joined) << joined.error().message;
  ASSERT_TRUE(publish(manager, c->id, "watching"));
  // A non-participant may add only itself.
  auto other =
      update(agent, c->id, {AddParticipantField{store::ParticipantRole::kManager, manager.user}});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, ErrorCode::kForbidden);
  auto bad_role = update(manager, c->id,
                         {AddParticipantField{store::ParticipantRole::kConsumer, std::nullopt}});
  ASSERT_FALSE(bad_role);
  EXPECT_EQ(bad_role.error().code, ErrorCode::kInvalid);
  auto left = update(manager, c->id,
                     {RemoveParticipantField{store::ParticipantRole::kManager, std::nullopt}});
  ASSERT_TRUE(left);
  EXPECT_EQ(left->participants.size(), 1u);
  auto gone = publish(manager, c->id, "bye");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, ErrorCode::kForbidden);
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::count_if(rec_.changes_, [&](const ConversationChanged& e) {
             return e.kind == ChangeKind::kParticipants;
           }) == 2;
  }));
}

TEST_F(EngineTest, RoutingUnderConcurrentAgentsKeepsCapacityAndOneOwner) {
  restart(Options{.ring_fanout = 3});
  constexpr int kAgents = 6;
  constexpr int kMaxOpen = 2;
  constexpr int kConversations = 60;
  std::vector<Actor> agents;
  for (int i = 0; i < kAgents; ++i)
    agents.push_back(createAgent("s" + std::to_string(i), {sales_}, kMaxOpen));
  for (const auto& a : agents) ASSERT_TRUE(setState(a, Availability::kOnline));
  std::vector<ConversationId> ids;
  for (int i = 0; i < kConversations; ++i) {
    auto c = request("stress-" + std::to_string(i), sales_);
    ASSERT_TRUE(c);
    ids.push_back(c->id);
  }
  std::atomic<int> closed = 0;
  std::atomic<int> won = 0;
  std::atomic<int> lost = 0;
  std::atomic<bool> over_capacity = false;
  std::vector<std::thread> threads;
  for (int i = 0; i < kAgents; ++i) {
    threads.emplace_back([&, i] {
      const Actor& me = agents[i];
      auto deadline = std::chrono::steady_clock::now() + 20s;
      while (closed < kConversations && std::chrono::steady_clock::now() < deadline) {
        for (const auto& info : engine_->agents(kAcc))
          if (info.open_assigned > kMaxOpen) over_capacity = true;
        for (const auto& ring : engine_->ringsForAgent(kAcc, me.user)) {
          if (i == 0) {  // this agent rejects everything it is offered
            (void)reject(me, ring.ring_id);
            continue;
          }
          auto c = accept(me, ring.ring_id);
          if (!c) {
            lost++;
            continue;
          }
          won++;
          EXPECT_TRUE(publish(me, ring.conversation, "mine"));
          if (update(me, ring.conversation, {CloseField{}})) closed++;
        }
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(closed, kConversations);
  EXPECT_EQ(won, kConversations);
  EXPECT_FALSE(over_capacity);
  for (const auto& id : ids) {
    auto msgs = messages(id);
    ASSERT_TRUE(msgs);
    ASSERT_EQ(msgs->size(), 1u) << "exactly one owner published";
    EXPECT_NE((*msgs)[0].originator_id, "1000." + agents[0].user.str());
  }
  for (const auto& info : engine_->agents(kAcc)) {
    EXPECT_EQ(info.open_assigned, 0);
    EXPECT_EQ(info.waiting_rings, 0);
  }
  EXPECT_TRUE(engine_->queues(kAcc, std::nullopt).empty());
}

// ---------------------------------------------------------------------------------------------
// Transfers

TEST_F(EngineTest, TransferToSkillMovesTheConversationToAnotherAgent) {
  Actor a1 = createAgent("a1", {sales_});
  Actor a2 = createAgent("a2", {support_});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  assign(a1, *c);
  ASSERT_TRUE(setState(a2, Availability::kOnline));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a2.user).empty());

  auto moved = update(a1, c->id, transferToSkill(support_));
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(moved->skill, support_);
  EXPECT_FALSE(assignedAgent(*moved).has_value());
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(rec_.changes_, [&](const ConversationChanged& e) {
      return e.kind == ChangeKind::kSkill && e.conversation.id == c->id && e.removed.size() == 1 &&
             e.removed[0].id == a1.user.str();
    });
  }));
  // The old agent lost ownership.
  auto stale = publish(a1, c->id, "stale");
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kForbidden);
  // The new skill's agent is rung and takes it.
  auto r = rec_.waitRing(c->id.str(), a2.user.str());
  ASSERT_TRUE(r);
  auto taken = accept(a2, r->ring_id);
  ASSERT_TRUE(taken);
  EXPECT_EQ(assignedAgent(*taken), a2.user.str());

  // Back to queue (REMOVE without a skill change) re-queues in the same skill.
  auto back = update(
      a2, c->id, {RemoveParticipantField{store::ParticipantRole::kAssignedAgent, std::nullopt}});
  ASSERT_TRUE(back);
  EXPECT_EQ(queueOrder(support_), std::vector<ConversationId>{c->id});
  // Removing an assigned agent when there is none fails.
  auto none =
      update(Actor::ofSystem(kAcc), c->id,
             {RemoveParticipantField{store::ParticipantRole::kAssignedAgent, std::nullopt}});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, ErrorCode::kInvalid);
}

TEST_F(EngineTest, ManagerTransfersWithItsOwnIdInTheRemoveEntry) {
  Actor a1 = createAgent("a1", {sales_});
  Actor manager = createManager("m1");
  Actor other = createAgent("o1", {});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  assign(a1, *c);
  ASSERT_TRUE(update(manager, c->id,
                     {AddParticipantField{store::ParticipantRole::kManager, std::nullopt}}));
  // A third user that is not the assigned agent is refused.
  auto wrong = update(manager, c->id,
                      {RemoveParticipantField{store::ParticipantRole::kAssignedAgent, other.user},
                       SkillField{support_}});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kInvalid);
  // node-agent-sdk puts the caller's own id on REMOVE: that removes whoever is assigned.
  auto moved = update(manager, c->id,
                      {RemoveParticipantField{store::ParticipantRole::kAssignedAgent, manager.user},
                       SkillField{support_}});
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_FALSE(assignedAgent(*moved).has_value());
  EXPECT_EQ(moved->skill, support_);
  EXPECT_EQ(queueOrder(support_), std::vector<ConversationId>{c->id});
}

TEST_F(EngineTest, TransferToNamedAgentRingsOnlyThatAgent) {
  Actor a1 = createAgent("a1", {sales_});
  Actor a2 = createAgent("a2", {sales_});
  Actor target = createAgent("target", {});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  assign(a1, *c);
  ASSERT_TRUE(setState(a2, Availability::kOnline));
  ASSERT_TRUE(setState(target, Availability::kOccupied));  // OCCUPIED still gets transfers

  auto t = update(a1, c->id, transferToAgent(target.user, sales_));
  ASSERT_TRUE(t) << t.error().message;
  auto suggested = std::ranges::find_if(
      t->participants, [&](const store::Participant& p) { return p.id == target.user.str(); });
  ASSERT_NE(suggested, t->participants.end());
  EXPECT_EQ(suggested->role, store::ParticipantRole::kAssignedAgent);
  EXPECT_EQ(suggested->state, store::ParticipantState::kSuggested);
  EXPECT_FALSE(assignedAgent(*t).has_value());

  auto r = rec_.waitRing(c->id.str(), target.user.str());
  ASSERT_TRUE(r);
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a2.user).empty()) << "only the suggested agent";
  // The suggested agent cannot publish until it accepts.
  ASSERT_FALSE(publish(target, c->id, "too early"));
  auto taken = accept(target, r->ring_id);
  ASSERT_TRUE(taken) << taken.error().message;
  EXPECT_EQ(assignedAgent(*taken), target.user.str());
  int assigned = 0;
  for (const auto& p : taken->participants)
    assigned += p.role == store::ParticipantRole::kAssignedAgent;
  EXPECT_EQ(assigned, 1);
  ASSERT_TRUE(publish(target, c->id, "hello, I took over"));

  // A suggestion that is rejected falls back to the skill queue.
  auto t2 = update(target, c->id, transferToAgent(a1.user, sales_));
  ASSERT_TRUE(t2) << t2.error().message;
  auto r2 = rec_.waitRing(c->id.str(), a1.user.str(), 1);
  ASSERT_TRUE(r2);
  ASSERT_TRUE(reject(a1, r2->ring_id));
  ASSERT_TRUE(rec_.waitRing(c->id.str(), a2.user.str()));
  auto after = get(c->id);
  ASSERT_TRUE(after);
  EXPECT_TRUE(std::ranges::none_of(after->participants, [](const store::Participant& p) {
    return p.state == store::ParticipantState::kSuggested;
  }));

  // SUGGEST without removing the assigned agent is refused.
  auto taken2 = accept(a2, rec_.waitRing(c->id.str(), a2.user.str())->ring_id);
  ASSERT_TRUE(taken2);
  auto bad = update(a2, c->id, {SuggestAgentField{a1.user}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
}

TEST_F(EngineTest, SuggestionTimesOutWhenTheAgentIsAway) {
  Actor a1 = createAgent("a1", {sales_});
  Actor away = createAgent("away", {sales_});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  assign(a1, *c);
  ASSERT_TRUE(update(a1, c->id, transferToAgent(away.user, sales_)));
  EXPECT_EQ(engine_->queues(kAcc, sales_)[0].entries[0].suggested, away.user);
  clock_.advanceMs(Options{}.suggest_timeout_ms + 1);
  engine_->tick();
  // The suggestion is dropped and a1 (ONLINE, with the skill) is rung again.
  ASSERT_TRUE(rec_.waitRing(c->id.str(), a1.user.str()));
  ASSERT_TRUE(
      rec_.waitFor([&] { return rec_.ringsOfferedLocked(c->id.str(), a1.user.str()) == 2; }));
}

// ---------------------------------------------------------------------------------------------
// TTR and overdue

TEST_F(EngineTest, CustomTtrBecomesOverdueAfterItsSeconds) {
  auto c = request("c1", sales_, TtrType::kCustom, 5);
  ASSERT_TRUE(c);
  clock_.advanceMs(5000);
  engine_->tick();
  EXPECT_FALSE(engine_->queues(kAcc, sales_)[0].entries[0].overdue);
  clock_.advanceMs(1);
  engine_->tick();
  ASSERT_TRUE(rec_.waitFor([&] { return rec_.overdue_.size() == 1; }));
  EXPECT_EQ(rec_.overdue_[0].conversation, c->id);
  EXPECT_EQ(rec_.overdue_[0].due_at, c->ttr_due_at);
  EXPECT_TRUE(engine_->queues(kAcc, sales_)[0].entries[0].overdue);
  engine_->tick();  // raised once
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(rec_.overdue_.size(), 1u);

  // A longer TTR makes it due later again (measured from when it was queued).
  auto longer =
      update(Actor::ofConsumer(kAcc, ConsumerId("c1")), c->id, {TtrField{TtrType::kCustom, 60}});
  ASSERT_TRUE(longer);
  EXPECT_EQ(longer->ttr_due_at, c->start_ts + 60'000);
  EXPECT_FALSE(engine_->queues(kAcc, sales_)[0].entries[0].overdue);
  clock_.advanceMs(55'000);
  engine_->tick();
  ASSERT_TRUE(rec_.waitFor([&] { return rec_.overdue_.size() == 2; }));
}

// ---------------------------------------------------------------------------------------------
// Close

TEST_F(EngineTest, CloseRecordsReasonAndCancelsRouting) {
  Actor agent = createAgent("a1", {sales_});
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c1"));

  auto c1 = request("c1", sales_);
  ASSERT_TRUE(c1);
  auto closed = update(consumer, c1->id, {CloseField{}});
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->state, store::ConversationState::kClose);
  EXPECT_EQ(closed->close_reason, store::CloseReason::kConsumer);
  EXPECT_EQ(closed->end_ts, clock_.nowMs());
  EXPECT_TRUE(queueOrder(sales_).empty());

  auto c2 = request("c1", sales_);
  ASSERT_TRUE(c2);
  ASSERT_TRUE(setState(agent, Availability::kOnline));
  auto ring = rec_.waitRing(c2->id.str(), agent.user.str());
  ASSERT_TRUE(ring);
  auto sys = update(Actor::ofSystem(kAcc), c2->id, {CloseField{}});
  ASSERT_TRUE(sys);
  EXPECT_EQ(sys->close_reason, store::CloseReason::kSystem);
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(rec_.ended_, [&](const RingEnded& e) {
      return e.ring.ring_id == ring->ring_id && e.reason == RingEndReason::kCancelled;
    });
  }));
  EXPECT_FALSE(accept(agent, ring->ring_id));

  auto c3 = request("c1", sales_);
  ASSERT_TRUE(c3);
  auto r3 = rec_.waitRing(c3->id.str(), agent.user.str());
  ASSERT_TRUE(r3);
  ASSERT_TRUE(accept(agent, r3->ring_id));
  auto by_agent = update(agent, c3->id, {CloseField{}});
  ASSERT_TRUE(by_agent);
  EXPECT_EQ(by_agent->close_reason, store::CloseReason::kAgent);
  auto stored = get(c3->id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->state, store::ConversationState::kClose);
  EXPECT_EQ(stored->close_reason, store::CloseReason::kAgent);
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(rec_.changes_, [&](const ConversationChanged& e) {
      return e.kind == ChangeKind::kClosed && e.conversation.id == c3->id;
    });
  }));
}

// ---------------------------------------------------------------------------------------------
// Asynchronous appends: a conversation's operations wait for its write in flight

// A store whose asynchronous appends wait until the test lets them complete (or fail).
class GatedStore final : public store::Store, public store::ConversationStore {
 public:
  explicit GatedStore(store::Store& inner) : inner_(inner) {}
  store::AccountStore& accounts() override { return inner_.accounts(); }
  store::ConversationStore& conversations() override { return *this; }
  store::FunctionStore& functions() override { return inner_.functions(); }
  store::BotStore& bots() override { return inner_.bots(); }
  store::OAuthStore& oauth() override { return inner_.oauth(); }
  store::ScheduleStore& schedules() override { return inner_.schedules(); }
  int schemaVersion() const override { return inner_.schemaVersion(); }

  Status saveConversation(const Conversation& c) override {
    return inner_.conversations().saveConversation(c);
  }
  Status appendMessage(const Conversation& c, const store::Message& m) override {
    return inner_.conversations().appendMessage(c, m);
  }
  Result<Conversation> getConversation(const AccountId& a, const ConversationId& id) override {
    return inner_.conversations().getConversation(a, id);
  }
  Result<std::vector<Conversation>> listConversations(const AccountId& a,
                                                      const store::ConversationQuery& q) override {
    return inner_.conversations().listConversations(a, q);
  }
  Result<std::vector<Conversation>> listOpenConversations() override {
    return inner_.conversations().listOpenConversations();
  }
  Result<std::vector<store::Message>> listMessages(const ConversationId& id, std::int64_t from,
                                                   int limit) override {
    return inner_.conversations().listMessages(id, from, limit);
  }
  Result<std::optional<store::Message>> findMessageByKey(const ConversationId& id,
                                                         const std::string& originator_id,
                                                         const std::string& key) override {
    return inner_.conversations().findMessageByKey(id, originator_id, key);
  }
  void appendMessageAsync(std::shared_ptr<const Conversation> c,
                          std::shared_ptr<const store::Message> m,
                          std::function<void(Status)> done) override {
    std::lock_guard lock(mu_);
    held_.push_back([this, c = std::move(c), m = std::move(m), done = std::move(done)](Outcome o) {
      if (o == Outcome::kStoredButFailed) (void)inner_.conversations().appendMessage(*c, *m);
      done(o != Outcome::kStored
               ? Status(std::unexpected(Error{ErrorCode::kUnavailable, "connection lost"}))
               : inner_.conversations().appendMessage(*c, *m));
    });
    cv_.notify_all();
  }
  // Waits for `n` held appends.
  bool waitHeld(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return held_.size() >= n; });
  }
  // How a held append ends: stored; failed (nothing stored); or stored and reported as failed
  // (a commit whose answer was lost with the connection).
  enum class Outcome { kStored, kFailed, kStoredButFailed };
  // Completes the oldest held append (failing it when `fail`).
  void completeOne(bool fail = false) { complete(fail ? Outcome::kFailed : Outcome::kStored); }
  void complete(Outcome o) {
    std::function<void(Outcome)> f;
    {
      std::lock_guard lock(mu_);
      ASSERT_FALSE(held_.empty());
      f = std::move(held_.front());
      held_.pop_front();
    }
    f(o);
  }

 private:
  store::Store& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void(Outcome)>> held_;
};

// An engine over a GatedStore (itself over `inner`), subscribed by `rec`, with one open
// conversation of consumer c1 in `skill`; publishAsync publishes a ContentEvent of its and
// returns the result's future. Members go in reverse order: the subscription, the engine, then
// the store.
struct GatedEngine {
  GatedEngine(store::Store& inner, const testing::FakeClock& clock, Recorder& rec,
              const SkillId& skill, int threads)
      : gated(inner), consumer(Actor::ofConsumer(kAcc, ConsumerId("c1"))) {
    Options o;
    o.tick_interval_ms = 0;
    o.threads = threads;
    engine = makeConversationService(gated, clock, o);
    sub = engine->subscribe(rec);
    ConversationRequest req;
    req.account = kAcc;
    req.consumer = consumer.consumer;
    req.skill = skill;
    conv = call<Conversation>([&](auto cb) { engine->requestConversation(req, cb); });
  }
  std::future<Result<Published>> publishAsync(const std::string& text) {
    auto p = std::make_shared<std::promise<Result<Published>>>();
    PublishRequest pr;
    pr.actor = consumer;
    pr.conversation = conv->id;
    pr.event_json = R"({"type":"ContentEvent","message":")" + text + R"("})";
    engine->publish(pr, [p](Result<Published> r) { p->set_value(std::move(r)); });
    return p->get_future();
  }

  GatedStore gated;
  Actor consumer;
  std::unique_ptr<ConversationService> engine;
  Subscription sub;
  Result<Conversation> conv;
};

TEST_F(EngineTest, OperationsWaitForTheConversationsAppendInFlight) {
  stop();
  GatedEngine g(*store_, clock_, rec_, sales_, /*threads=*/4);
  ASSERT_TRUE(g.conv) << g.conv.error().message;
  // The first append fails: the sequence is not consumed and nothing is announced.
  auto failed = g.publishAsync("lost");
  ASSERT_TRUE(g.gated.waitHeld(1));
  g.gated.completeOne(/*fail=*/true);
  ASSERT_EQ(failed.wait_for(5s), std::future_status::ready);
  auto f = failed.get();
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code, ErrorCode::kUnavailable);

  // A publish in flight holds the close behind it: the close neither completes nor is
  // announced before the message is.
  auto first = g.publishAsync("one");
  ASSERT_TRUE(g.gated.waitHeld(1));
  auto closed = std::make_shared<std::promise<Result<Conversation>>>();
  auto closed_f = closed->get_future();
  g.engine->updateConversation(
      g.consumer, g.conv->id, {CloseField{}},
      [closed](Result<Conversation> r) { closed->set_value(std::move(r)); });
  EXPECT_EQ(closed_f.wait_for(200ms), std::future_status::timeout);
  EXPECT_EQ(first.wait_for(0ms), std::future_status::timeout);
  g.gated.completeOne();
  ASSERT_EQ(first.wait_for(5s), std::future_status::ready);
  auto one = first.get();
  ASSERT_TRUE(one) << one.error().message;
  EXPECT_EQ(one->sequence, 0);  // the failed append's sequence was given back
  ASSERT_EQ(closed_f.wait_for(5s), std::future_status::ready);
  ASSERT_TRUE(closed_f.get());
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(
        rec_.changes_, [](const ConversationChanged& e) { return e.kind == ChangeKind::kClosed; });
  }));
  std::vector<std::string> order;
  for (const auto& e : rec_.log())
    if (e.conversation == g.conv->id.str() && (e.type == "MESSAGE" || e.type == "CHANGED:CLOSED"))
      order.push_back(e.type);
  EXPECT_EQ(order, (std::vector<std::string>{"MESSAGE", "CHANGED:CLOSED"}));
  auto stored = store_->conversations().listMessages(g.conv->id, 0, 10);
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_NE((*stored)[0].event_json.find("one"), std::string::npos);
}

// The store reports an append as failed (Unavailable) although it stored it — PostgreSQL's
// answer to COMMIT lost with the connection, when the store could not learn the outcome. The
// conversation must not take the sequence as free: its next operation reads the store, adopts
// the stored message and announces it (so the bot and the other participants get it), and
// goes on after it. Without that, every later publish conflicts ("message 0 already exists").
TEST_F(EngineTest, AnAppendStoredDespiteAReportedFailureIsAdoptedByTheNextOperation) {
  stop();
  GatedEngine g(*store_, clock_, rec_, sales_, /*threads=*/2);
  ASSERT_TRUE(g.conv) << g.conv.error().message;

  auto lost = g.publishAsync("stored anyway");
  ASSERT_TRUE(g.gated.waitHeld(1));
  g.gated.complete(GatedStore::Outcome::kStoredButFailed);
  ASSERT_EQ(lost.wait_for(5s), std::future_status::ready);
  auto l = lost.get();
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code, ErrorCode::kUnavailable);

  auto next = g.publishAsync("next");
  ASSERT_TRUE(g.gated.waitHeld(1));
  g.gated.completeOne();
  ASSERT_EQ(next.wait_for(5s), std::future_status::ready);
  auto n = next.get();
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(n->sequence, 1);

  // Both announced, in sequence order, the adopted one with its event.
  ASSERT_TRUE(rec_.waitFor([&] { return rec_.messages_.size() >= 2; }));
  std::vector<std::pair<std::int64_t, std::string>> seen;
  for (const auto& m : rec_.messages_)
    if (m.message.conversation == g.conv->id)
      seen.emplace_back(m.message.sequence, m.event ? json::getString(*m.event, "message") : "");
  EXPECT_EQ(seen,
            (std::vector<std::pair<std::int64_t, std::string>>{{0, "stored anyway"}, {1, "next"}}));
  auto stored = store_->conversations().listMessages(g.conv->id, 0, 10);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Recovery

TEST_F(EngineTest, RecoveryRebuildsConversationsQueuesAndAssignments) {
  Actor agent = createAgent("a1", {sales_}, /*max_open=*/1);
  auto waiting = request("c-wait", sales_, TtrType::kCustom, 1000);
  ASSERT_TRUE(waiting);
  auto assigned_c = request("c-assigned", sales_, TtrType::kUrgent);
  ASSERT_TRUE(assigned_c);
  // The urgent one is at the head and goes to the agent.
  assign(agent, *assigned_c);
  Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("c-assigned"));
  ASSERT_TRUE(publish(consumer, assigned_c->id, "one"));
  ASSERT_TRUE(publish(agent, assigned_c->id, "two"));
  ASSERT_TRUE(publish(consumer, assigned_c->id, "three"));
  auto closed = request("c-closed");
  ASSERT_TRUE(closed);
  ASSERT_TRUE(update(Actor::ofConsumer(kAcc, ConsumerId("c-closed")), closed->id, {CloseField{}}));

  restart();
  ASSERT_TRUE(engine_->recover());
  auto again = engine_->recover();
  ASSERT_FALSE(again);

  // Queue with the stored due time.
  auto qs = engine_->queues(kAcc, sales_);
  ASSERT_EQ(qs.size(), 1u);
  ASSERT_EQ(qs[0].entries.size(), 1u);
  EXPECT_EQ(qs[0].entries[0].conversation, waiting->id);
  EXPECT_EQ(qs[0].entries[0].due_at, waiting->ttr_due_at);
  EXPECT_EQ(qs[0].entries[0].queued_at, waiting->start_ts);
  // Agents are OFFLINE after a restart, in memory and in the store, but keep assignments.
  auto infos = engine_->agents(kAcc);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].availability, Availability::kOffline);
  EXPECT_EQ(infos[0].open_assigned, 1);
  auto states = store_->accounts().listAgentStates(kAcc);
  ASSERT_TRUE(states);
  for (const auto& s : *states) EXPECT_EQ(s.availability, Availability::kOffline);

  // Sequences continue; ownership survived.
  auto p = publish(agent, assigned_c->id, "four");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->sequence, 3);
  // One open conversation per consumer still holds; the closed one stays closed.
  auto dup = request("c-wait");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, ErrorCode::kConflict);
  auto late = publish(Actor::ofConsumer(kAcc, ConsumerId("c-closed")), closed->id, "late");
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);
  EXPECT_TRUE(request("c-closed"));

  // The agent comes back at capacity: no ring; after closing its conversation it gets the
  // waiting one.
  ASSERT_TRUE(setState(agent, Availability::kOnline));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, agent.user).empty());
  ASSERT_TRUE(update(agent, assigned_c->id, {CloseField{}}));
  ASSERT_TRUE(rec_.waitRing(waiting->id.str(), agent.user.str()));

  // TTR deadlines survive too.
  clock_.advanceMs(1'000'001);
  engine_->tick();
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(
        rec_.overdue_, [&](const ConversationOverdue& o) { return o.conversation == waiting->id; });
  }));
}

TEST_F(EngineTest, RecoveryRestoresSuggestion) {
  Actor a1 = createAgent("a1", {sales_});
  Actor target = createAgent("target", {});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  assign(a1, *c);
  ASSERT_TRUE(update(a1, c->id, transferToAgent(target.user, sales_)));
  restart();
  ASSERT_TRUE(engine_->recover());
  ASSERT_TRUE(setState(a1, Availability::kOnline));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, a1.user).empty());
  ASSERT_TRUE(setState(target, Availability::kOnline));
  auto r = rec_.waitRing(c->id.str(), target.user.str());
  ASSERT_TRUE(r);
  auto taken = accept(target, r->ring_id);
  ASSERT_TRUE(taken);
  EXPECT_EQ(assignedAgent(*taken), target.user.str());
}

// ---------------------------------------------------------------------------------------------
// Subscriptions and agent state

TEST_F(EngineTest, AgentStateIsStoredAndAnnounced) {
  Actor a = createAgent("a1", {sales_});
  auto s = setState(a, Availability::kBackSoon);
  ASSERT_TRUE(s);
  auto states = store_->accounts().listAgentStates(kAcc);
  ASSERT_TRUE(states);
  ASSERT_EQ(states->size(), 1u);
  EXPECT_EQ((*states)[0].availability, Availability::kBackSoon);
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(rec_.log_,
                               [](const Recorder::Entry& e) { return e.type == "AGENT_STATE"; });
  }));
  auto missing = call<store::AgentState>(
      [&](auto cb) { engine_->setAgentState(kAcc, UserId("777"), Availability::kOnline, cb); });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
}

TEST_F(EngineTest, ResetSubscriptionStopsDelivery) {
  Recorder other;
  auto sub = engine_->subscribe(other);
  ASSERT_TRUE(request("c1"));
  ASSERT_TRUE(other.waitFor([&] { return other.changes_.size() == 1; }));
  sub.reset();
  ASSERT_TRUE(request("c2"));
  ASSERT_TRUE(rec_.waitFor([&] { return rec_.changes_.size() == 2; }));
  std::this_thread::sleep_for(20ms);
  std::lock_guard lock(other.mu_);
  EXPECT_EQ(other.changes_.size(), 1u);
}

}  // namespace

// The takeover of a bot's conversation by an AGENT-only user, step by step: joining as MANAGER
// or READER, adding somebody else, removing the assigned agent and closing are refused and name
// the role; an AGENT_MANAGER may; roles are read as stored now, so a revoked role stops working
// at once.
TEST_F(EngineTest, ParticipantChangesFollowThePolicy) {
  Actor bot = createAgent("bot", {sales_}, 10, store::UserType::kBot);
  Actor agent = createAgent("a1", {sales_});
  Actor manager = createManager("m1");
  Actor other = createAgent("o1", {});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  assign(bot, *c);
  auto refused = [&](const Actor& a, std::vector<FieldChange> changes, const std::string& role) {
    auto r = update(a, c->id, std::move(changes));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::kForbidden);
    EXPECT_NE(r.error().message.find(role), std::string::npos) << r.error().message;
  };
  refused(agent, {AddParticipantField{store::ParticipantRole::kManager, std::nullopt}},
          "AGENT_MANAGER");
  refused(agent, {AddParticipantField{store::ParticipantRole::kReader, std::nullopt}},
          "AGENT_MANAGER");
  refused(agent, {AddParticipantField{store::ParticipantRole::kManager, agent.user}},
          "AGENT_MANAGER");
  refused(agent, {AddParticipantField{store::ParticipantRole::kReader, other.user}}, "");
  refused(agent, {RemoveParticipantField{store::ParticipantRole::kAssignedAgent, agent.user}}, "");
  refused(agent, {CloseField{}}, "");
  EXPECT_FALSE(publish(agent, c->id, "card number, please"));
  // The assigned bot may not add somebody else either (that needs AGENT_MANAGER).
  refused(bot, {AddParticipantField{store::ParticipantRole::kReader, other.user}}, "AGENT_MANAGER");
  auto unchanged = get(c->id);
  ASSERT_TRUE(unchanged);
  EXPECT_EQ(unchanged->participants.size(), 2u);
  EXPECT_EQ(assignedAgent(*unchanged), bot.user.str());

  // An AGENT_MANAGER joins, adds a reader, removes the reader, and may remove the bot.
  ASSERT_TRUE(update(manager, c->id,
                     {AddParticipantField{store::ParticipantRole::kManager, std::nullopt}}));
  ASSERT_TRUE(
      update(manager, c->id, {AddParticipantField{store::ParticipantRole::kReader, other.user}}));
  // The reader may leave by itself, though it is no manager.
  ASSERT_TRUE(update(other, c->id,
                     {RemoveParticipantField{store::ParticipantRole::kReader, std::nullopt}}));
  // Roles are read at each change: without AGENT_MANAGER the manager may no longer remove the bot.
  auto u = store_->accounts().getUser(kAcc, manager.user);
  ASSERT_TRUE(u);
  u->roles = {store::Role::kAgent};
  ASSERT_TRUE(store_->accounts().updateUser(*u));
  refused(manager,
          {RemoveParticipantField{store::ParticipantRole::kAssignedAgent, manager.user},
           SkillField{support_}},
          "AGENT_MANAGER");
  u->roles = {store::Role::kAgentManager};
  ASSERT_TRUE(store_->accounts().updateUser(*u));
  auto moved = update(manager, c->id,
                      {RemoveParticipantField{store::ParticipantRole::kAssignedAgent, manager.user},
                       SkillField{support_}});
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_FALSE(assignedAgent(*moved).has_value());
  // A user that no longer exists may change nothing that needs a role.
  ASSERT_TRUE(store_->accounts().deleteUser(kAcc, manager.user));
  refused(manager, {CloseField{}}, "no longer exists");
}

// ---------------------------------------------------------------------------------------------
// Cluster mode: conversation leases

namespace {

// Records OwnershipChanged events.
class OwnershipRecorder final : public ConversationListener {
 public:
  void onOwnershipChanged(const OwnershipChanged& e) override {
    std::lock_guard lock(mu_);
    events_.push_back((e.owned ? "TAKEN:" : "LOST:") + e.conversation.id.str());
    cv_.notify_all();
  }
  bool waitFor(const std::string& event) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return std::ranges::count(events_, event) > 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> events_;
};

Options clusterNode(const std::string& node) {
  Options o;
  o.node = node;
  o.lease_ms = 3000;
  o.tick_interval_ms = 0;
  o.threads = 2;
  return o;
}

// A node starting on a shared store must not write OFFLINE for the agents whose sessions are on
// the other live nodes (a node alone resets them all:
// RecoveryRebuildsConversationsQueuesAndAssignments).
TEST_F(EngineTest, ANodeStartingBesideAnotherLeavesItsAgentsStates) {
  restart(clusterNode("node-a"));
  Actor agent = createAgent("on-a", {sales_});
  ASSERT_TRUE(setState(agent, Availability::kOnline));
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  ASSERT_TRUE(b->recover());
  auto states = store_->accounts().listAgentStates(kAcc);
  ASSERT_TRUE(states);
  ASSERT_EQ(states->size(), 1u);
  EXPECT_EQ((*states)[0].availability, Availability::kOnline);
}

// The conversations of a RenewalFaultStore: the inner store's, except that saveConversation
// waits while saves are held (holdSaves .. releaseSaves) and listOpenConversations fails while
// `list_open_down` is set.
class ConversationFaults final : public store::ConversationStore {
 public:
  explicit ConversationFaults(store::ConversationStore& inner) : inner_(inner) {}
  std::atomic<bool> list_open_down{false};

  void holdSaves() {
    std::lock_guard lock(mu_);
    held_ = true;
    waiting_ = 0;
  }
  // Waits until a save is waiting on the hold; false after 5 s.
  bool waitForHeldSave() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return waiting_ > 0; });
  }
  void releaseSaves() {
    std::lock_guard lock(mu_);
    held_ = false;
    cv_.notify_all();
  }

  Status saveConversation(const Conversation& c) override {
    {
      std::unique_lock lock(mu_);
      ++waiting_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !held_; });
    }
    return inner_.saveConversation(c);
  }
  Status appendMessage(const Conversation& c, const store::Message& m) override {
    return inner_.appendMessage(c, m);
  }
  void appendMessageAsync(std::shared_ptr<const Conversation> c,
                          std::shared_ptr<const store::Message> m,
                          std::function<void(Status)> done) override {
    inner_.appendMessageAsync(std::move(c), std::move(m), std::move(done));
  }
  void saveConversationAsync(Conversation c, std::function<void(Status)> done) override {
    inner_.saveConversationAsync(std::move(c), std::move(done));
  }
  Result<Conversation> getConversation(const AccountId& acc, const ConversationId& id) override {
    return inner_.getConversation(acc, id);
  }
  Result<std::vector<Conversation>> listConversations(const AccountId& acc,
                                                      const store::ConversationQuery& q) override {
    return inner_.listConversations(acc, q);
  }
  Result<std::vector<Conversation>> listOpenConversations() override {
    if (list_open_down)
      return std::unexpected(
          Error{ErrorCode::kUnavailable, "test store: unavailable (open conversations)"});
    return inner_.listOpenConversations();
  }
  Result<std::vector<store::Message>> listMessages(const ConversationId& id, std::int64_t from_seq,
                                                   int limit) override {
    return inner_.listMessages(id, from_seq, limit);
  }
  Result<std::optional<store::Message>> findMessageByKey(const ConversationId& id,
                                                         const std::string& originator_id,
                                                         const std::string& key) override {
    return inner_.findMessageByKey(id, originator_id, key);
  }

 private:
  store::ConversationStore& inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  int waiting_ = 0;
};

// A Store over another whose lease renewals fail while `renewals_down` is set (a node cut from
// the store for one renewal), with the conversation faults of ConversationFaults (`convs`);
// everything else, the other lease calls included, is the inner store's.
class RenewalFaultStore final : public store::Store, public store::ClusterStore {
 public:
  explicit RenewalFaultStore(store::Store& inner) : inner_(inner), convs(inner.conversations()) {}
  std::atomic<bool> renewals_down{false};

  store::AccountStore& accounts() override { return inner_.accounts(); }
  store::ConversationStore& conversations() override { return convs; }
  store::FunctionStore& functions() override { return inner_.functions(); }
  store::BotStore& bots() override { return inner_.bots(); }
  store::OAuthStore& oauth() override { return inner_.oauth(); }
  store::ScheduleStore& schedules() override { return inner_.schedules(); }
  int schemaVersion() const override { return inner_.schemaVersion(); }
  store::ClusterStore* cluster() override { return this; }

  Result<store::Lease> acquireLease(const ConversationId& id, const std::string& node,
                                    TimeMs ttl_ms) override {
    return leases().acquireLease(id, node, ttl_ms);
  }
  Result<store::Lease> renewLease(const ConversationId& id, const std::string& node,
                                  std::int64_t epoch, TimeMs ttl_ms) override {
    return leases().renewLease(id, node, epoch, ttl_ms);
  }
  Status releaseLease(const ConversationId& id, const std::string& node,
                      std::int64_t epoch) override {
    return leases().releaseLease(id, node, epoch);
  }
  Result<store::Lease> getLease(const ConversationId& id) override { return leases().getLease(id); }
  Result<std::vector<store::Lease>> renewLeases(const std::string& node,
                                                const std::vector<store::Lease>& held,
                                                TimeMs ttl_ms) override {
    if (renewals_down)
      return std::unexpected(
          Error{ErrorCode::kUnavailable, "test store: unavailable (lease renewal refused)"});
    return leases().renewLeases(node, held, ttl_ms);
  }
  Result<std::vector<store::Lease>> claimLeases(const std::string& node, TimeMs ttl_ms,
                                                int limit) override {
    return leases().claimLeases(node, ttl_ms, limit);
  }
  Result<std::string> putMaterialIfAbsent(const std::string& key,
                                          const std::string& value) override {
    return leases().putMaterialIfAbsent(key, value);
  }
  Result<std::string> getMaterial(const std::string& key) override {
    return leases().getMaterial(key);
  }

 private:
  store::ClusterStore& leases() { return *inner_.cluster(); }
  store::Store& inner_;

 public:
  ConversationFaults convs;
};

// Holds a conversation's strand busy (an operation in progress) until release().
class StrandBlocker {
 public:
  explicit StrandBlocker(ConversationStrand strand) : strand_(std::move(strand)) {
    std::promise<void> running;
    auto started = running.get_future();
    boost::asio::post(strand_, [this, running = std::move(running)]() mutable {
      running.set_value();
      gate_.wait();
    });
    started.wait();
  }
  StrandBlocker(const StrandBlocker&) = delete;
  StrandBlocker& operator=(const StrandBlocker&) = delete;
  ~StrandBlocker() { release(); }
  // Lets the strand go on and waits until what was queued on it meanwhile has run.
  void release() {
    if (released_) return;
    released_ = true;
    open_.set_value();
    std::promise<void> drained;
    auto done = drained.get_future();
    boost::asio::post(strand_, [&drained] { drained.set_value(); });
    done.wait();
  }

 private:
  ConversationStrand strand_;
  std::promise<void> open_;
  std::shared_future<void> gate_ = open_.get_future().share();
  bool released_ = false;
};

TEST_F(EngineTest, ANodeAloneTakesNoLeases) {
  auto c = request("consumer-solo");
  ASSERT_TRUE(c);
  ASSERT_TRUE(publish(Actor::ofConsumer(kAcc, ConsumerId("consumer-solo")), c->id, "hi"));
  EXPECT_EQ(store_->cluster()->getLease(c->id).error().code, ErrorCode::kNotFound);
  maintainLeases(*engine_);  // nothing to do on a node alone
  EXPECT_EQ(store_->cluster()->getLease(c->id).error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(publish(Actor::ofConsumer(kAcc, ConsumerId("consumer-solo")), c->id, "again"));
}

TEST_F(EngineTest, ALeaseGivesAConversationOneOwnerAndATakeoverFencesTheOldOne) {
  restart(clusterNode("node-a"));
  OwnershipRecorder seen_a;
  auto sub_a = engine_->subscribe(seen_a);
  const Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("consumer-1"));
  auto c = request("consumer-1");
  ASSERT_TRUE(c);
  auto lease = store_->cluster()->getLease(c->id);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->node, "node-a");
  EXPECT_EQ(lease->epoch, 1);
  ASSERT_TRUE(publish(consumer, c->id, "one"));

  // Node b starts while a runs: it loads nothing a holds and cannot drive it.
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  OwnershipRecorder seen_b;
  auto sub_b = b->subscribe(seen_b);
  ASSERT_TRUE(b->recover());
  auto on_b = publishOn(*b, consumer, c->id, "via b");
  ASSERT_FALSE(on_b);
  EXPECT_EQ(on_b.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(on_b.error().message.find("owned by another node"), std::string::npos);

  // a renews in one call: b cannot take it after the first lease would have expired.
  clock_.advanceMs(2000);
  maintainLeases(*engine_);
  clock_.advanceMs(2000);
  maintainLeases(*b);
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-a");
  ASSERT_TRUE(publish(consumer, c->id, "two"));

  // a stops renewing (paused, cut off): once its lease expired, b takes the conversation with
  // the next epoch, loads it from the store and goes on with the next sequence.
  clock_.advanceMs(3001);
  maintainLeases(*b);
  ASSERT_TRUE(seen_b.waitFor("TAKEN:" + c->id.str()));
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-b");
  EXPECT_EQ(store_->cluster()->getLease(c->id)->epoch, 2);
  auto three = publishOn(*b, consumer, c->id, "three");
  ASSERT_TRUE(three) << three.error().message;
  EXPECT_EQ(three->sequence, 2);

  // a still believes it owns the conversation: the store refuses its stale epoch, and nothing
  // it tries lands.
  auto stale = publish(consumer, c->id, "stale");
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, ErrorCode::kUnavailable);
  auto stale_close = update(consumer, c->id, {CloseField{}});
  ASSERT_FALSE(stale_close);
  EXPECT_EQ(stale_close.error().code, ErrorCode::kUnavailable);
  // Its next renewal finds the lease taken: it drops the conversation.
  maintainLeases(*engine_);
  ASSERT_TRUE(seen_a.waitFor("LOST:" + c->id.str()));
  auto after = publish(consumer, c->id, "after");
  ASSERT_FALSE(after);
  EXPECT_NE(after.error().message.find("owned by another node"), std::string::npos);
  // a does not claim it back while b renews.
  clock_.advanceMs(1000);
  maintainLeases(*b);
  maintainLeases(*engine_);
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-b");

  EXPECT_EQ(storedTexts(c->id), (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(store_->conversations().getConversation(kAcc, c->id)->state,
            store::ConversationState::kOpen);

  // The owner closes it; nobody renews or claims its lease afterwards.
  ASSERT_TRUE(call<Conversation>(
      [&](auto cb) { b->updateConversation(consumer, c->id, {CloseField{}}, cb); }));
  clock_.advanceMs(10'000);
  maintainLeases(*engine_);
  maintainLeases(*b);
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-b");
  EXPECT_EQ(store_->cluster()->getLease(c->id)->epoch, 2);
  sub_b.reset();
  b.reset();
}

// A node that may not hold leases (cut off from the bus the other nodes have: may_hold_leases
// says no) gives its conversations up at its next lease round: dropped and released, so another
// node claims them at once (no wait for the expiry), and it creates none meanwhile. Once it may
// again it claims as usual (nothing another node holds) and creates again.
TEST_F(EngineTest, ANodeThatMayNotHoldLeasesGivesItsConversationsUpAndComesBack) {
  auto may = std::make_shared<std::atomic<bool>>(true);
  Options oa = clusterNode("node-a");
  oa.may_hold_leases = [may] { return may->load(); };
  restart(oa);
  OwnershipRecorder seen_a;
  auto sub_a = engine_->subscribe(seen_a);
  const Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("consumer-cut"));
  auto c = request("consumer-cut");
  ASSERT_TRUE(c);
  ASSERT_TRUE(publish(consumer, c->id, "one"));
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  OwnershipRecorder seen_b;
  auto sub_b = b->subscribe(seen_b);
  ASSERT_TRUE(b->recover());
  maintainLeases(*engine_);  // may: renewed as usual
  maintainLeases(*b);
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-a");

  may->store(false);
  maintainLeases(*engine_);
  ASSERT_TRUE(seen_a.waitFor("LOST:" + c->id.str()));
  EXPECT_FALSE(holdsConversation(*engine_, c->id));
  // Released: b claims it at its next round, with the clock where it was.
  maintainLeases(*b);
  ASSERT_TRUE(seen_b.waitFor("TAKEN:" + c->id.str()));
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-b");
  EXPECT_EQ(store_->cluster()->getLease(c->id)->epoch, 2);
  auto two = publishOn(*b, consumer, c->id, "two");
  ASSERT_TRUE(two) << two.error().message;
  EXPECT_EQ(two->sequence, 1);
  // a creates nothing while it may not hold leases, and claims nothing (a's next rounds).
  auto refused = request("consumer-other");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(refused.error().message.find("cut off from the cluster's bus"), std::string::npos)
      << refused.error().message;
  clock_.advanceMs(10'000);  // b's lease expired too: a, not allowed, leaves it to b
  maintainLeases(*engine_);
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-b");
  maintainLeases(*b);

  // Allowed again: a claims what nobody holds (nothing here) and creates again.
  may->store(true);
  maintainLeases(*engine_);
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-b");
  EXPECT_FALSE(holdsConversation(*engine_, c->id));
  auto again = request("consumer-other");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(store_->cluster()->getLease(again->id)->node, "node-a");
  sub_b.reset();
  b.reset();
}

// The consumer connected to two nodes: each node's consumers_ sees only its own conversations,
// so the store's rule refuses the second create, and the node answers as a node alone does,
// naming the open conversation. The refused create leaves no lease held.
TEST_F(EngineTest, OneOpenConversationPerConsumerAcrossNodes) {
  restart(clusterNode("node-a"));
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  ASSERT_TRUE(b->recover());
  auto on_a = request("consumer-1");
  ASSERT_TRUE(on_a) << on_a.error().message;
  ConversationRequest req;
  req.account = kAcc;
  req.consumer = ConsumerId("consumer-1");
  auto on_b = call<Conversation>([&](auto cb) { b->requestConversation(req, cb); });
  ASSERT_FALSE(on_b);
  EXPECT_EQ(on_b.error().code, ErrorCode::kConflict);
  EXPECT_EQ(on_b.error().message, "consumer already has an open conversation " + on_a->id.str());
  store::ConversationQuery q;
  q.consumer = ConsumerId("consumer-1");
  auto stored = store_->conversations().listConversations(kAcc, q);
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->front().id, on_a->id);

  // Closed on a, the consumer may open its next one on b.
  ASSERT_TRUE(update(Actor::ofConsumer(kAcc, ConsumerId("consumer-1")), on_a->id, {CloseField{}}));
  auto next = call<Conversation>([&](auto cb) { b->requestConversation(req, cb); });
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_NE(next->id, on_a->id);
  EXPECT_EQ(store_->cluster()->getLease(next->id)->node, "node-b");
  b.reset();
}

TEST_F(EngineTest, ANodeStartingInAClusterLoadsOnlyTheConversationsItLeases) {
  restart(clusterNode("node-a"));
  auto held = request("consumer-held");
  ASSERT_TRUE(held);
  // A conversation stored without a lease (e.g. by a node alone on the same store before).
  store::Conversation orphan = *held;
  orphan.id = ConversationId("orphan-1");
  orphan.consumer = ConsumerId("consumer-orphan");
  orphan.participants = {store::Participant{"consumer-orphan", store::ParticipantRole::kConsumer,
                                            store::ParticipantState::kActive, 1}};
  orphan.fence = {};
  ASSERT_TRUE(store_->conversations().saveConversation(orphan));

  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  ASSERT_TRUE(b->recover());
  EXPECT_EQ(store_->cluster()->getLease(orphan.id)->node, "node-b");
  EXPECT_EQ(store_->cluster()->getLease(held->id)->node, "node-a");
  EXPECT_TRUE(conversationStrand(*b, orphan.id).has_value());
  EXPECT_FALSE(conversationStrand(*b, held->id).has_value());
  EXPECT_FALSE(conversationStrand(*engine_, orphan.id).has_value());
  std::size_t queued = 0;
  for (const auto& s : b->queues(kAcc, std::nullopt)) queued += s.entries.size();
  EXPECT_EQ(queued, 1u);
  b.reset();
}

// Issue 19: a failed renewal drops the conversation (on its strand, after the operation in
// progress), and the same maintenance's claim takes the expired lease back before that drop
// ran. The node must go on driving it with the new epoch, not keep renewing a lease of a
// conversation it no longer holds.
TEST_F(EngineTest, ALeaseTakenBackBeforeItsDropRanKeepsTheConversationDriven) {
  RenewalFaultStore faulty(*store_);
  auto a = makeConversationService(faulty, clock_, clusterNode("node-a"));
  ASSERT_TRUE(a->recover());
  OwnershipRecorder seen;
  auto sub = a->subscribe(seen);
  const Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("consumer-1"));
  ConversationRequest creq;
  creq.account = kAcc;
  creq.consumer = ConsumerId("consumer-1");
  auto c = call<Conversation>([&](auto cb) { a->requestConversation(creq, cb); });
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(store_->cluster()->getLease(c->id)->epoch, 1);
  ASSERT_TRUE(publishOn(*a, consumer, c->id, "one"));

  {
    auto strand = conversationStrand(*a, c->id);
    ASSERT_TRUE(strand);
    StrandBlocker busy(*strand);
    // The renewal fails after the lease expired: the conversation is dropped (queued behind
    // the busy strand) and the claim that follows takes the expired lease back, epoch 2.
    clock_.advanceMs(3001);
    faulty.renewals_down = true;
    maintainLeases(*a);
    faulty.renewals_down = false;
    auto lease = store_->cluster()->getLease(c->id);
    ASSERT_TRUE(lease);
    EXPECT_EQ(lease->node, "node-a");
    EXPECT_EQ(lease->epoch, 2);
    busy.release();
  }

  // Still driven here, with the new epoch.
  EXPECT_TRUE(conversationStrand(*a, c->id).has_value());
  auto two = publishOn(*a, consumer, c->id, "two");
  ASSERT_TRUE(two) << two.error().message;
  EXPECT_EQ(two->sequence, 1);
  auto stored = store_->conversations().getConversation(kAcc, c->id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->next_sequence, 2);  // accepted: it carried epoch 2, the lease's
  // The next renewal keeps the lease at epoch 2, and another node cannot take it.
  clock_.advanceMs(1000);
  maintainLeases(*a);
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  ASSERT_TRUE(b->recover());
  clock_.advanceMs(2500);
  maintainLeases(*b);
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-a");
  EXPECT_EQ(store_->cluster()->getLease(c->id)->epoch, 2);
  b.reset();
  sub.reset();
  a.reset();
}

// Issue 19: a create's lease runs out while its first save is held up (a renewal failed past
// two thirds of the lease meanwhile, which took the lease out of the table; its drop found no
// entry yet). The create must not leave the conversation driven here without a lease the node
// renews: it answers the stored conversation, and the node that claims the expired lease drives
// it (here another node; this one no longer holds it after its next round either).
TEST_F(EngineTest, ACreateWhoseLeaseRanOutWhileItWasStoredIsNotDrivenWithoutALease) {
  RenewalFaultStore faulty(*store_);
  auto a = makeConversationService(faulty, clock_, clusterNode("node-a"));
  ASSERT_TRUE(a->recover());
  ConversationRequest creq;
  creq.account = kAcc;
  creq.consumer = ConsumerId("consumer-slow");
  faulty.convs.holdSaves();
  std::promise<Result<Conversation>> answered;
  auto answer = answered.get_future();
  a->requestConversation(creq,
                         [&answered](Result<Conversation> r) { answered.set_value(std::move(r)); });
  ASSERT_TRUE(faulty.convs.waitForHeldSave());
  // The lease (3000 ms) is within a third of its end and the renewal fails: out of the table.
  clock_.advanceMs(2500);
  faulty.renewals_down = true;
  maintainLeases(*a);
  faulty.renewals_down = false;
  faulty.convs.releaseSaves();
  ASSERT_EQ(answer.wait_for(5s), std::future_status::ready);
  auto c = answer.get();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(store_->conversations().getConversation(kAcc, c->id));  // stored
  EXPECT_FALSE(holdsConversation(*a, c->id));  // not driven without a renewed lease

  // The lease expires; node b claims it and drives it, and a does not hold it.
  clock_.advanceMs(600);
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  ASSERT_TRUE(b->recover());
  EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-b");
  EXPECT_EQ(store_->cluster()->getLease(c->id)->epoch, 2);
  EXPECT_TRUE(holdsConversation(*b, c->id));
  maintainLeases(*a);
  EXPECT_FALSE(holdsConversation(*a, c->id));
  const Actor slow = Actor::ofConsumer(kAcc, ConsumerId("consumer-slow"));
  auto on_a = publishOn(*a, slow, c->id, "one");
  ASSERT_FALSE(on_a);
  EXPECT_NE(on_a.error().message.find("owned by another node"), std::string::npos)
      << on_a.error().message;
  auto on_b = publishOn(*b, slow, c->id, "one");
  ASSERT_TRUE(on_b) << on_b.error().message;
  EXPECT_EQ(on_b->sequence, 0);
  b.reset();
  a.reset();
}

// Issue 19: a claim that took leases and then could not read the open conversations (the store
// failed in between) releases them: nothing drives them here and they are not renewed, so the
// next claim (this node's or another's) takes them at once instead of after their expiry.
TEST_F(EngineTest, ClaimedLeasesThatCouldNotBeLoadedAreReleased) {
  RenewalFaultStore faulty(*store_);
  auto a = makeConversationService(faulty, clock_, clusterNode("node-a"));
  ASSERT_TRUE(a->recover());
  // An open conversation nobody holds (created by a node alone on the same store: no lease).
  auto created = request("consumer-orphan");
  ASSERT_TRUE(created);
  Conversation orphan = *created;
  orphan.id = ConversationId("orphan-claim");
  orphan.consumer = ConsumerId("consumer-orphan-2");
  orphan.participants = {store::Participant{"consumer-orphan-2", store::ParticipantRole::kConsumer,
                                            store::ParticipantState::kActive, 1}};
  orphan.fence = {};
  ASSERT_TRUE(store_->conversations().saveConversation(orphan));

  faulty.convs.list_open_down = true;
  maintainLeases(*a);  // claims it (epoch 1), cannot load it
  faulty.convs.list_open_down = false;
  EXPECT_FALSE(holdsConversation(*a, orphan.id));
  auto lease = store_->cluster()->getLease(orphan.id);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->node, "node-a");
  EXPECT_EQ(lease->epoch, 1);
  EXPECT_LE(lease->expires_at, clock_.nowMs());  // released, not held until its expiry

  // With the clock where it was, the next round takes it again and drives it.
  maintainLeases(*a);
  EXPECT_TRUE(holdsConversation(*a, orphan.id));
  EXPECT_EQ(store_->cluster()->getLease(orphan.id)->node, "node-a");
  EXPECT_EQ(store_->cluster()->getLease(orphan.id)->epoch, 2);
  a.reset();
}

// The same race after another node held the lease in between and wrote: the entry this node
// kept is stale, and the conversation goes on from the store's version (its sequence, the
// other node's message), announced as lost and taken again.
TEST_F(EngineTest, ALeaseTakenBackAfterAnotherNodeDroveItReloadsTheConversation) {
  restart(clusterNode("node-a"));
  OwnershipRecorder seen;
  auto sub = engine_->subscribe(seen);
  const Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("consumer-1"));
  auto c = request("consumer-1");
  ASSERT_TRUE(c);
  ASSERT_TRUE(publish(consumer, c->id, "one"));
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  ASSERT_TRUE(b->recover());
  {
    auto strand = conversationStrand(*engine_, c->id);
    ASSERT_TRUE(strand);
    StrandBlocker busy(*strand);
    // a stops renewing; b takes the conversation (epoch 2) and writes to it.
    clock_.advanceMs(3001);
    maintainLeases(*b);
    auto via_b = publishOn(*b, consumer, c->id, "via b");
    ASSERT_TRUE(via_b) << via_b.error().message;
    EXPECT_EQ(via_b->sequence, 1);
    // b stops renewing in turn; a's renewal finds its epoch taken (drop queued behind the busy
    // strand) and its claim takes the expired lease back, epoch 3.
    clock_.advanceMs(3001);
    maintainLeases(*engine_);
    EXPECT_EQ(store_->cluster()->getLease(c->id)->node, "node-a");
    EXPECT_EQ(store_->cluster()->getLease(c->id)->epoch, 3);
    busy.release();
  }
  ASSERT_TRUE(seen.waitFor("TAKEN:" + c->id.str()));
  EXPECT_TRUE(seen.waitFor("LOST:" + c->id.str()));
  auto three = publish(consumer, c->id, "three");
  ASSERT_TRUE(three) << three.error().message;
  EXPECT_EQ(three->sequence, 2);
  EXPECT_EQ(storedTexts(c->id), (std::vector<std::string>{"one", "via b", "three"}));
  std::size_t queued = 0;
  for (const auto& q : engine_->queues(kAcc, std::nullopt)) queued += q.entries.size();
  EXPECT_EQ(queued, 1u);
  b.reset();
}

// ---------------------------------------------------------------------------------------------
// Cluster-wide routing: agents other nodes announce, rings offered through them

// Records what the engine sends to other nodes; answers offers with `answer`.
class FakeRemoteRings final : public RemoteRings {
 public:
  struct Sent {
    std::string node;
    Ring ring;
    std::optional<RingEndReason> ended;  // nullopt: an offer
  };
  void offer(const std::string& node, const Ring& ring, std::function<void(Status)> done) override {
    Status answer;
    {
      std::lock_guard lock(mu_);
      sent_.push_back({node, ring, std::nullopt});
      answer = answer_;
      if (refusing_.contains(node))
        answer = std::unexpected(Error{ErrorCode::kNotFound, "no session on " + node});
      cv_.notify_all();
    }
    done(answer);
  }
  // `node` answers every offer NotFound (the agent has no session there).
  void refuseAt(const std::string& node) {
    std::lock_guard lock(mu_);
    refusing_.insert(node);
  }
  // The first offer of `conv` to `node` (waits for it).
  std::optional<Sent> waitOfferAt(const std::string& node, const ConversationId& conv) {
    std::unique_lock lock(mu_);
    std::optional<Sent> out;
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& x : sent_)
        if (!x.ended && x.node == node && x.ring.conversation == conv) {
          out = x;
          return true;
        }
      return false;
    });
    return out;
  }
  // The first end of `ring_id` told to `node` (waits for it).
  std::optional<Sent> waitEndAt(const std::string& node, const std::string& ring_id) {
    std::unique_lock lock(mu_);
    std::optional<Sent> out;
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& x : sent_)
        if (x.ended && x.node == node && x.ring.ring_id == ring_id) {
          out = x;
          return true;
        }
      return false;
    });
    return out;
  }
  // How many ends of `ring_id` were told to `node` so far.
  int endsAt(const std::string& node, const std::string& ring_id) {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::ranges::count_if(sent_, [&](const Sent& x) {
      return x.ended && x.node == node && x.ring.ring_id == ring_id;
    }));
  }
  void ended(const std::string& node, const Ring& ring, RingEndReason reason) override {
    std::lock_guard lock(mu_);
    sent_.push_back({node, ring, reason});
    cv_.notify_all();
  }
  void answerWith(Status s) {
    std::lock_guard lock(mu_);
    answer_ = std::move(s);
  }
  // The `nth` (from 0) offer of `conv` (waits for it).
  std::optional<Sent> waitOffer(const ConversationId& conv, int nth = 0) {
    std::unique_lock lock(mu_);
    std::optional<Sent> out;
    cv_.wait_for(lock, 5s, [&] {
      int seen = 0;
      for (const auto& x : sent_)
        if (!x.ended && x.ring.conversation == conv && seen++ == nth) {
          out = x;
          return true;
        }
      return false;
    });
    return out;
  }
  std::optional<Sent> waitEnd(const std::string& ring_id) {
    std::unique_lock lock(mu_);
    std::optional<Sent> out;
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& x : sent_)
        if (x.ended && x.ring.ring_id == ring_id) {
          out = x;
          return true;
        }
      return false;
    });
    return out;
  }
  int offers() {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::ranges::count_if(sent_, [](const Sent& x) { return !x.ended; }));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Sent> sent_;
  Status answer_;
  std::set<std::string> refusing_;
};

AnnouncedAgent announced(const Actor& a, Availability av, std::vector<SkillId> skills,
                         int max_open = 10, int load = 0) {
  AnnouncedAgent x;
  x.account = a.account;
  x.user = a.user;
  x.availability = av;
  x.skills = std::move(skills);
  x.max_open_conversations = max_open;
  x.load = load;
  return x;
}

std::vector<UserId> ringing(ConversationService& engine, const SkillId& skill) {
  std::vector<UserId> out;
  for (const auto& q : engine.queues(kAcc, skill))
    for (const auto& e : q.entries) out.insert(out.end(), e.ringing.begin(), e.ringing.end());
  return out;
}

// Whether `pred()` holds within 5 s (for effects that run on the engine's threads).
template <class P>
bool eventually(P pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

TEST_F(EngineTest, AConversationIsOfferedToAnAgentWhoseSessionIsOnAnotherNode) {
  auto remote = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote);
  Actor agent = createAgent("far", {sales_}, /*max_open=*/2);
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  EXPECT_EQ(remote->offers(), 0);

  // Node b announces the agent ONLINE on sales: the ring goes to node b, not to this node's
  // listeners (no session of the agent here).
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_}, 2)},
                    3000);
  auto offer = remote->waitOffer(c->id);
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->node, "node-b");
  EXPECT_EQ(offer->ring.user, agent.user);
  EXPECT_EQ(offer->ring.state, RingState::kWaiting);
  EXPECT_EQ(rec_.ringsOffered(c->id.str(), agent.user.str()), 0);
  EXPECT_EQ(ringing(*engine_, sales_), std::vector<UserId>{agent.user});

  // The periodic repeat of the same announcement rings nobody again.
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_}, 2)},
                    3000);
  EXPECT_EQ(remote->offers(), 1);

  // The agent's accept (sent back by node b) assigns it here; node b hears the ring ended.
  auto accepted = accept(agent, offer->ring.ring_id);
  ASSERT_TRUE(accepted) << accepted.error().message;
  EXPECT_EQ(assignedAgent(*accepted), agent.user.str());
  auto end = remote->waitEnd(offer->ring.ring_id);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->node, "node-b");
  EXPECT_EQ(*end->ended, RingEndReason::kAccepted);
  EXPECT_EQ(end->ring.state, RingState::kAccepted);

  // This node announces its share of the agent's load (no session here: OFFLINE).
  auto mine = localAgents(*engine_);
  auto me =
      std::ranges::find_if(mine, [&](const AnnouncedAgent& x) { return x.user == agent.user; });
  ASSERT_NE(me, mine.end());
  EXPECT_EQ(me->availability, Availability::kOffline);
  EXPECT_EQ(me->load, 1);
}

TEST_F(EngineTest, ADeadNodesRingsEndAndItsConversationsAreOfferedAgain) {
  auto remote = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote);
  Actor agent = createAgent("far", {sales_});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  auto first = remote->waitOffer(c->id);
  ASSERT_TRUE(first);

  // Node b goes silent: within its 3 s the ring stays; after them it ends and the agent is
  // forgotten, the conversation waits with nobody ringing.
  clock_.advanceMs(2999);
  engine_->tick();
  EXPECT_EQ(ringing(*engine_, sales_), std::vector<UserId>{agent.user});
  clock_.advanceMs(2);
  engine_->tick();
  EXPECT_TRUE(ringing(*engine_, sales_).empty());
  EXPECT_EQ(queueOrder(sales_), std::vector<ConversationId>{c->id});
  auto late = accept(agent, first->ring.ring_id);
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, ErrorCode::kConflict);

  // The agent's session comes back on node c: the conversation is offered there.
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  auto second = remote->waitOffer(c->id, 1);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->node, "node-c");
  EXPECT_NE(second->ring.ring_id, first->ring.ring_id);
}

TEST_F(EngineTest, AFailedRemoteOfferEndsTheRingUntilTheNodeAnnouncesTheAgentAgain) {
  auto remote = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote);
  remote->answerWith(std::unexpected(Error{ErrorCode::kUnavailable, "no responders"}));
  Actor agent = createAgent("far", {sales_});
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  ASSERT_TRUE(remote->waitOffer(c->id));
  // The ring ends; not rung again through node b until it announces the agent again.
  EXPECT_TRUE(eventually([&] { return ringing(*engine_, sales_).empty(); }));
  EXPECT_EQ(remote->offers(), 1);
  remote->answerWith({});
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  ASSERT_TRUE(remote->waitOffer(c->id, 1));
  EXPECT_EQ(ringing(*engine_, sales_), std::vector<UserId>{agent.user});
}

TEST_F(EngineTest, RemoteAgentsStateCapacityAndLocalSessionsDecideWhoIsRung) {
  auto remote = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote);
  Actor agent = createAgent("both", {sales_}, /*max_open=*/2);
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);

  // AWAY on node b, or ONLINE but full with node b's own load: not rung.
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kAway, {sales_}, 2)}, 3000);
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kOnline, {sales_}, 2, 2)},
                    3000);
  EXPECT_EQ(remote->offers(), 0);
  // Node c's load goes down: rung through node c (the one that announces it ONLINE).
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kOnline, {sales_}, 2, 1)},
                    3000);
  auto offer = remote->waitOffer(c->id);
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->node, "node-c");

  // Node c says the agent left ONLINE: that ring ends (node c is told), nobody else is rung.
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kAway, {sales_}, 2, 1)},
                    3000);
  auto end = remote->waitEnd(offer->ring.ring_id);
  ASSERT_TRUE(end);
  EXPECT_EQ(*end->ended, RingEndReason::kCancelled);
  EXPECT_TRUE(ringing(*engine_, sales_).empty());

  // A session of the agent on this node too: rung here, as a local ring, and through node c,
  // which announces it ONLINE (one ring, both places).
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kOnline, {sales_}, 2)},
                    3000);
  ASSERT_TRUE(remote->waitOffer(c->id, 1));
  ASSERT_TRUE(setState(agent, Availability::kOnline));
  auto c2 = request("c2", sales_);
  ASSERT_TRUE(c2);
  auto here = rec_.waitRing(c2->id.str(), agent.user.str());
  ASSERT_TRUE(here);
  auto there = remote->waitOffer(c2->id);
  ASSERT_TRUE(there);
  EXPECT_EQ(there->ring.ring_id, here->ring_id);
  EXPECT_EQ(remote->offers(), 3);
  // Its state set here is announced, with this node's load (one ring here, one through c).
  auto mine = localAgents(*engine_);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine[0].availability, Availability::kOnline);
  EXPECT_EQ(mine[0].load, 2);
  // Going OFFLINE here withdraws the second ring from the sessions here (they see it end) while
  // it goes on at node c; the first ring (node c only) is untouched.
  ASSERT_TRUE(setState(agent, Availability::kOffline));
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(rec_.ended_,
                               [&](const RingEnded& e) { return e.ring.conversation == c2->id; });
  }));
  EXPECT_EQ(remote->endsAt("node-c", here->ring_id), 0);
  EXPECT_EQ(ringing(*engine_, sales_), (std::vector<UserId>{agent.user, agent.user}));
  EXPECT_TRUE(engine_->ringsForAgent(kAcc, agent.user).empty());
}

// An agent with sessions on several nodes (and here) is rung at each of them with one ring:
// a node that refuses is dropped from it while the others still offer it, the first accept
// (from any of them) wins, every place still offering it hears the end, and a second accept
// of the agent gets the answer of a retried accept (the conversation), as on one node.
TEST_F(EngineTest, AnAgentOnSeveralNodesIsRungOnEachAndTheFirstAcceptWins) {
  auto remote = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote);
  remote->refuseAt("node-d");
  Actor agent = createAgent("everywhere", {sales_}, /*max_open=*/2);
  ASSERT_TRUE(setState(agent, Availability::kOnline));
  for (const char* n : {"node-b", "node-c", "node-d"})
    applyAnnouncement(*engine_, n, {announced(agent, Availability::kOnline, {sales_}, 2)}, 3000);
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  auto here = rec_.waitRing(c->id.str(), agent.user.str());
  ASSERT_TRUE(here);
  auto at_b = remote->waitOfferAt("node-b", c->id);
  auto at_c = remote->waitOfferAt("node-c", c->id);
  auto at_d = remote->waitOfferAt("node-d", c->id);
  ASSERT_TRUE(at_b && at_c && at_d);
  EXPECT_EQ(at_b->ring.ring_id, here->ring_id);
  EXPECT_EQ(at_c->ring.ring_id, here->ring_id);
  EXPECT_EQ(at_d->ring.ring_id, here->ring_id);
  // Node d refused: the ring goes on here and at b and c (one ring: the agent's load is 1).
  EXPECT_EQ(ringing(*engine_, sales_), std::vector<UserId>{agent.user});
  EXPECT_EQ(engine_->agents(kAcc)[0].waiting_rings, 1);

  // The accept (through node c) assigns it; the sessions here and nodes b and c hear the end,
  // node d (which refused) does not.
  auto accepted = accept(agent, here->ring_id);
  ASSERT_TRUE(accepted) << accepted.error().message;
  EXPECT_EQ(assignedAgent(*accepted), agent.user.str());
  ASSERT_TRUE(rec_.waitFor([&] {
    return std::ranges::any_of(rec_.ended_, [&](const RingEnded& e) {
      return e.ring.ring_id == here->ring_id && e.reason == RingEndReason::kAccepted;
    });
  }));
  for (const char* n : {"node-b", "node-c"}) {
    auto end = remote->waitEndAt(n, here->ring_id);
    ASSERT_TRUE(end) << n;
    EXPECT_EQ(*end->ended, RingEndReason::kAccepted);
    EXPECT_EQ(end->ring.state, RingState::kAccepted);
  }
  EXPECT_EQ(remote->endsAt("node-d", here->ring_id), 0);
  // The agent's other socket accepts too: the answer of a retried accept on one node.
  auto again = accept(agent, here->ring_id);
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->id, c->id);
}

// A ring offered through several nodes: a node that stops allowing it has it withdrawn (told
// CANCELLED) while it goes on elsewhere, a node that newly announces the agent ONLINE is
// offered it, a node that goes silent is dropped, and a reject from any of them ends it at
// every place, as a reject on one socket does on one node.
TEST_F(EngineTest, ARingOnSeveralNodesFollowsTheirStatesAndAnyRejectEndsIt) {
  auto remote = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote);
  Actor agent = createAgent("twice", {sales_});
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  auto c = request("c1", sales_);
  ASSERT_TRUE(c);
  auto at_b = remote->waitOfferAt("node-b", c->id);
  auto at_c = remote->waitOfferAt("node-c", c->id);
  ASSERT_TRUE(at_b && at_c);
  const std::string id = at_b->ring.ring_id;
  EXPECT_EQ(at_c->ring.ring_id, id);
  EXPECT_EQ(rec_.ringsOffered(c->id.str(), agent.user.str()), 0);  // no session here

  // Node c: the agent went AWAY there. Withdrawn from node c, still ringing at node b.
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kAway, {sales_})}, 3000);
  auto withdrawn = remote->waitEndAt("node-c", id);
  ASSERT_TRUE(withdrawn);
  EXPECT_EQ(*withdrawn->ended, RingEndReason::kCancelled);
  EXPECT_EQ(ringing(*engine_, sales_), std::vector<UserId>{agent.user});
  EXPECT_EQ(remote->endsAt("node-b", id), 0);

  // Node d announces the agent ONLINE: it is offered the same ring.
  applyAnnouncement(*engine_, "node-d", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  auto at_d = remote->waitOfferAt("node-d", c->id);
  ASSERT_TRUE(at_d);
  EXPECT_EQ(at_d->ring.ring_id, id);

  // Node b goes silent (nodes c and d go on announcing): dropped, the ring goes on at d.
  clock_.advanceMs(2000);
  applyAnnouncement(*engine_, "node-c", {announced(agent, Availability::kAway, {sales_})}, 3000);
  applyAnnouncement(*engine_, "node-d", {announced(agent, Availability::kOnline, {sales_})}, 3000);
  clock_.advanceMs(1001);
  engine_->tick();
  EXPECT_EQ(ringing(*engine_, sales_), std::vector<UserId>{agent.user});

  // The agent rejects (through node d): the ring ends everywhere it is still offered, and the
  // agent is not rung for that conversation again.
  ASSERT_TRUE(reject(agent, id));
  auto end = remote->waitEndAt("node-d", id);
  ASSERT_TRUE(end);
  EXPECT_EQ(*end->ended, RingEndReason::kRejected);
  EXPECT_TRUE(ringing(*engine_, sales_).empty());
  auto twice = reject(agent, id);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, ErrorCode::kConflict);
  EXPECT_EQ(remote->endsAt("node-b", id), 0);  // gone: not told
}

// agents() (what SubscribeAgentsState replays) shows an agent whose only session is on another
// node as that node announces it, and the listeners (the sessions here) are told when the
// announced state changes; a state set by a session here rules, and is what this node announces.
TEST_F(EngineTest, AgentsShowsTheStateOtherNodesAnnounceAndTellsItsChanges) {
  Actor agent = createAgent("far", {sales_}, /*max_open=*/4);
  auto infoOf = [&]() -> std::optional<AgentInfo> {
    for (auto& i : engine_->agents(kAcc))
      if (i.user == agent.user) return i;
    return std::nullopt;
  };
  auto statesTold = [&] {
    std::lock_guard lock(rec_.mu_);
    std::vector<std::pair<Availability, bool>> out;
    for (const auto& e : rec_.agent_states_)
      if (e.state.user == agent.user) out.emplace_back(e.state.availability, e.announced);
    return out;
  };
  using Told = std::vector<std::pair<Availability, bool>>;

  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_}, 4, 1)},
                    3000);
  auto info = infoOf();
  ASSERT_TRUE(info);
  EXPECT_EQ(info->availability, Availability::kOnline);
  EXPECT_EQ(info->node, "node-b");
  EXPECT_EQ(info->skills, std::vector<SkillId>{sales_});
  EXPECT_EQ(info->max_open_conversations, 4);
  EXPECT_EQ(info->load_elsewhere, 1);
  EXPECT_EQ(info->open_assigned, 0);
  ASSERT_TRUE(eventually([&] { return statesTold() == Told{{Availability::kOnline, true}}; }));

  // The periodic repeat tells nothing; a change does.
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kOnline, {sales_}, 4, 1)},
                    3000);
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kAway, {sales_}, 4, 1)},
                    3000);
  EXPECT_EQ(infoOf()->availability, Availability::kAway);
  ASSERT_TRUE(eventually([&] {
    return statesTold() == Told{{Availability::kOnline, true}, {Availability::kAway, true}};
  }));

  // A state set here rules (this node's own share: not an announced one) ...
  ASSERT_TRUE(setState(agent, Availability::kOnline));
  EXPECT_EQ(infoOf()->availability, Availability::kOnline);
  EXPECT_EQ(infoOf()->node, "");
  applyAnnouncement(*engine_, "node-b", {announced(agent, Availability::kBackSoon, {sales_}, 4)},
                    3000);
  EXPECT_EQ(infoOf()->availability, Availability::kOnline);
  // ... until the session here goes: node b's state is shown again.
  ASSERT_TRUE(setState(agent, Availability::kOffline));
  EXPECT_EQ(infoOf()->availability, Availability::kBackSoon);
  ASSERT_TRUE(eventually([&] {
    return statesTold() == Told{{Availability::kOnline, true},
                                {Availability::kAway, true},
                                {Availability::kOnline, false},
                                {Availability::kOffline, false},
                                {Availability::kBackSoon, true}};
  }));

  // Node b goes silent: forgotten after its 3 s, the agent shows OFFLINE, and its sessions here
  // are told.
  clock_.advanceMs(3001);
  engine_->tick();
  EXPECT_EQ(infoOf()->availability, Availability::kOffline);
  EXPECT_EQ(infoOf()->load_elsewhere, 0);
  ASSERT_TRUE(eventually([&] { return statesTold().size() == 6; }));
  EXPECT_EQ(statesTold().back(), std::make_pair(Availability::kOffline, true));
}

// One TTR order across owners: two owners (two engines on one store), each fed the other's
// announcements by hand (as src/app/cluster_routing.h carries them), and an agent whose session
// is on a third node. Node b's conversation came first but is due later (NORMAL) than node a's
// (URGENT): node b does not ring the agent for it while node a waits with its earlier one, and
// rings it once node a's is rung (node a no longer announces it).
TEST_F(EngineTest, AnOwnerDoesNotRingAnAgentForALaterDueConversationWhileAnotherOwnerWaits) {
  restart(clusterNode("node-a"));
  auto remote_a = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote_a);
  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  ASSERT_TRUE(b->recover());
  auto remote_b = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*b, remote_b);
  Actor agent = createAgent("far", {sales_}, /*max_open=*/4);

  ConversationRequest req;
  req.account = kAcc;
  req.consumer = ConsumerId("c-later");
  req.skill = sales_;
  req.ttr_type = TtrType::kNormal;
  auto later = call<Conversation>([&](auto cb) { b->requestConversation(req, cb); });
  ASSERT_TRUE(later) << later.error().message;
  clock_.advanceMs(10);
  auto earlier = request("c-earlier", sales_, TtrType::kUrgent);
  ASSERT_TRUE(earlier);
  ASSERT_LT(earlier->ttr_due_at, later->ttr_due_at);

  // What each node announces, heard by the other.
  auto heads = localQueueHeads(*engine_, 16);
  ASSERT_EQ(heads.size(), 1u);
  EXPECT_EQ(heads[0].skill, sales_);
  EXPECT_EQ(heads[0].due_at, earlier->ttr_due_at);
  auto exchange = [&] {
    applyAnnouncement(*engine_, "node-b", localAgents(*b), 3000, localQueueHeads(*b, 16));
    applyAnnouncement(*b, "node-a", localAgents(*engine_), 3000, localQueueHeads(*engine_, 16));
  };
  exchange();

  // The agent comes ONLINE on node c; node b hears it first.
  const std::vector<AnnouncedAgent> on_c{announced(agent, Availability::kOnline, {sales_}, 4)};
  applyAnnouncement(*b, "node-c", on_c, 3000);
  EXPECT_TRUE(ringing(*b, sales_).empty()) << "node b holds its later-due conversation back";
  applyAnnouncement(*engine_, "node-c", on_c, 3000);
  EXPECT_EQ(ringing(*engine_, sales_), std::vector<UserId>{agent.user});
  ASSERT_TRUE(remote_a->waitOffer(earlier->id));
  EXPECT_TRUE(localQueueHeads(*engine_, 16).empty()) << "a conversation being rung waits for none";

  // Node a's next announcement: nothing of node a waits earlier; node b rings the agent now.
  exchange();
  EXPECT_EQ(ringing(*b, sales_), std::vector<UserId>{agent.user});
  auto offer = remote_b->waitOffer(later->id);
  ASSERT_TRUE(offer);
  EXPECT_EQ(offer->node, "node-c");
  b.reset();
}

// The hold is bounded: a conversation is held back for at most ttr_defer_ms from the first time
// (the other owner may never ring the agent: it declined there, or cannot be reached from
// there), and only for what the agent could take, earlier-due, announced by a live node.
TEST_F(EngineTest, AnAgentIsHeldBackForAnotherOwnersEarlierConversationAtMostTheDeferral) {
  Options o = clusterNode("node-b");
  o.ttr_defer_ms = 1000;
  restart(o);
  auto remote = std::make_shared<FakeRemoteRings>();
  attachRemoteRings(*engine_, remote);
  Actor agent = createAgent("far", {sales_});
  auto head = [&](const SkillId& skill, TimeMs due) {
    return std::vector<AnnouncedQueue>{AnnouncedQueue{kAcc, skill, due}};
  };
  auto rung = [&](const ConversationId& id) {
    for (const auto& q : engine_->queues(kAcc, sales_))
      for (const auto& e : q.entries)
        if (e.conversation == id) return !e.ringing.empty();
    return false;
  };
  const std::vector<AnnouncedAgent> on_c{announced(agent, Availability::kOnline, {sales_})};
  applyAnnouncement(*engine_, "node-c", on_c, 3000);

  // Node a's head is on a skill the agent does not serve; node x's is due later: no hold.
  applyAnnouncement(*engine_, "node-a", {}, 3000, head(support_, clock_.nowMs()));
  applyAnnouncement(*engine_, "node-x", {}, 3000, head(sales_, clock_.nowMs() + 10'000'000));
  auto c1 = request("c1", sales_);
  ASSERT_TRUE(c1);
  EXPECT_TRUE(rung(c1->id));

  // Node a announces an earlier-due conversation on sales: the next one is held back ...
  applyAnnouncement(*engine_, "node-a", {}, 3000, head(sales_, clock_.nowMs()));
  auto c2 = request("c2", sales_);
  ASSERT_TRUE(c2);
  EXPECT_FALSE(rung(c2->id));
  clock_.advanceMs(999);
  engine_->tick();
  applyAnnouncement(*engine_, "node-a", {}, 3000, head(sales_, c2->ttr_due_at - 1));
  EXPECT_FALSE(rung(c2->id));
  // ... for one deferral at most, although node a still announces it.
  clock_.advanceMs(1);
  engine_->tick();
  EXPECT_TRUE(rung(c2->id));
  ASSERT_TRUE(remote->waitOffer(c2->id));

  // A default-queue head (any agent could take it) holds back too, until its node goes silent
  // (here before the deferral is over).
  applyAnnouncement(*engine_, "node-a", {}, /*ttl_ms=*/500, head(SkillId("-1"), clock_.nowMs()));
  auto c3 = request("c3", sales_);
  ASSERT_TRUE(c3);
  EXPECT_FALSE(rung(c3->id));
  clock_.advanceMs(501);
  engine_->tick();
  EXPECT_TRUE(rung(c3->id));
}

// A publish with an idempotency key that the conversation already holds for its publisher is
// answered as the first was (the same sequence and server_ts) and stores nothing, notifies
// nobody; the same key from the agent, or another key, is a message of its own. A bad key is
// refused before anything happens.
TEST_F(EngineTest, APublishResentWithItsIdempotencyKeyIsStoredOnce) {
  const Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("consumer-idem"));
  auto c = request("consumer-idem");
  ASSERT_TRUE(c);
  auto keyed = [&](const Actor& a, const std::string& text, const std::string& key) {
    PublishRequest req;
    req.actor = a;
    req.conversation = c->id;
    req.event_json =
        R"({"type":"ContentEvent","contentType":"text/plain","message":")" + text + R"("})";
    req.idempotency_key = key;
    return call<Published>([&](auto cb) { engine_->publish(req, cb); });
  };
  auto first = keyed(consumer, "hello", "k-1");
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->sequence, 0);
  clock_.advanceMs(1000);
  auto resent = keyed(consumer, "hello", "k-1");
  ASSERT_TRUE(resent) << resent.error().message;
  EXPECT_EQ(resent->sequence, 0);
  EXPECT_EQ(resent->server_ts, first->server_ts);
  EXPECT_EQ(storedTexts(c->id), std::vector<std::string>{"hello"});
  EXPECT_EQ(get(c->id)->next_sequence, 1);

  // The next message gets the next sequence, and it is the second notification: the resend
  // notified nobody.
  auto next = keyed(consumer, "next", "k-2");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->sequence, 1);
  ASSERT_TRUE(rec_.waitFor([&] { return rec_.messages_.size() == 2; }));
  EXPECT_EQ(rec_.messages_[0].message.sequence, 0);
  EXPECT_EQ(rec_.messages_[1].message.sequence, 1);

  const Actor agent = createAgent("idem-agent", {});
  assign(agent, *c);
  auto agents = keyed(agent, "from the agent", "k-1");
  ASSERT_TRUE(agents) << agents.error().message;
  EXPECT_EQ(agents->sequence, 2);
  auto agents_again = keyed(agent, "from the agent", "k-1");
  ASSERT_TRUE(agents_again);
  EXPECT_EQ(agents_again->sequence, 2);
  EXPECT_EQ(storedTexts(c->id), (std::vector<std::string>{"hello", "next", "from the agent"}));

  for (const std::string& bad :
       {std::string(65, 'k'), std::string("has space"), std::string("é")}) {
    auto refused = keyed(consumer, "bad", bad);
    ASSERT_FALSE(refused) << bad;
    EXPECT_EQ(refused.error().code, ErrorCode::kInvalid);
    EXPECT_NE(refused.error().message.find("idempotency key"), std::string::npos);
  }
  EXPECT_EQ(storedTexts(c->id).size(), 3u);
}

// The key is checked in the store: a resend reaching the node that took the conversation over
// (the first node stopped renewing) is answered the first publish's sequence, stored once.
TEST_F(EngineTest, AnIdempotencyKeyHoldsAcrossATakeover) {
  restart(clusterNode("node-a"));
  const Actor consumer = Actor::ofConsumer(kAcc, ConsumerId("consumer-1"));
  auto c = request("consumer-1");
  ASSERT_TRUE(c);
  PublishRequest req;
  req.actor = consumer;
  req.conversation = c->id;
  req.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"once"})";
  req.idempotency_key = "3b241101-e2bb-4255-8caf-4136c566a962";
  auto first = call<Published>([&](auto cb) { engine_->publish(req, cb); });
  ASSERT_TRUE(first) << first.error().message;

  auto b = makeConversationService(*store_, clock_, clusterNode("node-b"));
  OwnershipRecorder seen_b;
  auto sub_b = b->subscribe(seen_b);
  ASSERT_TRUE(b->recover());
  clock_.advanceMs(3001);
  maintainLeases(*b);
  ASSERT_TRUE(seen_b.waitFor("TAKEN:" + c->id.str()));
  auto resent = call<Published>([&](auto cb) { b->publish(req, cb); });
  ASSERT_TRUE(resent) << resent.error().message;
  EXPECT_EQ(resent->sequence, first->sequence);
  EXPECT_EQ(storedTexts(c->id), std::vector<std::string>{"once"});
  auto next = publishOn(*b, consumer, c->id, "after");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->sequence, 1);
}

}  // namespace

}  // namespace parley::conversation
