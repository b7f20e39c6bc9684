// ConversationRelay: another node's events reach this node's sessions once, in order, with
// every field; this node's own events are not handed back to it.

#include "app/conversation_relay.h"

#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "common/json.h"

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
  Result<std::unique_ptr<bus::Subscription>> listen(std::string filter,
                                                    bus::Handler handler) override {
    return inner_->listen(std::move(filter), std::move(handler));
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

TEST(ConversationRelay, AnotherNodesEventsReachTheSessionsOnceInOrderWithEveryField) {
  SharedLocalBus bus;
  Recorder sessions_a, sessions_b;
  ConversationRelay a(bus, sessions_a), b(bus, sessions_b);
  ASSERT_TRUE(a.start());
  ASSERT_TRUE(b.start());

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

  std::lock_guard l(sessions_b.mu);
  EXPECT_EQ(sessions_b.got,
            (std::vector<std::string>{"changed CREATED 1", "message 0 hello", "message 1 again",
                                      "changed PARTICIPANTS 2", "changed CLOSED 2"}));
  EXPECT_EQ(b.delivered(), 5u);
  EXPECT_EQ(b.duplicates(), 1u);
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
  Recorder sessions;
  ConversationRelay relay(bus, sessions);
  ASSERT_TRUE(relay.start());
  bus::Bus& raw = bus;
  raw.publish("parley.conv.a.b", "not json");
  raw.publish("parley.conv.a.b", R"({"type":"message","origin":"x","conversation":{}})");
  raw.publish("parley.conv.a.b", encodeRelayedMessage("x", *message(0, "ok")));
  // An originator role, audience, participant role or close reason that is not a protocol
  // name: the event is ignored.
  auto replaced = [](std::string s, const std::string& from, const std::string& to) {
    auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  };
  const std::string next = encodeRelayedMessage("x", *message(1, "unknown name"));
  raw.publish("parley.conv.a.b",
              replaced(next, R"("originatorRole":"CONSUMER")", R"("originatorRole":"WIZARD")"));
  raw.publish("parley.conv.a.b", replaced(next, R"("audience":"ALL")", R"("audience":"SOME")"));
  raw.publish("parley.conv.a.b", replaced(next, R"("role":"CONSUMER")", R"("role":"NOBODY")"));
  raw.publish("parley.conv.a.b", replaced(next, R"("closeReason":"")", R"("closeReason":"LATER")"));
  relay.stop();
  raw.publish("parley.conv.a.b", encodeRelayedMessage("x", *message(1, "late")));
  std::lock_guard l(sessions.mu);
  EXPECT_EQ(sessions.got, std::vector<std::string>{"message 0 ok"});
}

TEST(ConversationRelay, OnTheInProcessBusNothingIsPublished) {
  auto bus = bus::makeLocalBus();
  int published = 0;
  auto sub = bus->subscribe(">", [&](const bus::BusMessage&) { ++published; });
  ASSERT_TRUE(sub);
  Recorder sessions;
  ConversationRelay relay(*bus, sessions);
  ASSERT_TRUE(relay.start());
  relay.onMessageAddedShared(message(0, "x"));
  relay.onConversationChanged({conv::ChangeKind::kCreated, conversation(), {}});
  EXPECT_EQ(published, 0);
}

}  // namespace
}  // namespace parley::app
