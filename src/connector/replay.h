#pragma once

// Replay's pure half: what one bot turn did, as a comparable summary, and the turn-by-turn
// differences between two summaries (a recorded turn and the same input run by another function
// version). No I/O: the replay runner (replay_runner.h) invokes functions and calls these.

#include <boost/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "connector/response.h"

namespace parley::connector {

// What a turn's function produced, in the terms a bot builder compares: everything the planner
// would send and do, and every error, each in order. JSON form (`toJson`):
//   {"texts": [..], "structuredContent": [..], "quickReplies": [..], "agentTexts": [..],
//    "action": {..}|null, "intents": {..}|null, "errors": [{"code","path"}]}
struct TurnSummary {
  // Texts the consumer sees (ContentEvent messages, with or without quick replies), in order.
  std::vector<std::string> texts;
  // The `content` of every RichContentEvent the consumer gets, in order.
  boost::json::array structured_content;
  // The quickReplies object of every message that carries them, in order.
  boost::json::array quick_replies;
  // Private texts only agents and managers see.
  std::vector<std::string> agent_texts;
  // The one action (Action::toJson()), or null.
  boost::json::value action;
  // The BotResponse metadata (intents), or null.
  boost::json::value intents;
  // The function's invocation error (its com.liveperson.faas.* code, path ""), the planner's
  // fatal problem and the refused parts (connector codes with their JSON paths), in that order.
  boost::json::array errors;

  boost::json::object toJson() const;
};

// The summary of a function's result (`result_json`, serialised as the callback gave it) as the
// connector would plan it with `opts`.
TurnSummary summarizeResponse(std::string_view result_json, const richcontent::Validator& validator,
                              const PlanOptions& opts);
// The summary of a failed invocation: only the error `code` (a com.liveperson.faas.* code).
TurnSummary summarizeInvocationError(std::string code);

// One difference: `field` is texts, structuredContent, quickReplies, agentTexts, action,
// intents or errors; `index` the position in a list field (absent for action, intents and
// errors, which compare as a whole); `before`/`after` the values (null when absent on that
// side).
struct TurnDifference {
  std::string field;
  std::optional<std::size_t> index;
  boost::json::value before;
  boost::json::value after;

  boost::json::object toJson() const;
};

// Every difference between `before` and `after`, field by field in the order above; empty when
// the two turns would look and act the same. Lists compare position by position (an added or
// removed item is a difference with null on the other side); errors compare as a set of
// (code, path) pairs in order, so error messages (which carry timings) never make a difference.
std::vector<TurnDifference> diffTurns(const TurnSummary& before, const TurnSummary& after);

// A turn to replay: a turn record as `GET bots/{id}/turns` answers it, or a turn of a tester
// session (`GET bots/{id}/tester/{session}`), or an item of an uploaded transcript of either.
struct RecordedTurn {
  std::string turn_id;
  std::string conversation_id;
  // The function input as it was sent ({timestamp, headers, payload}), serialised.
  std::string input_json;
  store::Channel channel = store::Channel::kMessaging;
  // The consumer's message (payload.message) or "WELCOME", for people reading the result.
  std::string consumer_message;
  // The function's own response, serialised, when it answered (a post hook's replacement is
  // not used: replay compares functions); nullopt when the invocation failed.
  std::optional<std::string> response_json;
  // The invocation's com.liveperson.faas.* error code when it failed (may be "" when the record
  // names none).
  std::string error_code;
  // Set when the function was not called for this turn (SERVICE_INTERRUPTION, the
  // open-conversation limit, a failed pre hook): the turn is not replayed, this says why.
  std::optional<std::string> not_replayable;
};

// Reads one turn of a recorded or uploaded transcript. Invalid (naming what is missing or
// wrong) when `turn` has no object `input` with an object `payload`.
Result<RecordedTurn> recordedTurnFromJson(const boost::json::value& turn);

}  // namespace parley::connector
