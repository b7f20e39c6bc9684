#include "server/protocol/codec.h"

#include <gtest/gtest.h>

#include "common/json.h"

namespace parley::server::protocol {
namespace {

store::Conversation sampleConversation() {
  store::Conversation c;
  c.id = ConversationId("conv-1");
  c.account = AccountId("123");
  c.consumer = ConsumerId("cons-1");
  c.skill = SkillId("7");
  c.start_ts = 10;
  c.updated_at = 20;
  c.participants = {
      {"cons-1", store::ParticipantRole::kConsumer, store::ParticipantState::kActive, 1},
      {"1001", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kSuggested, 2},
      {"1000", store::ParticipantRole::kAssignedAgent, store::ParticipantState::kActive, 3},
      {"1002", store::ParticipantRole::kManager, store::ParticipantState::kActive, 4}};
  return c;
}

PidLookup pids() {
  return [](const std::string& uid) -> std::optional<std::string> {
    if (uid == "1000") return "pid-1000";
    if (uid == "1001") return "pid-1001";
    if (uid == "1002") return "pid-1002";
    return std::nullopt;
  };
}

TEST(Codec, OpAcceptsInternalAndPublicNames) {
  EXPECT_EQ(opOf(".ams.ms.PublishEvent"), Op::kPublishEvent);
  EXPECT_EQ(opOf("ms.PublishEvent"), Op::kPublishEvent);
  EXPECT_EQ(opOf(".ams.aam.SubscribeExConversations"), Op::kSubscribeExConversations);
  EXPECT_EQ(opOf("cqm.SubscribeExConversations"), Op::kSubscribeExConversations);
  EXPECT_EQ(opOf(".ams.routing.UpdateRingState"), Op::kUpdateRingState);
  EXPECT_EQ(opOf("routing.UpdateRingState"), Op::kUpdateRingState);
  EXPECT_EQ(opOf(".GetClock"), Op::kGetClock);
  EXPECT_EQ(opOf("GetClock"), Op::kGetClock);
  EXPECT_EQ(opOf(".ams.ms.QueryMessages"), Op::kQueryMessages);
  EXPECT_EQ(opOf("ms.SubscribeMessagingEvents"), Op::kSubscribeMessagingEvents);
  EXPECT_EQ(opOf("up.GetUserProfile"), Op::kGetUserProfile);
  EXPECT_EQ(opOf("Nope"), Op::kUnknown);
}

TEST(Codec, EnvelopeToleratesNullOptionalKeysAndStringBodies) {
  auto e = parseEnvelope(
      R"({"kind":"req","id":"a1","type":".ams.ms.PublishEvent","body":{"x":1},"headers":null,"metadata":null,"encodedMetadata":null})");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, ".ams.ms.PublishEvent");
  EXPECT_TRUE(e->metadata.is_null());
  auto s = parseEnvelope(
      R"({"kind":"req","id":"a2","type":".ams.userprofile.GetUserProfile","body":"cons-1"})");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->body.is_string());
}

TEST(Codec, EnvelopeErrorsAreReadableAndKeepTheId) {
  auto a = parseEnvelope("nope");
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().error.code, ErrorCode::kInvalid);
  auto b = parseEnvelope(R"({"kind":"req","id":7})");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().id.as_int64(), 7);
  EXPECT_NE(b.error().error.message.find("type"), std::string::npos);
  EXPECT_FALSE(parseEnvelope(R"({"kind":"resp","id":"1","type":"x"})"));
  EXPECT_FALSE(parseEnvelope("[]"));
}

TEST(Codec, ResponsesEchoTheIdAsString) {
  auto r = json::parseObject(makeResponse(bj::value(5), 200, "GenericSubscribeResponse", {}));
  ASSERT_TRUE(r);
  EXPECT_EQ(json::getString(*r, "reqId"), "5");
  EXPECT_EQ(json::getString(*r, "kind"), "resp");
  auto e = json::parseObject(makeErrorResponse(bj::value("x"), Error{ErrorCode::kForbidden, "no"}));
  ASSERT_TRUE(e);
  EXPECT_EQ(json::getInt(*e, "code"), 403);
  EXPECT_NE(json::getString(*e, "type"), "error");
  EXPECT_EQ(json::getString(*e, "body"), "no");
}

