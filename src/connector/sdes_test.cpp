// Engagement attributes (lpSdes) from the consumer profile and the conversation context.

#include "connector/sdes.h"

#include <gtest/gtest.h>

namespace parley::connector {
namespace {

namespace bj = boost::json;

store::Conversation conversation(std::string context_json,
                                 store::Channel ch = store::Channel::kMessaging) {
  store::Conversation c;
  c.id = ConversationId("conv-1");
  c.consumer = ConsumerId("consumer-1");
  c.channel = ch;
  c.context_json = std::move(context_json);
  return c;
}

const char* kProfile = R"({"firstName":"Ann","authenticatedData":{"lp_sdes":[
  {"type":"ctmrinfo","info":{"cstatus":"gold","customerId":"c-42","balance":-400.99}},
  {"type":"personal","personal":{"firstname":"Ann","lastname":"Lee","contacts":[{"email":"a@x.io"}]}}
]}})";

TEST(Sdes, MessagingUnauthenticatedFromTheContextAndAuthenticatedFromTheProfile) {
  auto r = buildLpSdes(conversation(R"({"type":"SharkContext","visitorId":"v1","sessionId":"s1",
      "lp_sdes":[{"type":"cart","total":11.7,"products":[{"product":{"name":"shoe"}}]},
                 {"type":"mrktInfo","info":{"channel":"web","affiliate":"a1"}}]})"),
                       std::string(kProfile), 1700000000000);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.lp_sdes, bj::parse(R"({
    "unauthenticatedSdes":{
      "cartStatus":{"serverTimeStamp":"1700000000000",
                    "cartStatus":{"total":11.7,"products":[{"product":{"name":"shoe"}}]}},
      "marketingCampaignInfo":{"serverTimeStamp":"1700000000000",
                               "marketingCampaignInfo":{"channel":"web","affiliate":"a1"}}},
    "authenticatedSdes":{
      "customerInfo":{"type":"ctmrinfo","acr":"loa1","iss":"parley",
                      "customerInfo":{"cstatus":"gold","customerId":"c-42","balance":-400.99},"auth":{}},
      "personalInfo":{"type":"personal","acr":"loa1","iss":"parley",
                      "personalInfo":{"firstname":"Ann","lastname":"Lee","contacts":[{"email":"a@x.io"}]},
                      "auth":{}}}})"));
}

TEST(Sdes, ChatAuthenticatedForm) {
  auto r = buildLpSdes(conversation(R"({"visitor":{"sharkVisitorId":"v","sharkSessionId":"s"},
      "sdes":[{"type":"ctmrinfo","info":{"ctype":"vip"}}]})",
                                    store::Channel::kChat),
                       std::string(kProfile), 5);
  EXPECT_TRUE(r.problems.empty());
  const auto& auth = r.lp_sdes.at("authenticatedSdes").as_object();
  EXPECT_EQ(auth.at("authenticatedParticipantInfo"),
            bj::parse(R"({"isUserAuthenticated":true,"participantId":"consumer-1",
                          "cstatus":"gold","customerId":"c-42","balance":-400.99})"));
  EXPECT_EQ(auth.at("authenticatedPersonalInfo"),
            bj::parse(R"({"name":"Ann","surname":"Lee","contacts":[{"email":"a@x.io"}]})"));
  EXPECT_EQ(r.lp_sdes.at("unauthenticatedSdes").at("customerInfo").at("customerInfo"),
            bj::parse(R"({"ctype":"vip"})"));
}

TEST(Sdes, MissingVisitorOrSessionIdIsTheSdesServiceError) {
  for (const char* ctx : {R"({})", R"({"visitorId":"v1"})", R"({"sessionId":"s1"})",
                          R"({"visitorId":"","sessionId":"s1"})", "not json", "[1,2]"}) {
    auto r = buildLpSdes(conversation(ctx), std::nullopt, 0);
    ASSERT_EQ(r.problems.size(), 1u) << ctx;
    EXPECT_EQ(r.problems[0].first, "sdes-service.missing-session-or-visitor-id");
    EXPECT_EQ(r.lp_sdes, bj::parse(R"({"unauthenticatedSdes":{},"authenticatedSdes":{}})"));
  }
  // The authenticated part does not depend on the visit.
  auto r = buildLpSdes(conversation("{}"), std::string(kProfile), 0);
  EXPECT_EQ(r.lp_sdes.at("authenticatedSdes").as_object().size(), 2u);
}

