// ClusterRouting: two nodes (two engines in cluster mode on one memory store, one bus, each
// with its forwarder and its routing): a conversation held by node a is offered to an agent
// whose session is on node b; node b's sessions get the ring as a local one, the agent's accept
// and reject on node b are applied by node a, and the agent then publishes into the
// conversation through node b.

#include "app/cluster_routing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "app/conversation_forwarder.h"
#include "common/json.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
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

// A node's protocol sessions, as the routing hands rings to them.
class Sessions final : public conv::ConversationListener {
 public:
  void onRingOffered(const conv::RingOffered& e) override {
    std::lock_guard lock(mu_);
    offered_.push_back(e.ring);
    cv_.notify_all();
  }
  void onRingEnded(const conv::RingEnded& e) override {
    std::lock_guard lock(mu_);
    ended_.push_back(e);
    cv_.notify_all();
  }
  std::optional<conv::Ring> waitOffered(const ConversationId& c) {
    std::unique_lock lock(mu_);
    std::optional<conv::Ring> out;
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& r : offered_)
        if (r.conversation == c) out = r;
      return out.has_value();
    });
    return out;
  }
  std::optional<conv::RingEnded> waitEnded(const std::string& ring_id) {
    std::unique_lock lock(mu_);
    std::optional<conv::RingEnded> out;
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& e : ended_)
        if (e.ring.ring_id == ring_id) out = e;
      return out.has_value();
    });
    return out;
  }
  std::size_t offered() {
    std::lock_guard lock(mu_);
    return offered_.size();
  }
  std::size_t ended(const std::string& ring_id) {
    std::lock_guard lock(mu_);
    return static_cast<std::size_t>(std::ranges::count_if(
        ended_, [&](const conv::RingEnded& e) { return e.ring.ring_id == ring_id; }));
  }

  // The conversations of the rings offered so far, in offer order.
  std::vector<ConversationId> offeredConversations() {
    std::lock_guard lock(mu_);
    std::vector<ConversationId> out;
    for (const auto& r : offered_) out.push_back(r.conversation);
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<conv::Ring> offered_;
  std::vector<conv::RingEnded> ended_;
};

struct Node {
  std::unique_ptr<conv::ConversationService> engine;
  std::unique_ptr<ConversationForwarder> forwarder;
  std::unique_ptr<ClusterRouting> routing;
  Sessions sessions;
  conv::Subscription sub;
  conv::Subscription sessions_sub;  // the engine's local rings reach the sessions too
};

// Whether `user` is the conversation's active assigned agent.
bool hasActiveAssignedAgent(const store::Conversation& c, const UserId& user) {
  return std::ranges::any_of(c.participants, [&](const store::Participant& p) {
    return p.role == store::ParticipantRole::kAssignedAgent &&
           p.state == store::ParticipantState::kActive && p.id == user.str();
  });
}

class ClusterRoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = store::makeMemoryStore(clock_);
    ASSERT_TRUE(store_->accounts().createAccount(store::Account{kAcc, "acme", 300, 600, 3600, 0}));
    auto skill = store_->accounts().createSkill(store::Skill{kAcc, SkillId(), "sales", 0});
    ASSERT_TRUE(skill);
    sales_ = skill->id;
    store::User u;
    u.account = kAcc;
    u.login_name = "agent";
    u.pid = "pid-agent";
    u.roles = {store::Role::kAgent};
    u.skills = {sales_};
    u.max_open_conversations = 2;
    auto user = store_->accounts().createUser(u);
    ASSERT_TRUE(user);
    agent_ = conv::Actor::ofAgent(kAcc, user->id, user->pid);
    start(a_, "node-a");
    start(b_, "node-b");
  }
  void TearDown() override {
    for (Node* n : {&a_, &b_, &c_}) {
      n->sub.reset();
      n->sessions_sub.reset();
      if (n->routing) n->routing->stop();
      n->forwarder.reset();
      n->routing.reset();
      n->engine.reset();
    }
  }

  void start(Node& n, const std::string& name) {
    n.engine = conv::makeConversationService(*store_, clock_, node(name));
    ASSERT_TRUE(n.engine->recover());
    ForwarderOptions fo;
    fo.node = name;
    fo.retry_pause = 20ms;
    auto* e = n.engine.get();
    n.forwarder = std::make_unique<ConversationForwarder>(
        *e, *store_->cluster(), *bus_,
        [e](const ConversationId& id) { return conv::holdsConversation(*e, id); }, fo);
    ASSERT_TRUE(n.forwarder->start());
    ClusterRoutingOptions ro;
    ro.node = name;
    ro.announce_period = 20ms;
    ro.agent_ttl = 200ms;
    n.routing = std::make_unique<ClusterRouting>(*e, *bus_, ro);
    n.forwarder->setRouting(n.routing.get());
    ASSERT_TRUE(n.routing->start(n.sessions));
    n.sub = e->subscribe(*n.routing);
    n.sessions_sub = e->subscribe(n.sessions);
  }

  Result<store::Conversation> requestOn(Node& n, const std::string& consumer,
                                        store::TtrType ttr = store::TtrType::kNormal) {
    return call<store::Conversation>([&](auto cb) {
      conv::ConversationRequest req;
      req.account = kAcc;
      req.consumer = ConsumerId(consumer);
      req.skill = sales_;
      req.ttr_type = ttr;
      n.forwarder->requestConversation(req, cb);
    });
  }
  // Waits until `n` applied `count` more announcements than `from` (the other node's).
  bool waitAnnouncements(Node& n, std::uint64_t from, std::uint64_t count) {
    for (int i = 0; i < 500; ++i) {
      if (n.routing->announcementsReceived() >= from + count) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  parley::testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<bus::Bus> bus_ = bus::makeLocalBus();
  SkillId sales_;
  conv::Actor agent_;
  Node a_, b_;
  Node c_;  // started by the tests that need a third node
};

TEST_F(ClusterRoutingTest, AConversationOnOneNodeIsRungAcceptedAndAnsweredByAnAgentOnAnother) {
  auto c = requestOn(a_, "consumer-1");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE(conv::holdsConversation(*a_.engine, c->id));

  // The agent's session is on node b: its state is set there, and node b announces it.
  ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
    b_.forwarder->setAgentState(kAcc, agent_.user, store::Availability::kOnline, cb);
  }));
  auto ring = b_.sessions.waitOffered(c->id);
  ASSERT_TRUE(ring) << "node b's sessions get node a's ring";
  EXPECT_EQ(ring->user, agent_.user);
  EXPECT_EQ(ring->state, conv::RingState::kWaiting);
  EXPECT_EQ(a_.sessions.offered(), 0u);
  auto replay = b_.forwarder->ringsForAgent(kAcc, agent_.user);
  ASSERT_EQ(replay.size(), 1u);
  EXPECT_EQ(replay[0].ring_id, ring->ring_id);
  EXPECT_GE(a_.routing->announcementsReceived(), 1u);

  // The accept on node b is applied by node a (which holds the conversation).
  auto accepted = call<store::Conversation>(
      [&](auto cb) { b_.forwarder->acceptRing(agent_, ring->ring_id, cb); });
  ASSERT_TRUE(accepted) << accepted.error().message;
  EXPECT_TRUE(hasActiveAssignedAgent(*accepted, agent_.user));
  auto stored = store_->conversations().getConversation(kAcc, c->id);
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->participants.size(), accepted->participants.size());
  auto end = b_.sessions.waitEnded(ring->ring_id);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->reason, conv::RingEndReason::kAccepted);
  EXPECT_TRUE(b_.forwarder->ringsForAgent(kAcc, agent_.user).empty());

  // The agent and the consumer exchange messages: the agent's through node b, forwarded.
  conv::PublishRequest from_agent;
  from_agent.actor = agent_;
  from_agent.conversation = c->id;
  from_agent.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"hi"})";
  auto sent = call<conv::Published>([&](auto cb) { b_.forwarder->publish(from_agent, cb); });
  ASSERT_TRUE(sent) << sent.error().message;
  conv::PublishRequest from_consumer = from_agent;
  from_consumer.actor = conv::Actor::ofConsumer(kAcc, ConsumerId("consumer-1"));
  from_consumer.event_json =
      R"({"type":"ContentEvent","contentType":"text/plain","message":"hello"})";
  ASSERT_TRUE(call<conv::Published>([&](auto cb) { a_.forwarder->publish(from_consumer, cb); }));
  auto msgs = store_->conversations().listMessages(c->id, 0, 10);
  ASSERT_TRUE(msgs);
  ASSERT_EQ(msgs->size(), 2u);
  EXPECT_EQ((*msgs)[0].originator_id, agent_.oldId());
}

