// Replay's pure half: turn summaries, the turn-by-turn diff, and reading recorded turns.

#include "connector/replay.h"

#include <gtest/gtest.h>

#include <string>

#include "connector/testing/validator.h"

namespace parley::connector {
namespace {

namespace bj = boost::json;

TurnSummary summary(const std::string& json, store::Channel ch = store::Channel::kMessaging) {
  PlanOptions o;
  o.channel = ch;
  o.conversation_id = "c1";
  return summarizeResponse(json, testing::embeddedValidator(), o);
}

std::vector<std::string> fields(const std::vector<TurnDifference>& d) {
  std::vector<std::string> out;
  for (const auto& x : d) out.push_back(x.field);
  return out;
}

const std::string kCard = R"({"type":"vertical","elements":[{"type":"text","text":"hi"}]})";
const std::string kCard2 = R"({"type":"vertical","elements":[{"type":"text","text":"ho"}]})";
const std::string kChips =
    R"({"type":"quickReplies","itemsPerRow":2,"replies":[{"type":"button","title":"Yes","click":{"actions":[{"type":"publishText","text":"yes"}]}}]})";

TEST(ReplaySummaryTest, ListsWhatTheConsumerAndTheAgentsGetAndWhatTheBotDoes) {
  auto s =
      summary(R"({"messages":["Hello",{"structuredContent":)" + kCard +
              R"(},{"text":"note","messageAudience":"AGENTS_AND_MANAGERS"},)" +
              R"({"structuredContent":{"message":"Pick","quickReplies":)" + kChips +
              R"(}}],"context":{"intentId":"greet","confidenceScore":0.9,"action":"CHANGE_TTR",)" +
              R"("actionParameters":{"ttrType":"URGENT"}}})");
  EXPECT_EQ(s.texts, (std::vector<std::string>{"Hello", "Pick"}));
  ASSERT_EQ(s.structured_content.size(), 1u);
  EXPECT_EQ(s.structured_content[0], bj::parse(kCard));
  ASSERT_EQ(s.quick_replies.size(), 1u);
  EXPECT_EQ(s.quick_replies[0].at("type"), "quickReplies");
  EXPECT_EQ(s.agent_texts, (std::vector<std::string>{"note"}));
  EXPECT_EQ(s.action.at("action"), "CHANGE_TTR");
  EXPECT_TRUE(s.intents.is_object());
  EXPECT_TRUE(s.errors.empty());
}

TEST(ReplayDiffTest, TheSameResponseHasNoDifference) {
  std::string r = R"({"messages":["Hi",{"structuredContent":)" + kCard + R"(}]})";
  EXPECT_TRUE(diffTurns(summary(r), summary(r)).empty());
}

TEST(ReplayDiffTest, AChangedTextIsOneDifferenceAtItsPosition) {
  auto d = diffTurns(summary(R"({"messages":["Hi","Bye"]})"),
                     summary(R"({"messages":["Hi","Goodbye"]})"));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].field, "texts");
  EXPECT_EQ(d[0].index, 1u);
  EXPECT_EQ(d[0].before, "Bye");
  EXPECT_EQ(d[0].after, "Goodbye");
}

TEST(ReplayDiffTest, AnAddedOrRemovedMessageHasNullOnTheOtherSide) {
  auto d = diffTurns(summary(R"({"messages":["Hi"]})"), summary(R"({"messages":["Hi","More"]})"));
  ASSERT_EQ(d.size(), 1u);
  EXPECT_TRUE(d[0].before.is_null());
  EXPECT_EQ(d[0].after, "More");
  auto back =
      diffTurns(summary(R"({"messages":["Hi","More"]})"), summary(R"({"messages":["Hi"]})"));
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(back[0].after.is_null());
}

TEST(ReplayDiffTest, StructuredContentQuickRepliesActionsAndIntentsEachDiffer) {
  auto before = summary(R"({"messages":[{"structuredContent":)" + kCard + R"(}]})");
  auto after = summary(R"({"messages":[{"structuredContent":)" + kCard2 + R"(}]})");
  EXPECT_EQ(fields(diffTurns(before, after)), std::vector<std::string>{"structuredContent"});

  auto chips = summary(R"({"messages":[{"structuredContent":{"message":"Pick","quickReplies":)" +
                       kChips + "}}]}");
  auto no_chips = summary(R"({"messages":["Pick"]})");
  EXPECT_EQ(fields(diffTurns(chips, no_chips)), std::vector<std::string>{"quickReplies"});

  auto close = summary(R"({"messages":["Bye"],"context":{"action":"CLOSE_CONVERSATION"}})");
  auto transfer = summary(
      R"({"messages":["Bye"],"context":{"action":"TRANSFER","actionParameters":{"skill":"human"}}})");
  auto d = diffTurns(close, transfer);
  ASSERT_EQ(fields(d), std::vector<std::string>{"action"});
  EXPECT_EQ(d[0].before.at("action"), "CLOSE_CONVERSATION");
  EXPECT_EQ(d[0].after.at("action"), "TRANSFER");

  auto greet =
      summary(R"({"messages":["Hi"],"context":{"intentId":"greet","confidenceScore":0.9}})");
  auto order =
      summary(R"({"messages":["Hi"],"context":{"intentId":"order","confidenceScore":0.9}})");
  EXPECT_EQ(fields(diffTurns(greet, order)), std::vector<std::string>{"intents"});
}

