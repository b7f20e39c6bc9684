#include "server/login_throttle.h"

#include <gtest/gtest.h>

#include "common/testing/fake_clock.h"
#include "common/testing/linked_limit_peers.h"

namespace parley::server {
namespace {

using std::chrono::milliseconds;

bool admitted(const std::variant<LoginThrottle::Admission, LoginThrottle::Denial>& v) {
  return std::holds_alternative<LoginThrottle::Admission>(v);
}
milliseconds retryAfter(const std::variant<LoginThrottle::Admission, LoginThrottle::Denial>& v) {
  return std::get<LoginThrottle::Denial>(v).retry_after;
}

class LoginThrottleTest : public ::testing::Test {
 protected:
  // Fails one attempt of `user` from `addr`; false when it was refused instead.
  bool fail(const std::string& user, const std::string& addr = "10.0.0.1") {
    auto a = throttle_.admit("acc", user, addr);
    if (!admitted(a)) return false;
    throttle_.failed(std::get<LoginThrottle::Admission>(a));
    return true;
  }

  testing::FakeClock clock_;
  LoginThrottleOptions opts_;
  LoginThrottle throttle_{clock_, opts_};
};

TEST_F(LoginThrottleTest, FreeFailuresThenDoublingBackoffThenLockout) {
  // Defaults: 5 free failures per user.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fail("ann")) << i;
  // The 5th failure started a 1 s backoff.
  auto refused = throttle_.admit("acc", "ann", "10.0.0.1");
  ASSERT_FALSE(admitted(refused));
  EXPECT_EQ(retryAfter(refused), milliseconds(1000));
  EXPECT_NE(std::get<LoginThrottle::Denial>(refused).message.find("for this user"),
            std::string::npos);
  clock_.advanceMs(999);
  EXPECT_FALSE(admitted(throttle_.admit("acc", "ann", "10.0.0.1")));
  clock_.advanceMs(1);
  // Each further failure doubles the wait: 2 s, 4 s, 8 s, 16 s.
  std::int64_t wait = 2000;
  for (int failures = 6; failures < 10; ++failures) {
    ASSERT_TRUE(fail("ann")) << failures;
    auto r = throttle_.admit("acc", "ann", "10.0.0.1");
    ASSERT_FALSE(admitted(r));
    EXPECT_EQ(retryAfter(r), milliseconds(wait)) << failures;
    clock_.advanceMs(wait);
    wait *= 2;
  }
  // The 10th consecutive failure locks the user for 15 minutes.
  ASSERT_TRUE(fail("ann"));
  auto locked = throttle_.admit("acc", "ann", "10.0.0.1");
  ASSERT_FALSE(admitted(locked));
  EXPECT_EQ(retryAfter(locked), milliseconds(15 * 60'000));
  clock_.advanceMs(15 * 60'000 - 1);
  EXPECT_FALSE(admitted(throttle_.admit("acc", "ann", "10.0.0.2")));
  clock_.advanceMs(1);
  EXPECT_TRUE(admitted(throttle_.admit("acc", "ann", "10.0.0.2")));
}

TEST_F(LoginThrottleTest, SuccessResetsTheUserButNotTheAddress) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(fail("ann"));
  auto a = throttle_.admit("acc", "ann", "10.0.0.1");
  ASSERT_TRUE(admitted(a));
  throttle_.succeeded(std::get<LoginThrottle::Admission>(a));
  // Five more free failures for the user again.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fail("ann", "10.0.0.9")) << i;
  EXPECT_FALSE(admitted(throttle_.admit("acc", "ann", "10.0.0.9")));
  // The address 10.0.0.1 still counts its 4 failures: 16 more are free across users.
  for (int i = 0; i < 16; ++i) ASSERT_TRUE(fail("user" + std::to_string(i))) << i;
  auto r = throttle_.admit("acc", "someone-else", "10.0.0.1");
  ASSERT_FALSE(admitted(r));
  EXPECT_NE(std::get<LoginThrottle::Denial>(r).message.find("client address"), std::string::npos);
}

TEST_F(LoginThrottleTest, AddressLockoutAcrossManyUserNames) {
  // 20 free, then 1 s doubling (capped at 60 s), locked for 15 min at 40.
  int failures = 0;
  for (int i = 0; i < 40; ++i) {
    if (!fail("spray" + std::to_string(i))) {
      auto r = throttle_.admit("acc", "spray-x", "10.0.0.1");
      ASSERT_FALSE(admitted(r));
      EXPECT_LE(retryAfter(r), milliseconds(60'000));
      clock_.advanceMs(retryAfter(r).count());
      ASSERT_TRUE(fail("spray" + std::to_string(i))) << i;
    }
    ++failures;
  }
  EXPECT_EQ(failures, 40);
  auto locked = throttle_.admit("acc", "new-name", "10.0.0.1");
  ASSERT_FALSE(admitted(locked));
  EXPECT_EQ(retryAfter(locked), milliseconds(15 * 60'000));
  // Another address is not affected.
  EXPECT_TRUE(admitted(throttle_.admit("acc", "new-name", "10.0.0.2")));
}

TEST_F(LoginThrottleTest, ConcurrentGuessesPastTheFreeOnesAreOneAtATime) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(fail("ann"));
  // One free attempt left: the first in flight is admitted, a second concurrent one is not.
  auto first = throttle_.admit("acc", "ann", "10.0.0.1");
  ASSERT_TRUE(admitted(first));
  EXPECT_FALSE(admitted(throttle_.admit("acc", "ann", "10.0.0.1")));
  throttle_.cancelled(std::get<LoginThrottle::Admission>(first));
  EXPECT_TRUE(admitted(throttle_.admit("acc", "ann", "10.0.0.1")));
}

TEST_F(LoginThrottleTest, UserNamesAreCaseInsensitiveAndFailuresAreForgotten) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fail(i % 2 ? "ANN" : "ann"));
  EXPECT_FALSE(admitted(throttle_.admit("acc", "Ann", "10.0.0.3")));
  clock_.advanceMs(15 * 60'000);
  EXPECT_TRUE(admitted(throttle_.admit("acc", "Ann", "10.0.0.3")));
}

TEST(LoginThrottle, MemoryIsBounded) {
  testing::FakeClock clock;
  LoginThrottleOptions o;
  o.max_entries = 100;
  LoginThrottle t(clock, o);
  for (int i = 0; i < 1000; ++i) {
    clock.advanceMs(1);
    auto a = t.admit("acc", "u" + std::to_string(i), "addr" + std::to_string(i));
    ASSERT_TRUE(admitted(a));
    t.failed(std::get<LoginThrottle::Admission>(a));
  }
  EXPECT_LE(t.sizeForTest(), 200u);
}

// Three nodes of a cluster, each with its login throttle, linked as the bus links them.
class ClusterThrottleTest : public ::testing::Test {
 protected:
  ClusterThrottleTest() {
    for (int i = 0; i < 3; ++i) {
      LoginThrottleOptions o;
      o.peers = links_.node(i);
      nodes_.push_back(std::make_unique<LoginThrottle>(clock_, o));
    }
  }
  LoginThrottle& node(int i) { return *nodes_.at(static_cast<std::size_t>(i)); }
  bool fail(int i, const std::string& user, const std::string& addr) {
    auto a = node(i).admit("acc", user, addr);
    if (!admitted(a)) return false;
    node(i).failed(std::get<LoginThrottle::Admission>(a));
    return true;
  }

  testing::FakeClock clock_;
  testing::LinkedLimitPeers links_{3};
  std::vector<std::unique_ptr<LoginThrottle>> nodes_;
};

TEST_F(ClusterThrottleTest, FailuresOnEveryNodeCountTowardsOneBackoff) {
  // Five guesses spread over three nodes (a balancer in front) use up the user's free failures
  // on all of them: the sixth is refused whichever node it reaches.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fail(i % 3, "ann", "10.0.0." + std::to_string(i))) << i;
  for (int n = 0; n < 3; ++n) {
    auto r = node(n).admit("acc", "ann", "10.0.0.9");
    ASSERT_FALSE(admitted(r)) << "node " << n;
    EXPECT_EQ(retryAfter(r), milliseconds(1000));
  }
  EXPECT_EQ(node(2).peerEvents(), 4u);  // the failures made on nodes 0 and 1
  // Ten guesses lock the user on every node.
  for (int i = 5; i < 10; ++i) {
    clock_.advanceMs(60'000);
    ASSERT_TRUE(fail(i % 3, "ann", "10.0.1." + std::to_string(i))) << i;
  }
  for (int n = 0; n < 3; ++n)
    EXPECT_EQ(retryAfter(node(n).admit("acc", "ann", "10.0.2.1")), milliseconds(15 * 60'000));
}

TEST_F(ClusterThrottleTest, AnAddressIsCountedOnEveryNode) {
  // 20 free failures per address, whichever user names and nodes they use.
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(fail(i % 3, "spray" + std::to_string(i), "10.9.9.9"));
  for (int n = 0; n < 3; ++n)
    EXPECT_FALSE(admitted(node(n).admit("acc", "new-name", "10.9.9.9"))) << "node " << n;
}

TEST_F(ClusterThrottleTest, ASuccessOnOneNodeResetsTheUserOnTheOthers) {
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(fail(0, "ann", "10.0.0.1"));
  auto a = node(1).admit("acc", "ann", "10.0.0.1");
  ASSERT_TRUE(admitted(a));
  node(1).succeeded(std::get<LoginThrottle::Admission>(a));
  // Five free failures again, on node 0 too.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fail(0, "ann", "10.0.0.2")) << i;
  EXPECT_FALSE(admitted(node(0).admit("acc", "ann", "10.0.0.2")));
}

TEST_F(ClusterThrottleTest, ANodeCutFromTheOthersKeepsItsOwnCount) {
  links_.cut(2);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fail(0, "ann", "10.0.0.1"));
  EXPECT_FALSE(admitted(node(1).admit("acc", "ann", "10.0.0.1")));
  // Node 2 heard nothing: as strict as one node alone, no looser.
  EXPECT_TRUE(admitted(node(2).admit("acc", "ann", "10.0.0.1")));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(fail(2, "bob", "10.0.0.3"));
  EXPECT_TRUE(fail(0, "bob", "10.0.0.3"));  // node 0 never heard of node 2's failures
}

TEST_F(ClusterThrottleTest, ThrottlesOfAnotherNameAndMalformedEventsAreNotCounted) {
  LoginThrottleOptions o;
  o.peers = links_.node(0);
  o.peer_name = "oauth";
  LoginThrottle oauth(clock_, o);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(fail(1, "ann", "10.0.0.1"));
  EXPECT_TRUE(admitted(oauth.admit("acc", "ann", "10.0.0.1")));
  for (const char* bad : {"", "[]", "{\"k\":\"f\"}", "{\"k\":\"x\",\"u\":\"acc/eve\"}",
                          "{\"k\":\"f\",\"u\":7}", "{\"k\":\"f\",\"u\":\"acc/eve\",\"a\":1}"})
    links_.node(1)->publish("oauth", bad);
  EXPECT_EQ(oauth.peerEvents(), 0u);
}

}  // namespace
}  // namespace parley::server
