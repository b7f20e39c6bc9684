// reviewResponse: what the console's test invoke tells a bot builder about a response.

#include "connector/review.h"

#include <gtest/gtest.h>

#include <string>

#include "connector/testing/validator.h"

namespace parley::connector {
namespace {

namespace bj = boost::json;

class ReviewTest : public ::testing::Test {
 protected:
  static bj::object review(const std::string& json,
                           store::Channel ch = store::Channel::kMessaging) {
    PlanOptions o;
    o.channel = ch;
    return reviewResponse(json, testing::embeddedValidator(), o);
  }
  static std::vector<std::string> rules(const bj::object& r) {
    std::vector<std::string> out;
    for (const auto& w : r.at("warnings").as_array()) out.emplace_back(w.at("rule").as_string());
    return out;
  }
};

const std::string kCard = R"({"type":"vertical","elements":[{"type":"text","text":"hi"}]})";
const std::string kQuickReplies =
    R"({"type":"quickReplies","itemsPerRow":2,"replies":[{"type":"button","title":"Yes","click":{"actions":[{"type":"publishText","text":"yes"}]}},{"type":"button","title":"No","click":{"actions":[{"type":"publishText","text":"no"}]}}]})";
const std::string kWithChips =
    R"({"structuredContent":{"message":"Pick one","quickReplies":)" + kQuickReplies + "}}";

TEST_F(ReviewTest, APlainAnswerIsOkAndShowsWhatTheConsumerSees) {
  auto r =
      review(R"({"messages":["Hello",{"text":"note","messageAudience":"AGENTS_AND_MANAGERS"}]})");
  EXPECT_EQ(r.at("verdict").as_string(), "OK");
  EXPECT_EQ(r.at("channel").as_string(), "MESSAGING");
  ASSERT_EQ(r.at("consumerSees").as_array().size(), 1u);
  EXPECT_EQ(r.at("consumerSees").at(0).at("text").as_string(), "Hello");
  EXPECT_EQ(r.at("consumerSees").at(0).at("source").as_string(), "/messages/0");
  ASSERT_EQ(r.at("agentSees").as_array().size(), 1u);
  EXPECT_EQ(r.at("agentSees").at(0).at("kind").as_string(), "PRIVATE_TEXT");
  EXPECT_TRUE(r.at("problems").as_array().empty());
  EXPECT_TRUE(r.at("warnings").as_array().empty());
  EXPECT_TRUE(r.at("action").is_null());
}

TEST_F(ReviewTest, InvalidStructuredContentIsAProblemWithItsPath) {
  auto r = review(
      R"({"messages":["Hi",{"structuredContent":{"type":"vertical","elements":[{"type":"nonsense"}]}}]})");
  EXPECT_EQ(r.at("verdict").as_string(), "PARTIAL");
  ASSERT_FALSE(r.at("problems").as_array().empty());
  const auto& p = r.at("problems").at(0).as_object();
  EXPECT_EQ(p.at("path").as_string(), "/messages/1/structuredContent");
  EXPECT_NE(std::string(p.at("message").as_string()).find("/messages/1/structuredContent"),
            std::string::npos)
      << p.at("message").as_string();
}

TEST_F(ReviewTest, NothingSendableIsRefused) {
  auto r = review(R"({"mesages":["typo"]})");
  EXPECT_EQ(r.at("verdict").as_string(), "REFUSED");
  EXPECT_EQ(r.at("problems").as_array().size(), 1u);
  EXPECT_EQ(rules(r), std::vector<std::string>{"ignored-key"});
  EXPECT_EQ(r.at("warnings").at(0).at("path").as_string(), "/mesages");
}

TEST_F(ReviewTest, QuickRepliesFollowedByALegacyCardAreHidden) {
  auto r = review(R"({"messages":[)" + kWithChips + R"(],"context":{"structuredContent":)" + kCard +
                  "}}");
  EXPECT_EQ(r.at("verdict").as_string(), "OK");
  ASSERT_EQ(rules(r), std::vector<std::string>{"quick-replies-hidden"});
  const auto& w = r.at("warnings").at(0).as_object();
  EXPECT_EQ(w.at("path").as_string(), "/messages/0");
  EXPECT_NE(std::string(w.at("message").as_string()).find("/context/structuredContent"),
            std::string::npos);
  EXPECT_EQ(r.at("consumerSees").at(0).at("quickReplies").to_number<int>(), 2);
}

TEST_F(ReviewTest, QuickRepliesOnTheLastMessageAreFineAndDelaysDoNotHideThem) {
  auto r = review(R"({"messages":["First",{"delay":1},)" + kWithChips + "]}");
  EXPECT_TRUE(r.at("warnings").as_array().empty()) << bj::serialize(r);
  r = review(R"({"messages":[)" + kWithChips + R"(,{"delay":2}]})");
  EXPECT_TRUE(r.at("warnings").as_array().empty()) << bj::serialize(r);
}

TEST_F(ReviewTest, QuickRepliesOnChatAreRefused) {
  auto r = review(R"({"messages":[)" + kWithChips + "]}", store::Channel::kChat);
  EXPECT_EQ(r.at("channel").as_string(), "CHAT");
  EXPECT_EQ(r.at("verdict").as_string(), "REFUSED");
  EXPECT_EQ(r.at("problems").at(0).at("code").as_string(),
            "pipes.verify-ai-response.quick-replies-not-supported");
}

TEST_F(ReviewTest, QuickRepliesSentWithACloseCannotBeAnswered) {
  auto r =
      review(R"({"messages":[)" + kWithChips + R"(],"context":{"action":"CLOSE_CONVERSATION"}})");
  EXPECT_EQ(rules(r), std::vector<std::string>{"quick-replies-with-close"});
  EXPECT_EQ(r.at("action").at("action").as_string(), "CLOSE_CONVERSATION");
}

TEST_F(ReviewTest, UnknownActionsAreProblemsAndUnknownContextKeysWarnings) {
  auto r = review(R"({"messages":["x"],"context":{"action":"DANCE","mood":"happy"}})");
  EXPECT_EQ(r.at("verdict").as_string(), "PARTIAL");
  EXPECT_EQ(std::string(r.at("problems").at(0).at("path").as_string()).substr(0, 15),
            "/context/action");
  EXPECT_EQ(rules(r), std::vector<std::string>{"ignored-key"});
  EXPECT_EQ(r.at("warnings").at(0).at("path").as_string(), "/context/mood");
}

TEST_F(ReviewTest, OnlyBotResponseEventsAreReviewed) {
  EXPECT_TRUE(isBotResponseEvent("bot_connectors_custom_integration"));
  EXPECT_TRUE(isBotResponseEvent("bot_connectors_post_hook"));
  EXPECT_FALSE(isBotResponseEvent("bot_connectors_pre_hook"));
  EXPECT_FALSE(isBotResponseEvent("no_event"));
}

}  // namespace
}  // namespace parley::connector
