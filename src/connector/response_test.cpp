// planResponse: every response form of spec §2, the actions, and the outcome table §2.7.

#include "connector/response.h"

#include <gtest/gtest.h>

#include "connector/testing/validator.h"

namespace parley::connector {
namespace {

namespace bj = boost::json;

class PlanTest : public ::testing::Test {
 protected:
  ResponsePlan plan(const std::string& json, store::Channel ch = store::Channel::kMessaging) {
    PlanOptions o;
    o.channel = ch;
    o.conversation_id = "conv-1";
    return planResponse(json, testing::embeddedValidator(), o);
  }
  static bj::value ev(const Step& s) { return s.event ? bj::value(*s.event) : bj::value(); }
};

const char* kCard = R"({"type":"vertical","elements":[{"type":"text","text":"hi"}]})";
const char* kQuick =
    R"({"type":"quickReplies","itemsPerRow":2,"replies":[{"type":"button","title":"Yes","click":{"actions":[{"type":"publishText","text":"yes"}]}}]})";

TEST_F(PlanTest, TextMessagesInOrder) {
  auto p = plan(R"({"messages":["one","two"]})");
  ASSERT_FALSE(p.fatal);
  ASSERT_EQ(p.steps.size(), 2u);
  EXPECT_EQ(p.steps[0].kind, StepKind::kText);
  EXPECT_EQ(ev(p.steps[0]).at("message").as_string(), "one");
  EXPECT_EQ(ev(p.steps[0]).at("contentType").as_string(), "text/plain");
  EXPECT_EQ(ev(p.steps[1]).at("message").as_string(), "two");
  EXPECT_FALSE(p.action);
  EXPECT_TRUE(p.refused.empty());
}

TEST_F(PlanTest, StructuredContentWithMetadataObjectOrArray) {
  auto p = plan(std::string(R"({"messages":[{"structuredContent":)") + kCard +
                R"(,"metadata":{"type":"ExternalId","id":"card-1"}},{"structuredContent":)" +
                kCard + R"(,"metadata":[{"type":"ExternalId","id":"card-2"}]}]})");
  ASSERT_FALSE(p.fatal);
  ASSERT_EQ(p.steps.size(), 2u);
  EXPECT_EQ(p.steps[0].kind, StepKind::kRichContent);
  EXPECT_EQ(ev(p.steps[0]).at("type").as_string(), "RichContentEvent");
  EXPECT_EQ(ev(p.steps[0]).at("content").at("type").as_string(), "vertical");
  ASSERT_EQ(p.steps[0].metadata.size(), 1u);
  EXPECT_EQ(p.steps[0].metadata[0].at("id").as_string(), "card-1");
  EXPECT_EQ(p.steps[1].metadata[0].at("id").as_string(), "card-2");
}

TEST_F(PlanTest, QuickRepliesMessagingOnly) {
  std::string resp =
      std::string(R"({"messages":[{"structuredContent":{"message":"Pick","quickReplies":)") +
      kQuick + "}}]}";
  auto p = plan(resp);
  ASSERT_FALSE(p.fatal);
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_EQ(p.steps[0].kind, StepKind::kText);
  EXPECT_EQ(ev(p.steps[0]).at("message").as_string(), "Pick");
  EXPECT_EQ(ev(p.steps[0]).at("quickReplies").at("type").as_string(), "quickReplies");
  // In chat: refused with quick-replies-not-supported; nothing else to send → fatal.
  auto c = plan(resp, store::Channel::kChat);
  ASSERT_TRUE(c.fatal);
  EXPECT_EQ(c.fatal->code, codes::kQuickRepliesNotSupported);
  // With another message: that one is still sent.
  auto c2 =
      plan(std::string(
               R"({"messages":["hello",{"structuredContent":{"message":"Pick","quickReplies":)") +
               kQuick + "}}]}",
           store::Channel::kChat);
  ASSERT_FALSE(c2.fatal);
  EXPECT_EQ(c2.steps.size(), 1u);
  ASSERT_EQ(c2.refused.size(), 1u);
  EXPECT_EQ(c2.refused[0].code, codes::kQuickRepliesNotSupported);
  EXPECT_EQ(c2.refused[0].path, "/messages/1/structuredContent");
}

TEST_F(PlanTest, LegacyQuickRepliesAttachToTheLastText) {
  auto p = plan(
      std::string(
          R"({"messages":["Do you like bots?"],"context":{"structuredContent":{"quickReplies":)") +
      kQuick + "}}}");
  ASSERT_FALSE(p.fatal);
  ASSERT_EQ(p.steps.size(), 1u);
  EXPECT_TRUE(ev(p.steps[0]).as_object().contains("quickReplies"));
}

TEST_F(PlanTest, LegacyStructuredContentIsLast) {
  auto p = plan(std::string(R"({"messages":["first"],"context":{"structuredContent":)") + kCard +
                R"(,"metadata":[{"type":"ExternalId","id":"x"}]}})");
  ASSERT_FALSE(p.fatal);
  ASSERT_EQ(p.steps.size(), 2u);
  EXPECT_EQ(p.steps[1].kind, StepKind::kRichContent);
  EXPECT_EQ(p.steps[1].source, "/context/structuredContent");
  EXPECT_EQ(p.steps[1].metadata[0].at("type").as_string(), "ExternalId");
}

TEST_F(PlanTest, DelaysAndPrivateMessages) {
  auto p = plan(R"({"messages":["a",{"delay":2},{"delay":1,"typing":false},
    {"text":"note","messageAudience":"AGENTS_AND_MANAGERS"}]})");
  ASSERT_FALSE(p.fatal);
  ASSERT_EQ(p.steps.size(), 4u);
  EXPECT_EQ(p.steps[1].kind, StepKind::kDelay);
  EXPECT_EQ(p.steps[1].delay_s, 2);
  EXPECT_TRUE(p.steps[1].typing);
  EXPECT_FALSE(p.steps[2].typing);
  EXPECT_EQ(p.steps[3].kind, StepKind::kPrivateText);
  // Audience is case-sensitive; a fractional or negative delay is refused.
  auto q = plan(
      R"({"messages":["a",{"text":"x","messageAudience":"agents_and_managers"},{"delay":1.5},{"delay":-1}]})");
  EXPECT_EQ(q.steps.size(), 1u);
  EXPECT_EQ(q.refused.size(), 3u);
  // A delay alone is a deliberate no-reply.
  auto n = plan(R"({"messages":[{"delay":0}]})");
  EXPECT_FALSE(n.fatal);
  EXPECT_EQ(n.steps.size(), 1u);
}

