// ConversationRelay: another node's events reach this node's sessions once, in order, with
// every field, only while a session of this node watches them; this node's own events are not
// handed back to it; messages lost on the way are read from the store. The RelayNats cases run
// two relays over a nats-server of their own (the ctest test `relay_nats`, label `cluster`).

#include "app/conversation_relay.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "bus/nats_bus.h"
#include "bus/testing/nats_server.h"
#include "common/json.h"
#include "common/testing/fake_clock.h"
#include "store/memory/memory_store.h"

namespace parley::app {
namespace {

namespace conv = parley::conversation;

// The in-process bus, shared as NATS is (so the relays publish and subscribe).
class SharedLocalBus final : public bus::Bus {
 public:
  void publish(std::string subject, std::string data, std::function<void(Status)> done) override {
    inner_->publish(std::move(subject), std::move(data), std::move(done));
  }
  Result<std::unique_ptr<bus::Subscription>> subscribe(std::string filter,
                                                       bus::Handler handler) override {
    return inner_->subscribe(std::move(filter), std::move(handler));
  }
  Result<std::unique_ptr<bus::Subscription>> serve(std::string subject,
                                                   bus::Responder responder) override {
    return inner_->serve(std::move(subject), std::move(responder));
  }
  void request(std::string subject, std::string data, std::chrono::milliseconds timeout,
               std::function<void(Result<std::string>)> done) override {
    inner_->request(std::move(subject), std::move(data), timeout, std::move(done));
  }
  Status broadcast(std::string subject, std::string data) override {
    return inner_->broadcast(std::move(subject), std::move(data));
  }
  Result<std::unique_ptr<bus::Subscription>> listen(
      std::string filter, bus::Handler handler,
      bus::Delivery delivery = bus::Delivery::kOwnThread) override {
    return inner_->listen(std::move(filter), std::move(handler), delivery);
  }
  bool shared() const override { return true; }
  std::string describe() const override { return "shared local"; }

 private:
  std::unique_ptr<bus::Bus> inner_ = bus::makeLocalBus();
};

struct Recorder : conv::ConversationListener {
  std::mutex mu;
  std::vector<std::string> got;  // "message <seq> <text>" or "changed <kind> <participants>"
  std::vector<std::shared_ptr<const conv::MessageAdded>> messages;
  std::vector<conv::ConversationChanged> changes;
  void onMessageAddedShared(const std::shared_ptr<const conv::MessageAdded>& e) override {
    std::lock_guard l(mu);
    got.push_back("message " + std::to_string(e->message.sequence) + " " +
                  json::getString(*e->event, "message"));
    messages.push_back(e);
  }
  void onConversationChanged(const conv::ConversationChanged& e) override {
    std::lock_guard l(mu);
    got.push_back(std::string("changed ") + conv::changeKindName(e.kind) + " " +
                  std::to_string(e.conversation.participants.size()));
    changes.push_back(e);
  }
};

store::Conversation conversation() {
  store::Conversation c;
  c.id = ConversationId("conv-1");
  c.account = AccountId("acc.1");  // a dot: the subject token is escaped
  c.consumer = ConsumerId("consumer-1");
  c.channel = store::Channel::kChat;
  c.skill = SkillId("7");
  c.ttr_type = store::TtrType::kUrgent;
  c.ttr_value_s = 60;
  c.start_ts = 1000;
  c.updated_at = 2000;
  c.next_sequence = 1;
  c.context_json = R"({"type":"SharkContext"})";
  c.participants = {
      {"consumer-1", store::ParticipantRole::kConsumer, store::ParticipantState::kActive, 1000}};
  return c;
}

std::shared_ptr<conv::MessageAdded> message(std::int64_t seq, const std::string& text) {
  auto e = std::make_shared<conv::MessageAdded>();
  e->conversation = conversation();
  e->conversation.next_sequence = seq + 1;
  e->message.conversation = e->conversation.id;
  e->message.sequence = seq;
  e->message.server_ts = 3000 + seq;
  e->message.originator_id = "consumer-1";
  e->message.originator_pid = "consumer-1";
  e->message.originator_role = store::ParticipantRole::kConsumer;
  e->message.audience = store::Audience::kAll;
  e->message.event_json =
      json::dump(boost::json::object{{"type", "ContentEvent"}, {"message", text}});
  e->message.turn.turn_id = "t1";
  e->event = std::make_shared<const boost::json::object>(*json::parseObject(e->message.event_json));
  return e;
}

// The store both nodes share, holding conversation() and the messages appended.
struct SharedStore {
  testing::FakeClock clock;
  std::unique_ptr<store::Store> store = store::makeMemoryStore(clock);
  SharedStore() { EXPECT_TRUE(store->conversations().saveConversation(conversation())); }
  // Stores message `seq` (as the owner does before publishing it) and returns its event.
  std::shared_ptr<conv::MessageAdded> append(std::int64_t seq, const std::string& text) {
    auto e = message(seq, text);
    e->conversation.updated_at = e->message.server_ts;
    auto st = store->conversations().appendMessage(e->conversation, e->message);
    EXPECT_TRUE(st) << st.error().message;
    return e;
  }
  store::ConversationStore& conversations() { return store->conversations(); }
};

const AccountId kAccount("acc.1");
const ConsumerId kConsumer("consumer-1");

std::vector<std::string> got(Recorder& r) {
  std::lock_guard l(r.mu);
  return r.got;
}

// Two nodes' relays on one bus and one store: `a` publishes, `b` (or `a`) watches.
class TwoNodes : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(a.start());
    ASSERT_TRUE(b.start());
  }
  SharedLocalBus bus;
  SharedStore db;
  Recorder sessions_a, sessions_b;
  ConversationRelay a{bus, sessions_a, db.conversations()}, b{bus, sessions_b, db.conversations()};
};

