#pragma once

// A bot's configuration (vendor CUSTOM_INTEGRATION): what the REST API accepts in
// POST/PUT bots and what is stored in store::BotRecord::config_json.

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "common/result.h"
#include "store/store.h"

namespace parley::connector {

struct EscalationPolicy {
  // Skill NAME to transfer to on errors (case-sensitive). Empty: no transfer, only messages.
  std::string skill;
  // Sent to the consumer before an error escalation ("Transfer message to Customer").
  std::string message = "Let me connect you with an agent who can help.";
  // Private note (AGENTS_AND_MANAGERS) for the receiving agent, followed by the reason.
  std::string agent_message = "Escalated by the bot after an error.";
  // Sent to the consumer when the escalation transfer itself fails.
  std::string failure_message =
      "Sorry, we could not connect you right now. Please try again later.";
  // Extra attempts of a failed turn before escalating. Default: 0. REQUIRES: 0..5.
  int retries = 0;
  // Deadline of one function call. Default: 30,000 (the platform limit). REQUIRES: 100..30,000.
  std::int64_t turn_timeout_ms = 30'000;
};

struct CombineMessages {
  bool enabled = false;
  // At most this many consumer messages go into one invocation. Default: 5. REQUIRES: 1..50.
  int max_messages = 5;
  // Waits this long after a consumer message for more before invoking. Default: 0 (only
  // messages that arrive during a running turn are combined). REQUIRES: 0..30,000.
  std::int64_t time_frame_ms = 0;
};

// Consumer inactivity in CHAT conversations (spec §3.1 chat settings "Time until warning",
// "Warning message", "Time until conversation close", "Close message"). The spec gives no
// values; the defaults are Parley's. Times count from the moment the bot is waiting for the
// consumer (its last turn finished); any consumer message restarts them.
struct ChatInactivity {
  bool enabled = true;
  // Sends `warning_message` this long after the bot started waiting. 0: no warning.
  // Default: 300,000 (5 min). REQUIRES: 0, or 100..close_after_ms-1.
  std::int64_t warning_after_ms = 300'000;
  std::string warning_message =
      "Are you still there? This chat will close soon if you do not reply.";
  // Sends `close_message` and closes the conversation this long after the bot started waiting.
  // Default: 600,000 (10 min). REQUIRES: 100..86,400,000 (24 h).
  std::int64_t close_after_ms = 600'000;
  std::string close_message = "This chat was closed because there was no reply.";
};

// Hooks (spec §3.5): the deployed functions of the account on the hook events run around the
// bot's function when enabled here (the wizard's "pre-hook", "post-hook", "Enable error-hook").
struct Hooks {
  bool pre = false;    // bot_connectors_pre_hook: may rewrite the request
  bool post = false;   // bot_connectors_post_hook: may rewrite the response
  bool error = false;  // bot_connectors_error_hook: told about errors; nothing fed back
};

struct BotConfig {
  std::string name;
  std::string vendor = "CUSTOM_INTEGRATION";
  FunctionId function;
  std::vector<store::Channel> conversation_types = {store::Channel::kMessaging};
  // Skill names or ids as given; resolved to ids when saved (skill_ids).
  std::vector<std::string> skills;
  std::vector<SkillId> skill_ids;
  bool disclaimer_accepted = false;
  EscalationPolicy escalation;
  bool welcome_after_transfer = false;
  bool engagement_attributes = false;
  CombineMessages combine;
  ChatInactivity chat_inactivity;
  Hooks hooks;
  // Consecutive failed turns that put the bot into VENDOR_INTERRUPTION. Default: 3.
  int interruption_threshold = 3;

  bool servesChannel(store::Channel c) const;
};

// Parses a REST body (POST, or PUT merged over `base`). Invalid with a message naming the field.
Result<BotConfig> parseBotConfig(const boost::json::object& body, const BotConfig* base = nullptr);
// The stored / returned form (the same field names as the REST body).
boost::json::object botConfigJson(const BotConfig& c);
// Reads config_json of a stored bot (trusted; lenient).
BotConfig botConfigFromStored(const std::string& config_json);

}  // namespace parley::connector