TEST_F(PlanTest, IntentsBecomeBotResponseMetadataOnEveryMessage) {
  auto p = plan(R"({"messages":["a",{"text":"n","messageAudience":"AGENTS_AND_MANAGERS"}],
    "context":{"intentId":"order","intentName":"Order","confidenceScore":0.9,
               "alternativeIntents":[{"intentId":"cancel","confidenceScore":0.1}]}})");
  ASSERT_FALSE(p.fatal);
  ASSERT_TRUE(p.bot_response);
  for (const auto& s : p.steps) {
    ASSERT_EQ(s.metadata.size(), 1u);
    const auto& br = s.metadata[0].as_object();
    EXPECT_EQ(br.at("type").as_string(), "BotResponse");
    EXPECT_EQ(br.at("externalConversationId").as_string(), "conv-1");
    EXPECT_EQ(br.at("intents").as_array().size(), 2u);
    EXPECT_EQ(br.at("intents").as_array()[0].at("id").as_string(), "order");
  }
  auto bad = plan(
      R"({"messages":["a"],"context":{"intentId":"x","confidenceScore":0.5,"alternativeIntents":"no"}})");
  ASSERT_EQ(bad.refused.size(), 1u);
  EXPECT_EQ(bad.refused[0].code, codes::kMalformedAlternativeIntents);
  auto range = plan(R"({"messages":["a"],"context":{"intentId":"x","confidenceScore":1.5}})");
  EXPECT_FALSE(range.bot_response);
  EXPECT_EQ(range.refused.size(), 1u);
}

