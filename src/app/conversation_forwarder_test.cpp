// ConversationForwarder: two nodes (two engines in cluster mode on one memory store, one bus):
// a publish or change reaching the node that does not hold the conversation is applied by the
// one that does and answered as it would be there; a call waits for the next owner when the
// owner is gone, and fails with Unavailable "retry after" when none comes in time.

#include "app/conversation_forwarder.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "common/json.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "conversation/conversation_engine.h"
#include "store/memory/memory_store.h"

namespace parley::app {
namespace {

namespace conv = parley::conversation;
using namespace std::chrono_literals;

const AccountId kAcc("1000");

using parley::testing::call;

conv::Options node(const std::string& name) {
  conv::Options o;
  o.node = name;
  o.lease_ms = 3000;
  o.tick_interval_ms = 0;
  return o;
}

conv::PublishRequest text(const conv::Actor& who, const ConversationId& id, std::string message) {
  conv::PublishRequest req;
  req.actor = who;
  req.conversation = id;
  req.event_json = json::dump(boost::json::object{
      {"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", std::move(message)}});
  return req;
}

class ForwarderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount(store::Account{kAcc, "acme", 300, 600, 3600, 0}));
    a_ = conv::makeConversationService(*store_, clock_, node("node-a"));
    b_ = conv::makeConversationService(*store_, clock_, node("node-b"));
    ASSERT_TRUE(a_->recover());
    ASSERT_TRUE(b_->recover());
    fa_ = makeForwarder(*a_, "node-a");
    fb_ = makeForwarder(*b_, "node-b");
    ASSERT_TRUE(fa_->start());
    ASSERT_TRUE(fb_->start());
    auto c = call<store::Conversation>([&](auto cb) {
      conv::ConversationRequest req;
      req.account = kAcc;
      req.consumer = consumer_.consumer;
      fa_->requestConversation(req, cb);
    });
    ASSERT_TRUE(c) << c.error().message;
    id_ = c->id;
    ASSERT_TRUE(conv::holdsConversation(*a_, id_));
    ASSERT_FALSE(conv::holdsConversation(*b_, id_));
  }
  void TearDown() override {
    fa_.reset();
    fb_.reset();
    a_.reset();
    b_.reset();
  }

  std::unique_ptr<ConversationForwarder> makeForwarder(conv::ConversationService& engine,
                                                       const std::string& name,
                                                       ForwarderOptions o = {}) {
    o.node = name;
    o.retry_pause = 20ms;
    return std::make_unique<ConversationForwarder>(
        engine, *store_->cluster(), *bus_,
        [&engine](const ConversationId& id) { return conv::holdsConversation(engine, id); }, o);
  }

  std::vector<store::Message> messages() {
    auto m = store_->conversations().listMessages(id_, 0, 100);
    EXPECT_TRUE(m);
    return m ? *m : std::vector<store::Message>{};
  }

  parley::testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<bus::Bus> bus_ = bus::makeLocalBus();
  std::unique_ptr<conv::ConversationService> a_, b_;
  std::unique_ptr<ConversationForwarder> fa_, fb_;
  const conv::Actor consumer_ = conv::Actor::ofConsumer(kAcc, ConsumerId("consumer-1"));
  ConversationId id_;
};

