// NodePresence on the memory store's lease table (FakeClock).

#include "app/node_presence.h"

#include <gtest/gtest.h>

#include "common/testing/fake_clock.h"
#include "server/net.h"
#include "store/memory/memory_store.h"

namespace parley::app {
namespace {

using namespace std::chrono_literals;

class NodePresenceTest : public ::testing::Test {
 protected:
  testing::FakeClock clock_;
  std::unique_ptr<store::Store> store_ = store::makeMemoryStore(clock_);
  store::ClusterStore& cluster() { return *store_->cluster(); }
  Result<std::unique_ptr<NodePresence>> start(const std::string& node, bool bus) {
    return NodePresence::start(cluster(), clock_, node, bus, 3000ms);
  }
};

TEST(DefaultNodeName, IsTheHostNameAndThePortOfTheFirstListener) {
  EXPECT_EQ(defaultNodeName("box", "127.0.0.1:8080", "127.0.0.1:8443"), "box:8080");
  EXPECT_EQ(defaultNodeName("box", "", "0.0.0.0:8443"), "box:8443");
  EXPECT_EQ(defaultNodeName("box", "[::1]:9000", ""), "box:9000");
  EXPECT_EQ(defaultNodeName("box", "", ""), "box");
}

// Port 0 is named after the port the listener was given, bound before the node is named.
TEST(DefaultNodeName, TakesThePortOfAListenerBoundAhead) {
  auto bound = server::bindListenSocket("127.0.0.1:0");
  ASSERT_TRUE(bound) << bound.error().message;
  const std::string& host = (*bound)->host();
  ASSERT_TRUE(host.starts_with("127.0.0.1:")) << host;
  const std::string port = host.substr(host.rfind(':') + 1);
  EXPECT_NE(port, "0");
  EXPECT_EQ(defaultNodeName("box", host, ""), "box:" + port);
  // The port stays taken until the socket is closed.
  auto again = server::bindListenSocket(host);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(again.error().message.find(host), std::string::npos) << again.error().message;
  auto bad = server::bindListenSocket("no-port");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalid);
}

TEST_F(NodePresenceTest, NodesWithABusShareTheStore) {
  auto a = start("a", true);
  auto b = start("b", true);
  ASSERT_TRUE(a && b);
  // A node without a bus is refused while they run, naming what to do.
  auto solo = start("c", false);
  ASSERT_FALSE(solo);
  EXPECT_EQ(solo.error().code, ErrorCode::kConflict);
  EXPECT_NE(solo.error().message.find("--bus"), std::string::npos);
}

TEST_F(NodePresenceTest, ANodeWithoutABusIsAloneUntilItStopsOrItsLeaseExpires) {
  auto solo = start("a", false);
  ASSERT_TRUE(solo);
  auto second = start("b", false);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("node a"), std::string::npos) << second.error().message;
  auto bus = start("c", true);
  ASSERT_FALSE(bus);
  EXPECT_EQ(bus.error().code, ErrorCode::kConflict);
  // The same node restarting is itself.
  solo->reset();
  EXPECT_TRUE(start("b", false));  // released on stop
}

TEST_F(NodePresenceTest, AKilledNodesPresenceExpires) {
  ASSERT_TRUE(cluster().acquireLease(ConversationId(NodePresence::kSoloKey), "dead", 3000));
  EXPECT_FALSE(start("b", true));
  clock_.advanceMs(3001);
  EXPECT_TRUE(start("b", true));
}

}  // namespace
}  // namespace parley::app