TEST_F(PlanTest, IntentWithoutMessagesOrActionIsAnError) {
  auto p = plan(R"({"context":{"intentId":"x","confidenceScore":0.5}})");
  ASSERT_TRUE(p.fatal);
  EXPECT_EQ(p.fatal->code, codes::kMissingActionAndMessages);
}

TEST_F(PlanTest, Actions) {
  auto t = plan(
      R"({"messages":["bye"],"context":{"action":"TRANSFER","actionParameters":{"skill":"Sales","agentId":"123.4001"}}})");
  ASSERT_TRUE(t.action);
  EXPECT_EQ(t.action->kind, ActionKind::kTransfer);
  EXPECT_EQ(t.action->skill, "Sales");
  EXPECT_EQ(*t.action->agent_id, "123.4001");
  auto legacy =
      plan(R"({"context":{"action":"TRANSFER","actionParameters":{"skillName":"Sales"}}})");
  ASSERT_TRUE(legacy.action);
  EXPECT_EQ(legacy.action->skill, "Sales");
  auto c =
      plan(R"({"context":{"action":"CLOSE_CONVERSATION","actionParameters":{"withoutPcs":true}}})");
  ASSERT_TRUE(c.action);
  EXPECT_TRUE(c.action->without_pcs);
  auto ttr = plan(
      R"({"context":{"action":"CHANGE_TTR","actionParameters":{"ttrType":"CUSTOM","value":"120"}}})");
  ASSERT_TRUE(ttr.action);
  EXPECT_EQ(ttr.action->ttr_type, store::TtrType::kCustom);
  EXPECT_EQ(*ttr.action->ttr_value_s, 120);
  auto urgent =
      plan(R"({"context":{"action":"CHANGE_TTR","actionParameters":{"ttrType":"URGENT"}}})");
  ASSERT_TRUE(urgent.action);
  EXPECT_FALSE(urgent.action->ttr_value_s);
  auto inv = plan(
      R"({"context":{"action":"INVOCATION","actionParameters":{"lambdaUuid":"u-1","payload":{"a":1},"failOnError":true}}})");
  ASSERT_TRUE(inv.action);
  EXPECT_EQ(inv.action->lambda_uuid, "u-1");
  EXPECT_TRUE(inv.action->fail_on_error);
  EXPECT_EQ(inv.action->payload.at("a").as_int64(), 1);
}

TEST_F(PlanTest, InvalidActions) {
  // Unknown action without messages: fatal no-messages-and-not-supported-action.
  auto a = plan(R"({"context":{"action":"transfer"}})");
  ASSERT_TRUE(a.fatal);
  EXPECT_EQ(a.fatal->code, codes::kNotSupportedAction);
  // With messages: the action is ignored, the messages are sent.
  auto b = plan(R"({"messages":["hi"],"context":{"action":"DANCE"}})");
  ASSERT_FALSE(b.fatal);
  EXPECT_FALSE(b.action);
  EXPECT_EQ(b.steps.size(), 1u);
  ASSERT_EQ(b.refused.size(), 1u);
  // Invalid action bodies.
  auto c = plan(R"({"messages":["hi"],"context":{"action":"TRANSFER","actionParameters":{}}})");
  EXPECT_FALSE(c.action);
  EXPECT_EQ(c.refused[0].code, codes::kInvalidActionBody);
  auto d = plan(
      R"({"messages":["hi"],"context":{"action":"CHANGE_TTR","actionParameters":{"ttrType":"CUSTOM"}}})");
  EXPECT_FALSE(d.action);
  EXPECT_EQ(d.refused[0].code, codes::kChangeTtr);
  auto e = plan(
      R"({"messages":["hi"],"context":{"action":"CHANGE_TTR","actionParameters":{"ttrType":"URGENT"}}})",
      store::Channel::kChat);
  EXPECT_FALSE(e.action);
  EXPECT_EQ(e.refused[0].code, codes::kChangeTtr);
  auto f = plan(R"({"context":{"action":"INVOCATION","actionParameters":{}}})");
  ASSERT_TRUE(f.fatal);
}

