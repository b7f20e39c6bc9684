// BusHealth on the memory store's lease table (FakeClock): which node may hold conversation
// leases when one, or every one, is cut off from the bus.

#include "app/bus_health.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>

#include "common/testing/fake_clock.h"
#include "store/memory/memory_store.h"

namespace parley::app {
namespace {

constexpr TimeMs kBound = 500;
constexpr TimeMs kTtl = 1500;

struct Node {
  std::shared_ptr<std::atomic<bool>> up = std::make_shared<std::atomic<bool>>(true);
  std::unique_ptr<BusHealth> health;
  // One check (what the thread of start() does every lease_ms / 3), then its answer.
  bool ask() {
    health->check();
    return health->mayHoldLeases();
  }
};

class BusHealthTest : public ::testing::Test {
 protected:
  testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_ = store::makeMemoryStore(clock_);
  Node node(const std::string& name) {
    Node n;
    n.health = std::make_unique<BusHealth>(
        *store_->cluster(), clock_, name, [up = n.up] { return up->load(); }, kBound, kTtl);
    return n;
  }
  // One lease round: every node asks, `ms` after the last round.
  void round(TimeMs ms) { clock_.advanceMs(ms); }
};

TEST_F(BusHealthTest, BeforeTheFirstCheckANodeMayHoldLeases) {
  Node a = node("a");
  EXPECT_TRUE(a.health->mayHoldLeases());
  a.up->store(false);
  EXPECT_TRUE(a.health->mayHoldLeases());  // no store statement until a check
  EXPECT_EQ(store_->cluster()->getLease(ConversationId(BusHealth::kKey)).error().code,
            ErrorCode::kNotFound);
}

TEST_F(BusHealthTest, ANodeCutOffWhileAnotherHasTheBusGivesUpAndComesBack) {
  Node a = node("a");
  Node b = node("b");
  EXPECT_TRUE(a.ask());  // a marks the bus up first
  EXPECT_TRUE(b.ask());
  EXPECT_EQ(store_->cluster()->getLease(ConversationId(BusHealth::kKey))->node, "a");

  // a loses its connection: a short reconnection (below the bound) changes nothing.
  a.up->store(false);
  round(100);
  EXPECT_TRUE(a.ask());
  EXPECT_TRUE(b.ask());
  // Past the bound: a leaves the mark (it cannot know yet that b has the bus) ...
  round(kBound);
  EXPECT_TRUE(a.ask());
  // ... b, which has the bus, takes it at its next round, and then a gives up.
  EXPECT_TRUE(b.ask());
  EXPECT_EQ(store_->cluster()->getLease(ConversationId(BusHealth::kKey))->node, "b");
  round(kBound);
  EXPECT_FALSE(a.ask());
  EXPECT_TRUE(b.ask());
  round(kBound);
  EXPECT_FALSE(a.ask());  // as long as it is cut off and b renews

  // Connected again: a may hold leases at once (b keeps the mark).
  a.up->store(true);
  round(kBound);
  EXPECT_TRUE(a.ask());
  EXPECT_TRUE(b.ask());
  EXPECT_EQ(store_->cluster()->getLease(ConversationId(BusHealth::kKey))->node, "b");
}

// NATS down for everyone: no node gives anything up (each goes on with what it holds), however
// long it lasts; nobody is left holding the mark.
TEST_F(BusHealthTest, WhenNoNodeHasTheBusNobodyGivesUp) {
  Node a = node("a");
  Node b = node("b");
  EXPECT_TRUE(a.ask());
  EXPECT_TRUE(b.ask());
  a.up->store(false);
  b.up->store(false);
  for (int i = 0; i < 20; ++i) {
    round(kBound);
    EXPECT_TRUE(a.ask()) << "round " << i;
    EXPECT_TRUE(b.ask()) << "round " << i;
  }
  auto mark = store_->cluster()->getLease(ConversationId(BusHealth::kKey));
  ASSERT_TRUE(mark);
  EXPECT_LE(mark->expires_at, clock_.nowMs());
  // b's bus comes back first: a, still cut off, now gives up.
  b.up->store(true);
  round(kBound);
  EXPECT_TRUE(b.ask());
  EXPECT_FALSE(a.ask());
}

// A node that had the mark and died (its lease expires after the ttl): the mark goes to a node
// with the bus, and a node cut off meanwhile keeps its conversations until then.
TEST_F(BusHealthTest, TheMarkOfADeadNodeExpires) {
  Node a = node("a");
  Node b = node("b");
  Node c = node("c");
  EXPECT_TRUE(a.ask());  // a holds the mark, then dies
  EXPECT_TRUE(b.ask());
  c.up->store(false);
  EXPECT_TRUE(c.ask());  // disconnected, not for the bound yet
  round(kBound);
  EXPECT_FALSE(c.ask());  // the mark is a's, unexpired: c gives up
  round(kTtl);
  EXPECT_TRUE(c.ask());  // a's mark expired, b has not taken it yet
  EXPECT_TRUE(b.ask());
  EXPECT_EQ(store_->cluster()->getLease(ConversationId(BusHealth::kKey))->node, "b");
  round(kBound);
  EXPECT_FALSE(c.ask());
}

}  // namespace
}  // namespace parley::app