TEST_F(ForwarderTest, APublishOnTheOtherNodeIsAppliedByTheOwnerAndAnsweredAsThere) {
  auto first =
      call<conv::Published>([&](auto cb) { fb_->publish(text(consumer_, id_, "hi"), cb); });
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(first->sequence, 0);
  EXPECT_EQ(fb_->forwarded(), 1u);
  auto second =
      call<conv::Published>([&](auto cb) { fa_->publish(text(consumer_, id_, "again"), cb); });
  ASSERT_TRUE(second);
  EXPECT_EQ(second->sequence, 1);  // one order: the owner's
  auto stored = messages();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_EQ(stored[0].originator_id, "consumer-1");
  EXPECT_NE(stored[0].event_json.find("\"hi\""), std::string::npos);

  // An event passed as a value (PublishRequest::event, as the protocol sessions and the bot
  // connector pass it) reaches the owner as that event.
  auto as_value = text(consumer_, id_, "");
  as_value.event = std::make_shared<const boost::json::object>(boost::json::object{
      {"type", "ContentEvent"}, {"contentType", "text/plain"}, {"message", "by value"}});
  as_value.event_json.clear();
  auto third = call<conv::Published>([&](auto cb) { fb_->publish(as_value, cb); });
  ASSERT_TRUE(third) << third.error().message;
  EXPECT_EQ(third->sequence, 2);
  stored = messages();
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_NE(stored[2].event_json.find("\"by value\""), std::string::npos) << stored[2].event_json;

  // Errors come back as the owner's engine gives them: another consumer is refused, an invalid
  // event too, with the same code and text as on the owner.
  const auto stranger = conv::Actor::ofConsumer(kAcc, ConsumerId("consumer-2"));
  auto local = call<conv::Published>([&](auto cb) { a_->publish(text(stranger, id_, "x"), cb); });
  auto remote = call<conv::Published>([&](auto cb) { fb_->publish(text(stranger, id_, "x"), cb); });
  ASSERT_FALSE(local);
  ASSERT_FALSE(remote);
  EXPECT_EQ(remote.error().code, local.error().code);
  EXPECT_EQ(remote.error().message, local.error().message);
  auto bad = text(consumer_, id_, "x");
  bad.event_json = R"({"type":"NoSuchEvent"})";
  auto bad_remote = call<conv::Published>([&](auto cb) { fb_->publish(bad, cb); });
  ASSERT_FALSE(bad_remote);
  EXPECT_EQ(bad_remote.error().code, ErrorCode::kInvalid);
  EXPECT_EQ(messages().size(), 3u);
}

TEST_F(ForwarderTest, AChangeOnTheOtherNodeIsAppliedByTheOwner) {
  auto ttr = call<store::Conversation>([&](auto cb) {
    fb_->updateConversation(consumer_, id_, {conv::TtrField{store::TtrType::kUrgent, {}}}, cb);
  });
  ASSERT_TRUE(ttr) << ttr.error().message;
  EXPECT_EQ(ttr->id, id_);
  EXPECT_EQ(ttr->ttr_type, store::TtrType::kUrgent);
  auto closed = call<store::Conversation>(
      [&](auto cb) { fb_->updateConversation(consumer_, id_, {conv::CloseField{}}, cb); });
  ASSERT_TRUE(closed) << closed.error().message;
  EXPECT_EQ(closed->state, store::ConversationState::kClose);
  EXPECT_EQ(closed->close_reason, store::CloseReason::kConsumer);
  EXPECT_EQ(store_->conversations().getConversation(kAcc, id_)->state,
            store::ConversationState::kClose);
  // Closed: the next publish is refused as on one node (Conflict), not left waiting.
  auto after = call<conv::Published>([&](auto cb) { fb_->publish(text(consumer_, id_, "x"), cb); });
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, ErrorCode::kConflict);
}

TEST_F(ForwarderTest, ACallWaitsForTheNextOwnerWhenTheOwnerIsGone) {
  fa_->stop();  // node a stops answering (as a dead node: no responders)
  auto p = std::make_shared<std::promise<Result<conv::Published>>>();
  auto fut = p->get_future();
  fb_->publish(text(consumer_, id_, "during the takeover"),
               [p](Result<conv::Published> r) { p->set_value(std::move(r)); });
  EXPECT_EQ(fut.wait_for(300ms), std::future_status::timeout);  // waiting for an owner
  // a's lease expires and b claims the conversation: the waiting publish lands there.
  clock_.advanceMs(3001);
  conv::maintainLeases(*b_);
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  auto r = fut.get();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->sequence, 0);
  EXPECT_TRUE(conv::holdsConversation(*b_, id_));
  ASSERT_EQ(messages().size(), 1u);
}

