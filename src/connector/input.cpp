#include "connector/input.h"

namespace parley::connector {

namespace bj = boost::json;

namespace {

bj::value parseOr(const std::string& text, bj::value def) {
  boost::system::error_code ec;
  bj::value v = bj::parse(text, ec);
  return ec ? def : v;
}

bj::object visitorFrom(const bj::value& ctx) {
  bj::object visitor;
  if (ctx.is_object()) {
    const bj::object& o = ctx.as_object();
    if (auto v = o.find("visitor"); v != o.end() && v->value().is_object())
      return v->value().as_object();
    for (const char* k : {"sharkVisitorId", "sharkSessionId", "ipAddress", "browser", "os",
                          "osVersion", "integration", "integrationVersion", "browserVersion",
                          "language", "features", "deviceFamily"})
      if (auto f = o.find(k); f != o.end()) visitor[k] = f->value();
    if (auto cp = o.find("clientProperties"); cp != o.end() && cp->value().is_object())
      for (const auto& kv : cp->value().as_object())
        if (!visitor.contains(kv.key())) visitor[kv.key()] = kv.value();
  }
  return visitor;
}

// `ctx`: the conversation's context_json, parsed.
bj::object conversationContext(const store::Conversation& conv, const bj::value& ctx) {
  bj::object out{{"skillId", conv.skill.str()},
                 {"type", store::channelName(conv.channel)},
                 {"visitor", visitorFrom(ctx)}};
  if (ctx.is_object()) {
    const bj::object& o = ctx.as_object();
    for (const char* k : {"campaignId", "engagementId"})
      if (auto f = o.find(k); f != o.end()) out[k] = f->value();
  }
  return out;
}

std::string messageText(const bj::object& ev, InputKind kind) {
  if (kind == InputKind::kRichContent) return kRichContentMessage;
  if (kind == InputKind::kFile) return kFileMessage;
  if (auto t = ev.find("message"); t != ev.end() && t->value().is_string())
    return std::string(t->value().as_string());
  return "";
}

bj::object messagingEvent(const ConsumerMessage& cm, const store::Conversation& conv,
                          const bj::value& ctx) {
  const store::Message& m = *cm.message;
  bj::object client;
  if (ctx.is_object())
    if (auto cp = ctx.as_object().find("clientProperties");
        cp != ctx.as_object().end() && cp->value().is_object())
      client = cp->value().as_object();
  return bj::object{
      {"sequence", m.sequence},
      {"serverTimestamp", m.server_ts},
      {"dialogId", conv.id.str()},
      {"conversationId", conv.id.str()},
      {"originatorId", m.originator_id},
      {"originatorClientProperties", client},
      {"originatorMetadata",
       {{"id", m.originator_id}, {"role", "CONSUMER"}, {"clientProperties", client}}},
      {"event", *cm.event},
      {"metadata", parseOr(m.metadata_json, bj::array{})},
      {"messageAudience", store::audienceName(m.audience)},
      {"__isMe", false},
      {"conversationContext", conversationContext(conv, ctx)},
  };
}

bj::object chatLine(const store::Message* m, const std::string& text,
                    const store::Conversation& conv, const bj::value& ctx,
                    const std::string& skill_name, bool welcome, TimeMs now) {
  bj::object line{
      {"@id", m ? std::to_string(m->sequence) : "0"},
      {"@type", "line"},
      {"time", m ? m->server_ts : now},
      {"textType", "plain"},
      {"text", text},
      {"by", m ? m->originator_id : conv.consumer.str()},
      {"source", welcome ? "system" : "visitor"},
      {"subType", "REGULAR"},
      {"state", "chatting"},
      {"chatSessionKey", conv.id.str()},
      {"skillId", conv.skill.str()},
      {"skillName", skill_name},
      {"visitorId", conv.consumer.str()},
      {"startTime", conv.start_ts},
      {"isWelcomeEvent", welcome},
      {"conversationContext", conversationContext(conv, ctx)},
  };
  return line;
}

}  // namespace

ConsumerMessage ConsumerMessage::fromStored(store::Message m) {
  boost::system::error_code ec;
  bj::value ev = bj::parse(m.event_json, ec);
  auto event = std::make_shared<bj::object>();
  if (!ec && ev.is_object()) *event = std::move(ev.as_object());
  return ConsumerMessage{std::make_shared<const store::Message>(std::move(m)), std::move(event)};
}

std::optional<InputKind> classifyConsumerMessage(const store::Message& m, const bj::object& o) {
  if (m.originator_role != store::ParticipantRole::kConsumer) return std::nullopt;
  auto type = o.find("type");
  if (type == o.end() || !type->value().is_string()) return std::nullopt;
  std::string_view t = type->value().as_string();
  if (t == "RichContentEvent") return InputKind::kRichContent;
  if (t != "ContentEvent") return std::nullopt;
  auto ct = o.find("contentType");
  std::string_view content_type =
      ct != o.end() && ct->value().is_string() ? std::string_view(ct->value().as_string()) : "";
  if (content_type == "hosted/file" || content_type.starts_with("forms/")) return InputKind::kFile;
  return InputKind::kText;
}

std::optional<InputKind> classifyConsumerMessage(const store::Message& m) {
  if (m.originator_role != store::ParticipantRole::kConsumer) return std::nullopt;
  // Read, not kept: parsed into a stack arena (no allocation per node; bigger events spill to
  // the heap).
  alignas(16) unsigned char arena_buf[4096];
  bj::monotonic_resource arena(arena_buf, sizeof arena_buf);
  boost::system::error_code ec;
  bj::value ev = bj::parse(m.event_json, ec, &arena);
  if (ec || !ev.is_object()) return std::nullopt;
  return classifyConsumerMessage(m, ev.as_object());
}

bj::object buildFunctionInput(const TurnInput& in, const store::Conversation& conv,
                              const std::string& skill_name, TimeMs now,
                              const bj::object& lp_sdes) {
  bool chat = conv.channel == store::Channel::kChat;
  const bj::value ctx = parseOr(conv.context_json, bj::object{});
  bj::object payload;
  bj::object lp_event;
  if (in.kind == InputKind::kWelcome) {
    payload["message"] = "";
    payload["event"] = bj::object{{"name", "WELCOME"}};
    if (chat) {
      lp_event = chatLine(nullptr, "", conv, ctx, skill_name, true, now);
    } else {
      lp_event = bj::object{
          {"type", "ContentEvent"},
          {"content", "welcome"},
          {"dialogId", conv.id.str()},
          {"conversationId", conv.id.str()},
          {"event",
           {{"type", "ContentEvent"}, {"message", "welcome"}, {"contentType", "text/plain"}}},
          {"conversationContext", conversationContext(conv, ctx)}};
      if (in.last_consumer_message) lp_event["lastConsumerMessage"] = *in.last_consumer_message;
    }
  } else {
    std::string text;
    for (std::size_t i = 0; i < in.messages.size(); ++i) {
      if (i) text += "\n";
      text += messageText(*in.messages[i].event, in.kind);
    }
    payload["message"] = text;
    const ConsumerMessage& last = in.messages.back();
    lp_event = chat ? chatLine(last.message.get(), text, conv, ctx, skill_name, false, now)
                    : messagingEvent(last, conv, ctx);
    if (in.messages.size() > 1) lp_event["combinedMessages"] = static_cast<int>(in.messages.size());
  }
  payload["convId"] = conv.id.str();
  payload["context"] = bj::object{{"lpEvent", std::move(lp_event)}, {"lpSdes", lp_sdes}};
  return bj::object{{"timestamp", now}, {"headers", bj::array{}}, {"payload", std::move(payload)}};
}

bj::object sampleFunctionInput(TimeMs now) {
  store::Conversation conv;
  conv.id = ConversationId("test-connection");
  conv.consumer = ConsumerId("test-consumer");
  conv.skill = SkillId("-1");
  store::Message m;
  m.conversation = conv.id;
  m.originator_id = conv.consumer.str();
  m.originator_role = store::ParticipantRole::kConsumer;
  m.server_ts = now;
  m.event_json = R"({"type":"ContentEvent","message":"hi","contentType":"text/plain"})";
  TurnInput in;
  in.messages.push_back(ConsumerMessage::fromStored(std::move(m)));
  return buildFunctionInput(in, conv, "", now);
}

}  // namespace parley::connector