TEST_F(ClusterRoutingTest, ARejectOnTheAgentsNodeIsAppliedByTheOwner) {
  ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
    b_.forwarder->setAgentState(kAcc, agent_.user, store::Availability::kOnline, cb);
  }));
  auto c = requestOn(a_, "consumer-2");
  ASSERT_TRUE(c);
  auto ring = b_.sessions.waitOffered(c->id);
  ASSERT_TRUE(ring);
  ASSERT_TRUE(call<void>([&](auto cb) { b_.forwarder->rejectRing(agent_, ring->ring_id, cb); }));
  auto end = b_.sessions.waitEnded(ring->ring_id);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->reason, conv::RingEndReason::kRejected);
  // Still waiting on node a, not offered to the agent again.
  auto queues = a_.engine->queues(kAcc, sales_);
  ASSERT_EQ(queues.size(), 1u);
  ASSERT_EQ(queues[0].entries.size(), 1u);
  EXPECT_TRUE(queues[0].entries[0].ringing.empty());
  // A ring this node's engine never offered, nor another node: NotFound from the engine.
  auto unknown = call<void>([&](auto cb) { b_.forwarder->rejectRing(agent_, "nope", cb); });
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, ErrorCode::kNotFound);
}

TEST_F(ClusterRoutingTest, ANodeThatStopsAnnouncingLosesItsRingsAndTheConversationWaitsAgain) {
  ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
    b_.forwarder->setAgentState(kAcc, agent_.user, store::Availability::kOnline, cb);
  }));
  auto c = requestOn(a_, "consumer-3");
  ASSERT_TRUE(c);
  ASSERT_TRUE(b_.sessions.waitOffered(c->id));
  // Node b stops (as a dead node: nothing more from it).
  b_.sub.reset();
  b_.routing->stop();
  clock_.advanceMs(201);  // past the announcement's 200 ms
  a_.engine->tick();
  auto queues = a_.engine->queues(kAcc, sales_);
  ASSERT_EQ(queues.size(), 1u);
  ASSERT_EQ(queues[0].entries.size(), 1u);
  EXPECT_TRUE(queues[0].entries[0].ringing.empty());
}

// One agent with a session on node a and one on node b, a conversation held by node c: both
// nodes' sessions get the one ring, the accept through node b assigns it, node a's sessions
// see the ring end (ACCEPTED), and the second socket's accept gets what it gets on one node
// (a retried accept: the conversation).
TEST_F(ClusterRoutingTest, AnAgentOnTwoNodesIsRungOnBothAndTheAcceptOnEitherWins) {
  start(c_, "node-c");
  auto c = requestOn(c_, "consumer-4");
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE(conv::holdsConversation(*c_.engine, c->id));
  for (Node* n : {&a_, &b_})
    ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
      n->forwarder->setAgentState(kAcc, agent_.user, store::Availability::kOnline, cb);
    }));
  auto on_a = a_.sessions.waitOffered(c->id);
  auto on_b = b_.sessions.waitOffered(c->id);
  ASSERT_TRUE(on_a) << "node a's sessions get node c's ring";
  ASSERT_TRUE(on_b) << "node b's sessions get node c's ring";
  EXPECT_EQ(on_a->ring_id, on_b->ring_id);
  EXPECT_EQ(c_.sessions.offered(), 0u);
  EXPECT_EQ(a_.forwarder->ringsForAgent(kAcc, agent_.user).size(), 1u);
  EXPECT_EQ(b_.forwarder->ringsForAgent(kAcc, agent_.user).size(), 1u);

  auto accepted = call<store::Conversation>(
      [&](auto cb) { b_.forwarder->acceptRing(agent_, on_b->ring_id, cb); });
  ASSERT_TRUE(accepted) << accepted.error().message;
  EXPECT_TRUE(hasActiveAssignedAgent(*accepted, agent_.user));
  for (Node* n : {&a_, &b_}) {
    auto end = n->sessions.waitEnded(on_a->ring_id);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->reason, conv::RingEndReason::kAccepted);
    EXPECT_TRUE(n->forwarder->ringsForAgent(kAcc, agent_.user).empty());
  }
  // The agent's socket on node a accepts the same ring.
  auto again = call<store::Conversation>(
      [&](auto cb) { a_.forwarder->acceptRing(agent_, on_a->ring_id, cb); });
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->id, c->id);
}

