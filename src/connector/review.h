#pragma once

// What the connector would do with a function's response, for people trying a bot function
// before it meets a consumer: the console's test invoke and `parley function invoke` show it.
// Pure (no I/O): it runs planResponse (the same planner turns use) and adds the pitfalls the
// planner accepts but a consumer would notice, such as quick replies hidden by a later message.

#include <boost/json.hpp>
#include <optional>
#include <string_view>

#include "connector/response.h"

namespace parley::connector {

// Whether a function of this event answers a bot turn (its result is planned by the connector):
// the Custom Integration event and the post-hook, whose result replaces the bot's response.
bool isBotResponseEvent(std::string_view event_id);

// A review of `result_json` (the callback's result, serialised; "" when there was none) as the
// connector would plan it for `opts.channel`:
//   {"channel": "MESSAGING"|"CHAT",
//    "verdict": "OK"|"PARTIAL"|"REFUSED",   OK: everything is sent as given; PARTIAL: some parts
//                                            are dropped; REFUSED: nothing is sent (the turn fails)
//    "consumerSees": [{"kind": "TEXT"|"RICH_CONTENT"|"DELAY", "source": "/messages/0",
//                      "text"?: "...", "quickReplies"?: n, "delaySeconds"?: n}],
//    "agentSees": [{"kind": "PRIVATE_TEXT", "source": ..., "text": ...}],
//    "action": {...} | null,
//    "problems": [{"code", "path", "message"}],     refused parts (and the fatal one)
//    "warnings": [{"rule", "path", "message"}]}     accepted, but probably not what was meant
boost::json::object reviewResponse(std::string_view result_json,
                                   const richcontent::Validator& validator,
                                   const PlanOptions& opts);

}  // namespace parley::connector