TEST_F(PlanTest, OutcomeTableFatalCases) {
  EXPECT_EQ(plan("").fatal->code, codes::kMissingResponseBody);
  EXPECT_EQ(plan("null").fatal->code, codes::kMissingResponseBody);
  EXPECT_EQ(plan(R"("just text")").fatal->code, codes::kInvalidBody);
  EXPECT_EQ(plan("[1]").fatal->code, codes::kInvalidBody);
  EXPECT_EQ(plan("{}").fatal->code, codes::kMissingActionAndMessages);
  EXPECT_EQ(plan(R"({"messages":[]})").fatal->code, codes::kMissingActionAndMessages);
  EXPECT_EQ(plan(R"({"messages":"hi"})").fatal->code, codes::kInvalidBody);
  EXPECT_EQ(plan(R"({"messages":["x"],"context":5})").fatal->code, codes::kInvalidBody);
}

TEST_F(PlanTest, InvalidStructuredContentIsDroppedNotSilently) {
  auto p = plan(
      R"({"messages":["before",{"structuredContent":{"type":"vertical","elements":[{"type":"button"}]}},"after"]})");
  ASSERT_FALSE(p.fatal);
  ASSERT_EQ(p.steps.size(), 2u);
  ASSERT_EQ(p.refused.size(), 1u);
  EXPECT_EQ(p.refused[0].code, codes::kInvalidStructuredContent);
  EXPECT_EQ(p.refused[0].path, "/messages/1/structuredContent");
  EXPECT_NE(p.refused[0].message.find("/messages/1/structuredContent/elements/0"),
            std::string::npos);
  // Only invalid content: nothing can be sent → the turn fails.
  auto q =
      plan(R"({"messages":[{"structuredContent":{"type":"image","url":"http://x.com/a.png"}}]})");
  ASSERT_TRUE(q.fatal);
  EXPECT_EQ(q.fatal->code, codes::kInvalidStructuredContent);
}

TEST_F(PlanTest, EncodedMetadata) {
  auto p = plan(
      R"({"messages":["a",{"structuredContent":{"type":"text","text":"x"},"encodedMetadata":"b3du"}],
    "context":{"encodedMetadata":"Y3R4"}})");
  ASSERT_EQ(p.steps.size(), 2u);
  EXPECT_EQ(ev(p.steps[0]).at("encodedMetadata").as_string(), "Y3R4");
  EXPECT_EQ(ev(p.steps[1]).at("encodedMetadata").as_string(), "b3du");
  auto bad = plan(R"({"messages":["a","b"],"context":{"encodedMetadata":"!!"}})");
  EXPECT_TRUE(bad.fatal);  // every message dropped
  auto chat =
      plan(R"({"messages":["a"],"context":{"encodedMetadata":"Y3R4"}})", store::Channel::kChat);
  EXPECT_TRUE(chat.fatal);
}

TEST_F(PlanTest, InvalidMetadataDropsTheMessage) {
  auto p = plan(
      R"({"messages":["ok",{"structuredContent":{"type":"text","text":"x"},"metadata":[{"type":"ExternalId","id":")" +
      std::string(65, 'i') + R"("}]}]})");
  EXPECT_EQ(p.steps.size(), 1u);
  ASSERT_EQ(p.refused.size(), 1u);
  EXPECT_EQ(p.refused[0].code, codes::kMessagingSendMessage);
}

}  // namespace
}  // namespace parley::connector
