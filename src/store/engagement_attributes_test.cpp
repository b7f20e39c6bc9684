// Engagement attributes: the Engagement Attributes API form checked, rendered as the Messaging
// Interactions API's events, stored per conversation and account with a limit (memory store).

#include "store/engagement_attributes.h"

#include <gtest/gtest.h>

#include <string>

#include "common/testing/fake_clock.h"
#include "store/memory/memory_store.h"

namespace parley::store {
namespace {

namespace bj = boost::json;
using parley::testing::FakeClock;

bj::value parse(std::string_view s) { return bj::parse(s); }

TEST(EngagementAttributes, AcceptsEveryTypeInTheApiForm) {
  auto sdes = parse(R"([
    {"type":"cart","total":11.5,"currency":"USD","numItems":1,"products":[{"product":{"name":"x"}}]},
    {"type":"purchase","total":11.5,"orderId":"o-1","cart":{"products":[]}},
    {"type":"prodView","currency":"USD","products":[]},
    {"type":"ctmrinfo","info":{"cstatus":"gold","customerId":"c-9"}},
    {"type":"mrktInfo","info":{"channel":"1","affiliate":"a"}},
    {"type":"personal","personal":{"contacts":[{"email":"john.doe@example.com"}]}},
    {"type":"lead","lead":{"topic":"t","value":1}},
    {"type":"service","service":{"topic":"t","status":0}},
    {"type":"error","error":{"message":"m","code":"e1"}},
    {"type":"searchInfo","keywords":["a","b"]}])");
  ASSERT_TRUE(checkSdes(sdes)) << checkSdes(sdes).error().message;
  const char* expected[][2] = {{"CART_STATUS", "cartStatus"},
                               {"PURCHASE", "purchase"},
                               {"VIEWED_PRODUCT", "viewedProduct"},
                               {"CUSTOMER_INFO", "customerInfo"},
                               {"MARKETING_CAMPAIGN_INFO", "marketingCampaignInfo"},
                               {"PERSONAL_INFO", "personalInfo"},
                               {"LEAD", "lead"},
                               {"SERVICE_ACTIVITY", "serviceActivity"},
                               {"VISITOR_ERROR", "visitorError"},
                               {"SEARCH_CONTENT", "searchContent"}};
  for (std::size_t i = 0; i < 10; ++i) {
    auto e = sdeEvent(sdes.as_array()[i].as_object(), 1700000000123);
    ASSERT_TRUE(e) << i;
    EXPECT_EQ(e->at("sdeType").as_string(), expected[i][0]);
    EXPECT_EQ(e->at("serverTimeStamp").as_int64(), 1700000000123);
    const auto& inner = e->at(expected[i][1]).as_object();
    EXPECT_EQ(inner.at("serverTimeStamp").as_string(), "1700000000123");
  }
  auto personal = *sdeEvent(sdes.as_array()[5].as_object(), 5);
  EXPECT_EQ(
      bj::serialize(personal),
      R"({"sdeType":"PERSONAL_INFO","serverTimeStamp":5,"personalInfo":{"serverTimeStamp":"5",)"
      R"("personalInfo":{"contacts":[{"email":"john.doe@example.com"}]}}})");
  auto cart = *sdeEvent(sdes.as_array()[0].as_object(), 5);
  EXPECT_EQ(cart.at("cartStatus").at("total").as_double(), 11.5);
  EXPECT_FALSE(cart.at("cartStatus").as_object().contains("type"));
}

TEST(EngagementAttributes, RefusesBadInputNamingWhere) {
  auto msg = [](std::string_view text) {
    auto st = checkSdes(bj::parse(text));
    return st ? std::string("ok") : st.error().message;
  };
  EXPECT_NE(msg(R"({"type":"cart"})").find("must be an array"), std::string::npos);
  EXPECT_NE(msg("[]").find("is empty"), std::string::npos);
  EXPECT_EQ(msg(R"([1])"), "sdes[0] is not an object");
  EXPECT_NE(msg(R"([{"type":"cart"},{"info":{}}])").find("sdes[1] has no string 'type'"),
            std::string::npos);
  EXPECT_NE(msg(R"([{"type":"bogus"}])").find("unknown type 'bogus'"), std::string::npos);
  EXPECT_NE(msg(R"([{"type":"ctmrinfo","cstatus":"gold"}])").find("object 'info'"),
            std::string::npos);
  EXPECT_NE(msg(R"([{"type":"personal","personal":"x"}])").find("object 'personal'"),
            std::string::npos);
  EXPECT_NE(msg(R"([{"type":"searchInfo","keywords":[1]}])").find("array of strings"),
            std::string::npos);

  bj::array many;
  for (std::size_t i = 0; i < kMaxSdesPerCall; ++i) many.emplace_back(bj::object{{"type", "cart"}});
  EXPECT_TRUE(checkSdes(many));
  many.emplace_back(bj::object{{"type", "cart"}});
  auto st = checkSdes(many);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kTooLarge);
  EXPECT_NE(st.error().message.find("at most 20"), std::string::npos);

