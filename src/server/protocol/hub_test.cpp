#include "server/protocol/hub.h"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

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

conversation::MessageAdded messageOf(const std::string& acc, const std::string& consumer) {
  conversation::MessageAdded m;
  m.conversation.account = AccountId(acc);
  m.conversation.consumer = ConsumerId(consumer);
  return m;
}

TEST(Hub, ConversationEventsReachTheirConsumerAndTheAccountsAgentsOnly) {
  Hub hub;
  auto c1 = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto c1b = std::make_shared<FakeClient>("a", "c1", std::nullopt);  // a second socket
  auto c2 = std::make_shared<FakeClient>("a", "c2", std::nullopt);
  auto agent = std::make_shared<FakeClient>("a", std::nullopt, "1001", "bearer-1");
  auto other_acc_agent = std::make_shared<FakeClient>("b", std::nullopt, "1001");
  auto other_acc_c1 = std::make_shared<FakeClient>("b", "c1", std::nullopt);
  for (const auto& c : {c1, c1b, c2, agent, other_acc_agent, other_acc_c1}) hub.add(c);
  EXPECT_EQ(hub.size(), 6u);

  hub.onMessageAdded(messageOf("a", "c1"));
  EXPECT_EQ(c1->delivered, 1);
  EXPECT_EQ(c1b->delivered, 1);
  EXPECT_EQ(c2->delivered, 0);
  EXPECT_EQ(agent->delivered, 1);
  EXPECT_EQ(other_acc_agent->delivered, 0);
  EXPECT_EQ(other_acc_c1->delivered, 0);

  // Rings go to the rung agent only, never to consumers.
  conversation::RingOffered ring;
  ring.ring.account = AccountId("a");
  ring.ring.user = UserId("1002");
  hub.onRingOffered(ring);
  EXPECT_EQ(agent->delivered, 1);
  ring.ring.user = UserId("1001");
  hub.onRingOffered(ring);
  EXPECT_EQ(agent->delivered, 2);
  EXPECT_EQ(c1->delivered, 1);

  EXPECT_EQ(hub.sessionsOfUser(AccountId("a"), UserId("1001")), 1);
  hub.revokeBearer("bearer-1");
  EXPECT_EQ(agent->revoked, 1);
  EXPECT_EQ(c1->revoked, 0);

  // Removing one socket of a consumer keeps the other; removal is by identity.
  hub.remove(c1.get());
  hub.onMessageAdded(messageOf("a", "c1"));
  EXPECT_EQ(c1->delivered, 1);
  EXPECT_EQ(c1b->delivered, 2);
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
  EXPECT_EQ(c2->delivered, 0);
}

// The engine's shared message event reaches every session as that same object: the hub neither
// copies the message nor the conversation snapshot.
TEST(Hub, SessionsGetTheEnginesSharedMessageEventItself) {
  Hub hub;
  auto c1 = std::make_shared<FakeClient>("a", "c1", std::nullopt);
  auto agent = std::make_shared<FakeClient>("a", std::nullopt, "1001");
  hub.add(c1);
  hub.add(agent);
  auto added = std::make_shared<const conversation::MessageAdded>(messageOf("a", "c1"));
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

}  // namespace
}  // namespace parley::server::protocol
