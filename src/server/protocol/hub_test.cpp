#include "server/protocol/hub.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/protocol/codec.h"

namespace parley::server::protocol {
namespace {

// A registered session that counts what it was given.
class FakeClient final : public HubClient {
 public:
  FakeClient(std::string acc, std::optional<std::string> consumer, std::optional<std::string> user,
             std::string bearer = "")
      : acc_(std::move(acc)), bearer_(std::move(bearer)) {
    if (consumer) consumer_ = ConsumerId(*consumer);
    if (user) user_ = UserId(*user);
  }
  const AccountId& hubAccount() const override { return acc_; }
  std::optional<ConsumerId> hubConsumer() const override { return consumer_; }
  std::optional<UserId> hubUser() const override { return user_; }
  const std::string& hubBearer() const override { return bearer_; }
  void deliver(std::shared_ptr<const Event> e) override {
    ++delivered;
    last = std::move(e);
  }
  void revoke() override { ++revoked; }

  int delivered = 0;
  std::shared_ptr<const Event> last;
  int revoked = 0;

 private:
  AccountId acc_;
  std::optional<ConsumerId> consumer_;
  std::optional<UserId> user_;
  std::string bearer_;
};

store::Participant participant(std::string id, store::ParticipantRole role,
                               store::ParticipantState state = store::ParticipantState::kActive) {
  store::Participant p;
  p.id = std::move(id);
  p.role = role;
  p.state = state;
  return p;
}

// A message in a conversation of `consumer` whose agents are `agents` (ACTIVE ASSIGNED_AGENTs).
conversation::MessageAdded messageOf(const std::string& acc, const std::string& consumer,
                                     const std::vector<std::string>& agents = {}) {
  conversation::MessageAdded m;
  m.conversation.account = AccountId(acc);
  m.conversation.consumer = ConsumerId(consumer);
  m.conversation.participants.push_back(participant(consumer, store::ParticipantRole::kConsumer));
  for (const auto& a : agents)
    m.conversation.participants.push_back(participant(a, store::ParticipantRole::kAssignedAgent));
  return m;
}

TEST(Hub, MessagesReachTheirConsumerAndTheAgentsTakingPartOnly) {
  Hub hub;
  auto c1 = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto c1b = std::make_shared<FakeClient>("a", "c1", std::nullopt);  // a second socket
  auto c2 = std::make_shared<FakeClient>("a", "c2", std::nullopt);
  auto agent = std::make_shared<FakeClient>("a", std::nullopt, "1001", "bearer-1");
  auto other_acc_agent = std::make_shared<FakeClient>("b", std::nullopt, "1001");
  auto other_acc_c1 = std::make_shared<FakeClient>("b", "c1", std::nullopt);
  for (const auto& c : {c1, c1b, c2, agent, other_acc_agent, other_acc_c1}) hub.add(c);
  EXPECT_EQ(hub.size(), 6u);

  hub.onMessageAdded(messageOf("a", "c1", {"1001"}));
  EXPECT_EQ(c1->delivered, 1);
  EXPECT_EQ(c1b->delivered, 1);
  EXPECT_EQ(c2->delivered, 0);
  EXPECT_EQ(agent->delivered, 1);
  EXPECT_EQ(other_acc_agent->delivered, 0);
  EXPECT_EQ(other_acc_c1->delivered, 0);
  // Another agent's conversation: not this agent's.
  hub.onMessageAdded(messageOf("a", "c1", {"1002"}));
  EXPECT_EQ(c1->delivered, 2);
  EXPECT_EQ(agent->delivered, 1);
  // Conversation changes: to their consumer, and to agent sessions whose ExConversations want
  // them (this one: all of the account's).
  conversation::ConversationChanged changed;
  changed.conversation = messageOf("a", "c2").conversation;
  hub.onConversationChanged(changed);
  EXPECT_EQ(agent->delivered, 1);
  hub.setConversationInterest(agent, Hub::Interest::kAll, {});
  hub.onConversationChanged(changed);
  EXPECT_EQ(agent->delivered, 2);
  EXPECT_EQ(c2->delivered, 2);
  EXPECT_EQ(c1->delivered, 2);

  // Rings go to the rung agent only, never to consumers.
  conversation::RingOffered ring;
  ring.ring.account = AccountId("a");
  ring.ring.user = UserId("1002");
  hub.onRingOffered(ring);
  EXPECT_EQ(agent->delivered, 2);
  ring.ring.user = UserId("1001");
  hub.onRingOffered(ring);
  EXPECT_EQ(agent->delivered, 3);
  EXPECT_EQ(c1->delivered, 2);

  EXPECT_EQ(hub.sessionsOfUser(AccountId("a"), UserId("1001")), 1);
  hub.revokeBearer("bearer-1");
  EXPECT_EQ(agent->revoked, 1);
  EXPECT_EQ(c1->revoked, 0);

  // Removing one socket of a consumer keeps the other; removal is by identity.
  hub.remove(c1.get());
  hub.onMessageAdded(messageOf("a", "c1"));
  EXPECT_EQ(c1->delivered, 2);
  EXPECT_EQ(c1b->delivered, 3);
  hub.remove(agent.get());
  EXPECT_EQ(hub.sessionsOfUser(AccountId("a"), UserId("1001")), 0);
  EXPECT_EQ(hub.size(), 4u);
  hub.remove(agent.get());  // twice: no effect
  EXPECT_EQ(hub.size(), 4u);

  // A session that went away without remove() is skipped and does not keep its slot.
  {
    auto gone = std::make_shared<FakeClient>("a", "c3", std::nullopt);
    hub.add(gone);
  }
  hub.onMessageAdded(messageOf("a", "c3"));  // no crash, nobody to deliver to
  EXPECT_EQ(c2->delivered, 2);
}

// The engine's shared message event reaches every session as that same object: the hub neither
// copies the message nor the conversation snapshot.
TEST(Hub, SessionsGetTheEnginesSharedMessageEventItself) {
  Hub hub;
  auto c1 = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto agent = std::make_shared<FakeClient>("a", std::nullopt, "1001");
  hub.add(c1);
  hub.add(agent);
  auto added = std::make_shared<const conversation::MessageAdded>(messageOf("a", "c1", {"1001"}));
  hub.onMessageAddedShared(added);
  for (const auto& client : {c1, agent}) {
    ASSERT_NE(client->last, nullptr);
    const auto* got =
        std::get_if<std::shared_ptr<const conversation::MessageAdded>>(&*client->last);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(got->get(), added.get());
  }
  EXPECT_EQ(c1->last, agent->last);  // one event for all sessions
}

// Each frame of a message is built once, by whichever session asks first, and every session
// (on its own thread) gets that same string: the record and the agent frame the codec makes.
TEST(Hub, MessageFramesAreBuiltOnceAndSharedAcrossThreads) {
  auto added = std::make_shared<conversation::MessageAdded>(messageOf("a", "c1", {"1001"}));
  added->message.sequence = 7;
  added->message.originator_id = "c1";
  added->message.event_json =
      R"({"type":"ContentEvent","contentType":"text/plain","message":"hi"})";
  added->message.metadata_json = "[]";
  std::string record;
  appendMessageRecord(record, added->message, View::kConsumer);
  const std::string agent = onlineEventDistribution(added->message);
  for (int round = 0; round < 50; ++round) {
    const MessageFrames frames(added);
    constexpr int kThreads = 4;
    std::vector<const std::string*> records(kThreads);
    std::vector<const std::string*> agents(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i)
      threads.emplace_back([&, i] {
        if (i % 2 == 0) {
          records[i] = &frames.consumerRecord();
          agents[i] = &frames.agentFrame();
        } else {
          agents[i] = &frames.agentFrame();
          records[i] = &frames.consumerRecord();
        }
      });
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      EXPECT_EQ(records[i], records[0]);
      EXPECT_EQ(agents[i], agents[0]);
    }
    EXPECT_EQ(*records[0], record);
    EXPECT_EQ(*agents[0], agent);
    EXPECT_EQ(&frames.consumerRecord(), records[0]);
  }
}

// An agent session sees a conversation's messages and chat states only while its user is an
// ACTIVE non-consumer participant (what ProtocolSession::isParticipant accepts): the hub does not
// post the others to it at all, so agents logged in cost nothing per message of conversations
// they are not in.
TEST(Hub, MessagesAndChatStatesGoToActiveNonConsumerParticipantsOnly) {
  Hub hub;
  auto consumer = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto assigned = std::make_shared<FakeClient>("a", std::nullopt, "1001");
  auto assigned_second_socket = std::make_shared<FakeClient>("a", std::nullopt, "1001");
  auto manager = std::make_shared<FakeClient>("a", std::nullopt, "1002");
  auto left = std::make_shared<FakeClient>("a", std::nullopt, "1003");
  auto bystander = std::make_shared<FakeClient>("a", std::nullopt, "1004");
  auto same_id_as_consumer = std::make_shared<FakeClient>("a", std::nullopt, "c1");
  std::vector<std::shared_ptr<FakeClient>> idle;
  for (int i = 0; i < 200; ++i)
    idle.push_back(std::make_shared<FakeClient>("a", std::nullopt, std::to_string(2000 + i)));
  for (const auto& c :
       {consumer, assigned, assigned_second_socket, manager, left, bystander, same_id_as_consumer})
    hub.add(c);
  for (const auto& c : idle) hub.add(c);

  conversation::MessageAdded m = messageOf("a", "c1", {"1001"});
  m.conversation.participants.push_back(participant("1002", store::ParticipantRole::kManager));
  m.conversation.participants.push_back(participant("1003", store::ParticipantRole::kAssignedAgent,
                                                    store::ParticipantState::kSuggested));
  m.conversation.participants.push_back(
      participant("1001", store::ParticipantRole::kReader));  // listed twice
  hub.onMessageAdded(m);
  conversation::ChatStateChanged cs;
  cs.conversation = m.conversation;
  hub.onChatState(cs);

  EXPECT_EQ(consumer->delivered, 2);
  EXPECT_EQ(assigned->delivered, 2);  // once per event, not once per listing
  EXPECT_EQ(assigned_second_socket->delivered, 2);
  EXPECT_EQ(manager->delivered, 2);
  EXPECT_EQ(left->delivered, 0);                 // not ACTIVE
  EXPECT_EQ(bystander->delivered, 0);            // not a participant
  EXPECT_EQ(same_id_as_consumer->delivered, 0);  // the CONSUMER entry is not an agent's
  for (const auto& c : idle) EXPECT_EQ(c->delivered, 0);

  // Rings and agent-state changes: the rung user's sessions; every agent session.
  conversation::RingOffered ring;
  ring.ring.account = AccountId("a");
  ring.ring.user = UserId("1004");
  hub.onRingOffered(ring);
  EXPECT_EQ(bystander->delivered, 1);
  EXPECT_EQ(assigned->delivered, 2);
  conversation::AgentStateChanged state;
  state.state.account = AccountId("a");
  hub.onAgentStateChanged(state);
  EXPECT_EQ(bystander->delivered, 2);
  EXPECT_EQ(assigned->delivered, 3);
  for (const auto& c : idle) EXPECT_EQ(c->delivered, 1);
  EXPECT_EQ(consumer->delivered, 2);

  // A user's sessions are counted and removed one by one.
  EXPECT_EQ(hub.sessionsOfUser(AccountId("a"), UserId("1001")), 2);
  hub.remove(assigned.get());
  EXPECT_EQ(hub.sessionsOfUser(AccountId("a"), UserId("1001")), 1);
  hub.onMessageAdded(m);
  EXPECT_EQ(assigned->delivered, 3);
  EXPECT_EQ(assigned_second_socket->delivered, 4);
  hub.remove(assigned_second_socket.get());
  EXPECT_EQ(hub.sessionsOfUser(AccountId("a"), UserId("1001")), 0);
}

// A conversation change reaches an agent session only if its ExConversations subscriptions may
// show that conversation: all of the account's, or one filtered on a uid that is a non-consumer
// participant — listed in any state, or removed by this very change (so the session can send
// its DELETE). Sessions without subscriptions get none.
TEST(Hub, ConversationChangesGoToTheAgentSessionsWhoseSubscriptionsMayShowThem) {
  Hub hub;
  auto consumer = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto all = std::make_shared<FakeClient>("a", std::nullopt, "1001");
  auto mine = std::make_shared<FakeClient>("a", std::nullopt, "1002");   // agentIds [1002]
  auto two = std::make_shared<FakeClient>("a", std::nullopt, "1003");    // agentIds [1002, 1004]
  auto other = std::make_shared<FakeClient>("a", std::nullopt, "1005");  // agentIds [1005]
  auto none = std::make_shared<FakeClient>("a", std::nullopt, "1006");   // no subscription
  auto other_account = std::make_shared<FakeClient>("b", std::nullopt, "1001");
  for (const auto& c : {consumer, all, mine, two, other, none, other_account}) hub.add(c);
  hub.setConversationInterest(all, Hub::Interest::kAll, {});
  hub.setConversationInterest(mine, Hub::Interest::kOfAgents, {"1002"});
  hub.setConversationInterest(two, Hub::Interest::kOfAgents, {"1002", "1004", "1002"});
  hub.setConversationInterest(other, Hub::Interest::kOfAgents, {"1005"});
  hub.setConversationInterest(other_account, Hub::Interest::kAll, {});
  // Ignored: consumers get their own conversations' changes.
  hub.setConversationInterest(consumer, Hub::Interest::kAll, {});

  conversation::ConversationChanged created;
  created.conversation = messageOf("a", "c1").conversation;  // no agent yet
  hub.onConversationChanged(created);
  EXPECT_EQ(consumer->delivered, 1);
  EXPECT_EQ(all->delivered, 1);
  EXPECT_EQ(mine->delivered, 0);
  EXPECT_EQ(two->delivered, 0);
  EXPECT_EQ(other->delivered, 0);
  EXPECT_EQ(none->delivered, 0);
  EXPECT_EQ(other_account->delivered, 0);

  conversation::ConversationChanged assigned;
  assigned.conversation = messageOf("a", "c1", {"1002", "1004"}).conversation;
  hub.onConversationChanged(assigned);
  EXPECT_EQ(all->delivered, 2);
  EXPECT_EQ(mine->delivered, 1);
  EXPECT_EQ(two->delivered, 1);  // once, though both its uids take part
  EXPECT_EQ(other->delivered, 0);

  // 1002 leaves (removed); 1004 is still listed, SUGGESTED: both subscriptions hear of it.
  conversation::ConversationChanged transferred;
  transferred.conversation = messageOf("a", "c1").conversation;
  transferred.conversation.participants.push_back(participant(
      "1004", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kSuggested));
  transferred.removed.push_back(participant("1002", store::ParticipantRole::kAssignedAgent));
  hub.onConversationChanged(transferred);
  EXPECT_EQ(mine->delivered, 2);
  EXPECT_EQ(two->delivered, 2);
  EXPECT_EQ(other->delivered, 0);
  EXPECT_EQ(none->delivered, 0);

  // Unsubscribing (no interest left) and closing take a session out.
  hub.setConversationInterest(mine, Hub::Interest::kOfAgents, {});
  hub.remove(two.get());
  hub.onConversationChanged(assigned);
  EXPECT_EQ(mine->delivered, 2);
  EXPECT_EQ(two->delivered, 2);
  EXPECT_EQ(all->delivered, 4);
  // Narrowing "all" to a uid replaces it.
  hub.setConversationInterest(all, Hub::Interest::kOfAgents, {"1005"});
  hub.onConversationChanged(assigned);
  EXPECT_EQ(all->delivered, 4);
}

// The cluster relay learns what this node's sessions watch: once per session, before the session
// is registered (it reads the store only after the node subscribed), and once when it goes.
TEST(Hub, SessionInterestIsToldOfEachSessionOnceBeforeItIsRegistered) {
  struct Recorded : SessionInterest {
    Hub* hub = nullptr;
    std::vector<std::string> calls;
    void watch(const AccountId& acc, const std::optional<ConsumerId>& c) override {
      // Not registered yet, and the hub's lock is free (size() takes it).
      calls.push_back("watch " + acc.str() + " " + (c ? c->str() : "*") + " at " +
                      std::to_string(hub->size()));
    }
    void unwatch(const AccountId& acc, const std::optional<ConsumerId>& c) override {
      calls.push_back("unwatch " + acc.str() + " " + (c ? c->str() : "*") + " at " +
                      std::to_string(hub->size()));
    }
  } interest;
  Hub hub;
  interest.hub = &hub;
  hub.setSessionInterest(&interest);
  auto consumer = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto agent = std::make_shared<FakeClient>("a", std::nullopt, "u1");
  auto stranger = std::make_shared<FakeClient>("b", "c2", std::nullopt);
  hub.add(consumer);
  hub.add(consumer);  // registered again (InitConnection after a header login): told once
  hub.add(agent);
  hub.remove(agent.get());
  hub.remove(agent.get());     // twice: told once
  hub.remove(stranger.get());  // never added: not told
  hub.remove(consumer.get());
  EXPECT_EQ(interest.calls, (std::vector<std::string>{"watch a c1 at 0", "watch a * at 2",
                                                      "unwatch a * at 2", "unwatch a c1 at 0"}));
  hub.setSessionInterest(nullptr);
  hub.add(consumer);
  EXPECT_EQ(interest.calls.size(), 4u);
}

// Anonymous consumers must not make the server hold memory after they leave: a profile lives as
// long as its consumer has a session, and the map is empty once every socket closed.
TEST(Hub, ProfilesAreDroppedWithTheConsumersLastSession) {
  Hub hub;
  std::vector<std::shared_ptr<FakeClient>> clients;
  for (int i = 0; i < 400; ++i) {
    auto c = std::make_shared<FakeClient>("a", "c" + std::to_string(i), std::nullopt);
    hub.add(c);
    ASSERT_TRUE(hub.setProfile(AccountId("a"), ConsumerId("c" + std::to_string(i)),
                               std::string(hub.profiles().limits().max_profile_bytes, 'x')));
    clients.push_back(c);
  }
  // A second socket of c0 keeps its profile when the first closes.
  auto c0b = std::make_shared<FakeClient>("a", "c0", std::nullopt);
  hub.add(c0b);
  EXPECT_EQ(hub.profiles().count(), 400u);
  EXPECT_EQ(hub.profiles().bytes(), 400u * hub.profiles().limits().max_profile_bytes);
  for (auto& c : clients) hub.remove(c.get());
  EXPECT_EQ(hub.profiles().count(), 1u);
  EXPECT_TRUE(hub.profiles().get(AccountId("a"), ConsumerId("c0")));
  hub.remove(c0b.get());
  EXPECT_EQ(hub.profiles().count(), 0u);
  EXPECT_EQ(hub.profiles().bytes(), 0u);
  EXPECT_FALSE(hub.profiles().get(AccountId("a"), ConsumerId("c0")));
}

TEST(Hub, ProfileSizeLimitsAtTheEdge) {
  HubOptions o;
  o.profiles = std::make_shared<conversation::ConsumerProfiles>(
      conversation::ConsumerProfiles::Limits{.max_profile_bytes = 100, .max_total_bytes = 250});
  Hub hub(o);
  auto c1 = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto c2 = std::make_shared<FakeClient>("a", "c2", std::nullopt);
  auto c3 = std::make_shared<FakeClient>("a", "c3", std::nullopt);
  for (const auto& c : {c1, c2, c3}) hub.add(c);
  EXPECT_TRUE(hub.setProfile(AccountId("a"), ConsumerId("c1"), std::string(100, 'x')));
  auto big = hub.setProfile(AccountId("a"), ConsumerId("c2"), std::string(101, 'x'));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, ErrorCode::kTooLarge);
  EXPECT_NE(big.error().message.find("at most 100 bytes"), std::string::npos);
  EXPECT_TRUE(hub.setProfile(AccountId("a"), ConsumerId("c2"), std::string(100, 'x')));
  // 250 in all: c3 fits 50, not 51.
  auto full = hub.setProfile(AccountId("a"), ConsumerId("c3"), std::string(51, 'x'));
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, ErrorCode::kLimitExceeded);
  EXPECT_TRUE(hub.setProfile(AccountId("a"), ConsumerId("c3"), std::string(50, 'x')));
  // Replacing a profile counts its new size only.
  EXPECT_TRUE(hub.setProfile(AccountId("a"), ConsumerId("c1"), std::string(10, 'x')));
  EXPECT_EQ(hub.profiles().bytes(), 160u);
  // No profile without a session.
  auto none = hub.setProfile(AccountId("a"), ConsumerId("gone"), "{}");
  ASSERT_FALSE(none);
  EXPECT_EQ(hub.profiles().count(), 3u);
}