TEST_F(TwoNodes, AnotherNodesEventsReachTheSessionsOnceInOrderWithEveryField) {
  a.watch(kAccount, kConsumer);  // a's own events never come back to it
  b.watch(kAccount, kConsumer);

  conv::ConversationChanged created{conv::ChangeKind::kCreated, conversation(), {}};
  a.onConversationChanged(created);
  a.onMessageAddedShared(message(0, "hello"));
  a.onMessageAddedShared(message(1, "again"));
  auto joined = conversation();
  joined.participants.push_back(
      {"1000", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kActive, 1500});
  a.onConversationChanged({conv::ChangeKind::kParticipants, joined, {}});
  // A repeat of a message already delivered (a redelivery, or a second publisher) is dropped.
  a.onMessageAddedShared(message(1, "again"));
  auto closed = joined;
  closed.state = store::ConversationState::kClose;
  closed.close_reason = store::CloseReason::kConsumer;
  a.onConversationChanged({conv::ChangeKind::kClosed, closed, {joined.participants[1]}});

  // The relay's counters before the recorder's lock: the relay calls the recorder under its own
  // lock, so reading them with the recorder's held would take the two in the other order.
  EXPECT_EQ(b.delivered(), 5u);
  EXPECT_EQ(b.duplicates(), 1u);
  std::lock_guard l(sessions_b.mu);
  EXPECT_EQ(sessions_b.got,
            (std::vector<std::string>{"changed CREATED 1", "message 0 hello", "message 1 again",
                                      "changed PARTICIPANTS 2", "changed CLOSED 2"}));
  EXPECT_TRUE(sessions_a.got.empty());  // a node's own events come from its engine, not the bus

  // Every field survives the trip.
  const auto& m = *sessions_b.messages.at(1);
  const auto sent = message(1, "again");
  EXPECT_EQ(m.message.sequence, 1);
  EXPECT_EQ(m.message.server_ts, sent->message.server_ts);
  EXPECT_EQ(m.message.originator_role, store::ParticipantRole::kConsumer);
  EXPECT_EQ(m.message.event_json, sent->message.event_json);
  EXPECT_EQ(m.message.turn, sent->message.turn);
  EXPECT_EQ(json::getString(*m.event, "type"), "ContentEvent");
  EXPECT_EQ(m.conversation.id, sent->conversation.id);
  EXPECT_EQ(m.conversation.account.str(), "acc.1");
  EXPECT_EQ(m.conversation.channel, store::Channel::kChat);
  EXPECT_EQ(m.conversation.ttr_type, store::TtrType::kUrgent);
  EXPECT_EQ(m.conversation.context_json, sent->conversation.context_json);
  EXPECT_EQ(m.conversation.next_sequence, 2);
  const auto& c = sessions_b.changes.back();
  EXPECT_EQ(c.conversation.state, store::ConversationState::kClose);
  EXPECT_EQ(c.conversation.close_reason, store::CloseReason::kConsumer);
  ASSERT_EQ(c.removed.size(), 1u);
  EXPECT_EQ(c.removed[0].role, store::ParticipantRole::kAssignedAgent);
  EXPECT_EQ(c.conversation.participants[1].joined_at, 1500);
}

