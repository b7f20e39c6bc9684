#include "app/conversation_reader.h"

#include <boost/json.hpp>

#include "common/json.h"

namespace parley::app {

namespace bj = boost::json;

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
    if (type == "ContentEvent") {
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
  return bj::serialize(out);
}

}  // namespace parley::app