TEST(Hub, CloseUserAndCloseAccountRevokeTheirSessionsOnly) {
  Hub hub;
  auto u1 = std::make_shared<FakeClient>("a", std::nullopt, "1001", "b1");
  auto u1b = std::make_shared<FakeClient>("a", std::nullopt, "1001", "b2");
  auto u2 = std::make_shared<FakeClient>("a", std::nullopt, "1002", "b3");
  auto other = std::make_shared<FakeClient>("b", std::nullopt, "1001", "b4");
  auto consumer = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto other_consumer = std::make_shared<FakeClient>("b", "c1", std::nullopt);
  for (const auto& c : {u1, u1b, u2, other, consumer, other_consumer}) hub.add(c);
  hub.closeUser(AccountId("a"), UserId("1001"));
  EXPECT_EQ(u1->revoked, 1);
  EXPECT_EQ(u1b->revoked, 1);
  EXPECT_EQ(u2->revoked, 0);
  EXPECT_EQ(other->revoked, 0);
  EXPECT_EQ(consumer->revoked, 0);
  hub.closeAccount(AccountId("a"));
  EXPECT_EQ(u2->revoked, 1);
  EXPECT_EQ(consumer->revoked, 1);
  EXPECT_EQ(other->revoked, 0);
  EXPECT_EQ(other_consumer->revoked, 0);
}

}  // namespace
}  // namespace parley::server::protocol