TEST(ConversationRelay, UnreadableEventsAreIgnoredAndStopEndsDelivery) {
  SharedLocalBus bus;
  SharedStore db;
  Recorder sessions;
  ConversationRelay relay(bus, sessions, db.conversations());
  ASSERT_TRUE(relay.start());
  relay.watch(AccountId("a"), std::nullopt);
  struct Raw {
    bus::Bus& bus;
    void publish(const std::string& subject, std::string data) {
      EXPECT_TRUE(bus.broadcast(subject, std::move(data)));
    }
  } raw{bus};
  raw.publish("parley-conv.a.c.b", "not json");
  raw.publish("parley-conv.a.c.b", R"({"type":"message","origin":"x","conversation":{}})");
  raw.publish("parley-conv.a.c.b", encodeRelayedMessage("x", *message(0, "ok")));
  // An originator role, audience, participant role or close reason that is not a protocol
  // name: the event is ignored.
  auto replaced = [](std::string s, const std::string& from, const std::string& to) {
    auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  };
  const std::string next = encodeRelayedMessage("x", *message(1, "unknown name"));
  raw.publish("parley-conv.a.c.b",
              replaced(next, R"("originatorRole":"CONSUMER")", R"("originatorRole":"WIZARD")"));
  raw.publish("parley-conv.a.c.b", replaced(next, R"("audience":"ALL")", R"("audience":"SOME")"));
  raw.publish("parley-conv.a.c.b", replaced(next, R"("role":"CONSUMER")", R"("role":"NOBODY")"));
  raw.publish("parley-conv.a.c.b",
              replaced(next, R"("closeReason":"")", R"("closeReason":"LATER")"));
  relay.stop();
  raw.publish("parley-conv.a.c.b", encodeRelayedMessage("x", *message(1, "late"), 9));
  std::lock_guard l(sessions.mu);
  EXPECT_EQ(sessions.got, std::vector<std::string>{"message 0 ok"});
}

TEST(ConversationRelay, OnTheInProcessBusNothingIsPublished) {
  auto bus = bus::makeLocalBus();
  int published = 0;
  auto sub = bus->subscribe(">", [&](const bus::BusMessage&) { ++published; });
  ASSERT_TRUE(sub);
  auto heard = bus->listen(">", [&](const bus::BusMessage&) { ++published; });
  ASSERT_TRUE(heard);
  SharedStore db;
  Recorder sessions;
  ConversationRelay relay(*bus, sessions, db.conversations());
  ASSERT_TRUE(relay.start());
  relay.watch(kAccount, kConsumer);
  EXPECT_EQ(relay.subscriptions(), 0u);
  relay.onMessageAddedShared(message(0, "x"));
  relay.onConversationChanged({conv::ChangeKind::kCreated, conversation(), {}});
  EXPECT_EQ(published, 0);
}

TEST_F(TwoNodes, ANodeWithoutInterestReceivesNothingOfAConversation) {
  int heard = 0;
  auto all = bus.listen(">", [&](const bus::BusMessage&) { ++heard; });
  ASSERT_TRUE(all);
  b.watch(kAccount, ConsumerId("someone-else"));  // another consumer's conversations
  b.watch(AccountId("acc-2"), std::nullopt);      // another account's
  a.onConversationChanged({conv::ChangeKind::kCreated, conversation(), {}});
  a.onMessageAddedShared(db.append(0, "hello"));
  EXPECT_EQ(heard, 2);  // published: a listener of everything hears them
  EXPECT_TRUE(got(sessions_b).empty());
  EXPECT_EQ(b.delivered(), 0u);
  EXPECT_EQ(b.subscriptions(), 2u);
}