TEST(Sdes, IdsWithoutEntriesIsTheEmptyEntryError) {
  for (const char* ctx :
       {R"({"visitorId":"v","sessionId":"s"})", R"({"visitorId":"v","sessionId":"s","sdes":[]})",
        R"({"visitorId":"v","sessionId":"s","sdes":[1,"x",{"type":"nope"},{"notype":1}]})",
        R"({"visitorId":"v","sessionId":"s","sdes":{"type":"cart"}})"}) {
    auto r = buildLpSdes(conversation(ctx), std::nullopt, 0);
    ASSERT_EQ(r.problems.size(), 1u) << ctx;
    EXPECT_EQ(r.problems[0].first, "sdes-service.uauth-sdes-entry-is-empty") << ctx;
    EXPECT_EQ(r.lp_sdes.at("unauthenticatedSdes"), bj::object{});
  }
}

TEST(Sdes, NullNeverOverwritesANonNullValueWhenEntriesMerge) {
  auto r = buildLpSdes(conversation(R"({"visitorId":"v","sessionId":"s","sdes":[
      {"type":"ctmrinfo","info":{"cstatus":"gold","balance":10,"extra":{"a":1,"b":2},"gone":null}},
      {"type":"ctmrinfo","info":{"cstatus":null,"balance":20,"extra":{"a":null,"b":3},"gone":"now"}},
      {"type":"ctmrinfo","info":{"extra":null,"new":null}}]})"),
                       std::nullopt, 0);
  EXPECT_TRUE(r.problems.empty());
  EXPECT_EQ(r.lp_sdes.at("unauthenticatedSdes").at("customerInfo").at("customerInfo"),
            bj::parse(R"({"cstatus":"gold","balance":20,"extra":{"a":1,"b":3},"gone":"now",
                          "new":null})"));
}

// What functions reported (store::sdeEvent form) needs no visitor or session id: the missing ids
// are still reported, and the reported SDEs are in unauthenticatedSdes.
TEST(Sdes, ReportedSdesNeedNoVisitIds) {
  auto reported = bj::parse(R"([
    {"sdeType":"SEARCH_CONTENT","serverTimeStamp":5,
     "searchContent":{"serverTimeStamp":"5","keywords":["shoes"]}},
    {"sdeType":"PERSONAL_INFO","serverTimeStamp":6,
     "personalInfo":{"serverTimeStamp":"6","personalInfo":{"name":"Ann","surname":null}}},
    {"sdeType":"PERSONAL_INFO","serverTimeStamp":7,
     "personalInfo":{"serverTimeStamp":"7","personalInfo":{"surname":"Lee","name":null}}}])");
  auto r = buildLpSdes(conversation("{}"), std::nullopt, 9, reported.as_array());
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].first, codes::kSdesMissingIds);
  EXPECT_EQ(r.lp_sdes, bj::parse(R"({
    "unauthenticatedSdes":{
      "searchInfo":{"serverTimeStamp":"5","searchInfo":{"keywords":["shoes"]}},
      "personalInfo":{"serverTimeStamp":"7","personalInfo":{"name":"Ann","surname":"Lee"}}},
    "authenticatedSdes":{}})"));
}

TEST(Sdes, BadProfilesGiveNoAuthenticatedSdes) {
  for (const char* p : {"not json", "[]", R"({"authenticatedData":{"lp_sdes":{}}})",
                        R"({"authenticatedData":{"lp_sdes":[{"type":"unknown"}]}})", "{}"}) {
    auto r = buildLpSdes(conversation(R"({"visitorId":"v","sessionId":"s"})"), std::string(p), 0);
    EXPECT_EQ(r.lp_sdes.at("authenticatedSdes"), bj::object{}) << p;
  }
  // claims.lp_sdes and claims.iss (JWT form) are read too.
  auto r = buildLpSdes(conversation("{}"),
                       std::string(R"({"acr":"loa2","claims":{"iss":"https://idp.example",
                         "lp_sdes":[{"type":"personal","personal":{"firstname":"Bo"}}]}})"),
                       0);
  EXPECT_EQ(r.lp_sdes.at("authenticatedSdes").at("personalInfo"),
            bj::parse(R"({"type":"personal","acr":"loa2","iss":"https://idp.example",
                          "personalInfo":{"firstname":"Bo"},"auth":{}})"));
}

}  // namespace
}  // namespace parley::connector
