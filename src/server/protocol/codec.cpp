#include "server/protocol/codec.h"

#include <fmt/format.h>

#include <unordered_map>

#include "common/json.h"

namespace parley::server::protocol {
namespace {

const std::unordered_map<std::string_view, Op>& opTable() {
  static const std::unordered_map<std::string_view, Op> table = {
      {".GetClock", Op::kGetClock},
      {"GetClock", Op::kGetClock},
      {"KeepAlive", Op::kKeepAlive},
      {".KeepAlive", Op::kKeepAlive},
      {"InitConnection", Op::kInitConnection},
      {".InitConnection", Op::kInitConnection},
      {".ams.routing.SetAgentState", Op::kSetAgentState},
      {"routing.SetAgentState", Op::kSetAgentState},
      {".ams.aam.SubscribeExConversations", Op::kSubscribeExConversations},
      {"cqm.SubscribeExConversations", Op::kSubscribeExConversations},
      {".ams.cqm.SubscribeExConversations", Op::kSubscribeExConversations},
      {".ams.aam.UnsubscribeExConversations", Op::kUnsubscribeExConversations},
      {"cqm.UnsubscribeExConversations", Op::kUnsubscribeExConversations},
      {".ams.cqm.UnsubscribeExConversations", Op::kUnsubscribeExConversations},
      {".ams.routing.SubscribeRoutingTasks", Op::kSubscribeRoutingTasks},
      {"routing.SubscribeRoutingTasks", Op::kSubscribeRoutingTasks},
      {".ams.routing.UpdateRoutingTaskSubscription", Op::kUpdateRoutingTaskSubscription},
      {"routing.UpdateRoutingTaskSubscription", Op::kUpdateRoutingTaskSubscription},
      {".ams.routing.UpdateRingState", Op::kUpdateRingState},
      {"routing.UpdateRingState", Op::kUpdateRingState},
      {".ams.routing.SubscribeAgentsState", Op::kSubscribeAgentsState},
      {"routing.SubscribeAgentsState", Op::kSubscribeAgentsState},
      {".ams.routing.UnsubscribeAgentsState", Op::kUnsubscribeAgentsState},
      {"routing.UnsubscribeAgentsState", Op::kUnsubscribeAgentsState},
      {".ams.userprofile.GetUserProfile", Op::kGetUserProfile},
      {"userprofile.GetUserProfile", Op::kGetUserProfile},
      {"up.GetUserProfile", Op::kGetUserProfile},
      {".ams.userprofile.SetUserProfile", Op::kSetUserProfile},
      {"userprofile.SetUserProfile", Op::kSetUserProfile},
      {".ams.ms.QueryMessages", Op::kQueryMessages},
      {"ms.QueryMessages", Op::kQueryMessages},
      {"ms.SubscribeMessagingEvents", Op::kSubscribeMessagingEvents},
      {".ams.ms.SubscribeMessagingEvents", Op::kSubscribeMessagingEvents},
      {"ms.UnsubscribeMessagingEvents", Op::kUnsubscribeMessagingEvents},
      {".ams.ms.UnsubscribeMessagingEvents", Op::kUnsubscribeMessagingEvents},
      {".ams.ms.PublishEvent", Op::kPublishEvent},
      {"ms.PublishEvent", Op::kPublishEvent},
      {".ams.cm.UpdateConversationField", Op::kUpdateConversationField},
      {"cm.UpdateConversationField", Op::kUpdateConversationField},
      {"cm.ConsumerRequestConversation", Op::kConsumerRequestConversation},
      {".ams.cm.ConsumerRequestConversation", Op::kConsumerRequestConversation},
      {".ams.cm.AgentRequestConversation", Op::kAgentRequestConversation},
      {"cm.AgentRequestConversation", Op::kAgentRequestConversation},
      {".ams.ms.GenerateURLForUploadFile", Op::kGenerateUploadUrl},
      {"ms.GenerateURLForUploadFile", Op::kGenerateUploadUrl},
      {".ams.ms.GenerateURLForDownloadFile", Op::kGenerateDownloadUrl},
      {"ms.GenerateURLForDownloadFile", Op::kGenerateDownloadUrl},
  };
  return table;
}

std::string oldStyle(const store::Conversation& c, const std::string& user_id) {
  return c.account.str() + "." + user_id;
}

bool isConsumerRole(store::ParticipantRole role) {
  return role == store::ParticipantRole::kConsumer;
}

bj::value parseOr(const std::string& text, bj::value fallback) {
  auto v = json::parse(text);
  if (!v) return fallback;
  return std::move(*v);
}

constexpr store::ParticipantRole kRoles[] = {
    store::ParticipantRole::kConsumer, store::ParticipantRole::kAssignedAgent,
    store::ParticipantRole::kManager, store::ParticipantRole::kReader,
    store::ParticipantRole::kController};

}  // namespace

Op opOf(std::string_view type) {
  auto it = opTable().find(type);
  return it == opTable().end() ? Op::kUnknown : it->second;
}

std::expected<Envelope, ParseFailure> parseEnvelope(std::string_view text) {
  auto v = json::parse(text);
  if (!v) {
    return std::unexpected(ParseFailure{
        Error{ErrorCode::kInvalid, "the frame is not valid JSON: send one JSON object per frame"},
        nullptr});
  }
  if (!v->is_object()) {
    return std::unexpected(ParseFailure{
        Error{ErrorCode::kInvalid, "the frame must be a JSON object {kind:\"req\",id,type,body}"},
        nullptr});
  }
  auto& o = v->as_object();
  Envelope e;
  if (auto it = o.find("id"); it != o.end()) e.id = it->value();
  auto kind = o.find("kind");
  if (kind != o.end() && !kind->value().is_null() &&
      !(kind->value().is_string() && kind->value().as_string() == "req")) {
    return std::unexpected(ParseFailure{
        Error{ErrorCode::kInvalid, "only kind \"req\" is accepted from clients"}, e.id});
  }
  auto type = o.find("type");
  if (type == o.end() || !type->value().is_string() || type->value().as_string().empty()) {
    return std::unexpected(
        ParseFailure{Error{ErrorCode::kInvalid,
                           "the request has no \"type\" (a string such as \"ms.PublishEvent\")"},
                     e.id});
  }
  e.type = std::string(type->value().as_string());
  if (auto it = o.find("body"); it != o.end()) e.body = it->value();
  if (auto it = o.find("metadata"); it != o.end()) e.metadata = it->value();
  if (auto it = o.find("headers"); it != o.end()) e.headers = it->value();
  return e;
}

std::string makeResponse(const bj::value& req_id, int code, std::string_view type,
                         const bj::value& body) {
  bj::object o;
  o["kind"] = "resp";
  // The protocol's reqId is a string; numeric ids are echoed as their text ("1").
  if (req_id.is_string()) {
    o["reqId"] = req_id;
  } else if (req_id.is_null()) {
    o["reqId"] = nullptr;
  } else {
    o["reqId"] = bj::serialize(req_id);
  }
  o["code"] = code;
  o["type"] = type;
  o["body"] = body;
  return bj::serialize(o);
}

int protocolCode(const Error& error) { return httpStatus(error.code); }

std::string makeErrorResponse(const bj::value& req_id, const Error& error) {
  return makeResponse(req_id, protocolCode(error), ".ReqBody$StringResp", bj::value(error.message));
}

std::string makeNotification(std::string_view type, const bj::value& body) {
  bj::object o;
  o["kind"] = "notification";
  o["type"] = type;
  o["body"] = body;
  return bj::serialize(o);
}

bj::object conversationResult(const store::Conversation& c, const PidLookup& pid, View view) {
  bj::object participants;
  bj::object participants_pid;
  for (store::ParticipantRole role : kRoles) {
    const char* r = store::participantRoleName(role);
    participants[r] = bj::array();
    participants_pid[r] = bj::array();
  }
  auto pidOf = [&](const store::Participant& p) -> std::string {
    if (isConsumerRole(p.role)) return p.id;
    if (auto v = pid ? pid(p.id) : std::nullopt) return *v;
    return oldStyle(c, p.id);
  };
  auto idOf = [&](const store::Participant& p) -> std::string {
    if (isConsumerRole(p.role)) return p.id;
    return view == View::kAgent ? oldStyle(c, p.id) : pidOf(p);
  };
  bj::array details;
  // ACTIVE participants first (their per-role order matches participantsPId), then SUGGESTED.
  for (const auto& p : c.participants) {
    if (p.state != store::ParticipantState::kActive) continue;
    const char* role = store::participantRoleName(p.role);
    participants[role].as_array().emplace_back(idOf(p));
    participants_pid[role].as_array().emplace_back(pidOf(p));
    details.emplace_back(bj::object{
        {"id", idOf(p)}, {"role", role}, {"state", store::participantStateName(p.state)}});
  }
  for (const auto& p : c.participants) {
    if (p.state == store::ParticipantState::kActive) continue;
    details.emplace_back(bj::object{{"id", idOf(p)},
                                    {"role", store::participantRoleName(p.role)},
                                    {"state", store::participantStateName(p.state)}});
  }
  const char* state = store::stateName(c.state);
  bj::object dialog{{"dialogId", c.id.str()},
                    {"dialogType", "MAIN"},
                    {"channelType", store::channelName(c.channel)},
                    {"state", state},
                    {"creationTs", c.start_ts},
                    {"metaDataLastUpdateTs", c.updated_at},
                    {"participantsDetails", std::move(details)}};
  if (c.state == store::ConversationState::kClose) {
    dialog["endTs"] = c.end_ts;
    dialog["closedTs"] = c.end_ts;
    if (c.close_reason) dialog["closedBy"] = store::closeReasonName(*c.close_reason);
  }
  bj::object details_obj;
  details_obj["convId"] = c.id.str();
  details_obj["skillId"] = c.skill.str();
  details_obj["state"] = state;
  details_obj["stage"] = state;
  details_obj["startTs"] = c.start_ts;
  details_obj["endTs"] = c.end_ts;
  details_obj["metaDataLastUpdateTs"] = c.updated_at;
  if (view == View::kAgent) {
    details_obj["participants"] = std::move(participants);
  } else {
    // Consumers: the public schema's array form; participantsPId carries the map.
    bj::array arr;
    for (const auto& [role, ids] : participants_pid)
      for (const auto& id : ids.as_array())
        arr.emplace_back(bj::object{{"id", id}, {"role", role}});
    details_obj["participants"] = std::move(arr);
  }
  details_obj["participantsPId"] = std::move(participants_pid);
  details_obj["dialogs"] = bj::array{std::move(dialog)};
  details_obj["ttr"] =
      bj::object{{"ttrType", store::ttrTypeName(c.ttr_type)}, {"value", c.ttr_value_s}};
  details_obj["context"] = parseOr(c.context_json, bj::object{});
  details_obj["brandId"] = c.account.str();
  details_obj["closeReason"] = store::closeReasonText(c.close_reason);
  details_obj["conversationHandlerDetails"] = bj::object{{"skillId", c.skill.str()}};

  bj::object result;
  result["convId"] = c.id.str();
  result["effectiveTTR"] = c.ttr_due_at > 0 ? c.ttr_due_at : -1;
  result["lastUpdateTime"] = c.updated_at;
  result["numberOfunreadMessages"] = bj::object{};
  result["conversationDetails"] = std::move(details_obj);
  return result;
}

bj::object messageRecord(const store::Message& m, View view) {
  bj::object r;
  r["dialogId"] = m.conversation.str();
  r["conversationId"] = m.conversation.str();
  r["sequence"] = m.sequence;
  r["serverTimestamp"] = m.server_ts;
  r["event"] = parseOr(m.event_json, bj::object{});
  if (view == View::kAgent) {
    r["originatorId"] = m.originator_id;
    r["originatorPId"] = m.originator_pid;
  } else {
    r["originatorId"] = m.originator_pid;
  }
  r["originatorMetadata"] =
      bj::object{{"id", m.originator_pid},
                 {"role", store::participantRoleName(m.originator_role)},
                 {"clientProperties", bj::object{{"type", ".ClientProperties"}}}};
  r["originatorClientProperties"] = bj::object{{"type", ".ClientProperties"}};
  r["messageAudience"] = store::audienceName(m.audience);
  bj::value md = parseOr(m.metadata_json, bj::array{});
  if (md.is_array() && !md.as_array().empty()) r["metadata"] = std::move(md);
  return r;
}

void appendJsonString(std::string& out, std::string_view s) {
  out += bj::serialize(bj::string_view(s.data(), s.size()));
}

namespace {

// `text` when it looks like a JSON value of the given kind ('{'...'}' or '['...']'), else the
// fallback. Only the brackets are checked: the engine stores event and metadata JSON only after
// parsing it (publish), so what is stored is valid; an empty or wrong-kind value gets the
// fallback, as messageRecord's parseOr gives it.
std::string_view storedJson(const std::string& text, char open, char close,
                            std::string_view fallback) {
  std::size_t b = text.find_first_not_of(" \t\r\n");
  std::size_t e = text.find_last_not_of(" \t\r\n");
  if (b == std::string::npos || text[b] != open || text[e] != close) return fallback;
  return std::string_view(text).substr(b, e - b + 1);
}

bool emptyJsonArray(std::string_view a) {
  return a.size() >= 2 &&
         a.substr(1, a.size() - 2).find_first_not_of(" \t\r\n") == std::string_view::npos;
}

}  // namespace

void appendMessageRecord(std::string& out, const store::Message& m, View view) {
  out.append("{\"dialogId\":");
  appendJsonString(out, m.conversation.str());
  out.append(",\"conversationId\":");
  appendJsonString(out, m.conversation.str());
  out.append(",\"sequence\":");
  out.append(std::to_string(m.sequence));
  out.append(",\"serverTimestamp\":");
  out.append(std::to_string(m.server_ts));
  out.append(",\"event\":");
  out.append(storedJson(m.event_json, '{', '}', "{}"));
  out.append(",\"originatorId\":");
  if (view == View::kAgent) {
    appendJsonString(out, m.originator_id);
    out.append(",\"originatorPId\":");
    appendJsonString(out, m.originator_pid);
  } else {
    appendJsonString(out, m.originator_pid);
  }
  out.append(",\"originatorMetadata\":{\"id\":");
  appendJsonString(out, m.originator_pid);
  out.append(",\"role\":");
  appendJsonString(out, store::participantRoleName(m.originator_role));
  out.append(
      ",\"clientProperties\":{\"type\":\".ClientProperties\"}},"
      "\"originatorClientProperties\":{\"type\":\".ClientProperties\"},\"messageAudience\":");
  appendJsonString(out, store::audienceName(m.audience));
  std::string_view md = storedJson(m.metadata_json, '[', ']', "[]");
  if (!emptyJsonArray(md)) {
    out.append(",\"metadata\":");
    out.append(md);
  }
  out.push_back('}');
}

std::string messagingEventNotification(std::string_view subscription_id,
                                       std::span<const store::Message> msgs) {
  std::string out;
  out.reserve(256 + 512 * msgs.size());
  out.append(
      "{\"kind\":\"notification\",\"type\":\"ms.MessagingEventNotification\",\"body\":{"
      "\"subscriptionId\":");
  appendJsonString(out, subscription_id);
  out.append(",\"changes\":[");
  bool any = false;
  for (const auto& m : msgs) {
    if (m.audience != store::Audience::kAll) continue;  // private notes never reach consumers
    if (any) out.push_back(',');
    appendMessageRecord(out, m, View::kConsumer);
    any = true;
  }
  if (!any) return {};
  out.append("],\"dialogId\":");
  appendJsonString(out, msgs.front().conversation.str());
  out.append("}}");
  return out;
}

std::string messagingEventNotification(std::string_view subscription_id, const store::Message& m,
                                       std::string_view record) {
  std::string out;
  out.reserve(192 + subscription_id.size() + record.size() + 2 * m.conversation.str().size());
  out.append(
      "{\"kind\":\"notification\",\"type\":\"ms.MessagingEventNotification\",\"body\":{"
      "\"subscriptionId\":");
  appendJsonString(out, subscription_id);
  out.append(",\"changes\":[");
  out.append(record);
  out.append("],\"dialogId\":");
  appendJsonString(out, m.conversation.str());
  out.append("}}");
  return out;
}

std::string onlineEventDistribution(const store::Message& m) {
  std::string out;
  out.reserve(512 + m.event_json.size() + m.metadata_json.size());
  out.append("{\"kind\":\"notification\",\"type\":\".ams.ms.OnlineEventDistribution\",\"body\":");
  appendMessageRecord(out, m, View::kAgent);
  out.push_back('}');
  return out;
}

bj::object chatStateRecord(const conversation::ChatStateChanged& c, View view) {
  bj::object r;
  r["dialogId"] = c.conversation.id.str();
  r["conversationId"] = c.conversation.id.str();
  r["serverTimestamp"] = c.server_ts;
  r["event"] = parseOr(c.event_json, bj::object{});
  if (view == View::kAgent) {
    r["originatorId"] = c.originator_id;
    r["originatorPId"] = c.originator_pid;
  } else {
    r["originatorId"] = c.originator_pid;
  }
  r["originatorMetadata"] =
      bj::object{{"id", c.originator_pid}, {"role", store::participantRoleName(c.originator_role)}};
  r["originatorClientProperties"] = bj::object{{"type", ".ClientProperties"}};
  r["messageAudience"] = "ALL";
  bj::value md = parseOr(c.metadata_json, bj::array{});
  if (md.is_array() && !md.as_array().empty()) r["metadata"] = std::move(md);
  return r;
}

bj::object ringResult(const conversation::Ring& r, std::string_view ring_state,
                      std::int64_t ring_expiration_s) {
  bj::object ring{{"ringId", r.ring_id},
                  {"ringState", ring_state},
                  {"ringExpirationTs", r.expires_at},
                  {"ringExpiration", ring_expiration_s},
                  {"weight", 0},
                  {"brandId", r.account.str()},
                  {"convId", r.conversation.str()},
                  {"consumerId", r.consumer.str()},
                  {"skillId", r.skill.str()}};
  bj::object res;
  res["routingTaskId"] = r.conversation.str() + "_" + r.user.str();
  res["taskCompleted"] = ring_state != "WAITING";
  res["conversationId"] = r.conversation.str();
  res["consumerId"] = r.consumer.str();
  res["skillId"] = r.skill.str();
  res["brandId"] = r.account.str();
  res["assignedAgentId"] = ring_state == "ACCEPTED" ? r.account.str() + "." + r.user.str() : "";
  res["ringsDetails"] = bj::array{std::move(ring)};
  return res;
}

bj::object agentStateResult(const store::AgentState& s) {
  return bj::object{{"availability", store::availabilityName(s.availability)},
                    {"channels", bj::array{"MESSAGING"}},
                    {"description", ""},
                    {"agentUserId", s.account.str() + "." + s.user.str()},
                    {"updatedAt", s.updated_at}};
}

bj::object userProfileBody(const std::string& consumer_id) {
  return bj::object{{"firstName", ""},
                    {"lastName", ""},
                    {"userId", consumer_id},
                    {"privateData", bj::object{}},
                    {"authenticatedData", bj::object{{"lp_sdes", bj::array{}}}},
                    {"claims", bj::object{{"lp_sdes", bj::array{}}, {"iss", "parley"}}},
                    {"acr", "0"}};
}

std::optional<UserId> resolveUserRef(const AccountId& acc, std::string_view ref,
                                     const UidFromPid& pid_to_uid) {
  if (ref.empty()) return std::nullopt;
  auto all_digits = [](std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
      if (c < '0' || c > '9') return false;
    return true;
  };
  std::string prefix = acc.str() + ".";
  if (ref.starts_with(prefix) && all_digits(ref.substr(prefix.size())))
    return UserId(std::string(ref.substr(prefix.size())));
  if (all_digits(ref)) return UserId(std::string(ref));
  if (pid_to_uid) {
    if (auto uid = pid_to_uid(std::string(ref))) return UserId(*uid);
  }
  return std::nullopt;
}

Result<ParsedFields> parseConversationFields(const AccountId& acc, const bj::value& fields,
                                             const UidFromPid& pid_to_uid) {
  bj::array items;
  if (fields.is_array()) {
    items = fields.as_array();
  } else if (fields.is_object()) {
    items.push_back(fields);
  } else {
    return invalid("conversationField must be an array of field objects");
  }
  if (items.empty()) return invalid("conversationField is empty: send at least one field");
  ParsedFields out;
  for (const auto& item : items) {
    if (!item.is_object()) return invalid("each conversationField entry must be an object");
    const auto& f = item.as_object();
    std::string field = json::getString(f, "field");
    if (field == "ConversationStateField") {
      std::string st = json::getString(f, "conversationState");
      if (st != "CLOSE")
        return invalid(fmt::format(
            "ConversationStateField supports conversationState \"CLOSE\" only (got \"{}\")", st));
      out.changes.emplace_back(conversation::CloseField{});
    } else if (field == "TTRField") {
      auto t = store::parseTtrType(json::getString(f, "ttrType"));
      if (!t) return invalid("TTRField: " + t.error().message);
      conversation::TtrField ttr{*t, std::nullopt};
      auto v = json::optInt(f, "value");
      if (!v) return invalid("TTRField value must be a number of seconds");
      if (*v) {
        if (**v < 0) return invalid("TTRField value must be >= 0");
        ttr.value_s = **v;
      }
      out.changes.emplace_back(ttr);
    } else if (field == "Skill") {
      std::string type = json::getString(f, "type", "UPDATE");
      if (type != "UPDATE") return invalid("Skill supports type \"UPDATE\" only");
      auto it = f.find("skill");
      std::string skill;
      if (it != f.end() && it->value().is_string()) skill = std::string(it->value().as_string());
      if (it != f.end() && it->value().is_int64()) skill = std::to_string(it->value().as_int64());
      if (skill.empty()) return invalid("Skill UPDATE needs \"skill\": the target skill id");
      out.changes.emplace_back(conversation::SkillField{SkillId(skill)});
    } else if (field == "ParticipantsChange") {
      std::string type = json::getString(f, "type");
      std::string role = json::getString(f, "role");
      std::string user_ref = json::getString(f, "userId");
      std::optional<UserId> user;
      if (!user_ref.empty()) {
        user = resolveUserRef(acc, user_ref, pid_to_uid);
        if (!user)
          return invalid(fmt::format("ParticipantsChange userId '{}' is not a user of account {}",
                                     user_ref, acc.str()));
      }
      if (type == "ADD") {
        if (role != "MANAGER" && role != "READER")
          return invalid("ParticipantsChange ADD supports role MANAGER or READER");
        out.changes.emplace_back(
            conversation::AddParticipantField{*store::parseParticipantRole(role), user});
      } else if (type == "REMOVE") {
        if (role.empty()) return invalid("ParticipantsChange REMOVE needs a role");
        auto parsed = store::parseParticipantRole(role);
        if (!parsed) return invalid("ParticipantsChange REMOVE: " + parsed.error().message);
        out.changes.emplace_back(conversation::RemoveParticipantField{*parsed, user});
      } else if (type == "SUGGEST") {
        if (role != "ASSIGNED_AGENT")
          return invalid("ParticipantsChange SUGGEST supports role ASSIGNED_AGENT only");
        if (!user)
          return invalid("ParticipantsChange SUGGEST needs the userId of the target agent");
        out.changes.emplace_back(conversation::SuggestAgentField{*user});
      } else {
        return invalid(fmt::format(
            "ParticipantsChange type must be ADD, REMOVE or SUGGEST (got \"{}\")", type));
      }
    } else if (field == "CSATRate") {
      ++out.csat_entries;
    } else if (field.empty()) {
      return invalid("each conversationField entry needs a \"field\" name");
    } else {
      return invalid(fmt::format(
          "conversation field \"{}\" is not supported; supported: ConversationStateField, "
          "TTRField, Skill, ParticipantsChange, CSATRate",
          field));
    }
  }
  return out;
}

Result<std::shared_ptr<const bj::object>> normalizedEvent(const bj::value& event) {
  if (!event.is_object()) return invalid("the event must be an object with a \"type\"");
  const bj::object& in = event.as_object();
  const auto* type = in.if_contains("type");
  if (type == nullptr || !type->is_string())
    return invalid("the event needs a string \"type\" (ContentEvent, RichContentEvent, ...)");
  // One block of its own for the copy, which the engine and its listeners keep (as the engine
  // does for an event it parses).
  auto copy = [&in] {
    return bj::object(in, bj::make_shared_resource<bj::monotonic_resource>(1024));
  };
  // Only a RichContentEvent that names its content "message" is changed; every other event is
  // relayed as it came.
  if (type->as_string() != "RichContentEvent") return std::make_shared<const bj::object>(copy());
  if (const auto* content = in.if_contains("content")) {
    if (!content->is_object()) return invalid("RichContentEvent \"content\" must be an object");
    return std::make_shared<const bj::object>(copy());
  }
  const auto* message = in.if_contains("message");
  if (message == nullptr || !message->is_object())
    return invalid("a RichContentEvent needs \"content\" (the structured-content object)");
  bj::object e = copy();
  bj::value moved = std::move(e.at("message"));
  e.erase("message");
  e["content"] = std::move(moved);
  return std::make_shared<const bj::object>(std::move(e));
}

Result<std::string> normalizeEvent(const bj::value& event) {
  auto e = normalizedEvent(event);
  if (!e) return std::unexpected(std::move(e.error()));
  return bj::serialize(**e);
}

Result<std::string> normalizeMetadata(const bj::value& metadata) {
  if (metadata.is_null()) return std::string("[]");
  if (metadata.is_array()) return bj::serialize(metadata);
  if (metadata.is_object()) return bj::serialize(bj::array{metadata});
  return invalid("metadata must be an array of objects");
}

Result<std::string> takeIdempotencyKey(bj::value& metadata) {
  auto isKey = [](const bj::value& v) {
    return v.is_object() && json::getString(v.as_object(), "type") == "IdempotencyKey";
  };
  auto keyOf = [](const bj::value& entry) -> Result<std::string> {
    const auto& o = entry.as_object();
    auto it = o.find("key");
    if (it == o.end() || !it->value().is_string())
      return invalid("metadata entry IdempotencyKey needs \"key\": a string of 1 to 64 characters");
    std::string key(it->value().as_string());
    if (auto st = conversation::checkIdempotencyKey(key); !st) return std::unexpected(st.error());
    return key;
  };
  if (isKey(metadata)) {
    auto key = keyOf(metadata);
    if (key) metadata = nullptr;
    return key;
  }
  if (!metadata.is_array()) return std::string();
  auto& arr = metadata.as_array();
  std::string key;
  bool seen = false;
  for (auto it = arr.begin(); it != arr.end();) {
    if (!isKey(*it)) {
      ++it;
      continue;
    }
    if (seen) return invalid("metadata has more than one IdempotencyKey entry; send at most one");
    auto k = keyOf(*it);
    if (!k) return k;
    key = std::move(*k);
    seen = true;
    it = arr.erase(it);
  }
  return key;
}

std::string initConnectionJwt(const bj::value& headers) {
  auto check = [](const bj::value& h) -> std::string {
    if (!h.is_object()) return {};
    const auto& o = h.as_object();
    std::string type = json::getString(o, "type");
    if (type == ".ams.headers.ConsumerAuthentication" || type == "ConsumerAuthentication")
      return json::getString(o, "jwt");
    return {};
  };
  if (headers.is_array()) {
    for (const auto& h : headers.as_array())
      if (auto j = check(h); !j.empty()) return j;
  } else {
    return check(headers);
  }
  return {};
}

std::vector<store::ConversationState> convStates(const bj::object& body) {
  std::vector<store::ConversationState> out;
  auto it = body.find("convState");
  auto add = [&](const bj::value& v) {
    if (!v.is_string()) return;
    if (auto s = store::parseConversationState(std::string(v.as_string()))) out.push_back(*s);
  };
  if (it != body.end()) {
    if (it->value().is_array()) {
      for (const auto& v : it->value().as_array()) add(v);
    } else {
      add(it->value());
    }
  }
  if (out.empty()) out.push_back(store::ConversationState::kOpen);
  return out;
}

}  // namespace parley::server::protocol