TEST(Codec, AgentViewUsesOldStyleIdsAndPidsPerRoleOrder) {
  auto r = conversationResult(sampleConversation(), pids(), View::kAgent);
  const auto& d = r.at("conversationDetails").as_object();
  const auto& parts = d.at("participants").as_object();
  EXPECT_EQ(parts.at("ASSIGNED_AGENT").as_array(), (bj::array{"123.1000"}));
  EXPECT_EQ(parts.at("MANAGER").as_array(), (bj::array{"123.1002"}));
  EXPECT_EQ(parts.at("CONSUMER").as_array(), (bj::array{"cons-1"}));
  const auto& ppid = d.at("participantsPId").as_object();
  EXPECT_EQ(ppid.at("ASSIGNED_AGENT").as_array(), (bj::array{"pid-1000"}));
  EXPECT_EQ(ppid.at("CONSUMER").as_array(), (bj::array{"cons-1"}));
  const auto& dialogs = d.at("dialogs").as_array();
  ASSERT_EQ(dialogs.size(), 1u);
  const auto& pd = dialogs[0].as_object().at("participantsDetails").as_array();
  ASSERT_EQ(pd.size(), 4u);
  // ACTIVE first, SUGGESTED last, so the SDK's per-role index matches participantsPId.
  EXPECT_EQ(pd[1].as_object().at("id").as_string(), "123.1000");
  EXPECT_EQ(pd[3].as_object().at("state").as_string(), "SUGGESTED");
  EXPECT_EQ(r.at("convId").as_string(), "conv-1");
  EXPECT_EQ(d.at("state").as_string(), "OPEN");
}

TEST(Codec, ConsumerViewShowsPidsOnly) {
  auto r = conversationResult(sampleConversation(), pids(), View::kConsumer);
  std::string text = bj::serialize(r);
  EXPECT_EQ(text.find("123.1000"), std::string::npos) << text;
  const auto& d = r.at("conversationDetails").as_object();
  EXPECT_TRUE(d.at("participants").is_array());
  EXPECT_EQ(d.at("participantsPId").as_object().at("ASSIGNED_AGENT").as_array(),
            (bj::array{"pid-1000"}));
}

TEST(Codec, MessageRecordIdentityPerView) {
  store::Message m;
  m.conversation = ConversationId("conv-1");
  m.sequence = 3;
  m.originator_id = "123.1000";
  m.originator_pid = "pid-1000";
  m.originator_role = store::ParticipantRole::kAssignedAgent;
  m.event_json = R"({"type":"ContentEvent","contentType":"text/plain","message":"hi"})";
  m.metadata_json = R"([{"type":"BotResponse","intents":[]}])";
  auto a = messageRecord(m, View::kAgent);
  EXPECT_EQ(a.at("originatorId").as_string(), "123.1000");
  EXPECT_EQ(a.at("originatorPId").as_string(), "pid-1000");
  EXPECT_EQ(a.at("originatorMetadata").as_object().at("id").as_string(), "pid-1000");
  EXPECT_EQ(a.at("sequence").as_int64(), 3);
  EXPECT_EQ(a.at("metadata").as_array().size(), 1u);
  auto c = messageRecord(m, View::kConsumer);
  EXPECT_EQ(c.at("originatorId").as_string(), "pid-1000");
  EXPECT_FALSE(c.contains("originatorPId"));
}

TEST(Codec, RingResultAlwaysHasRingsDetails) {
  conversation::Ring r;
  r.ring_id = "conv-1_1000_5";
  r.account = AccountId("123");
  r.conversation = ConversationId("conv-1");
  r.consumer = ConsumerId("cons-1");
  r.user = UserId("1000");
  r.skill = SkillId("7");
  auto res = ringResult(r, "WAITING", 60);
  const auto& rings = res.at("ringsDetails").as_array();
  ASSERT_EQ(rings.size(), 1u);
  EXPECT_EQ(rings[0].as_object().at("ringState").as_string(), "WAITING");
  EXPECT_EQ(res.at("conversationId").as_string(), "conv-1");
}