TEST_F(TwoNodes, AWatchingSessionGetsLaterEventsOnceInOrderWithLostOnesFromTheStore) {
  // Before any session of b watches: nothing reaches b (its session reads these from the store).
  a.onMessageAddedShared(db.append(0, "before"));
  b.watch(kAccount, kConsumer);
  a.onMessageAddedShared(db.append(1, "one"));
  // Messages 2 and 3 are stored and published while b's connection is down: lost on the way.
  db.append(2, "two");
  db.append(3, "three");
  a.onMessageAddedShared(db.append(4, "four"));
  // A second subscription covering the conversation (an agent session of the account): the
  // events reach b twice and its sessions once.
  b.watch(kAccount, std::nullopt);
  a.onMessageAddedShared(db.append(5, "five"));
  auto closed = conversation();
  closed.state = store::ConversationState::kClose;
  a.onConversationChanged({conv::ChangeKind::kClosed, closed, {}});
  b.waitFilled();
  EXPECT_EQ(got(sessions_b),
            (std::vector<std::string>{"message 1 one", "message 2 two", "message 3 three",
                                      "message 4 four", "message 5 five", "changed CLOSED 1"}));
  EXPECT_EQ(b.filled(), 2u);
  EXPECT_EQ(b.duplicates(), 2u);
  // A filled message carries the stored fields and the conversation.
  std::lock_guard l(sessions_b.mu);
  const auto& filled = *sessions_b.messages.at(1);
  EXPECT_EQ(filled.message.server_ts, message(2, "two")->message.server_ts);
  EXPECT_EQ(json::getString(*filled.event, "message"), "two");
  EXPECT_EQ(filled.conversation.id, conversation().id);
  EXPECT_EQ(filled.conversation.consumer, kConsumer);
}

TEST_F(TwoNodes, InterestIsDroppedWhenTheLastWatcherLeaves) {
  b.watch(kAccount, kConsumer);  // two sockets of the consumer on b
  b.watch(kAccount, kConsumer);
  EXPECT_EQ(b.subscriptions(), 1u);
  a.onMessageAddedShared(db.append(0, "zero"));
  b.unwatch(kAccount, kConsumer);  // one left: still watched
  a.onMessageAddedShared(db.append(1, "one"));
  b.unwatch(kAccount, kConsumer);  // none: unsubscribed
  EXPECT_EQ(b.subscriptions(), 0u);
  a.onMessageAddedShared(db.append(2, "two"));
  a.onMessageAddedShared(db.append(3, "three"));
  EXPECT_EQ(got(sessions_b), (std::vector<std::string>{"message 0 zero", "message 1 one"}));
  // Watched again: what went by meanwhile is not filled in (the new session reads the store);
  // later events flow again.
  b.watch(kAccount, kConsumer);
  a.onMessageAddedShared(db.append(4, "four"));
  b.waitFilled();
  EXPECT_EQ(got(sessions_b),
            (std::vector<std::string>{"message 0 zero", "message 1 one", "message 4 four"}));
  EXPECT_EQ(b.filled(), 0u);
  b.unwatch(kAccount, kConsumer);
  b.unwatch(kAccount, kConsumer);  // more unwatches than watches: nothing to drop
  EXPECT_EQ(b.subscriptions(), 0u);
}

TEST_F(TwoNodes, AnAccountWatcherGetsEveryConversationOfTheAccount) {
  b.watch(kAccount, std::nullopt);  // an agent session: ExConversations over the account
  auto other = conversation();
  other.id = ConversationId("conv-2");
  other.consumer = ConsumerId("consumer-2");
  a.onConversationChanged({conv::ChangeKind::kCreated, conversation(), {}});
  a.onConversationChanged({conv::ChangeKind::kCreated, other, {}});
  auto elsewhere = conversation();
  elsewhere.account = AccountId("acc-2");
  a.onConversationChanged({conv::ChangeKind::kCreated, elsewhere, {}});
  a.onMessageAddedShared(db.append(0, "hello"));
  EXPECT_EQ(got(sessions_b), (std::vector<std::string>{"changed CREATED 1", "changed CREATED 1",
                                                       "message 0 hello"}));
  {
    std::lock_guard l(sessions_b.mu);
    EXPECT_EQ(sessions_b.changes.at(1).conversation.id, other.id);
  }
  b.unwatch(kAccount, std::nullopt);
  a.onMessageAddedShared(db.append(1, "gone"));
  EXPECT_EQ(got(sessions_b).size(), 3u);
}

