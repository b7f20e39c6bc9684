// Unit tests of the plain-C++ engine parts: fair queue, outbound policy, watchdog.

#include <gtest/gtest.h>

#include <thread>

#include "common/testing/fake_clock.h"
#include "functions/engine/fair_queue.h"
#include "functions/engine/http_client.h"
#include "functions/engine/outbound.h"
#include "functions/engine/watchdog.h"

namespace parley::functions::engine {
namespace {

TEST(FairQueue, RoundRobinAcrossKeys) {
  FairQueue<int> q;
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(q.push("hot", i, 1000, 1000));
  ASSERT_TRUE(q.push("cold", 1000, 1000, 1000));
  EXPECT_EQ(*q.pop(), 0);
  EXPECT_EQ(*q.pop(), 1000);  // the cold key is served second, not after 100 hot items
  EXPECT_EQ(*q.pop(), 1);
  EXPECT_EQ(q.size(), 98u);
}

TEST(FairQueue, Bounds) {
  FairQueue<int> q;
  EXPECT_TRUE(q.push("a", 1, 2, 3));
  EXPECT_TRUE(q.push("a", 2, 2, 3));
  EXPECT_FALSE(q.push("a", 3, 2, 3));  // per key
  EXPECT_TRUE(q.push("b", 4, 2, 3));
  EXPECT_FALSE(q.push("c", 5, 2, 3));  // total
  EXPECT_EQ(*q.pop(), 1);
  EXPECT_EQ(*q.pop(), 4);
  EXPECT_EQ(*q.pop(), 2);
  EXPECT_FALSE(q.pop().has_value());
}

TEST(Outbound, AllowlistRules) {
  std::vector<std::string> list = {"api.example.com", "*.wild.org", "LocalHost"};
  EXPECT_TRUE(hostAllowed("api.example.com", list));
  EXPECT_TRUE(hostAllowed("API.Example.com.", list));
  EXPECT_FALSE(hostAllowed("www.api.example.com", list));
  EXPECT_FALSE(hostAllowed("example.com", list));  // a bare apex is not www. and vice versa
  EXPECT_TRUE(hostAllowed("a.wild.org", list));
  EXPECT_FALSE(hostAllowed("wild.org", list));
  EXPECT_FALSE(hostAllowed("a.b.wild.org", list));  // one level only
  EXPECT_FALSE(hostAllowed("evilwild.org", list));
  EXPECT_TRUE(hostAllowed("localhost", list));
  EXPECT_FALSE(hostAllowed("", list));
}

TEST(Outbound, RateLimitPerSecondPerKey) {
  parley::testing::FakeClock clock(1'000'000);
  RateLimiter r(clock, 3);
  EXPECT_TRUE(r.tryAcquire("f"));
  EXPECT_TRUE(r.tryAcquire("f"));
  EXPECT_TRUE(r.tryAcquire("f"));
  EXPECT_FALSE(r.tryAcquire("f"));
  EXPECT_TRUE(r.tryAcquire("g"));
  clock.advanceMs(1000);
  EXPECT_TRUE(r.tryAcquire("f"));
}

TEST(HttpClient, HostOf) {
  EXPECT_EQ(*HttpClient::hostOf("https://api.example.com:8443/x?y=1"), "api.example.com");
  EXPECT_FALSE(HttpClient::hostOf("ftp://example.com/").has_value());
  EXPECT_FALSE(HttpClient::hostOf("not a url").has_value());
}

class CountingTerminator final : public Terminator {
 public:
  void terminate() override { ++count; }
  std::atomic<int> count{0};
};

TEST(Watchdog, FiresAtDeadlineOnly) {
  Watchdog w;
  CountingTerminator t;
  {
    auto scope = w.enterJs(t, std::chrono::steady_clock::now() + std::chrono::seconds(60));
    EXPECT_FALSE(scope.exit());
  }
  auto scope = w.enterJs(t, std::chrono::steady_clock::now() + std::chrono::milliseconds(20));
  for (int i = 0; i < 200 && t.count == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(scope.exit());
  EXPECT_EQ(t.count, 1);
  EXPECT_EQ(w.firedCount(), 1u);
  // After exit, a passed deadline no longer fires.
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(t.count, 1);
}

TEST(Watchdog, EarlierDeadlineWakesIt) {
  Watchdog w;
  CountingTerminator slow, fast;
  auto a = w.enterJs(slow, std::chrono::steady_clock::now() + std::chrono::seconds(60));
  auto b = w.enterJs(fast, std::chrono::steady_clock::now() + std::chrono::milliseconds(10));
  for (int i = 0; i < 200 && fast.count == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(fast.count, 1);
  EXPECT_EQ(slow.count, 0);
}

}  // namespace
}  // namespace parley::functions::engine
