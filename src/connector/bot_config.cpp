#include "connector/bot_config.h"

#include <fmt/format.h>

#include "common/json.h"
#include "common/names.h"

namespace parley::connector {

namespace bj = boost::json;

bool BotConfig::servesChannel(store::Channel c) const {
  for (auto x : conversation_types)
    if (x == c) return true;
  return false;
}

namespace {

#define PARLEY_TRY_ASSIGN(var, expr) \
  auto var = (expr);                 \
  if (!var) return std::unexpected(var.error());

Status parseEscalation(const bj::object& o, EscalationPolicy& e) {
  PARLEY_TRY_ASSIGN(skill, json::optString(o, "skill"));
  if (*skill) e.skill = **skill;
  PARLEY_TRY_ASSIGN(message, json::optString(o, "message"));
  if (*message) e.message = **message;
  PARLEY_TRY_ASSIGN(agent_message, json::optString(o, "agentMessage"));
  if (*agent_message) e.agent_message = **agent_message;
  PARLEY_TRY_ASSIGN(failure, json::optString(o, "failureMessage"));
  if (*failure) e.failure_message = **failure;
  PARLEY_TRY_ASSIGN(retries, json::optInt(o, "retries"));
  if (*retries) {
    if (**retries < 0 || **retries > 5)
      return invalid("field 'escalation.retries' must be from 0 to 5");
    e.retries = static_cast<int>(**retries);
  }
  PARLEY_TRY_ASSIGN(timeout, json::optInt(o, "turnTimeoutMs"));
  if (*timeout) {
    if (**timeout < 100 || **timeout > 30'000)
      return invalid(
          "field 'escalation.turnTimeoutMs' must be from 100 to 30000 (the platform limit is "
          "30 s)");
    e.turn_timeout_ms = **timeout;
  }
  return {};
}

Status parseChatInactivity(const bj::value& v, ChatInactivity& c) {
  if (v.is_bool()) {
    c.enabled = v.as_bool();
    return {};
  }
  if (!v.is_object())
    return invalid(
        "field 'chatInactivity' must be true/false or {warningAfterMs, warningMessage, "
        "closeAfterMs, closeMessage}");
  const bj::object& o = v.as_object();
  c.enabled = true;
  PARLEY_TRY_ASSIGN(en, json::optBool(o, "enabled"));
  if (*en) c.enabled = **en;
  PARLEY_TRY_ASSIGN(warn, json::optInt(o, "warningAfterMs"));
  if (*warn) c.warning_after_ms = **warn;
  PARLEY_TRY_ASSIGN(close, json::optInt(o, "closeAfterMs"));
  if (*close) c.close_after_ms = **close;
  PARLEY_TRY_ASSIGN(wm, json::optString(o, "warningMessage"));
  if (*wm) c.warning_message = **wm;
  PARLEY_TRY_ASSIGN(cm, json::optString(o, "closeMessage"));
  if (*cm) c.close_message = **cm;
  if (c.close_after_ms < 100 || c.close_after_ms > 86'400'000)
    return invalid("field 'chatInactivity.closeAfterMs' must be from 100 to 86400000 (24 h)");
  if (c.warning_after_ms != 0 &&
      (c.warning_after_ms < 100 || c.warning_after_ms >= c.close_after_ms))
    return invalid(
        "field 'chatInactivity.warningAfterMs' must be 0 (no warning) or from 100 to less than "
        "closeAfterMs");
  if (c.warning_message.size() > 5000 || c.close_message.size() > 5000)
    return invalid("chatInactivity messages must be at most 5000 characters");
  return {};
}

}  // namespace

Result<BotConfig> parseBotConfig(const bj::object& body, const BotConfig* base) {
  BotConfig c = base ? *base : BotConfig{};
  PARLEY_TRY_ASSIGN(name, json::optString(body, "name"));
  if (*name) c.name = **name;
  if (c.name.empty()) return invalid("field 'name' is required: a name for the bot");
  if (auto st = validateName("bot name", c.name, 200); !st) return std::unexpected(st.error());

  PARLEY_TRY_ASSIGN(vendor, json::optString(body, "vendor"));
  if (*vendor) c.vendor = **vendor;
  if (c.vendor != "CUSTOM_INTEGRATION")
    return invalid(
        "field 'vendor' must be \"CUSTOM_INTEGRATION\" (the only vendor: a Parley function)");

  PARLEY_TRY_ASSIGN(fn, json::optString(body, "functionUuid"));
  if (*fn) c.function = FunctionId(**fn);
  if (c.function.empty())
    return invalid("field 'functionUuid' is required: the uuid of a deployed function");

  if (auto it = body.find("conversationTypes"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_array() || it->value().as_array().empty())
      return invalid(
          "field 'conversationTypes' must be a non-empty array of \"MESSAGING\" and/or \"CHAT\"");
    c.conversation_types.clear();
    for (const auto& t : it->value().as_array()) {
      auto ch = t.is_string() ? store::parseChannel(t.as_string())
                              : Result<store::Channel>(invalid("not a string"));
      if (!ch)
        return invalid("field 'conversationTypes' must contain only \"MESSAGING\" and \"CHAT\"");
      if (!c.servesChannel(*ch)) c.conversation_types.push_back(*ch);
    }
  }

  if (auto it = body.find("skills"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_array())
      return invalid("field 'skills' must be an array of skill names or ids");
    c.skills.clear();
    for (const auto& s : it->value().as_array()) {
      if (s.is_string())
        c.skills.emplace_back(s.as_string());
      else if (s.is_int64())
        c.skills.push_back(std::to_string(s.as_int64()));
      else
        return invalid("field 'skills' must be an array of skill names or ids");
    }
  }
  if (c.skills.empty())
    return invalid("field 'skills' is required: the skills whose conversations the bot takes");

  PARLEY_TRY_ASSIGN(disclaimer, json::optBool(body, "disclaimerAccepted"));
  if (*disclaimer) c.disclaimer_accepted = **disclaimer;

  if (auto it = body.find("escalation"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_object()) return invalid("field 'escalation' must be an object");
    if (auto st = parseEscalation(it->value().as_object(), c.escalation); !st)
      return std::unexpected(st.error());
  }
  PARLEY_TRY_ASSIGN(welcome, json::optBool(body, "welcomeAfterTransfer"));
  if (*welcome) c.welcome_after_transfer = **welcome;
  PARLEY_TRY_ASSIGN(ea, json::optBool(body, "engagementAttributes"));
  if (*ea) c.engagement_attributes = **ea;

  if (auto it = body.find("combineMessages"); it != body.end() && !it->value().is_null()) {
    if (it->value().is_bool()) {
      c.combine.enabled = it->value().as_bool();
    } else if (it->value().is_object()) {
      const bj::object& o = it->value().as_object();
      c.combine.enabled = true;
      PARLEY_TRY_ASSIGN(en, json::optBool(o, "enabled"));
      if (*en) c.combine.enabled = **en;
      PARLEY_TRY_ASSIGN(max, json::optInt(o, "maxMessages"));
      if (*max) {
        if (**max < 1 || **max > 50)
          return invalid("field 'combineMessages.maxMessages' must be from 1 to 50");
        c.combine.max_messages = static_cast<int>(**max);
      }
      PARLEY_TRY_ASSIGN(tf, json::optInt(o, "timeFrameMs"));
      if (*tf) {
        if (**tf < 0 || **tf > 30'000)
          return invalid("field 'combineMessages.timeFrameMs' must be from 0 to 30000");
        c.combine.time_frame_ms = **tf;
      }
    } else {
      return invalid("field 'combineMessages' must be true/false or {maxMessages, timeFrameMs}");
    }
  }
  if (auto it = body.find("hooks"); it != body.end() && !it->value().is_null()) {
    if (!it->value().is_object())
      return invalid("field 'hooks' must be an object {preHook, postHook, errorHook} of booleans");
    const bj::object& h = it->value().as_object();
    for (const auto& kv : h)
      if (kv.key() != "preHook" && kv.key() != "postHook" && kv.key() != "errorHook")
        return invalid(fmt::format(
            "field 'hooks.{}' is unknown; use preHook, postHook and errorHook", kv.key()));
    for (auto [key, flag] :
         {std::pair{"preHook", &c.hooks.pre}, std::pair{"postHook", &c.hooks.post},
          std::pair{"errorHook", &c.hooks.error}}) {
      auto v = json::optBool(h, key);
      if (!v) return invalid(fmt::format("field 'hooks.{}' must be true or false", key));
      if (*v) *flag = **v;
    }
  }
  if (auto it = body.find("chatInactivity"); it != body.end() && !it->value().is_null())
    if (auto st = parseChatInactivity(it->value(), c.chat_inactivity); !st) {
      // Type errors of the nested fields name the field without its parent: add it.
      std::string m = st.error().message;
      if (m.starts_with("field '") && !m.starts_with("field 'chatInactivity"))
        m.insert(7, "chatInactivity.");
      return invalid(m);
    }
  PARLEY_TRY_ASSIGN(thr, json::optInt(body, "interruptionThreshold"));
  if (*thr) {
    if (**thr < 1 || **thr > 100)
      return invalid("field 'interruptionThreshold' must be from 1 to 100");
    c.interruption_threshold = static_cast<int>(**thr);
  }
  return c;
}

bj::object botConfigJson(const BotConfig& c) {
  bj::array types;
  for (auto t : c.conversation_types) types.push_back(bj::string(store::channelName(t)));
  bj::array skills;
  for (const auto& s : c.skills) skills.push_back(bj::string(s));
  bj::array skill_ids;
  for (const auto& s : c.skill_ids) skill_ids.push_back(bj::string(s.str()));
  return bj::object{
      {"name", c.name},
      {"vendor", c.vendor},
      {"functionUuid", c.function.str()},
      {"conversationTypes", std::move(types)},
      {"skills", std::move(skills)},
      {"skillIds", std::move(skill_ids)},
      {"disclaimerAccepted", c.disclaimer_accepted},
      {"escalation",
       {{"skill", c.escalation.skill},
        {"message", c.escalation.message},
        {"agentMessage", c.escalation.agent_message},
        {"failureMessage", c.escalation.failure_message},
        {"retries", c.escalation.retries},
        {"turnTimeoutMs", c.escalation.turn_timeout_ms}}},
      {"welcomeAfterTransfer", c.welcome_after_transfer},
      {"engagementAttributes", c.engagement_attributes},
      {"combineMessages",
       {{"enabled", c.combine.enabled},
        {"maxMessages", c.combine.max_messages},
        {"timeFrameMs", c.combine.time_frame_ms}}},
      {"chatInactivity",
       {{"enabled", c.chat_inactivity.enabled},
        {"warningAfterMs", c.chat_inactivity.warning_after_ms},
        {"warningMessage", c.chat_inactivity.warning_message},
        {"closeAfterMs", c.chat_inactivity.close_after_ms},
        {"closeMessage", c.chat_inactivity.close_message}}},
      {"hooks",
       {{"preHook", c.hooks.pre}, {"postHook", c.hooks.post}, {"errorHook", c.hooks.error}}},
      {"interruptionThreshold", c.interruption_threshold},
  };
}

BotConfig botConfigFromStored(const std::string& config_json) {
  BotConfig c;
  boost::system::error_code ec;
  bj::value v = bj::parse(config_json, ec);
  if (ec || !v.is_object()) return c;
  const bj::object& o = v.as_object();
  auto parsed = parseBotConfig(o);
  if (parsed) c = std::move(*parsed);
  if (auto it = o.find("skillIds"); it != o.end() && it->value().is_array())
    for (const auto& s : it->value().as_array())
      if (s.is_string()) c.skill_ids.emplace_back(std::string(s.as_string()));
  return c;
}

}  // namespace parley::connector
