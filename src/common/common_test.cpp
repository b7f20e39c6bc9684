#include <gtest/gtest.h>

#include <set>

#include "common/ids.h"
#include "common/json.h"
#include "common/random.h"
#include "common/result.h"
#include "common/testing/fake_clock.h"

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

}  // namespace
}  // namespace parley
