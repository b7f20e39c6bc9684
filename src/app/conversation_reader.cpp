#include "app/conversation_reader.h"

#include <algorithm>
#include <boost/json.hpp>

#include "common/json.h"
#include "store/engagement_attributes.h"

namespace parley::app {

namespace bj = boost::json;

namespace {

// The `message` object of a hosted-file ContentEvent, or nullptr.
const bj::object* hostedFile(const bj::object& ev) {
  if (json::getString(ev, "type") != "ContentEvent" ||
      json::getString(ev, "contentType") != "hosted/file")
    return nullptr;
  auto m = ev.find("message");
  if (m == ev.end() || !m->value().is_object()) return nullptr;
  if (json::getString(m->value().as_object(), "relativePath").empty()) return nullptr;
  return &m->value().as_object();
}

}  // namespace

std::vector<std::string> hostedFilePaths(const std::vector<store::Message>& messages) {
  std::vector<std::string> out;
  for (const auto& m : messages) {
    auto ev = json::parseObject(m.event_json);
    if (!ev) continue;
    if (const bj::object* f = hostedFile(*ev)) {
      std::string p = json::getString(*f, "relativePath");
      if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(std::move(p));
    }
  }
  return out;
}

Result<std::string> readConversationForFunctions(store::Store& store, const AccountId& account,
                                                 const std::string& conversation_id) {
  auto c = store.conversations().getConversation(account, ConversationId(conversation_id));
  if (!c) return std::unexpected(c.error());
  auto msgs = store.conversations().listMessages(c->id, 0, 10'000);
  if (!msgs) return std::unexpected(msgs.error());
  bj::object info{{"conversationId", c->id.str()},
                  {"brandId", account.str()},
                  {"status", store::stateName(c->state)},
                  {"startTimeL", c->start_ts},
                  {"endTimeL", c->end_ts},
                  {"latestSkillId", c->skill.str()},
                  {"closeReason", store::closeReasonText(c->close_reason)},
                  {"channel", store::channelName(c->channel)}};
  bj::array records;
  for (const auto& m : *msgs) {
    auto ev = json::parseObject(m.event_json);
    if (!ev) continue;
    std::string type = json::getString(*ev, "type");
    bj::object rec{
        {"sequence", m.sequence},
        {"timeL", m.server_ts},
        {"sentBy", m.originator_role == store::ParticipantRole::kConsumer ? "Consumer" : "Agent"},
        {"participantId", m.originator_pid},
        {"audience", store::audienceName(m.audience)},
        {"dialogId", c->id.str()}};
    if (const bj::object* f = hostedFile(*ev)) {
      rec["type"] = "HOSTED_FILE";
      bj::object file{{"relativePath", json::getString(*f, "relativePath")},
                      {"fileType", json::getString(*f, "fileType")},
                      {"caption", json::getString(*f, "caption")}};
      rec["messageData"] = bj::object{{"file", std::move(file)}};
    } else if (type == "ContentEvent") {
      rec["type"] = "TEXT_PLAIN";
      rec["messageData"] =
          bj::object{{"msg", bj::object{{"text", json::getString(*ev, "message")}}}};
    } else if (type == "RichContentEvent") {
      rec["type"] = "RICH_CONTENT";
      bj::value content = bj::object{};
      if (auto it = ev->find("content"); it != ev->end()) content = it->value();
      rec["messageData"] =
          bj::object{{"richContent", bj::object{{"content", bj::serialize(content)}}}};
    } else {
      continue;
    }
    records.emplace_back(std::move(rec));
  }
  bj::array agents, consumers;
  for (const auto& p : c->participants) {
    bj::object o{{"participantId", p.id},
                 {"role", store::participantRoleName(p.role)},
                 {"state", store::participantStateName(p.state)},
                 {"timeL", p.joined_at}};
    if (p.role == store::ParticipantRole::kConsumer) {
      consumers.emplace_back(std::move(o));
    } else {
      agents.emplace_back(std::move(o));
    }
  }
  bj::object out{{"info", std::move(info)},
                 {"messageRecords", std::move(records)},
                 {"agentParticipants", std::move(agents)},
                 {"consumerParticipants", std::move(consumers)},
                 {"transfers", bj::array{}}};
  auto reported = store::reportedSdeEvents(store.functions(), account, c->id);
  if (!reported) return std::unexpected(reported.error());
  out["sdes"] = bj::object{{"events", std::move(*reported)}};
  out["unAuthSdes"] = bj::object{{"events", store::contextSdeEvents(c->context_json, c->start_ts)}};
  return bj::serialize(out);
}

}  // namespace parley::app