// The owner (node a) has a session of the agent too, node b another: the ring reaches both; a
// reject on node b ends it for both (as a reject on one of two sockets does on one node), and
// a second reject gets the one-node answer (Conflict: the ring is REJECTED).
TEST_F(ClusterRoutingTest, AnAgentOnTheOwnerAndAnotherNodeIsRungOnBothAndARejectEndsBoth) {
  for (Node* n : {&a_, &b_})
    ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
      n->forwarder->setAgentState(kAcc, agent_.user, store::Availability::kOnline, cb);
    }));
  auto c = requestOn(a_, "consumer-5");
  ASSERT_TRUE(c) << c.error().message;
  auto on_a = a_.sessions.waitOffered(c->id);
  auto on_b = b_.sessions.waitOffered(c->id);
  ASSERT_TRUE(on_a) << "the owner's own sessions get the ring";
  ASSERT_TRUE(on_b) << "node b's sessions get the owner's ring";
  EXPECT_EQ(on_a->ring_id, on_b->ring_id);
  ASSERT_TRUE(call<void>([&](auto cb) { b_.forwarder->rejectRing(agent_, on_b->ring_id, cb); }));
  for (Node* n : {&a_, &b_}) {
    auto end = n->sessions.waitEnded(on_a->ring_id);
    ASSERT_TRUE(end);
    EXPECT_EQ(end->reason, conv::RingEndReason::kRejected);
    EXPECT_EQ(n->sessions.ended(on_a->ring_id), 1u);
  }
  auto queues = a_.engine->queues(kAcc, sales_);
  ASSERT_EQ(queues.size(), 1u);
  ASSERT_EQ(queues[0].entries.size(), 1u);
  EXPECT_TRUE(queues[0].entries[0].ringing.empty());
  auto twice = call<void>([&](auto cb) { a_.forwarder->rejectRing(agent_, on_a->ring_id, cb); });
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, ErrorCode::kConflict);
  auto from_b = call<void>([&](auto cb) { b_.forwarder->rejectRing(agent_, on_b->ring_id, cb); });
  ASSERT_FALSE(from_b);
  EXPECT_EQ(from_b.error().code, ErrorCode::kConflict);
}

// One TTR order across owners, over the bus: node b's own conversation came first but is due
// later than node a's, which node b knows from node a's announcements (their queue heads). The
// agent's session is on node b: node b does not ring it for its own conversation before node a
// rang it for the earlier one (through node b), and rings it once node a no longer announces an
// earlier one waiting.
TEST_F(ClusterRoutingTest, TheAgentIsRungForTheEarliestDueConversationOfEitherOwnerFirst) {
  auto later = requestOn(b_, "consumer-later", store::TtrType::kNormal);
  ASSERT_TRUE(later) << later.error().message;
  auto earlier = requestOn(a_, "consumer-earlier", store::TtrType::kUrgent);
  ASSERT_TRUE(earlier) << earlier.error().message;
  ASSERT_TRUE(conv::holdsConversation(*b_.engine, later->id));
  ASSERT_TRUE(conv::holdsConversation(*a_.engine, earlier->id));
  ASSERT_LT(earlier->ttr_due_at, later->ttr_due_at);
  // Node b has heard an announcement of node a made after both were queued.
  ASSERT_TRUE(waitAnnouncements(b_, b_.routing->announcementsReceived(), 2));
  auto ringing = [](Node& n, const ConversationId& id) {
    for (const auto& q : n.engine->queues(kAcc, std::nullopt))
      for (const auto& e : q.entries)
        if (e.conversation == id) return !e.ringing.empty();
    return false;
  };

  // The agent comes ONLINE on node b: node b's dispatch (done before the call returns) does not
  // ring it for the later conversation — unless node a rang it for the earlier one meanwhile.
  ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
    b_.forwarder->setAgentState(kAcc, agent_.user, store::Availability::kOnline, cb);
  }));
  EXPECT_TRUE(!ringing(b_, later->id) || ringing(a_, earlier->id));
  ASSERT_TRUE(b_.sessions.waitOffered(earlier->id));
  bool rung = false;
  for (int i = 0; i < 500 && !rung; ++i) {
    rung = ringing(b_, later->id);
    if (!rung) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(rung) << "node b rings the agent once node a's earlier conversation is rung";
}

}  // namespace
}  // namespace parley::app
