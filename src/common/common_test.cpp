#include <fmt/format.h>
#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <limits>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "common/ids.h"
#include "common/json.h"
#include "common/random.h"
#include "common/result.h"
#include "common/testing/fake_clock.h"
#include "common/thread_name.h"

namespace parley {
namespace {

TEST(Result, CarriesCodeAndMessage) {
  Result<int> r = notFound("skill 7 does not exist");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(httpStatus(r.error().code), 404);
  EXPECT_EQ(errorCodeName(r.error().code), "NOT_FOUND");
}

TEST(Random, UuidsAreV4AndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string u = randomUuid();
    ASSERT_EQ(u.size(), 36u);
    EXPECT_EQ(u[14], '4');
    EXPECT_TRUE(seen.insert(u).second);
  }
  EXPECT_EQ(randomHex(24).size(), 48u);
}

TEST(Random, ThreadsAndSizesAcrossThePerThreadPoolNeverRepeat) {
  // Per-thread pools of random bytes: values from several threads, of sizes that straddle the
  // pool's refills (and of sizes drawn past the pool), must all be distinct.
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < per_thread.size(); ++t)
    threads.emplace_back([&out = per_thread[t]] {
      for (int i = 0; i < 500; ++i) {
        out.push_back(randomUuid());
        out.push_back(randomHex(static_cast<std::size_t>(1 + i % 40)));
        if (i % 50 == 0) out.push_back(randomHex(100));
      }
    });
  for (auto& th : threads) th.join();
  std::set<std::string> seen;
  std::size_t total = 0;
  for (const auto& v : per_thread)
    for (const auto& s : v) {
      ++total;
      if (s.size() >= 8) {
        EXPECT_TRUE(seen.insert(s).second) << s;
      }
    }
  EXPECT_EQ(total, 4u * (1000u + 10u));
  EXPECT_EQ(randomHex(100).size(), 200u);
  EXPECT_NE(randomHex(100), randomHex(100));
}

TEST(Json, RequiredFieldsGiveClearErrors) {
  auto o = json::parseObject(R"({"name":"sales","n":3,"flag":true,"bad":"x"})");
  ASSERT_TRUE(o);
  EXPECT_EQ(*json::requireString(*o, "name"), "sales");
  EXPECT_EQ(*json::requireInt(*o, "n"), 3);
  auto missing = json::requireString(*o, "absent");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message, "field 'absent' is required");
  auto wrong = json::requireInt(*o, "bad");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().message, "field 'bad' must be an integer");
  EXPECT_FALSE(json::parseObject("[1]"));
  EXPECT_FALSE(json::parseObject("{"));
}

// A JSON number outside int64's range used to be cast to int64 (undefined; UBSan's
// float-cast-overflow in the sanitizer builds): a body field such as maxOpenConversations:1e300.
TEST(Json, NumbersOutsideInt64AreNotIntegers) {
  auto o = json::parseObject(
      R"({"huge":1e300,"tiny":-1e300,"two63":9223372036854775808.0,"min":-9223372036854775808.0,
          "half":2.5,"whole":42.0})");
  ASSERT_TRUE(o);
  for (const char* key : {"huge", "tiny", "two63", "half"}) {
    auto r = json::requireInt(*o, key);
    ASSERT_FALSE(r) << key;
    EXPECT_EQ(r.error().message, fmt::format("field '{}' must be an integer", key));
    EXPECT_FALSE(json::optInt(*o, key)) << key;
  }
  EXPECT_EQ(*json::requireInt(*o, "min"), INT64_MIN);
  EXPECT_EQ(*json::requireInt(*o, "whole"), 42);
  // The lenient reader falls back to its default instead.
  EXPECT_EQ(json::getInt(*o, "huge", 7), 7);
  EXPECT_EQ(json::getInt(*o, "tiny", 7), 7);
  EXPECT_EQ(json::getInt(*o, "half", 7), 2);

  EXPECT_EQ(json::exactInt64(-9223372036854775808.0), INT64_MIN);
  EXPECT_FALSE(json::exactInt64(9223372036854775808.0));
  EXPECT_EQ(json::exactInt64(9223372036854774784.0), 9223372036854774784);  // largest below 2^63
  EXPECT_FALSE(json::exactInt64(0.5));
  EXPECT_FALSE(json::exactInt64(std::numeric_limits<double>::infinity()));
  EXPECT_FALSE(json::exactInt64(std::numeric_limits<double>::quiet_NaN()));
  EXPECT_EQ(json::truncatedInt64(-2.9), -2);
  EXPECT_EQ(json::truncatedInt64(-9223372036854775808.9), INT64_MIN);  // the same double
  EXPECT_FALSE(json::truncatedInt64(1e19));
  EXPECT_FALSE(json::truncatedInt64(-std::numeric_limits<double>::infinity()));
}

TEST(Json, Utf8Validation) {
  const std::string_view ok[] = {"",
                                 "plain",
                                 "caf\xC3\xA9",
                                 "\xE2\x82\xAC",
                                 "\xED\x9F\xBF",
                                 "\xEE\x80\x80",
                                 "\xF0\x9F\x98\x80",
                                 "\xF4\x8F\xBF\xBF",
                                 std::string_view("nul\0inside", 10)};
  for (std::string_view s : ok) EXPECT_TRUE(json::isValidUtf8(s)) << s;
  const std::string_view bad[] = {
      "\x91",         "ab\xC3",           "\xC0\xAF",         "\xC1\xBF",         "\xE0\x80\xAF",
      "\xED\xA0\x80", "\xF0\x80\x80\xAF", "\xF4\x90\x80\x80", "\xF5\x80\x80\x80", "\xFF",
      "\xE2\x82",     "\xE2\x28\xA1"};
  for (std::string_view s : bad)
    EXPECT_FALSE(json::isValidUtf8(s)) << ::testing::PrintToString(std::string(s));
}

TEST(Ids, AreDistinctTypesWithValueSemantics) {
  AccountId a("123");
  EXPECT_EQ(a, AccountId("123"));
  EXPECT_NE(a, AccountId("124"));
  EXPECT_EQ(std::hash<AccountId>{}(a), std::hash<std::string>{}("123"));
}

TEST(FakeClock, MovesOnlyWhenTold) {
  testing::FakeClock c(1000);
  EXPECT_EQ(c.nowMs(), 1000);
  c.advanceMs(500);
  EXPECT_EQ(c.nowMs(), 1500);
}

// Every thread of the pool gets the name (each naming task ran on a thread of its own), many
// times over without hanging (the latch outlives the last waiter).
TEST(ThreadName, NamesEveryThreadOfAPool) {
  for (int round = 0; round < 50; ++round) {
    boost::asio::thread_pool pool(3);
    nameThreads([&](auto task) { boost::asio::post(pool, std::move(task)); }, 3,
                "a-pool-name-that-is-long");
    std::mutex mu;
    std::set<std::string> names;
    std::set<std::thread::id> ids;
    nameThreads(
        [&](auto task) {
          boost::asio::post(pool, [&, task = std::move(task)] {
            char buf[32] = {};
            pthread_getname_np(pthread_self(), buf, sizeof buf);
            {
              std::lock_guard l(mu);
              names.insert(buf);
              ids.insert(std::this_thread::get_id());
            }
            task();
          });
        },
        3, "a-pool-name-that-is-long");
    EXPECT_EQ(ids.size(), 3u);
    EXPECT_EQ(names, (std::set<std::string>{"a-pool-name-tha"}));
  }
}

}  // namespace
}  // namespace parley