TEST(Codec, ResolvesUserReferences) {
  UidFromPid p = [](const std::string& pid) -> std::optional<std::string> {
    if (pid == "pid-1000") return "1000";
    return std::nullopt;
  };
  AccountId acc("123");
  EXPECT_EQ(resolveUserRef(acc, "123.1000", p)->str(), "1000");
  EXPECT_EQ(resolveUserRef(acc, "1000", p)->str(), "1000");
  EXPECT_EQ(resolveUserRef(acc, "pid-1000", p)->str(), "1000");
  EXPECT_FALSE(resolveUserRef(acc, "999.1000", p));
  EXPECT_FALSE(resolveUserRef(acc, "", p));
}

TEST(Codec, ParsesTransferBatchesAndRejectsUnknownFields) {
  UidFromPid p = [](const std::string&) { return std::optional<std::string>("1001"); };
  AccountId acc("123");
  auto v = json::parse(
      R"([{"field":"ParticipantsChange","type":"REMOVE","role":"ASSIGNED_AGENT","userId":"123.1000"},
          {"field":"ParticipantsChange","type":"SUGGEST","role":"ASSIGNED_AGENT","userId":"some-pid"},
          {"field":"Skill","type":"UPDATE","skill":"8"},
          {"field":"TTRField","ttrType":"URGENT","value":300},
          {"field":"CSATRate","csatRate":5}])");
  auto f = parseConversationFields(acc, *v, p);
  ASSERT_TRUE(f) << f.error().message;
  ASSERT_EQ(f->changes.size(), 4u);
  EXPECT_EQ(std::get<conversation::RemoveParticipantField>(f->changes[0]).role,
            store::ParticipantRole::kAssignedAgent);
  EXPECT_EQ(std::get<conversation::RemoveParticipantField>(f->changes[0]).user->str(), "1000");
  EXPECT_EQ(std::get<conversation::SuggestAgentField>(f->changes[1]).user.str(), "1001");
  EXPECT_EQ(std::get<conversation::SkillField>(f->changes[2]).skill.str(), "8");
  EXPECT_EQ(std::get<conversation::TtrField>(f->changes[3]).type, store::TtrType::kUrgent);
  EXPECT_EQ(f->csat_entries, 1);
  // A bare element is accepted as a one-element array.
  auto close = json::parse(R"({"field":"ConversationStateField","conversationState":"CLOSE"})");
  auto g = parseConversationFields(acc, *close, p);
  ASSERT_TRUE(g);
  EXPECT_TRUE(std::holds_alternative<conversation::CloseField>(g->changes[0]));
  auto bad = json::parse(R"([{"field":"DialogChange"}])");
  auto h = parseConversationFields(acc, *bad, p);
  ASSERT_FALSE(h);
  EXPECT_NE(h.error().message.find("DialogChange"), std::string::npos);
  // A role or TTR type that is no protocol name is refused here, naming it.
  for (const char* text : {R"({"field":"ParticipantsChange","type":"REMOVE","role":"OWNER"})",
                           R"({"field":"TTRField","ttrType":"SOON"})"}) {
    auto r = parseConversationFields(acc, *json::parse(text), p);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, ErrorCode::kInvalid);
    const bool named = r.error().message.find("'OWNER'") != std::string::npos ||
                       r.error().message.find("'SOON'") != std::string::npos;
    EXPECT_TRUE(named) << r.error().message;
  }
  auto reader = parseConversationFields(
      acc, *json::parse(R"({"field":"ParticipantsChange","type":"ADD","role":"READER"})"), p);
  ASSERT_TRUE(reader) << reader.error().message;
  EXPECT_EQ(std::get<conversation::AddParticipantField>(reader->changes[0]).role,
            store::ParticipantRole::kReader);
}

