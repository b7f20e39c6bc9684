// Recovery against the real SQLite store: everything the engine acknowledged survives closing and
// reopening the database file, and the engine resumes from it.

#include <gtest/gtest.h>

#include <filesystem>
#include <future>

#include "common/random.h"
#include "common/testing/call.h"
#include "common/testing/fake_clock.h"
#include "common/testing/temp_dir.h"
#include "conversation/conversation_engine.h"
#include "store/sqlite/sqlite_store.h"

namespace parley::conversation {
namespace {

using namespace std::chrono_literals;

using parley::testing::call;

class Rings final : public ConversationListener {
 public:
  void onRingOffered(const RingOffered& e) override {
    std::lock_guard lock(mu_);
    rings_.push_back(e.ring);
    cv_.notify_all();
  }
  std::optional<Ring> wait(const ConversationId& conv) {
    std::unique_lock lock(mu_);
    std::optional<Ring> out;
    cv_.wait_for(lock, 5s, [&] {
      for (const auto& r : rings_)
        if (r.conversation == conv) out = r;
      return out.has_value();
    });
    return out;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Ring> rings_;
};

TEST(EngineSqlite, RecoversFromTheDatabaseFile) {
  parley::testing::TempDir dir;
  const std::string path = dir.file("parley.db");
  testing::FakeClock clock;
  const AccountId acc("1000");
  Options opts;
  opts.tick_interval_ms = 0;

  ConversationId assigned_id;
  ConversationId waiting_id;
  Actor agent;
  SkillId sales;
  {
    auto db = store::openSqliteStore(path, clock);
    ASSERT_TRUE(db) << db.error().message;
    ASSERT_TRUE((*db)->accounts().createAccount(store::Account{acc, "acme"}));
    auto skill = (*db)->accounts().createSkill(store::Skill{acc, SkillId(), "sales", 0});
    ASSERT_TRUE(skill);
    sales = skill->id;
    store::User u;
    u.account = acc;
    u.login_name = "agent";
    u.pid = randomUuid();
    u.skills = {sales};
    u.roles = {store::Role::kAgent};
    u.max_open_conversations = 1;
    auto user = (*db)->accounts().createUser(u);
    ASSERT_TRUE(user);
    agent = Actor::ofAgent(acc, user->id, user->pid);

    auto engine = makeConversationService(**db, clock, opts);
    Rings rings;
    auto sub = engine->subscribe(rings);
    ASSERT_TRUE(engine->recover());
    ConversationRequest req;
    req.account = acc;
    req.consumer = ConsumerId("alice");
    req.skill = sales;
    req.ttr_type = store::TtrType::kUrgent;
    auto c1 = call<store::Conversation>([&](auto cb) { engine->requestConversation(req, cb); });
    ASSERT_TRUE(c1) << c1.error().message;
    assigned_id = c1->id;
    req.consumer = ConsumerId("bob");
    req.ttr_type = store::TtrType::kCustom;
    req.ttr_value_s = 7200;
    auto c2 = call<store::Conversation>([&](auto cb) { engine->requestConversation(req, cb); });
    ASSERT_TRUE(c2);
    waiting_id = c2->id;
    ASSERT_TRUE(call<store::AgentState>([&](auto cb) {
      engine->setAgentState(acc, agent.user, store::Availability::kOnline, cb);
    }));
    auto ring = rings.wait(assigned_id);
    ASSERT_TRUE(ring);
    ASSERT_TRUE(
        call<store::Conversation>([&](auto cb) { engine->acceptRing(agent, ring->ring_id, cb); }));
    for (int i = 0; i < 5; ++i) {
      PublishRequest p;
      p.actor = i % 2 ? agent : Actor::ofConsumer(acc, ConsumerId("alice"));
      p.conversation = assigned_id;
      p.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"m)" +
                     std::to_string(i) + R"("})";
      auto r = call<Published>([&](auto cb) { engine->publish(p, cb); });
      ASSERT_TRUE(r) << r.error().message;
      EXPECT_EQ(r->sequence, i);
    }
  }

  // Reopen the file: a new process.
  auto db = store::openSqliteStore(path, clock);
  ASSERT_TRUE(db) << db.error().message;
  auto engine = makeConversationService(**db, clock, opts);
  Rings rings;
  auto sub = engine->subscribe(rings);
  ASSERT_TRUE(engine->recover());
  auto q = engine->queues(acc, sales);
  ASSERT_EQ(q.size(), 1u);
  ASSERT_EQ(q[0].entries.size(), 1u);
  EXPECT_EQ(q[0].entries[0].conversation, waiting_id);
  auto infos = engine->agents(acc);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].open_assigned, 1);
  EXPECT_EQ(infos[0].availability, store::Availability::kOffline);

  PublishRequest p;
  p.actor = agent;
  p.conversation = assigned_id;
  p.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"after restart"})";
  auto r = call<Published>([&](auto cb) { engine->publish(p, cb); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->sequence, 5);
  auto msgs = call<std::vector<store::Message>>(
      [&](auto cb) { engine->listMessages(acc, assigned_id, 0, 100, cb); });
  ASSERT_TRUE(msgs);
  ASSERT_EQ(msgs->size(), 6u);
  EXPECT_EQ((*msgs)[1].originator_id, "1000." + agent.user.str());

  // Closing the assigned one frees the agent, who then gets the waiting one.
  ASSERT_TRUE(call<store::AgentState>(
      [&](auto cb) { engine->setAgentState(acc, agent.user, store::Availability::kOnline, cb); }));
  auto closed = call<store::Conversation>(
      [&](auto cb) { engine->updateConversation(agent, assigned_id, {CloseField{}}, cb); });
  ASSERT_TRUE(closed);
  EXPECT_EQ(closed->close_reason, store::CloseReason::kAgent);
  ASSERT_TRUE(rings.wait(waiting_id));
  sub.reset();
  engine.reset();
  db->reset();
}

}  // namespace
}  // namespace parley::conversation