  bj::array big{bj::object{{"type", "cart"}, {"note", std::string(kMaxSdesCallBytes, 'x')}}};
  st = checkSdes(big);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kTooLarge);
}

TEST(EngagementAttributes, ContextSdesAreUnauthenticatedEvents) {
  auto ev = contextSdeEvents(
      R"({"type":"SharkContext","visitorId":"v","lp_sdes":[{"type":"ctmrinfo","info":{"cstatus":"x"}},)"
      R"({"type":"nope"},7]})",
      42);
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].at("sdeType").as_string(), "CUSTOMER_INFO");
  EXPECT_EQ(ev[0].at("serverTimeStamp").as_int64(), 42);
  EXPECT_TRUE(contextSdeEvents("{}", 1).empty());
  EXPECT_TRUE(contextSdeEvents("not json", 1).empty());
}

TEST(EngagementAttributes, StoredPerConversationAndAccountOldestFirstWithALimit) {
  FakeClock clock;
  auto store = makeMemoryStore(clock);
  auto& fs = store->functions();
  AccountId a("acc-a"), b("acc-b");
  ConversationId c1("c-1"), c2("c-2");
  auto one = [](const char* type, const char* wrap) {
    bj::object o{{"type", type}};
    if (*wrap) o[wrap] = bj::object{{"n", 1}};
    return bj::array{std::move(o)};
  };
  ASSERT_TRUE(appendReportedSdes(fs, a, c1, one("personal", "personal"), 300));
  ASSERT_TRUE(appendReportedSdes(fs, a, c1, one("ctmrinfo", "info"), 100));
  ASSERT_TRUE(appendReportedSdes(fs, a, c1, one("cart", ""), 300));
  ASSERT_TRUE(appendReportedSdes(fs, a, c2, one("lead", "lead"), 1));

  auto ev = reportedSdeEvents(fs, a, c1);
  ASSERT_TRUE(ev);
  ASSERT_EQ(ev->size(), 3u);
  EXPECT_EQ((*ev)[0].at("sdeType").as_string(), "CUSTOMER_INFO");
  EXPECT_EQ((*ev)[1].at("sdeType").as_string(), "PERSONAL_INFO");  // same time: stored order
  EXPECT_EQ((*ev)[2].at("sdeType").as_string(), "CART_STATUS");
  EXPECT_EQ(reportedSdeEvents(fs, a, c2)->size(), 1u);
  EXPECT_TRUE(reportedSdeEvents(fs, b, c1)->empty());  // another account sees none

  // Bad input is not stored.
  EXPECT_FALSE(appendReportedSdes(fs, a, c1, bj::array{bj::object{{"type", "x"}}}, 5));
  EXPECT_EQ(reportedSdeEvents(fs, a, c1)->size(), 3u);

  // The limit per conversation.
  bj::array twenty;
  for (int i = 0; i < 20; ++i) twenty.emplace_back(bj::object{{"type", "cart"}});
  std::size_t held = 3;
  while (held + 20 <= kMaxSdeEventsPerConversation) {
    ASSERT_TRUE(appendReportedSdes(fs, a, c1, twenty, 400));
    held += 20;
  }
  auto st = appendReportedSdes(fs, a, c1, twenty, 500);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, ErrorCode::kLimitExceeded);
  EXPECT_NE(st.error().message.find("at most 200"), std::string::npos) << st.error().message;
  EXPECT_EQ(reportedSdeEvents(fs, a, c1)->size(), held);
}

}  // namespace
}  // namespace parley::store
