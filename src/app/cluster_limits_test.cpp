#include "app/cluster_limits.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/testing/fake_clock.h"
#include "server/login_throttle.h"

namespace parley::app {
namespace {

// Two nodes on one bus (the in-process bus delivers broadcasts to every listener, as core NATS
// delivers them to every node).
class ClusterLimitsTest : public ::testing::Test {
 protected:
  ClusterLimitsTest() {
    EXPECT_TRUE(a_->start());
    EXPECT_TRUE(b_->start());
  }
  std::unique_ptr<bus::Bus> bus_ = bus::makeLocalBus();
  std::shared_ptr<ClusterLimits> a_ = std::make_shared<ClusterLimits>(*bus_, "node-a");
  std::shared_ptr<ClusterLimits> b_ = std::make_shared<ClusterLimits>(*bus_, "node-b");
};

TEST_F(ClusterLimitsTest, EventsReachTheReceiverOfTheSameNameOnTheOtherNodesOnly) {
  std::vector<std::string> heard_a, heard_b, heard_b_other;
  a_->attach("login", [&](std::string_view e) { heard_a.emplace_back(e); });
  b_->attach("login", [&](std::string_view e) { heard_b.emplace_back(e); });
  b_->attach("oauth", [&](std::string_view e) { heard_b_other.emplace_back(e); });
  a_->publish("login", "one");
  a_->publish("login", "two");
  EXPECT_EQ(heard_b, (std::vector<std::string>{"one", "two"}));
  EXPECT_TRUE(heard_a.empty());  // a node never counts its own event twice
  EXPECT_TRUE(heard_b_other.empty());
  EXPECT_EQ(b_->received(), 2u);
  b_->detach("login");
  a_->publish("login", "three");
  EXPECT_EQ(heard_b.size(), 2u);
  b_->stop();
  a_->publish("oauth", "four");
  EXPECT_TRUE(heard_b_other.empty());
}

TEST_F(ClusterLimitsTest, MalformedBroadcastsAreDropped) {
  int heard = 0;
  b_->attach("login", [&](std::string_view) { ++heard; });
  for (const char* bad : {"", "x", "[]", "{\"origin\":\"node-a\"}", "{\"event\":\"e\"}",
                          "{\"origin\":1,\"event\":\"e\"}", "{\"origin\":\"node-a\",\"event\":{}}"})
    ASSERT_TRUE(bus_->broadcast("parley-limits.login", bad));
  EXPECT_EQ(heard, 0);
  ASSERT_TRUE(bus_->broadcast("parley-limits.login", R"({"origin":"node-a","event":"e"})"));
  EXPECT_EQ(heard, 1);
}

TEST_F(ClusterLimitsTest, LoginFailuresOnOneNodeThrottleTheOther) {
  testing::FakeClock clock;
  server::LoginThrottleOptions oa, ob;
  oa.peers = a_;
  ob.peers = b_;
  server::LoginThrottle ta(clock, oa), tb(clock, ob);
  for (int i = 0; i < 5; ++i) {
    auto adm = ta.admit("acc", "ann", "10.0.0.1");
    ASSERT_TRUE(std::holds_alternative<server::LoginThrottle::Admission>(adm)) << i;
    ta.failed(std::get<server::LoginThrottle::Admission>(adm));
  }
  auto refused = tb.admit("acc", "ann", "10.0.0.2");
  ASSERT_TRUE(std::holds_alternative<server::LoginThrottle::Denial>(refused));
  EXPECT_EQ(tb.peerEvents(), 5u);
  EXPECT_NE(b_->prometheusText().find("parley_cluster_limit_events_received_total 5"),
            std::string::npos);
}

}  // namespace
}  // namespace parley::app