// ---- over NATS ----

testing::NatsServer& natsServer() {
  static testing::NatsServer server;
  return server;
}

std::size_t threadsNow() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// The messages each conversation's sessions got, in order: conversation id -> sequences.
struct PerConversation : conv::ConversationListener {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::vector<std::int64_t>> got;
  std::size_t total = 0;
  void onMessageAddedShared(const std::shared_ptr<const conv::MessageAdded>& e) override {
    std::lock_guard l(mu);
    got[e->conversation.id.str()].push_back(e->message.sequence);
    ++total;
    cv.notify_all();
  }
  void onConversationChanged(const conv::ConversationChanged&) override {}
  bool waitFor(std::size_t n) {
    std::unique_lock l(mu);
    return cv.wait_for(l, std::chrono::seconds(20), [&] { return total >= n; });
  }
};

// Message `seq` of the conversation of consumer `i` ("conv-<i>" of "consumer-<i>").
std::shared_ptr<conv::MessageAdded> messageOf(int i, std::int64_t seq) {
  auto e = message(seq, "m" + std::to_string(seq));
  e->conversation.id = ConversationId("conv-" + std::to_string(i));
  e->conversation.consumer = ConsumerId("consumer-" + std::to_string(i));
  e->conversation.participants[0].id = e->conversation.consumer.str();
  e->message.conversation = e->conversation.id;
  return e;
}

TEST(RelayNats, FiveHundredWatchedConsumersAddNoThreadEachAndGetEachConversationOnceInOrder) {
  ASSERT_TRUE(natsServer().ok()) << natsServer().error();
  bus::NatsOptions o;
  o.shared_delivery_threads = 4;
  auto bus_a = bus::connectNatsBus(natsServer().url(), o);
  auto bus_b = bus::connectNatsBus(natsServer().url(), o);
  ASSERT_TRUE(bus_a && bus_b);
  SharedStore db;
  Recorder sessions_a;
  PerConversation sessions_b;
  ConversationRelay a{**bus_a, sessions_a, db.conversations()};
  ConversationRelay b{**bus_b, sessions_b, db.conversations()};
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());
  // b serves 500 consumers' sockets, and an agent's, which watches the whole account: every
  // event reaches b twice, by two subscriptions that may be on two delivery threads.
  constexpr int kConsumers = 500, kMessages = 6;
  const std::size_t before = threadsNow();
  for (int i = 0; i < kConsumers; ++i)
    b.watch(kAccount, ConsumerId("consumer-" + std::to_string(i)));
  b.watch(kAccount, std::nullopt);
  const std::size_t after = threadsNow();
  EXPECT_EQ(b.subscriptions(), static_cast<std::size_t>(kConsumers + 1));
  EXPECT_LE(after, before + 4) << before << " threads before, " << after << " after";
  // The owner publishes the conversations' messages interleaved.
  for (int seq = 0; seq < kMessages; ++seq)
    for (int i = 0; i < kConsumers; ++i) a.onMessageAddedShared(messageOf(i, seq));
  ASSERT_TRUE(sessions_b.waitFor(kConsumers * kMessages));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // nothing more arrives
  b.waitFilled();
  EXPECT_EQ(b.filled(), 0u);  // nothing was lost on the way
  EXPECT_EQ(b.duplicates(), static_cast<std::uint64_t>(kConsumers * kMessages));
  std::lock_guard l(sessions_b.mu);
  EXPECT_EQ(sessions_b.total, static_cast<std::size_t>(kConsumers * kMessages));
  ASSERT_EQ(sessions_b.got.size(), static_cast<std::size_t>(kConsumers));
  for (const auto& [id, seqs] : sessions_b.got)
    EXPECT_EQ(seqs, (std::vector<std::int64_t>{0, 1, 2, 3, 4, 5})) << id;
}

}  // namespace
}  // namespace parley::app