TEST(Codec, RichContentAcceptsMessageAndEmitsContent) {
  auto ev =
      json::parse(R"({"type":"RichContentEvent","message":{"type":"vertical","elements":[]}})");
  auto n = normalizeEvent(*ev);
  ASSERT_TRUE(n);
  auto o = json::parseObject(*n);
  EXPECT_TRUE(o->contains("content"));
  EXPECT_FALSE(o->contains("message"));
  auto kept = json::parse(
      R"({"type":"RichContentEvent","content":{"type":"vertical","elements":[{"type":"text","text":"x"}]},"x":1})");
  auto k = normalizeEvent(*kept);
  ASSERT_TRUE(k);
  EXPECT_EQ(*json::parse(*k), *kept);  // relayed exactly as it came
  EXPECT_FALSE(normalizeEvent(*json::parse(R"({"message":"no type"})")));
  auto not_object = normalizeEvent(*json::parse(R"({"type":"RichContentEvent","content":[]})"));
  ASSERT_FALSE(not_object);
  EXPECT_NE(not_object.error().message.find("must be an object"), std::string::npos);
  auto none = normalizeEvent(*json::parse(R"({"type":"RichContentEvent","message":"text"})"));
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("needs \"content\""), std::string::npos);
  // Any other event is relayed exactly as it came.
  auto text = json::parse(R"({"type":"ContentEvent","contentType":"text/plain","message":"hi"})");
  EXPECT_EQ(*json::parse(*normalizeEvent(*text)), *text);
}

TEST(Codec, MetadataAndInitConnection) {
  EXPECT_EQ(*normalizeMetadata(nullptr), "[]");
  EXPECT_EQ(*normalizeMetadata(*json::parse(R"({"type":"ExternalId","id":"x"})")),
            R"([{"type":"ExternalId","id":"x"}])");
  EXPECT_FALSE(normalizeMetadata(bj::value(3)));
  auto h = json::parse(
      R"([{"type":".ams.headers.ClientProperties"},{"type":".ams.headers.ConsumerAuthentication","jwt":"J"}])");
  EXPECT_EQ(initConnectionJwt(*h), "J");
  auto states = convStates(*json::parseObject(R"({"convState":["OPEN","CLOSE"]})"));
  EXPECT_EQ(states.size(), 2u);
  EXPECT_EQ(convStates(bj::object{}).size(), 1u);
}

// The notifications built as text are, as JSON, what the bj::object records serialise to — for
// both views, with metadata or none, escapes in every string field and a malformed stored event.
TEST(Codec, MessageNotificationsBuiltAsTextEqualTheRecords) {
  std::vector<store::Message> msgs;
  for (int i = 0; i < 6; ++i) {
    store::Message m;
    m.conversation = ConversationId("conv-\"1\"");
    m.sequence = i;
    m.server_ts = 1700000000000 + i;
    m.originator_id = "123.1000";
    m.originator_pid = i % 2 ? "pid\\with\ttab" : "cons-1";
    m.originator_role =
        i % 2 ? store::ParticipantRole::kAssignedAgent : store::ParticipantRole::kConsumer;
    m.audience = i == 3 ? store::Audience::kAgentsAndManagers : store::Audience::kAll;
    m.event_json =
        R"({"type":"ContentEvent","contentType":"text/plain","message":"l\u00e9 \"q\" \n)" +
        std::to_string(i) + R"("})";
    if (i == 2) m.metadata_json = R"([{"type":"ExternalId","id":"x\u0001"}])";
    if (i == 4) m.metadata_json = " [ ] ";
    if (i == 5) m.event_json = "not json";
    msgs.push_back(m);
  }
  for (const auto& m : msgs) {
    for (View v : {View::kAgent, View::kConsumer}) {
      std::string text;
      appendMessageRecord(text, m, v);
      auto parsed = json::parse(text);
      ASSERT_TRUE(parsed) << text;
      EXPECT_EQ(*parsed, bj::value(messageRecord(m, v))) << text;
    }
    auto agent = json::parse(onlineEventDistribution(m));
    ASSERT_TRUE(agent);
    EXPECT_EQ(*agent, *json::parse(makeNotification(".ams.ms.OnlineEventDistribution",
                                                    messageRecord(m, View::kAgent))));
  }
  bj::array changes;
  for (const auto& m : msgs)
    if (m.audience == store::Audience::kAll)
      changes.emplace_back(messageRecord(m, View::kConsumer));
  bj::object body{{"subscriptionId", "sub\"1"},
                  {"changes", changes},
                  {"dialogId", msgs.front().conversation.str()}};
  auto consumer = json::parse(messagingEventNotification("sub\"1", msgs));
  ASSERT_TRUE(consumer);
  EXPECT_EQ(*consumer, *json::parse(makeNotification("ms.MessagingEventNotification", body)));
  // Only private notes: nothing to send.
  EXPECT_EQ(messagingEventNotification("s", std::span(msgs).subspan(3, 1)), "");
  std::string esc;
  appendJsonString(esc, std::string("a\"b\\c\x01\x1f\xc3\xa9", 9));
  EXPECT_EQ(esc, "\"a\\\"b\\\\c\\u0001\\u001f\xc3\xa9\"");
}