// A publish waiting for the conversation's owner, then another one made once this node has
// taken the conversation (the caller gave up on the first and published again): the first is
// applied first, although the second found the conversation held here at once.
TEST_F(ForwarderTest, CallsOfAConversationWaitingForAnOwnerAreAppliedInCallOrder) {
  ForwarderOptions o;
  o.node = "node-b";
  o.retry_pause = 1s;  // the first call's next attempt comes after the second call
  auto slow = std::make_unique<ConversationForwarder>(
      *b_, *store_->cluster(), *bus_,
      [this](const ConversationId& id) { return conv::holdsConversation(*b_, id); }, o);
  fa_->stop();  // node a stops answering
  auto first = std::make_shared<std::promise<Result<conv::Published>>>();
  auto first_done = first->get_future();
  slow->publish(text(consumer_, id_, "first"),
                [first](Result<conv::Published> r) { first->set_value(std::move(r)); });
  EXPECT_EQ(first_done.wait_for(300ms), std::future_status::timeout);  // tried once, waiting
  clock_.advanceMs(3001);
  conv::maintainLeases(*b_);
  ASSERT_TRUE(conv::holdsConversation(*b_, id_));
  auto second = std::make_shared<std::promise<Result<conv::Published>>>();
  auto second_done = second->get_future();
  slow->publish(text(consumer_, id_, "second"),
                [second](Result<conv::Published> r) { second->set_value(std::move(r)); });
  ASSERT_EQ(first_done.wait_for(5s), std::future_status::ready);
  ASSERT_EQ(second_done.wait_for(5s), std::future_status::ready);
  auto r1 = first_done.get();
  auto r2 = second_done.get();
  ASSERT_TRUE(r1) << r1.error().message;
  ASSERT_TRUE(r2) << r2.error().message;
  EXPECT_EQ(r1->sequence, 0);
  EXPECT_EQ(r2->sequence, 1);
  auto stored = messages();
  ASSERT_EQ(stored.size(), 2u);
  EXPECT_NE(stored[0].event_json.find("\"first\""), std::string::npos) << stored[0].event_json;
  EXPECT_NE(stored[1].event_json.find("\"second\""), std::string::npos) << stored[1].event_json;
}

TEST_F(ForwarderTest, ACallFailsWithRetryAfterWhenNoOwnerAnswersInTime) {
  ForwarderOptions o;
  o.wait = 400ms;
  auto quick = makeForwarder(*b_, "node-b2", o);
  fa_->stop();
  const auto t0 = std::chrono::steady_clock::now();
  auto r = call<conv::Published>([&](auto cb) { quick->publish(text(consumer_, id_, "x"), cb); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(r.error().message.find("retry after 1 s"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("node node-a"), std::string::npos) << r.error().message;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 400ms);
  EXPECT_TRUE(messages().empty());
}

TEST_F(ForwarderTest, ACommandLargerThanTheLimitIsNotForwarded) {
  ForwarderOptions o;
  o.max_payload = 512;
  auto small = makeForwarder(*b_, "node-b2", o);
  auto r = call<conv::Published>(
      [&](auto cb) { small->publish(text(consumer_, id_, std::string(600, 'x')), cb); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kTooLarge);
  EXPECT_TRUE(messages().empty());
}

TEST_F(ForwarderTest, TheOwnerAppliesACommandItGetsTwiceOnce) {
  const std::string command = json::dump(boost::json::object{
      {"id", "retried-1"},
      {"type", "publish"},
      {"actor",
       boost::json::object{
           {"kind", "consumer"}, {"account", kAcc.str()}, {"consumer", "consumer-1"}}},
      {"conversation", id_.str()},
      {"event", R"({"type":"ContentEvent","contentType":"text/plain","message":"once"})"},
      {"metadata", "[]"},
      {"audience", "ALL"}});
  auto send = [&] {
    return call<std::string>([&](auto cb) {
      bus_->request(forwardSubject("node-a"), command, 2s, [cb](Result<std::string> r) { cb(r); });
    });
  };
  auto one = send();
  auto two = send();
  ASSERT_TRUE(one && two);
  EXPECT_EQ(*one, *two);
  EXPECT_NE(one->find("\"sequence\":0"), std::string::npos) << *one;
  EXPECT_EQ(messages().size(), 1u);
  // Garbage is refused, not applied.
  auto junk = call<std::string>([&](auto cb) {
    bus_->request(forwardSubject("node-a"), "{\"id\":\"j\",\"conversation\":\"" + id_.str() + "\"}",
                  2s, [cb](Result<std::string> r) { cb(r); });
  });
  ASSERT_TRUE(junk);
  EXPECT_NE(junk->find("INVALID"), std::string::npos) << *junk;
  EXPECT_EQ(messages().size(), 1u);
}

}  // namespace
}  // namespace parley::app
