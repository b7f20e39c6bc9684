#pragma once

// Builds the function input of spec §1.2–1.7 for one bot turn.

#include <boost/json.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "store/store.h"

namespace parley::connector {

// Special `message` values for non-text consumer input (§1.4).
inline constexpr const char* kRichContentMessage =
    "com.liveperson.bot-connectors.consumer.send-rich-content";
inline constexpr const char* kFileMessage = "com.liveperson.bot-connectors.consumer.send-file";

enum class InputKind { kText, kRichContent, kFile, kWelcome };

// A stored consumer message and its event, parsed once: the engine's MessageAdded::event for a
// live message, or parsed from `event_json` (fromStored) for one read back from the store. Both
// shared and immutable; neither is null.
struct ConsumerMessage {
  std::shared_ptr<const store::Message> message;
  std::shared_ptr<const boost::json::object> event;

  // Parses `m.event_json` (an empty object when it is not a JSON object).
  static ConsumerMessage fromStored(store::Message m);
};

// One consumer event the bot has to answer (or the synthetic WELCOME).
struct TurnInput {
  InputKind kind = InputKind::kText;
  // The consumer messages (one, or several when combined); empty for WELCOME.
  std::vector<ConsumerMessage> messages;
  // WELCOME after a transfer (messaging): the consumer's last utterance.
  std::optional<std::string> last_consumer_message;
  // Consumer messages with a sequence <= `through` are answered once this turn is done (stored
  // in its store::TurnMark). For messages: the highest sequence among them; for a WELCOME: the
  // boundary of the catch-up.
  std::int64_t through = -1;
  // A turn that a crash or a shutdown interrupted after some of its effects were stored: its
  // id, and how many of its effects are out (they are not published again).
  std::string resume_id;
  int effects_done = 0;
};

// The kind of a stored consumer message with its parsed `event`, or nullopt when it is not
// forwarded to bots (AcceptStatusEvent, typing, ...).
std::optional<InputKind> classifyConsumerMessage(const store::Message& m,
                                                 const boost::json::object& event);
// The same, parsing `m.event_json` (a message read back from the store).
std::optional<InputKind> classifyConsumerMessage(const store::Message& m);

// {"timestamp", "headers":[], "payload":{message, convId, event?, context:{lpEvent, lpSdes}}}.
// `lp_sdes` is `{}` unless the bot has Engagement Attributes on (see sdes.h).
boost::json::object buildFunctionInput(const TurnInput& in, const store::Conversation& conv,
                                       const std::string& skill_name, TimeMs now,
                                       const boost::json::object& lp_sdes = {});

// The sample input used by Test Connection (a messaging text "hi").
boost::json::object sampleFunctionInput(TimeMs now);

}  // namespace parley::connector