// The idempotency key is taken out of the envelope metadata (array or lone object); the other
// entries stay, in order. Bad keys and two key entries are refused, saying why.
TEST(Codec, TakesTheIdempotencyKeyOutOfTheMetadata) {
  auto take = [](const char* text) {
    bj::value md = text ? *json::parse(text) : bj::value(nullptr);
    auto key = takeIdempotencyKey(md);
    return std::make_pair(key, md);
  };
  auto [k1, md1] = take(
      R"([{"type":"ExternalId","id":"x"},{"type":"IdempotencyKey","key":"a-1"},{"type":"ActionReason"}])");
  ASSERT_TRUE(k1) << k1.error().message;
  EXPECT_EQ(*k1, "a-1");
  EXPECT_EQ(bj::serialize(md1), R"([{"type":"ExternalId","id":"x"},{"type":"ActionReason"}])");
  auto [k2, md2] =
      take(R"({"type":"IdempotencyKey","key":"0f8fad5b-d9cb-469f-a165-70867728950e"})");
  ASSERT_TRUE(k2);
  EXPECT_EQ(*k2, "0f8fad5b-d9cb-469f-a165-70867728950e");
  EXPECT_EQ(*normalizeMetadata(md2), "[]");
  auto [k3, md3] = take(R"([{"type":"ExternalId","id":"x"}])");
  ASSERT_TRUE(k3);
  EXPECT_EQ(*k3, "");
  EXPECT_EQ(bj::serialize(md3), R"([{"type":"ExternalId","id":"x"}])");
  auto [k4, md4] = take(nullptr);
  ASSERT_TRUE(k4);
  EXPECT_EQ(*k4, "");
  EXPECT_EQ(*take(R"([{"type":"IdempotencyKey","key":"A.b_c:d-9"}])").first, "A.b_c:d-9");

  auto refused = [&](const char* text, const char* says) {
    auto k = take(text).first;
    ASSERT_FALSE(k) << text;
    EXPECT_EQ(k.error().code, ErrorCode::kInvalid);
    EXPECT_NE(k.error().message.find(says), std::string::npos) << k.error().message;
  };
  refused(R"([{"type":"IdempotencyKey","key":"a"},{"type":"IdempotencyKey","key":"b"}])",
          "more than one IdempotencyKey");
  refused(R"([{"type":"IdempotencyKey"}])", "needs \"key\"");
  refused(R"([{"type":"IdempotencyKey","key":7}])", "needs \"key\"");
  refused(R"([{"type":"IdempotencyKey","key":""}])", "idempotency key is empty");
  refused(R"([{"type":"IdempotencyKey","key":"with space"}])", "not allowed");
  refused(R"([{"type":"IdempotencyKey","key":"ü"}])", "not allowed");
  std::string long_key = R"([{"type":"IdempotencyKey","key":")" + std::string(65, 'k') + R"("}])";
  refused(long_key.c_str(), "65 characters long; at most 64");
  std::string max_key = R"([{"type":"IdempotencyKey","key":")" + std::string(64, 'k') + R"("}])";
  EXPECT_TRUE(take(max_key.c_str()).first);
}

}  // namespace
}  // namespace parley::server::protocol