TEST(ReplayDiffTest, ErrorsCompareByCodeAndPathNotByMessage) {
  auto failed = summarizeInvocationError("com.liveperson.faas.handler.custom-failure");
  auto ok = summary(R"({"messages":["Hi"]})");
  EXPECT_EQ(fields(diffTurns(ok, failed)), (std::vector<std::string>{"texts", "errors"}));
  auto other = summarizeInvocationError("com.liveperson.faas.handler.custom-failure");
  other.errors[0].as_object()["message"] = "another message, 12 ms";
  EXPECT_TRUE(diffTurns(failed, other).empty());
  // An invalid card refused in one version only: the refusal with its JSON path is the change.
  auto refused = summary(R"({"messages":["Hi",{"structuredContent":{"type":"vertical"}}]})");
  auto d = diffTurns(ok, refused);
  ASSERT_EQ(fields(d), std::vector<std::string>{"errors"});
  EXPECT_EQ(d[0].after.as_array().at(0).at("path"), "/messages/1/structuredContent");
}

TEST(ReplayRecordedTurnTest, ReadsATurnRecordAndItsChannel) {
  auto t = recordedTurnFromJson(bj::parse(R"({
    "turnId":"t1","conversationId":"c1",
    "input":{"timestamp":1,"headers":[],"payload":{"message":"hi","convId":"c1",
      "context":{"lpEvent":{"@type":"line","conversationContext":{"type":"CHAT"}}}}},
    "response":{"messages":["hello"]},"actions":[],"timings":{"attempts":1},"error":""})"));
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->turn_id, "t1");
  EXPECT_EQ(t->channel, store::Channel::kChat);
  EXPECT_EQ(t->consumer_message, "hi");
  ASSERT_TRUE(t->response_json);
  EXPECT_EQ(bj::parse(*t->response_json), bj::parse(R"({"messages":["hello"]})"));
  EXPECT_FALSE(t->not_replayable);
}

TEST(ReplayRecordedTurnTest, UsesTheFunctionsOwnResponseNotThePostHooks) {
  auto t = recordedTurnFromJson(bj::parse(R"({
    "input":{"payload":{"message":"hi","event":{"name":"WELCOME"}}},
    "response":{"messages":["HOOKED"]},
    "actions":[{"kind":"POST_HOOK_RESPONSE","functionResponse":{"messages":["own"]}}]})"));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->consumer_message, "WELCOME");
  EXPECT_EQ(bj::parse(*t->response_json), bj::parse(R"({"messages":["own"]})"));
}

TEST(ReplayRecordedTurnTest, AFailedInvocationKeepsItsFaasCode) {
  auto t = recordedTurnFromJson(bj::parse(R"({
    "input":{"payload":{"message":"hi"}},"response":null,"timings":{"attempts":1},
    "actions":[{"kind":"ATTEMPT","message":"the function failed: com.liveperson.faas.handler.runtime-exception: boom"}],
    "error":"com.liveperson.bot-connectors-worker.error.aivendor.faas.invoke-lambda: ..."})"));
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->response_json);
  EXPECT_EQ(t->error_code, "com.liveperson.faas.handler.runtime-exception");
  // A tester turn's error object.
  auto u = recordedTurnFromJson(bj::parse(
      R"({"input":{"payload":{"message":"hi"}},"response":null,"error":{"code":"com.liveperson.faas.handler.custom-failure","message":"x"}})"));
  ASSERT_TRUE(u);
  EXPECT_EQ(u->error_code, "com.liveperson.faas.handler.custom-failure");
}

TEST(ReplayRecordedTurnTest, TurnsWithoutAFunctionCallAreNotReplayable) {
  auto t = recordedTurnFromJson(bj::parse(
      R"({"input":{"payload":{"message":"hi"}},"response":null,"timings":{"attempts":0},"error":"SERVICE_INTERRUPTION"})"));
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->not_replayable);
  EXPECT_NE(t->not_replayable->find("SERVICE_INTERRUPTION"), std::string::npos);
  auto inactivity = recordedTurnFromJson(bj::parse(R"({"input":{},"response":null})"));
  ASSERT_TRUE(inactivity);
  EXPECT_TRUE(inactivity->not_replayable);
}

TEST(ReplayRecordedTurnTest, AMalformedTurnIsRefusedWithWhatIsMissing) {
  auto t = recordedTurnFromJson(bj::parse(R"({"response":{}})"));
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("'input'"), std::string::npos);
  EXPECT_FALSE(recordedTurnFromJson(bj::parse("[1]")));
}

}  // namespace
}  // namespace parley::connector
